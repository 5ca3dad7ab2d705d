"""Primary keys: duplicates are refused without changing anything; lookups find the live row."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pyarrow as pa
import pytest
from storage_testing import rows, table_schema

from storage import CreateTable, Delete, DuplicateKeyError, Insert, NullValueError, StorageError
from storage.types import ColumnSchema, ColumnType, TableSchema


def _setup(open_store, **kw):
    store = open_store(**kw)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    return store, schema


def _unchanged(store, before):
    after = store.snapshot()
    assert after.lsn == before.lsn
    assert after.scan("t", with_row_ids=True).equals(before.scan("t", with_row_ids=True))


@pytest.mark.parametrize("where", ["batch", "growing", "sealed"])
def test_duplicate_refused(open_store, where):
    store, schema = _setup(open_store, seal_rows=4)
    store.commit([Insert("t", rows(schema, range(4 if where == "sealed" else 2)))])
    assert any(s.sealed for s in store.snapshot().segments("t")) == (where == "sealed")
    before = store.snapshot()
    batch = rows(schema, [7, 8, 7]) if where == "batch" else rows(schema, [7, 1, 8])
    with pytest.raises(DuplicateKeyError) as e:
        store.commit([Insert("t", batch)])
    assert e.value.key_repr == ("(id)=(7)" if where == "batch" else "(id)=(1)")
    assert e.value.detail == f"Key {e.value.key_repr} already exists."
    assert str(e.value) == 'duplicate key value violates unique constraint "t_pkey"'
    _unchanged(store, before)
    store.commit([Insert("t", rows(schema, [7, 8]))])  # the failed commit left no trace
    assert store.snapshot().count("t") == before.count("t") + 2


def test_failed_commit_rolls_back_earlier_ops(open_store):
    store, schema = _setup(open_store, seal_rows=4)
    store.commit([Insert("t", rows(schema, range(6)))])
    before = store.snapshot()
    rid = store.lookup_row_ids("t", rows(schema, [0, 5]))
    with pytest.raises(DuplicateKeyError):
        store.commit([Delete("t", rid), Insert("t", rows(schema, [100])), Insert("t", rows(schema, [2]))])
    _unchanged(store, before)
    assert store.lookup_row_ids("t", rows(schema, [0, 5, 100])).tolist() == rid.tolist() + [-1]
    store.close()
    store = open_store(seal_rows=4)
    assert store.snapshot().count("t") == 6


def test_delete_then_reinsert_same_key(open_store):
    store, schema = _setup(open_store, seal_rows=4)
    store.commit([Insert("t", rows(schema, range(5)))])  # ids 0-3 sealed, 4 growing
    for key in (1, 4):
        rid = store.lookup_row_ids("t", rows(schema, [key]))
        store.commit([Delete("t", rid), Insert("t", rows(schema, [key], body="new"))])
        new = store.lookup_row_ids("t", rows(schema, [key]))
        assert new[0] > rid[0]
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, [1]))])
    # the same key updated many times, across seals
    for _ in range(12):
        rid = store.lookup_row_ids("t", rows(schema, [2]))
        store.commit([Delete("t", rid), Insert("t", rows(schema, [2]))])
    assert store.snapshot().count("t") == 5
    t = store.snapshot().scan("t", ["id", "body"])
    assert sorted(t.column("id").to_pylist()) == [0, 1, 2, 3, 4]
    store.close()
    store = open_store(seal_rows=4)
    assert store.lookup_row_ids("t", rows(schema, [0, 1, 2, 3, 4, 5])).tolist()[:5] == \
        store.snapshot().scan("t", ["id"], with_row_ids=True).sort_by("id").column("_rowid").to_pylist()
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, [2]))])


def test_insert_then_delete_in_one_commit(open_store):
    store, schema = _setup(open_store)
    store.commit([Insert("t", rows(schema, [1]))])
    nxt = 1  # row ids are assigned in order; the next insert gets row id 1
    store.commit([Insert("t", rows(schema, [2])), Delete("t", np.array([nxt]))])
    assert store.snapshot().count("t") == 1
    store.commit([Insert("t", rows(schema, [2]))])
    assert store.snapshot().count("t") == 2


def test_delete_of_dead_or_unknown_row(open_store):
    store, schema = _setup(open_store)
    store.commit([Insert("t", rows(schema, [1, 2]))])
    store.commit([Delete("t", np.array([0]))])
    for ids in ([0], [99], [-1]):
        with pytest.raises(StorageError, match="not a live row"):
            store.commit([Delete("t", np.array(ids))])
    store.commit([Delete("t", np.array([1, 1]))])  # repeated ids in one delete are one delete
    assert store.snapshot().count("t") == 0
    assert store.commit([Delete("t", np.array([], dtype=np.int64))]) == store.snapshot().lsn


def test_null_key_refused(open_store):
    store, schema = _setup(open_store)
    bad = pa.table({"id": pa.array([1, None], pa.int64()), "embedding": rows(schema, [1, 2])["embedding"],
                    "body": ["a", "b"]})
    with pytest.raises(NullValueError, match='column "id"'):
        store.commit([Insert("t", bad)])


def test_multi_column_and_typed_keys(open_store):
    store = open_store(seal_rows=3)
    schema = TableSchema("m", (
        ColumnSchema("tenant", ColumnType("text")),
        ColumnSchema("day", ColumnType("date")),
        ColumnSchema("n", ColumnType("numeric", precision=6, scale=2)),
        ColumnSchema("flag", ColumnType("bool")),
    ), ("tenant", "day", "n"))
    store.commit([CreateTable(schema)])
    arrow = store.catalog["m"].arrow_schema()

    def batch(*keys):
        t, d, n = zip(*keys)
        return pa.table([pa.array(t), pa.array(d, pa.date32()), pa.array(n, arrow.field("n").type),
                         pa.array([True] * len(keys))], schema=arrow)

    d1, d2 = datetime.date(2024, 1, 1), datetime.date(2024, 1, 2)
    one = decimal.Decimal("1.50")
    two = decimal.Decimal(2)
    store.commit([Insert("m", batch(("a", d1, one), ("a", d2, one), ("b", d1, one), ("a", d1, two)))])
    with pytest.raises(DuplicateKeyError) as e:
        store.commit([Insert("m", batch(("c", d1, one), ("b", d1, one)))])
    assert e.value.key_repr == "(tenant, day, n)=(b, 2024-01-01, 1.50)"
    with pytest.raises(DuplicateKeyError, match="m_pkey"):
        store.commit([Insert("m", batch(("z", d1, one), ("z", d1, one)))])
    found = store.lookup_row_ids("m", batch(("a", d2, one), ("a", d2, decimal.Decimal(3)), ("b", d1, one)))
    assert found.tolist() == [1, -1, 2]
    store.close()
    store = open_store(seal_rows=3)
    assert store.lookup_row_ids("m", batch(("a", d2, one))).tolist() == [1]


@pytest.mark.parametrize("type_, values", [
    (ColumnType("text"), ["x", "y", "é"]),
    (ColumnType("uuid"), ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                          "c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
    (ColumnType("int2"), [1, 2, 3]),
    (ColumnType("float8"), [0.5, -1.0, 2.25]),
    (ColumnType("bytea"), [b"\x00", b"\x00\x00", b""]),
    (ColumnType("timestamptz"), [datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
                                 datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
                                 datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)]),
])
def test_single_column_key_types(open_store, type_, values):
    store = open_store(seal_rows=2)
    schema = TableSchema("k", (ColumnSchema("k", type_),), ("k",))
    store.commit([CreateTable(schema)])
    arrow = store.catalog["k"].arrow_schema()
    t = pa.table([pa.array(values, arrow.field("k").type)], schema=arrow)
    store.commit([Insert("k", t.slice(0, 2))])
    store.commit([Insert("k", t.slice(2))])
    for i in range(3):
        with pytest.raises(DuplicateKeyError):
            store.commit([Insert("k", t.slice(i, 1))])
    assert store.lookup_row_ids("k", t).tolist() == [0, 1, 2]


def test_lookup_row_ids(open_store):
    store, schema = _setup(open_store, seal_rows=4)
    store.commit([Insert("t", rows(schema, range(10)))])
    keys = pa.table({"id": pa.array([3, None, 9, 42], pa.int32())})  # cast to the key's type; NULL -> -1
    assert store.lookup_row_ids("t", keys).tolist() == [3, -1, 9, -1]
    with pytest.raises(StorageError, match="primary key column"):
        store.lookup_row_ids("t", pa.table({"x": [1]}))
    store.commit([CreateTable(table_schema("nokey", pk=()))])
    with pytest.raises(StorageError, match="no primary key"):
        store.lookup_row_ids("nokey", keys)
    store.commit([Insert("nokey", rows(schema, [1, 1]))])  # no key, duplicates are fine
    assert store.snapshot().count("nokey") == 2


def test_many_single_row_inserts_stay_fast(open_store):
    """Each commit is O(batch + log n): 3000 single-row commits across many seals."""
    store, schema = _setup(open_store, seal_rows=64)
    for i in range(3000):
        store.commit([Insert("t", rows(schema, [i]))])
    assert store.snapshot().count("t") == 3000
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, [1234]))])
    assert len(store.snapshot().segments("t")) == 3000 // 64 + 1
    assert len(store._state.pk[store.catalog["t"].oid]._runs) <= 8
