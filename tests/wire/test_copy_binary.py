"""wire/copy_binary.py: COPY binary format -> Arrow, vectorised, with PostgreSQL's errors.

Streams are built here tuple by tuple (struct, a Python loop) from the project's binary encoders
(``encode_column(values, oid, 1)``), so the decoder is checked against an independent writer, and
against a plain sequential reader for the variable-length cases.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import time
import uuid
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from wire import copy_binary
from wire import pgtypes as T
from wire.column_encoding import encode_column, encode_data_rows
from wire.copy_binary import SIGNATURE, decode_copy_binary
from wire.session import ColumnDesc, PgError

UTC = dt.UTC
HEADER = SIGNATURE + struct.pack("!ii", 0, 0)
TRAILER = b"\xff\xff"
NULL = struct.pack("!i", -1)


# --------------------------------------------------------------------------- helpers


def field(value: bytes | None) -> bytes:
    return NULL if value is None else struct.pack("!i", len(value)) + value


def tuple_bytes(*values: bytes | None) -> bytes:
    return struct.pack("!h", len(values)) + b"".join(field(v) for v in values)


def encoded(columns: list[pa.Array], oids: list[int]) -> list[list[bytes | None]]:
    """Rows of field bytes (None for NULL) from the project's binary encoders."""
    per_column = [encode_column(c, o, 1).to_pylist() for c, o in zip(columns, oids)]
    return [list(row) for row in zip(*per_column)]


def stream(rows: list[list[bytes | None]], *, trailer: bool = True, header: bytes = HEADER) -> bytes:
    return header + b"".join(tuple_bytes(*row) for row in rows) + (TRAILER if trailer else b"")


def reference_parse(data: bytes, k: int) -> list[list[bytes | None]]:
    """A plain sequential reader of COPY binary (well-formed input only)."""
    assert data.startswith(SIGNATURE)
    (ext,) = struct.unpack_from("!i", data, 15)
    pos = 19 + ext
    rows = []
    while len(data) - pos >= 2:
        (count,) = struct.unpack_from("!h", data, pos)
        pos += 2
        if count == -1:
            break
        assert count == k
        row: list[bytes | None] = []
        for _ in range(k):
            (length,) = struct.unpack_from("!i", data, pos)
            pos += 4
            if length == -1:
                row.append(None)
            else:
                row.append(data[pos : pos + length])
                pos += length
        rows.append(row)
    return rows


def decode(data: bytes, specs: list[tuple[int, pa.DataType]]) -> pa.Table:
    names = [f"c{i}" for i in range(len(specs))]
    return decode_copy_binary(data, names, [o for o, _ in specs], [t for _, t in specs])


def error_of(data: bytes, specs: list[tuple[int, pa.DataType]], names: list[str] | None = None) -> PgError:
    names = names or [f"c{i}" for i in range(len(specs))]
    with pytest.raises(PgError) as info:
        decode_copy_binary(data, names, [o for o, _ in specs], [t for _, t in specs])
    return info.value


