"""Compaction through the server: VACUUM gives the disk space of deleted rows back, the background
compactor rewrites segments past --compaction-ratio, and queries running all the while (exact vector
search, filters, count(*)) return exactly what they returned before."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from tests.conftest import start_server


def _segment_bytes(server):
    """Bytes of every segment and delete file in the server's data directory (one table here)."""
    total = 0
    for folder in (server.data / "tables").iterdir():
        total += sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("seg-"))
    return total


def _load(conn, table, n, dim=8, seed=0):
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, tag int, e vector({dim}))")
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    with conn.cursor().copy(f"COPY {table} (id, tag, e) FROM STDIN") as cp:
        for i in range(n):
            cp.write(f"{i}\t{i % 7}\t[{','.join(map(str, vectors[i]))}]\n")
    return vectors


QUERIES = [
    ("SELECT count(*) FROM {t}", ()),
    ("SELECT id FROM {t} ORDER BY e <-> %s LIMIT 10", ("[0,0,0,0,0,0,0,0]",)),
    ("SELECT id FROM {t} WHERE tag = 3 ORDER BY e <=> %s LIMIT 5", ("[1,0,1,0,1,0,1,0]",)),
    ("SELECT sum(id), min(id), max(id) FROM {t} WHERE tag < 4", ()),
]


def _answers(conn, table):
    return [conn.execute(sql.format(t=table), params).fetchall() for sql, params in QUERIES]


def test_vacuum_gives_back_the_space_of_deleted_rows(tmp_path):
    server = start_server(tmp_path / "data", seal_rows=500)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            _load(conn, "v", 3000)
            conn.execute("CHECKPOINT")  # six sealed segments of 500
            conn.execute("DELETE FROM v WHERE id % 2 = 0")
            answers = _answers(conn, "v")
            before = _segment_bytes(server)
            assert conn.execute("VACUUM v").statusmessage == "VACUUM"
            after = _segment_bytes(server)
            assert after < 0.6 * before, (before, after)
            assert _answers(conn, "v") == answers
            assert conn.execute("SELECT count(*) FROM v").fetchone() == (1500,)
            conn.execute("VACUUM (VERBOSE, ANALYZE) v")
            conn.execute("VACUUM")
            conn.execute("VACUUM FULL public.v")
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("VACUUM nope")
            with conn.transaction():
                with pytest.raises(psycopg.errors.ActiveSqlTransaction):
                    conn.execute("VACUUM v")
                raise psycopg.Rollback
        server.stop()
        server = start_server(tmp_path / "data", seal_rows=500)  # and after a restart
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            assert _answers(conn, "v") == answers
    finally:
        server.stop()


def _manifest_rows(server):
    import json

    folder = next((server.data / "tables").iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    return sum(seg["num_rows"] for seg in manifest["segments"])


def test_background_compaction_under_a_query_load_changes_no_answer(tmp_path):
    server = start_server(tmp_path / "data", seal_rows=2000,
                          extra_env={"SQLVEC_COMPACTION_INTERVAL": "1", "SQLVEC_COMPACTION_RATIO": "0.2"})
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            _load(conn, "w", 20_000)
            conn.execute("CHECKPOINT")  # ten sealed segments
            assert _manifest_rows(server) == 20_000
            conn.execute("DELETE FROM w WHERE id % 10 < 3")  # 30% of every segment: all ten get rewritten
            expected = _answers(conn, "w")
        kept = [i for i in range(20_000) if i % 10 >= 3]
        assert expected[0] == [(len(kept),)]
        low = [i for i in kept if i % 7 < 4]
        assert expected[3] == [(sum(low), min(low), max(low))]
        stop = threading.Event()
        failures: list[str] = []
        checked = [0]

        def query_loop():
            with psycopg.connect(server.dsn, autocommit=True) as c:
                while not stop.is_set():
                    got = _answers(c, "w")
                    checked[0] += 1
                    if got != expected:
                        failures.append(repr(got)[:500])

        threads = [threading.Thread(target=query_loop) for _ in range(2)]
        for t in threads:
            t.start()
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _manifest_rows(server) != len(kept):
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert _manifest_rows(server) == len(kept), "compaction did not drop the deleted rows"
        assert checked[0] > 5
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            assert _answers(conn, "w") == expected
    finally:
        server.stop()
