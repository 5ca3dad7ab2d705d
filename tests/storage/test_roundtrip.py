"""Every column type survives insert -> snapshot -> reopen (WAL replay) -> seal -> reopen (mmap)."""

from __future__ import annotations

import datetime
import decimal
import math

import numpy as np
import pyarrow as pa

from storage import CreateTable, Delete, Insert, Store
from storage.types import PG_TYPES, ColumnSchema, ColumnType, TableSchema

UTC = datetime.UTC

# (column type, values incl. NULL and boundary values)
CASES: list[tuple[ColumnType, list]] = [
    (ColumnType("bool"), [True, False, None, True]),
    (ColumnType("bytea"), [b"", b"\x00\xff", None, b"x" * 1000]),
    (ColumnType("int2"), [-32768, 32767, None, 0]),
    (ColumnType("int4"), [-2**31, 2**31 - 1, None, 7]),
    (ColumnType("int8"), [-2**63, 2**63 - 1, None, 42]),
    (ColumnType("text"), ["", "héllo wörld", None, "a" * 5000]),
    (ColumnType("json"), ['{"a": 1}', "[]", None, "null"]),
    (ColumnType("jsonb"), ['{"a": [1, 2]}', "{}", None, '"x"']),
    (ColumnType("float4"), [1.5, -0.0, None, float("inf")]),
    (ColumnType("float8"), [math.pi, float("nan"), None, -1e308]),
    (ColumnType("varchar", length=10), ["abc", "", None, "0123456789"]),
    (ColumnType("date"), [datetime.date(1970, 1, 1), datetime.date(9999, 12, 31), None,
                          datetime.date(1, 1, 1)]),
    (ColumnType("timestamp"), [datetime.datetime(2024, 2, 29, 12, 30, 1, 123456), None,
                               datetime.datetime(1900, 1, 1), datetime.datetime(2038, 1, 19, 3, 14, 8)]),
    (ColumnType("timestamptz"), [datetime.datetime(2024, 1, 1, tzinfo=UTC), None,
                                 datetime.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                 datetime.datetime(2000, 6, 1, 1, 2, 3, tzinfo=UTC)]),
    (ColumnType("numeric", precision=10, scale=2), [decimal.Decimal("12345678.90"), decimal.Decimal("-0.01"),
                                                    None, decimal.Decimal("0.00")]),
    (ColumnType("numeric"), ["3.14159265358979323846264338327950288", "-1", None, "NaN"]),
    (ColumnType("uuid"), ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None,
                          "00000000-0000-0000-0000-000000000000",
                          "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
    (ColumnType("vector", dim=3), [[1.0, -0.0, 3.5], None, [float("nan"), 0.0, 1e-45], [0.0, 0.0, 0.0]]),
    (ColumnType("vector", dim=1), [[1.0], [2.0], None, [-1.0]]),
    (ColumnType("vector"), [[1.0, 2.0], [], None, [3.0]]),
    (ColumnType("_bool"), [[True, None, False], [], None, [True]]),
    (ColumnType("_int2"), [[-32768, 32767], [None], None, []]),
    (ColumnType("_int4"), [[1, 2, 3], [], None, [None, 2**31 - 1]]),
    (ColumnType("_int8"), [[-2**63], [0, None], None, []]),
    (ColumnType("_float4"), [[1.5, float("inf")], [], None, [None]]),
    (ColumnType("_float8"), [[math.pi, float("nan")], [None, -0.0], None, []]),
    (ColumnType("_text"), [["", "a b", None, "{x}"], [], None, ["é" * 100]]),
    (ColumnType("_varchar", length=3), [["abc", None], [], None, ["x"]]),
]


def test_every_type_is_covered():
    assert {t.name for t, _ in CASES} == set(PG_TYPES)


def _schema() -> TableSchema:
    cols = [ColumnSchema("id", ColumnType("int4"))]
    cols += [ColumnSchema(f"c{i}", t) for i, (t, _) in enumerate(CASES)]
    return TableSchema("all_types", tuple(cols), ("id",))


def _data(schema: TableSchema, ids: list[int]) -> pa.Table:
    arrow = schema.arrow_schema()
    arrays = [pa.array(ids, pa.int32())]
    for i, (_, values) in enumerate(CASES):
        arrays.append(pa.array([values[j % len(values)] for j in ids], arrow.field(f"c{i}").type))
    return pa.Table.from_arrays(arrays, schema=arrow)


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.equals(b.schema), (a.schema, b.schema)
    # NaN != NaN in equals(); compare through Python values, treating NaN as equal.
    left, right = a.to_pylist(), b.to_pylist()
    assert len(left) == len(right)
    for ra, rb in zip(left, right):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb)
            elif isinstance(va, list):
                assert len(va) == len(vb)
                for x, y in zip(va, vb):
                    assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
            else:
                assert va == vb, (k, va, vb)


