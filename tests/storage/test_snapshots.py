"""Snapshot isolation and exact counts through inserts, deletes, seals and reopen."""

from __future__ import annotations

import numpy as np
import pytest
from storage_testing import rows, table_schema

from storage import CreateTable, Delete, DropTable, Insert, NoSuchTableError, StorageError


def _ids(snap, table="t"):
    return sorted(snap.scan(table, ["id"]).column("id").to_pylist())


def test_snapshot_never_changes(open_store):
    store = open_store(seal_rows=4)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(3)))])
    s1 = store.snapshot()
    segs1 = [(v.segment_id, v.num_live, None if v.live is None else v.live.copy()) for v in s1.segments("t")]

    store.commit([Insert("t", rows(schema, range(3, 10)))])  # crosses a seal
    rid = store.lookup_row_ids("t", rows(schema, [1, 5]))
    store.commit([Delete("t", rid)])
    s2 = store.snapshot()
    store.commit([DropTable("t")])

    assert _ids(s1) == [0, 1, 2] and s1.count("t") == 3
    assert [(v.segment_id, v.num_live) for v in s1.segments("t")] == [(a, b) for a, b, _ in segs1]
    for v, (_, _, live) in zip(s1.segments("t"), segs1):
        assert (v.live is None and live is None) or (v.live == live).all()
    assert _ids(s2) == [0, 2, 3, 4, 6, 7, 8, 9] and s2.count("t") == 8
    assert s1.lsn < s2.lsn
    with pytest.raises(NoSuchTableError):
        store.snapshot().count("t")
    assert "t" in s2.catalog and "t" not in store.snapshot().catalog


def test_live_masks_are_read_only(open_store):
    store = open_store(seal_rows=4)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(6)))])
    store.commit([Delete("t", np.array([0, 5]))])
    views = store.snapshot().segments("t")
    assert [v.num_live for v in views] == [3, 1]
    for v in views:
        with pytest.raises(ValueError):
            v.live[0] = True


def test_growing_segment_id_changes_with_content(open_store):
    store = open_store(seal_rows=100)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, [1]))])
    a = store.snapshot().segments("t")[0]
    store.commit([Insert("t", rows(schema, [2]))])
    b = store.snapshot().segments("t")[0]
    assert not a.sealed and a.segment_id != b.segment_id
    assert a.data.num_rows == 1 and b.data.num_rows == 2
    assert store.snapshot().segments("t")[0].segment_id == b.segment_id


def test_count_exact_through_everything(open_store, tmp_path):
    store = open_store(seal_rows=5)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    rng = np.random.default_rng(7)
    live = set()
    next_id = 0
    for step in range(60):
        if live and rng.random() < 0.35:
            victims = rng.choice(sorted(live), size=min(len(live), int(rng.integers(1, 4))), replace=False)
            store.commit([Delete("t", store.lookup_row_ids("t", rows(schema, victims.tolist())))])
            live -= set(victims.tolist())
        else:
            n = int(rng.integers(1, 8))
            store.commit([Insert("t", rows(schema, range(next_id, next_id + n)))])
            live |= set(range(next_id, next_id + n))
            next_id += n
        snap = store.snapshot()
        assert snap.count("t") == len(live) == sum(v.num_live for v in snap.segments("t"))
        if step % 20 == 19:
            store.close()
            store = open_store(seal_rows=5)
            assert store.snapshot().count("t") == len(live)
    assert _ids(store.snapshot()) == sorted(live)
    store.checkpoint()
    store.close()
    store = open_store(seal_rows=5)
    assert store.snapshot().count("t") == len(live)
    assert _ids(store.snapshot()) == sorted(live)


def test_scan_columns_and_row_ids(open_store):
    store = open_store()
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, [10, 11]))])
    t = store.snapshot().scan("t", ["body", "id"], with_row_ids=True)
    assert t.column_names == ["_rowid", "body", "id"]
    assert t.column("_rowid").to_pylist() == [0, 1]
    assert store.snapshot().scan("t", []).num_rows == 2  # no columns, still the row count
    with pytest.raises(StorageError, match='column "nope"'):
        store.snapshot().scan("t", ["nope"])
    store.commit([CreateTable(table_schema("empty"))])
    e = store.snapshot().scan("empty", with_row_ids=True)
    assert e.num_rows == 0 and e.column_names == ["_rowid", "id", "embedding", "body"]


def test_growing_segment_keeps_few_chunks(open_store):
    store = open_store(seal_rows=100_000)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for i in range(3000):
        store.commit([Insert("t", rows(schema, [i]))])
    (seg,) = store.snapshot().segments("t")
    assert not seg.sealed and seg.num_rows == 3000
    assert seg.data.column("id").num_chunks <= 40
    assert seg.data.column("id").to_pylist() == list(range(3000))
    assert seg.data.column("_rowid").to_pylist() == list(range(3000))
