"""Storage performance sanity figures (not a test; run: python tests/storage/bench_storage.py).

Prints wall-clock times; nothing is asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage import CreateTable, Delete, Insert, Store
from storage.types import ColumnSchema, ColumnType, TableSchema

DIM = 128


def schema(name: str) -> TableSchema:
    return TableSchema(name, (ColumnSchema("id", ColumnType("int8")),
                              ColumnSchema("embedding", ColumnType("vector", dim=DIM))), ("id",))


def batch(ids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    vecs = rng.standard_normal((len(ids), DIM), dtype=np.float32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM)
    return pa.table({"id": pa.array(ids, pa.int64()), "embedding": emb})


def timed(label: str, fn) -> float:
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    print(f"{label:<58} {dt:8.2f} s")
    return dt


def main(n: int = 100_000) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        store = Store.open(d, fsync=False)
        store.commit([CreateTable(schema("single"))])
        singles = [batch(np.array([i]), rng) for i in range(n)]

        def single_rows():
            for b in singles:
                store.commit([Insert("single", b)])

        dt = timed(f"{n:,} single-row commits, fsync=False", single_rows)
        print(f"{'':<58} {n / dt:8.0f} commits/s")
        keys = pa.table({"id": pa.array(rng.integers(0, n, 10_000), pa.int64())})
        timed("lookup_row_ids of 10,000 keys", lambda: store.lookup_row_ids("single", keys))
        rid = store.lookup_row_ids("single", keys.slice(0, 1000))

        def deletes():
            for r in np.unique(rid):
                store.commit([Delete("single", np.array([r]))])

        timed(f"{len(np.unique(rid)):,} single-row delete commits, fsync=False", deletes)
        timed("scan all rows (id, embedding)", lambda: store.snapshot().scan("single"))
        store.close()
        timed("reopen (replay WAL of the unsealed rows)", lambda: Store.open(d, fsync=False).close())

    with tempfile.TemporaryDirectory() as d:
        store = Store.open(d, fsync=True)
        store.commit([CreateTable(schema("bulk"))])
        big = batch(np.arange(n), rng)
        timed(f"{n:,} x {DIM}-d vectors in one commit, fsync=True (+ seal)",
              lambda: store.commit([Insert("bulk", big)]))
        store.close()
        timed("reopen (memory-mapped segment, PK index rebuilt)", lambda: Store.open(d, fsync=True).close())
        store = Store.open(d, fsync=True)
        timed("count + scan of the mapped segment",
              lambda: (store.snapshot().count("bulk"), store.snapshot().scan("bulk")))
        store.close()

    with tempfile.TemporaryDirectory() as d:
        store = Store.open(d, fsync=True)
        store.commit([CreateTable(schema("one"))])
        few = [batch(np.array([i]), rng) for i in range(2000)]

        def one_thread():
            for b in few:
                store.commit([Insert("one", b)])

        dt = timed("1 thread x 2,000 single-row commits, fsync=True", one_thread)
        print(f"{'':<58} {len(few) / dt:8.0f} commits/s (one fsync each)")
        store.close()

    with tempfile.TemporaryDirectory() as d:
        import threading
        store = Store.open(d, fsync=True)
        store.commit([CreateTable(schema("gc"))])
        per, threads = 500, 16
        syncs = []
        real_sync = store._wal.sync
        store._wal.sync = lambda: (syncs.append(1), real_sync())

        def work(t):
            for i in range(per):
                store.commit([Insert("gc", batch(np.array([t * per + i]), rng))])

        def run():
            ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        dt = timed(f"{threads} threads x {per} single-row commits, fsync=True", run)
        n = threads * per
        print(f"{'':<58} {n / dt:8.0f} commits/s, {n / len(syncs):.1f} commits per fsync")
        store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