def same_values(got: list[object], want: list[object]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if isinstance(w, float) and isinstance(g, float) and math.isnan(w):
            if not math.isnan(g):
                return False
        elif g != w:
            return False
    return True


# --------------------------------------------------------------------------- round trips


def _uuids() -> list[str | None]:
    return [str(uuid.UUID(int=0)), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None, str(uuid.UUID(int=2**128 - 1)),
            "00030003-0003-0003-0003-000300030003"]


# (oid, stored Arrow type, values to encode, the values expected back; None: the same)
ROUND_TRIPS: list[tuple[str, int, pa.DataType, pa.Array, list[object] | None]] = [
    ("int2", T.INT2, pa.int16(), pa.array([-32768, None, 32767, 0, 3], pa.int16()), None),
    ("int4", T.INT4, pa.int32(), pa.array([-(2**31), 2**31 - 1, None, 0, 3], pa.int32()), None),
    ("int8", T.INT8, pa.int64(), pa.array([-(2**63), 2**63 - 1, 0, None, 3], pa.int64()), None),
    ("float4", T.FLOAT4, pa.float32(), pa.array([1.5, float("nan"), float("inf"), None, -0.0], pa.float32()), None),
    ("float8", T.FLOAT8, pa.float64(), pa.array([1e308, float("-inf"), None, float("nan"), 5e-324]), None),
    ("bool", T.BOOL, pa.bool_(), pa.array([True, False, None, True, False]), None),
    ("text", T.TEXT, pa.string(), pa.array(["", "héllo wörld ✓", None, "tab\tnl\n\\", "x" * 1000]), None),
    ("large_text", T.TEXT, pa.large_string(), pa.array(["a", None, "", "b", "c"], pa.large_string()), None),
    ("varchar", T.VARCHAR, pa.string(), pa.array([None, "v", "", "日本語", "\x01"]), None),
    ("json", T.JSON, pa.string(), pa.array(['{"a": 1}', None, "[]", '""', "null"]), None),
    ("jsonb", T.JSONB, pa.string(), pa.array(['{"a": [1, 2]}', "{}", None, "3", '"é"']), None),
    ("uuid_text", T.UUID, pa.string(), pa.array(_uuids()), None),
    ("uuid_bytes", T.UUID, pa.binary(16), pa.array(_uuids()),
     [None if u is None else uuid.UUID(u).bytes for u in _uuids()]),
    ("numeric_text", T.NUMERIC, pa.string(),
     pa.array(["1.50", "-0.001", None, "NaN", "123456789012345678901234567890.5"]), None),
    ("numeric_special", T.NUMERIC, pa.string(), pa.array(["0", "Infinity", "-Infinity", None, "10000"]), None),
    ("numeric_decimal", T.NUMERIC, pa.decimal128(10, 2),
     pa.array([Decimal("1.555"), None, Decimal("-99999999.99"), Decimal("0"), Decimal("2.5")]),
     [Decimal("1.56"), None, Decimal("-99999999.99"), Decimal("0.00"), Decimal("2.50")]),
    ("date", T.DATE, pa.date32(),
     pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(2000, 1, 1), dt.date(1969, 12, 31)]), None),
    ("timestamp", T.TIMESTAMP, pa.timestamp("us"),
     pa.array([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None,
               dt.datetime(1999, 12, 31, 23, 59, 59, 500000), dt.datetime(1969, 12, 31, 23, 59, 59, 999999)],
              pa.timestamp("us")), None),
    ("timestamptz", T.TIMESTAMPTZ, pa.timestamp("us", tz="UTC"),
     pa.array([dt.datetime(2024, 1, 15, 10, tzinfo=UTC), None, dt.datetime(1, 1, 1, tzinfo=UTC),
               dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(1960, 6, 1, 0, 0, 0, 1, tzinfo=UTC)],
              pa.timestamp("us", tz="UTC")), None),
    ("bytea", T.BYTEA, pa.binary(), pa.array([b"", b"\x00\xff", None, bytes(range(256)), b"\x00\x03"]), None),
    ("large_bytea", T.BYTEA, pa.large_binary(), pa.array([None, b"\x00\x03\x00\x00", b"", b"x", None],
                                                         pa.large_binary()), None),
    ("vector", T.VECTOR, pa.list_(pa.float32(), 3),
     pa.array([[1, 2, 3], None, [-1.5, 0, 1e-30], [3.4e38, -3.4e38, 0], None], pa.list_(pa.float32(), 3)), None),
    ("vector_any_dim", T.VECTOR, pa.list_(pa.float32()),
     pa.array([[1.0], [1, 2, 3], None, list(range(16)), [0.5]], pa.list_(pa.float32())), None),
    ("int4_array", 1007, pa.string(), pa.array([[1, 2, None], [], None, [3], [-(2**31)]], pa.list_(pa.int32())),
     None),
    ("text_array", 1009, pa.string(),
     pa.array([["a b", "NULL", None, '"q"', "\\", ""], ["x"], None, [], ["{}", ","]], pa.list_(pa.string())), None),
    ("float4_array", 1021, pa.string(), pa.array([[1.1, 2.0], None, [float("nan")], [], [-0.0]],
                                                 pa.list_(pa.float32())), None),
    ("bool_array", 1000, pa.string(), pa.array([[True, None], [False], None, [], [True]], pa.list_(pa.bool_())),
     None),
]


