"""jsonb paths and functions with PostgreSQL's answers (the case table runs against real PostgreSQL too).

jsonb values come back as JSON text; PostgreSQL normalises spacing and sqlvec does not yet, so values
are compared parsed.
"""

from __future__ import annotations

import json

import psycopg
import pytest

DOCS = [
    (1, '{"a": 1, "b": {"c": [1, 2, "x"]}, "tags": ["x", "y"], "s": "hi", "t": true, "n": null, "f": 1.5}'),
    (2, '{"a": 2, "tags": []}'),
    (3, None),
]

# (expression over doc, {id: expected value}); None is SQL NULL
CASES = [
    ("doc #> '{b,c}'", {1: [1, 2, "x"], 2: None, 3: None}),
    ("doc #> '{b,c,2}'", {1: "x", 2: None, 3: None}),
    ("doc #>> '{b,c,2}'", {1: "x", 2: None, 3: None}),
    ("doc #>> '{a}'", {1: "1", 2: "2", 3: None}),
    ("doc #>> '{b}'", {1: {"c": [1, 2, "x"]}, 2: None, 3: None}),
    ("jsonb_extract_path(doc, 'b', 'c')", {1: [1, 2, "x"], 2: None, 3: None}),
    ("jsonb_extract_path_text(doc, 's')", {1: "hi", 2: None, 3: None}),
    ("jsonb_extract_path_text(doc, 'b', 'c', '0')", {1: "1", 2: None, 3: None}),
    ("jsonb_typeof(doc)", {1: "object", 2: "object", 3: None}),
    ("jsonb_typeof(doc -> 'tags')", {1: "array", 2: "array", 3: None}),
    ("jsonb_typeof(doc -> 's')", {1: "string", 2: None, 3: None}),
    ("jsonb_typeof(doc -> 't')", {1: "boolean", 2: None, 3: None}),
    ("jsonb_typeof(doc -> 'n')", {1: "null", 2: None, 3: None}),
    ("jsonb_typeof(doc -> 'f')", {1: "number", 2: None, 3: None}),
    ("jsonb_typeof(doc -> 'a')", {1: "number", 2: "number", 3: None}),
    ("jsonb_array_length(doc -> 'tags')", {1: 2, 2: 0, 3: None}),
]


def _value(v):
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


@pytest.fixture()
def docs(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, doc jsonb)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table_name} VALUES (%s, %s)", DOCS)
    return table_name


@pytest.mark.pg_compatible
@pytest.mark.parametrize("expr,want", CASES, ids=[c[0] for c in CASES])
def test_jsonb_paths_and_functions(conn, docs, expr, want):
    rows = conn.execute(f"SELECT id, {expr} FROM {docs} ORDER BY id").fetchall()
    got = {i: (None if v is None else _value(v) if not isinstance(v, (dict, list)) else v) for i, v in rows}
    assert got == {i: (None if v is None else _value(v) if isinstance(v, str) else v) for i, v in want.items()}


@pytest.mark.pg_compatible
def test_jsonb_array_length_of_a_scalar_is_an_error(conn, docs):
    with pytest.raises(psycopg.Error, match="cannot get array length of a scalar"):
        conn.execute(f"SELECT jsonb_array_length(doc -> 'a') FROM {docs} WHERE id = 1").fetchall()
    assert conn.execute(f"SELECT count(*) FROM {docs}").fetchone()[0] == 3


@pytest.mark.pg_compatible
def test_jsonb_paths_in_filters(conn, docs):
    assert conn.execute(f"SELECT id FROM {docs} WHERE doc #>> '{{b,c,2}}' = 'x'").fetchall() == [(1,)]
    assert conn.execute(f"SELECT id FROM {docs} WHERE jsonb_array_length(doc -> 'tags') = 0").fetchall() == [(2,)]
    assert conn.execute(f"SELECT id FROM {docs} WHERE jsonb_typeof(doc -> 's') = 'string'").fetchall() == [(1,)]


