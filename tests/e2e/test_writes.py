"""UPDATE, INSERT ... ON CONFLICT, TRUNCATE and savepoints through psycopg and asyncpg, with the
PostgreSQL answers (the ``pg_compatible`` tests run against PostgreSQL too: SQLVEC_TEST_PG=pgserver),
and sqlvec's own concurrency rules: a write outside a transaction block is run again when a concurrent
commit got to its rows first; inside a block, the later COMMIT fails with 40001."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import psycopg
import pytest

pytestmark = pytest.mark.pg_compatible


@pytest.fixture()
def docs(conn, table_name):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, n int NOT NULL DEFAULT 7, tag text, "
                 f"meta jsonb, xs int[], e vector(3))")
    conn.execute(f"INSERT INTO {table_name} VALUES (1, 10, 'a', '{{\"k\": 1}}', '{{1,2}}', '[1,0,0]'), "
                 f"(2, 20, 'b', NULL, NULL, '[0,1,0]'), (3, 30, NULL, '[1, 2]', '{{}}', NULL)")
    return table_name


def rows(conn, t):
    return conn.execute(f"SELECT id, n, tag, meta, xs, e::text FROM {t} ORDER BY id").fetchall()


def test_update_sets_expressions_parameters_and_defaults(conn, docs):
    cur = conn.execute(f"UPDATE {docs} SET n = n + 1, tag = upper(tag), e = %s WHERE id >= 2 RETURNING id, n, tag",
                       ["[1,2,3]"])
    assert cur.rowcount == 2 and cur.statusmessage == "UPDATE 2"
    assert sorted(cur.fetchall()) == [(2, 21, "B"), (3, 31, None)]
    conn.execute(f"UPDATE {docs} SET n = DEFAULT, meta = '{{\"k\": [1, 2]}}', xs = '{{5,6}}' WHERE id = 1")
    assert rows(conn, docs) == [
        (1, 7, "a", {"k": [1, 2]}, [5, 6], "[1,0,0]"),
        (2, 21, "B", None, None, "[1,2,3]"),
        (3, 31, None, [1, 2], [], "[1,2,3]"),
    ]
    assert conn.execute(f"UPDATE {docs} SET n = 0 WHERE id > 100").statusmessage == "UPDATE 0"
    assert conn.execute(f"SELECT count(*) FROM {docs}").fetchone() == (3,)


def test_update_with_alias_from_and_returning_star(conn, docs, table_name):
    other = f"{table_name}_o"
    conn.execute(f"CREATE TABLE {other} (id int PRIMARY KEY, bonus int)")
    conn.execute(f"INSERT INTO {other} VALUES (1, 100), (3, 300)")
    got = conn.execute(f"UPDATE {docs} AS d SET n = d.n + o.bonus FROM {other} o WHERE d.id = o.id "
                       "RETURNING d.id, n").fetchall()
    assert sorted(got) == [(1, 110), (3, 330)]
    got = conn.execute(f"UPDATE {docs} SET tag = 'z' WHERE id = 2 RETURNING *").fetchall()
    assert got == [(2, 20, "z", None, None, "[0,1,0]")]


def test_update_that_breaks_a_rule_changes_nothing(conn, docs):
    before = rows(conn, docs)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"UPDATE {docs} SET id = 1 WHERE id = 2")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"UPDATE {docs} SET id = 5")  # every row to the same key
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(f"UPDATE {docs} SET n = NULL WHERE id = 3")
    with pytest.raises(psycopg.errors.DataException):
        conn.execute(f"UPDATE {docs} SET e = '[1,2]'")
    with pytest.raises(psycopg.errors.UndefinedColumn):
        conn.execute(f"UPDATE {docs} SET nope = 1")
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute(f"UPDATE {docs} SET n = 1, n = 2")
    assert rows(conn, docs) == before
    conn.execute(f"UPDATE {docs} SET id = id + 10")  # keys may move all at once
    assert [r[0] for r in rows(conn, docs)] == [11, 12, 13]


def test_upsert_updates_conflicts_and_inserts_the_rest(conn, docs):
    cur = conn.execute(
        f"INSERT INTO {docs} AS d (id, n, tag) VALUES (4, 40, 'new'), (1, 5, 'upd'), (2, 6, 'skip') "
        "ON CONFLICT (id) DO UPDATE SET n = d.n + EXCLUDED.n, tag = excluded.tag WHERE d.id <> 2 "
        "RETURNING id, n, tag")
    assert cur.statusmessage == "INSERT 0 2"
    assert cur.fetchall() == [(4, 40, "new"), (1, 15, "upd")]  # in proposal order; id 2 left alone
    assert rows(conn, docs)[:2] == [(1, 15, "upd", {"k": 1}, [1, 2], "[1,0,0]"), (2, 20, "b", None, None, "[0,1,0]")]
    # ON CONSTRAINT names the primary key; an unqualified column could be either row's
    conn.execute(f"INSERT INTO {docs} (id, n) VALUES (1, 1) ON CONFLICT ON CONSTRAINT {docs}_pkey "
                 f"DO UPDATE SET n = {docs}.n * 2")
    with pytest.raises(psycopg.errors.AmbiguousColumn):
        conn.execute(f"INSERT INTO {docs} (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n * 2")
    assert conn.execute(f"SELECT n FROM {docs} WHERE id = 1").fetchone() == (30,)
    conn.execute(f"INSERT INTO {docs} (id, e) VALUES (3, %s) ON CONFLICT (id) DO UPDATE SET e = EXCLUDED.e, "
                 "n = DEFAULT", ["[0,0,1]"])
    assert rows(conn, docs)[2] == (3, 7, None, [1, 2], [], "[0,0,1]")
    assert conn.execute(f"SELECT count(*) FROM {docs}").fetchone() == (4,)


def test_upsert_errors(conn, docs):
    before = rows(conn, docs)
    with pytest.raises(psycopg.errors.CardinalityViolation):
        conn.execute(f"INSERT INTO {docs} (id) VALUES (9), (9) ON CONFLICT (id) DO UPDATE SET n = 1")
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute(f"INSERT INTO {docs} (id) VALUES (1) ON CONFLICT DO UPDATE SET n = 1")
    with pytest.raises(psycopg.errors.InvalidColumnReference):
        conn.execute(f"INSERT INTO {docs} (id) VALUES (1) ON CONFLICT (n) DO UPDATE SET n = 1")
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute(f"INSERT INTO {docs} (id) VALUES (1) ON CONFLICT ON CONSTRAINT nope DO NOTHING")
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(f"INSERT INTO {docs} (id) VALUES (4), (1) ON CONFLICT (id) DO UPDATE SET n = NULL")
    assert rows(conn, docs) == before


def test_upsert_many_times_keeps_one_row_and_an_exact_count(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v int)")
    sql = (f"INSERT INTO {table_name} (id, v) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v")
    for i in range(12):  # past psycopg's switch to prepared statements
        conn.execute(sql, [i % 3, i])
    with conn.cursor() as cur:
        cur.executemany(sql, [(k, 100 + k) for k in range(5)])
        cur.executemany(sql, [(9, 1), (3, 5), (9, 2)])  # a key twice: as if one statement after another
        cur.executemany(f"DELETE FROM {table_name} WHERE id = %s", [(9,), (3,)])
        cur.executemany(sql, [(3, 103)])
    assert conn.execute(f"SELECT id, v FROM {table_name} ORDER BY id").fetchall() == [(k, 100 + k) for k in range(5)]
    assert conn.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (5,)


def test_batched_upsert_with_repeated_keys_equals_one_statement_after_another(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, a int, b text, c int)")
    conn.execute(f"INSERT INTO {table_name} VALUES (1, 1, 'stored', 1), (2, 2, 'stored', 2)")
    conn.commit()
    batch = [(1, 10, "x", 10), (5, 50, "first", 50), (1, 11, "y", 11), (5, 51, "second", 51),
             (6, 60, "only", 60), (1, 12, "z", 12), (5, 52, "third", 52)]
    expect = {1: (1, "stored", 1), 2: (2, "stored", 2)}
    for k, a, b, c in batch:  # SET a, b from EXCLUDED; c keeps what the row had
        expect[k] = (a, b, expect[k][2]) if k in expect else (a, b, c)
    sql = (f"INSERT INTO {table_name} VALUES (%s, %s, %s, %s) "
           "ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b")
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(sql, batch)
        literal = f"INSERT INTO {table_name} VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET c = 7"
        cur.executemany(literal, [(8, 80, "new", 80), (8, 81, "again", 81)])
    expect[8] = (80, "new", 7)
    got = conn.execute(f"SELECT id, a, b, c FROM {table_name} ORDER BY id").fetchall()
    assert got == [(k, *v) for k, v in sorted(expect.items())]
    assert conn.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (len(expect),)


def test_upsert_and_do_nothing_see_the_transactions_own_rows(server, table_name):
    with psycopg.connect(server.dsn) as c:
        c.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, v int)")
        c.commit()
        c.execute(f"INSERT INTO {table_name} VALUES (1, 1)")
        c.execute(f"INSERT INTO {table_name} VALUES (1, 2), (2, 2) ON CONFLICT (id) DO UPDATE SET v = {table_name}.v + 10")
        c.execute(f"INSERT INTO {table_name} VALUES (2, 5), (3, 3) ON CONFLICT DO NOTHING")
        c.execute(f"UPDATE {table_name} SET v = v + 100 WHERE id = 3")
        assert c.execute(f"SELECT id, v FROM {table_name} ORDER BY id").fetchall() == [(1, 11), (2, 2), (3, 103)]
        c.commit()
        assert c.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (3,)


def test_savepoints_roll_back_part_of_a_transaction(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn) as c:
        c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int)")
        c.commit()
        with c.transaction():
            c.execute(f"INSERT INTO {t} VALUES (1, 1)")
            with pytest.raises(psycopg.errors.UniqueViolation):
                with c.transaction():  # psycopg's nested block: SAVEPOINT ... ROLLBACK TO SAVEPOINT
                    c.execute(f"UPDATE {t} SET v = 2 WHERE id = 1")
                    c.execute(f"INSERT INTO {t} VALUES (1, 3)")
            assert c.execute(f"SELECT v FROM {t}").fetchall() == [(1,)]
            with c.transaction():  # SAVEPOINT ... RELEASE SAVEPOINT
                c.execute(f"INSERT INTO {t} VALUES (2, 2)")
        assert c.execute(f"SELECT id, v FROM {t} ORDER BY id").fetchall() == [(1, 1), (2, 2)]
        c.commit()
        c.execute("SAVEPOINT a")
        c.execute(f"DELETE FROM {t} WHERE id = 1")
        c.execute("SAVEPOINT b")
        c.execute(f"TRUNCATE {t}")
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        c.execute("ROLLBACK TO SAVEPOINT b")
        assert c.execute(f"SELECT id FROM {t}").fetchall() == [(2,)]
        c.execute("ROLLBACK TO a")  # rolling back to a forgets b
        with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
            c.execute("RELEASE SAVEPOINT b")
        c.rollback()
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (2,)
        c.commit()
    with psycopg.connect(server.dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            c.execute("SAVEPOINT x")


def test_truncate(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn) as c:
        c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int)")
        c.execute(f"CREATE TABLE {t}_2 (id int)")
        c.execute(f"INSERT INTO {t} SELECT g, g FROM generate_series(1, 50) g")
        c.execute(f"INSERT INTO {t}_2 VALUES (1)")
        c.commit()
        assert c.execute(f"TRUNCATE {t}, {t}_2").statusmessage == "TRUNCATE TABLE"
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        c.rollback()
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (50,)
        c.execute(f"TRUNCATE TABLE {t}")
        c.execute(f"INSERT INTO {t} VALUES (1, 1)")  # the key is free again
        c.commit()
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)
        assert c.execute(f"SELECT count(*) FROM {t}_2").fetchone() == (1,)


def _hammer(dsn: str, work, threads: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                work(c, i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(120)
    return errors


def test_concurrent_upserts_of_overlapping_keys_lose_nothing(server, conn, table_name):
    """Four connections upsert the same ten keys, each adding one: every key ends as one row whose
    count is the number of upserts acknowledged for it."""
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, hits int, last int)")
    per_thread = 60

    def work(c, i):
        order = np.random.default_rng(i).integers(0, 10, per_thread)
        for j, k in enumerate(order):
            c.execute(f"INSERT INTO {table_name} AS t VALUES (%s, 1, %s) ON CONFLICT (id) DO UPDATE "
                      "SET hits = t.hits + 1, last = EXCLUDED.last", [int(k), i * 1000 + j])

    assert _hammer(server.dsn, work, 4) == []
    got = conn.execute(f"SELECT id, hits FROM {table_name} ORDER BY id").fetchall()
    want = np.bincount(np.concatenate([np.random.default_rng(i).integers(0, 10, per_thread) for i in range(4)]),
                       minlength=10)
    assert got == [(k, int(want[k])) for k in range(10) if want[k]]
    assert conn.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (len(got),)


def test_concurrent_updates_lose_no_increment(server, conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, v int, e vector(2))")
    conn.execute(f"INSERT INTO {table_name} SELECT g, 0, '[0,0]' FROM generate_series(0, 4) g")

    def work(c, i):
        for j in range(40):
            c.execute(f"UPDATE {table_name} SET v = v + 1 WHERE id = %s", [(i + j) % 5])

    assert _hammer(server.dsn, work, 4) == []
    assert conn.execute(f"SELECT sum(v), count(*) FROM {table_name}").fetchone() == (160, 5)


def test_asyncpg_update_and_upsert(server, table_name):
    asyncpg = pytest.importorskip("asyncpg")

    async def main():
        c = await asyncpg.connect(host=server.host, port=server.port, user="postgres", database="sqlvec",
                                  password=server.password)
        try:
            await c.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, v text)")
            await c.executemany(f"INSERT INTO {table_name} VALUES ($1, $2) ON CONFLICT (id) DO UPDATE "
                                "SET v = EXCLUDED.v", [(1, "a"), (2, "b"), (1, "c")])
            status = await c.execute(f"UPDATE {table_name} SET v = v || '!' WHERE id = $1", 2)
            async with c.transaction():
                await c.execute(f"UPDATE {table_name} SET v = 'x'")
                try:
                    async with c.transaction():  # a savepoint
                        await c.execute(f"UPDATE {table_name} SET v = 'y'")
                        raise RuntimeError("undo the inner block")
                except RuntimeError:
                    pass
            return status, await c.fetch(f"SELECT id, v FROM {table_name} ORDER BY id")
        finally:
            await c.close()

    status, got = asyncio.run(main())
    assert status == "UPDATE 1"
    assert [tuple(r) for r in got] == [(1, "x"), (2, "x")]


def test_rows_named_by_key(server, docs):
    """WHERE pk = c / IN / = ANY goes through the key index; the answers are the scan's."""
    with psycopg.connect(server.dsn, autocommit=True) as c:
        assert c.execute(f"UPDATE {docs} SET n = %s, tag = 'k' WHERE id = %s", [1, 2]).rowcount == 1
        assert c.execute(f"UPDATE {docs} SET n = 2 WHERE id = 1.5").rowcount == 0
        assert c.execute(f"UPDATE {docs} SET n = 2 WHERE id = 99999999999").rowcount == 0
        assert c.execute(f"UPDATE {docs} SET n = 3 WHERE id IN (1, 3, 99)").rowcount == 2
        assert c.execute(f"UPDATE {docs} AS d SET n = d.n + 1 WHERE d.id = ANY(%s)", [[2, 3, 3]]).rowcount == 2
        assert [r[:3] for r in rows(c, docs)] == [(1, 3, "a"), (2, 2, "k"), (3, 4, None)]
        assert c.execute(f"DELETE FROM {docs} AS d WHERE d.id = %s RETURNING id, n", [3]).fetchall() == [(3, 4)]
        assert c.execute(f"DELETE FROM {docs} WHERE id = ANY(%s)", [[]]).rowcount == 0
        c.execute(f"INSERT INTO {docs} (id, n, tag) VALUES (2, %s, 'p'), (5, 50, 'q') ON CONFLICT (id) "
                  "DO UPDATE SET tag = EXCLUDED.tag, n = %s, e = EXCLUDED.e", [20, 21])
        assert [r[:3] + r[5:] for r in rows(c, docs)] == [(1, 3, "a", "[1,0,0]"), (2, 21, "p", None),
                                                          (5, 50, "q", None)]
    with psycopg.connect(server.dsn) as c:  # the transaction's own rows, by key
        c.execute(f"INSERT INTO {docs} (id, n) VALUES (8, 1)")
        c.execute(f"UPDATE {docs} SET n = 2 WHERE id = 8")
        c.execute(f"UPDATE {docs} SET n = n + 1 WHERE id = 8")
        c.execute(f"UPDATE {docs} SET n = 9 WHERE id = 1")
        c.execute(f"UPDATE {docs} SET n = 10 WHERE id = 1")
        assert c.execute(f"SELECT id, n FROM {docs} WHERE id IN (1, 8) ORDER BY id").fetchall() == [(1, 10), (8, 3)]
        c.execute(f"DELETE FROM {docs} WHERE id = 8")
        assert c.execute(f"SELECT count(*) FROM {docs}").fetchone() == (3,)
        c.commit()


