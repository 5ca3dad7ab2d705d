"""A session's open transaction: pending writes, and the view of tables they give its statements.

Writes are buffered here until COMMIT, then handed to storage as one atomic commit. A statement
inside the transaction sees a fresh committed snapshot (READ COMMITTED) with this transaction's
own pending inserts added and pending deletes removed. Rows inserted by the transaction carry
temporary negative row ids until commit, so that a later DELETE in the same transaction can name
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage import CreateIndex, CreateTable, Delete, DropIndex, DropTable, Insert, SegmentView, Snapshot
from storage.types import TableSchema

ROWID = "_rowid"


@dataclass
class Part:
    """A piece of a table visible to one statement: rows, their ids, and which are live.

    ``key`` identifies ``data`` for caches (same key, same rows); ``live`` None means all live.
    """

    key: str
    data: pa.Table  # user columns + ROWID
    live: np.ndarray | None
    segment: SegmentView | None = None  # the stored segment ``data`` is, for its vector indexes

    def live_table(self) -> pa.Table:
        if self.live is None:
            return self.data
        return self.data.filter(pa.array(self.live))


@dataclass
class _PendingInsert:
    """Rows a transaction inserted into one table, in consecutive statements.

    Statements append chunks, merged like a binary counter (the last two while the older is not
    larger), so 20k single-row INSERTs leave O(log) contiguous chunks and each row is copied O(log)
    times. Temporary row ids decrease along the chunks. ``data`` is every chunk, as one table.
    """

    table: str
    chunks: list[pa.Table]  # user columns + ROWID (temporary, negative, decreasing)
    _data: pa.Table | None = None

    @property
    def data(self) -> pa.Table:
        if self._data is None:
            self._data = _concat(self.chunks)
        return self._data

    def append(self, chunk: pa.Table) -> None:
        chunks = self.chunks
        chunks.append(chunk)
        while len(chunks) >= 2 and chunks[-2].num_rows <= chunks[-1].num_rows:
            chunks[-2:] = [_concat(chunks[-2:]).combine_chunks()]
        self._data = None


@dataclass
class _PendingDelete:
    """Committed rows a transaction deleted from one table, in consecutive statements (chunks of row ids,
    concatenated once per change)."""

    table: str
    chunks: list[np.ndarray]
    _ids: np.ndarray | None = None

    @property
    def row_ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
            self.chunks = [self._ids]
        return self._ids

    def append(self, row_ids: np.ndarray) -> None:
        self.chunks.append(row_ids)
        self._ids = None


_DDL = (CreateTable, DropTable, CreateIndex, DropIndex)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    schema = pa.schema([f.with_nullable(True) for f in tables[0].schema])
    return pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in tables])


@dataclass
class Transaction:
    #: CreateTable | DropTable | CreateIndex | DropIndex | _PendingInsert | _PendingDelete. Between two
    #: DDL ops a table has at most one _PendingInsert and one _PendingDelete, which later statements
    #: extend: a transaction of 10,000 upserts is two ops, not 20,000.
    ops: list[object] = field(default_factory=list)
    next_temp_id: int = -1
    generation: int = 0
    #: per table, primary key (as a comparable string) -> temporary row id of each row this transaction
    #: inserted and has not deleted; missing after a delete of its own rows (rebuilt on demand)
    pending_keys: dict[str, dict] = field(default_factory=dict)
    #: per table, a flag per committed row id: deleted by this transaction
    deleted_flags: dict[str, np.ndarray] = field(default_factory=dict)
    #: (table, index) created by CREATE INDEX without CONCURRENTLY: COMMIT returns once they are built
    index_builds: list[tuple[str, str]] = field(default_factory=list)
    #: SAVEPOINTs, oldest first: (name, the transaction's state when it was set)
    savepoints: list[tuple[str, tuple]] = field(default_factory=list)

    # -- savepoints ----------------------------------------------------------------------------

    def save_state(self) -> tuple:
        """What ROLLBACK TO SAVEPOINT returns to. Pending inserts are copied (statements append to
        them); the other ops and the Arrow data are immutable."""
        return (_copy_ops(self.ops), self.next_temp_id, {t: dict(k) for t, k in self.pending_keys.items()},
                list(self.index_builds), {t: f.copy() for t, f in self.deleted_flags.items()})

    def restore_state(self, state: tuple) -> None:
        ops, _, pending_keys, index_builds, deleted_flags = state
        self.ops = _copy_ops(ops)
        # next_temp_id stays where it is: the temporary ids of rolled-back rows are not handed out again
        self.pending_keys = {t: dict(k) for t, k in pending_keys.items()}
        self.index_builds = list(index_builds)
        self.deleted_flags = {t: f.copy() for t, f in deleted_flags.items()}
        self.generation += 1

    # -- catalog -------------------------------------------------------------------------------

    def catalog(self, base: Mapping[str, TableSchema]) -> dict[str, TableSchema]:
        cat = dict(base)
        for op in self.ops:
            if isinstance(op, CreateTable):
                cat[op.schema.name] = op.schema
            elif isinstance(op, DropTable):
                cat.pop(op.name, None)
            elif isinstance(op, CreateIndex) and op.table in cat:
                t = cat[op.table]
                cat[op.table] = replace(t, indexes=t.indexes + (op.index,))
            elif isinstance(op, DropIndex):
                for name, t in cat.items():
                    if any(i.name == op.name for i in t.indexes):
                        cat[name] = replace(t, indexes=tuple(i for i in t.indexes if i.name != op.name))
                        break
        return cat

    @property
    def has_ddl(self) -> bool:
        return any(isinstance(op, (CreateTable, DropTable, CreateIndex, DropIndex)) for op in self.ops)

    def created_here(self, table: str) -> bool:
        created = False
        for op in self.ops:
            if isinstance(op, CreateTable) and op.schema.name == table:
                created = True
            elif isinstance(op, DropTable) and op.name == table:
                created = False
        return created

    # -- writes --------------------------------------------------------------------------------

    def create_table(self, schema: TableSchema) -> None:
        self.ops.append(CreateTable(schema))
        self.generation += 1

    def create_index(self, op: CreateIndex, *, wait: bool) -> None:
        self.ops.append(op)
        if wait:
            self.index_builds.append((op.table, op.index.name))
        self.generation += 1

    def drop_index(self, op: DropIndex) -> None:
        self.ops.append(op)
        self.index_builds = [b for b in self.index_builds if b[1] != op.name]
        self.generation += 1

    def drop_table(self, name: str) -> None:
        self.ops = [op for op in self.ops if _table_of(op) != name]
        self.ops.append(DropTable(name))
        self.pending_keys.pop(name, None)
        self.deleted_flags.pop(name, None)
        self.generation += 1

    def _latest(self, kind: type, table: str) -> object | None:
        """The op of ``kind`` for ``table`` that a new statement's writes extend: the newest one with no
        DDL op after it."""
        for op in reversed(self.ops):
            if isinstance(op, _DDL):
                return None
            if isinstance(op, kind) and op.table == table:  # type: ignore[attr-defined]
                return op
        return None

    def insert(self, table: str, data: pa.Table, keys: list | None = None) -> None:
        n = data.num_rows
        ids = np.arange(self.next_temp_id, self.next_temp_id - n, -1, dtype=np.int64)
        self.next_temp_id -= n
        chunk = data.append_column(ROWID, pa.array(ids))
        latest = self._latest(_PendingInsert, table)
        if isinstance(latest, _PendingInsert):
            latest.append(chunk)
        else:
            self.ops.append(_PendingInsert(table, [chunk]))
        if keys is not None:
            known = self.pending_keys.get(table)
            if known is None and self._pending_count(table) == n:  # these rows are all there is
                known = self.pending_keys[table] = {}
            if known is not None:
                known.update(zip(keys, ids.tolist()))
        else:  # keys not given (COPY): the engine rebuilds the index when it next needs it
            self.pending_keys.pop(table, None)
        self.generation += 1

    def _pending_count(self, table: str) -> int:
        return sum(c.num_rows for op in self.ops if isinstance(op, _PendingInsert) and op.table == table
                   for c in op.chunks)

    def delete(self, table: str, row_ids: np.ndarray) -> None:
        committed = row_ids[row_ids >= 0]
        temp = row_ids[row_ids < 0]
        if len(temp):
            ops = []
            for op in self.ops:
                if isinstance(op, _PendingInsert) and op.table == table:
                    keep = pc.invert(pc.is_in(op.data.column(ROWID), pa.array(temp)))
                    op = _PendingInsert(table, [op.data.filter(keep)])
                ops.append(op)
            self.ops = ops
            self.pending_keys.pop(table, None)  # rebuilt on demand by the engine
        if len(committed):
            latest = self._latest(_PendingDelete, table)
            if isinstance(latest, _PendingDelete):
                latest.append(committed)
            else:
                self.ops.append(_PendingDelete(table, [committed]))
            flags = self.deleted_flags.get(table)
            top = int(committed.max()) + 1
            if flags is None or len(flags) < top:
                grown = np.zeros(max(top, 2 * len(flags) if flags is not None else 1024), bool)
                if flags is not None:
                    grown[:len(flags)] = flags
                flags = grown
            flags[committed] = True
            self.deleted_flags[table] = flags
        self.generation += 1

    def is_deleted(self, table: str, row_ids: np.ndarray) -> np.ndarray:
        """Per committed row id: whether this transaction deleted it (O(len(row_ids)))."""
        flags = self.deleted_flags.get(table)
        out = np.zeros(len(row_ids), bool)
        if flags is None:
            return out
        inside = (row_ids >= 0) & (row_ids < len(flags))
        out[inside] = flags[row_ids[inside]]
        return out

    def storage_ops(self) -> list[object]:
        """The transaction as storage operations, in order, ready for one commit."""
        out: list[object] = []
        inserts: list[object] = []
        for op in self.ops:
            if isinstance(op, _PendingInsert):
                if op.data.num_rows:
                    inserts.append(Insert(op.table, op.data.drop_columns([ROWID])))
            elif isinstance(op, _PendingDelete):
                out.append(Delete(op.table, op.row_ids))
            else:  # DDL: what came before it goes first, deletes of committed rows before new rows
                out += inserts
                inserts = []
                out.append(op)
        return out + inserts

    def deleted_ids(self, table: str) -> np.ndarray:
        deleted = [op.row_ids for op in self.ops if isinstance(op, _PendingDelete) and op.table == table]
        return np.concatenate(deleted) if len(deleted) > 1 else deleted[0] if deleted else np.zeros(0, np.int64)

    def pending_rows(self, table: str) -> list[pa.Table]:
        return [op.data for op in self.ops if isinstance(op, _PendingInsert) and op.table == table]

    # -- reads ---------------------------------------------------------------------------------

    def count(self, snapshot: Snapshot, table: str) -> int:
        """count(*) as this transaction sees ``table``, in O(segments + its own writes): the snapshot's
        exact count, less the rows it deleted that are still live there, plus the rows it inserted."""
        pending = self._pending_count(table)
        if self.created_here(table):
            return pending
        n = snapshot.count(table)
        gone = np.unique(self.deleted_ids(table))
        if gone.size:
            for seg in snapshot.segments(table):
                rid = seg.data.column(ROWID).to_numpy()
                pos = np.searchsorted(rid, gone)
                inside = pos < len(rid)
                pos = pos[inside]
                pos = pos[rid[pos] == gone[inside]]
                n -= int(pos.size if seg.live is None else np.count_nonzero(seg.live[pos]))
        return n + pending

    def parts(self, snapshot: Snapshot, table: str, *, mask_deletes: bool = True) -> list[Part]:
        """What the transaction sees of ``table``: committed segments less its deletes, then its own rows.
        ``mask_deletes=False``: the committed segments as stored (the caller checks ``is_deleted`` for
        the few rows it wants, rather than every row being masked)."""
        parts: list[Part] = []
        if not self.created_here(table):
            gone = self.deleted_flags.get(table) if mask_deletes else None
            for seg in snapshot.segments(table):
                live = seg.live
                if gone is not None:
                    hit = self.is_deleted(table, seg.data.column(ROWID).to_numpy())
                    if hit.any():
                        live = (np.ones(seg.data.num_rows, bool) if live is None else live.copy()) & ~hit
                        parts.append(Part(f"{seg.segment_id}", seg.data, live, seg))
                        continue
                parts.append(Part(seg.segment_id, seg.data, live, seg))
        for i, op in enumerate(self.ops):
            if isinstance(op, _PendingInsert) and op.table == table:
                parts += [Part(f"txn-{id(self)}-{self.generation}-{i}-{j}", chunk, None)
                          for j, chunk in enumerate(op.chunks) if chunk.num_rows]
        return parts


def _table_of(op: object) -> str | None:
    if isinstance(op, (_PendingInsert, _PendingDelete)):
        return op.table
    if isinstance(op, (Insert, Delete)):
        return op.table
    return None


def _copy_ops(ops: list[object]) -> list[object]:
    """The op list with the ops that statements extend copied (the others are immutable)."""
    return [_PendingInsert(op.table, list(op.chunks)) if isinstance(op, _PendingInsert)
            else _PendingDelete(op.table, list(op.chunks)) if isinstance(op, _PendingDelete) else op
            for op in ops]


def snapshot_parts(snapshot: Snapshot, table: str) -> list[Part]:
    """Parts of a table outside any transaction: the committed snapshot as it is."""
    return [Part(seg.segment_id, seg.data, seg.live, seg) for seg in snapshot.segments(table)]
