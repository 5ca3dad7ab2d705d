"""Test-side halves of the protocol: frontend message builders and a backend message parser.

Written independently of wire/codec.py (plain struct calls), so the tests check wire against the
protocol documentation rather than against itself.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wire.server import Connection, WireServer


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def startup(user: str = "postgres", database: str = "sqlvec", **params: str) -> bytes:
    body = struct.pack("!i", 196608) + cstr("user") + cstr(user) + cstr("database") + cstr(database)
    for k, v in params.items():
        body += cstr(k) + cstr(v)
    body += b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!ii", 8, 80877103)


def gssenc_request() -> bytes:
    return struct.pack("!ii", 8, 80877104)


def cancel_request(pid: int, secret: int) -> bytes:
    return struct.pack("!iiii", 16, 80877102, pid, secret)


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(sql: str, name: str = "", oids: Sequence[int] = ()) -> bytes:
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(oids)) + b"".join(struct.pack("!I", o) for o in oids))


def bind(params: Sequence[bytes | None] = (), *, portal: str = "", statement: str = "",
         param_formats: Sequence[int] = (), result_formats: Sequence[int] = ()) -> bytes:
    body = cstr(portal) + cstr(statement)
    body += struct.pack("!h", len(param_formats)) + b"".join(struct.pack("!h", f) for f in param_formats)
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!h", len(result_formats)) + b"".join(struct.pack("!h", f) for f in result_formats)
    return msg(b"B", body)


def describe(kind: str, name: str = "") -> bytes:
    return msg(b"D", kind.encode() + cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind: str, name: str = "") -> bytes:
    return msg(b"C", kind.encode() + cstr(name))


SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")
COPY_DONE = msg(b"c")


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def copy_fail(reason: str) -> bytes:
    return msg(b"f", cstr(reason))


@dataclass
class Backend:
    """One parsed backend message."""

    kind: str
    body: bytes
    fields: dict[str, str] = field(default_factory=dict)
    values: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Backend({self.kind!r}, {self.fields or self.values or self.body!r})"


def parse_backend(data: bytes, *, ssl_answers: int = 0) -> list[Backend]:
    """``ssl_answers``: how many single-byte answers to SSLRequest/GSSENCRequest come first."""
    out: list[Backend] = []
    pos = 0
    for _ in range(ssl_answers):
        out.append(Backend("ssl-" + chr(data[pos]), b""))
        pos += 1
    while pos < len(data):
        kind = chr(data[pos])
        (length,) = struct.unpack_from("!i", data, pos + 1)
        body = data[pos + 5 : pos + 1 + length]
        assert len(body) == length - 4, f"truncated {kind} message"
        pos += 1 + length
        m = Backend(kind, body)
        if kind in "EN":
            for part in body[:-1].split(b"\x00"):
                if part:
                    m.fields[chr(part[0])] = part[1:].decode()
        elif kind == "D":
            (n,) = struct.unpack_from("!h", body)
            p = 2
            for _ in range(n):
                (size,) = struct.unpack_from("!i", body, p)
                p += 4
                if size < 0:
                    m.values.append(None)
                else:
                    m.values.append(body[p : p + size])
                    p += size
            assert p == len(body)
        elif kind == "T":
            (n,) = struct.unpack_from("!h", body)
            p = 2
            for _ in range(n):
                end = body.index(b"\x00", p)
                name = body[p:end].decode()
                _table, _col, oid, size, typmod, fmt = struct.unpack_from("!ihihih", body, end + 1)
                m.values.append((name, oid, size, typmod, fmt))
                p = end + 1 + 18
        elif kind == "C":
            m.values.append(body[:-1].decode())
        elif kind == "S":
            name, value, _ = body.split(b"\x00")
            m.fields[name.decode()] = value.decode()
        elif kind == "Z":
            m.values.append(body.decode())
        elif kind == "K":
            m.values.extend(struct.unpack("!ii", body))
        elif kind == "t":
            (n,) = struct.unpack_from("!h", body)
            m.values.extend(struct.unpack_from(f"!{n}I", body, 2))
        elif kind == "R":
            m.values.append(struct.unpack_from("!i", body)[0])
        out.append(m)
    return out


def kinds(messages: list[Backend]) -> str:
    return "".join(m.kind for m in messages)


class FakeWriter:
    """Collects what the connection writes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("test", 0) if name == "peername" else default


class FakeReader:
    """Hands the connection one chunk per read, like packets arriving one at a time."""

    def __init__(self, chunks: Sequence[bytes], eof: bool) -> None:
        self.chunks = list(chunks)
        self.eof = eof

    async def read(self, n: int) -> bytes:
        await asyncio.sleep(0)
        if self.chunks:
            chunk = self.chunks.pop(0)
            if len(chunk) > n:
                self.chunks.insert(0, chunk[n:])
            return chunk[:n]
        if self.eof:
            return b""
        await asyncio.Event().wait()  # never: the test ends the conversation itself
        return b""


async def _converse(server: WireServer, chunks: Sequence[bytes], eof: bool) -> bytes:
    reader = FakeReader(chunks, eof)
    writer = FakeWriter()
    conn = Connection(server, reader, writer)  # type: ignore[arg-type]
    await asyncio.wait_for(conn.run(), 10)
    assert writer.closed
    return bytes(writer.data)


def converse(factory: Any, *chunks: bytes, password: str | None = None, eof: bool = True,
             ssl_answers: int = 0, **options: Any) -> list[Backend]:
    """Feed ``chunks`` to one Connection (no socket) and parse everything it answers."""

    async def run() -> bytes:
        server = WireServer(factory, password=password, **options)
        try:
            return await _converse(server, chunks, eof)
        finally:
            await server.close()

    return parse_backend(asyncio.run(run()), ssl_answers=ssl_answers)


def after_startup(messages: list[Backend]) -> list[Backend]:
    """Drop the startup answer (R, S..., K, Z)."""
    first_z = next(i for i, m in enumerate(messages) if m.kind == "Z")
    return messages[first_z + 1 :]
