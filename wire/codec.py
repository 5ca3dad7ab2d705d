"""PostgreSQL v3 message framing: frontend messages in, backend messages out.

Nothing here touches a socket. :class:`FrontendDecoder` is fed bytes as they arrive and yields
typed messages; it checks every length before it buffers or decodes a body, so a malformed or
oversized message becomes a :class:`ProtocolError` (answered with FATAL 08P01 by the server)
instead of a huge allocation or an exception deep inside a handler. The ``encode_*`` functions
build complete backend messages as bytes.

Formats follow https://www.postgresql.org/docs/16/protocol-message-formats.html: every message
but the first (the startup packet) is a type byte, an int32 length that counts itself but not
the type byte, then the body; integers are big-endian, strings NUL-terminated UTF-8.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from wire.session import ColumnDesc, PgError

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

# PostgreSQL's own limits (src/include/libpq/pqcomm.h, libpq/libpq.h).
MAX_STARTUP_PACKET_LENGTH = 10_000
SMALL_MESSAGE_LIMIT = 10_000
DEFAULT_MAX_MESSAGE_SIZE = (1 << 30) - 1

_INT16 = struct.Struct("!h")
_UINT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_HEADER = struct.Struct("!ci")


class ProtocolError(Exception):
    """The client broke the protocol; the connection is answered with FATAL and closed."""

    def __init__(self, message: str, sqlstate: str = "08P01", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail

    def to_pg_error(self) -> PgError:
        return PgError(self.sqlstate, self.message, severity="FATAL", detail=self.detail)


class MessageTextError(PgError):
    """A well-framed message whose text is not valid UTF-8.

    Only that message fails (as PostgreSQL does with 22021); ``message_type`` tells the server
    whether it was a simple Query or part of an extended-query sequence.
    """

    def __init__(self, message_type: bytes, message: str) -> None:
        super().__init__("22021", message)
        self.message_type = message_type


# --------------------------------------------------------------------------- frontend messages


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    process_id: int
    secret_key: int


@dataclass(frozen=True, slots=True)
class StartupMessage:
    protocol: int
    parameters: dict[str, str]

    @property
    def minor(self) -> int:
        return self.protocol & 0xFFFF


@dataclass(frozen=True, slots=True)
class Query:
    TYPE: ClassVar[bytes] = b"Q"
    sql: str


@dataclass(frozen=True, slots=True)
class Parse:
    TYPE: ClassVar[bytes] = b"P"
    name: str
    sql: str
    param_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bind:
    TYPE: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Describe:
    TYPE: ClassVar[bytes] = b"D"
    kind: str  # 'S' statement or 'P' portal
    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    TYPE: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int


@dataclass(frozen=True, slots=True)
class Sync:
    TYPE: ClassVar[bytes] = b"S"


@dataclass(frozen=True, slots=True)
class Flush:
    TYPE: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class Close:
    TYPE: ClassVar[bytes] = b"C"
    kind: str  # 'S' or 'P'
    name: str


@dataclass(frozen=True, slots=True)
class CopyData:
    TYPE: ClassVar[bytes] = b"d"
    data: bytes


@dataclass(frozen=True, slots=True)
class CopyDone:
    TYPE: ClassVar[bytes] = b"c"


@dataclass(frozen=True, slots=True)
class CopyFail:
    TYPE: ClassVar[bytes] = b"f"
    message: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    TYPE: ClassVar[bytes] = b"F"


@dataclass(frozen=True, slots=True)
class Terminate:
    TYPE: ClassVar[bytes] = b"X"


@dataclass(frozen=True, slots=True)
class AuthenticationResponse:
    """A 'p' message: PasswordMessage, SASLInitialResponse or SASLResponse.

    Which one depends on the authentication state, so the body is kept raw and interpreted by
    :func:`parse_sasl_initial_response` (or taken whole as a SASLResponse).
    """

    TYPE: ClassVar[bytes] = b"p"
    data: bytes


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage
FrontendMessage = (
    Query | Parse | Bind | Describe | Execute | Sync | Flush | Close | CopyData | CopyDone | CopyFail
    | FunctionCall | Terminate | AuthenticationResponse
)

# Messages that may carry user data of any size; everything else is small (as in PostgreSQL's
# SocketBackend), so a bogus length on, say, Sync is caught before anything is buffered.
_LARGE_TYPES = frozenset(b"QPBdpFf")
_KNOWN_TYPES = frozenset(b"QPBDESHCdcfFXp")


class _BodyReader:
    """Reads the fields of one message body, failing with 08P01 when the body is too short."""

    __slots__ = ("_data", "_pos", "_type")

    def __init__(self, message_type: bytes, data: bytes) -> None:
        self._type = message_type
        self._data = data
        self._pos = 0

    def _need(self, n: int) -> None:
        if n < 0 or self._pos + n > len(self._data):
            raise ProtocolError("insufficient data left in message")

    def int16(self) -> int:
        self._need(2)
        (v,) = _INT16.unpack_from(self._data, self._pos)
        self._pos += 2
        return v

    def uint16(self) -> int:
        self._need(2)
        (v,) = _UINT16.unpack_from(self._data, self._pos)
        self._pos += 2
        return v

    def int32(self) -> int:
        self._need(4)
        (v,) = _INT32.unpack_from(self._data, self._pos)
        self._pos += 4
        return v

    def uint32(self) -> int:
        self._need(4)
        (v,) = _UINT32.unpack_from(self._data, self._pos)
        self._pos += 4
        return v

    def byte(self) -> int:
        self._need(1)
        v = self._data[self._pos]
        self._pos += 1
        return v

    def raw(self, n: int) -> bytes:
        self._need(n)
        v = self._data[self._pos : self._pos + n]
        self._pos += n
        return v

    def rest(self) -> bytes:
        v = self._data[self._pos :]
        self._pos = len(self._data)
        return v

    def cstring(self, *, lenient: bool = False) -> str:
        end = self._data.find(b"\x00", self._pos)
        if end < 0:
            raise ProtocolError("invalid string in message")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if lenient:
                return raw.decode("utf-8", errors="replace")
            bad = raw[exc.start : exc.start + 1].hex()
            raise MessageTextError(
                self._type, f'invalid byte sequence for encoding "UTF8": 0x{bad}'
            ) from None

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError("invalid message format")


def _parse_body(message_type: bytes, body: bytes) -> FrontendMessage:
    r = _BodyReader(message_type, body)
    msg: FrontendMessage
    if message_type == b"Q":
        msg = Query(r.cstring())
    elif message_type == b"P":
        name = r.cstring()
        sql = r.cstring()
        msg = Parse(name, sql, tuple(r.uint32() for _ in range(r.uint16())))
    elif message_type == b"B":
        portal = r.cstring()
        statement = r.cstring()
        formats = tuple(r.int16() for _ in range(r.uint16()))
        params: list[bytes | None] = []
        for _ in range(r.uint16()):
            size = r.int32()
            if size == -1:
                params.append(None)
            elif size < 0:
                raise ProtocolError(f"invalid parameter length {size}")
            else:
                params.append(r.raw(size))
        result_formats = tuple(r.int16() for _ in range(r.uint16()))
        msg = Bind(portal, statement, formats, tuple(params), result_formats)
    elif message_type == b"D" or message_type == b"C":
        kind = chr(r.byte())
        if kind not in ("S", "P"):
            what = "DESCRIBE" if message_type == b"D" else "CLOSE"
            raise ProtocolError(f"invalid {what} message subtype {ord(kind)}")
        name = r.cstring()
        msg = Describe(kind, name) if message_type == b"D" else Close(kind, name)
    elif message_type == b"E":
        portal = r.cstring()
        msg = Execute(portal, r.int32())
    elif message_type == b"S":
        msg = Sync()
    elif message_type == b"H":
        msg = Flush()
    elif message_type == b"d":
        return CopyData(body)
    elif message_type == b"c":
        msg = CopyDone()
    elif message_type == b"f":
        msg = CopyFail(r.cstring(lenient=True))
    elif message_type == b"X":
        msg = Terminate()
    elif message_type == b"p":
        return AuthenticationResponse(body)
    elif message_type == b"F":
        r.rest()
        msg = FunctionCall()
    else:  # pragma: no cover - filtered by _KNOWN_TYPES
        raise ProtocolError(f"invalid frontend message type {message_type[0]}")
    r.end()
    return msg


_SYNC = Sync()
_FLUSH = Flush()
_NO_PARAMS: tuple[int, ...] = ()
# Format-code and OID arrays of the usual lengths, compiled once.
_INT16_ARRAYS = [struct.Struct(f"!{n}h") for n in range(17)]
_UINT32_ARRAYS = [struct.Struct(f"!{n}I") for n in range(17)]


def _int16_array(body: bytes, count: int, pos: int) -> tuple[int, ...]:
    if not count:
        return _NO_PARAMS
    return (_INT16_ARRAYS[count] if count < 17 else struct.Struct(f"!{count}h")).unpack_from(body, pos)


def _parse_common(code: int, body: bytes) -> FrontendMessage | None:
    """The messages of every query (Bind, Execute, Describe, Sync, Parse, Query), parsed without
    _BodyReader's per-field calls: about a third of the cost, and this runs several times a query.

    Returns None for anything irregular (or any other type), which _parse_body then parses with
    every check and the exact error it reports.
    """
    try:
        if code == 0x53 or code == 0x48:  # Sync, Flush
            return None if body else (_SYNC if code == 0x53 else _FLUSH)
        if code == 0x45:  # Execute
            z = body.index(0)
            if z + 5 != len(body):
                return None
            return Execute(body[:z].decode() if z else "", _INT32.unpack_from(body, z + 1)[0])
        if code == 0x44:  # Describe
            kind = body[0]
            if (kind != 0x50 and kind != 0x53) or body.index(0, 1) != len(body) - 1:
                return None
            return Describe("P" if kind == 0x50 else "S", body[1:-1].decode())
        if code == 0x42:  # Bind
            z = body.index(0)
            portal = body[:z].decode() if z else ""
            p = z + 1
            z = body.index(0, p)
            statement = body[p:z].decode()
            p = z + 1
            (count,) = _UINT16.unpack_from(body, p)
            p += 2
            formats = _int16_array(body, count, p)
            p += 2 * count
            (count,) = _UINT16.unpack_from(body, p)
            p += 2
            params: list[bytes | None] = []
            for _ in range(count):
                (size,) = _INT32.unpack_from(body, p)
                p += 4
                if size == -1:
                    params.append(None)
                elif size < 0 or p + size > len(body):
                    return None
                else:
                    params.append(body[p : p + size])
                    p += size
            (count,) = _UINT16.unpack_from(body, p)
            p += 2
            result_formats = _int16_array(body, count, p)
            if p + 2 * count != len(body):
                return None
            return Bind(portal, statement, formats, tuple(params), result_formats)
        if code == 0x50:  # Parse
            z = body.index(0)
            name = body[:z].decode()
            p = z + 1
            z = body.index(0, p)
            sql = body[p:z].decode()
            (count,) = _UINT16.unpack_from(body, z + 1)
            if z + 3 + 4 * count != len(body):
                return None
            oids = (_UINT32_ARRAYS[count] if count < 17 else struct.Struct(f"!{count}I")).unpack_from(body, z + 3)
            return Parse(name, sql, oids)
        if code == 0x51:  # Query
            if body.index(0) != len(body) - 1:
                return None
            return Query(body[:-1].decode())
    except (ValueError, IndexError, struct.error):  # UnicodeDecodeError is a ValueError
        return None
    return None


def _parse_startup(body: bytes) -> StartupPacket:
    r = _BodyReader(b"", body)
    code = r.int32()
    if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
        r.end()
        return SSLRequest() if code == SSL_REQUEST_CODE else GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid, secret = r.int32(), r.int32()
        r.end()
        return CancelRequest(pid, secret)
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0", "0A000"
        )
    params: dict[str, str] = {}
    try:
        while True:
            name = r.cstring()
            if not name:
                break
            params[name] = r.cstring()
    except MessageTextError:
        raise ProtocolError("invalid byte sequence in startup packet") from None
    except ProtocolError:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte") from None
    r.end()
    return StartupMessage(code, params)


class FrontendDecoder:
    """Turns the bytes a client sends into messages; never reads or writes a socket.

    Starts in startup mode (the first packet has no type byte); the server switches
    ``expect_startup`` off once a StartupMessage arrives. :meth:`next_message` returns None
    until a whole message is buffered.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, expect_startup: bool = True) -> None:
        self.max_message_size = max_message_size
        self.expect_startup = expect_startup
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos

    def peek_type(self) -> bytes | None:
        """The type byte of the next (possibly incomplete) message, if any byte is buffered."""
        if self.expect_startup or self.buffered < 1:
            return None
        return bytes(self._buf[self._pos : self._pos + 1])

    def next_message(self) -> FrontendMessage | StartupPacket | None:
        avail = len(self._buf) - self._pos
        if self.expect_startup:
            if avail < 4:
                return None
            (length,) = _INT32.unpack_from(self._buf, self._pos)
            if length < 8 or length > MAX_STARTUP_PACKET_LENGTH:
                raise ProtocolError("invalid length of startup packet")
            if avail < length:
                return None
            body = bytes(self._buf[self._pos + 4 : self._pos + length])
            self._pos += length
            return _parse_startup(body)
        if avail < 5:
            return None
        message_type, length = _HEADER.unpack_from(self._buf, self._pos)
        code = message_type[0]
        if code not in _KNOWN_TYPES:
            raise ProtocolError(f"invalid frontend message type {code}")
        limit = self.max_message_size if code in _LARGE_TYPES else SMALL_MESSAGE_LIMIT
        if length < 4 or length - 4 > limit:
            raise ProtocolError(f"invalid message length {length} for message type 0x{code:02X}")
        if avail < 1 + length:
            return None
        start = self._pos + 5
        body = bytes(self._buf[start : start + length - 4])
        self._pos = start + length - 4
        return _parse_common(code, body) or _parse_body(message_type, body)

    def __iter__(self) -> Iterator[FrontendMessage | StartupPacket]:
        while (msg := self.next_message()) is not None:
            yield msg

    def take_buffered(self) -> bytes:
        """Everything buffered and not yet returned as messages, removed from the decoder."""
        rest = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return rest

    def take_copy_data(self, out: list[bytes | memoryview], limit: int, data: bytes = b"") -> int:
        """Append to ``out`` the payloads of the whole CopyData messages at the front of what is
        buffered followed by ``data``, up to about ``limit`` bytes or until anything else is next
        (another message, a partial one, a bad header: :meth:`next_message` returns or reports it);
        the rest stays buffered. Returns the bytes appended. Payloads in ``data`` are views of it,
        with no copy, when nothing was buffered before it: the bulk path of COPY FROM STDIN, whose
        caller joins them once."""
        if self.expect_startup:
            self.feed(data)
            return 0
        if self.buffered:
            if data:
                self.feed(data)
            self._pos, size = self._payloads(self._buf, self._pos, out, limit, copy=True)
            return size
        end, size = self._payloads(data, 0, out, limit, copy=False)
        if end < len(data):
            self.feed(memoryview(data)[end:])
        return size

    def _payloads(self, buf: bytes | bytearray, pos: int, out: list[bytes | memoryview], limit: int, *,
                  copy: bool) -> tuple[int, int]:
        """Whole CopyData payloads of ``buf`` from ``pos`` onto ``out`` (copies of them when ``buf`` is the
        decoder's own buffer, which changes); the position after them and their size."""
        end, size = len(buf), 0
        view = memoryview(buf)
        try:
            while size < limit and end - pos >= 5 and buf[pos] == 0x64:
                (length,) = _INT32.unpack_from(buf, pos + 1)
                if length < 4 or length - 4 > self.max_message_size or end - pos < 1 + length:
                    break
                payload = view[pos + 5 : pos + 1 + length]
                out.append(bytes(payload) if copy else payload)
                size += length - 4
                pos += 1 + length
        finally:
            if copy:
                view.release()
        return pos, size


