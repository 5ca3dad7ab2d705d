"""wire/copy_receive.py: COPY FROM STDIN read straight into the sink's pieces.

Two layers: the CopyReceiver driven as a transport drives it (get_buffer / buffer_updated with
reads cut anywhere), and a real socket to the fake server with tiny pieces, where the
connection hands its transport over and takes it back around other messages."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.wire import protocol_helpers as fe
from tests.wire.conftest import RunningServer, _start, _stop
from wire import server as wire_server
from wire.copy_receive import CopyReceiver


class FakeTransport:
    def __init__(self) -> None:
        self.protocol: Any = None
        self.reading = True
        self.pauses = 0

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def pause_reading(self) -> None:
        assert self.reading
        self.reading, self.pauses = False, self.pauses + 1

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def is_closing(self) -> bool:
        return False


class Outer(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def eof_received(self) -> bool:
        self.events.append("eof")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


def deliver(receiver: CopyReceiver, transport: FakeTransport, data: bytes, rng: random.Random) -> bytes:
    """Hand ``data`` over in reads of random sizes, as far as the receiver reads; what is left."""
    while data and transport.reading:
        view = receiver.get_buffer(-1)
        n = min(len(view), len(data), rng.randint(1, 70_000))
        view[:n] = data[:n]
        del view
        receiver.buffer_updated(n)
        data = data[n:]
    return data


@pytest.mark.parametrize("seed", range(4))
def test_pieces_are_the_payloads_in_order_and_the_rest_goes_back(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [rng.randbytes(rng.choice([0, 1, 100, 5000, 70_000, 300_000])) for _ in range(60)]
    stream = b"".join(fe.copy_data(p) for p in payloads) + fe.COPY_DONE + fe.query("select 1")

    async def run() -> tuple[bytes, bytes, list[int]]:
        transport, outer = FakeTransport(), Outer()
        transport.set_protocol(outer)
        receiver = CopyReceiver(transport, outer, piece_bytes=200_000, max_message_size=1 << 20,
                                initial=stream[:3])  # a header cut short, as if already buffered
        assert transport.protocol is receiver
        pending, got, sizes = stream[3:], bytearray(), []
        while True:
            pending = deliver(receiver, transport, pending, rng)
            piece, done = await receiver.next_piece()
            got += piece
            sizes.append(len(piece))
            if done:
                break
        rest = receiver.release()
        assert transport.protocol is outer and transport.reading
        return bytes(got), rest + pending, sizes

    got, rest, sizes = asyncio.run(run())
    assert got == b"".join(payloads)
    assert rest == fe.COPY_DONE + fe.query("select 1")
    assert len(sizes) > 3 and max(sizes) < 200_000 + 300_000 + 70_000


def test_a_message_larger_than_a_piece_gets_a_buffer_of_its_size() -> None:
    big = bytes(range(256)) * 20_000  # 5 MB, pieces of 64 KB
    stream = fe.copy_data(b"a" * 10) + fe.copy_data(big) + fe.copy_data(b"z") + fe.COPY_DONE

    async def run() -> tuple[list[bytes], bytes]:
        transport, outer = FakeTransport(), Outer()
        receiver = CopyReceiver(transport, outer, piece_bytes=64 << 10, max_message_size=8 << 20)
        pending, pieces, rng = stream, [], random.Random(1)
        while True:
            pending = deliver(receiver, transport, pending, rng)
            piece, done = await receiver.next_piece()
            pieces.append(bytes(piece))
            if done:
                return pieces, receiver.release() + pending

    pieces, rest = asyncio.run(run())
    assert b"".join(pieces) == b"a" * 10 + big + b"z" and rest == fe.COPY_DONE


@pytest.mark.parametrize("stream", [fe.copy_data(b"x") + b"d" + (2 << 20).to_bytes(4, "big") + b"...",
                                    fe.copy_data(b"x") + b"d\x00\x00\x00\x02", fe.copy_data(b"x") + fe.SYNC])
def test_a_bad_header_or_another_message_ends_the_run_untouched(stream: bytes) -> None:
    async def run() -> tuple[bytes, bool, bytes]:
        transport = FakeTransport()
        receiver = CopyReceiver(transport, Outer(), piece_bytes=1 << 20, max_message_size=1 << 20, initial=stream)
        piece, done = await receiver.next_piece()
        return bytes(piece), done, receiver.release()

    piece, done, rest = asyncio.run(run())
    assert piece == b"x" and done and rest == stream[6:]  # the decoder reports or handles what follows


def test_eof_and_connection_loss_reach_the_stream_and_end_the_run() -> None:
    async def run() -> tuple[list[str], bytes, bool]:
        transport, outer = FakeTransport(), Outer()
        receiver = CopyReceiver(transport, outer, piece_bytes=1 << 20, max_message_size=1 << 20,
                                initial=fe.copy_data(b"abc") + b"d\x00")
        waiting = asyncio.ensure_future(receiver.next_piece())
        await asyncio.sleep(0)
        assert not waiting.done()  # not a piece's worth yet, and the connection still open
        assert receiver.eof_received() is True
        receiver.connection_lost(None)
        piece, done = await waiting
        return outer.events, bytes(piece), done and receiver.release() == b"d\x00"

    events, piece, ok = asyncio.run(run())
    assert events == ["eof", "lost"] and piece == b"abc" and ok


# --------------------------------------------------------------------------- through a socket


@pytest.fixture()
def tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """The fake server feeding pieces of 300 bytes, and counting the receivers it starts."""
    monkeypatch.setattr(wire_server, "_COPY_FEED_BYTES", 300)
    started = []

    class Counted(CopyReceiver):
        def __init__(self, *args: Any, **kw: Any) -> None:
            started.append(self)
            super().__init__(*args, **kw)

    monkeypatch.setattr(wire_server, "CopyReceiver", Counted)
    running, thread = _start(None)
    running.receivers = started  # type: ignore[attr-defined]
    yield running
    _stop(running, thread)


def _exchange(port: int, chunks: list[bytes], *, ready: int) -> list[fe.Backend]:
    """Send ``chunks`` as separate packets; the answers up to the ``ready``-th ReadyForQuery after startup."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(0.002)  # separate packets, so reads end anywhere
        data = b""
        while data.count(b"Z\x00\x00\x00\x05I") < ready + 1:
            more = s.recv(1 << 16)
            assert more, data
            data += more
    return fe.after_startup(fe.parse_backend(data))


