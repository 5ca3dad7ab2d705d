"""Building and serving vector indexes: one background builder thread per store, and the registry that
tells snapshots which segment indexes are ready.

What is built follows from the newest durable state alone (``Version``), so there is no job list to
keep consistent with commits: whenever something may have changed (a segment sealed, an index created,
rows appended, the store opened), the builder is woken, and it looks for

* a sealed segment of a table with an index whose file is neither built nor failed: it builds one at a
  time (faiss already spreads one build over every core with OpenMP), reading the memory-mapped segment
  and holding no store lock, so commits and snapshots never wait for it;
* a growing segment of at least ``growing_index_rows`` rows: it creates or extends that index's growing
  index, in batches, before the next sealed build.

A build writes ``<file>.<token>.tmp`` (unique per build, so two processes or an abandoned build never
share one) and publishes it by rename under the registry lock. Drops go through ``forget`` under the same
lock before their files are removed, so a build that loses the race to a drop discards its file instead
of publishing it. A crash mid-build leaves only a ``.tmp``, removed when the store opens
(checkpoint.remove_strays), and the build is redone since its file is missing. A build that fails is
logged and its error kept for ``index_status``; it is not retried until the store is opened again.

Index files found at open are taken as built and memory-mapped on first use; one that cannot be loaded
is removed and rebuilt.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from .durable import fsync_dir
from .errors import CorruptionError, NoSuchIndexError, NoSuchTableError
from .flat import VectorMatrix
from .segment import SealedSegment, SegmentView
from .segment_index import (
    GrowingIndex,
    SegmentIndex,
    index_file_name,
    index_params,
    vector_dim,
)
from .snapshot import Version
from .table import TableState
from .types import IndexSchema
from .vector_index import (
    SUPPORTED_METRICS,
    HnswParams,
    IvfFlatParams,
    ScannUnavailable,
    VectorIndex,
    create_index,
)
from .writer import table_folder

log = logging.getLogger(__name__)

# Vectors added per faiss call: a sealed build checks for shutdown between chunks; a growing index holds
# its write lock for one batch, which bounds how long a search can wait for it.
BUILD_CHUNK_ROWS = 16_384
GROWING_BATCH_ROWS = 2_048
# IVF-family indexes train k-means on at most this many of the segment's vectors (sampled with a fixed
# seed, so a rebuild trains the same); more adds little to centroid quality and costs linear time.
# Methods whose settings name their own sample size (scann's ``training_sample``) get every vector.
TRAINING_SAMPLE_ROWS = 50_000
# Segments with fewer non-NULL vectors than this whose method cannot be trained on them (ivfpq needs
# 2**nbits vectors) get an exact flat index instead: scanning them is cheap, failing them is not useful.
SMALL_SEGMENT_ROWS = 10_000
# How long Store.close waits for a running build to notice it should stop before leaving it behind.
STOP_JOIN_SECONDS = 5.0

SegKey = tuple[int, int, int]  # (table OID, index OID, segment number)
IndexKey = tuple[int, int]  # (table OID, index OID)


@dataclass(frozen=True)
class IndexStatus:
    """One vector index's build progress, for ``Store.index_status``.

    ``segments``: sealed segments of the table; ``segments_indexed`` of them have a built index file,
    covering ``rows_indexed`` rows. ``growing_rows``: rows in the growing segment, ``growing_rows_indexed``
    of them in its growing index (a prefix). ``building``: a segment file of this index is being built
    now. ``error``: why a build of it failed (not retried until the store is reopened), else None.
    ``build_seconds``: time spent building its segment files in this process. ``bytes``: size of its
    segment files on disk (the in-memory growing index is not counted).
    """

    table: str
    index: str
    column: str
    method: str
    metric: str
    opclass: str
    params: dict
    segments: int
    segments_indexed: int
    rows_indexed: int
    growing_rows: int
    growing_rows_indexed: int
    building: bool
    error: str | None
    build_seconds: float
    bytes: int = 0


class _Stopped(Exception):
    """The store is closing: abandon the build."""


@dataclass(eq=False)
class _Built:
    """A published index file; ``index`` is loaded (memory-mapped) on first use."""

    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: VectorIndex | None = None


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(non-NULL vectors (n, dim) float32, their positions int64) of a vector column."""
    vm = VectorMatrix.from_arrow(column, dim)
    if vm.valid.all():
        return vm.matrix, np.arange(len(vm.valid), dtype=np.int64)
    positions = np.flatnonzero(vm.valid).astype(np.int64)
    return vm.matrix[positions], positions


