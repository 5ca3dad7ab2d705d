"""Compaction: segments rewritten without deleted rows and small ones merged, with the same rows, row ids,
counts and key lookups before and after; deletes that land while it runs are kept; snapshots taken before
still read; the disk space of deleted rows goes back; a reopen (or a crash at any point) finds the same
table."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from storage_testing import rows, table_schema, vector_rows, vector_schema

from storage import CreateIndex, CreateTable, Delete, Insert
from storage.compaction import plan_groups
from storage.errors import DuplicateKeyError
from storage.types import IndexSchema


def _table(store, n, *, seal_rows=None):
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for start in range(0, n, 10):
        store.commit([Insert("t", rows(schema, range(start, min(n, start + 10))))])
    store.checkpoint()
    return schema


def _contents(snap):
    data = snap.scan("t", ["id", "body"], with_row_ids=True)
    order = np.argsort(data.column("id").to_numpy())
    return [data.column(c).to_numpy(zero_copy_only=False)[order].tolist() for c in ("_rowid", "id", "body")]


def _delete_ids(store, schema, ids):
    rid = store.lookup_row_ids("t", rows(schema, ids))
    store.commit([Delete("t", rid[rid >= 0])])


def _folder_bytes(store):
    folder = next((store.root / "tables").iterdir())
    return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("seg-"))


def test_plan_groups_picks_deleted_and_small_segments(open_store):
    store = open_store(seal_rows=10, compaction_interval=0)
    schema = _table(store, 50)  # five full segments of 10
    segs = store.snapshot()._version.tables["t"].sealed
    assert plan_groups(segs, 10, deleted_ratio=0.2) == []
    _delete_ids(store, schema, [0, 1, 12, 13, 14, 40])
    segs = store.snapshot()._version.tables["t"].sealed
    # segment 0 (2 of 10 dead) and segment 1 (3 dead) merge (15 live rows would exceed 10: two groups)
    assert plan_groups(segs, 10, deleted_ratio=0.2) == [(0, 1), (1, 2)]
    assert plan_groups(segs, 10, deleted_ratio=0.0) == [(0, 1), (1, 2), (4, 5)]
    assert plan_groups(segs, 100, deleted_ratio=0.5) == [(0, 5)]  # all small next to seal_rows 100


def test_compaction_keeps_rows_ids_counts_and_lookups(open_store):
    store = open_store(seal_rows=10, compaction_interval=0)
    schema = _table(store, 95)
    _delete_ids(store, schema, list(range(0, 95, 3)))
    before = store.snapshot()
    expected = _contents(before)
    count = before.count("t")
    bytes_before = _folder_bytes(store)
    done = store.compact("t", deleted_ratio=0.0)
    assert done and all(r.rows_after < r.rows_before for r in done)
    after = store.snapshot()
    assert _contents(after) == expected and after.count("t") == count == 95 - 32
    assert sum(v.num_rows for v in after.segments("t")) == count  # no deleted row stored any more
    assert _folder_bytes(store) < bytes_before
    assert _contents(before) == expected  # the snapshot taken before still reads its (removed) files
    keys = rows(schema, [1, 3, 94])
    assert (store.lookup_row_ids("t", keys) >= 0).tolist() == [True, False, True]
    store.commit([Insert("t", rows(schema, [3]))])  # the deleted key can come back; a live one cannot
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, [1]))])
    _delete_ids(store, schema, [1, 94])  # deletes find rows in merged segments by row id
    assert store.snapshot().count("t") == count - 1


def test_small_segments_merge(open_store):
    store = open_store(seal_rows=1000, compaction_interval=0)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for start in range(0, 60, 10):
        store.commit([Insert("t", rows(schema, range(start, start + 10)))])
        store.checkpoint()  # each CHECKPOINT seals a 10-row segment
    assert len(store.snapshot().segments("t")) == 6
    expected = _contents(store.snapshot())
    store.compact("t")
    assert len(store.snapshot().segments("t")) == 1 and _contents(store.snapshot()) == expected


def test_deletes_during_compaction_are_kept(open_store, monkeypatch):
    store = open_store(seal_rows=10, compaction_interval=0)
    schema = _table(store, 40)
    _delete_ids(store, schema, [0, 1, 2])
    import storage.store as store_module

    real = store_module.live_rows

    calls = []

    def slow_live_rows(group):  # a writer commits while the first new segment is being written
        out = real(group)
        if not calls:
            _delete_ids(store, schema, [5, 6, 33])
            store.commit([Insert("t", rows(schema, [100, 101]))])
        calls.append(1)
        return out

    monkeypatch.setattr(store_module, "live_rows", slow_live_rows)
    store.compact("t", deleted_ratio=0.0)
    ids = sorted(store.snapshot().scan("t", ["id"]).column("id").to_pylist())
    assert ids == [i for i in range(3, 40) if i not in (5, 6, 33)] + [100, 101]
    assert store.snapshot().count("t") == len(ids)


def test_reopen_after_compaction_and_later_writes(open_store, tmp_path):
    store = open_store(seal_rows=10, compaction_interval=0)
    schema = _table(store, 50)
    _delete_ids(store, schema, list(range(10, 30)))
    store.compact("t", deleted_ratio=0.0)
    _delete_ids(store, schema, [45])  # in the WAL only: replayed into the merged segment
    store.commit([Insert("t", rows(schema, [200]))])
    expected = _contents(store.snapshot())
    store.close()
    again = open_store(tmp_path / "data", seal_rows=10, compaction_interval=0)
    assert _contents(again.snapshot()) == expected and again.snapshot().count("t") == 30


def test_vector_index_of_the_merged_segment_is_built_before_it_is_published(open_store):
    store = open_store(seal_rows=200, compaction_interval=0)
    schema = vector_schema(dim=8)
    store.commit([CreateTable(schema)])
    vectors = np.random.default_rng(0).standard_normal((600, 8)).astype(np.float32)
    store.commit([Insert("docs", vector_rows(0, vectors))])
    store.checkpoint()
    store.commit([CreateIndex("docs", IndexSchema("docs_hnsw", "embedding", "hnsw", "l2", "vector_l2_ops",
                                                  (("m", 16), ("ef_construction", 64))))])
    assert store.wait_for_indexes("docs", timeout=60)
    rid = store.lookup_row_ids("docs", vector_rows(0, vectors[:300]).select(["id"]))
    store.commit([Delete("docs", rid)])
    store.compact("docs", deleted_ratio=0.0)
    snap = store.snapshot()
    for seg in snap.segments("docs"):
        assert snap.segment_index("docs", "docs_hnsw", seg) is not None


def test_background_compaction_under_a_query_load(open_store):
    store = open_store(seal_rows=10, compaction_interval=0.05, compaction_ratio=0.2)
    schema = _table(store, 200)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader():
        try:
            while not stop.is_set():
                snap = store.snapshot()
                seen.append(snap.count("t"))
                assert len(_contents(snap)[1]) == snap.count("t")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for start in range(0, 200, 20):
        _delete_ids(store, schema, list(range(start, start + 5)))
    deadline = 10.0
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        if all(v.num_live == v.num_rows for v in store.snapshot().segments("t")):
            break
        time.sleep(0.05)
    stop.set()
    t.join()
    assert not errors
    assert all(v.num_live == v.num_rows for v in store.snapshot().segments("t"))
    assert store.snapshot().count("t") == 150


@pytest.mark.parametrize("where", ["before_manifest", "after_manifest"])
def test_a_crash_at_either_side_of_the_manifest_loses_nothing(open_store, tmp_path, monkeypatch, where):
    """The process dies (simulated: the compaction stops with an exception and the store is abandoned
    without closing) with the new segment written but not in the manifest, or in the manifest with the
    old files not yet removed: the reopened store has the same rows and no stray files."""
    import storage.store as store_module

    store = open_store(seal_rows=10, compaction_interval=0)
    schema = _table(store, 40)
    _delete_ids(store, schema, list(range(0, 40, 2)))
    expected = _contents(store.snapshot())

    class Crash(Exception):
        pass

    if where == "before_manifest":
        def crash(*args, **kwargs):
            raise Crash
        monkeypatch.setattr(store_module, "checkpoint_table", crash)
    else:
        real = store_module.checkpoint_table

        def crash(*args, **kwargs):
            real(*args, **kwargs)
            raise Crash
        monkeypatch.setattr(store_module, "checkpoint_table", crash)
    with pytest.raises(Crash):
        store.compact("t", deleted_ratio=0.0)
    monkeypatch.undo()
    store._wal.close(sync=True)  # what a crash leaves: the WAL as written, the directory lock released
    store._unlock_dir()
    store._closed = True
    again = open_store(tmp_path / "data", seal_rows=10, compaction_interval=0)
    assert _contents(again.snapshot()) == expected
    folder = next((again.root / "tables").iterdir())
    from storage.manifest import load_manifest

    named = load_manifest(folder).files()
    assert {f.name for f in folder.iterdir() if f.name.startswith("seg-")} <= named
