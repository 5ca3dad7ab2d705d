"""Shared fixtures: a real sqlvec server process on a free port over a temporary data directory.

Tests that state PostgreSQL behaviour (marked ``pg_compatible``) can run against real PostgreSQL +
pgvector instead:

- ``SQLVEC_TEST_PG=pgserver``: start a reference PostgreSQL + pgvector from the ``pgserver`` package
  (the ``pgref`` extra; see sqlvec/pgref.py) for the session; every test not marked
  ``pg_compatible`` is skipped.
- ``SQLVEC_TEST_DSN``: use an already running server at that connection string.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pg_compatible: states PostgreSQL behaviour; runnable against real PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Against the reference PostgreSQL only the tests that state PostgreSQL behaviour make sense."""
    mode = os.environ.get("SQLVEC_TEST_PG")
    if not mode:
        return
    if mode != "pgserver":
        raise pytest.UsageError(f"SQLVEC_TEST_PG={mode!r}: the only reference mode is 'pgserver'")
    skip = pytest.mark.skip(reason="SQLVEC_TEST_PG=pgserver: not marked pg_compatible (sqlvec-only behaviour)")
    for item in items:
        if item.get_closest_marker("pg_compatible") is None:
            item.add_marker(skip)


@dataclass
class Server:
    host: str
    port: int
    data: Path
    proc: subprocess.Popen | None
    password: str | None = None

    @property
    def dsn(self) -> str:
        pw = f" password={self.password}" if self.password else ""
        return f"host={self.host} port={self.port} user=postgres dbname=sqlvec{pw}"

    @property
    def url(self) -> str:
        pw = f":{self.password}" if self.password else ""
        return f"postgresql://postgres{pw}@{self.host}:{self.port}/sqlvec"

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(data: Path, *, password: str | None = None, seal_rows: int | None = None,
                 extra_env: dict[str, str] | None = None) -> Server:
    cmd = [sys.executable, "-m", "sqlvec", "serve", "--host", "127.0.0.1", "--port", "0", "--data", str(data)]
    if password:
        cmd += ["--password", password]
    if seal_rows:
        cmd += ["--seal-rows", str(seal_rows)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log = open(data.parent / f"{data.name}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    assert proc.stderr is not None
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            if proc.poll() is not None:
                raise RuntimeError("sqlvec exited:\n" + "".join(lines))
            continue
        lines.append(line)
        if line.startswith("sqlvec ready on "):
            port = int(line.strip().rsplit(":", 1)[1])
            _drain(proc, log)
            return Server("127.0.0.1", port, data, proc, password)
    proc.kill()
    raise RuntimeError("sqlvec did not start:\n" + "".join(lines))


def _drain(proc: subprocess.Popen, log) -> None:
    """Keep reading the server's stderr into the log so it never blocks on a full pipe."""
    import threading

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            log.flush()

    threading.Thread(target=pump, daemon=True).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("SQLVEC_TEST_PG") == "pgserver":
        from sqlvec import pgref as pg_reference  # imported lazily: only this mode needs pgserver

        ref = pg_reference.start()
        try:
            sys.stderr.write(f"\nreference server: {ref.version()} at {ref.host}:{ref.port}\n")
            yield Server(ref.host, ref.port, ref.root, None)
        finally:
            ref.stop()
        return
    external = os.environ.get("SQLVEC_TEST_DSN")
    if external:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(external)
        yield Server(info.get("host", "127.0.0.1"), int(info.get("port", 5432)), Path("."), None,
                     info.get("password"))
        return
    data = tmp_path_factory.mktemp("server") / "data"
    s = start_server(data)
    yield s
    s.stop()


@pytest.fixture()
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for crash and restart tests."""
    s = start_server(tmp_path / "data")
    yield s
    s.stop()


@pytest.fixture()
def conn(server: Server):
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True) as c:
        yield c


_counter = [0]


@pytest.fixture()
def table_name(request: pytest.FixtureRequest) -> str:
    """A table name unique to the test, so tests sharing the server do not collide."""
    _counter[0] += 1
    return f"t_{request.node.name.split('[')[0][:30].lower()}_{_counter[0]}".replace("-", "_")
