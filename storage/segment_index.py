"""Vector indexes as storage holds them: definitions checked against vector_index, one index file per sealed
segment, an in-memory index over the growing segment, and ``SegmentIndex``, what a snapshot hands out.

File, inside the table's folder (see store.py for the whole layout)::

    idx-<index oid>-seg-<segno:06d>.vidx

the segment's index in storage.vector_index's format (faiss index + JSON trailer), ids = row *positions*
within the segment (0 .. num_rows - 1; rows with a NULL vector are not in it; rows deleted later still
are, the caller's allow mask hides them). Built in the background after the segment is sealed (see
index_builds.py), published by rename, never changed afterwards, memory-mapped when loaded, removed with
its index or table. Index OIDs are never reused, so a file name always means one definition.

Growing indexes are not persisted (the WAL holds the rows; they are rebuilt after a restart). They grow
while searches run, so they sit behind a readers-writer lock: faiss's ``add`` must not run concurrently
with a search of the same index, and adding in small batches keeps a search from waiting long.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .flat import METRICS
from .types import IndexSchema, TableSchema
from .vector_index import (
    IndexParams,
    SearchParams,
    VectorIndex,
    VectorsForRerank,
    create_index,
    default_params,
)

INDEX_SUFFIX = ".vidx"
_INDEX_FILE = re.compile(r"idx-(\d+)-seg-(\d+)\.vidx")


def index_file_name(index_oid: int, segno: int) -> str:
    return f"idx-{index_oid}-seg-{segno:06d}{INDEX_SUFFIX}"


def parse_index_file_name(name: str) -> tuple[int, int] | None:
    """(index OID, segment number) of an index file name, None for any other name."""
    m = _INDEX_FILE.fullmatch(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --------------------------------------------------------------------------------------------------
# Definitions


def vector_dim(schema: TableSchema, column: str) -> int:
    """The dimension of ``column``, which must be a ``vector(n)`` column (ValueError otherwise)."""
    col = schema.column(column)
    if col is None:
        raise ValueError(f'column "{column}" does not exist')
    if col.type.name != "vector":
        raise ValueError(f'column "{column}" has type {col.type.sql()}; vector indexes need a vector column')
    if col.type.dim is None:
        raise ValueError(f'column "{column}" does not have dimensions; declare it as vector(n) to index it')
    return col.type.dim


def index_params(index: IndexSchema, dim: int) -> IndexParams:
    """The method's settings dataclass for ``index`` (defaults for unnamed settings), checked by creating an
    empty index of the column's dimension, which is cheap (nothing is trained or added). ValueError with
    a message a person can act on when the method, metric or a setting is refused."""
    if index.metric not in METRICS:
        raise ValueError(f"unknown distance metric {index.metric!r}; expected one of {', '.join(METRICS)}")
    default = default_params(index.method)
    fields = {f.name: f for f in dataclasses.fields(default)}
    values: dict[str, Any] = {}
    for key, value in index.params:
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ValueError(f'unrecognized parameter "{key}" for index method {index.method} (it takes: {known})')
        if key in values:
            raise ValueError(f'parameter "{key}" specified more than once')
        want = type(getattr(default, key))
        ok = want is type(None) or (isinstance(value, want) and not isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ValueError(f'invalid value for {want.__name__} parameter "{key}": {value!r}')
        values[key] = value
    params = dataclasses.replace(default, **values)
    try:
        create_index(index.method, index.metric, dim, params)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"index method {index.method}: {e}") from None
    return params


# --------------------------------------------------------------------------------------------------
# Concurrency


class ReadWriteLock:
    """Many readers or one writer. Writers go first once waiting (readers arriving later wait), so a
    steady stream of searches cannot starve the builder; each write is one small batch, so a search
    waits at most that long."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class GrowingIndex:
    """The in-memory index of one vector index over a table's growing segment ``gen``: positions
    ``[0, covered)`` (NULL vectors left out). Only the builder thread adds; ``covered`` only grows and is
    set after the rows are in, so a reader that sees a value may search everything below it."""

    def __init__(self, gen: int, index: VectorIndex):
        self.gen = gen
        self.index = index
        self.covered = 0
        self.lock = ReadWriteLock()

    def add(self, vectors: np.ndarray, positions: np.ndarray, covered: int) -> None:
        """Add the non-NULL rows among positions ``[self.covered, covered)``."""
        with self.lock.write():
            if len(positions):
                self.index.add(vectors, positions)
            self.covered = covered


# --------------------------------------------------------------------------------------------------
# What snapshots hand out


class SegmentIndex:
    """One segment's index as a query sees it: the segment's rows at positions ``[0, covered)`` that have a
    non-NULL vector. A sealed segment's index covers all of it (``covered == num_rows``); a growing
    segment's covers a prefix, and the rows ``[covered, num_rows)`` are for the caller to search exactly.

    ``search`` and ``range_search`` have VectorIndex's contract with ids = positions in the segment
    (``allow``: bool mask by position; positions at or beyond its length are not allowed), and are safe
    from many threads at once, also while the builder extends a growing index: that index may by then
    hold rows past ``covered``, which are never returned (the allow mask is cut at ``covered``).
    """

    __slots__ = ("method", "metric", "covered", "_index", "_growing")

    def __init__(self, index: VectorIndex, covered: int, growing: GrowingIndex | None = None):
        self.method: str = index.method
        self.metric: str = index.metric
        self.covered = covered
        self._index = index
        self._growing = growing

    def __repr__(self) -> str:
        kind = "growing" if self._growing is not None else "sealed"
        return f"SegmentIndex({self.method}, {self.metric}, {kind}, covered={self.covered})"

    @property
    def dim(self) -> int:
        return self._index.dim

    def searches_exactly(self, allowed: int, params: SearchParams) -> bool:
        """Whether a search whose filter admits ``allowed`` rows scans them exactly. See VectorIndex."""
        return self._index.searches_exactly(allowed, params)

    def search(self, queries: np.ndarray, k: int, params: SearchParams | None = None,
               allow: np.ndarray | None = None, vectors_for_rerank: VectorsForRerank | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest allowed positions per query: (ids (q, k) int64, distances (q, k) float64),
        padded with -1 / +inf. See VectorIndex.search."""
        if self._growing is None:
            return self._index.search(queries, k, params, allow, vectors_for_rerank=vectors_for_rerank)
        with self._growing.lock.read():
            return self._index.search(queries, k, params, self._bounded(allow),
                                      vectors_for_rerank=vectors_for_rerank)

    def range_search(self, queries: np.ndarray, lower: float | None, upper: float,
                     params: SearchParams | None = None, allow: np.ndarray | None = None,
                     vectors_for_rerank: VectorsForRerank | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per query, the allowed positions with ``lower <= distance < upper``. See VectorIndex.range_search."""
        if self._growing is None:
            return self._index.range_search(queries, lower, upper, params, allow,
                                            vectors_for_rerank=vectors_for_rerank)
        with self._growing.lock.read():
            return self._index.range_search(queries, lower, upper, params, self._bounded(allow),
                                            vectors_for_rerank=vectors_for_rerank)

    def _bounded(self, allow: np.ndarray | None) -> np.ndarray | None:
        """``allow`` cut at ``covered`` (called under the read lock, so ``covered`` of the index is stable)."""
        if allow is not None:
            allow = np.asarray(allow)
            return allow[:self.covered] if allow.ndim == 1 and len(allow) > self.covered else allow
        assert self._growing is not None
        if self._growing.covered > self.covered:
            return np.ones(self.covered, dtype=bool)
        return None