def parse_sasl_initial_response(data: bytes) -> tuple[str, bytes | None]:
    """SASLInitialResponse body -> (mechanism, client-first-message or None)."""
    r = _BodyReader(b"p", data)
    try:
        mechanism = r.cstring()
    except MessageTextError:
        raise ProtocolError("invalid SASL mechanism name") from None
    size = r.int32()
    payload = None if size == -1 else r.raw(size)
    r.end()
    return mechanism, payload


# --------------------------------------------------------------------------- backend messages


def _message(message_type: bytes, body: bytes = b"") -> bytes:
    return message_type + _INT32.pack(len(body) + 4) + body


def _cstr(s: str) -> bytes:
    return s.replace("\x00", "").encode("utf-8") + b"\x00"


AUTHENTICATION_OK = _message(b"R", _INT32.pack(0))
PARSE_COMPLETE = _message(b"1")
BIND_COMPLETE = _message(b"2")
CLOSE_COMPLETE = _message(b"3")
NO_DATA = _message(b"n")
PORTAL_SUSPENDED = _message(b"s")
EMPTY_QUERY_RESPONSE = _message(b"I")


def encode_authentication_ok() -> bytes:
    return AUTHENTICATION_OK


def encode_authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    return _message(b"R", _INT32.pack(10) + b"".join(_cstr(m) for m in mechanisms) + b"\x00")


