"""SQL cursors (DECLARE / FETCH / MOVE / CLOSE), driver cursors over portals, and vector iterators.

Tests marked ``pg_compatible`` state PostgreSQL's behaviour and pass against PostgreSQL 16 +
pgvector too (SQLVEC_TEST_PG=pgserver): the FETCH positions and tags, the cursor rules and their
SQLSTATEs, and a cursor's snapshot.
"""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
import psycopg
import pytest

N = 25


@pytest.fixture()
def numbers(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, k int)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table_name} VALUES (%s, %s)", [(i, i * 10) for i in range(1, N + 1)])
    return table_name


class Reference:
    """PostgreSQL's cursor positions over rows 1..n, written from the FETCH documentation."""

    def __init__(self, n: int) -> None:
        self.n, self.pos = n, 0

    def _to(self, target: int) -> list[int]:
        if target < 1:
            self.pos = 0
            return []
        if target > self.n:
            self.pos = self.n + 1
            return []
        self.pos = target
        return [target]

    def fetch(self, kind: str, count: int | None) -> list[int]:
        if kind == "absolute":
            return self._to(count if count >= 0 else self.n + 1 + count) if count != 0 else self._to(0)
        if kind == "relative":
            if count == 0:
                return [self.pos] if 1 <= self.pos <= self.n else []
            return self._to(self.pos + count)
        if count == 0:  # FORWARD 0 / BACKWARD 0: the current row
            return [self.pos] if 1 <= self.pos <= self.n else []
        step = 1 if kind == "forward" else -1
        out = []
        while count is None or len(out) < count:
            nxt = self.pos + step
            if nxt < 1 or nxt > self.n:
                self.pos = 0 if nxt < 1 else self.n + 1
                break
            self.pos = nxt
            out.append(nxt)
        return out


MOTIONS = [  # (SQL direction, reference motion)
    ("NEXT", ("forward", 1)), ("", ("forward", 1)), ("3", ("forward", 3)), ("FORWARD 4", ("forward", 4)),
    ("PRIOR", ("backward", 1)), ("BACKWARD 2", ("backward", 2)), ("FORWARD 0", ("forward", 0)),
    ("RELATIVE 0", ("relative", 0)), ("ABSOLUTE 7", ("absolute", 7)), ("RELATIVE -3", ("relative", -3)),
    ("RELATIVE 5", ("relative", 5)), ("-2", ("backward", 2)), ("LAST", ("absolute", -1)), ("NEXT", ("forward", 1)),
    ("NEXT", ("forward", 1)), ("PRIOR", ("backward", 1)), ("ABSOLUTE -5", ("absolute", -5)),
    ("BACKWARD 0", ("backward", 0)), ("FIRST", ("absolute", 1)), ("PRIOR", ("backward", 1)),
    ("PRIOR", ("backward", 1)), ("FORWARD ALL", ("forward", None)), ("BACKWARD ALL", ("backward", None)),
    ("ABSOLUTE 0", ("absolute", 0)), ("ABSOLUTE 40", ("absolute", 40)), ("RELATIVE -30", ("relative", -30)),
    ("ALL", ("forward", None)), ("ABSOLUTE -40", ("absolute", -40)), ("RELATIVE 2", ("relative", 2)),
    ("FORWARD -1", ("backward", 1)), ("BACKWARD -4", ("forward", 4)), ("FORWARD 30", ("forward", 30)),
    ("BACKWARD 10", ("backward", 10)), ("RELATIVE 0", ("relative", 0)),
]


@pytest.mark.pg_compatible
@pytest.mark.parametrize("command", ["FETCH", "MOVE"])
def test_scroll_cursor_motions_match_the_reference(conn, numbers, command):
    ref = Reference(N)
    with conn.transaction():
        conn.execute(f"DECLARE c SCROLL CURSOR FOR SELECT id, k FROM {numbers} ORDER BY id")
        for direction, (kind, count) in MOTIONS:
            want = ref.fetch(kind, count)
            sql = f"{command} {direction} FROM c"
            cur = conn.execute(sql)
            assert cur.statusmessage == f"{command} {len(want)}", sql
            if command == "FETCH":
                assert cur.fetchall() == [(i, i * 10) for i in want], sql
            # where the cursor stands: the current row, re-read
            here = conn.execute("FETCH RELATIVE 0 FROM c").fetchall()
            assert here == ([(ref.pos, ref.pos * 10)] if 1 <= ref.pos <= N else []), sql


