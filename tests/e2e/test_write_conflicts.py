"""sqlvec's own write rules, beside PostgreSQL's (test_writes.py): transactions conflict optimistically
(the later COMMIT fails with 40001 where PostgreSQL would make the later writer wait), a kill -9 keeps
all of a transaction or none of it, and vector search sees only the newest version of an updated row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.conftest import start_server


def test_the_later_of_two_transactions_on_a_row_fails_with_40001(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn) as a, psycopg.connect(server.dsn) as b:
        a.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int)")
        a.execute(f"INSERT INTO {t} VALUES (1, 0), (2, 0)")
        a.commit()
        a.execute(f"UPDATE {t} SET v = v + 1 WHERE id = 1")
        b.execute(f"UPDATE {t} SET v = v + 10 WHERE id = 1")
        b.execute(f"UPDATE {t} SET v = 5 WHERE id = 2")
        b.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            a.commit()
        assert a.execute(f"SELECT id, v FROM {t} ORDER BY id").fetchall() == [(1, 10), (2, 5)]
        a.rollback()
        # two transactions inserting the same new key: the later COMMIT is refused, one row stays
        a.execute(f"INSERT INTO {t} VALUES (3, 1)")
        b.execute(f"INSERT INTO {t} VALUES (3, 2)")
        a.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            b.commit()
        assert b.execute(f"SELECT v FROM {t} WHERE id = 3").fetchall() == [(1,)]


def test_a_batch_that_fails_midway_changes_nothing(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, v int NOT NULL, e vector(2))")
    conn.execute(f"INSERT INTO {table_name} SELECT g, g, '[1,1]' FROM generate_series(1, 100) g")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"INSERT INTO {table_name} VALUES (101, 1, '[0,0]'), (50, 1, '[0,0]'), (102, 1, '[0,0]')")
    with pytest.raises(psycopg.errors.DataException):
        conn.execute(f"INSERT INTO {table_name} VALUES (101, 1, '[0,0]'), (5, 1, '[0,0]') ON CONFLICT (id) DO UPDATE "
                     "SET e = '[1,2,3]'")
    with pytest.raises(psycopg.errors.DataException):
        conn.execute(f"UPDATE {table_name} SET e = CASE WHEN id = 70 THEN '[1,2,3]' ELSE '[2,2]' END")
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(f"UPDATE {table_name} SET v = CASE WHEN id = 99 THEN NULL ELSE 0 END")
    assert conn.execute(f"SELECT count(*), sum(v), min(e::text), max(e::text) FROM {table_name}").fetchone() == \
        (100, 5050, "[1,1]", "[1,1]")


def test_vector_search_sees_only_the_newest_version(tmp_path: Path):
    server = start_server(tmp_path / "data", seal_rows=1000)
    try:
        rng = np.random.default_rng(3)
        X = rng.standard_normal((3000, 8)).astype(np.float32)
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("CREATE TABLE v (id int PRIMARY KEY, tag int, e vector(8))")
            with c.cursor().copy("COPY v (id, tag, e) FROM STDIN") as cp:
                for i in range(len(X)):
                    cp.write_row((i, i % 10, "[" + ",".join(map(str, X[i])) + "]"))
            c.execute("CREATE INDEX ON v USING hnsw (e vector_l2_ops)")
            moved = np.arange(0, 3000, 5)  # 20% of the rows get new vectors, far from the old ones
            Y = (X[moved] + 100).astype(np.float32)
            with c.cursor() as cur:
                cur.executemany("UPDATE v SET e = %s WHERE id = %s",
                                [("[" + ",".join(map(str, y)) + "]", int(i)) for i, y in zip(moved, Y)])
            assert c.execute("SELECT count(*) FROM v").fetchone() == (3000,)
            for j in (0, 7, 311):
                q = "[" + ",".join(map(str, Y[j])) + "]"
                got = c.execute("SELECT id, e <-> %s FROM v ORDER BY e <-> %s LIMIT 1", [q, q]).fetchone()
                assert got[0] == moved[j] and got[1] < 1e-3
                old = "[" + ",".join(map(str, X[moved[j]])) + "]"
                near = [r[0] for r in c.execute("SELECT id FROM v ORDER BY e <-> %s LIMIT 5", [old]).fetchall()]
                assert moved[j] not in near  # the old version is gone from the index's answers
            c.execute("INSERT INTO v VALUES (0, 1, %s) ON CONFLICT (id) DO UPDATE SET tag = EXCLUDED.tag + 100",
                      ["[0,0,0,0,0,0,0,0]"])
            assert c.execute("SELECT tag FROM v WHERE id = 0").fetchone() == (101,)
            assert c.execute("SELECT count(*) FROM v WHERE tag >= 100").fetchone() == (1,)
    finally:
        server.stop()


def test_kill_9_keeps_each_transaction_whole(tmp_path: Path):
    """Transactions of 50 inserts and an update of a counter row: after kill -9, the counter equals
    the number of inserted rows (every transaction all or nothing), and every acknowledged one is there."""
    server = start_server(tmp_path / "data", seal_rows=400)
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE k (id int PRIMARY KEY, v int, e vector(2))")
        c.execute("INSERT INTO k VALUES (-1, 0, '[0,0]')")
    acknowledged = [0]
    stop = threading.Event()

    def writer() -> None:
        try:
            with psycopg.connect(server.dsn) as c:
                n = 0
                while not stop.is_set():
                    with c.cursor() as cur:
                        cur.executemany("INSERT INTO k VALUES (%s, 1, '[1,1]')", [(n + i,) for i in range(50)])
                    c.execute("UPDATE k SET v = v + 50 WHERE id = -1")
                    c.commit()
                    n += 50
                    acknowledged[0] = n
        except psycopg.Error:
            pass  # the server died under us

    th = threading.Thread(target=writer)
    th.start()
    deadline = time.time() + 60
    while acknowledged[0] < 1000 and time.time() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    th.join(10)
    server = start_server(tmp_path / "data", seal_rows=400)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            counter = c.execute("SELECT v FROM k WHERE id = -1").fetchone()[0]
            rows = c.execute("SELECT count(*) FROM k WHERE id >= 0").fetchone()[0]
            assert counter == rows and rows % 50 == 0
            assert acknowledged[0] <= rows <= acknowledged[0] + 50
    finally:
        server.stop()


def test_kill_9_during_a_large_copy_keeps_all_or_none(tmp_path: Path):
    server = start_server(tmp_path / "data")
    n = 60000
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big (id int PRIMARY KEY, e vector(16))")
    line = ("[" + ",".join(["0.5"] * 16) + "]").encode()
    payload = b"".join(b"%d\t%s\n" % (i, line) for i in range(n))
    sent = threading.Event()

    def copier() -> None:
        try:
            with psycopg.connect(server.dsn, autocommit=True) as c:
                with c.cursor().copy("COPY big FROM STDIN") as cp:
                    for k in range(0, len(payload), 1 << 16):
                        cp.write(payload[k:k + (1 << 16)])
                        if k > len(payload) // 2:
                            sent.set()
        except psycopg.Error:
            pass
        sent.set()

    th = threading.Thread(target=copier)
    th.start()
    sent.wait(60)
    server.kill()
    th.join(10)
    server = start_server(tmp_path / "data")
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM big").fetchone()[0] in (0, n)
            c.execute("INSERT INTO big VALUES (%s, %s)", [n, line.decode()])  # still writable
            assert c.execute("SELECT count(*) FROM big WHERE id = %s", [n]).fetchone() == (1,)
    finally:
        server.stop()