def test_round_trip_all_types(tmp_path):
    path = tmp_path / "data"
    schema = _schema()
    store = Store.open(path, seal_rows=1000, fsync=True)
    store.commit([CreateTable(schema)])
    first, second = _data(schema, list(range(6))), _data(schema, list(range(6, 10)))
    store.commit([Insert("all_types", first)])
    store.commit([Insert("all_types", second.to_batches()[0])])
    store.commit([Delete("all_types", np.array([2]))])
    expected = pa.concat_tables([first, second])
    expected = expected.filter(pa.array([i != 2 for i in range(10)]))
    expected = expected.cast(store.catalog["all_types"].arrow_schema())  # the key column became NOT NULL

    snap = store.snapshot()
    _same(snap.scan("all_types"), expected)
    assert snap.count("all_types") == 9
    assert snap.catalog["all_types"].oid >= 16400
    store.close()

    # Reopen: everything comes back from the WAL into the growing segment.
    store = Store.open(path, seal_rows=1000, fsync=True)
    snap = store.snapshot()
    assert all(not s.sealed for s in snap.segments("all_types"))
    _same(snap.scan("all_types"), expected)
    assert store.catalog["all_types"] == snap.catalog["all_types"]
    assert store.catalog["all_types"].column("c0").type == CASES[0][0]
    store.checkpoint()  # seals the growing segment however small
    snap = store.snapshot()
    assert [s.sealed for s in snap.segments("all_types")] == [True]
    _same(snap.scan("all_types"), expected)
    store.close()

    # Reopen: served memory-mapped from the sealed segment file.
    store = Store.open(path, seal_rows=1000, fsync=True)
    snap = store.snapshot()
    (seg,) = snap.segments("all_types")
    assert seg.sealed and seg.live is None and seg.num_live == 9  # dead row dropped when sealing
    _same(snap.scan("all_types"), expected)
    vec = seg.data.column("c17").chunk(0)
    assert pa.types.is_fixed_size_list(vec.type) and vec.type.list_size == 3
    store.close()


def test_sealed_segment_is_memory_mapped(tmp_path):
    from storage_testing import rows, table_schema
    schema = table_schema(dim=128)
    store = Store.open(tmp_path, seal_rows=2000, fsync=False)
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(2000)))])
    oid = store.catalog["t"].oid
    store.close()
    files = sorted(p.name for p in (tmp_path / "tables" / str(oid)).iterdir())
    assert files == ["manifest.json", "seg-000001.arrow"]

    before = pa.total_allocated_bytes()
    store = Store.open(tmp_path, seal_rows=2000, fsync=False)
    (seg,) = store.snapshot().segments("t")
    emb = seg.data.column("embedding")
    assert seg.sealed and emb.num_chunks == 1
    # 2000 x 128 float32 = 1 MB, read without Arrow allocating it: the buffers are the mapped file.
    assert pa.total_allocated_bytes() - before < 100_000
    assert emb.chunk(0).values.to_numpy()[:128].tolist() == [0.0] * 128
    store.close()