@pytest.mark.parametrize("name, oid, typ, values, expected", ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_round_trip_one_column(name: str, oid: int, typ: pa.DataType, values: pa.Array,
                               expected: list[object] | None) -> None:
    data = stream(encoded([values], [oid]))
    table = decode(data, [(oid, typ)])
    assert table.schema.field(0).type == typ
    got = table.column(0).to_pylist()
    if oid in T.ARRAY_ELEMENT:  # array columns come back as PostgreSQL's array text
        want = encode_column(values, oid, 0).cast(pa.large_string()).to_pylist()
    elif expected is not None:
        want = expected
    else:
        want = values.cast(typ).to_pylist()
    assert same_values(got, want), (got, want)


def test_all_types_in_one_stream_with_nulls_everywhere() -> None:
    specs = [(oid, typ) for _, oid, typ, _, _ in ROUND_TRIPS]
    columns = [values for _, _, _, values, _ in ROUND_TRIPS]
    rows = encoded(columns, [oid for oid, _ in specs])
    rows.append([None] * len(specs))
    table = decode(stream(rows), specs)
    assert table.num_rows == 6
    single = [decode(stream([[r[i]] for r in rows]), [specs[i]]).column(0) for i in range(len(specs))]
    for i, col in enumerate(single):
        assert same_values(table.column(i).to_pylist(), col.to_pylist()), ROUND_TRIPS[i][0]
    assert all(v is None for v in table.to_pylist()[-1].values())


def test_array_text_form() -> None:
    values = pa.array([[1, None, 3], []], pa.list_(pa.int32()))
    assert decode(stream(encoded([values], [1007])), [(1007, pa.string())]).column(0).to_pylist() == ["{1,NULL,3}",
                                                                                                       "{}"]
    texts = pa.array([["a b", "NULL", 'x"y']], pa.list_(pa.string()))
    assert decode(stream(encoded([texts], [1009])), [(1009, pa.string())]).column(0).to_pylist() == [
        '{"a b","NULL","x\\"y"}']


def test_same_bytes_as_the_data_row_encoder() -> None:
    """The loop-built stream here equals encode_data_rows(messages=False), COPY TO's tuple writer."""
    batch = pa.record_batch([pa.array([1, None, 3], pa.int64()), pa.array(["a", "bb", None])], names=["a", "b"])
    descs = [ColumnDesc("a", T.INT8), ColumnDesc("b", T.TEXT)]
    assert encode_data_rows(batch, descs, [1, 1], messages=False) == stream(
        encoded(batch.columns, [T.INT8, T.TEXT]), header=b"", trailer=False)


def test_low_flag_bits_and_header_extension_are_skipped() -> None:
    rows = [[struct.pack("!i", 7)], [None]]
    header = SIGNATURE + struct.pack("!ii", 0xFFFF, 5) + b"\x00\x01\xff\xff\x00"
    assert decode(stream(rows, header=header), [(T.INT4, pa.int32())]).column(0).to_pylist() == [7, None]


def test_fixed_width_types_accept_unusual_targets() -> None:
    rows = encoded([pa.array([1, None, 300], pa.int16())], [T.INT2])
    assert decode(stream(rows), [(T.INT2, pa.int64())]).column(0).to_pylist() == [1, None, 300]
    rows = encoded([pa.array([1.25, None], pa.float32())], [T.FLOAT4])
    assert decode(stream(rows), [(T.FLOAT4, pa.float64())]).column(0).to_pylist() == [1.25, None]
    rows = encoded([pa.array([1, 2**32 - 1])], [T.OID])
    assert decode(stream(rows), [(T.OID, pa.int64())]).column(0).to_pylist() == [1, 2**32 - 1]
    rows = encoded([pa.array([dt.datetime(2001, 2, 3, 4, 5, 6, 7)], pa.timestamp("us"))], [T.TIMESTAMP])
    nanos = decode(stream(rows), [(T.TIMESTAMP, pa.timestamp("ns"))]).column(0).cast(pa.int64())
    assert nanos.to_pylist() == [981_173_106_000_007_000]
    assert decode(stream(rows), [(T.TIMESTAMP, pa.timestamp("ms"))]).column(0).to_pylist() == [
        dt.datetime(2001, 2, 3, 4, 5, 6)]


# --------------------------------------------------------------------------- finding the tuples


def test_empty_and_trailer_variants() -> None:
    specs = [(T.INT4, pa.int32()), (T.TEXT, pa.string()), (T.VECTOR, pa.list_(pa.float32(), 2))]
    for data in (HEADER + TRAILER, HEADER, HEADER + b"\x00", SIGNATURE + struct.pack("!ii", 0, 3) + b"abc" + TRAILER):
        table = decode(data, specs)
        assert table.num_rows == 0
        assert [f.type for f in table.schema] == [t for _, t in specs]
    rows = [[struct.pack("!i", i), b"t%d" % i, None] for i in range(5)]
    with_trailer = decode(stream(rows), specs)
    assert decode(stream(rows, trailer=False), specs).equals(with_trailer)
    assert decode(stream(rows, trailer=False) + b"\x00", specs).equals(with_trailer)  # a lone byte: ignored
    assert with_trailer.column(1).to_pylist() == [f"t{i}" for i in range(5)]


def _random_text_rows(rng: np.random.Generator, n: int) -> list[list[bytes | None]]:
    alphabet = np.frombuffer("abc xyz\t\n\\é✓\x01\x02\x03".encode(), np.uint8)
    rows: list[list[bytes | None]] = []
    for i in range(n):
        length = int(rng.integers(0, 120)) if rng.random() > 0.1 else int(rng.integers(0, 3))
        text = bytes(rng.choice(alphabet, length)).decode("utf-8", "ignore").encode()
        blob = bytes(rng.integers(0, 4, int(rng.integers(0, 40)), dtype=np.uint8))  # many 00 03 / 00 02 pairs
        rows.append([
            None if rng.random() < 0.15 else struct.pack("!i", i),
            None if rng.random() < 0.2 else text,
            None if rng.random() < 0.2 else blob,
        ])
    return rows


def test_variable_length_rows_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    rows = _random_text_rows(rng, 10_000)
    data = stream(rows)
    calls: list[int] = []
    chain = copy_binary._chain

    def spy(buf: np.ndarray, start: int, k: int) -> tuple[np.ndarray, bool]:
        starts, ended = chain(buf, start, k)
        calls.append(starts.size)
        return starts, ended

    monkeypatch.setattr(copy_binary, "_chain", spy)
    specs = [(T.INT4, pa.int32()), (T.TEXT, pa.string()), (T.BYTEA, pa.binary())]
    started = time.perf_counter()
    table = decode(data, specs)
    elapsed = time.perf_counter() - started
    assert calls and sum(calls) >= 9_990  # (almost) all rows found by list ranking
    reference = reference_parse(data, 3)
    assert len(reference) == table.num_rows == 10_000
    ints = [None if r[0] is None else struct.unpack("!i", r[0])[0] for r in reference]
    assert table.column(0).to_pylist() == ints
    assert table.column(1).to_pylist() == [None if r[1] is None else r[1].decode() for r in reference]
    assert table.column(2).to_pylist() == [r[2] for r in reference]
    print(f"\nvariable-length 10k rows, {len(data) / 1e6:.2f} MB: {elapsed * 1000:.1f} ms, "
          f"{10_000 / elapsed:,.0f} rows/s, {len(data) / elapsed / 1e6:.0f} MB/s")


def test_fast_prefix_then_general_rest() -> None:
    n = 3000
    ids = pa.array([None if i in (1500, 2999) else i for i in range(n)], pa.int64())
    floats = pa.array(np.linspace(-1, 1, n))
    specs = [(T.INT8, pa.int64()), (T.FLOAT8, pa.float64())]
    table = decode(stream(encoded([ids, floats], [T.INT8, T.FLOAT8])), specs)
    assert table.column(0).to_pylist() == ids.to_pylist() and table.column(1).to_pylist() == floats.to_pylist()
    # first row different from the rest: the fast path stops at once
    ids = pa.array([None] + list(range(1, n)), pa.int64())
    table = decode(stream(encoded([ids, floats], [T.INT8, T.FLOAT8]), trailer=False), specs)
    assert table.column(0).to_pylist() == ids.to_pylist()


def test_false_candidate_tuple_starts() -> None:
    """Vector bytes 00 03 00 03 ... everywhere look like the int16 3 (the field count): every other
    byte position of the data is a candidate start, and hopping from there reads lengths 0x00030003."""
    n, dim = 2000, 16
    trick = float(np.frombuffer(b"\x00\x03\x00\x03", ">f4")[0])  # a finite (subnormal) float
    vectors = pa.array([None if i % 97 == 5 else [trick] * dim for i in range(n)], pa.list_(pa.float32(), dim))
    ids = pa.array(range(n), pa.int64())
    # bytea values made of whole fake tuples (count 3, three NULLs): false chains that run through
    # them land exactly on the next true tuple, merging into the true chain.
    fake = struct.pack("!h", 3) + NULL * 3
    blobs = pa.array([fake * (i % 5) if i % 7 else None for i in range(n)], pa.binary())
    columns, oids = [ids, vectors, blobs], [T.INT8, T.VECTOR, T.BYTEA]
    data = stream(encoded(columns, oids))
    buf = np.frombuffer(data, np.uint8)
    candidates = int(((buf[:-1] == 0) & (buf[1:] == 3)).sum())
    assert candidates > 10 * n
    table = decode(data, [(T.INT8, pa.int64()), (T.VECTOR, pa.list_(pa.float32(), dim)), (T.BYTEA, pa.binary())])
    assert table.num_rows == n
    assert table.column(0).to_pylist() == ids.to_pylist()
    got = table.column(1).to_pylist()
    assert all((g is None) == (v is None) for g, v in zip(got, vectors.to_pylist()))
    assert got[0] == [pytest.approx(trick, rel=0, abs=0)] * dim
    assert table.column(2).to_pylist() == blobs.to_pylist()


def test_two_byte_rows_and_wide_rows() -> None:
    rows = [[None] * 300 for _ in range(50)] + [[b"x"] * 300]
    specs = [(T.TEXT, pa.string())] * 300
    table = decode(stream(rows), specs)
    assert table.num_rows == 51 and table.column(299).to_pylist() == [None] * 50 + ["x"]


# --------------------------------------------------------------------------- errors


def check(err: PgError, sqlstate: str, message: str, line: int | None = None, column: str | None = None) -> None:
    assert (err.sqlstate, err.message) == (sqlstate, message), (err.sqlstate, err.message, err.where)
    if line is None:
        assert err.where is None
    else:
        where = f"COPY line {line}" + (f", column {column}" if column else "")
        assert err.where is not None and (err.where == where or err.where.startswith(where + ":")), err.where


INT = [(T.INT4, pa.int32())]
THREE = [(T.INT4, pa.int32()), (T.TEXT, pa.string()), (T.VECTOR, pa.list_(pa.float32(), 2))]
GOOD = [struct.pack("!i", 7), b"hi", None]


@pytest.mark.parametrize("data, message", [
    (b"", "COPY file signature not recognized"),
    (b"PGCO", "COPY file signature not recognized"),
    (b"PGCOPY\n\xff\r\n\x01" + b"\x00" * 8, "COPY file signature not recognized"),
    (SIGNATURE + b"\x00\x00", "invalid COPY file header (missing flags)"),
    (SIGNATURE + struct.pack("!ii", 1 << 16, 0), "invalid COPY file header (WITH OIDS)"),
    (SIGNATURE + struct.pack("!Ii", 1 << 17, 0), "unrecognized critical flags in COPY file header"),
    (SIGNATURE + struct.pack("!Ii", 1 << 31, 0), "unrecognized critical flags in COPY file header"),
    (SIGNATURE + struct.pack("!i", 0) + b"\x00", "invalid COPY file header (missing length)"),
    (SIGNATURE + struct.pack("!ii", 0, -1), "invalid COPY file header (missing length)"),
    (SIGNATURE + struct.pack("!ii", 0, 10) + b"abc", "invalid COPY file header (wrong length)"),
])
def test_header_errors(data: bytes, message: str) -> None:
    check(error_of(data, THREE), "22P04", message)


def test_field_count_errors() -> None:
    rows = stream([GOOD] * 4, trailer=False)
    check(error_of(rows + tuple_bytes(b"\x00\x00\x00\x01", b"x"), THREE), "22P04", "row field count is 2, expected 3",
          5)
    check(error_of(HEADER + struct.pack("!h", -2), THREE), "22P04", "row field count is -2, expected 3", 1)
    # in the general path (rows of different lengths), deep in the data
    varied = [[struct.pack("!i", i), b"x" * (i % 13), None] for i in range(5000)]
    data = stream(varied[:3000], trailer=False) + tuple_bytes(None, None) + stream(varied[3000:], header=b"")
    check(error_of(data, THREE), "22P04", "row field count is 2, expected 3", 3001)


def test_truncation_errors() -> None:
    base = stream([GOOD] * 3, trailer=False)
    count = struct.pack("!h", 3)
    check(error_of(base + count + b"\x00", THREE), "22P04", "unexpected EOF in COPY data", 4, "c0")
    check(error_of(base + count + field(b"\x00\x00\x00\x07") + b"\x00\x00", THREE), "22P04",
          "unexpected EOF in COPY data", 4, "c1")
    check(error_of(base + count + field(b"\x00\x00\x00\x07") + struct.pack("!i", 5) + b"ab", THREE), "22P04",
          "unexpected EOF in COPY data", 4, "c1")
    check(error_of(base + count + struct.pack("!i", -2) + b"\x00" * 30, THREE), "22P04", "invalid field size", 4,
          "c0")
    varied = stream([[struct.pack("!i", i), b"y" * (i % 5), None] for i in range(100)], trailer=False)
    check(error_of(varied[:-3], THREE), "22P04", "unexpected EOF in COPY data", 100, "c2")


def test_data_after_the_trailer() -> None:
    check(error_of(stream([GOOD] * 2) + b"xx", THREE), "22P04", "received copy data after EOF marker", 3)
    check(error_of(HEADER + TRAILER + b"\x00", THREE), "22P04", "received copy data after EOF marker", 1)
    varied = stream([[struct.pack("!i", i), b"y" * (i % 5), None] for i in range(10)])
    check(error_of(varied + b"\x00\x03", THREE), "22P04", "received copy data after EOF marker", 11)


@pytest.mark.parametrize("oid, typ, value, sqlstate, message", [
    (T.INT4, pa.int32(), b"\x00\x00\x07", "08P01", "insufficient data left in message"),
    (T.INT4, pa.int32(), b"\x00\x00\x00\x00\x07", "22P03", "incorrect binary data format"),
    (T.INT2, pa.int16(), b"\x07", "08P01", "insufficient data left in message"),
    (T.INT8, pa.int64(), b"\x00" * 9, "22P03", "incorrect binary data format"),
    (T.FLOAT8, pa.float64(), b"\x00" * 4, "08P01", "insufficient data left in message"),
    (T.BOOL, pa.bool_(), b"\x01\x00", "22P03", "incorrect binary data format"),
    (T.DATE, pa.date32(), b"", "08P01", "insufficient data left in message"),
    (T.UUID, pa.string(), b"\x00" * 15, "08P01", "insufficient data left in message"),
    (T.DATE, pa.date32(), struct.pack("!i", 2**31 - 1), "22008", "date out of range"),
    (T.TIMESTAMP, pa.timestamp("us"), struct.pack("!q", 2**62), "22008", "timestamp out of range"),
    (T.TIMESTAMPTZ, pa.timestamp("us", tz="UTC"), struct.pack("!q", -(2**63)), "22008", "timestamp out of range"),
    (T.INT8, pa.int32(), struct.pack("!q", 2**40), "22003", "integer out of range"),
    (T.TEXT, pa.string(), b"a\xffb", "22021", 'invalid byte sequence for encoding "UTF8": 0xff'),
    (T.TEXT, pa.string(), b"ab\x00", "22021", 'invalid byte sequence for encoding "UTF8": 0x00'),
    (T.VARCHAR, pa.string(), b"\xc3", "22021", 'invalid byte sequence for encoding "UTF8": 0xc3'),
    (T.JSONB, pa.string(), b"\x02{}", "22P03", "unsupported jsonb version number 2"),
    (T.JSONB, pa.string(), b"", "08P01", "insufficient data left in message"),
    (T.JSONB, pa.string(), b"\x01\xfe", "22021", 'invalid byte sequence for encoding "UTF8": 0xfe'),
    (T.NUMERIC, pa.string(), b"\x00\x01", "08P01", "insufficient data left in message"),
    (T.NUMERIC, pa.string(), struct.pack("!hhHHh", 1, 0, 0x1234, 0, 1), "22P03",
     'invalid sign in external "numeric" value'),
    (T.NUMERIC, pa.decimal128(5, 2), T.numeric_to_binary(Decimal("1234.5")), "22003", "numeric field overflow"),
    (1007, pa.string(), struct.pack("!iiIii", 2, 0, T.INT4, 1, 1) + struct.pack("!ii", 1, 1) + field(b"\0\0\0\1"),
     "0A000", "multidimensional arrays are not supported"),
    (1007, pa.string(), struct.pack("!iiIii", 1, 0, T.INT4, 1, 0) + field(b"\0\0\0\1"), "0A000",
     "array bounds are not supported"),
    (1007, pa.string(), struct.pack("!iiIii", 1, 0, T.INT8, 1, 1) + field(b"\0" * 8), "42804",
     "binary data has array element type 20 (bigint) instead of expected 23 (integer)"),
])
def test_value_errors(oid: int, typ: pa.DataType, value: bytes, sqlstate: str, message: str) -> None:
    good = encoded([pa.array([None, 1], pa.int32()).cast(pa.int64() if oid == T.INT8 else pa.int32())
                    if False else pa.array([None], pa.null())], [oid])
    rows = good * 3 + [[value]] + good
    err = error_of(stream(rows), [(oid, typ)], ["col"])
    check(err, sqlstate, message, 4, "col")


def _vector_bytes(dim: int, values: list[float], unused: int = 0) -> bytes:
    return struct.pack("!hh", dim, unused) + struct.pack(f"!{len(values)}f", *values)


@pytest.mark.parametrize("target", [pa.list_(pa.float32(), 2), pa.list_(pa.float32())])
@pytest.mark.parametrize("value, sqlstate, message", [
    (_vector_bytes(0, []), "22000", "vector must have at least 1 dimension"),
    (_vector_bytes(-1, []), "22000", "vector must have at least 1 dimension"),
    (_vector_bytes(16001, []), "54000", "vector cannot have more than 16000 dimensions"),
    (_vector_bytes(2, [1, 2], unused=1), "22000", "expected unused to be 0, not 1"),
    (_vector_bytes(2, [1, float("nan")]), "22000", "NaN not allowed in vector"),
    (_vector_bytes(2, [float("-inf"), 1]), "22000", "infinite value not allowed in vector"),
    (_vector_bytes(2, [1]), "08P01", "insufficient data left in message"),
    (_vector_bytes(2, [1, 2, 3]), "22P03", "incorrect binary data format"),
    (b"\x00\x02\x00", "08P01", "insufficient data left in message"),
])
def test_vector_errors(target: pa.DataType, value: bytes, sqlstate: str, message: str) -> None:
    good = [[_vector_bytes(2, [0.5, 1.5])], [None]]
    rows = good * 50 + [[value]] + good
    check(error_of(stream(rows), [(T.VECTOR, target)], ["emb"]), sqlstate, message, 101, "emb")


def test_vector_dimension_mismatch() -> None:
    rows = [[_vector_bytes(2, [1, 2])]] * 9 + [[_vector_bytes(3, [1, 2, 3])]]
    check(error_of(stream(rows), [(T.VECTOR, pa.list_(pa.float32(), 2))], ["emb"]), "22000",
          "expected 2 dimensions, not 3", 10, "emb")
    table = decode(stream(rows), [(T.VECTOR, pa.list_(pa.float32()))])
    assert table.column(0).to_pylist()[-1] == [1, 2, 3]


def test_value_error_deep_in_the_general_path() -> None:
    rng = np.random.default_rng(3)
    rows = _random_text_rows(rng, 10_000)
    rows[6543][1] = b"ok \xe2\x28\xa1"
    rows[8000][1] = b"\x00"
    specs = [(T.INT4, pa.int32()), (T.TEXT, pa.string()), (T.BYTEA, pa.binary())]
    check(error_of(stream(rows), specs, ["id", "name", "blob"]), "22021",
          'invalid byte sequence for encoding "UTF8": 0xe2', 6544, "name")
    rows[6543][1] = b"fine"
    check(error_of(stream(rows), specs, ["id", "name", "blob"]), "22021",
          'invalid byte sequence for encoding "UTF8": 0x00', 8001, "name")


def test_errors_name_the_column() -> None:
    rows = [[struct.pack("!i", 1), b"a", _vector_bytes(2, [1, 2])]] * 3 + [[struct.pack("!i", 1), b"\xff", None]]
    err = error_of(stream(rows), THREE, ["id", "name", "emb"])
    assert err.where == "COPY line 4, column name"


# --------------------------------------------------------------------------- speed


def test_large_vector_load_speed() -> None:
    n, dim = 200_000, 128
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, dim), dtype=np.float32)
    ids = pa.array(np.arange(n, dtype=np.int64) * 3 - 7)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
    batch = pa.record_batch([ids, vectors], names=["id", "emb"])
    descs = [ColumnDesc("id", T.INT8), ColumnDesc("emb", T.VECTOR)]
    data = HEADER + encode_data_rows(batch, descs, [1, 1], messages=False) + TRAILER
    specs = [(T.INT8, pa.int64()), (T.VECTOR, pa.list_(pa.float32(), dim))]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        table = decode(data, specs)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    assert table.column(0).equals(pa.chunked_array([ids]))
    got = table.column(1).combine_chunks().values.to_numpy().reshape(n, dim)
    assert np.array_equal(got, matrix)
    print(f"\n{n:,} x (bigint, vector({dim})), {len(data) / 1e6:.0f} MB: best of 3 {best * 1000:.0f} ms, "
          f"{n / best:,.0f} rows/s, {len(data) / best / 1e6:.0f} MB/s")


