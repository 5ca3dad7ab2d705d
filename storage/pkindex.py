"""Primary-key index: finds the live row holding a key, for duplicate checks and ``lookup_row_ids``.

Keys are encoded into one numpy array per batch (``KeyCodec``): int64 for a single integer-like column
(integers, bool, date, timestamp), float64 for a float column, else Python objects (str, bytes, Decimal, or
a tuple per row for a multi-column key). Elements compare equal exactly when the keys are equal.

The index has two parts:

* sealed rows: a few sorted runs (keys + row ids), searched with ``np.searchsorted``. Sealing adds a run;
  runs of similar size are merged like a binary counter, so there are O(log segments) of them and each
  key is re-sorted O(log segments) times in total. Merging drops dead rows (a row id never comes back).
* growing rows: a dict key -> newest row id, filled with ``dict.update(zip(...))``.

A key may appear with several row ids (deleted, then inserted again); at most one of them is live, so
every candidate is checked against the table's ``LiveRowIds``. An insert costs O(batch + log n); nothing
is proportional to the table size.
"""

from __future__ import annotations

import datetime
import decimal
from collections import deque
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa

from .errors import StorageError
from .liverows import LiveRowIds
from .types import TableSchema

# Column types a primary key may not use: no equality in PostgreSQL (json) or no sensible one here.
_UNKEYABLE = ("vector", "json")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "object"


def _column_array(col: pa.Array | pa.ChunkedArray, kind: str) -> np.ndarray:
    if kind == "int":
        if pa.types.is_date32(col.type):
            col = col.cast(pa.int32())
        elif pa.types.is_date64(col.type):
            col = col.cast(pa.int64())
        return np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if kind == "float":
        return np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def _pg_text(value: object) -> str:
    """A key value as PostgreSQL's output function would print it in an error DETAIL."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        text = value.isoformat(sep=" ")
        return text[:-3] if text.endswith("+00:00") else text
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


class KeyCodec:
    """Encodes a table's primary-key columns; see the module docstring."""

    def __init__(self, schema: TableSchema):
        if not schema.primary_key:
            raise StorageError(f'table "{schema.name}" has no primary key')
        self.table = schema.name
        self.columns = tuple(schema.primary_key)
        kinds = []
        for name in self.columns:
            col = schema.column(name)
            if col is None:
                raise StorageError(f'primary key column "{name}" is not a column of "{schema.name}"')
            if col.type.name in _UNKEYABLE:
                raise StorageError(f'column "{name}" of type {col.type.sql()} '
                                   "cannot be part of a primary key")
            kinds.append(_kind(col.type.arrow()))
        self.kinds = tuple(kinds)

    def encode(self, data: pa.Table | pa.RecordBatch) -> np.ndarray:
        parts = [_column_array(data.column(name), kind) for name, kind in zip(self.columns, self.kinds)]
        if len(parts) == 1:
            return parts[0]
        return np.fromiter(zip(*(p.tolist() for p in parts)), dtype=object, count=data.num_rows)

    def describe(self, data: pa.Table | pa.RecordBatch, index: int) -> str:
        """``(a, b)=(1, x)``: the key of row ``index`` as PostgreSQL prints it."""
        values = [_pg_text(data.column(name)[index].as_py()) for name in self.columns]
        return f"({', '.join(self.columns)})=({', '.join(values)})"


def first_duplicate(keys: np.ndarray) -> int | None:
    """Index of the first row whose key already occurred earlier in ``keys``."""
    if len(keys) < 2:
        return None
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    dup = np.asarray(ordered[1:] == ordered[:-1], dtype=bool)
    if not dup.any():
        return None
    return int(order[1:][dup].min())


# Inserts of at least this many rows get a sorted run of their own in the growing part of a PkIndex, up to
# this many runs (each lookup searches every run); later ones go into the dict until the next seal.
GROWING_RUN_ROWS = 4096
MAX_GROWING_RUNS = 8


@dataclass(frozen=True, eq=False)
class _Run:
    keys: np.ndarray  # sorted
    rowids: np.ndarray
    source: np.ndarray | None = None  # the keys of the insert a growing run was made from, as given

    @classmethod
    def build(cls, keys: np.ndarray, rowids: np.ndarray, live: LiveRowIds) -> _Run:
        keep = live.contains(rowids)
        keys, rowids = keys[keep], rowids[keep]
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], rowids[order])


class PkIndex:
    """Key -> live row id for one table. Used only under the store's writer lock."""

    def __init__(self, codec: KeyCodec, live: LiveRowIds):
        self.codec = codec
        self._live = live
        self._runs: list[_Run] = []
        # Growing rows: a small insert's keys go into the dict, a large one's into a sorted run of its own
        # (a dict of a million keys took 0.2-0.4 s of a large COPY's commit).
        self._growing: dict[object, int] = {}
        self._growing_runs: list[_Run] = []

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Row id of the live row with each key, -1 where none."""
        n = len(keys)
        out = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return out
        for run in self._runs + self._growing_runs:
            lo = np.searchsorted(run.keys, keys, side="left")
            hi = np.searchsorted(run.keys, keys, side="right")
            count = hi - lo
            for j in range(int(count.max())):
                sel = np.nonzero(count > j)[0]
                cand = run.rowids[lo[sel] + j]
                ok = self._live.contains(cand)
                out[sel[ok]] = cand[ok]
        if self._growing:
            cand = np.fromiter(map(self._growing.get, keys.tolist(), repeat(-1)), dtype=np.int64, count=n)
            ok = (cand >= 0) & self._live.contains(cand)
            out[ok] = cand[ok]
        return out

    def add_growing(self, keys: np.ndarray, rowids: np.ndarray) -> None:
        if len(keys) >= GROWING_RUN_ROWS and len(self._growing_runs) < MAX_GROWING_RUNS:
            order = np.argsort(keys, kind="stable")
            self._growing_runs.append(_Run(keys[order], rowids[order], keys))
            return
        self._growing.update(zip(keys.tolist(), rowids.tolist()))

    def remove_growing(self, keys: np.ndarray) -> None:
        """Undo ``add_growing(keys, ...)`` (the same ``keys`` array). Any older entry for these keys pointed
        at a dead row: dropping is exact."""
        runs = [r for r in self._growing_runs if r.source is not keys]
        if len(runs) < len(self._growing_runs):
            self._growing_runs = runs
            return
        deque(map(self._growing.pop, keys.tolist(), repeat(None)), maxlen=0)

    def add_sealed(self, keys: np.ndarray, rowids: np.ndarray) -> None:
        """Index rows that now live in sealed segments (dead ones are skipped)."""
        run = _Run.build(keys, rowids, self._live)
        if len(run.keys):
            self._runs.append(run)
        while len(self._runs) >= 2 and len(self._runs[-2].keys) <= len(self._runs[-1].keys):
            a, b = self._runs[-2], self._runs[-1]
            self._runs[-2:] = [_Run.build(np.concatenate([a.keys, b.keys]),
                                          np.concatenate([a.rowids, b.rowids]), self._live)]
            if not len(self._runs[-1].keys):
                self._runs.pop()

    def clear_growing(self) -> None:
        self._growing = {}
        self._growing_runs = []