@pytest.mark.pg_compatible
@pytest.mark.parametrize("motion", ["PRIOR", "BACKWARD 1", "LAST", "ABSOLUTE -1", "ABSOLUTE 2", "RELATIVE -1",
                                    "FIRST", "-1", "BACKWARD ALL"])
def test_no_scroll_cursor_reads_forward_only(conn, numbers, motion):
    conn.execute("BEGIN")
    conn.execute(f"DECLARE c NO SCROLL CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
    assert conn.execute("FETCH 3 FROM c").fetchall() == [(1,), (2,), (3,)]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
        conn.execute(f"FETCH {motion} FROM c")
    assert e.value.sqlstate == "55000" and "can only scan forward" in str(e.value)
    conn.execute("ROLLBACK")


@pytest.mark.pg_compatible
def test_no_scroll_cursor_forward_motions(conn, numbers):
    with conn.transaction():
        conn.execute(f"DECLARE c NO SCROLL CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
        assert conn.execute("FETCH FIRST FROM c").fetchall() == [(1,)]
        assert conn.execute("MOVE 3 FROM c").statusmessage == "MOVE 3"
        assert conn.execute("FETCH ABSOLUTE 10 FROM c").fetchall() == [(10,)]
        assert conn.execute("FETCH RELATIVE 2 FROM c").fetchall() == [(12,)]
        assert conn.execute("MOVE FORWARD ALL FROM c").statusmessage == f"MOVE {N - 12}"
        assert conn.execute("FETCH NEXT FROM c").fetchall() == []
        conn.execute(f"DECLARE d CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
        assert conn.execute("FETCH ALL FROM d").fetchall() == [(i,) for i in range(1, N + 1)]
        assert conn.execute("FETCH ALL FROM d").statusmessage == "FETCH 0"


@pytest.mark.pg_compatible
def test_cursor_rules_and_errors(conn, numbers):
    with pytest.raises(psycopg.errors.NoActiveSqlTransaction) as e:
        conn.execute(f"DECLARE c CURSOR FOR SELECT id FROM {numbers}")
    assert e.value.sqlstate == "25P01" and "transaction blocks" in str(e.value)
    for sql in ("FETCH NEXT FROM nosuch", "MOVE 1 IN nosuch", "CLOSE nosuch"):
        with pytest.raises(psycopg.errors.InvalidCursorName) as e:
            conn.execute(sql)
        assert e.value.sqlstate == "34000" and 'cursor "nosuch" does not exist' in str(e.value)
    conn.execute("BEGIN")
    conn.execute(f"DECLARE c CURSOR FOR SELECT id FROM {numbers}")
    with pytest.raises(psycopg.errors.DuplicateCursor) as e:
        conn.execute(f"DECLARE c CURSOR FOR SELECT id FROM {numbers}")
    assert e.value.sqlstate == "42P03" and 'cursor "c" already exists' in str(e.value)
    conn.execute("ROLLBACK")
    with conn.transaction():
        conn.execute(f"DECLARE a CURSOR FOR SELECT id FROM {numbers}")
        conn.execute(f'DECLARE "B" CURSOR FOR SELECT id FROM {numbers}')
        assert conn.execute('CLOSE "B"').statusmessage == "CLOSE CURSOR"
        assert conn.execute("CLOSE ALL").statusmessage == "CLOSE CURSOR ALL"
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH FROM a")


@pytest.mark.pg_compatible
def test_with_hold_survives_commit_and_without_hold_does_not(conn, numbers):
    conn.execute("BEGIN")
    conn.execute(f"DECLARE held SCROLL CURSOR WITH HOLD FOR SELECT id FROM {numbers} ORDER BY id")
    conn.execute(f"DECLARE gone CURSOR WITHOUT HOLD FOR SELECT id FROM {numbers} ORDER BY id")
    assert conn.execute("FETCH 2 FROM held").fetchall() == [(1,), (2,)]
    conn.execute("COMMIT")
    assert conn.execute("FETCH 2 FROM held").fetchall() == [(3,), (4,)]  # it goes on where it was
    assert conn.execute("FETCH PRIOR FROM held").fetchall() == [(3,)]
    with pytest.raises(psycopg.errors.InvalidCursorName):
        conn.execute("FETCH FROM gone")
    # WITH HOLD outside a block is allowed; a rolled-back transaction takes its held cursors with it
    conn.execute(f"DECLARE outside CURSOR WITH HOLD FOR SELECT id FROM {numbers} ORDER BY id")
    assert conn.execute("FETCH 1 FROM outside").fetchall() == [(1,)]
    conn.execute("BEGIN")
    conn.execute(f"DECLARE undone CURSOR WITH HOLD FOR SELECT id FROM {numbers}")
    conn.execute("ROLLBACK")
    with pytest.raises(psycopg.errors.InvalidCursorName):
        conn.execute("FETCH FROM undone")
    assert conn.execute("FETCH 1 FROM held").fetchall() == [(4,)]  # earlier held cursors stay
    conn.execute("CLOSE held")
    conn.execute("CLOSE outside")


@pytest.mark.pg_compatible
def test_a_cursor_reads_its_snapshot_while_others_write(server, conn, numbers):
    with psycopg.connect(server.dsn, autocommit=True) as other:
        conn.execute("BEGIN")
        conn.execute(f"DECLARE c CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
        first = conn.execute("FETCH 5 FROM c").fetchall()
        other.execute(f"DELETE FROM {numbers} WHERE id % 2 = 0")
        other.execute(f"INSERT INTO {numbers} VALUES (100, 1), (101, 2)")
        other.execute(f"UPDATE {numbers} SET k = -1 WHERE id = 21")
        rest = conn.execute("FETCH ALL FROM c").fetchall()
        conn.execute("COMMIT")
    assert first + rest == [(i,) for i in range(1, N + 1)]
    # the session's own uncommitted writes are in a cursor declared after them
    with conn.transaction():
        conn.execute(f"INSERT INTO {numbers} VALUES (500, 5)")
        conn.execute(f"DECLARE mine CURSOR FOR SELECT id FROM {numbers} WHERE id >= 100 ORDER BY id")
        conn.execute(f"DELETE FROM {numbers} WHERE id = 101")
        assert conn.execute("FETCH ALL FROM mine").fetchall() == [(100,), (101,), (500,)]


@pytest.mark.pg_compatible
def test_psycopg_named_cursors(conn, numbers):
    conn.autocommit = False
    with conn.cursor("named") as cur:
        cur.itersize = 4  # FETCH FORWARD 4 at a time
        cur.execute(f"SELECT id, k FROM {numbers} WHERE id > %s ORDER BY id", (5,))
        assert [d.name for d in cur.description] == ["id", "k"]
        assert list(cur) == [(i, i * 10) for i in range(6, N + 1)]
    with conn.cursor("scrolling", scrollable=True) as cur:
        cur.execute(f"SELECT id FROM {numbers} ORDER BY id")
        assert cur.fetchmany(3) == [(1,), (2,), (3,)]
        cur.scroll(-2)
        assert cur.fetchone() == (2,)
        cur.scroll(9, mode="absolute")
        assert cur.fetchone() == (10,)  # psycopg positions count from 0
    with conn.cursor("binary", binary=True) as cur:
        cur.execute(f"SELECT id, k::float8 / 4 AS q FROM {numbers} WHERE id <= %s ORDER BY id DESC", (3,))
        assert cur.fetchall() == [(3, 7.5), (2, 5.0), (1, 2.5)]
    conn.commit()
    with conn.cursor("held", withhold=True) as cur:
        cur.execute(f"SELECT id FROM {numbers} ORDER BY id")
        conn.commit()
        assert len(cur.fetchall()) == N
    conn.rollback()
    conn.autocommit = True


@pytest.mark.pg_compatible
def test_asyncpg_cursors(server, numbers):
    async def main():
        con = await asyncpg.connect(server.url)
        try:
            async with con.transaction():
                got = [r["id"] async for r in con.cursor(f"SELECT id FROM {numbers} WHERE id > $1 ORDER BY id",
                                                         3, prefetch=5)]
                assert got == list(range(4, N + 1))
                cur = await con.cursor(f"SELECT id, k FROM {numbers} ORDER BY id")
                assert [tuple(r) for r in await cur.fetch(3)] == [(1, 10), (2, 20), (3, 30)]
                await cur.forward(10)
                assert (await cur.fetchrow())["id"] == 14
        finally:
            await con.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- vector iterators

DIM = 8


@pytest.fixture()
def vectors(conn, table_name):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, tag int, e vector({DIM}))")
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} (id, tag, e) FROM STDIN") as cp:
        for i, row in enumerate(x):
            cp.write_row((i, i % 7, "[" + ",".join(repr(float(v)) for v in row) + "]"))
    return table_name, x


def _exact(x: np.ndarray, q: np.ndarray, keep: np.ndarray | None = None) -> list[int]:
    d = np.linalg.norm(x.astype(np.float64) - q.astype(np.float64), axis=1)
    ids = np.arange(len(x)) if keep is None else np.flatnonzero(keep)
    return ids[np.argsort(d[ids], kind="stable")].tolist()


def _text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(f)) for f in v) + "]"


