"""The operations a commit is made of, as the engine hands them to ``Store.commit``.

Ops in one commit apply in order, all or nothing. They name tables by name; storage resolves them to
table OIDs and assigns row ids before anything is written (see ``records.py`` for the logged form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .staging import StagedRows
from .types import IndexSchema, TableSchema


@dataclass(frozen=True)
class CreateTable:
    """Create a table; storage assigns ``schema.oid`` (>= 16400, increasing, never reused)."""

    schema: TableSchema


@dataclass(frozen=True)
class DropTable:
    """Drop a table and, once the commit is durable, its files (its indexes' files included)."""

    name: str


@dataclass(frozen=True)
class CreateIndex:
    """Create a vector index on ``table``; storage assigns ``index.oid`` (from the table OID counter).

    Only the definition is committed: each sealed segment's index is built afterwards in the background
    (``Store.wait_for_indexes`` waits for them). Index names share one namespace with table names.
    """

    table: str
    index: IndexSchema


@dataclass(frozen=True)
class DropIndex:
    """Drop the index named ``name`` (whatever its table) and, once the commit is durable, its files."""

    name: str


@dataclass(frozen=True, eq=False)
class Insert:
    """Append rows. ``data`` has exactly the table's ``arrow_schema()`` column names, order and types.

    ``staged``: the same rows already written to a file by ``Store.stage`` (a large COPY, as it
    arrived); the commit record then names that file instead of holding the rows. The caller
    ``discard()``s it afterwards, which leaves it alone when the commit took it."""

    table: str
    data: pa.Table | pa.RecordBatch
    staged: StagedRows | None = None


@dataclass(frozen=True, eq=False)
class Delete:
    """Delete live rows by row id (int64)."""

    table: str
    row_ids: np.ndarray


Op = CreateTable | DropTable | CreateIndex | DropIndex | Insert | Delete