# --------------------------------------------------------------------------- streaming


VEC = [(T.INT8, pa.int64()), (T.VECTOR, pa.list_(pa.float32(), 3))]


def _vector_rows(n: int, bad: int | None = None) -> list[list[bytes | None]]:
    rows: list[list[bytes | None]] = []
    for i in range(n):
        values = [float(i), 0.5, math.nan if i == bad else -1.0]
        rows.append([struct.pack("!q", i), _vector_bytes(3, values)])
    return rows


def _fed(data: bytes, specs: list[tuple[int, pa.DataType]], piece: int, chunk: int) -> list[pa.Table]:
    names = [f"c{i}" for i in range(len(specs))]
    decoder = copy_binary.CopyBinaryDecoder(names, [o for o, _ in specs], [t for _, t in specs], chunk_bytes=chunk)
    tables = []
    for start in range(0, len(data), piece):
        tables += decoder.feed(data[start: start + piece])
    return tables + decoder.finish()


@pytest.mark.parametrize("trailer", [True, False])
def test_streamed_chunks_match_one_shot(trailer: bool) -> None:
    data = stream(_vector_rows(3000), trailer=trailer)
    tables = _fed(data, VEC, 997, 4096)
    assert len(tables) > 10  # decoded chunk by chunk, not at the end
    assert pa.concat_tables(tables).equals(decode(data, VEC))


def test_streamed_rows_of_several_layouts_wait_for_the_end() -> None:
    rows = _random_text_rows(np.random.default_rng(3), 2000)
    specs = [(T.INT4, pa.int32()), (T.TEXT, pa.string()), (T.BYTEA, pa.binary())]
    data = stream(rows)
    tables = _fed(data, specs, 500, 2048)
    assert pa.concat_tables(tables).equals(decode(data, specs))


def test_streamed_errors_count_lines_from_the_start() -> None:
    with pytest.raises(PgError) as e:
        _fed(stream(_vector_rows(3000, bad=2500)), VEC, 1000, 4096)
    check(e.value, "22000", "NaN not allowed in vector", 2501, "c1")
    with pytest.raises(PgError) as e:  # a short last tuple: an error of the end, at its line
        _fed(stream(_vector_rows(2000), trailer=False)[:-5], VEC, 1000, 4096)
    check(e.value, "22P04", "unexpected EOF in COPY data", 2000, "c1")
    with pytest.raises(PgError) as e:
        _fed(stream(_vector_rows(2000)) + b"xx", VEC, 1000, 4096)
    check(e.value, "22P04", "received copy data after EOF marker", 2001)