def encode_authentication_sasl_continue(data: bytes) -> bytes:
    return _message(b"R", _INT32.pack(11) + data)


def encode_authentication_sasl_final(data: bytes) -> bytes:
    return _message(b"R", _INT32.pack(12) + data)


def encode_parameter_status(name: str, value: str) -> bytes:
    return _message(b"S", _cstr(name) + _cstr(value))


def encode_backend_key_data(process_id: int, secret_key: int) -> bytes:
    return _message(b"K", _INT32.pack(process_id) + _INT32.pack(secret_key))


def encode_ready_for_query(status: str) -> bytes:
    if status not in ("I", "T", "E"):
        raise ValueError(f"invalid transaction status {status!r}")
    return _message(b"Z", status.encode("ascii"))


def encode_negotiate_protocol_version(newest_minor: int, unrecognized: Sequence[str]) -> bytes:
    body = _INT32.pack(newest_minor) + _INT32.pack(len(unrecognized))
    return _message(b"v", body + b"".join(_cstr(o) for o in unrecognized))


_FIELD = struct.Struct("!ihihih")  # table oid, column no, type oid, type size, typmod, format


def encode_row_description(columns: Sequence[ColumnDesc], formats: Sequence[int], type_sizes: Sequence[int]) -> bytes:
    """``type_sizes`` overrides ColumnDesc.type_size (the server fills in pg_type.typlen)."""
    parts = [_INT16.pack(len(columns))]
    for col, fmt, size in zip(columns, formats, type_sizes, strict=True):
        parts.append(_cstr(col.name))
        parts.append(_FIELD.pack(col.table_oid, col.column_number, col.type_oid, size, col.typmod, fmt))
    return _message(b"T", b"".join(parts))


