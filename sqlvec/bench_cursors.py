"""The cursor phases of ``sqlvec bench`` (``--phases cursors`` runs both), on the loaded table:

  cursor_fetch   DECLARE c CURSOR FOR SELECT id, embedding, bucket FROM bench_items, then FETCH 1000
                 until it is empty (every row, in batches of 1,000), in one transaction; rows/s
  cursor_vector  DECLARE v CURSOR FOR SELECT id, embedding <op> q AS d FROM bench_items ORDER BY
                 embedding <op> q (no LIMIT: a vector iterator), then FETCH 1000 until --iterate-rows
                 rows were read; rows/s, the DECLARE's seconds (the search), and whether the distances
                 came back in order

Each reports the server's resident memory before (rss_before_mb) and its peak while fetching
(rss_peak_mb, sampled every 20 ms from /proc), when the server's pid is known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

PHASES = ("cursor_fetch", "cursor_vector")
BATCH = 1000


class _PeakRss:
    def __init__(self, pid: int | None, rss_mb: Callable[[int], float | None]) -> None:
        self.pid, self._rss = pid, rss_mb
        self.before = rss_mb(pid) if pid else None
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            now = self._rss(self.pid) if self.pid else None
            if now is not None and (self.peak is None or now > self.peak):
                self.peak = now

    def __enter__(self) -> _PeakRss:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.pid:
            self._thread.join()


def run(args: Any, c: Any, table: str, query_text: str, op: str, label: dict, pid: int | None,
        rss_mb: Callable[[int], float | None], emit: Callable[[dict], None]) -> None:
    """The cursor phases asked for in ``args.phases`` against the autocommit connection ``c``."""
    phases = set(args.phases)
    if "cursor_fetch" in phases:
        rows = 0
        with _PeakRss(pid, rss_mb) as rss:
            t0 = time.perf_counter()
            with c.transaction():
                c.execute(f"DECLARE bench_c CURSOR FOR SELECT id, embedding, bucket FROM {table}")
                while True:
                    got = len(c.execute(f"FETCH {BATCH} FROM bench_c").fetchall())
                    rows += got
                    if got < BATCH:
                        break
            seconds = time.perf_counter() - t0
        emit({**label, "phase": "cursor_fetch", "fetched": rows, "rows_per_s": round(rows / seconds),
              "seconds": round(seconds, 3), "rss_before_mb": rss.before, "rss_peak_mb": rss.peak})
    if "cursor_vector" in phases:
        want = args.iterate_rows
        rows = 0
        ordered = True
        last = float("-inf")
        with _PeakRss(pid, rss_mb) as rss:
            t0 = time.perf_counter()
            with c.transaction():
                c.execute(f"DECLARE bench_v CURSOR FOR SELECT id, embedding {op} %s AS d FROM {table} "
                          f"ORDER BY embedding {op} %s", (query_text, query_text))
                declare_s = time.perf_counter() - t0
                while rows < want:
                    batch = c.execute(f"FETCH {min(BATCH, want - rows)} FROM bench_v").fetchall()
                    if not batch:
                        break
                    ordered = ordered and last <= batch[0][1] and all(
                        a[1] <= b[1] for a, b in zip(batch, batch[1:]))
                    last = batch[-1][1]
                    rows += len(batch)
            seconds = time.perf_counter() - t0
        emit({**label, "phase": "cursor_vector", "fetched": rows, "rows_per_s": round(rows / seconds),
              "seconds": round(seconds, 3), "declare_s": round(declare_s, 3), "in_order": ordered,
              "rss_before_mb": rss.before, "rss_peak_mb": rss.peak})
