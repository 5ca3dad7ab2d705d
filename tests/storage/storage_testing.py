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


def vector_schema(name: str = "docs", *, dim: int = 16) -> TableSchema:
    """id (primary key), embedding vector(dim) (nullable), tag int4: a table for vector index tests."""
    return TableSchema(name, (
        ColumnSchema("id", ColumnType("int8")),
        ColumnSchema("embedding", ColumnType("vector", dim=dim)),
        ColumnSchema("tag", ColumnType("int4")),
    ), ("id",))


def clustered_vectors(n: int, dim: int, *, seed: int = 0, clusters: int = 20):
    """``n`` float32 vectors around ``clusters`` random centres (realistic for ANN recall checks)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32))


def vector_rows(first_id: int, vectors, *, null_every: int = 0) -> pa.Table:
    """Rows with ids from ``first_id`` holding ``vectors``; every ``null_every``-th embedding is NULL."""
    import numpy as np

    n, dim = vectors.shape
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    mask = None
    if null_every:
        mask = pa.array(ids % null_every == 0)
    emb = pa.FixedSizeListArray.from_arrays(values, dim, mask=mask)
    return pa.table({"id": pa.array(ids), "embedding": emb, "tag": pa.array((ids % 7).astype(np.int32))})


def crash(store) -> None:
    """Abandon a Store as a killed process would: OS buffers stay, the lock goes."""
    store._wal._file.flush()
    store._unlock_dir()