def encode_data_row(values: Sequence[bytes | None]) -> bytes:
    """One DataRow from already encoded values (the batch encoder lives in column_encoding)."""
    parts = [_INT16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_INT32.pack(-1))
        else:
            parts.append(_INT32.pack(len(v)))
            parts.append(v)
    return _message(b"D", b"".join(parts))


def encode_command_complete(tag: str) -> bytes:
    return _message(b"C", _cstr(tag))


def encode_empty_query_response() -> bytes:
    return EMPTY_QUERY_RESPONSE


def _error_fields(err: PgError, severity: str | None) -> bytes:
    sev = severity or err.severity or "ERROR"
    fields: list[tuple[bytes, str | None]] = [
        (b"S", sev),
        (b"V", sev),
        (b"C", err.sqlstate),
        (b"M", err.message),
        (b"D", err.detail),
        (b"H", err.hint),
        (b"P", str(err.position) if err.position is not None else None),
        (b"W", err.where),
        (b"R", err.routine),
    ]
    return b"".join(code + _cstr(value) for code, value in fields if value is not None) + b"\x00"


def encode_error_response(err: PgError, *, severity: str | None = None) -> bytes:
    """ErrorResponse with fields S, V, C, M and, when set, D, H, P, W, R."""
    return _message(b"E", _error_fields(err, severity))


