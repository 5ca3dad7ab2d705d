"""Run a WireServer over the fake engine in its own process: ``python -m tests.wire.serve_fake``.

Prints ``port N`` once listening and stops when its stdin closes. Used where client and server
must not share a process (libpq's blocking PQcancel holds the GIL in psycopg's C extension).
"""

from __future__ import annotations

import asyncio
import sys

from tests.wire.fake_session import FakeFactory
from wire.server import WireServer, run


async def main() -> None:
    wire = WireServer(FakeFactory())
    server = await wire.start("127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await wire.close()


if __name__ == "__main__":
    run(main())  # uvloop's loop where it is installed, as the real server should run
