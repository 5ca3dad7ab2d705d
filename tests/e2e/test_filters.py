"""Filters of vector searches give the rows DuckDB's (PostgreSQL's) evaluation gives.

Simple predicates of a top-k are evaluated with Arrow kernels (sqlvec/arrow_filter.py), the rest by
DuckDB; a plain ``SELECT ... WHERE`` always runs in DuckDB. Each predicate here is run both ways, over
data with NULLs, and must select the same rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.test_exact_search import vec

PREDICATES = [
    "n < 50", "n <= 50", "n > 90", "n >= 90", "n = 7", "n <> 7", "50 > n", "x < 0.25", "x >= -0.5",
    "name = 'b'", "name <> 'b'", "name < 'c'", "flag", "NOT flag", "flag = false",
    "n < 50 AND name = 'a'", "n < 10 OR n > 90", "NOT (n < 50)", "n BETWEEN 10 AND 20",
    "n IN (1, 2, 3, 50)", "n NOT IN (1, 2, 3)", "name IN ('a', 'c')", "n IS NULL", "n IS NOT NULL",
    "name IS NULL OR n < 5", "(n < 20 OR name = 'c') AND NOT flag", "n < NULL", "n = 1.5", "x < 1",
    "n::text = '5'", "name LIKE 'a%'", "length(name) = 1",  # not simple: DuckDB evaluates these
]


@pytest.fixture(scope="module")
def filtered(server):
    import psycopg

    rng = np.random.default_rng(8)
    n = 1000
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS filtered")
        c.execute("CREATE TABLE filtered (id int PRIMARY KEY, e vector(4), n int, x float8, name text, flag bool)")
        with c.cursor().copy("COPY filtered (id, e, n, x, name, flag) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((i, vec(rng.standard_normal(4)), None if i % 17 == 0 else int(rng.integers(0, 100)),
                              None if i % 19 == 0 else float(rng.standard_normal()),
                              None if i % 23 == 0 else "abc"[int(rng.integers(0, 3))],
                              None if i % 29 == 0 else bool(rng.integers(0, 2))))
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