@pytest.mark.parametrize("indexed", [
    pytest.param(False, marks=pytest.mark.pg_compatible),
    True,  # pgvector's HNSW scan ends after hnsw.ef_search rows (40 of the 3000 here): sqlvec's only
])
def test_vector_iterator_returns_every_row_in_distance_order(conn, vectors, indexed):
    t, x = vectors
    if indexed:
        conn.execute(f"CREATE INDEX ON {t} USING hnsw (e vector_l2_ops) WITH (m = 8, ef_construction = 32)")
    q = np.linspace(-1, 1, DIM).astype(np.float32)
    with conn.transaction():
        conn.execute(f"DECLARE it CURSOR FOR SELECT id, e <-> %s AS d FROM {t} ORDER BY e <-> %s",
                     (_text(q), _text(q)))
        got: list[int] = []
        dists: list[float] = []
        for size in (1, 10, 500, 1000, 5000):
            rows = conn.execute(f"FETCH {size} FROM it").fetchall()
            got += [r[0] for r in rows]
            dists += [r[1] for r in rows]
        assert conn.execute("FETCH 10 FROM it").fetchall() == []
    assert sorted(got) == list(range(len(x)))  # every row, once
    assert all(a <= b for a, b in zip(dists, dists[1:]))
    assert got == _exact(x, q)


