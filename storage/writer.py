"""The writer's state: the newest table states, the indexes that check commits, sequences.

``resolve`` turns the engine's ops into WAL records, checking them (duplicate keys, live row ids, schema)
and assigning OIDs and row ids; ``apply`` applies a record, both for a commit and for WAL replay. Changes
made while resolving a commit are undone if any op of it fails, so a failing commit changes nothing.
Only ever used under the store's writer lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from .catalog import FIRST_OID, CatalogFile
from .errors import (
    CorruptionError,
    DuplicateKeyError,
    IndexExistsError,
    NoSuchIndexError,
    NoSuchTableError,
    RowNotLiveError,
    StorageError,
    TableExistsError,
)
from .liverows import LiveRowIds
from .manifest import load_manifest
from .ops import CreateIndex, CreateTable, Delete, DropIndex, DropTable, Insert, Op
from .pkindex import KeyCodec, PkIndex, first_duplicate
from .records import (
    CreateIndexRecord,
    CreateRecord,
    DeleteRecord,
    DropIndexRecord,
    DropRecord,
    InsertRecord,
    Record,
    SequenceRecord,
)
from .segment import ROWID, open_sealed
from .segment_index import index_params, vector_dim
from .table import TableState, add_row_ids, conform_rows, row_ids_of
from .types import PG_TYPES, IndexSchema, TableSchema

Undo = list[Callable[[], None]]


@dataclass(frozen=True)
class _SavePoint:
    next_oid: int
    catalog_dirty_lsn: int | None


def table_folder(root: Path, oid: int) -> Path:
    return root / "tables" / str(oid)


class WriterState:
    def __init__(self, root: Path):
        self.root = root
        self.tables: dict[str, TableState] = {}
        self.names: dict[int, str] = {}  # oid -> name
        self.live: dict[int, LiveRowIds] = {}
        self.pk: dict[int, PkIndex] = {}
        self.sequences: dict[tuple[int, str], int] = {}  # (oid, column) -> highest value reserved
        self.next_oid = FIRST_OID
        self.catalog_dirty_lsn: int | None = None  # oldest catalog change not in catalog.json
        self.dropped: set[int] = set()  # OIDs of dropped tables whose folders are still to be removed
        # (table OID, index OID) of dropped indexes whose files are still to be removed
        self.dropped_indexes: set[tuple[int, int]] = set()

    # --- loading -------------------------------------------------------------------------------------

    def load_catalog(self, catalog: CatalogFile) -> None:
        self.next_oid = catalog.next_oid
        for schema in catalog.tables:
            self._add_table(schema)
        self.sequences = {k: v for k, v in catalog.sequences.items() if k[0] in self.names}

    def _add_table(self, schema: TableSchema) -> None:
        """Register a table, loading its sealed segments if it has a manifest."""
        folder = table_folder(self.root, schema.oid)
        manifest = load_manifest(folder)
        sealed = ()
        next_rowid, next_segno = 0, 1
        if manifest is not None:
            if manifest.table_oid != schema.oid:
                raise CorruptionError(folder / "manifest.json", 0,
                                      f"manifest is for table OID {manifest.table_oid}, not {schema.oid}")
            sealed = tuple(open_sealed(folder, e.segno, e.file, e.delete_file, e.num_rows)
                           for e in manifest.segments)
            next_rowid, next_segno = manifest.next_rowid, manifest.next_segment
        state = TableState.create(schema, sealed, next_rowid, next_segno)
        live = LiveRowIds()
        for seg in sealed:
            live.set(seg.rowids if seg.live is None else seg.rowids[seg.live], True)
        self.tables[schema.name] = state
        self.names[schema.oid] = schema.name
        self.live[schema.oid] = live
        if schema.primary_key:
            pk = PkIndex(KeyCodec(schema), live)
            if sealed:
                pk.add_sealed(np.concatenate([pk.codec.encode(s.data) for s in sealed]),
                              np.concatenate([s.rowids for s in sealed]))
            self.pk[schema.oid] = pk

    # --- undo ----------------------------------------------------------------------------------------

    def save_point(self) -> _SavePoint:
        """Scalars to restore on roll-back; every change to a mapping records its own undo step."""
        return _SavePoint(self.next_oid, self.catalog_dirty_lsn)

    def roll_back(self, sp: _SavePoint, undo: Undo) -> None:
        for fn in reversed(undo):
            fn()
        self.next_oid, self.catalog_dirty_lsn = sp.next_oid, sp.catalog_dirty_lsn

    def _set_table(self, name: str, state: TableState, undo: Undo | None) -> None:
        if undo is not None:
            old = self.tables[name]
            undo.append(lambda: self.tables.__setitem__(name, old))
        self.tables[name] = state

    # --- lookups -------------------------------------------------------------------------------------

    def table(self, name: str) -> TableState:
        try:
            return self.tables[name]
        except (KeyError, TypeError):
            raise NoSuchTableError(str(name)) from None

    def index_owner(self, name: str) -> TableState | None:
        """The table that has an index called ``name``, if any (indexes are few: a scan is fine)."""
        for state in self.tables.values():
            if state.schema.index(name) is not None:
                return state
        return None

    def wal_cutoff(self, next_lsn: int) -> int:
        """WAL records before this LSN are no longer needed for recovery."""
        lsns = [t.dirty_lsn for t in self.tables.values() if t.dirty_lsn is not None]
        if self.catalog_dirty_lsn is not None:
            lsns.append(self.catalog_dirty_lsn)
        return min(lsns, default=next_lsn)

    def catalog_file(self, lsn: int) -> CatalogFile:
        return CatalogFile(lsn, self.next_oid, [t.schema for t in self.tables.values()], dict(self.sequences))

    # --- resolving the engine's ops ------------------------------------------------------------------

    def resolve(self, op: Op, lsn: int, undo: Undo) -> list[Record]:
        """Check one op against the state left by the ops before it, apply it and return its records."""
        if isinstance(op, Insert):
            recs = self._resolve_insert(op)
        elif isinstance(op, Delete):
            recs = self._resolve_delete(op)
        elif isinstance(op, CreateTable):
            recs = [CreateRecord(self._check_new_table(op.schema))]
        elif isinstance(op, DropTable):
            recs = [DropRecord(self.table(op.name).oid, op.name)]
        elif isinstance(op, CreateIndex):
            state = self.table(op.table)
            recs = [CreateIndexRecord(state.oid, self._check_new_index(state.schema, op.index, self.next_oid))]
        elif isinstance(op, DropIndex):
            owner = self.index_owner(op.name) if isinstance(op.name, str) else None
            if owner is None:
                raise NoSuchIndexError(str(op.name))
            index = owner.schema.index(op.name)
            assert index is not None
            recs = [DropIndexRecord(owner.oid, index.oid, index.name)]
        else:
            raise StorageError(f"not a storage op: {op!r}")
        for rec in recs:
            self.apply(rec, lsn, undo)
        return recs

    def _check_new_table(self, schema: TableSchema) -> TableSchema:
        if not isinstance(schema, TableSchema) or not isinstance(schema.name, str) or not schema.name:
            raise StorageError(f"CreateTable needs a TableSchema with a name, not {schema!r}")
        if schema.name in self.tables or self.index_owner(schema.name) is not None:
            raise TableExistsError(schema.name)
        names = [c.name for c in schema.columns]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise StorageError(f'column "{dup}" specified more than once')
        if ROWID in names:
            raise StorageError(f'column name "{ROWID}" is reserved by storage')
        for c in schema.columns:
            if c.type.name not in PG_TYPES:
                raise StorageError(f'column "{c.name}": unknown type {c.type.name!r}')
        pk = tuple(schema.primary_key)
        if len(set(pk)) != len(pk):
            raise StorageError(f'primary key of "{schema.name}" names a column more than once')
        # PostgreSQL makes primary-key columns NOT NULL.
        columns = tuple(replace(c, not_null=True) if c.name in pk else c for c in schema.columns)
        given = schema.indexes
        schema = replace(schema, columns=columns, primary_key=pk, oid=self.next_oid, indexes=())
        if pk:
            KeyCodec(schema)  # checks the key's columns exist and have usable types
        schema.arrow_schema()
        # Indexes given with the table are created with it, their OIDs following the table's.
        for index in tuple(given):
            index = self._check_new_index(schema, index, self.next_oid + 1 + len(schema.indexes))
            schema = replace(schema, indexes=schema.indexes + (index,))
        return schema

    def _check_new_index(self, table: TableSchema, index: IndexSchema, oid: int) -> IndexSchema:
        """``index`` checked against ``table`` (and every name in use), with OID ``oid`` and sorted params."""
        if not isinstance(index, IndexSchema) or not isinstance(index.name, str) or not index.name:
            raise StorageError(f"CreateIndex needs an IndexSchema with a name, not {index!r}")
        if (index.name in self.tables or index.name == table.name or self.index_owner(index.name) is not None
                or table.index(index.name) is not None):
            raise IndexExistsError(index.name)
        for what, value in (("column", index.column), ("method", index.method), ("metric", index.metric),
                            ("opclass", index.opclass)):
            if not isinstance(value, str):
                raise StorageError(f"index {what} must be a string, not {value!r}")
        try:
            params = tuple(sorted(((str(k), v) for k, v in index.params), key=lambda kv: kv[0]))
        except (TypeError, ValueError):
            raise StorageError(f"index params must be (name, value) pairs, not {index.params!r}") from None
        index = replace(index, params=params, oid=oid)
        try:
            index_params(index, vector_dim(table, index.column))
        except ValueError as e:
            raise StorageError(f'cannot create index "{index.name}" on "{table.name}": {e}') from None
        return index

    def _resolve_insert(self, op: Insert) -> list[Record]:
        state = self.table(op.table)
        data = conform_rows(state.schema, op.data, state.arrow_schema)
        if data.num_rows == 0:
            return []
        pk = self.pk.get(state.oid)
        keys = None
        if pk is not None:
            keys = pk.codec.encode(data)
            found = pk.lookup(keys)
            hits = np.flatnonzero(found >= 0)
            in_batch = first_duplicate(keys)
            candidates = [i for i in (in_batch, int(hits[0]) if len(hits) else None) if i is not None]
            if candidates:
                raise DuplicateKeyError(state.name, pk.codec.describe(data, min(candidates)), state.schema.key_name)
        # a staged file is logged in place of the rows only when it holds exactly these rows
        staged = op.staged if (op.staged is not None and data is op.data and op.staged.rows == data.num_rows
                               and op.staged.schema.equals(data.schema)) else None
        return [InsertRecord(state.oid, add_row_ids(data, state.next_rowid), keys, staged)]

    def _resolve_delete(self, op: Delete) -> list[Record]:
        state = self.table(op.table)
        ids = np.asarray(op.row_ids)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise StorageError(f"row ids must be integers, not {ids.dtype}")
        ids = np.unique(ids.astype(np.int64, copy=False).ravel())
        if ids.size == 0:
            return []
        live = self.live[state.oid].contains(ids)
        if not live.all():
            bad = int(ids[~live][0])
            raise RowNotLiveError(state.name, bad)
        return [DeleteRecord(state.oid, ids)]

    def resolve_sequence(self, table: str, column: str, reserve_to: int) -> SequenceRecord:
        state = self.table(table)
        col = state.schema.column(column)
        if col is None:
            raise StorageError(f'column "{column}" of relation "{table}" does not exist')
        if not pa.types.is_integer(col.type.arrow()):
            raise StorageError(f'column "{column}" of relation "{table}" is not an integer column')
        return SequenceRecord(state.oid, column, reserve_to)

    # --- applying records (commit and replay) --------------------------------------------------------

    def apply(self, rec: Record, lsn: int, undo: Undo | None, *, replay: bool = False) -> None:
        """Apply one resolved record. With ``replay`` it is idempotent: rows and deletes already in the
        table's files are skipped, records of tables that no longer exist are ignored."""
        if isinstance(rec, CreateRecord):
            if replay and rec.schema.name in self.tables:
                raise CorruptionError(self.root / "wal", 0, f'replayed CREATE TABLE "{rec.schema.name}" '
                                      "of a table that exists")
            self._add_table(rec.schema)
            if undo is not None:
                undo.append(lambda: self._remove_table(rec.oid))
            self.next_oid = max(self.next_oid, rec.oid + 1, *(i.oid + 1 for i in rec.schema.indexes))
            self._catalog_changed(lsn)
            return
        name = self.names.get(rec.oid)
        if name is None:
            if replay:
                return
            raise NoSuchTableError(f"OID {rec.oid}")
        if isinstance(rec, DropRecord):
            removed = self._remove_table(rec.oid)
            self.dropped.add(rec.oid)
            if undo is not None:
                undo.append(lambda: (self._restore_table(removed), self.dropped.discard(rec.oid)))
            self._catalog_changed(lsn)
        elif isinstance(rec, CreateIndexRecord):
            self._apply_create_index(name, rec, lsn, undo, replay)
        elif isinstance(rec, DropIndexRecord):
            self._apply_drop_index(name, rec, lsn, undo, replay)
        elif isinstance(rec, InsertRecord):
            self._apply_insert(name, rec, lsn, undo, replay)
        elif isinstance(rec, DeleteRecord):
            self._apply_delete(name, rec, lsn, undo, replay)
        elif isinstance(rec, SequenceRecord):
            key = (rec.oid, rec.column)
            old = self.sequences.get(key)
            self.sequences[key] = max(old or 0, rec.reserved)
            if undo is not None:
                undo.append(lambda: self._restore_sequence(key, old))
            self._catalog_changed(lsn)
        else:
            raise StorageError(f"not a WAL record: {rec!r}")

    def _apply_create_index(self, name: str, rec: CreateIndexRecord, lsn: int, undo: Undo | None,
                            replay: bool) -> None:
        if replay and (rec.index.name in self.tables or self.index_owner(rec.index.name) is not None):
            raise CorruptionError(self.root / "wal", 0, f'replayed CREATE INDEX "{rec.index.name}" of a '
                                  "relation that exists")
        state = self.tables[name]
        schema = replace(state.schema, indexes=state.schema.indexes + (rec.index,))
        self._set_table(name, replace(state, schema=schema), undo)
        self.next_oid = max(self.next_oid, rec.index.oid + 1)
        self._catalog_changed(lsn)

    def _apply_drop_index(self, name: str, rec: DropIndexRecord, lsn: int, undo: Undo | None,
                          replay: bool) -> None:
        state = self.tables[name]
        kept = tuple(i for i in state.schema.indexes if i.oid != rec.index_oid)
        if len(kept) == len(state.schema.indexes):
            if replay:
                return
            raise NoSuchIndexError(rec.name)
        self._set_table(name, replace(state, schema=replace(state.schema, indexes=kept)), undo)
        key = (rec.oid, rec.index_oid)
        self.dropped_indexes.add(key)
        if undo is not None:
            undo.append(lambda: self.dropped_indexes.discard(key))
        self._catalog_changed(lsn)

    def _remove_table(self, oid: int) -> tuple:
        name = self.names.pop(oid)
        seqs = {k: v for k, v in self.sequences.items() if k[0] == oid}
        for k in seqs:
            del self.sequences[k]
        return (oid, name, self.tables.pop(name), self.live.pop(oid), self.pk.pop(oid, None), seqs)

    def _restore_table(self, removed: tuple) -> None:
        oid, name, state, live, pk, seqs = removed
        self.names[oid], self.tables[name], self.live[oid] = name, state, live
        if pk is not None:
            self.pk[oid] = pk
        self.sequences.update(seqs)

    def _restore_sequence(self, key: tuple[int, str], value: int | None) -> None:
        if value is None:
            self.sequences.pop(key, None)
        else:
            self.sequences[key] = value

    def _catalog_changed(self, lsn: int) -> None:
        if self.catalog_dirty_lsn is None:
            self.catalog_dirty_lsn = lsn

    def _apply_insert(self, name: str, rec: InsertRecord, lsn: int, undo: Undo | None, replay: bool) -> None:
        state = self.tables[name]
        data = rec.data
        if data.num_rows == 0:
            return
        if replay:
            # Rows below next_rowid are already in sealed segments (or were dead when sealed).
            first = int(data.column(ROWID)[0].as_py())
            if first < state.next_rowid:
                data = data.slice(state.next_rowid - first)
            if data.num_rows == 0:
                return
            first = int(data.column(ROWID)[0].as_py())
            if first != state.next_rowid:
                raise CorruptionError(self.root / "wal", 0, f'table "{name}": replayed rows start at row id '
                                      f"{first}, expected {state.next_rowid}")
        rowids = row_ids_of(data)
        self._set_table(name, state.with_insert(data, lsn), undo)
        live = self.live[state.oid]
        live.set(rowids, True)
        if undo is not None:
            undo.append(lambda: live.set(rowids, False))
        pk = self.pk.get(state.oid)
        if pk is not None:
            keys = rec.keys if rec.keys is not None and data is rec.data else pk.codec.encode(data)
            pk.add_growing(keys, rowids)
            if undo is not None:
                undo.append(lambda: pk.remove_growing(keys))

    def _apply_delete(self, name: str, rec: DeleteRecord, lsn: int, undo: Undo | None, replay: bool) -> None:
        state = self.tables[name]
        live = self.live[state.oid]
        ids = rec.row_ids
        if replay:
            ids = ids[live.contains(ids)]
            if ids.size == 0:
                return
        self._set_table(name, state.with_deletes(ids, lsn), undo)
        live.set(ids, False)
        if undo is not None:
            undo.append(lambda: live.set(ids, True))
