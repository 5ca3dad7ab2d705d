"""Array columns: storage, literals, operators and functions with PostgreSQL's answers.

The case table runs against real PostgreSQL too (``SQLVEC_TEST_PG=pgserver``), so its NULL and
empty-array semantics (``3 = ANY('{4,NULL}')`` is NULL, ``array_length('{}', 1)`` is NULL,
``NULL || 9`` is ``{9}``) are PostgreSQL's, not guessed.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.conftest import start_server

ROWS = [
    (1, "{1,2,3}", "{a,b}", "{1.5,2}", "{10000000000}"),
    (2, "{}", "{}", "{}", "{}"),
    (3, "{4,NULL}", '{"x y",NULL}', None, "{1}"),
    (4, None, None, None, None),
]

# (expression, [value for ids 1..4]); None is SQL NULL
CASES = [
    ("3 = ANY(xs)", [True, False, None, None]),
    ("4 = ANY(xs)", [False, False, True, None]),
    ("5 <> ALL(xs)", [True, True, None, None]),
    ("1 = ALL(xs)", [False, True, False, None]),
    ("'x y' = ANY(ts)", [False, False, True, None]),
    ("xs = '{1,2,3}'", [True, False, False, None]),
    ("xs @> '{1,2}'", [True, False, False, None]),
    ("xs @> '{}'", [True, True, True, None]),
    ("xs <@ '{1,2,3,4}'", [True, True, False, None]),
    ("xs && '{3,4}'", [True, False, True, None]),
    ("ts && '{a}'", [True, False, False, None]),
    ("ts @> ARRAY['a']", [True, False, False, None]),
    ("array_length(xs, 1)", [3, None, 2, None]),
    ("array_length(ts, 1)", [2, None, 2, None]),
    ("cardinality(xs)", [3, 0, 2, None]),
    ("array_upper(xs, 1)", [3, None, 2, None]),
    ("array_lower(xs, 1)", [1, None, 1, None]),
    ("array_ndims(xs)", [1, None, 1, None]),
    ("xs[1]", [1, None, 4, None]),
    ("xs[2]", [2, None, None, None]),
    ("xs[0]", [None, None, None, None]),
    ("xs[-1]", [None, None, None, None]),
    ("xs[10]", [None, None, None, None]),
    ("ts[1]", ["a", None, "x y", None]),
    ("fs[1]", [1.5, None, None, None]),
    ("bs[1]", [10000000000, None, 1, None]),
    ("xs[2:3]", [[2, 3], [], [None], None]),
    ("xs[:2]", [[1, 2], [], [4, None], None]),
    ("xs || 9", [[1, 2, 3, 9], [9], [4, None, 9], [9]]),
    ("0 || xs", [[0, 1, 2, 3], [0], [0, 4, None], [0]]),
    ("xs || xs", [[1, 2, 3, 1, 2, 3], [], [4, None, 4, None], None]),
    ("ts || 'c'::text", [["a", "b", "c"], ["c"], ["x y", None, "c"], ["c"]]),
]


@pytest.fixture()
def arrays(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, xs int[], ts text[], fs real[], bs bigint[])")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table_name} VALUES (%s, %s::int[], %s::text[], %s::real[], %s::bigint[])", ROWS)
    return table_name


@pytest.mark.pg_compatible
@pytest.mark.parametrize("expr,want", CASES, ids=[c[0] for c in CASES])
def test_array_operators_and_functions(conn, arrays, expr, want):
    rows = conn.execute(f"SELECT id, {expr} FROM {arrays} ORDER BY id").fetchall()
    assert [v for _, v in rows] == want


@pytest.mark.pg_compatible
def test_arrays_round_trip_in_text_and_binary(conn, arrays):
    want = [
        (1, [1, 2, 3], ["a", "b"], [1.5, 2.0], [10000000000]),
        (2, [], [], [], []),
        (3, [4, None], ["x y", None], None, [1]),
        (4, None, None, None, None),
    ]
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            assert cur.execute(f"SELECT id, xs, ts, fs, bs FROM {arrays} ORDER BY id").fetchall() == want


@pytest.mark.pg_compatible
def test_array_text_output_quotes_what_needs_quoting(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int, ts text[])")
    conn.execute(f"""INSERT INTO {table_name} VALUES (1, ARRAY['plain', 'a b', 'q"uote', 'back\\slash', '', 'NULL', 'c,d', '{{x}}'])""")
    conn.execute(f"INSERT INTO {table_name} VALUES (2, ARRAY[NULL, 'z'])")
    rows = conn.execute(f"SELECT id, ts::text FROM {table_name} ORDER BY id").fetchall()
    assert rows == [
        (1, '{plain,"a b","q\\"uote","back\\\\slash","","NULL","c,d","{x}"}'),
        (2, "{NULL,z}"),
    ]
    # and it reads back as the same values
    values = conn.execute(f"SELECT ts FROM {table_name} ORDER BY id").fetchall()
    assert values == [(["plain", "a b", 'q"uote', "back\\slash", "", "NULL", "c,d", "{x}"],), ([None, "z"],)]


@pytest.mark.pg_compatible
def test_parameters_bind_lists(conn, arrays):
    assert conn.execute(f"SELECT id FROM {arrays} WHERE id = ANY(%s) ORDER BY id", [[1, 3, 99]]).fetchall() == [(1,), (3,)]
    assert conn.execute(f"SELECT id FROM {arrays} WHERE xs @> %s::int[] ORDER BY id", [[2]]).fetchall() == [(1,)]
    assert conn.execute(f"SELECT id FROM {arrays} WHERE xs && %s::int[] ORDER BY id", [[3, 4]]).fetchall() == [(1,), (3,)]
    assert conn.execute(f"SELECT id FROM {arrays} WHERE %s = ANY(ts) ORDER BY id", ["b"]).fetchall() == [(1,)]
    assert conn.execute(f"SELECT xs[%s] FROM {arrays} WHERE id = 1", [2]).fetchall() == [(2,)]
    conn.execute(f"INSERT INTO {arrays} (id, xs, ts) VALUES (%s, %s, %s)", [5, [7, None, 8], ["p", None]])
    row = conn.execute(f"SELECT xs, ts, cardinality(xs) FROM {arrays} WHERE id = 5").fetchone()
    assert row == ([7, None, 8], ["p", None], 3)
    # prepared (psycopg prepares after 5 executions): the plan keeps binding new lists
    for i in range(8):
        got = conn.execute(f"SELECT id FROM {arrays} WHERE id = ANY(%s) ORDER BY id", [[i % 4 + 1]]).fetchall()
        assert got == [(i % 4 + 1,)]


@pytest.mark.pg_compatible
def test_asyncpg_text_arrays(server, arrays):
    # asyncpg decodes text[] with a built-in codec; integer[] and the others need its type
    # introspection query (pg_type with a recursive CTE), which is issue 7's work.
    import asyncpg

    async def main() -> None:
        c = await asyncpg.connect(host=server.host, port=server.port, user="postgres", database="sqlvec",
                                  password=server.password)
        try:
            rows = await c.fetch(f"SELECT id, ts FROM {arrays} WHERE id <= $1 ORDER BY id", 3)
            assert [(r["id"], r["ts"]) for r in rows] == [(1, ["a", "b"]), (2, []), (3, ["x y", None])]
            assert await c.fetchval(f"SELECT count(*) FROM {arrays} WHERE $1 = ANY(ts)", "x y") == 1
            assert await c.fetchval(f"SELECT count(*) FROM {arrays} WHERE ts && $1", ["b", "q"]) == 1
            await c.execute(f"INSERT INTO {arrays} (id, ts) VALUES ($1, $2)", 6, ["p q", None, "r"])
            assert await c.fetchval(f"SELECT ts FROM {arrays} WHERE id = 6") == ["p q", None, "r"]
        finally:
            await c.close()

    asyncio.run(main())


@pytest.mark.pg_compatible
@pytest.mark.parametrize("literal,sqlstate,message", [
    ("'{1,x}'", "22P02", 'invalid input syntax for type integer: "x"'),
    ("'{1,2'", "22P02", "malformed array literal"),
    ("'1,2'", "22P02", "malformed array literal"),
    ("'{99999999999}'", "22003", 'value "99999999999" is out of range for type integer'),
])
def test_bad_array_literals_are_rejected(conn, arrays, literal, sqlstate, message):
    with pytest.raises(psycopg.Error, match=message) as e:
        conn.execute(f"INSERT INTO {arrays} (id, xs) VALUES (9, {literal})")
    assert e.value.sqlstate == sqlstate
    assert conn.execute(f"SELECT count(*) FROM {arrays}").fetchone() == (4,)


def test_unsupported_arrays_are_refused_by_name(conn, table_name):
    # PostgreSQL accepts these; sqlvec stores one-dimensional arrays of the listed element types only
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="multidimensional array"):
        conn.execute(f"CREATE TABLE {table_name} (m int[][])")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="array column of type"):
        conn.execute(f"CREATE TABLE {table_name} (m numeric[])")
    conn.execute(f"CREATE TABLE {table_name} (id int, xs int[])")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="multidimensional"):
        conn.execute(f"INSERT INTO {table_name} VALUES (1, '{{{{1,2}},{{3,4}}}}')")
    assert conn.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (0,)


@pytest.mark.pg_compatible
def test_copy_text_with_arrays(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int, xs int[], ts text[])")
    data = '1\t{1,2}\t{a,"b c"}\n2\t{}\t{NULL,"\\\\\\"q"}\n3\t\\N\t{z}\n'
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} FROM STDIN") as cp:
        cp.write(data)
    rows = conn.execute(f"SELECT id, xs, ts FROM {table_name} ORDER BY id").fetchall()
    assert rows == [(1, [1, 2], ["a", "b c"]), (2, [], [None, "\"q"]), (3, None, ["z"])]


def test_array_filters_in_vector_search(conn, table_name):
    rng = np.random.default_rng(3)
    n = 3000
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    tags = [[i % 7, i % 11] for i in range(n)]
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, tags int[], e vector(8))")
    buf = io.StringIO()
    for i in range(n):
        buf.write(f"{i}\t{{{tags[i][0]},{tags[i][1]}}}\t[{','.join(map(str, vecs[i]))}]\n")
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} FROM STDIN") as cp:
        cp.write(buf.getvalue())
    q = rng.standard_normal(8).astype(np.float32)
    qs = "[" + ",".join(map(str, q)) + "]"
    d = np.linalg.norm(vecs - q, axis=1)
    match = np.array([3 in t for t in tags])
    both = np.array([3 in t and 5 in t for t in tags])

    def exact(mask, k):
        ids = np.flatnonzero(mask)
        return ids[np.argsort(d[ids], kind="stable")][:k].tolist()

    for index in (False, True):
        if index:
            conn.execute(f"CREATE INDEX ON {table_name} USING hnsw (e vector_l2_ops)")
        got = conn.execute(f"SELECT id FROM {table_name} WHERE 3 = ANY(tags) ORDER BY e <-> %s LIMIT 20",
                           [qs]).fetchall()
        assert len(got) == 20
        assert len({r[0] for r in got} & set(exact(match, 20))) >= 19
        got = conn.execute(f"SELECT id FROM {table_name} WHERE tags @> '{{3,5}}' ORDER BY e <-> %s LIMIT 50",
                           [qs]).fetchall()
        assert [r[0] for r in got] == exact(both, 50)  # few matches: searched exactly
        r = float(np.sort(d)[300])
        got = conn.execute(f"SELECT id FROM {table_name} WHERE e <-> %s < %s AND tags && '{{3}}'",
                           [qs, r]).fetchall()
        assert sorted(x[0] for x in got) == sorted(np.flatnonzero(match & (d < r)).tolist())


def test_arrays_survive_restart(tmp_path: Path):
    server = start_server(tmp_path / "data", seal_rows=2)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("CREATE TABLE a (id int, xs bigint[], ts varchar(5)[])")
            c.execute("INSERT INTO a VALUES (1, '{1,NULL}', '{ab}'), (2, '{}', NULL), (3, NULL, '{x,y}')")
            c.execute("CHECKPOINT")
            c.execute("INSERT INTO a VALUES (4, '{4}', '{\"q r\"}')")  # only in the WAL
        server.kill()
        server = start_server(tmp_path / "data", seal_rows=2)
        with psycopg.connect(server.dsn, autocommit=True) as c:
            assert c.execute("SELECT id, xs, ts FROM a ORDER BY id").fetchall() == [
                (1, [1, None], ["ab"]), (2, [], None), (3, None, ["x", "y"]), (4, [4], ["q r"])]
            assert c.execute("SELECT id FROM a WHERE 4 = ANY(xs)").fetchall() == [(4,)]
    finally:
        server.stop()
