"""Concurrent commits share fsyncs, keep LSN order = apply order, and are all durable."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from storage_testing import rows, table_schema

from storage import CreateTable, Delete, DuplicateKeyError, Insert, Store
from storage.types import ColumnSchema, ColumnType, TableSchema


def _run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_concurrent_commits(tmp_path):
    store = Store.open(tmp_path, seal_rows=50, fsync=True)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    syncs = []
    real_sync = store._wal.sync

    def slow_sync():
        syncs.append(1)
        time.sleep(0.001)
        real_sync()

    store._wal.sync = slow_sync
    threads, per_thread = 8, 60
    done: list[tuple[int, int]] = []  # (lsn, key), appended only after commit returned
    lock = threading.Lock()

    def work(t):
        for i in range(per_thread):
            key = t * 1000 + i
            lsn = store.commit([Insert("t", rows(schema, [key]))])
            with lock:
                done.append((lsn, key))
            if i % 10 == 9:  # now and then delete one of ours again
                rid = store.lookup_row_ids("t", rows(schema, [key]))
                lsn = store.commit([Delete("t", rid)])
                with lock:
                    done.append((lsn, -key - 1))

    _run_threads(threads, work)
    commits = len(done)
    assert len({lsn for lsn, _ in done}) == commits
    assert len(syncs) < commits  # commits shared fsyncs
    store.close()

    store = Store.open(tmp_path, seal_rows=50, fsync=True)
    deleted = {-k - 1 for _, k in done if k < 0}
    inserted = [(lsn, k) for lsn, k in done if k >= 0]
    live = sorted(k for _, k in inserted if k not in deleted)
    snap = store.snapshot()
    assert snap.count("t") == len(live) == threads * per_thread * 9 // 10
    assert sorted(snap.scan("t", ["id"]).column("id").to_pylist()) == live
    # Row ids were assigned in commit order: sorted by LSN, the row ids of the inserts ascend.
    by_key = dict(zip(snap.scan("t", ["id"], with_row_ids=True).column("id").to_pylist(),
                      snap.scan("t", ["id"], with_row_ids=True).column("_rowid").to_pylist()))
    order = [by_key[k] for _, k in sorted(inserted) if k in by_key]
    assert order == sorted(order)
    store.close()


def test_concurrent_duplicates_exactly_one_wins(open_store):
    store = open_store(seal_rows=7)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    wins = []

    def work(t):
        for key in range(40):
            try:
                store.commit([Insert("t", rows(schema, [key]))])
                wins.append(key)
            except DuplicateKeyError:
                pass

    _run_threads(6, work)
    assert sorted(wins) == list(range(40))
    assert store.snapshot().count("t") == 40


def test_next_values_unique_across_threads_and_reopen(tmp_path):
    schema = TableSchema("s", (ColumnSchema("id", ColumnType("int8"), identity="always"),), ("id",))
    got: list[np.ndarray] = []
    for _ in range(2):
        store = Store.open(tmp_path, fsync=True)
        if "s" not in store.catalog:
            store.commit([CreateTable(schema)])
        def work(t, store=store):
            for i in range(50):
                got.append(store.next_values("s", "id", 1 + (i % 3)))

        _run_threads(8, work)
        store.close()
    values = np.concatenate(got)
    assert len(np.unique(values)) == len(values) and values.min() == 1


@pytest.mark.parametrize("fsync", [False, True])
def test_snapshots_during_concurrent_writes(tmp_path, fsync):
    store = Store.open(tmp_path, seal_rows=16, fsync=fsync)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    stop = threading.Event()
    seen = []

    def reader():
        last = -1
        while not stop.is_set():
            snap = store.snapshot()
            n = snap.count("t")
            assert snap.scan("t", ["id"]).num_rows == n
            assert snap.lsn >= last
            last = snap.lsn
            seen.append(n)

    r = threading.Thread(target=reader)
    r.start()
    _run_threads(4, lambda t: [store.commit([Insert("t", rows(schema, [t * 100 + i]))]) for i in range(50)])
    stop.set()
    r.join()
    assert store.snapshot().count("t") == 200 and seen
    store.close()
