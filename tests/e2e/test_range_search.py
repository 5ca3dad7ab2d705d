"""Range search: WHERE bounds on a vector distance, with and without an index, against numpy.

``SHOW sqlvec.last_search`` tells whether a query ran as range search and through which index.
"""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest

from tests.e2e.test_exact_search import OPS, ground_truth, vec

REFERENCE = bool(os.environ.get("SQLVEC_TEST_PG") or os.environ.get("SQLVEC_TEST_DSN"))
N, DIM = 3000, 8


@pytest.fixture(scope="module")
def ranged(server):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, DIM)).astype(np.float32)
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS ranged")
        c.execute(f"CREATE TABLE ranged (id int PRIMARY KEY, e vector({DIM}), tag int)")
        with c.cursor().copy("COPY ranged (id, e, tag) FROM STDIN") as cp:
            for i, v in enumerate(X):
                cp.write_row((i, None if i % 97 == 0 else vec(v), i % 5))
    valid = np.array([i % 97 != 0 for i in range(N)])
    return X, valid


def between(sorted_d: np.ndarray, i: int) -> float:
    """A bound halfway between the i-th and (i+1)-th distances: no row sits on it to float rounding."""
    return float((sorted_d[i] + sorted_d[i + 1]) / 2)


def expected(X, valid, q, metric, lo, hi, *, lo_inc=True, hi_inc=False, extra=None):
    d = ground_truth(X, q, metric)
    ok = valid & ((d >= lo) if lo_inc else (d > lo)) & ((d <= hi) if hi_inc else (d < hi))
    if extra is not None:
        ok &= extra
    ids = np.flatnonzero(ok)
    return ids[np.argsort(d[ids], kind="stable")], d


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine", "l1"])
def test_range_matches_brute_force(conn, ranged, metric):
    if REFERENCE:
        pytest.skip("sqlvec's SHOW sqlvec.last_search")
    X, valid = ranged
    q = X[10]
    d = ground_truth(X, q, metric)
    hi = between(np.sort(d[valid]), 40)  # 41 rows inside
    op = OPS[metric]
    rows = conn.execute(f"SELECT id, e {op} %s AS d FROM ranged WHERE e {op} %s < %s",
                        [vec(q), vec(q), hi]).fetchall()
    want, _ = expected(X, valid, q, metric, -np.inf, hi)
    assert [r[0] for r in rows] == want.tolist()  # nearest first without an ORDER BY
    assert np.allclose([r[1] for r in rows], d[want], rtol=1e-6, atol=1e-9)
    assert conn.execute("SHOW sqlvec.last_search").fetchone()[0].startswith("exact")


def test_range_forms_and_filters(conn, ranged):
    if REFERENCE:
        pytest.skip("sqlvec's SHOW sqlvec.last_search")
    X, valid = ranged
    q = X[20]
    d = ground_truth(X, q, "l2")
    lo, hi = between(np.sort(d[valid]), 10), between(np.sort(d[valid]), 60)
    tags = np.arange(N) % 5
    cases = [
        (f"e <-> '{vec(q)}' <= {hi!r}", dict(hi_inc=True), None),
        (f"{hi!r} > e <-> '{vec(q)}'", {}, None),
        (f"e <-> '{vec(q)}' BETWEEN {lo!r} AND {hi!r}", dict(hi_inc=True), lo),
        (f"e <-> '{vec(q)}' > {lo!r} AND e <-> '{vec(q)}' < {hi!r} AND tag = 2", dict(lo_inc=False), lo),
        (f"tag IN (1, 3) AND l2_distance(e, '{vec(q)}') < {hi!r}", {}, None),
    ]
    for where, flags, low in cases:
        extra = None
        if "tag = 2" in where:
            extra = tags == 2
        elif "tag IN" in where:
            extra = np.isin(tags, [1, 3])
        want, _ = expected(X, valid, q, "l2", -np.inf if low is None else low, hi, extra=extra, **flags)
        got = [r[0] for r in conn.execute(f"SELECT id FROM ranged WHERE {where}").fetchall()]
        assert got == want.tolist(), where
        assert "exact" in conn.execute("SHOW sqlvec.last_search").fetchone()[0], where
    # other orders and limits run over the rows found
    want, _ = expected(X, valid, q, "l2", -np.inf, hi)
    got = conn.execute("SELECT id FROM ranged WHERE e <-> %s < %s ORDER BY id DESC LIMIT 7 OFFSET 2",
                       [vec(q), hi]).fetchall()
    assert [r[0] for r in got] == sorted(want.tolist(), reverse=True)[2:9]
    assert conn.execute("SELECT count(*) FROM ranged WHERE e <-> %s < %s", [vec(q), hi]).fetchone()[0] == len(want)
    # nothing inside, a NULL bound, a NULL query
    assert conn.execute("SELECT id FROM ranged WHERE e <-> %s < 0", [vec(q)]).fetchall() == []
    assert conn.execute("SELECT id FROM ranged WHERE e <-> %s < %s", [vec(q), None]).fetchall() == []
    assert conn.execute("SELECT id FROM ranged WHERE e <-> %s < 5", [None]).fetchall() == []


