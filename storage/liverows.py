"""Which row ids of a table are live right now, for the writer: one byte per row id ever assigned.

Only the writer (under the store's writer lock) reads or changes it; snapshots use the segments' own
copy-on-write masks. A row id never comes back to life, which lets the primary-key index drop dead
entries whenever it rebuilds a run.
"""

from __future__ import annotations

import numpy as np


class LiveRowIds:
    def __init__(self) -> None:
        self._buf = np.zeros(1024, dtype=bool)
        self._end = 0  # one past the highest row id ever set

    def contains(self, row_ids: np.ndarray) -> np.ndarray:
        """Boolean array: is each row id live (out-of-range ids are not)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        ok = (row_ids >= 0) & (row_ids < self._end)
        out = np.zeros(len(row_ids), dtype=bool)
        out[ok] = self._buf[row_ids[ok]]
        return out

    def set(self, row_ids: np.ndarray, live: bool) -> None:
        if len(row_ids) == 0:
            return
        top = int(row_ids.max()) + 1
        if top > len(self._buf):
            grown = np.zeros(max(top, 2 * len(self._buf)), dtype=bool)
            grown[:self._end] = self._buf[:self._end]
            self._buf = grown
        self._buf[row_ids] = live
        self._end = max(self._end, top)

    def set_range(self, start: int, stop: int, live: bool) -> None:
        self.set(np.arange(start, stop, dtype=np.int64), live)
