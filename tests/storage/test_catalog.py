"""CREATE/DROP TABLE, OIDs, misuse errors, sequences."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from storage_testing import rows, table_schema

from storage import (
    CreateTable,
    Delete,
    DropTable,
    DuplicateKeyError,
    Insert,
    NoSuchTableError,
    StorageError,
    Store,
    TableExistsError,
)
from storage.types import ColumnSchema, ColumnType, TableSchema


def test_oids_increase_and_are_never_reused(open_store):
    store = open_store()
    store.commit([CreateTable(table_schema("a")), CreateTable(table_schema("B"))])
    assert store.catalog["a"].oid == 16400 and store.catalog["B"].oid == 16401
    store.commit([DropTable("B")])
    store.close()
    store = open_store()
    store.commit([CreateTable(table_schema("B"))])
    assert store.catalog["B"].oid == 16402
    store.commit([CreateTable(table_schema("b"))])  # names are case-sensitive
    assert set(store.catalog) == {"a", "B", "b"}
    assert store.catalog["a"].column("id").not_null  # primary key implies NOT NULL


def test_ddl_errors_change_nothing(open_store):
    store = open_store()
    store.commit([CreateTable(table_schema("a"))])
    lsn = store.snapshot().lsn
    with pytest.raises(TableExistsError, match='relation "a" already exists'):
        store.commit([CreateTable(table_schema("x")), CreateTable(table_schema("a"))])
    with pytest.raises(NoSuchTableError, match='relation "nope" does not exist'):
        store.commit([DropTable("nope")])
    bad = [
        TableSchema("c", (ColumnSchema("x", ColumnType("int4")), ColumnSchema("x", ColumnType("int4")))),
        TableSchema("c", (ColumnSchema("_rowid", ColumnType("int8")),)),
        TableSchema("c", (ColumnSchema("x", ColumnType("int4")),), ("y",)),
        TableSchema("c", (ColumnSchema("v", ColumnType("vector", dim=2)),), ("v",)),
        TableSchema("c", (ColumnSchema("x", ColumnType("nosuchtype")),)),
        TableSchema("", (ColumnSchema("x", ColumnType("int4")),)),
    ]
    for schema in bad:
        with pytest.raises(StorageError):
            store.commit([CreateTable(schema)])
    assert set(store.catalog) == {"a"} and store.snapshot().lsn == lsn
    store.commit([CreateTable(table_schema("x"))])
    assert store.catalog["x"].oid == 16401  # failed commits consumed no OID


def test_misuse_errors(open_store):
    store = open_store()
    schema = table_schema()
    store.commit([CreateTable(schema)])
    data = rows(schema, [1])
    cases = [
        (Insert("nope", data), NoSuchTableError),
        (Delete("nope", np.array([0])), NoSuchTableError),
        (Insert("t", data.select(["body", "id", "embedding"])), StorageError),
        (Insert("t", data.drop_columns(["body"])), StorageError),
        (Insert("t", data.set_column(0, "id", pa.array([1], pa.int32()))), StorageError),
        (Insert("t", {"id": [1]}), StorageError),
        (Delete("t", np.array([0.5])), StorageError),
        ("not an op", StorageError),
    ]
    for op, err in cases:
        with pytest.raises(err):
            store.commit([op])
    for call in (lambda: store.snapshot().scan("nope"), lambda: store.snapshot().segments("nope"),
                 lambda: store.lookup_row_ids("nope", data), lambda: store.next_values("nope", "id", 1)):
        with pytest.raises(NoSuchTableError):
            call()
    with pytest.raises(StorageError, match="integer"):
        store.next_values("t", "body", 1)
    # a list<float32> batch for a vector(n) column is accepted when every vector has n values
    as_list = data.set_column(1, "embedding", pa.array([[1.0] * 4], pa.list_(pa.float32())))
    store.commit([Insert("t", as_list)])
    with pytest.raises(StorageError, match="embedding"):
        short = pa.array([[1.0]], pa.list_(pa.float32()))
        store.commit([Insert("t", rows(schema, [2]).set_column(1, "embedding", short))])
    assert store.snapshot().count("t") == 1


def test_drop_table_removes_files(open_store):
    store = open_store(seal_rows=2)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(5)))])
    oid = store.catalog["t"].oid
    folder = store.root / "tables" / str(oid)
    assert (folder / "manifest.json").exists()
    snap = store.snapshot()
    store.commit([DropTable("t")])
    assert not folder.exists()
    assert snap.scan("t").num_rows == 5  # mapped segments stay readable for old snapshots
    store.commit([CreateTable(schema)])
    assert store.snapshot().count("t") == 0
    store.close()
    store = open_store(seal_rows=2)
    assert store.snapshot().count("t") == 0 and store.catalog["t"].oid == oid + 1


def test_sequences(open_store):
    store = open_store()
    schema = TableSchema("s", (ColumnSchema("id", ColumnType("int8"), identity="by default"),
                               ColumnSchema("n", ColumnType("int4"))), ("id",))
    store.commit([CreateTable(schema)])
    assert store.next_values("s", "id", 3).tolist() == [1, 2, 3]
    assert store.next_values("s", "id", 0).tolist() == []
    assert store.next_values("s", "n", 2).tolist() == [1, 2]  # one sequence per column
    store.set_sequence("s", "id", 10)
    assert store.next_values("s", "id", 1).tolist() == [11]
    store.set_sequence("s", "id", 5)  # never goes back
    assert store.next_values("s", "id", 1).tolist() == [12]
    store.close()
    store = open_store()
    got = store.next_values("s", "id", 2)
    assert got[0] > 12 and got.dtype == np.int64
    store.set_sequence("s", "id", 1000)
    store.close()
    store = open_store()
    assert store.next_values("s", "id", 1)[0] > 1000


def test_store_lock_and_close(tmp_path):
    store = Store.open(tmp_path / "d", fsync=False)
    with pytest.raises(StorageError, match="in use"):
        Store.open(tmp_path / "d", fsync=False)
    store.close()
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.commit([CreateTable(table_schema())])
    with Store.open(tmp_path / "d", fsync=False) as again:
        again.commit([CreateTable(table_schema())])
    with pytest.raises(TypeError):
        Store(tmp_path)


def test_ddl_and_rows_in_one_commit(open_store):
    store = open_store(seal_rows=3)
    schema = table_schema()
    store.commit([CreateTable(schema), Insert("t", rows(schema, range(5)))])
    store.commit([DropTable("t"), CreateTable(schema), Insert("t", rows(schema, [1]))])
    assert store.snapshot().count("t") == 1 and store.catalog["t"].oid == 16401
    store.close()
    store = open_store(seal_rows=3)
    assert store.snapshot().scan("t", ["id"]).column("id").to_pylist() == [1]
    assert sorted(p.name for p in (store.root / "tables").iterdir()) == []


def test_failed_commit_undoes_ddl(open_store):
    store = open_store(seal_rows=2)
    schema = table_schema("a")
    store.commit([CreateTable(schema), Insert("a", rows(schema, range(3)))])
    before = store.snapshot()
    with pytest.raises(NoSuchTableError):
        store.commit([DropTable("a"), CreateTable(table_schema("b")), Insert("b", rows(schema, [1])),
                      Insert("a", rows(schema, [9]))])
    assert set(store.catalog) == {"a"} and store.snapshot().lsn == before.lsn
    store.commit([Insert("a", rows(schema, [3]))])  # the table, its index and its files are intact
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("a", rows(schema, [1]))])
    store.commit([CreateTable(table_schema("b"))])
    assert store.catalog["b"].oid == 16401
    store.close()
    store = open_store(seal_rows=2)
    assert store.snapshot().count("a") == 4 and store.snapshot().count("b") == 0