@pytest.mark.parametrize("method,opclass,metric", [("hnsw", "vector_l2_ops", "l2"),
                                                   ("ivfflat", "vector_cosine_ops", "cosine"),
                                                   ("flat", "vector_ip_ops", "ip")])
def test_range_through_an_index(conn, table_name, method, opclass, metric):
    if REFERENCE:
        pytest.skip("sqlvec's SHOW sqlvec.last_search")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4000, DIM)).astype(np.float32)
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector({DIM}))")
    with conn.cursor().copy(f"COPY {table_name} (id, e) FROM STDIN") as cp:
        for i, v in enumerate(X):
            cp.write_row((i, vec(v)))
    conn.execute("CHECKPOINT")
    conn.execute(f"CREATE INDEX ON {table_name} USING {method} ({opclass})".replace(f"({opclass})",
                                                                                   f"(e {opclass})"))
    conn.execute("SET ivfflat.probes = 8")
    op = OPS[metric]
    recall = []
    for qi in range(10):
        q = X[qi * 7]
        d = ground_truth(X, q, metric)
        hi = between(np.sort(d), 50)
        got = [r[0] for r in conn.execute(f"SELECT id FROM {table_name} WHERE e {op} %s < %s",
                                          [vec(q), hi]).fetchall()]
        want = np.flatnonzero(d < hi)
        assert set(got) <= set(want.tolist())  # never a row outside the bound
        recall.append(len(set(got) & set(want.tolist())) / len(want))
        assert f"index {table_name}_e_idx ({method})" in conn.execute("SHOW sqlvec.last_search").fetchone()[0]
    assert np.mean(recall) >= 0.95, recall
    conn.execute("RESET ivfflat.probes")


