"""Acknowledged rows survive kill -9; a torn WAL tail is dropped at recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from tests.conftest import start_server


def test_kill_9_keeps_every_acknowledged_row(tmp_path: Path):
    server = start_server(tmp_path / "data", seal_rows=500)
    acknowledged: list[int] = []
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE d (id int PRIMARY KEY, e vector(2))")
    stop = threading.Event()

    def writer() -> None:
        try:
            with psycopg.connect(server.dsn, autocommit=True) as c:
                i = 0
                while not stop.is_set():
                    c.execute("INSERT INTO d VALUES (%s, %s)", [i, f"[{i},{i}]"])
                    acknowledged.append(i)
                    i += 1
        except psycopg.Error:
            pass  # the server died under us

    th = threading.Thread(target=writer)
    th.start()
    while len(acknowledged) < 1200:  # past two seals
        threading.Event().wait(0.05)
    server.kill()
    stop.set()
    th.join(10)
    server = start_server(tmp_path / "data", seal_rows=500)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            ids = [r[0] for r in c.execute("SELECT id FROM d ORDER BY id").fetchall()]
            assert set(acknowledged) <= set(ids)
            # at most the one insert in flight at the kill may have landed without its acknowledgement
            assert len(ids) - len(acknowledged) <= 1
            assert ids == list(range(len(ids)))
            assert c.execute("SELECT count(*) FROM d").fetchone() == (len(ids),)
    finally:
        server.stop()


def test_torn_wal_tail_is_dropped(tmp_path: Path):
    data = tmp_path / "data"
    server = start_server(data)
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE w (id int PRIMARY KEY)")
        c.execute("INSERT INTO w VALUES (1)")
        c.execute("INSERT INTO w VALUES (2)")
    server.kill()
    wal_files = sorted(p for p in (data / "wal").iterdir() if p.is_file())
    last = wal_files[-1]
    size = last.stat().st_size
    with open(last, "r+b") as f:  # tear the last record: as if the machine died mid-write
        f.truncate(size - 3)
    server = start_server(data)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT id FROM w ORDER BY id").fetchall() == [(1,)]
            c.execute("INSERT INTO w VALUES (3)")  # and the log goes on from there
        server.stop()
        server = start_server(data)
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT id FROM w ORDER BY id").fetchall() == [(1,), (3,)]
    finally:
        server.stop()