def encode_notice_response(notice: PgError) -> bytes:
    return _message(b"N", _error_fields(notice, notice.severity if notice.severity != "ERROR" else "NOTICE"))


def encode_parse_complete() -> bytes:
    return PARSE_COMPLETE


def encode_bind_complete() -> bytes:
    return BIND_COMPLETE


def encode_close_complete() -> bytes:
    return CLOSE_COMPLETE


def encode_no_data() -> bytes:
    return NO_DATA


def encode_portal_suspended() -> bytes:
    return PORTAL_SUSPENDED


def encode_parameter_description(oids: Sequence[int]) -> bytes:
    return _message(b"t", _INT16.pack(len(oids)) + b"".join(_UINT32.pack(o) for o in oids))


def encode_copy_in_response(columns: int, *, binary: bool = False) -> bytes:
    fmt = 1 if binary else 0
    return _message(b"G", bytes([fmt]) + _INT16.pack(columns) + _INT16.pack(fmt) * columns)


def encode_copy_out_response(columns: int, *, binary: bool = False) -> bytes:
    fmt = 1 if binary else 0
    return _message(b"H", bytes([fmt]) + _INT16.pack(columns) + _INT16.pack(fmt) * columns)


def encode_copy_data(payload: bytes) -> bytes:
    return _message(b"d", payload)


COPY_DONE = _message(b"c")
