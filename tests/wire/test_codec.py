"""wire/codec.py: framing of frontend messages (fed bytes, never a socket) and backend encoders."""

from __future__ import annotations

import struct

import pytest

from tests.wire import protocol_helpers as fe
from wire import codec
from wire.codec import FrontendDecoder, MessageTextError, ProtocolError
from wire.session import ColumnDesc, PgError


def decode_all(data: bytes, *, startup: bool = False, **kw: int) -> list[object]:
    d = FrontendDecoder(expect_startup=startup, **kw)
    d.feed(data)
    return list(d)


# --------------------------------------------------------------------------- startup packets


def test_startup_message_with_parameters() -> None:
    (m,) = decode_all(fe.startup("alice", "db1", application_name="app", options="-c x=1"), startup=True)
    assert isinstance(m, codec.StartupMessage)
    assert m.protocol == 196608 and m.minor == 0
    assert m.parameters == {"user": "alice", "database": "db1", "application_name": "app", "options": "-c x=1"}


@pytest.mark.parametrize(
    ("packet", "cls"),
    [(fe.ssl_request(), codec.SSLRequest), (fe.gssenc_request(), codec.GSSENCRequest)],
)
def test_encryption_requests(packet: bytes, cls: type) -> None:
    assert isinstance(decode_all(packet, startup=True)[0], cls)


def test_cancel_request() -> None:
    (m,) = decode_all(fe.cancel_request(1234, -5), startup=True)
    assert m == codec.CancelRequest(1234, -5)


