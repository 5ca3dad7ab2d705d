"""Acknowledged rows survive kill -9; a torn WAL tail is dropped at recovery."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from sqlvec import bench_data, bench_writes
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


def _copy_text(n: int, first: int = 0, dim: int = 128) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(first)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    lines = [f"{first + i}\t{t}\n" for i, t in enumerate(bench_data.to_text(vectors))]
    return "".join(lines).encode(), bench_data.parse_text(bench_data.to_text(vectors), dim)


def _leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "wal").iterdir() if p.name.startswith("staged-"))


def test_staged_copy_survives_kill_9_and_failed_copies_leave_nothing(tmp_path: Path):
    """A COPY past --stage-bytes writes its rows beside the WAL as they arrive and logs the file's name:
    after kill -9 every acknowledged row is back, from that file. A COPY that fails after staging began,
    or whose client goes away, leaves no row and no staged file."""
    data = tmp_path / "data"
    env = {"SQLVEC_STAGE_BYTES": "1"}
    payload, vectors = _copy_text(20_000)  # > 16 MB: decoded (and staged) before CopyDone
    server = start_server(data, extra_env=env)
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE s (id bigint PRIMARY KEY, e vector(128))")
        with c.cursor().copy("COPY s (id, e) FROM STDIN") as cp:
            for i in range(0, len(payload), 1 << 20):
                cp.write(payload[i:i + (1 << 20)])
        wide = np.random.default_rng(9).standard_normal((40_000, 128)).astype(np.float32)  # 21 MB in binary
        binary = bench_writes.binary_stream(np.arange(40_000, dtype=np.int64), wide,
                                            np.arange(40_000, dtype=np.int32) % 7)
        c.execute("CREATE TABLE b (id bigint PRIMARY KEY, embedding vector(128), bucket int)")
        with c.cursor().copy("COPY b (id, embedding, bucket) FROM STDIN (FORMAT binary)") as cp:
            for i in range(0, len(binary), 1 << 20):
                cp.write(binary[i:i + (1 << 20)])
    staged = [p.name for p in (data / "wal").iterdir() if p.name.endswith(".rows")]
    assert len(staged) == 2  # the staged path was taken, by text and by binary
    server.kill()

    server = start_server(data, extra_env=env)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM s").fetchone() == (20_000,)
            assert c.execute("SELECT count(*), sum(bucket) FROM b").fetchone() == (40_000, sum(i % 7 for i in range(40_000)))
            text = c.execute("SELECT embedding::text FROM b WHERE id = 32345").fetchone()[0]
            assert np.array_equal(bench_data.parse_text([text], 128)[0], wide[32345])
            got = c.execute("SELECT id, e::text FROM s WHERE id IN (0, 7777, 19999) ORDER BY id").fetchall()
            assert [r[0] for r in got] == [0, 7777, 19999]
            for (i, text), want in zip(got, vectors[[0, 7777, 19999]]):
                assert np.array_equal(bench_data.parse_text([text], 128)[0], want), i

            bad, _ = _copy_text(20_000, first=100_000)
            with pytest.raises(psycopg.errors.InvalidTextRepresentation), c.cursor().copy(
                    "COPY s (id, e) FROM STDIN") as cp:
                cp.write(bad)
                cp.write(b"x\t[1]\n")  # the last line is bad: everything before it is already staged
            assert c.execute("SELECT count(*) FROM s").fetchone() == (20_000,)
            assert _leftovers(data) == []

        cut = psycopg.connect(server.dsn, autocommit=True)
        copying = cut.cursor().copy("COPY s (id, e) FROM STDIN")
        more, _ = _copy_text(40_000, first=200_000)
        copying.__enter__().write(more[: 40 << 20])  # two chunks: the first is finished once the second is in
        deadline = time.time() + 10
        while not _leftovers(data) and time.time() < deadline:  # sent, decoded and being staged
            time.sleep(0.05)
        assert _leftovers(data)
        socket.socket(fileno=os.dup(cut.pgconn.socket)).shutdown(socket.SHUT_RDWR)  # the client goes away
        with contextlib.suppress(psycopg.Error):
            copying.__exit__(None, None, None)
        cut.close()
        deadline = time.time() + 10
        while _leftovers(data) and time.time() < deadline:
            time.sleep(0.1)
        assert _leftovers(data) == []
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM s").fetchone() == (20_000,)
    finally:
        server.stop()