CONTAINMENT = [  # (a, b, a @> b) as PostgreSQL answers
    ('[1, 2, 3]', '[1, 3]', True),
    ('{"a": [1, 2], "b": 1}', '{"a": [1]}', True),
    ('"foo"', '"foo"', True),
    ('["foo", "bar"]', '"foo"', True),
    ('{"a": 1}', '{"a": 1, "b": 2}', False),
    ('[1, [2, 3]]', '[[3]]', True),
    ('{"a": {"b": 1, "c": 2}}', '{"a": {"c": 2}}', True),
    ('{"a": 1}', '{}', True),
    ('[1]', '[]', True),
    ('1', '[1]', False),
    ('{"a": 1}', '{"a": "1"}', False),
]


@pytest.mark.pg_compatible
def test_jsonb_containment(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, a jsonb, b jsonb)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table_name} VALUES (%s, %s, %s)",
                        [(i, a, b) for i, (a, b, _) in enumerate(CONTAINMENT)])
    got = dict(conn.execute(f"SELECT id, a @> b FROM {table_name} ORDER BY id").fetchall())
    assert got == {i: want for i, (_, _, want) in enumerate(CONTAINMENT)}
    got = dict(conn.execute(f"SELECT id, b <@ a FROM {table_name} ORDER BY id").fetchall())
    assert got == {i: want for i, (_, _, want) in enumerate(CONTAINMENT)}
    ids = [r[0] for r in conn.execute(f"SELECT id FROM {table_name} WHERE a @> '{{\"a\": [1]}}' ORDER BY id")]
    assert ids == [1]


@pytest.mark.pg_compatible
def test_jsonb_key_operators(conn, docs):
    def ids(where: str) -> list[int]:
        return [r[0] for r in conn.execute(f"SELECT id FROM {docs} WHERE {where} ORDER BY id")]

    assert ids("doc ? 'b'") == [1]
    assert ids("doc ? 'zz'") == []
    assert ids("doc -> 'tags' ? 'y'") == [1]
    assert ids("doc ?| array['b', 'tags']") == [1, 2]
    assert ids("doc ?& array['a', 'b']") == [1]
    assert ids("doc -> 'tags' @> '[\"x\"]'") == [1]
    assert ids("doc @> '{\"a\": 2}'") == [2]


def test_milvus_json_helpers(conn, docs):
    """json_contains / json_contains_all / json_contains_any as Milvus users write them."""
    def ids(where: str) -> list[int]:
        return [r[0] for r in conn.execute(f"SELECT id FROM {docs} WHERE {where} ORDER BY id")]

    assert ids("""json_contains(doc -> 'tags', '"x"')""") == [1]
    assert ids("""json_contains_all(doc -> 'tags', '["x", "y"]')""") == [1]
    assert ids("""json_contains_all(doc -> 'tags', '["x", "z"]')""") == []
    assert ids("""json_contains_any(doc -> 'tags', '["z", "y"]')""") == [1]
    assert ids("""json_contains_any(doc -> 'tags', '["z"]')""") == []


def test_json_filter_with_vector_search(conn, table_name):
    import numpy as np

    from tests.e2e.test_exact_search import ground_truth, vec

    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 4)).astype(np.float32)
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector(4), meta jsonb)")
    with conn.cursor().copy(f"COPY {table_name} (id, e, meta) FROM STDIN") as cp:
        for i, v in enumerate(X):
            cp.write_row((i, vec(v), json.dumps({"tags": ["even" if i % 2 == 0 else "odd", f"m{i % 7}"], "n": i})))
    q = X[3]
    rows = conn.execute(f"""SELECT id FROM {table_name} WHERE meta -> 'tags' @> '["odd"]' AND (meta ->> 'n')::int < 400
                            ORDER BY e <-> %s LIMIT 5""", [vec(q)]).fetchall()
    d = ground_truth(X, q, "l2")
    d[(np.arange(500) % 2 == 0) | (np.arange(500) >= 400)] = np.inf
    assert [r[0] for r in rows] == np.argsort(d, kind="stable")[:5].tolist()