def training_sample(vectors: np.ndarray, seed: int, limit: int = TRAINING_SAMPLE_ROWS) -> np.ndarray:
    """At most ``limit`` rows of ``vectors``, chosen with a fixed seed (in row order)."""
    if len(vectors) <= limit:
        return vectors
    pick = np.sort(np.random.default_rng(seed).choice(len(vectors), limit, replace=False))
    return vectors[pick]


def build_segment_index(index: IndexSchema, dim: int, data: pa.Table, *, seed: int,
                        should_stop: Callable[[], bool] = lambda: False) -> VectorIndex:
    """Build ``index``'s index over one sealed segment's rows ``data``: ids are row positions."""
    vectors, positions = _vectors(data.column(index.column), dim)
    params = index_params(index, dim)
    try:
        if len(vectors) == 0:
            raise ValueError("no vectors to train on")
        sample = vectors if hasattr(params, "training_sample") else training_sample(vectors, seed)
        built = create_index(index.method, index.metric, dim, params, sample)
    except ValueError as e:
        if len(vectors) >= SMALL_SEGMENT_ROWS:
            raise
        log.info("index %s: %d vectors cannot train %s (%s); the segment gets a flat index",
                 index.name, len(vectors), index.method, e)
        built = create_index("flat", index.metric, dim)
    if len(vectors):
        built.expect_max_sq_norm(float(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max()))
    for start in range(0, len(vectors), BUILD_CHUNK_ROWS):
        if should_stop():
            raise _Stopped
        built.add(vectors[start:start + BUILD_CHUNK_ROWS], positions[start:start + BUILD_CHUNK_ROWS])
    return built


def new_growing_index(index: IndexSchema, dim: int, gen: int, state: TableState) -> GrowingIndex | None:
    """An empty growing index for ``index`` over growing segment ``gen``: HNSW with the index's settings for
    hnsw, none for flat (an exact scan is what flat does anyway), otherwise IVF-flat trained on the
    newest sealed segment (or, without one, on the growing rows) with the index's ``lists``."""
    if index.method == "flat":
        return None
    if index.method == "hnsw":
        params = index_params(index, dim)
        assert isinstance(params, HnswParams)
        return GrowingIndex(gen, create_index("hnsw", index.metric, dim, params))
    if index.metric not in SUPPORTED_METRICS["ivfflat"]:
        return GrowingIndex(gen, create_index("hnsw", index.metric, dim, HnswParams()))
    lists = index.params_dict.get("lists", IvfFlatParams().lists)
    lists = lists if isinstance(lists, int) and lists > 0 else IvfFlatParams().lists
    source = state.sealed[-1].data if state.sealed else state.growing.table()
    vectors, _ = _vectors(source.column(index.column), dim)
    if len(vectors) == 0 and state.sealed:
        vectors, _ = _vectors(state.growing.table().column(index.column), dim)
    if len(vectors) == 0:
        return None
    sample = training_sample(vectors, seed=gen)
    return GrowingIndex(gen, create_index("ivfflat", index.metric, dim, IvfFlatParams(lists), sample))


