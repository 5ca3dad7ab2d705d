"""Child process for test_crash.py: commits in a loop from several threads and prints each commit on
stdout only after Store.commit returned (i.e. it was acknowledged). Killed with SIGKILL by the test.

Each commit inserts ids [start, start + size) in one Insert, or deletes one earlier acknowledged id of
its own; lines: ``I <start> <size>`` / ``D <id>``.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage_testing import rows, table_schema

from storage import CreateTable, Delete, Insert, Store


def main() -> None:
    path, round_no, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = Store.open(path, seal_rows=7, fsync=True, wal_segment_bytes=4096, checkpoint_wal_bytes=16384)
    schema = table_schema()
    if "t" not in store.catalog:
        store.commit([CreateTable(schema)])
    out_lock = threading.Lock()
    print("ready", flush=True)

    def work(t: int) -> None:
        rng = random.Random(round_no * 100 + t)
        mine: list[int] = []
        start = (round_no * 100 + t) * 1_000_000
        while True:
            if mine and rng.random() < 0.2:
                victim = mine.pop(rng.randrange(len(mine)))
                rid = store.lookup_row_ids("t", rows(schema, [victim]))
                store.commit([Delete("t", rid)])
                line = f"D {victim}"
            else:
                size = rng.randint(1, 5)
                store.commit([Insert("t", rows(schema, range(start, start + size)))])
                mine.extend(range(start, start + size))
                line = f"I {start} {size}"
                start += size
            with out_lock:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