@pytest.mark.parametrize("method", ["hnsw", "ivfsq8"])
def test_large_ranges_through_an_index(conn, table_name, method):
    """A range of many more rows than one graph walk holds (hnsw.ef_search 40) is still found whole: the
    index search widens until it passes the bound, and a range holding more than an eighth of the
    segment's (allowed) rows (for HNSW, more than rows / (2 m)) is scanned exactly instead. Recall
    >= 0.95 at 50, 200, 600 and 3,000 rows of 12,000, with and without a filter."""
    if REFERENCE:
        pytest.skip("sqlvec's SHOW sqlvec.last_search")
    n = 12000
    rng = np.random.default_rng(12)
    X = rng.standard_normal((n, DIM)).astype(np.float32)
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector({DIM}), tag int)")
    with conn.cursor().copy(f"COPY {table_name} (id, e, tag) FROM STDIN") as cp:
        for i, v in enumerate(X):
            cp.write_row((i, vec(v), i % 4))
    conn.execute("CHECKPOINT")
    conn.execute(f"CREATE INDEX ON {table_name} USING {method} (e vector_l2_ops)"
                 + (" WITH (lists = 50)" if method == "ivfsq8" else ""))
    conn.execute("SET ivfflat.probes = 10")
    conn.execute("SET sqlvec.exact_below = 0")  # even the filtered ranges go through the index
    try:
        for size in (50, 200, 600, 3000):
            for where, extra in (("", np.ones(n, bool)), (" AND tag <> 0", np.arange(n) % 4 != 0)):
                recall = []
                for qi in range(5):
                    q = X[qi * 11]
                    d = ground_truth(X, q, "l2")
                    hi = between(np.sort(d[extra]), size)
                    got = [r[0] for r in conn.execute(
                        f"SELECT id FROM {table_name} WHERE e <-> %s < %s{where}", [vec(q), hi]).fetchall()]
                    want = set(np.flatnonzero((d < hi) & extra).tolist())
                    assert set(got) <= want and len(got) == len(set(got))
                    recall.append(len(set(got) & want) / len(want))
                how = conn.execute("SHOW sqlvec.last_search").fetchone()[0]
                # 3,000 rows: more than an eighth of the (allowed) rows, scanned exactly; HNSW gives
                # up past rows / 32 (m = 16), so its 600-row ranges are scanned exactly too
                exact = size == 3000 or (size == 600 and method == "hnsw")
                assert ("exact: 1 segments" in how) == exact, (size, how)
                assert np.mean(recall) >= 0.95, (size, where, recall)
    finally:
        conn.execute("RESET ivfflat.probes")
        conn.execute("RESET sqlvec.exact_below")


@pytest.mark.pg_compatible
def test_range_predicates_as_postgresql(conn, table_name):
    """The rows and order PostgreSQL + pgvector give, on points whose distances are far from the bounds."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector(2), tag text)")
    conn.execute(f"INSERT INTO {table_name} VALUES (1, '[0,0]', 'a'), (2, '[1,0]', 'b'), (3, '[0,2]', 'a'), "
                 "(4, '[3,3]', 'b'), (5, NULL, 'a'), (6, '[0.5,0.5]', 'b')")
    q = "[0,0]"
    assert conn.execute(f"SELECT id FROM {table_name} WHERE e <-> %s < 1.5 ORDER BY e <-> %s, id",
                        [q, q]).fetchall() == [(1,), (6,), (2,)]
    assert conn.execute(f"SELECT id FROM {table_name} WHERE e <-> %s BETWEEN 0.5 AND 2.5 AND tag = 'a' "
                        "ORDER BY id", [q]).fetchall() == [(3,)]
    rows = conn.execute(f"SELECT id, round((e <-> %s)::numeric, 3) FROM {table_name} WHERE 2 >= e <-> %s "
                        "ORDER BY id DESC LIMIT 2", [q, q]).fetchall()
    assert [(i, str(d)) for i, d in rows] == [(6, "0.707"), (3, "2.000")]
    assert conn.execute(f"SELECT count(*) FROM {table_name} WHERE e <-> %s < 100", [q]).fetchone()[0] == 5


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_within(conn, ranged, metric):
    """``d WITHIN r`` is ``d < r``; ``d WITHIN lo TO hi`` is ``lo <= d < hi``; nearest first."""
    if REFERENCE:
        pytest.skip("WITHIN is sqlvec's own syntax")
    X, valid = ranged
    q = X[33]
    op = OPS[metric]
    d = ground_truth(X, q, metric)
    s = np.sort(d[valid])
    lo, hi = between(s, 5), between(s, 30)
    got = conn.execute(f"SELECT id FROM ranged WHERE e {op} %s WITHIN %s", [vec(q), hi]).fetchall()
    assert [r[0] for r in got] == expected(X, valid, q, metric, -np.inf, hi)[0].tolist()
    got = conn.execute(f"SELECT id, e {op} %s AS d FROM ranged WHERE e {op} %s WITHIN %s TO %s AND tag <> 0",
                       [vec(q), vec(q), lo, hi]).fetchall()
    want = expected(X, valid, q, metric, lo, hi, extra=np.arange(N) % 5 != 0)[0]
    assert [r[0] for r in got] == want.tolist()
    assert all(lo <= r[1] < hi for r in got)
