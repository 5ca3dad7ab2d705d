"""COPY FROM STDIN's receive path: the socket is read straight into the pieces fed to the sink.

During a bulk COPY nearly every byte a client sends is CopyData payload, and the stream path
copied each one four times: ``recv`` into a new bytes object, into the StreamReader's buffer,
out of it by ``read()``, and into the joined piece. While the data flows, the connection hands
its transport to a :class:`CopyReceiver` (an asyncio BufferedProtocol): ``recv_into`` fills the
piece being built, and once it holds ``piece_bytes`` of whole CopyData messages their 5-byte
headers are squeezed out in place (one ``memmove`` pass), so the piece the sink gets is exactly
the payloads, in order.

The receiver only walks the headers: type ``d`` and a length within the server's limit. Anything
else (CopyDone, CopyFail, Flush, a bad header) ends its run: the bytes from there on go back to the
connection's FrontendDecoder, which decodes or reports them, and the transport goes back to the
stream's protocol. Flow control is the transport's: reading pauses while a piece is full and
waits for the connection to take it. Connection loss and EOF are passed on to the stream's protocol.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

_INT32 = struct.Struct("!i")
_SLACK = 1 << 20  # room beyond piece_bytes, so a read never gets a tiny buffer
_MIN_READ = 64 << 10  # pause when less than this is left: the piece is full


class CopyReceiver(asyncio.BufferedProtocol):
    """Reads a COPY's CopyData messages from ``transport`` into pieces of about ``piece_bytes`` of
    payload; see the module doc. ``initial`` holds bytes already received (the decoder's and the
    stream's buffers). Use :meth:`next_piece` until it says the run is done, then :meth:`release`."""

    def __init__(self, transport: Any, outer: asyncio.BaseProtocol, *, piece_bytes: int, max_message_size: int,
                 initial: bytes = b"") -> None:
        self.transport = transport
        self.outer = outer
        self.piece_bytes = piece_bytes
        self.max_message_size = max_message_size
        self._buf = bytearray(max(piece_bytes + _SLACK, len(initial) + _SLACK))
        self._buf[: len(initial)] = initial
        self._filled = len(initial)
        self._scan = 0  # the end of the whole CopyData messages at the front of the buffer
        self._stop = False  # something other than a whole or partial CopyData begins at _scan
        self._ended = False  # EOF or connection lost
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._walk()
        transport.set_protocol(self)

    # -------------------------------------------------------------- the transport's side

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._buf) - self._filled < _MIN_READ:  # not reached: reading pauses first
            grown = bytearray(len(self._buf) + _SLACK)
            grown[: self._filled] = memoryview(self._buf)[: self._filled]
            self._buf = grown
        return memoryview(self._buf)[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        self._walk()
        if self._ready():
            self._pause()
            self._wake()

    def eof_received(self) -> bool | None:
        self._ended = True
        self._wake()
        return self.outer.eof_received()  # type: ignore[attr-defined,no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()
        self.outer.connection_lost(exc)

    def pause_writing(self) -> None:
        self.outer.pause_writing()

    def resume_writing(self) -> None:
        self.outer.resume_writing()

    # -------------------------------------------------------------- the connection's side

    async def next_piece(self) -> tuple[bytearray, bool]:
        """The payloads of the next ``piece_bytes`` or so of whole CopyData messages (possibly none), and
        whether the run is done: something else is next, or the connection ended."""
        while not self._ready():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        done = self._stop or self._ended
        piece = self._take(keep_reading=not done)
        return piece, done

    def release(self) -> bytes:
        """Give the transport back to the stream's protocol; the bytes received past the last whole
        CopyData taken, for the connection's decoder."""
        rest = bytes(self._buf[self._scan: self._filled])
        self._buf, self._filled, self._scan = bytearray(), 0, 0
        self.transport.set_protocol(self.outer)
        if self._paused and not self.transport.is_closing():
            self.transport.resume_reading()
        self._paused = False
        return rest

    # -------------------------------------------------------------- inside

    def _walk(self) -> None:
        """Advance _scan over the whole CopyData messages received; stop at anything else."""
        buf, pos, end = self._buf, self._scan, self._filled
        while end - pos >= 5:
            if buf[pos] != 0x64:
                self._stop = True
                break
            (length,) = _INT32.unpack_from(buf, pos + 1)
            if length < 4 or length - 4 > self.max_message_size:
                self._stop = True  # the decoder reports the bad length
                break
            if end - pos < 1 + length:
                break
            pos += 1 + length
        self._scan = pos

    def _take(self, *, keep_reading: bool) -> bytearray:
        """The payloads of the whole messages before _scan, squeezed together in place. The bytes after
        them start the next buffer (sized for the partial message there, if it is larger than a piece),
        or, when the run is done, wait there for release()."""
        piece, scan = self._buf, self._scan
        written = pos = 0
        with memoryview(piece) as view:
            while pos < scan:
                (length,) = _INT32.unpack_from(piece, pos + 1)
                view[written: written + length - 4] = view[pos + 5: pos + 1 + length]
                written += length - 4
                pos += 1 + length
            rest = bytes(view[scan: self._filled])
        try:
            del piece[written:]
        except BufferError:  # the transport's view of it lives on (a read error's traceback holds it)
            piece = bytearray(memoryview(piece)[:written])
        if keep_reading:
            need = _INT32.unpack_from(rest, 1)[0] + 1 if len(rest) >= 5 else 0
            self._buf = bytearray(max(self.piece_bytes, need) + _SLACK)
            self._buf[: len(rest)] = rest
        else:
            self._buf = bytearray(rest)
        self._filled, self._scan = len(rest), 0
        self._walk()
        if keep_reading and self._paused and not self._ready():
            self._paused = False
            self.transport.resume_reading()
        return piece

    def _ready(self) -> bool:
        """A piece is there to take: the run is done, enough whole messages are in, or the buffer is full."""
        return self._stop or self._ended or self._scan >= self.piece_bytes or len(self._buf) - self._filled < _MIN_READ

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