class IndexService:
    """The registry of built segment indexes and growing indexes, and the builder thread.

    ``current`` returns the store's newest durable Version. With ``enabled`` False nothing is built (files
    already there are still served). ``threads``: OpenMP threads of the builder's faiss calls (0: faiss's
    default, every core); fewer leaves cores to queries, and avoids OpenMP's collapse on busy machines
    (its threads spin at barriers waiting for one that is descheduled).
    """

    def __init__(self, root: Path, *, fsync: bool, enabled: bool, growing_index_rows: int,
                 current: Callable[[], Version], threads: int = 0):
        self.root = root
        self.fsync = fsync
        self.enabled = enabled
        self.growing_index_rows = growing_index_rows
        self.threads = threads
        self._current = current
        self._cond = threading.Condition(threading.Lock())  # guards everything below; notified on progress
        self._built: dict[SegKey, _Built] = {}
        self._failed: dict[SegKey, str] = {}
        self._running: SegKey | None = None
        self._build_seconds: dict[int, float] = {}  # index OID -> seconds
        self._builds = 0  # segment files built by this process (tests check that a reopen builds none)
        self._growing: dict[IndexKey, GrowingIndex] = {}
        self._growing_failed: dict[IndexKey, tuple[int, str]] = {}  # -> (generation, error)
        self._gone_tables: set[int] = set()
        self._gone_indexes: set[int] = set()
        self._dirty = False
        self._idle = True
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self, version: Version) -> None:
        """Register the index files present for ``version``'s sealed segments and start the builder."""
        for state in version.tables.values():
            if not state.schema.indexes or not state.sealed:
                continue
            folder = table_folder(self.root, state.oid)
            try:
                names = set(os.listdir(folder))
            except FileNotFoundError:
                continue
            for index in state.schema.indexes:
                for seg in state.sealed:
                    name = index_file_name(index.oid, seg.segno)
                    if name in names:
                        self._built[(state.oid, index.oid, seg.segno)] = _Built(folder / name)
        if self.enabled:
            self._dirty = True
            self._idle = False
            self._thread = threading.Thread(target=self._run, name=f"sqlvec-index-builder:{self.root}",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the builder: pending work is dropped; a running build stops at its next chunk (or is left
        to finish on its own after STOP_JOIN_SECONDS) and publishes nothing."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_JOIN_SECONDS)
            if thread.is_alive():
                log.warning("index build still running at close; it will be discarded when it ends")

    def notify(self) -> None:
        """Something the builder acts on may have changed."""
        if not self.enabled:
            return
        with self._cond:
            self._dirty = True
            self._idle = False
            self._cond.notify_all()

    def build_now(self, state: TableState, segment: SealedSegment) -> None:
        """Build every vector index of ``state``'s table over ``segment`` in the calling thread (compaction,
        before it publishes the segment, so that it is never searched without its index). A failure is
        recorded as the background builder's are. Nothing is built when builds are disabled."""
        if not self.enabled:
            return
        for index in state.schema.indexes:
            with self._cond:
                if (state.oid, index.oid, segment.segno) in self._built or self._is_gone(state.oid, index.oid):
                    continue
            self._build(state, index, segment)

    def drop_segments(self, table_oid: int, segnos: Iterable[int]) -> list[Path]:
        """Forget the indexes of segments that compaction replaced; returns their files, for the caller to
        remove (loaded ones stay usable by snapshots that hold them: the files are memory-mapped)."""
        gone = set(segnos)
        files = []
        with self._cond:
            for store in (self._built, self._failed):
                for key in [k for k in store if k[0] == table_oid and k[2] in gone]:
                    entry = store.pop(key)
                    if isinstance(entry, _Built):
                        files.append(entry.path)
        return files

    def forget(self, tables: Iterable[int], indexes: Iterable[IndexKey]) -> None:
        """Durably dropped tables (OIDs) and indexes: no build of theirs is published from now on, and their
        entries go. The caller removes their files afterwards."""
        tables, indexes = set(tables), set(indexes)
        if not tables and not indexes:
            return
        with self._cond:
            self._gone_tables |= tables
            self._gone_indexes |= {i for _, i in indexes}

            def gone(t: int, i: int) -> bool:
                return t in tables or (t, i) in indexes

            for store in (self._built, self._failed):
                for key in [k for k in store if gone(k[0], k[1])]:
                    del store[key]
            for store2 in (self._growing, self._growing_failed):
                for key2 in [k for k in store2 if gone(*k)]:
                    del store2[key2]
            self._cond.notify_all()

    def _is_gone(self, table_oid: int, index_oid: int) -> bool:
        return table_oid in self._gone_tables or index_oid in self._gone_indexes

    # --- serving -------------------------------------------------------------------------------------

    def segment_index(self, state: TableState, index: IndexSchema, segment: SegmentView) -> SegmentIndex | None:
        """The ready index of ``index`` over ``segment`` of the table ``state``, or None."""
        if not segment.segment_id.startswith(f"{state.oid}."):
            return None  # a segment of another table
        if not segment.sealed:
            with self._cond:
                grow = self._growing.get((state.oid, index.oid))
            if grow is None or grow.gen != segment.segno:
                return None
            covered = min(grow.covered, segment.num_rows)
            return SegmentIndex(grow.index, covered, grow) if covered else None
        key = (state.oid, index.oid, segment.segno)
        with self._cond:
            entry = self._built.get(key)
        if entry is None:
            return None
        loaded = entry.index
        if loaded is None:
            with entry.lock:
                if entry.index is None:
                    entry.index = self._load(key, entry, index, state)
                loaded = entry.index
        return None if loaded is None else SegmentIndex(loaded, segment.num_rows)

    def _load(self, key: SegKey, entry: _Built, index: IndexSchema, state: TableState) -> VectorIndex | None:
        """Memory-map a published file; a damaged one is removed and queued for rebuilding."""
        try:
            loaded = VectorIndex.load(entry.path, mmap=True)
            dim = vector_dim(state.schema, index.column)
            if loaded.metric != index.metric or loaded.dim != dim:
                raise CorruptionError(entry.path, 0, f"index file is for {loaded.metric} over {loaded.dim} "
                                      f"dimensions, the index is {index.metric} over {dim}")
            return loaded
        except FileNotFoundError:
            with self._cond:
                if self._is_gone(key[0], key[1]):
                    return None  # dropped meanwhile: its files went with it
            reason = "file is missing"
        except CorruptionError as e:
            reason = str(e)
        except ScannUnavailable as e:
            # Written where the scann package is installed; here the faiss backend builds it again.
            reason = str(e)
        log.error("vector index %s of segment %d: %s; removing it to rebuild it", index.name, key[2], reason)
        with self._cond:
            if self._built.get(key) is entry:
                del self._built[key]
        entry.path.unlink(missing_ok=True)
        self.notify()
        return None

    # --- waiting and status --------------------------------------------------------------------------

    def wait_for_indexes(self, table: str, index: str | None, timeout: float | None) -> bool:
        version = self._current()
        state = version.tables.get(table)
        if state is None:
            raise NoSuchTableError(table)
        if index is None:
            targets = state.schema.indexes
        else:
            found = state.schema.index(index)
            if found is None:
                raise NoSuchIndexError(index)
            targets = (found,)
        keys = [(state.oid, i.oid, s.segno) for i in targets for s in state.sealed]
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [k for k in keys if k not in self._built and k not in self._failed
                           and not self._is_gone(k[0], k[1])]
                if not pending:
                    return True
                if not self.enabled or self._stop:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until the builder has nothing left to do (True) or ``timeout`` passes (False)."""
        if not self.enabled:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._idle:
                if self._stop:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @property
    def builds(self) -> int:
        """Segment index files built by this process so far."""
        return self._builds

    def status(self) -> list[IndexStatus]:
        version = self._current()
        out = []
        with self._cond:
            for state in version.tables.values():
                for index in state.schema.indexes:
                    keys = [(state.oid, index.oid, s.segno) for s in state.sealed]
                    built = [s.num_rows for s, k in zip(state.sealed, keys) if k in self._built]
                    errors = [self._failed[k] for k in keys if k in self._failed]
                    grow = self._growing.get((state.oid, index.oid))
                    grown = 0
                    if grow is not None and grow.gen == state.growing.gen:
                        grown = min(grow.covered, state.growing.num_rows)
                    failed = self._growing_failed.get((state.oid, index.oid))
                    if failed is not None and failed[0] == state.growing.gen:
                        errors.append(f"growing index: {failed[1]}")
                    running = self._running is not None and self._running[:2] == (state.oid, index.oid)
                    folder = table_folder(self.root, state.oid)
                    size = sum(_file_size(folder / index_file_name(index.oid, s.segno))
                               for s, k in zip(state.sealed, keys) if k in self._built)
                    out.append(IndexStatus(
                        state.name, index.name, index.column, index.method, index.metric, index.opclass,
                        index.params_dict, len(state.sealed), len(built), sum(built), state.growing.num_rows,
                        grown, running, errors[0] if errors else None, self._build_seconds.get(index.oid, 0.0),
                        size))
        return out

    # --- the builder thread --------------------------------------------------------------------------

    def _run(self) -> None:
        if self.threads > 0:
            faiss.omp_set_num_threads(self.threads)  # an OpenMP setting of the calling thread only
        while True:
            with self._cond:
                if not self._dirty:
                    self._idle = True
                    self._cond.notify_all()
                while not self._dirty and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                self._dirty = False
                self._idle = False
            try:
                self._work()
            except _Stopped:
                return
            except Exception:
                # A bug, not a build failure (those are recorded per segment): log it and wait for the
                # next change rather than spin.
                log.exception("vector index builder")

    def _work(self) -> None:
        while not self._stop:
            version = self._current()
            self._maintain_growing(version)
            job = self._next_job(version)
            if job is None:
                return
            self._build(*job)

    def _next_job(self, version: Version) -> tuple[TableState, IndexSchema, SealedSegment] | None:
        with self._cond:
            for state in version.tables.values():
                for seg in state.sealed:
                    for index in state.schema.indexes:
                        key = (state.oid, index.oid, seg.segno)
                        if key not in self._built and key not in self._failed \
                                and not self._is_gone(state.oid, index.oid):
                            return state, index, seg
        return None

    def _build(self, state: TableState, index: IndexSchema, seg: SealedSegment) -> None:
        key = (state.oid, index.oid, seg.segno)
        folder = table_folder(self.root, state.oid)
        final = folder / index_file_name(index.oid, seg.segno)
        tmp = folder / f"{final.name}.{uuid.uuid4().hex[:12]}.tmp"
        with self._cond:
            self._running = key
        start = time.perf_counter()
        error = None
        try:
            dim = vector_dim(state.schema, index.column)
            built = build_segment_index(index, dim, seg.data, seed=seg.segno, should_stop=lambda: self._stop)
            if self._stop:
                raise _Stopped
            built.save(tmp, fsync=self.fsync)  # writes tmp + ".tmp", renames it to tmp
            del built
        except _Stopped:
            tmp.unlink(missing_ok=True)
            with self._cond:
                self._running = None
            raise
        except Exception as e:  # noqa: BLE001 - any failure is this build's, recorded for index_status
            error = f"{type(e).__name__}: {e}"
        elapsed = time.perf_counter() - start
        published = False
        with self._cond:
            self._running = None
            self._build_seconds[index.oid] = self._build_seconds.get(index.oid, 0.0) + elapsed
            if self._is_gone(state.oid, index.oid) or self._stop:
                pass  # dropped (or closing) meanwhile: discard
            elif error is not None:
                self._failed[key] = error
                log.error('building vector index "%s" of table "%s" segment %d failed: %s', index.name,
                          state.name, seg.segno, error)
            else:
                os.replace(tmp, final)
                self._built[key] = _Built(final)
                self._builds += 1
                published = True
            self._cond.notify_all()
        if not published:
            tmp.unlink(missing_ok=True)
        elif self.fsync:
            fsync_dir(folder)
        log.info('built vector index "%s" of table "%s" segment %d (%d rows) in %.2fs', index.name, state.name,
                 seg.segno, seg.num_rows, elapsed)

    def _maintain_growing(self, version: Version) -> None:
        """Drop growing indexes of sealed generations or dropped indexes; create and extend the others."""
        wanted: dict[IndexKey, tuple[TableState, IndexSchema]] = {}
        for state in version.tables.values():
            if state.growing.num_rows >= self.growing_index_rows:
                for index in state.schema.indexes:
                    wanted[(state.oid, index.oid)] = (state, index)
        with self._cond:
            for key in list(self._growing):
                entry = wanted.get(key)
                if entry is None or entry[0].growing.gen != self._growing[key].gen:
                    del self._growing[key]
        for key, (state, index) in wanted.items():
            if self._stop:
                raise _Stopped
            try:
                self._extend_growing(key, state, index)
            except _Stopped:
                raise
            except Exception as e:  # noqa: BLE001 - recorded; this generation is not tried again
                log.error('growing index of "%s" on "%s" failed: %s', index.name, state.name, e)
                with self._cond:
                    self._growing.pop(key, None)
                    self._growing_failed[key] = (state.growing.gen, f"{type(e).__name__}: {e}")

    def _extend_growing(self, key: IndexKey, state: TableState, index: IndexSchema) -> None:
        growing = state.growing
        with self._cond:
            if self._is_gone(*key):
                return
            failed = self._growing_failed.get(key)
            if failed is not None and failed[0] == growing.gen:
                return
            grow = self._growing.get(key)
        dim = vector_dim(state.schema, index.column)
        if grow is None:
            grow = new_growing_index(index, dim, growing.gen, state)
            if grow is None:
                return
            with self._cond:
                if self._is_gone(*key):
                    return
                self._growing[key] = grow
        column = growing.table().column(index.column)
        end = growing.num_rows
        while grow.covered < end:
            if self._stop:
                raise _Stopped
            start = grow.covered
            stop = min(end, start + GROWING_BATCH_ROWS)
            vectors, positions = _vectors(column.slice(start, stop - start), dim)
            grow.add(vectors, positions + start, stop)
            with self._cond:
                self._cond.notify_all()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # removed by a drop meanwhile
        return 0
