"""Child process for test_index_crash.py: one thread creates and drops vector indexes and inserts rows (so
segments seal and index builds run in the background), printing each commit on stdout only after
Store.commit returned. Killed with SIGKILL by the test, at any point: mid-commit, mid-build, mid-rename.

Lines: ``intent <op> <name>`` before a commit, ``ok`` after it; ops are ``C`` (create index), ``X``
(drop index), ``I`` (insert 40 rows, name ``-``).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage_testing import clustered_vectors, vector_rows, vector_schema

from storage import CreateIndex, CreateTable, DropIndex, IndexSchema, Insert, Store

METHODS = (("hnsw", (("m", 4),)), ("ivfflat", (("lists", 4),)), ("flat", ()))


def main() -> None:
    path, round_no = sys.argv[1], int(sys.argv[2])
    store = Store.open(path, seal_rows=60, fsync=True, wal_segment_bytes=8192, checkpoint_wal_bytes=32768,
                       growing_index_rows=30, index_build_threads=1)
    if "docs" not in store.catalog:
        store.commit([CreateTable(vector_schema(dim=8))])
    rng = random.Random(round_no)
    first = 1_000_000 * (round_no + 1)
    serial = 0
    print("ready", flush=True)
    while True:
        names = [i.name for i in store.catalog["docs"].indexes]
        roll = rng.random()
        if roll < 0.3 or not names and roll < 0.6:
            method, params = METHODS[rng.randrange(len(METHODS))]
            name = f"i{round_no}_{serial}"
            serial += 1
            op, line = CreateIndex("docs", IndexSchema(name, "embedding", method, "l2", "vector_l2_ops",
                                                       params)), f"C {name}"
        elif roll < 0.6:
            name = rng.choice(names)
            op, line = DropIndex(name), f"X {name}"
        else:
            op, line = Insert("docs", vector_rows(first, clustered_vectors(40, 8, seed=first))), "I -"
            first += 40
        print(f"intent {line}", flush=True)
        store.commit([op])
        print("ok", flush=True)


if __name__ == "__main__":
    main()
