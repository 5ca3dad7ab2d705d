"""Snapshots: an immutable, consistent view of every table at one commit boundary.

Taking one copies a reference; it holds immutable table states (Arrow data, copy-on-write masks), so later
commits, seals and drops never change what it shows. Vector indexes are the exception: they are built after
the fact, so ``segment_index`` answers with whatever is ready when it is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from .errors import NoSuchTableError, StorageError
from .segment import ROWID, ROWID_FIELD, SegmentView
from .segment_index import SegmentIndex
from .table import TableState
from .types import TableSchema

if TYPE_CHECKING:
    from .index_builds import IndexService


@dataclass(frozen=True, eq=False)
class Version:
    """The durable state after the commit with LSN ``lsn``. ``tables`` is never mutated."""

    lsn: int
    tables: Mapping[str, TableState]


class Snapshot:
    __slots__ = ("_version", "_indexes")

    def __init__(self, version: Version, indexes: IndexService | None = None):
        self._version = version
        self._indexes = indexes

    @property
    def lsn(self) -> int:
        return self._version.lsn

    @property
    def catalog(self) -> dict[str, TableSchema]:
        return {name: t.schema for name, t in self._version.tables.items()}

    def _table(self, name: str) -> TableState:
        try:
            return self._version.tables[name]
        except (KeyError, TypeError):
            raise NoSuchTableError(str(name)) from None

    def count(self, table: str) -> int:
        """Exact number of live rows, from segment metadata."""
        return self._table(table).num_live

    def segments(self, table: str) -> list[SegmentView]:
        """Sealed segments in row-id order, then the growing segment if it has rows."""
        return self._table(table).segment_views()

    def segment_index(self, table: str, index_name: str, segment: SegmentView) -> SegmentIndex | None:
        """The ready vector index ``index_name`` of ``table`` over ``segment`` (one of ``segments(table)``),
        or None: not built yet, the build failed, no such index (in this snapshot), or a growing segment
        without a growing index (too small). A sealed segment's covers every row (``covered ==
        segment.num_rows``), a growing segment's a prefix ``[0, covered)``: search the rest exactly."""
        state = self._table(table)
        index = state.schema.index(index_name)
        if index is None or self._indexes is None:
            return None
        return self._indexes.segment_index(state, index, segment)

    def scan(self, table: str, columns: list[str] | None = None, *, with_row_ids: bool = False) -> pa.Table:
        """Live rows of ``table``: the given columns in that order, ``_rowid`` first with ``with_row_ids``."""
        state = self._table(table)
        schema = state.arrow_schema
        names = list(schema.names if columns is None else columns)
        for n in names:
            if n not in schema.names:
                raise StorageError(f'column "{n}" of relation "{table}" does not exist')
        fields = [schema.field(n) for n in names]
        if with_row_ids:
            names.insert(0, ROWID)
            fields.insert(0, ROWID_FIELD)
        if not names:  # no columns, just the row count (concat_tables would lose it)
            return pa.table([pa.nulls(state.num_live)], names=["_"]).select([])
        parts = []
        for seg in state.segment_views():
            part = seg.data.select(names)
            if seg.live is not None:
                part = part.filter(pa.array(seg.live, pa.bool_()))
            parts.append(part)
        if not parts:
            return pa.schema(fields).empty_table()
        return pa.concat_tables(parts)