def test_startup_split_byte_by_byte() -> None:
    data = fe.startup(application_name="x" * 100)
    d = FrontendDecoder()
    for i in range(len(data) - 1):
        d.feed(data[i : i + 1])
        assert d.next_message() is None
    d.feed(data[-1:])
    assert isinstance(d.next_message(), codec.StartupMessage)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (struct.pack("!i", 4) + b"abcd", "invalid length of startup packet"),
        (struct.pack("!i", 7), "invalid length of startup packet"),
        (struct.pack("!i", 100_000), "invalid length of startup packet"),
        (struct.pack("!i", -1), "invalid length of startup packet"),
        (struct.pack("!ii", 12, 80877103) + b"xxxx", "invalid message format"),
        (struct.pack("!iii", 12, 80877102, 1), "insufficient data left in message"),
        (struct.pack("!ii", 8, 196608), "invalid startup packet layout: expected terminator as last byte"),
        (struct.pack("!ii", 12, 196608) + b"user", "invalid startup packet layout: expected terminator as last byte"),
    ],
)
def test_malformed_startup(packet: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_all(packet, startup=True)
    assert exc.value.message == message
    assert exc.value.sqlstate == "08P01"


def test_unsupported_protocol_version() -> None:
    packet = struct.pack("!ii", 9, 2 << 16) + b"\x00"
    with pytest.raises(ProtocolError) as exc:
        decode_all(packet, startup=True)
    assert exc.value.sqlstate == "0A000"
    assert "unsupported frontend protocol 2.0" in exc.value.message


def test_newer_minor_version_is_accepted() -> None:
    body = struct.pack("!i", (3 << 16) | 2) + b"user\x00u\x00_pq_.x\x00y\x00\x00"
    (m,) = decode_all(struct.pack("!i", len(body) + 4) + body, startup=True)
    assert m.minor == 2 and m.parameters["_pq_.x"] == "y"


# --------------------------------------------------------------------------- regular messages


def test_every_frontend_message() -> None:
    data = b"".join([
        fe.query("select 1"),
        fe.parse("select $1, $2", "s1", [23, 0]),
        fe.bind([b"1", None, b""], portal="p", statement="s1", param_formats=[0, 1, 0], result_formats=[1]),
        fe.describe("S", "s1"),
        fe.describe("P"),
        fe.execute("p", 5),
        fe.SYNC,
        fe.FLUSH,
        fe.close("P", "p"),
        fe.copy_data(b"1\t2\n"),
        fe.COPY_DONE,
        fe.copy_fail("oops"),
        fe.msg(b"p", b"SCRAM-SHA-256\x00" + struct.pack("!i", 3) + b"abc"),
        fe.TERMINATE,
    ])
    assert decode_all(data) == [
        codec.Query("select 1"),
        codec.Parse("s1", "select $1, $2", (23, 0)),
        codec.Bind("p", "s1", (0, 1, 0), (b"1", None, b""), (1,)),
        codec.Describe("S", "s1"),
        codec.Describe("P", ""),
        codec.Execute("p", 5),
        codec.Sync(),
        codec.Flush(),
        codec.Close("P", "p"),
        codec.CopyData(b"1\t2\n"),
        codec.CopyDone(),
        codec.CopyFail("oops"),
        codec.AuthenticationResponse(b"SCRAM-SHA-256\x00\x00\x00\x00\x03abc"),
        codec.Terminate(),
    ]


def test_messages_split_at_every_byte() -> None:
    data = fe.query("select 1") + fe.parse("x", "n") + fe.bind([b"abc"]) + fe.SYNC
    expected = decode_all(data)
    for cut in range(1, len(data)):
        d = FrontendDecoder(expect_startup=False)
        got = []
        d.feed(data[:cut])
        got.extend(d)
        d.feed(data[cut:])
        got.extend(d)
        assert got == expected


def test_take_copy_data_stops_at_anything_but_whole_copy_data() -> None:
    """The COPY bulk path: payloads as views of the bytes fed (copies of what was buffered), up to the
    limit, leaving a partial CopyData, any other message and a bad header to next_message."""
    msgs = [fe.copy_data(b"a" * 10), fe.copy_data(b"b" * 20), fe.copy_data(b"c" * 30)]
    d = FrontendDecoder(expect_startup=False)
    d.feed(msgs[0][:3])  # a partial message buffered before the bytes that complete it
    out: list[bytes | memoryview] = []
    assert d.take_copy_data(out, 25, msgs[0][3:] + msgs[1] + msgs[2][:7]) == 30  # stops past the limit
    assert [bytes(x) for x in out] == [b"a" * 10, b"b" * 20]
    assert d.take_copy_data(out, 100) == 0  # the third is not whole yet
    assert d.take_copy_data(out, 100, msgs[2][7:] + fe.COPY_DONE + fe.copy_data(b"d")) == 30
    assert bytes(out[-1]) == b"c" * 30
    assert d.take_copy_data(out, 100) == 0
    assert d.next_message() == codec.CopyDone()
    assert d.next_message() == codec.CopyData(b"d")
    assert d.take_copy_data(out, 100, msgs[1] + fe.SYNC) == 20  # nothing buffered: a view, no copy
    assert isinstance(out[-1], memoryview) and bytes(out[-1]) == b"b" * 20
    assert d.next_message() == codec.Sync()
    small = FrontendDecoder(expect_startup=False, max_message_size=8)
    small.take_copy_data(out, 100, fe.copy_data(b"x" * 9))  # too long: next_message says so
    with pytest.raises(ProtocolError, match="invalid message length"):
        small.next_message()


def test_unknown_message_type() -> None:
    with pytest.raises(ProtocolError, match="invalid frontend message type 122"):
        decode_all(b"z\x00\x00\x00\x04")


@pytest.mark.parametrize("length", [0, 3, -5])
def test_length_below_four(length: int) -> None:
    with pytest.raises(ProtocolError, match="invalid message length"):
        decode_all(b"Q" + struct.pack("!i", length))


def test_oversized_message_is_refused_before_it_is_buffered() -> None:
    d = FrontendDecoder(expect_startup=False, max_message_size=1000)
    d.feed(b"d" + struct.pack("!i", 5000))  # only the header has arrived
    with pytest.raises(ProtocolError, match="invalid message length"):
        d.next_message()


def test_small_messages_have_a_small_limit() -> None:
    d = FrontendDecoder(expect_startup=False)
    d.feed(b"S" + struct.pack("!i", 1 << 20))
    with pytest.raises(ProtocolError):
        d.next_message()


def test_large_limit_is_configurable() -> None:
    payload = b"x" * 5000
    assert decode_all(fe.copy_data(payload), max_message_size=5000) == [codec.CopyData(payload)]
    with pytest.raises(ProtocolError):
        decode_all(fe.copy_data(payload), max_message_size=4999)


@pytest.mark.parametrize(
    "data",
    [
        fe.msg(b"Q", b"no terminator"),
        fe.msg(b"P", b"name\x00sql\x00" + struct.pack("!h", 3) + struct.pack("!I", 23)),
        fe.msg(b"B", b"\x00\x00" + struct.pack("!hh", 0, 1) + struct.pack("!i", 100) + b"short"),
        fe.msg(b"B", b"\x00\x00" + struct.pack("!hh", 0, 1) + struct.pack("!i", -7)),
        fe.msg(b"E", b"portal\x00" + b"\x00\x00"),
        fe.msg(b"D", b"X" + b"name\x00"),
        fe.msg(b"C", b"S" + b"name"),
        fe.msg(b"S", b"extra"),
        fe.msg(b"Q", b"two\x00strings\x00"),
    ],
)
def test_malformed_bodies(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_all(data)


def test_invalid_utf8_fails_only_that_message() -> None:
    d = FrontendDecoder(expect_startup=False)
    d.feed(fe.msg(b"Q", b"select '\xff'\x00") + fe.query("select 2"))
    with pytest.raises(MessageTextError) as exc:
        d.next_message()
    assert exc.value.sqlstate == "22021" and exc.value.message_type == b"Q"
    assert d.next_message() == codec.Query("select 2")


def test_sasl_initial_response() -> None:
    body = b"SCRAM-SHA-256\x00" + struct.pack("!i", 5) + b"n,,n="
    assert codec.parse_sasl_initial_response(body) == ("SCRAM-SHA-256", b"n,,n=")
    assert codec.parse_sasl_initial_response(b"X\x00" + struct.pack("!i", -1)) == ("X", None)
    with pytest.raises(ProtocolError):
        codec.parse_sasl_initial_response(b"X\x00" + struct.pack("!i", 9) + b"ab")


def test_decoder_compacts_its_buffer() -> None:
    d = FrontendDecoder(expect_startup=False)
    for _ in range(3000):
        d.feed(fe.copy_data(b"y" * 100))
        assert isinstance(d.next_message(), codec.CopyData)
    assert d.buffered == 0
    assert len(d._buf) < 200_000


# --------------------------------------------------------------------------- backend encoders


def test_backend_encoders() -> None:
    assert codec.encode_authentication_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert codec.encode_ready_for_query("T") == b"Z\x00\x00\x00\x05T"
    assert codec.encode_parameter_status("a", "b") == b"S\x00\x00\x00\x08a\x00b\x00"
    assert codec.encode_backend_key_data(1, -1) == b"K\x00\x00\x00\x0c\x00\x00\x00\x01\xff\xff\xff\xff"
    assert codec.encode_command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert codec.encode_empty_query_response() == b"I\x00\x00\x00\x04"
    assert codec.encode_parse_complete() == b"1\x00\x00\x00\x04"
    assert codec.encode_bind_complete() == b"2\x00\x00\x00\x04"
    assert codec.encode_close_complete() == b"3\x00\x00\x00\x04"
    assert codec.encode_no_data() == b"n\x00\x00\x00\x04"
    assert codec.encode_portal_suspended() == b"s\x00\x00\x00\x04"
    assert codec.encode_parameter_description([23, 16385]) == b"t\x00\x00\x00\x0e\x00\x02" + struct.pack("!II", 23, 16385)
    assert codec.encode_copy_in_response(2) == b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"
    assert codec.encode_authentication_sasl(["SCRAM-SHA-256"]) == (
        b"R" + struct.pack("!ii", 23, 10) + b"SCRAM-SHA-256\x00\x00")
    assert codec.encode_authentication_sasl_continue(b"r=x") == b"R" + struct.pack("!ii", 11, 11) + b"r=x"
    assert codec.encode_authentication_sasl_final(b"v=y") == b"R" + struct.pack("!ii", 11, 12) + b"v=y"
    assert codec.encode_data_row([b"ab", None, b""]) == (
        b"D" + struct.pack("!ih", 20, 3) + struct.pack("!i", 2) + b"ab" + struct.pack("!ii", -1, 0))
    with pytest.raises(ValueError):
        codec.encode_ready_for_query("X")


def test_row_description_layout() -> None:
    cols = [ColumnDesc("id", 20, -1, 8, 16400, 1), ColumnDesc("v", 16385, 3)]
    (m,) = fe.parse_backend(codec.encode_row_description(cols, [1, 0], [8, -1]))
    assert m.values == [("id", 20, 8, -1, 1), ("v", 16385, -1, 3, 0)]


def test_error_and_notice_fields() -> None:
    err = PgError("42P01", 'relation "x" does not exist', detail="d", hint="h", position=15, routine="r")
    (m,) = fe.parse_backend(codec.encode_error_response(err))
    assert m.kind == "E"
    assert m.fields == {"S": "ERROR", "V": "ERROR", "C": "42P01", "M": 'relation "x" does not exist',
                        "D": "d", "H": "h", "P": "15", "R": "r"}
    (fatal,) = fe.parse_backend(codec.encode_error_response(PgError("08P01", "bad"), severity="FATAL"))
    assert fatal.fields["S"] == fatal.fields["V"] == "FATAL"
    (n,) = fe.parse_backend(codec.encode_notice_response(PgError("01000", "careful", severity="WARNING")))
    assert n.kind == "N" and n.fields["S"] == "WARNING"
    (n,) = fe.parse_backend(codec.encode_notice_response(PgError("00000", "plain")))
    assert n.fields["S"] == "NOTICE"
    # NUL cannot appear inside a field; it is dropped rather than cutting the message.
    (m,) = fe.parse_backend(codec.encode_error_response(PgError("XX000", "a\x00b")))
    assert m.fields["M"] == "ab"


@pytest.mark.parametrize(
    "data",
    [
        fe.bind([b"1", None, b"", b"x" * 70_000], portal="p\u00e9", statement="s1", param_formats=[0, 1, 0, 1],
                result_formats=[1, 0]),
        fe.bind(),
        fe.bind(statement="_pg3_0", result_formats=[1]),
        fe.execute(), fe.execute("portal", 7), fe.execute("", -1),
        fe.describe("P"), fe.describe("S", "stmt"), fe.close("P", "x"),
        fe.parse("select $1, $2", "n", [23, 0]), fe.parse("select 'é'"),
        fe.query("select 1"), fe.query(""), fe.SYNC, fe.FLUSH,
        # irregular ones: the fast parser declines, the full one reports the error
        fe.msg(b"B", b"p\x00s\x00" + struct.pack("!hh", 0, 1) + struct.pack("!i", -2)),
        fe.msg(b"B", b"p\x00s\x00" + struct.pack("!hh", 0, 1) + struct.pack("!i", 9) + b"ab" + b"\x00\x00"),
        fe.msg(b"E", b"\xff\x00" + struct.pack("!i", 0)),
        fe.msg(b"D", b"P\xff\x00"),
        fe.msg(b"P", b"n\x00sql\x00" + struct.pack("!h", 2) + struct.pack("!I", 23)),
        fe.msg(b"Q", b"select '\xff'\x00"),
        fe.msg(b"H", b"x"),
    ],
)
def test_fast_parser_agrees_with_the_full_one(data: bytes) -> None:
    """The hot messages take a shortcut parser; whatever it returns, the full parser returns too."""
    body = data[5:]
    fast = codec._parse_common(data[0], body)
    try:
        full: object = codec._parse_body(data[:1], body)
    except (ProtocolError, MessageTextError) as exc:
        full = exc
    if fast is not None:
        assert fast == full
    else:  # declined: an irregular message, or one it does not cover
        assert isinstance(full, (Exception, codec.Close))
    d = FrontendDecoder(expect_startup=False)
    d.feed(data)
    if isinstance(full, Exception):
        with pytest.raises(type(full)):
            d.next_message()
    else:
        assert d.next_message() == full
