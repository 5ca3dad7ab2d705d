"""The store: commits (WAL + group commit), snapshots, sequences, recovery and checkpoints.

Data directory layout::

    <data>/
      LOCK                          flock()ed by the one process that has the store open
      catalog.json                  tables, next OID, sequence positions (catalog.py)
      wal/<first-lsn:020d>.wal      write-ahead log files (wal.py); payloads in records.py
      wal/<name>.torn-<ns>          copy of a WAL file whose torn tail recovery cut off
      wal/staged-<token>.arrows     rows of a large insert written as they arrive (staging.py)
      wal/<lsn:020d>.<n>.rows       those rows once op n of commit <lsn> names them (removed with its WAL file)
      tables/<oid>/manifest.json    the table's sealed segments and delete files (manifest.py)
      tables/<oid>/seg-<n>.arrow    a sealed segment: Arrow IPC file, uncompressed, memory-mapped (segment.py)
      tables/<oid>/seg-<n>.del-<lsn>.arrow   the segment's deleted row ids as of that LSN (segment.py)
      tables/<oid>/idx-<index oid>-seg-<n>.vidx   vector index <index oid> of segment n, built in the
                                    background, memory-mapped (segment_index.py, vector_index.py)
      tables/<oid>/*.tmp            a file being written (renamed into place when complete)

Tables are folders by OID, so any table name (case-sensitive, any characters) is safe, and a dropped and
re-created table never meets its predecessor's files.

Commit: under the writer lock the ops are checked and applied to the writer's state (undone if one
fails, so a failing commit writes nothing), the commit gets the next LSN and its record is queued. Then the
committing thread waits for durability: if no flush is running it becomes the leader, writes every
queued record in LSN order with one fsync, publishes the newest state for snapshots and wakes the others.
So concurrent commits share fsyncs while WAL order = LSN order = apply order, and a snapshot only ever
shows durable commits.

Sealing, catalog writes and WAL truncation run after a commit is durable, under the writer lock with
every queued commit flushed (checkpoint.py). Recovery loads catalog and manifests, then replays the whole
WAL idempotently (writer.apply with replay=True).

Vector index definitions are catalog entries (CreateIndex / DropIndex, logged like CREATE TABLE). The
indexes themselves are derived data built by a background thread outside every store lock
(index_builds.py): one file per (index, sealed segment), and an in-memory index over a large growing
segment. They are never in the WAL: a missing file is simply built again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa

from . import records as records_codec
from . import staging
from .catalog import load_catalog
from .checkpoint import checkpoint_table, remove_strays, write_catalog
from .compaction import CompactionResult, deleted_since, live_rows, plan_groups
from .durable import fsync_dir
from .errors import CorruptionError, StorageError
from .index_builds import IndexService, IndexStatus
from .manifest import load_manifest
from .ops import Op
from .records import CATALOG_RECORDS, CreateIndexRecord, CreateRecord, InsertRecord, Record
from .segment import SealedSegment, open_sealed, segment_file_name, write_arrow_file
from .snapshot import Snapshot, Version
from .staging import StagedRows, rows_file_name
from .table import TableState
from .types import TableSchema
from .wal import KIND_COMMIT, WalWriter, recover
from .writer import Undo, WriterState, table_folder

log = logging.getLogger(__name__)

# Sequence values are reserved in the WAL this many at a time beyond what a call needs (PostgreSQL
# logs 32 ahead); values reserved but not handed out before a crash are skipped, as in PostgreSQL.
SEQUENCE_RESERVE = 64


@dataclass(eq=False)
class _Queued:
    """A commit waiting for the WAL. ``wake`` is set when it is durable (``done``) or when its thread
    should take over as group leader; waking only those threads avoids a thundering herd."""

    lsn: int
    payload: list
    version: Version
    done: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class Store:
    """A data directory opened for reading and writing. Use ``Store.open``."""

    def __init__(self, root: Path, *, seal_rows: int, fsync: bool, wal_segment_bytes: int,
                 checkpoint_wal_bytes: int, build_indexes: bool = True, growing_index_rows: int = 10_000,
                 index_build_threads: int = 0, compaction_ratio: float = 0.2,
                 compaction_interval: float = 0.0, background_checkpoints: bool = False,
                 stage_bytes: int = 32 << 20, _private: bool = False):
        if not _private:
            raise TypeError("use Store.open(path)")
        if seal_rows < 1:
            raise StorageError("seal_rows must be at least 1")
        if growing_index_rows < 1:
            raise StorageError("growing_index_rows must be at least 1")
        if index_build_threads < 0:
            raise StorageError("index_build_threads must be at least 0")
        self.root = root
        self.seal_rows = seal_rows
        self.fsync = fsync
        self.checkpoint_wal_bytes = checkpoint_wal_bytes
        if not 0.0 <= compaction_ratio <= 1.0:
            raise StorageError("compaction_ratio must be between 0 and 1")
        self.compaction_ratio = compaction_ratio
        self.compaction_interval = compaction_interval  # seconds between background passes; 0: none
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._compactor_wake = threading.Event()
        self._compactor: threading.Thread | None = None
        # Background checkpoints: commits that leave a segment to seal or a WAL to cut bump _ckpt_asked;
        # the checkpointer thread sets _ckpt_done to the count it has served.
        self.background_checkpoints = background_checkpoints
        self.stage_bytes = stage_bytes  # read by loaders (COPY); see stage()
        self._ckpt_cond = threading.Condition(threading.Lock())
        self._ckpt_asked = 0
        self._ckpt_done = 0
        self._checkpointer: threading.Thread | None = None
        self._wal_segment_bytes = wal_segment_bytes
        self._writer_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._seq_lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._flushing = False
        self._failed: BaseException | None = None
        self._closed = False
        self._closing = False
        self._seq_next: dict[tuple[int, str], int] = {}
        self._lock_fd: int | None = None
        self._state = WriterState(root)
        self._wal: WalWriter
        self._next_lsn = 1
        self._durable_lsn = 0
        self._version = Version(0, {})
        self._indexes = IndexService(root, fsync=fsync, enabled=build_indexes,
                                     growing_index_rows=growing_index_rows, current=lambda: self._version,
                                     threads=index_build_threads)

    # --- opening and closing -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, seal_rows: int = 1_000_000, fsync: bool = True,
             wal_segment_bytes: int = 64 << 20, checkpoint_wal_bytes: int = 256 << 20,
             build_indexes: bool = True, growing_index_rows: int = 10_000, index_build_threads: int = 0,
             compaction_ratio: float = 0.2, compaction_interval: float = 0.0,
             background_checkpoints: bool = False, stage_bytes: int = 32 << 20) -> Store:
        """Open (creating if missing) the data directory at ``path`` and recover it.

        ``seal_rows``: rows after which a growing segment is sealed. ``fsync=False`` skips every fsync
        (tests, benchmarks: a crash of the machine may then lose acknowledged commits).
        ``wal_segment_bytes``: size after which a new WAL file is started. ``checkpoint_wal_bytes``: WAL
        size after which every table is checkpointed (small growing segments sealed) so the WAL can be cut.
        ``build_indexes=False`` builds no vector indexes (index files already there are still used).
        ``growing_index_rows``: rows a growing segment needs before it gets a growing vector index.
        ``index_build_threads``: threads one index build uses (0: every core).
        ``compaction_ratio``: the fraction of deleted rows past which the background compactor rewrites a
        sealed segment (small segments are merged whatever it is; see compaction.py); it looks every
        ``compaction_interval`` seconds and after checkpoints (0, the default here: no background
        compaction; ``compact`` and VACUUM still work; the server turns it on).
        ``background_checkpoints``: a commit that fills a growing segment to ``seal_rows`` or the WAL past
        ``checkpoint_wal_bytes`` returns once durable, and a checkpointer thread seals and cuts after it
        (``wait_checkpoints`` waits for it); off, the committing thread does it before returning. Commits
        that change the catalog always checkpoint in their own thread. The server turns it on.
        ``stage_bytes``: the size of rows from which a loader that can (COPY) should write them to a
        staged file as they arrive (``stage``), so that the commit logs a file name (0: never).
        """
        root = Path(path)
        store = cls(root, seal_rows=seal_rows, fsync=fsync, wal_segment_bytes=wal_segment_bytes,
                    checkpoint_wal_bytes=checkpoint_wal_bytes, build_indexes=build_indexes,
                    growing_index_rows=growing_index_rows, index_build_threads=index_build_threads,
                    compaction_ratio=compaction_ratio, compaction_interval=compaction_interval,
                    background_checkpoints=background_checkpoints, stage_bytes=stage_bytes, _private=True)
        store._lock_dir()
        try:
            store._recover()
        except BaseException:
            store._unlock_dir()
            raise
        return store

    def _lock_dir(self) -> None:
        created = not (self.root / "wal").exists()
        for sub in ("", "wal", "tables"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if created and self.fsync:
            fsync_dir(self.root)
            fsync_dir(self.root.parent)
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(f"data directory {self.root} is in use by another process") from None
        self._lock_fd = fd

    def _unlock_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        catalog = load_catalog(self.root)
        state = self._state
        state.load_catalog(catalog)
        wal = recover(self.root / "wal", fsync=self.fsync)
        for repaired in wal.repaired:
            log.warning("WAL %s: %s at offset %d; truncated there, damaged original kept as %s",
                        repaired.path, repaired.reason, repaired.offset, repaired.copy)
        self.repaired_wal = wal.repaired
        for rec in wal.records:
            try:
                ops = records_codec.decode(rec.payload, self.root / "wal")
            except Exception as e:
                raise CorruptionError(rec.path, rec.offset, f"undecodable commit record: {e}") from e
            for op in ops:
                if isinstance(op, CATALOG_RECORDS) and rec.lsn <= catalog.lsn:
                    continue
                state.apply(op, rec.lsn, None, replay=True)
        # The LSN files were written at; a WAL that ends before it has lost files.
        persisted = catalog.lsn
        for name in state.tables:
            manifest = load_manifest(table_folder(self.root, state.tables[name].oid))
            if manifest is not None:
                persisted = max(persisted, manifest.checkpoint_lsn)
        last = wal.last_lsn if wal.last_lsn is not None else persisted
        if last < persisted:
            raise CorruptionError(self.root / "wal", 0, f"the WAL ends at LSN {last} but files were "
                                  f"checkpointed at LSN {persisted}: WAL files are missing")
        self._next_lsn = last + 1
        self._durable_lsn = last
        self._wal = WalWriter(self.root / "wal", self._next_lsn, segment_bytes=self._wal_segment_bytes,
                              fsync=self.fsync)
        first = self._wal.files[0][0] if self._wal.files else self._next_lsn
        for stray in staging.remove_strays(self.root / "wal", first, last):
            log.info("removed %s: staged rows no durable commit names", stray)
        with self._writer_lock:
            write_catalog(state, last, fsync=self.fsync)
            remove_strays(state)
            self._checkpoint_locked(full=False)
            self._indexes.start(self._version)
        if self.background_checkpoints:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                                  name=f"sqlvec-checkpointer:{self.root}", daemon=True)
            self._checkpointer.start()
        if self.compaction_interval > 0:
            self._compactor = threading.Thread(target=self._compact_loop, name=f"sqlvec-compactor:{self.root}",
                                               daemon=True)
            self._compactor.start()

    def close(self) -> None:
        """Stop index builds, flush queued commits and release the directory. Snapshots taken before stay
        readable (their vector indexes included)."""
        self._closing = True
        self._compactor_wake.set()
        with self._ckpt_cond:
            self._ckpt_cond.notify_all()
        for thread in (self._compactor, self._checkpointer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(60)
        with self._compact_lock:  # a compaction in another thread (VACUUM) finishes first
            pass
        self._indexes.stop()
        with self._writer_lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    self._wait_durable(self._next_lsn - 1)
            finally:
                self._closed = True
                try:
                    self._wal.close(sync=self._failed is None)
                finally:
                    self._unlock_dir()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")
        if self._failed is not None:
            raise StorageError(f"the store failed writing its WAL and accepts no more writes: {self._failed}")

    # --- reading -------------------------------------------------------------------------------------

    @property
    def catalog(self) -> dict[str, TableSchema]:
        """The committed catalog: table name -> schema (OID assigned)."""
        return {name: t.schema for name, t in self._version.tables.items()}

    def snapshot(self) -> Snapshot:
        """A consistent view of every table after the newest durable commit."""
        return Snapshot(self._version, self._indexes)

    # --- vector indexes ------------------------------------------------------------------------------

    def wait_for_indexes(self, table: str, index: str | None = None, timeout: float | None = None) -> bool:
        """Block until every sealed segment of ``table`` that exists now has a built (or failed) index file
        for ``index`` (every index of the table when None). True when done, or when the table or index is
        dropped meanwhile; False when ``timeout`` seconds pass first, at once when the store was opened
        with ``build_indexes=False`` and something is missing, and when the store is closed.

        Raises NoSuchTableError / NoSuchIndexError for a name the newest commit does not have.
        """
        return self._indexes.wait_for_indexes(table, index, timeout)

    @property
    def builds_indexes(self) -> bool:
        """Whether a background builder runs (opened with build_indexes=True and not closed)."""
        return self._indexes.enabled and not self._closed

    def wait_for_index_builder(self, timeout: float | None = None) -> bool:
        """Block until the index builder has nothing left to do: every sealed segment's file built (or
        failed) and every growing index caught up with the newest commit. False on timeout (or when builds
        are off or the store is closed)."""
        return self._indexes.wait_idle(timeout)

    def index_status(self) -> list[IndexStatus]:
        """Build progress of every vector index, as of the newest commit."""
        return self._indexes.status()

    @property
    def index_builds(self) -> int:
        """Segment index files built by this process since the store was opened."""
        return self._indexes.builds

    def lookup_row_ids(self, table: str, keys: pa.Table | pa.RecordBatch) -> np.ndarray:
        """Row id of the live row with each primary key (-1 where none), as of the newest commit queued.

        ``keys`` has the primary-key columns by name (extra columns are ignored); values are cast to the
        columns' types. Keys with a NULL match nothing.
        """
        with self._writer_lock:
            self._check_usable()
            state = self._state.table(table)
            pk = self._state.pk.get(state.oid)
            if pk is None:
                raise StorageError(f'table "{table}" has no primary key')
            if isinstance(keys, pa.RecordBatch):
                keys = pa.Table.from_batches([keys])
            cols = []
            for name in pk.codec.columns:
                if name not in keys.column_names:
                    raise StorageError(f'key batch lacks primary key column "{name}" of "{table}"')
                want = state.schema.column(name).type.arrow()
                col = keys.column(name)
                try:
                    cols.append(col if col.type.equals(want) else col.cast(want))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise StorageError(f'key column "{name}": cannot compare {col.type} '
                                       f"with {want}: {e}") from e
            key_table = pa.table(cols, names=list(pk.codec.columns))
            out = np.full(key_table.num_rows, -1, dtype=np.int64)
            valid = np.ones(key_table.num_rows, dtype=bool)
            for col in key_table.columns:
                if col.null_count:
                    valid &= col.is_valid().to_numpy(zero_copy_only=False)
            if not valid.all():
                key_table = key_table.filter(pa.array(valid))
            out[valid] = pk.lookup(pk.codec.encode(key_table))
            return out

    # --- writing -------------------------------------------------------------------------------------

    def commit(self, ops: Sequence[Op]) -> int:
        """Apply ``ops`` atomically and durably; returns the commit's LSN.

        Raises (changing nothing) DuplicateKeyError, TableExistsError, NoSuchTableError, NullValueError or
        StorageError. A commit whose ops change nothing writes no record and returns the newest LSN.
        """
        ops = list(ops)
        return self._submit(lambda lsn, undo: [r for op in ops for r in self._state.resolve(op, lsn, undo)])

    def stage(self, table: str) -> StagedRows:
        """A file to write rows of ``table`` to as they arrive (its user columns, ``arrow_schema()``),
        for an ``Insert(table, rows, staged=...)`` of the same rows; see staging.py."""
        with self._writer_lock:
            self._check_usable()
            schema = self._state.table(table).arrow_schema
        return StagedRows(self.root / "wal", schema, fsync=self.fsync)

    def _seal_staged(self, recs: list[Record], lsn: int) -> None:
        """Make the staged files of ``recs`` durable under their commit's names, before its record is."""
        for i, rec in enumerate(recs):
            if isinstance(rec, InsertRecord) and rec.staged is not None and not rec.staged.sealed:
                rec.staged.seal(self.root / "wal" / rows_file_name(lsn, i))

    def _submit(self, build: Callable[[int, Undo], list[Record]]) -> int:
        with self._writer_lock:
            self._check_usable()
            lsn = self._next_lsn
            save = self._state.save_point()
            undo: Undo = []
            try:
                recs = build(lsn, undo)
                self._seal_staged(recs, lsn)
                payload = records_codec.encode(recs) if recs else None
            except BaseException:
                self._state.roll_back(save, undo)
                raise
            if payload is None:
                target = lsn - 1
                maintain = in_background = False
                wake_builder = False
            else:
                self._next_lsn = target = lsn
                self._next_lsn += 1
                queued = _Queued(lsn, payload, Version(lsn, dict(self._state.tables)))
                with self._cond:
                    self._queue.append(queued)
                want = self._wants_checkpoint(recs)
                maintain = want is not None
                in_background = want == "later" and self.background_checkpoints
                wake_builder = self._wakes_index_builder(recs)
        if payload is None:
            self._wait_durable(target)
        else:
            self._wait_queued(queued)
        if in_background:
            # Sealing a growing segment (seconds at a million rows) and cutting the WAL happen after the
            # commit returns: the rows are durable in the WAL and readable in the growing segment meanwhile.
            with self._ckpt_cond:
                self._ckpt_asked += 1
                self._ckpt_cond.notify_all()
        elif maintain:
            try:
                self._checkpoint_if_usable()
            except Exception:
                # The commit is durable in the WAL; the checkpoint is retried after the next commit.
                log.exception("checkpoint after commit %d failed", target)
        if wake_builder:
            self._indexes.notify()
        return target

    def _wakes_index_builder(self, recs: list[Record]) -> bool:
        """Whether a commit gives the index builder work: a new index, or rows that make a growing segment
        big enough for a growing index."""
        for r in recs:
            if isinstance(r, CreateIndexRecord) or (isinstance(r, CreateRecord) and r.schema.indexes):
                return True
            if isinstance(r, InsertRecord):
                name = self._state.names.get(r.oid)
                table = self._state.tables[name] if name is not None else None
                if (table is not None and table.schema.indexes
                        and table.growing.num_rows >= self._indexes.growing_index_rows):
                    return True
        return False

    def _wants_checkpoint(self, recs: list[Record]) -> str | None:
        """After this commit: "now" (catalog changes, checkpointed before the commit returns), "later" (a
        growing segment to seal or a WAL to cut; in the background with background_checkpoints) or None."""
        later = self._wal.total_bytes > self.checkpoint_wal_bytes
        for r in recs:
            if isinstance(r, CATALOG_RECORDS):
                return "now"
            if not later and isinstance(r, InsertRecord):
                name = self._state.names.get(r.oid)
                later = name is not None and self._state.tables[name].growing.num_rows >= self.seal_rows
        return "later" if later else None

    def _checkpoint_if_usable(self) -> bool:
        """The checkpoint a commit asked for, unless the store is closed or failed (then False)."""
        with self._writer_lock:
            if self._closed or self._failed is not None:
                return False
            self._checkpoint_locked(full=self._wal.total_bytes > self.checkpoint_wal_bytes)
            return True

    def _wait_queued(self, item: _Queued) -> None:
        """Block until ``item`` is durable: as a follower woken only for it, or as the group leader."""
        while True:
            with self._cond:
                if self._failed is not None:
                    raise StorageError(f"WAL write failed; commit {item.lsn} is not durable: {self._failed}")
                if item.done:
                    return
                batch = self._take_batch()
                if batch is None:
                    item.wake.clear()
            if batch is None:
                item.wake.wait()
            else:
                self._flush(batch)

    def _wait_durable(self, lsn: int) -> None:
        """Block until every commit up to ``lsn`` is durable (used to drain the queue)."""
        while True:
            with self._cond:
                if self._durable_lsn >= lsn:
                    return
                if self._failed is not None:
                    raise StorageError(f"WAL write failed; commit {lsn} is not durable: {self._failed}")
                batch = self._take_batch()
                if batch is None:
                    self._cond.wait()
                    continue
            self._flush(batch)

    def _take_batch(self) -> list[_Queued] | None:
        """Become the group leader: take every queued commit (caller holds ``_cond``)."""
        if self._flushing or not self._queue:
            return None
        batch, self._queue = self._queue, []
        self._flushing = True
        return batch

    def _flush(self, batch: list[_Queued]) -> None:
        """As the leader: write ``batch`` with one fsync, publish, wake its threads and the next leader."""
        error: BaseException | None = None
        try:
            self._wal.append((q.lsn, KIND_COMMIT, q.payload) for q in batch)
            self._wal.sync()
        except BaseException as e:  # noqa: BLE001 - whatever failed, the WAL tail is unknown
            error = e
        with self._cond:
            self._flushing = False
            if error is None:
                self._durable_lsn = batch[-1].lsn
                self._version = batch[-1].version
            else:
                log.error("WAL write failed, store stops accepting writes: %s", error)
                self._failed = error
            for q in batch:
                q.done = True
                q.wake.set()
            if self._queue:
                self._queue[0].wake.set()  # commits queued meanwhile: their first thread leads next
            self._cond.notify_all()  # drains

    def checkpoint(self) -> None:
        """Move everything committed into segment, delete and catalog files and cut the WAL behind it.

        Seals every non-empty growing segment, however small.
        """
        with self._writer_lock:
            self._check_usable()
            self._checkpoint_locked(full=True)

    def _checkpoint_locked(self, *, full: bool) -> None:
        self._wait_durable(self._next_lsn - 1)
        lsn = self._durable_lsn
        state = self._state
        forget = self._indexes.forget
        if state.catalog_dirty_lsn is not None or state.dropped or state.dropped_indexes:
            write_catalog(state, lsn, fsync=self.fsync, forget=forget)
        sealed = False
        for name in list(state.tables):
            table = state.tables[name]
            seal = table.growing.num_rows >= self.seal_rows or (full and table.growing.num_rows > 0)
            if seal or (full and table.deletes_lsn is not None):
                checkpoint_table(state, name, lsn, seal_rows=self.seal_rows, seal_growing=seal,
                                 fsync=self.fsync)
                sealed |= seal and bool(table.schema.indexes)
        if full and state.catalog_dirty_lsn is not None:
            write_catalog(state, lsn, fsync=self.fsync, forget=forget)
        cutoff = state.wal_cutoff(self._next_lsn)
        if cutoff == self._next_lsn:
            self._wal.rotate(self._next_lsn)  # everything is in files: let the current WAL file go too
        self._wal.remove_before(cutoff)
        with self._cond:
            self._version = Version(lsn, dict(state.tables))
        if sealed:
            self._indexes.notify()
        self._compactor_wake.set()  # new small segments or persisted deletes: worth a look

    # --- compaction ----------------------------------------------------------------------------------

    def compact(self, table: str | None = None, *, deleted_ratio: float | None = None) -> list[CompactionResult]:
        """Rewrite the sealed segments of ``table`` (every table when None) that compaction.plan_groups
        picks with ``deleted_ratio`` (default: the store's compaction_ratio; 0 rewrites every segment with
        a deleted row), readers and writers going on meanwhile. Returns what was rewritten."""
        ratio = self.compaction_ratio if deleted_ratio is None else deleted_ratio
        done: list[CompactionResult] = []
        with self._compact_lock:
            self._check_usable()
            names = [table] if table is not None else list(self._version.tables)
            for name in names:
                while not self._closing:
                    state = self._version.tables.get(name)
                    if state is None:
                        break
                    groups = plan_groups(state.sealed, self.seal_rows, deleted_ratio=ratio)
                    if not groups:
                        break
                    result = self._compact_group(state, *groups[0])
                    if result is None:
                        break  # the table changed under it (dropped, truncated): the next pass sees
                    done.append(result)
        return done

    def _compact_group(self, then: TableState, start: int, end: int) -> CompactionResult | None:
        group = then.sealed[start:end]
        segnos = tuple(s.segno for s in group)
        folder = table_folder(self.root, then.oid)
        with self._writer_lock:
            self._check_usable()
            current = self._state.tables.get(then.name)
            if current is None or current.oid != then.oid:
                return None
            segno = current.next_segno
            self._state.tables[then.name] = replace(current, next_segno=segno + 1)
        data = live_rows(group)
        new: SealedSegment | None = None
        if data.num_rows:
            file = segment_file_name(segno)
            write_arrow_file(folder / file, data, fsync=self.fsync)
            if self.fsync:
                fsync_dir(folder)
            new = open_sealed(folder, segno, file, None, data.num_rows)
            still = self._version.tables.get(then.name)
            if still is not None and still.oid == then.oid and not self._closing:  # not dropped meanwhile
                self._indexes.build_now(then, new)
        with self._writer_lock:
            self._check_usable()
            self._wait_durable(self._next_lsn - 1)
            lsn = self._durable_lsn
            current = self._state.tables.get(then.name)
            at = [s.segno for s in current.sealed] if current is not None and current.oid == then.oid else []
            if segnos[0] not in at or tuple(at[at.index(segnos[0]):at.index(segnos[0]) + len(segnos)]) != segnos:
                (folder / segment_file_name(segno)).unlink(missing_ok=True)
                for path in self._indexes.drop_segments(then.oid, [segno]):
                    path.unlink(missing_ok=True)
                return None
            i = at.index(segnos[0])
            now = current.sealed[i:i + len(segnos)]
            if new is not None:
                dead = deleted_since(group, now)
                if dead.size:
                    new, _ = new.with_deletes(np.unique(dead))
            sealed = current.sealed[:i] + ((new,) if new is not None else ()) + current.sealed[i + len(segnos):]
            self._state.tables[then.name] = replace(current, sealed=sealed, sealed_firsts=np.array(
                [s.first_rowid for s in sealed], dtype=np.int64))
            try:
                checkpoint_table(self._state, then.name, lsn, seal_rows=self.seal_rows, seal_growing=False,
                                 fsync=self.fsync, force_manifest=True)
            except BaseException:
                self._state.tables[then.name] = current  # the manifest still names the old segments
                raise
            with self._cond:
                self._version = Version(lsn, dict(self._state.tables))
        freed = 0
        old_files = [folder / name for s in now for name in (s.file, s.delete_file) if name]
        old_files += self._indexes.drop_segments(then.oid, segnos)
        for path in old_files:
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                pass
        if new is not None and self._indexes.enabled:
            self._indexes.notify()  # an index build_now could not finish is retried in the background
        log.info('compacted table "%s": segments %s (%d rows) -> %s (%d rows), %d bytes freed', then.name,
                 list(segnos), sum(s.num_rows for s in group), segno if new is not None else "none",
                 data.num_rows, freed)
        return CompactionResult(then.name, segnos, segno if new is not None else None,
                                sum(s.num_rows for s in group), data.num_rows, freed)

    def _checkpoint_loop(self) -> None:
        while True:
            with self._ckpt_cond:
                while self._ckpt_done == self._ckpt_asked and not self._closing:
                    self._ckpt_cond.wait()
                if self._closing:
                    return
                serving = self._ckpt_asked
            try:
                if not self._checkpoint_if_usable():
                    return
            except Exception:
                # Everything it would have written is durable in the WAL; the next commit asks again.
                log.exception("background checkpoint failed")
            with self._ckpt_cond:
                self._ckpt_done = serving
                self._ckpt_cond.notify_all()

    def wait_checkpoints(self) -> None:
        """Block until the background checkpoints asked for by commits so far have run."""
        with self._ckpt_cond:
            target = self._ckpt_asked
            while self._ckpt_done < target and not self._closing and self._checkpointer is not None \
                    and self._checkpointer.is_alive():
                self._ckpt_cond.wait(0.1)

    def _compact_loop(self) -> None:
        # Background rebuilds leave half the cores to queries (an OpenMP setting of this thread only;
        # VACUUM, in a session's thread, builds with every core).
        import faiss

        faiss.omp_set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        while not self._closing:
            self._compactor_wake.wait(self.compaction_interval)
            self._compactor_wake.clear()
            if self._closing:
                return
            try:
                self.compact()
            except StorageError:
                if self._closing or self._closed:
                    return
                log.exception("background compaction")
            except Exception:  # a bug: log it, try again next time
                log.exception("background compaction")

    # --- sequences -----------------------------------------------------------------------------------

    def next_values(self, table: str, column: str, n: int) -> np.ndarray:
        """``n`` new int64 values of the column's sequence (1, 2, 3, ...). Never handed out twice, even
        across crashes; never rolled back."""
        if n < 0:
            raise StorageError("next_values needs n >= 0")
        with self._seq_lock:
            key = self._sequence_key(table, column)
            first = self._seq_next.get(key, self._state.sequences.get(key, 0) + 1)
            last = first + n - 1
            if last > self._state.sequences.get(key, 0):
                self._reserve(table, column, last + SEQUENCE_RESERVE)
            self._seq_next[key] = last + 1
            return np.arange(first, last + 1, dtype=np.int64)

    def set_sequence(self, table: str, column: str, value: int) -> None:
        """Make every later ``next_values`` of the column return values above ``value``."""
        with self._seq_lock:
            key = self._sequence_key(table, column)
            first = self._seq_next.get(key, self._state.sequences.get(key, 0) + 1)
            if value < first:
                return
            if value >= self._state.sequences.get(key, 0):
                self._reserve(table, column, value + SEQUENCE_RESERVE)
            self._seq_next[key] = value + 1

    def _sequence_key(self, table: str, column: str) -> tuple[int, str]:
        with self._writer_lock:
            self._check_usable()
            rec = self._state.resolve_sequence(table, column, 0)
            return rec.oid, rec.column

    def _reserve(self, table: str, column: str, reserve_to: int) -> None:
        def build(lsn: int, undo: Undo) -> list[Record]:
            rec = self._state.resolve_sequence(table, column, reserve_to)
            self._state.apply(rec, lsn, undo)
            return [rec]

        self._submit(build)