def test_count_inside_a_transaction_follows_its_writes_and_other_commits(server, conn, table_name):
    """count(*) in a transaction block (answered from segment counts plus the block's own writes) equals
    a count DuckDB computes from the rows, through inserts, upserts, deletes, a savepoint rolled back
    and another session's commit (READ COMMITTED: each statement sees it)."""
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, n int)")
    conn.execute(f"INSERT INTO {table_name} SELECT g, g FROM generate_series(1, 100) g")

    def both(c):
        return (c.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0],
                c.execute(f"SELECT sum(1) FROM {table_name}").fetchone()[0])

    with psycopg.connect(server.dsn, autocommit=True) as other, conn.transaction():
        conn.execute(f"DELETE FROM {table_name} WHERE id <= 10")
        assert both(conn) == (90, 90)
        conn.execute(f"INSERT INTO {table_name} VALUES (1000, 0), (1001, 0) "
                     "ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n")
        conn.execute(f"INSERT INTO {table_name} VALUES (50, -1) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n")
        assert both(conn) == (92, 92)
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():  # a savepoint, rolled back
            conn.execute(f"DELETE FROM {table_name} WHERE id BETWEEN 91 AND 99")
            conn.execute(f"INSERT INTO {table_name} VALUES (1000, 1)")
        assert both(conn) == (92, 92)
        other.execute(f"DELETE FROM {table_name} WHERE id IN (20, 21)")
        other.execute(f"INSERT INTO {table_name} VALUES (2000, 0)")
        assert both(conn) == (91, 91)
        conn.execute(f"DELETE FROM {table_name} WHERE id = 1000")
        assert both(conn) == (90, 90)
    assert both(conn) == (90, 90)