@pytest.mark.pg_compatible
def test_vector_iterator_with_filter_and_bound(conn, vectors):
    t, x = vectors
    q = np.full(DIM, 0.25, np.float32)
    tags = np.arange(len(x)) % 7
    with conn.transaction():
        conn.execute(f"DECLARE f CURSOR FOR SELECT id FROM {t} WHERE tag IN (1, 4) ORDER BY e <-> %s", (_text(q),))
        got = [r[0] for r in conn.execute("FETCH 700 FROM f").fetchall()]
        got += [r[0] for r in conn.execute("FETCH ALL FROM f").fetchall()]
    assert got == _exact(x, q, np.isin(tags, [1, 4]))
    d = np.linalg.norm(x.astype(np.float64) - q, axis=1)
    radius = float(np.sort(d)[400])
    with conn.transaction():
        conn.execute(f"DECLARE w CURSOR FOR SELECT id FROM {t} WHERE e <-> %s < %s ORDER BY e <-> %s",
                     (_text(q), radius, _text(q)))
        within = [r[0] for r in conn.execute("FETCH ALL FROM w").fetchall()]
    assert within == _exact(x, q, d < radius)


@pytest.mark.pg_compatible
def test_vector_iterator_keeps_its_snapshot(server, conn, vectors):
    t, x = vectors
    q = np.zeros(DIM, np.float32)
    exact = _exact(x, q)
    with psycopg.connect(server.dsn, autocommit=True) as other:
        conn.execute("BEGIN")
        conn.execute(f"DECLARE it CURSOR FOR SELECT id FROM {t} ORDER BY e <-> %s", (_text(q),))
        got = [r[0] for r in conn.execute("FETCH 100 FROM it").fetchall()]
        other.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", (exact[100:200],))  # the very next rows
        other.execute(f"INSERT INTO {t} (id, tag, e) VALUES (99999, 0, %s)", (_text(q),))  # nearer than all
        got += [r[0] for r in conn.execute("FETCH ALL FROM it").fetchall()]
        conn.execute("COMMIT")
    assert got == exact


