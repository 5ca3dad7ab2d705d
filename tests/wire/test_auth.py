"""wire/auth.py: SCRAM-SHA-256 against RFC 7677's example exchange and malformed messages."""

from __future__ import annotations

import base64

import pytest

from wire.auth import ScramExchange, ScramVerifier, saslprep
from wire.codec import ProtocolError
from wire.session import PgError

# RFC 7677, section 3
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def exchange(password: str = "pencil") -> ScramExchange:
    return ScramExchange(ScramVerifier.from_password(password, salt=SALT), "user", server_nonce=SERVER_NONCE)


def test_rfc7677_example() -> None:
    ex = exchange()
    assert ex.server_first("SCRAM-SHA-256", CLIENT_FIRST) == SERVER_FIRST
    assert ex.server_final(CLIENT_FINAL) == SERVER_FINAL


def test_wrong_password_is_28P01() -> None:
    ex = exchange("not pencil")
    ex.server_first("SCRAM-SHA-256", CLIENT_FIRST)
    with pytest.raises(PgError) as exc:
        ex.server_final(CLIENT_FINAL)
    assert exc.value.sqlstate == "28P01"
    assert exc.value.message == 'password authentication failed for user "user"'
    assert exc.value.severity == "FATAL"


@pytest.mark.parametrize(
    ("mechanism", "first"),
    [
        ("SCRAM-SHA-1", CLIENT_FIRST),
        ("SCRAM-SHA-256", None),
        ("SCRAM-SHA-256", b"x,,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,a=admin,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,,n=,r="),
        ("SCRAM-SHA-256", b"n,,r=abc"),
        ("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,,n=,r=abc,x=1"),
        ("SCRAM-SHA-256", b"\xff"),
    ],
)
def test_malformed_client_first(mechanism: str, first: bytes | None) -> None:
    with pytest.raises(ProtocolError):
        exchange().server_first(mechanism, first)


@pytest.mark.parametrize(
    "final",
    [
        b"c=biws,r=wrongnonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!!",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
    ],
)
def test_malformed_client_final(final: bytes) -> None:
    ex = exchange()
    ex.server_first("SCRAM-SHA-256", CLIENT_FIRST)
    with pytest.raises(ProtocolError):
        ex.server_final(final)


def test_saslprep() -> None:
    assert saslprep("pencil") == "pencil"
    assert saslprep("I\u00adX") == "IX"  # soft hyphen maps to nothing
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space maps to space
    assert saslprep("\u2168") == "IX"  # NFKC
    assert saslprep("a\u0007") == "a\u0007"  # prohibited: used as it is, as PostgreSQL does
