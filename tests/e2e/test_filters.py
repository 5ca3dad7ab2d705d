"""Filters of vector searches give the rows DuckDB's (PostgreSQL's) evaluation gives.

Simple predicates of a top-k are evaluated with Arrow kernels (sqlvec/arrow_filter.py), the rest by
DuckDB; a plain ``SELECT ... WHERE`` always runs in DuckDB. Each predicate here is run both ways, over
data with NULLs, and must select the same rows.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest

from tests.e2e.test_exact_search import vec

PREDICATES = [
    "n < 50", "n <= 50", "n > 90", "n >= 90", "n = 7", "n <> 7", "50 > n", "x < 0.25", "x >= -0.5",
    "name = 'b'", "name <> 'b'", "name < 'c'", "flag", "NOT flag", "flag = false",
    "n < 50 AND name = 'a'", "n < 10 OR n > 90", "NOT (n < 50)", "n BETWEEN 10 AND 20",
    "n IN (1, 2, 3, 50)", "n NOT IN (1, 2, 3)", "name IN ('a', 'c')", "n IS NULL", "n IS NOT NULL",
    "name IS NULL OR n < 5", "(n < 20 OR name = 'c') AND NOT flag", "n < NULL", "n = 1.5", "x < 1",
    "n::text = '5'", "name LIKE 'a%'", "length(name) = 1",  # not simple: DuckDB evaluates these
    "name ILIKE 'A%'", "name NOT LIKE '%b'", "n * 2 + 1 > 101", "n % 3 = 0", "abs(x) < 0.1", "-n < -95",
    "n BETWEEN 10 AND 20 OR name ILIKE 'c'", "NOT (name IN ('a') OR n IS NULL)",
    "doc ->> 'k' = 'v1'", "(doc -> 'n')::int < 10", "doc @> '{\"k\": \"v2\"}'", "doc ? 'odd'",
    "doc -> 'tags' ?| array['t3', 't4']", "json_contains(doc -> 'tags', '\"t1\"')",
    "jsonb_array_length(doc -> 'tags') = 2", "n > 1000",
]


@pytest.fixture(scope="module")
def filtered(server):
    import psycopg

    rng = np.random.default_rng(8)
    n = 1000
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS filtered")
        c.execute("CREATE TABLE filtered (id int PRIMARY KEY, e vector(4), n int, x float8, name text, flag bool, "
                  "doc jsonb)")
        with c.cursor().copy("COPY filtered (id, e, n, x, name, flag, doc) FROM STDIN") as cp:
            for i in range(n):
                doc = {"k": f"v{i % 3}", "n": i % 50, "tags": [f"t{j}" for j in range(i % 5)]}
                if i % 2:
                    doc["odd"] = True
                cp.write_row((i, vec(rng.standard_normal(4)), None if i % 17 == 0 else int(rng.integers(0, 100)),
                              None if i % 19 == 0 else float(rng.standard_normal()),
                              None if i % 23 == 0 else "abc"[int(rng.integers(0, 3))],
                              None if i % 29 == 0 else bool(rng.integers(0, 2)),
                              None if i % 31 == 0 else json.dumps(doc)))
    return n


@pytest.mark.parametrize("predicate", PREDICATES)
def test_filter_of_a_search_equals_sql(conn, filtered, predicate):
    everything = conn.execute(f"SELECT id FROM filtered WHERE {predicate} ORDER BY e <-> '[0,0,0,0]' "
                              f"LIMIT {filtered}").fetchall()
    plain = conn.execute(f"SELECT id FROM filtered WHERE {predicate}").fetchall()
    assert sorted(r[0] for r in everything) == sorted(r[0] for r in plain)


def test_filter_parameters(conn, filtered):
    for params in ([50, "b"], [None, "b"], [10, None]):
        searched = conn.execute("SELECT id FROM filtered WHERE n < %s AND name = %s ORDER BY e <-> '[0,0,0,0]' "
                                f"LIMIT {filtered}", params).fetchall()
        plain = conn.execute("SELECT id FROM filtered WHERE n < %s AND name = %s", params).fetchall()
        assert sorted(searched) == sorted(plain)


def test_a_filter_matching_nothing_returns_no_rows(conn, filtered):
    for sql in ("SELECT id FROM filtered WHERE n > 1000 ORDER BY e <-> '[0,0,0,0]' LIMIT 10",
                "SELECT id FROM filtered WHERE name = 'zzz' AND e <-> '[0,0,0,0]' < 100",
                "SELECT id FROM filtered WHERE false ORDER BY e <=> '[1,0,0,0]' LIMIT 10"):
        assert conn.execute(sql).fetchall() == []


@pytest.mark.pg_compatible
def test_a_filter_on_a_missing_column_is_42703(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int, e vector(2))")
    conn.execute(f"INSERT INTO {table_name} VALUES (1, '[0,0]')")
    for sql in (f"SELECT id FROM {table_name} WHERE nope = 1 ORDER BY e <-> '[0,0]' LIMIT 1",
                f"SELECT id FROM {table_name} WHERE e <-> '[0,0]' < 1 AND nope > 2"):
        with pytest.raises(psycopg.errors.UndefinedColumn, match='column "nope" does not exist'):
            conn.execute(sql)
    assert conn.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (1,)


def test_explain_binds_parameters(conn, filtered):
    sql = "EXPLAIN SELECT id FROM filtered WHERE n < %s AND name = %s ORDER BY e <-> %s LIMIT 5"
    for i in range(7):  # psycopg prepares it after 5: the prepared EXPLAIN binds each execution's values
        plan = "\n".join(r[0] for r in conn.execute(sql, [i * 10, "a", "[0,0,0,0]"]).fetchall())
        assert plan.startswith("Vector Top-K on filtered") and "Filter: n < $1 AND name = $2" in plan
        matching = conn.execute("SELECT count(*) FROM filtered WHERE n < %s AND name = 'a'", [i * 10]).fetchone()[0]
        assert f"filter admits {matching}:" in plan
    analyzed = conn.execute("EXPLAIN ANALYZE SELECT id FROM filtered WHERE n < %s ORDER BY e <-> %s LIMIT 5",
                            [50, "[0,0,0,0]"]).fetchall()
    assert ("Actual rows: 5",) in analyzed
    with pytest.raises(psycopg.errors.UndefinedParameter):
        conn.execute("EXPLAIN SELECT id FROM filtered WHERE n < $1")
