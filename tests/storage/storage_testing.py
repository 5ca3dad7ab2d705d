"""Helpers shared by the storage tests (and crash_writer.py): a small table schema and its rows.

Named uniquely (not ``helpers``) because test folders are not packages and share one module namespace.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storage.types import ColumnSchema, ColumnType, TableSchema


def table_schema(name: str = "t", *, pk: tuple[str, ...] = ("id",), dim: int = 4) -> TableSchema:
    return TableSchema(name, (
        ColumnSchema("id", ColumnType("int8")),
        ColumnSchema("embedding", ColumnType("vector", dim=dim)),
        ColumnSchema("body", ColumnType("text")),
    ), pk)


def rows(schema: TableSchema, ids, *, body: str = "row") -> pa.Table:
    ids = list(ids)
    dim = schema.column("embedding").type.dim
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "embedding": pa.array([[float(i)] * dim for i in ids], pa.list_(pa.float32(), dim)),
        "body": pa.array([f"{body}-{i}" for i in ids], pa.string()),
    })