def test_no_top_k_cap(conn, table_name):
    """LIMIT 100000 through an HNSW index returns 100000 rows in order (pgvector's index stops at
    hnsw.ef_search rows, so this is sqlvec's behaviour only)."""
    n = 120_000
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector(4))")
    body = "".join(f"{i}\t[{a:.6g},{b:.6g},{c:.6g},{d:.6g}]\n" for i, (a, b, c, d) in enumerate(x.tolist()))
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} FROM STDIN") as cp:
        cp.write(body)
    conn.execute(f"CREATE INDEX ON {table_name} USING hnsw (e vector_l2_ops)")
    rows = conn.execute(f"SELECT id, e <-> '[0,0,0,0]' AS d FROM {table_name} ORDER BY e <-> '[0,0,0,0]' "
                        "LIMIT 100000").fetchall()
    assert len(rows) == 100_000
    assert all(a[1] <= b[1] for a, b in zip(rows, rows[1:]))
    with conn.transaction(), conn.cursor("all_rows") as cur:
        cur.itersize = 5000
        cur.execute(f"SELECT id FROM {table_name} ORDER BY e <-> '[0,0,0,0]'")
        got = [r[0] for r in cur]
    assert len(got) == n and len(set(got)) == n
    exact = np.argsort(np.linalg.norm(x.astype(np.float64), axis=1), kind="stable")[:10_000]
    assert len(set(got[:10_000]) & set(exact.tolist())) / 10_000 >= 0.95


def test_named_cursor_over_200k_rows(conn, table_name):
    n = 200_000
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, v int)")
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} FROM STDIN") as cp:
        cp.write("".join(f"{i}\t{i % 97}\n" for i in range(n)))
    total = count = 0
    with conn.transaction(), conn.cursor("big") as cur:
        cur.itersize = 2000
        cur.execute(f"SELECT id, v FROM {table_name}")
        for i, _v in cur:
            total += i
            count += 1
    assert count == n and total == n * (n - 1) // 2


@pytest.mark.pg_compatible
def test_binary_cursor_rows_are_binary_in_the_simple_protocol(conn, numbers):
    with conn.transaction():
        conn.execute(f"DECLARE b BINARY CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
        res = conn.pgconn.exec_(b"FETCH 2 FROM b")  # a simple Query: the cursor's format applies
        assert res.command_status == b"FETCH 2"
        assert res.fformat(0) == 1 and [res.get_value(i, 0) for i in range(2)] == [b"\0\0\0\1", b"\0\0\0\2"]
        conn.execute(f"DECLARE t CURSOR FOR SELECT id FROM {numbers} ORDER BY id")
        res = conn.pgconn.exec_(b"FETCH 1 FROM t")
        assert res.fformat(0) == 0 and res.get_value(0, 0) == b"1"


@pytest.mark.pg_compatible
def test_prepared_declare_and_fetch(conn, numbers):
    """psycopg prepares a statement it has run 5 times (here: every time): a prepared DECLARE takes its
    parameters at each Bind, and a prepared FETCH describes the cursor open at the time."""
    with conn.transaction(), conn.cursor() as cur:
        for i in range(8):
            cur.execute(f"DECLARE p CURSOR FOR SELECT id, k FROM {numbers} WHERE id > %s ORDER BY id", (i,),
                        prepare=True)
            cur.execute("FETCH 2 FROM p", prepare=True)
            assert cur.fetchall() == [(i + 1, (i + 1) * 10), (i + 2, (i + 2) * 10)]
            cur.execute("CLOSE p", prepare=True)
