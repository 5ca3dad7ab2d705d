"""Vector index definitions in the catalog: CreateIndex / DropIndex, OIDs, the shared relation namespace,
errors that change nothing, WAL records and catalog.json round trips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from storage_testing import clustered_vectors, table_schema, vector_rows, vector_schema

from storage import (
    CreateIndex,
    CreateTable,
    DropIndex,
    DropTable,
    IndexExistsError,
    IndexSchema,
    Insert,
    NoSuchIndexError,
    NoSuchTableError,
    StorageError,
    TableExistsError,
)
from storage import records as records_codec
from storage.records import CreateIndexRecord, CreateRecord, DropIndexRecord
from storage.types import ColumnSchema, ColumnType, TableSchema


def hnsw(name: str = "docs_embedding_idx", **params) -> IndexSchema:
    return IndexSchema(name, "embedding", "hnsw", "l2", "vector_l2_ops", tuple(params.items()))


def indexes_of(store) -> dict[str, tuple[IndexSchema, ...]]:
    return {name: t.indexes for name, t in store.catalog.items()}


def test_create_index_assigns_oids_and_sorts_params(open_store):
    store = open_store(build_indexes=False)
    store.commit([CreateTable(vector_schema())])
    store.commit([CreateIndex("docs", hnsw(m=8, ef_construction=32))])
    (index,) = store.catalog["docs"].indexes
    assert index.oid == 16401  # the table OID counter: tables and indexes are relations alike
    assert index.params == (("ef_construction", 32), ("m", 8))
    assert index.params_dict == {"ef_construction": 32, "m": 8}
    store.commit([CreateTable(table_schema("other"))])
    assert store.catalog["other"].oid == 16402
    snap = store.snapshot()
    assert snap.catalog["docs"].index("docs_embedding_idx") == index


def test_definitions_survive_reopen_through_catalog_json(open_store, tmp_path):
    store = open_store(build_indexes=False)
    store.commit([CreateTable(vector_schema()), CreateTable(vector_schema("b", dim=8))])
    store.commit([CreateIndex("docs", hnsw(m=8)),
                  CreateIndex("docs", IndexSchema("docs_cos", "embedding", "ivfflat", "cosine", "vector_cosine_ops",
                                                  (("lists", 4),))),
                  CreateIndex("b", IndexSchema("b_ip", "embedding", "flat", "ip", "vector_ip_ops"))])
    store.commit([DropIndex("docs_embedding_idx")])
    before = indexes_of(store)
    store.close()
    saved = json.loads((tmp_path / "data" / "catalog.json").read_text())
    assert {t["name"]: [i["name"] for i in t.get("indexes", [])] for t in saved["tables"]} == \
        {"docs": ["docs_cos"], "b": ["b_ip"]}
    store = open_store(build_indexes=False)
    assert indexes_of(store) == before
    assert [i.name for i in store.catalog["docs"].indexes] == ["docs_cos"]


def test_definitions_replayed_from_the_wal(open_store, tmp_path):
    """A crash after the WAL fsync but before catalog.json was rewritten: replay gives the indexes back."""
    data = tmp_path / "data"
    store = open_store(build_indexes=False, seal_rows=1000)
    store.commit([CreateTable(vector_schema()), CreateTable(vector_schema("gone"))])
    # Rows still in the growing segment keep the WAL from being cut behind the DDL that follows.
    store.commit([Insert("docs", vector_rows(0, clustered_vectors(10, 16)))])
    shutil.copy(data / "catalog.json", tmp_path / "old-catalog.json")
    store.commit([CreateIndex("docs", hnsw("a")), CreateIndex("docs", hnsw("b", m=4))])
    store.commit([DropIndex("a"), CreateIndex("gone", hnsw("c"))])
    store.commit([DropTable("gone"), CreateIndex("docs", hnsw("gone"))])  # a dropped table's name is free again
    expected = indexes_of(store)
    store.close()
    shutil.copy(tmp_path / "old-catalog.json", data / "catalog.json")
    store = open_store(build_indexes=False, seal_rows=1000)
    assert indexes_of(store) == expected
    assert [i.name for i in store.catalog["docs"].indexes] == ["b", "gone"]
    store.commit([CreateIndex("docs", hnsw("d"))])
    assert store.catalog["docs"].index("d").oid == max(i.oid for i in expected["docs"]) + 1
    assert store.snapshot().count("docs") == 10


def test_name_clashes_and_bad_definitions_change_nothing(open_store):
    store = open_store(build_indexes=False)
    schema = TableSchema("t2", (ColumnSchema("id", ColumnType("int8")),
                                ColumnSchema("embedding", ColumnType("vector", dim=16)),
                                ColumnSchema("loose", ColumnType("vector")),
                                ColumnSchema("body", ColumnType("text"))))
    store.commit([CreateTable(vector_schema()), CreateTable(schema)])
    store.commit([CreateIndex("docs", hnsw("idx"))])
    lsn, catalog = store.snapshot().lsn, store.catalog

    def bad(**changes) -> IndexSchema:
        fields = {"name": "new", "column": "embedding", "method": "hnsw", "metric": "l2", "opclass": "x",
                  "params": ()}
        fields.update(changes)
        return IndexSchema(**fields)

    cases = [
        ([CreateIndex("t2", hnsw("idx"))], IndexExistsError, 'relation "idx" already exists'),
        ([CreateIndex("docs", hnsw("idx"))], IndexExistsError, "already exists"),
        ([CreateIndex("docs", hnsw("t2"))], IndexExistsError, 'relation "t2" already exists'),
        ([CreateIndex("docs", hnsw("docs"))], IndexExistsError, "already exists"),
        ([CreateIndex("docs", hnsw("n1")), CreateIndex("t2", hnsw("n1"))], IndexExistsError, "n1"),
        ([CreateTable(table_schema("idx"))], TableExistsError, 'relation "idx" already exists'),
        ([CreateIndex("nope", hnsw("n2"))], NoSuchTableError, 'relation "nope" does not exist'),
        ([DropIndex("nope")], NoSuchIndexError, 'index "nope" does not exist'),
        ([DropIndex("docs")], NoSuchIndexError, "does not exist"),  # a table is not an index
        ([CreateIndex("docs", bad(column="nope"))], StorageError, 'column "nope" does not exist'),
        ([CreateIndex("docs", bad(column="tag"))], StorageError, "vector column"),
        ([CreateIndex("t2", bad(column="body"))], StorageError, "vector column"),
        ([CreateIndex("t2", bad(column="loose"))], StorageError, "dimensions"),
        ([CreateIndex("docs", bad(method="btree"))], StorageError, "unknown index method"),
        ([CreateIndex("docs", bad(metric="hamming"))], StorageError, "unknown distance metric"),
        ([CreateIndex("docs", bad(method="ivfflat", metric="l1"))], StorageError, "does not support"),
        ([CreateIndex("docs", bad(params=(("lists", 4),)))], StorageError, 'unrecognized parameter "lists"'),
        ([CreateIndex("docs", bad(params=(("m", "16"),)))], StorageError, 'parameter "m"'),
        ([CreateIndex("docs", bad(params=(("m", 16.5),)))], StorageError, 'parameter "m"'),
        ([CreateIndex("docs", bad(params=(("m", 1),)))], StorageError, "m >= 2"),
        ([CreateIndex("docs", bad(params=(("m", 4), ("m", 8))))], StorageError, "more than once"),
        ([CreateIndex("docs", bad(method="ivfpq", params=(("m", 5),)))], StorageError, "must divide"),
        ([CreateIndex("docs", bad(name=""))], StorageError, "name"),
        ([CreateIndex("docs", "not an index")], StorageError, "IndexSchema"),
        # atomic with the other ops of the commit
        ([Insert("docs", vector_rows(0, clustered_vectors(3, 16))), CreateIndex("docs", bad(column="nope"))],
         StorageError, "does not exist"),
        ([DropIndex("idx"), CreateIndex("docs", bad(metric="nope"))], StorageError, "metric"),
        ([DropTable("docs"), CreateIndex("t2", bad()), DropIndex("nope")], NoSuchIndexError, "nope"),
    ]
    for ops, err, message in cases:
        with pytest.raises(err, match=message):
            store.commit(ops)
    assert store.catalog == catalog and store.snapshot().lsn == lsn
    assert store.snapshot().count("docs") == 0
    store.commit([CreateIndex("t2", hnsw("fine"))])
    assert store.catalog["t2"].index("fine").oid == 16403  # failed commits consumed no OID


def test_index_exists_error_is_a_table_exists_error():
    # PostgreSQL reports both clashes as 42P07 duplicate_table; CREATE ... IF NOT EXISTS skips either.
    e = IndexExistsError("x")
    assert isinstance(e, TableExistsError) and e.index == e.table == "x"


def test_create_table_and_index_in_one_commit_and_drop_in_one_commit(open_store):
    store = open_store(build_indexes=False)
    store.commit([CreateTable(vector_schema()), CreateIndex("docs", hnsw("i1"))])
    assert store.catalog["docs"].index("i1").oid == 16401
    store.commit([DropIndex("i1"), CreateIndex("docs", hnsw("i1", m=4))])  # same name, new OID
    assert store.catalog["docs"].index("i1").oid == 16402
    store.commit([DropTable("docs")])
    store.commit([CreateTable(vector_schema()), CreateIndex("docs", hnsw("i1"))])  # names freed by the drop
    assert store.catalog["docs"].index("i1").oid == 16404


def test_create_table_with_indexes_gets_their_oids(open_store):
    store = open_store(build_indexes=False)
    schema = TableSchema("docs", vector_schema().columns, ("id",),
                         indexes=(hnsw("a"), IndexSchema("b", "embedding", "flat", "l1", "vector_l1_ops")))
    store.commit([CreateTable(schema)])
    assert [(i.name, i.oid) for i in store.catalog["docs"].indexes] == [("a", 16401), ("b", 16402)]
    store.commit([CreateTable(table_schema("next"))])
    assert store.catalog["next"].oid == 16403
    with pytest.raises(IndexExistsError):
        store.commit([CreateTable(TableSchema("x", schema.columns, indexes=(hnsw("c"), hnsw("c"))))])
    with pytest.raises(StorageError, match="vector column"):
        store.commit([CreateTable(TableSchema("y", schema.columns,
                                              indexes=(IndexSchema("d", "tag", "hnsw", "l2", "vector_l2_ops"),)))])


def test_records_and_json_round_trip():
    index = IndexSchema("i", "embedding", "ivfpq", "cosine", "vector_cosine_ops",
                        (("lists", 8), ("m", 4), ("nbits", 8)), 16405)
    recs = [CreateIndexRecord(16400, index), DropIndexRecord(16400, 16405, "i"),
            CreateRecord(TableSchema("t", vector_schema().columns, ("id",), 16400, (index,)))]
    payload = b"".join(bytes(c) for c in records_codec.encode(recs))
    assert records_codec.decode(memoryview(payload)) == recs
    assert IndexSchema.from_json(json.loads(json.dumps(index.to_json()))) == index
    with_float = IndexSchema("f", "e", "scann", "l2", "x", (("ratio", 0.5),))
    assert IndexSchema.from_json(json.loads(json.dumps(with_float.to_json()))) == with_float


def test_schemas_and_records_written_before_indexes_still_load():
    old_table = {"name": "t", "columns": [{"name": "v", "type": {"name": "vector", "dim": 3},
                                          "not_null": False}], "primary_key": [], "oid": 16400}
    schema = TableSchema.from_json(old_table)
    assert schema.indexes == ()
    assert schema.to_json() == old_table  # a table without indexes is stored exactly as before
    payload = b"".join(bytes(c) for c in records_codec.encode([CreateRecord(schema)]))
    assert records_codec.decode(memoryview(payload)) == [CreateRecord(schema)]
    assert np.frombuffer(payload[8:9], np.uint8)[0] == records_codec.KIND_CREATE