def test_copy_through_the_receiver_around_flush_and_sync(tiny_pieces: RunningServer) -> None:
    rows = b"".join(b"%d\tname %d\t[%d,0,1]\n" % (i, i, i) for i in range(200))
    messages = [fe.copy_data(rows[i: i + 97]) for i in range(0, len(rows), 97)]
    stream = b"".join(messages[:20]) + fe.FLUSH + fe.SYNC + b"".join(messages[20:]) + fe.COPY_DONE
    cuts = sorted(random.Random(3).sample(range(1, len(stream)), 40))
    packets = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    out = _exchange(tiny_pieces.port, [fe.startup(), fe.query("copy items from stdin"), *packets,
                                       fe.query("table items"), fe.TERMINATE], ready=2)
    assert out[0].kind == "G" and out[1].values == ["COPY 200"]
    assert fe.kinds(out[3:]) == "T" + "D" * 200 + "CZ"
    assert out[4].values == [b"0", b"name 0", b"[0,0,1]"] and out[-3].values[0] == b"199"
    (feeds,) = tiny_pieces.factory.copy_feeds
    assert feeds > 5  # fed in pieces of about 300 bytes
    assert len(tiny_pieces.receivers) == 2  # type: ignore[attr-defined]  # handed over again after Flush, Sync


def test_copy_fail_and_a_lost_connection_through_the_receiver(tiny_pieces: RunningServer) -> None:
    data = b"".join(fe.copy_data(b"%d\tx\t[1,2,3]\n" % i) for i in range(100))
    out = _exchange(tiny_pieces.port, [fe.startup(), fe.query("copy items from stdin"), data,
                                       fe.copy_fail("enough"), fe.query("select 1"), fe.TERMINATE], ready=2)
    assert fe.kinds(out) == "GEZTDCZ" and out[1].fields["C"] == "57014"
    with socket.create_connection(("127.0.0.1", tiny_pieces.port), timeout=10) as s:
        s.sendall(fe.startup() + fe.query("copy items from stdin") + data[:1000])
        time.sleep(0.2)
    for _ in range(200):
        if len(tiny_pieces.factory.aborted_copies) == 2:
            break
        time.sleep(0.01)
    assert tiny_pieces.factory.aborted_copies == ["enough", "connection closed during COPY"]
