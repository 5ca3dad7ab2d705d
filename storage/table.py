"""A table's state at one commit: its schema, sealed segments and growing segment. An immutable value:
every change returns a new TableState, so snapshots keep whatever version they were given."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from .errors import NullValueError, StorageError
from .segment import ROWID, ROWID_FIELD, GrowingSegment, SealedSegment, SegmentView
from .types import TableSchema


def row_schema(schema: TableSchema) -> pa.Schema:
    """The Arrow schema of stored rows: user columns, then ``_rowid``."""
    return schema.arrow_schema().append(ROWID_FIELD)


def _min_lsn(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


@dataclass(frozen=True, eq=False)
class TableState:
    schema: TableSchema
    sealed: tuple[SealedSegment, ...]
    sealed_firsts: np.ndarray  # first row id of each sealed segment, ascending
    growing: GrowingSegment
    num_live: int
    next_segno: int
    growing_lsn: int | None  # LSN of the first insert still only in the growing segment (and the WAL)
    deletes_lsn: int | None  # LSN of the first delete of a sealed row not yet in a delete file
    arrow_schema: pa.Schema  # schema.arrow_schema(), built once

    @classmethod
    def create(cls, schema: TableSchema, sealed: tuple[SealedSegment, ...] = (), next_rowid: int = 0,
               next_segno: int = 1) -> TableState:
        growing = GrowingSegment.empty(next_segno, row_schema(schema), next_rowid)
        return cls(schema, sealed, _firsts(sealed), growing, sum(s.num_live for s in sealed), next_segno,
                   None, None, schema.arrow_schema())

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def oid(self) -> int:
        return self.schema.oid

    @property
    def next_rowid(self) -> int:
        return self.growing.next_rowid

    @property
    def dirty_lsn(self) -> int | None:
        """Oldest LSN whose change to this table is only in the WAL (None: the files hold everything)."""
        lsns = [x for x in (self.growing_lsn, self.deletes_lsn) if x is not None]
        return min(lsns) if lsns else None

    def with_insert(self, data: pa.Table, lsn: int) -> TableState:
        """Append rows (user columns + ``_rowid`` continuing ``next_rowid``)."""
        return replace(self, growing=self.growing.append(data), num_live=self.num_live + data.num_rows,
                       growing_lsn=_min_lsn(self.growing_lsn, lsn))

    def with_deletes(self, row_ids: np.ndarray, lsn: int) -> TableState:
        """Mark rows dead; ``row_ids`` sorted, unique. Ids of rows not held are ignored."""
        in_growing = row_ids >= self.growing.first_rowid
        growing, died = self.growing, 0
        if in_growing.any():
            growing, died = self.growing.with_deletes(row_ids[in_growing])
        sealed = self.sealed
        deletes_lsn = self.deletes_lsn
        old = row_ids[~in_growing]
        if len(old) and sealed:
            which = np.searchsorted(self.sealed_firsts, old, side="right") - 1
            keep = which >= 0
            old, which = old[keep], which[keep]
            segs, starts = np.unique(which, return_index=True)
            ends = np.append(starts[1:], len(old))
            changed = list(sealed)
            sealed_died = 0
            for seg, start, end in zip(segs.tolist(), starts.tolist(), ends.tolist()):
                changed[seg], d = changed[seg].with_deletes(old[start:end])
                sealed_died += d
            if sealed_died:
                sealed = tuple(changed)
                deletes_lsn = _min_lsn(deletes_lsn, lsn)
                died += sealed_died
        return replace(self, growing=growing, sealed=sealed, num_live=self.num_live - died,
                       deletes_lsn=deletes_lsn)

    def segment_views(self) -> list[SegmentView]:
        views = [s.view(self.oid) for s in self.sealed]
        if self.growing.num_rows:
            views.append(self.growing.view(self.oid))
        return views


def _firsts(sealed: tuple[SealedSegment, ...]) -> np.ndarray:
    return np.array([s.first_rowid for s in sealed], dtype=np.int64)


def with_sealed(state: TableState, sealed: tuple[SealedSegment, ...], growing: GrowingSegment,
                next_segno: int) -> TableState:
    """The state after a checkpoint of the table moved rows and deletes into files."""
    growing_lsn = None if growing.num_rows == 0 else state.growing_lsn
    return replace(state, sealed=sealed, sealed_firsts=_firsts(sealed), growing=growing,
                   next_segno=next_segno, growing_lsn=growing_lsn, deletes_lsn=None)


def _conform_type(name: str, col: pa.ChunkedArray, want: pa.DataType, table: str) -> pa.ChunkedArray:
    if col.type.equals(want):
        return col
    listish = (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
               or pa.types.is_large_list(col.type))
    if listish and (pa.types.is_list(want) or pa.types.is_fixed_size_list(want)):
        try:
            return col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise StorageError(f'column "{name}" of "{table}": cannot store {col.type} as {want}: {e}') from e
    raise StorageError(f'column "{name}" of "{table}" is stored as {want}, the batch has {col.type}')


def conform_rows(schema: TableSchema, data: pa.Table | pa.RecordBatch,
                 want: pa.Schema | None = None) -> pa.Table:
    """Check a batch against the table (names, order, types, NOT NULL) and give it the exact schema
    (``want``: ``schema.arrow_schema()`` if the caller has it)."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        raise StorageError(f"insert into \"{schema.name}\" needs a pyarrow Table or RecordBatch, "
                           f"not {type(data).__name__}")
    want = schema.arrow_schema() if want is None else want
    if data.schema.equals(want):
        if any(c.not_null and data.column(i).null_count for i, c in enumerate(schema.columns)):
            _check_not_null(schema, data)
        return data
    if data.column_names != want.names:
        raise StorageError(f'insert into "{schema.name}": batch columns {data.column_names} do not match '
                           f"the table's {want.names}")
    cols = []
    for f, col, c in zip(want, data.columns, schema.columns):
        col = _conform_type(f.name, col, f.type, schema.name)
        if c.not_null and col.null_count:
            raise NullValueError(schema.name, f.name)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=want)


def _check_not_null(schema: TableSchema, data: pa.Table) -> None:
    for c in schema.columns:
        if c.not_null and data.column(c.name).null_count:
            raise NullValueError(schema.name, c.name)


def add_row_ids(data: pa.Table, first_rowid: int) -> pa.Table:
    rowids = pa.array(np.arange(first_rowid, first_rowid + data.num_rows, dtype=np.int64))
    return data.append_column(ROWID_FIELD, rowids)


def row_ids_of(data: pa.Table) -> np.ndarray:
    return np.asarray(data.column(ROWID).to_numpy(), dtype=np.int64)
