"""SCRAM-SHA-256 password authentication, server side, without channel binding.

RFC 5802 / RFC 7677 as PostgreSQL uses them (https://www.postgresql.org/docs/16/sasl-authentication.html):
the server advertises only ``SCRAM-SHA-256`` (no ``-PLUS``: there is no TLS to bind to), the
user name comes from the StartupMessage (libpq sends an empty ``n=``), and the verifier is
derived from the configured password once per server, the way PostgreSQL stores it in
pg_authid. :class:`ScramExchange` is a small state machine that never touches a socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata
from dataclasses import dataclass

from wire.codec import ProtocolError
from wire.session import PgError

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def saslprep(password: str) -> str:
    """RFC 4013 SASLprep as PostgreSQL applies it; passwords that fail it are used as they are."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22, stringprep.in_table_c3,
        stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
        stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1,
    )
    if any(check(c) for c in normalized for check in prohibited):
        return password
    has_ral = any(stringprep.in_table_d1(c) for c in normalized)
    if has_ral and (any(stringprep.in_table_d2(c) for c in normalized)
                    or not stringprep.in_table_d1(normalized[0]) or not stringprep.in_table_d1(normalized[-1])):
        return password
    return normalized


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


@dataclass(frozen=True)
class ScramVerifier:
    """What PostgreSQL keeps in pg_authid.rolpassword for a SCRAM password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, password: str, *, iterations: int = DEFAULT_ITERATIONS,
                      salt: bytes | None = None) -> ScramVerifier:
        salt = salt if salt is not None else os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(salt, iterations, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"))


def authentication_failed(user: str) -> PgError:
    return PgError("28P01", f'password authentication failed for user "{user}"', severity="FATAL")


def _malformed(detail: str) -> ProtocolError:
    return ProtocolError("malformed SCRAM message", detail=detail)


def _attributes(message: str, expected: str) -> dict[str, str]:
    """Parse ``a=...,b=...``; the attribute letters must come in the order ``expected``."""
    parts = message.split(",")
    if len(parts) < len(expected):
        raise _malformed(f"Expected attributes {','.join(expected)}.")
    out: dict[str, str] = {}
    for letter, part in zip(expected, parts):
        if not part.startswith(letter + "="):
            raise _malformed(f'Expected attribute "{letter}" but found "{part[:1]}".')
        out[letter] = part[2:]
    if len(parts) > len(expected):
        raise _malformed("Garbage found at the end of SCRAM message.")
    return out


class ScramExchange:
    """One SCRAM-SHA-256 exchange: :meth:`server_first`, then :meth:`server_final`.

    Raises ProtocolError (08P01) for malformed messages and PgError 28P01 for a wrong password.
    """

    def __init__(self, verifier: ScramVerifier, user: str, *, server_nonce: str | None = None) -> None:
        self._verifier = verifier
        self._user = user
        self._server_nonce = server_nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def server_first(self, mechanism: str, client_first: bytes | None) -> bytes:
        if mechanism != MECHANISM:
            raise ProtocolError("client selected an invalid SASL authentication mechanism")
        if client_first is None:
            raise _malformed("The message is empty.")
        try:
            text = client_first.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("The message is not valid UTF-8.") from None
        cbind, sep, rest = text.partition(",")
        if not sep:
            raise _malformed("The message is too short.")
        if cbind.startswith("p="):
            raise ProtocolError("channel binding is not supported by this server", "28000")
        if cbind not in ("n", "y"):
            raise _malformed(f'Unexpected channel-binding flag "{cbind[:1]}".')
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise _malformed("The message is too short.")
        if authzid:
            raise _malformed("client uses authorization identity, but it is not supported")
        if bare.startswith("m="):
            raise _malformed("client requires an unsupported SCRAM extension")
        attrs = _attributes(bare, "nr")
        if not attrs["r"] or any(c < "!" or c > "~" or c == "," for c in attrs["r"]):
            raise _malformed("The client nonce is invalid.")
        self._gs2_header = f"{cbind},{authzid},"
        self._client_first_bare = bare
        self._nonce = attrs["r"] + self._server_nonce
        salt = base64.b64encode(self._verifier.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={self._verifier.iterations}"
        return self._server_first.encode("ascii")

    def server_final(self, client_final: bytes) -> bytes:
        try:
            text = client_final.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("The message is not valid UTF-8.") from None
        without_proof, sep, proof_part = text.rpartition(",p=")
        if not sep:
            raise _malformed('Expected attribute "p".')
        attrs = _attributes(without_proof, "cr")
        try:
            binding = base64.b64decode(attrs["c"], validate=True)
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise _malformed("Invalid base64 in SCRAM message.") from None
        if binding != self._gs2_header.encode("utf-8"):
            raise _malformed("SCRAM channel binding check failed.")
        if attrs["r"] != self._nonce:
            raise _malformed("Nonce does not match.")
        if len(proof) != hashlib.sha256().digest_size:
            raise _malformed("Malformed proof in client-final-message.")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self._verifier.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self._verifier.stored_key):
            raise authentication_failed(self._user)
        server_signature = _hmac(self._verifier.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
