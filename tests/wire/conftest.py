"""Fixtures for wire/: a WireServer over the fake engine on 127.0.0.1, port 0, in a background loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.wire.fake_session import FakeFactory
from wire.server import WireServer

PASSWORD = "s3cret-pässword"


@dataclass
class RunningServer:
    host: str
    port: int
    factory: FakeFactory
    loop: asyncio.AbstractEventLoop
    wire: WireServer
    password: str | None = None

    def dsn(self, **extra: str) -> str:
        parts = {"host": self.host, "port": str(self.port), "user": "postgres", "dbname": "sqlvec",
                 "connect_timeout": "10", **extra}
        if self.password is not None and "password" not in extra:
            parts["password"] = self.password
        return " ".join(f"{k}='{v}'" for k, v in parts.items())


def _start(password: str | None, **options: int) -> tuple[RunningServer, threading.Thread]:
    factory = FakeFactory()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            wire = WireServer(factory, password=password, **options)
            server = await wire.start("127.0.0.1", 0)
            holder["wire"] = wire
            holder["port"] = server.sockets[0].getsockname()[1]
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="wire-test-server", daemon=True)
    thread.start()
    assert ready.wait(10)
    running = RunningServer("127.0.0.1", int(holder["port"]), factory, loop, holder["wire"],  # type: ignore[arg-type]
                            password)
    return running, thread


def _stop(running: RunningServer, thread: threading.Thread) -> None:
    asyncio.run_coroutine_threadsafe(running.wire.close(), running.loop).result(10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    thread.join(10)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[RunningServer]:
    running, thread = _start(None)
    yield running
    _stop(running, thread)


@pytest.fixture(scope="session")
def password_server() -> Iterator[RunningServer]:
    running, thread = _start(PASSWORD)
    yield running
    _stop(running, thread)


@pytest.fixture()
def small_batch_server() -> Iterator[RunningServer]:
    """Tiny fetch batches, so streaming and PortalSuspended paths run with few rows."""
    running, thread = _start(None, batch_rows=7)
    yield running
    _stop(running, thread)


@pytest.fixture(scope="session")
def subprocess_server() -> Iterator[RunningServer]:
    """The fake server in a child process (its factory is not visible from the tests)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.wire.serve_fake"], cwd=root, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line.startswith("port "), line
    yield RunningServer("127.0.0.1", int(line.split()[1]), FakeFactory(), asyncio.new_event_loop(), None, None)  # type: ignore[arg-type]
    proc.stdin.close()
    proc.wait(10)
