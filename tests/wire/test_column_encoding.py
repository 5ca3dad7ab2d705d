"""wire/column_encoding.py: result values -> wire bytes, checked against PostgreSQL's outputs and
against simple per-value reference encoders written here."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from wire import codec
from wire import pgtypes as T
from wire.column_encoding import encode_column, encode_data_rows
from wire.session import ColumnDesc, PgError


def text_out(values: Any, oid: int, typ: pa.DataType | None = None) -> list[str | None]:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, typ)
    return [None if v is None else v.decode() for v in encode_column(arr, oid, 0).to_pylist()]


def binary_out(values: Any, oid: int, typ: pa.DataType | None = None) -> list[bytes | None]:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, typ)
    return encode_column(arr, oid, 1).to_pylist()


# --------------------------------------------------------------------------- a reference float8out/float4out


def pg_float(x: float, single: bool = False) -> str:
    """PostgreSQL 16's float8out/float4out (extra_float_digits = 1), one value, plain Python."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    shortest = np.format_float_scientific(np.float32(x), unique=True) if single else repr(float(x))
    d = Decimal(shortest).normalize()
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    e10 = len(digits) - 1 + exponent
    out = "-" if sign else ""
    if -4 <= e10 < (6 if single else 15):
        return out + format(abs(d), "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return out + f"{mantissa}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"


FLOAT8_KNOWN = [  # value, PostgreSQL 16 output
    (1e15, "1e+15"), (1e14, "100000000000000"), (0.0001, "0.0001"), (1e-05, "1e-05"),
    (1.2345678901234567e20, "1.2345678901234567e+20"), (123456789012345.6, "123456789012345.6"),
    (1234567890123456.7, "1.2345678901234568e+15"), (0.1, "0.1"), (-0.0, "-0"), (0.0, "0"),
    (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1e100, "1e+100"),
    (1e-100, "1e-100"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
    (100.0, "100"), (2.5e-5, "2.5e-05"), (0.00012, "0.00012"), (1e-7, "1e-07"), (12345678901.5, "12345678901.5"),
    (-3.14159, "-3.14159"), (1e10, "10000000000"), (9.999999999999999e14, "999999999999999.9"),
    (1.5e-10, "1.5e-10"), (2.2250738585072014e-308, "2.2250738585072014e-308"), (-1e-6, "-1e-06"),
]
FLOAT4_KNOWN = [
    (1e6, "1e+06"), (123456.0, "123456"), (1.1, "1.1"), (1234567.5, "1.2345675e+06"), (0.0001, "0.0001"),
    (1e-5, "1e-05"), (3.4028235e38, "3.4028235e+38"), (1e-45, "1e-45"), (16777216.0, "1.6777216e+07"),
    (999999.0, "999999"), (0.1, "0.1"), (-1.5, "-1.5"), (math.nan, "NaN"), (-math.inf, "-Infinity"),
    (-0.0, "-0"), (1e10, "1e+10"), (1.17549435e-38, "1.1754944e-38"), (0.3333333432674408, "0.33333334"),
]


@pytest.mark.parametrize(("value", "expected"), FLOAT8_KNOWN)
def test_float8_text_matches_postgresql(value: float, expected: str) -> None:
    assert text_out([value], T.FLOAT8, pa.float64()) == [expected]
    assert pg_float(value) == expected


@pytest.mark.parametrize(("value", "expected"), FLOAT4_KNOWN)
def test_float4_text_matches_postgresql(value: float, expected: str) -> None:
    assert text_out([value], T.FLOAT4, pa.float32()) == [expected]
    assert pg_float(value, single=True) == expected


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    mantissa = rng.standard_normal(n)
    exponents = rng.integers(-20, 22, n).astype(np.float64)
    values = mantissa * 10.0**exponents
    values[::17] = np.round(values[::17])  # integers, which print without a fraction
    values[::23] = 10.0 ** rng.integers(-12, 20, values[::23].size).astype(np.float64)  # exact powers
    return values


def test_float_text_equals_reference_on_random_values() -> None:
    rng = np.random.default_rng(7)
    values = random_floats(rng, 20_000)
    assert text_out(pa.array(values), T.FLOAT8) == [pg_float(v) for v in values]
    singles = values.astype(np.float32)
    assert text_out(pa.array(singles), T.FLOAT4) == [pg_float(float(v), single=True) for v in singles]


def test_float_binary_and_widening() -> None:
    assert binary_out([1.5, None, -0.0], T.FLOAT8, pa.float64()) == [struct.pack("!d", 1.5), None, struct.pack("!d", -0.0)]
    assert binary_out([1.1], T.FLOAT4, pa.float64()) == [struct.pack("!f", 1.1)]
    assert binary_out([3], T.FLOAT8, pa.int32()) == [struct.pack("!d", 3.0)]
    assert text_out([3, None], T.FLOAT8, pa.int64()) == ["3", None]
    assert text_out([Decimal("1.25")], T.FLOAT8, pa.decimal128(5, 2)) == ["1.25"]
    assert text_out([1.1], T.FLOAT4, pa.float64()) == ["1.1"]  # float4 column held as float64


# --------------------------------------------------------------------------- integers and booleans


@pytest.mark.parametrize(
    ("oid", "typ", "values", "fmt"),
    [
        (T.INT2, pa.int16(), [-32768, 0, 32767, None], "!h"),
        (T.INT4, pa.int32(), [-(2**31), 0, 2**31 - 1, None], "!i"),
        (T.INT8, pa.int64(), [-(2**63), 0, 2**63 - 1, None], "!q"),
        (T.INT8, pa.int32(), [-(2**31), 7], "!q"),  # int32 data for an int8 column
        (T.INT4, pa.int64(), [2**31 - 1, -5], "!i"),  # int64 data that fits
        (T.INT2, pa.uint8(), [255, 0], "!h"),
        (T.OID, pa.int64(), [0, 4294967295], "!I"),
    ],
)
def test_integers(oid: int, typ: pa.DataType, values: list[int | None], fmt: str) -> None:
    assert text_out(values, oid, typ) == [None if v is None else str(v) for v in values]
    assert binary_out(values, oid, typ) == [None if v is None else struct.pack(fmt, v) for v in values]


def test_integer_out_of_range_is_an_error() -> None:
    with pytest.raises(PgError) as exc:
        binary_out([2**31], T.INT4, pa.int64())
    assert exc.value.sqlstate == "22003"
    with pytest.raises(PgError):
        binary_out([40000], T.INT2, pa.int32())


def test_booleans() -> None:
    assert text_out([True, False, None], T.BOOL, pa.bool_()) == ["t", "f", None]
    assert binary_out([True, False, None], T.BOOL, pa.bool_()) == [b"\x01", b"\x00", None]
    assert text_out([1, 0], T.BOOL, pa.int8()) == ["t", "f"]


# --------------------------------------------------------------------------- text, json, bytea


def test_text_like() -> None:
    values = ["", "héllo", "tab\there", "quote'\"", None, "\u2603" * 1000]
    for typ in (pa.string(), pa.large_string()):
        for oid in (T.TEXT, T.VARCHAR, T.NAME, T.BPCHAR, T.JSON, T.UNKNOWN, 424242):
            assert text_out(values, oid, typ) == values
            assert binary_out(values, oid, typ) == [None if v is None else v.encode() for v in values]
    assert binary_out(['{"a":1}', None], T.JSONB, pa.string()) == [b'\x01{"a":1}', None]
    assert text_out(['{"a":1}'], T.JSONB, pa.string()) == ['{"a":1}']
    nested = pa.array([{"a": 1, "b": [1.5, None]}, None])
    assert text_out(nested, T.JSONB) == ['{"a": 1, "b": [1.5, null]}', None]
    assert binary_out(nested, T.JSONB) == [b'\x01{"a": 1, "b": [1.5, null]}', None]
    dictionary = pa.array(["x", "y", None, "x"]).dictionary_encode()
    assert text_out(dictionary, T.TEXT) == ["x", "y", None, "x"]
    assert text_out(pa.array(["a", "b"], pa.string_view()), T.TEXT) == ["a", "b"]


def test_bytea() -> None:
    values = [b"", b"\x00\x01\xfe\xff", b"abc\\", None, bytes(range(256))]
    expected = [None if v is None else "\\x" + v.hex() for v in values]
    for typ in (pa.binary(), pa.large_binary()):
        assert text_out(values, T.BYTEA, typ) == expected
        assert binary_out(values, T.BYTEA, typ) == values
    assert text_out([b"\x0a\x0b"], T.BYTEA, pa.binary(2)) == ["\\x0a0b"]
    assert binary_out([b"\x0a\x0b"], T.BYTEA, pa.binary(2)) == [b"\x0a\x0b"]


# --------------------------------------------------------------------------- numeric


def test_numeric_text_and_binary() -> None:
    values = [Decimal("1.50"), Decimal("-0.05"), Decimal("0.00"), None, Decimal("123456789012.34")]
    assert text_out(values, T.NUMERIC, pa.decimal128(14, 2)) == ["1.50", "-0.05", "0.00", None, "123456789012.34"]
    assert binary_out(values, T.NUMERIC, pa.decimal128(14, 2)) == [
        None if v is None else T.numeric_to_binary(v) for v in values]
    strings = ["3.14159265358979323846264338327950288", "NaN", "-Infinity", "0", None]
    assert text_out(strings, T.NUMERIC, pa.string()) == strings
    assert binary_out(strings, T.NUMERIC, pa.string())[0] == T.numeric_to_binary(Decimal(strings[0]))
    assert binary_out(["NaN"], T.NUMERIC, pa.string()) == [struct.pack("!hhHH", 0, 0, 0xC000, 0)]
    assert text_out([5, None], T.NUMERIC, pa.int64()) == ["5", None]
    assert binary_out([5], T.NUMERIC, pa.int64()) == [T.numeric_to_binary(Decimal(5))]
    assert binary_out([0.1], T.NUMERIC, pa.float64()) == [T.numeric_to_binary(Decimal("0.1"))]


# --------------------------------------------------------------------------- dates and times

DATE_CASES = [
    (dt.date(2000, 1, 1), "2000-01-01", 0), (dt.date(1999, 12, 31), "1999-12-31", -1),
    (dt.date(1970, 1, 1), "1970-01-01", -10957), (dt.date(1, 1, 1), "0001-01-01", -730119),
    (dt.date(9999, 12, 31), "9999-12-31", 2921939), (dt.date(2024, 2, 29), "2024-02-29", 8825),
]


def test_dates() -> None:
    values = [d for d, _, _ in DATE_CASES] + [None]
    assert text_out(values, T.DATE, pa.date32()) == [t for _, t, _ in DATE_CASES] + [None]
    assert binary_out(values, T.DATE, pa.date32()) == [struct.pack("!i", n) for _, _, n in DATE_CASES] + [None]
    assert text_out(values, T.DATE, pa.date64()) == [t for _, t, _ in DATE_CASES] + [None]


def test_dates_beyond_python() -> None:
    # days since 1970: 10000-01-01; year 0 (1 BC, a leap year) ends at -719163 and starts at -719528
    days = [2932897, -719163, -719528, -719529]
    assert text_out(pa.array(days, pa.date32()), T.DATE) == [
        "10000-01-01", "0001-12-31 BC", "0001-01-01 BC", "0002-12-31 BC"]
    assert binary_out(pa.array(days, pa.date32()), T.DATE) == [struct.pack("!i", d - 10957) for d in days]


UTC = dt.UTC


def test_timestamps() -> None:
    values = [
        dt.datetime(2000, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999), dt.datetime(2024, 6, 1, 12, 0, 0, 500000),
        dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 10), dt.datetime(1970, 1, 1, 0, 0, 1, 120), None,
    ]
    expected = ["2000-01-01 00:00:00", "1999-12-31 23:59:59.999999", "2024-06-01 12:00:00.5", "0001-01-01 00:00:00",
                "9999-12-31 23:59:59.00001", "1970-01-01 00:00:01.00012", None]
    epoch = dt.datetime(2000, 1, 1)
    micros = [None if v is None else (v - epoch) // dt.timedelta(microseconds=1) for v in values]
    assert text_out(values, T.TIMESTAMP, pa.timestamp("us")) == expected
    assert binary_out(values, T.TIMESTAMP, pa.timestamp("us")) == [None if m is None else struct.pack("!q", m) for m in micros]
    aware = [None if v is None else v.replace(tzinfo=UTC) for v in values]
    assert text_out(aware, T.TIMESTAMPTZ, pa.timestamp("us", tz="UTC")) == [None if e is None else e + "+00" for e in expected]
    assert binary_out(aware, T.TIMESTAMPTZ, pa.timestamp("us", tz="UTC")) == binary_out(values, T.TIMESTAMP, pa.timestamp("us"))
    # naive data for a timestamptz column is taken as UTC; zoned data for timestamp shows UTC wall time
    assert text_out(values[:1], T.TIMESTAMPTZ, pa.timestamp("us")) == ["2000-01-01 00:00:00+00"]
    other_zone = pa.array([dt.datetime(2000, 1, 1, 12, tzinfo=UTC)], pa.timestamp("us", tz="America/New_York"))
    assert text_out(other_zone, T.TIMESTAMP) == ["2000-01-01 12:00:00"]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_units(unit: str) -> None:
    value = dt.datetime(2021, 3, 4, 5, 6, 7, 123000 if unit != "s" else 0)
    expected = "2021-03-04 05:06:07.123" if unit != "s" else "2021-03-04 05:06:07"
    assert text_out([value, None], T.TIMESTAMP, pa.timestamp(unit)) == [expected, None]
    assert text_out(pa.array([dt.date(2021, 3, 4)], pa.date32()), T.TIMESTAMP) == ["2021-03-04 00:00:00"]


def test_timestamps_beyond_python() -> None:
    day = 86_400_000_000
    micros = [2932897 * day + 1, -719163 * day, -719163 * day + 3_600_000_000 + 5]
    arr = pa.array(micros, pa.timestamp("us", tz="UTC"))
    assert text_out(arr, T.TIMESTAMPTZ) == ["10000-01-01 00:00:00.000001+00", "0001-12-31 00:00:00+00 BC",
                                             "0001-12-31 01:00:00.000005+00 BC"]
    assert binary_out(arr, T.TIMESTAMPTZ) == [struct.pack("!q", m - 946_684_800_000_000) for m in micros]


# --------------------------------------------------------------------------- uuid


def test_uuid() -> None:
    u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    spellings = [str(u), str(u).upper(), "{" + u.hex + "}", u.hex, None]
    assert text_out(spellings, T.UUID, pa.string()) == [str(u)] * 4 + [None]
    assert binary_out(spellings, T.UUID, pa.string()) == [u.bytes] * 4 + [None]
    assert text_out([u.bytes, None], T.UUID, pa.binary(16)) == [str(u), None]
    assert binary_out([u.bytes, None], T.UUID, pa.binary(16)) == [u.bytes, None]
    assert text_out([u.bytes], T.UUID, pa.binary()) == [str(u)]
    with pytest.raises(PgError) as exc:
        binary_out(["not-a-uuid"], T.UUID, pa.string())
    assert exc.value.sqlstate == "22P02"


# --------------------------------------------------------------------------- vector


def vec_binary(values: list[float]) -> bytes:
    return struct.pack("!hh", len(values), 0) + struct.pack(f"!{len(values)}f", *values)


VECTOR_CASES = [
    ([1.0, 2.0, 3.0], "[1,2,3]"), ([0.5, -0.0, 1e-5], "[0.5,-0,1e-05]"), ([1e6, 123456.0, 1.1], "[1e+06,123456,1.1]"),
    ([3.4028235e38, -1e-45], "[3.4028235e+38,-1e-45]"), ([0.1], "[0.1]"),
]


@pytest.mark.parametrize("typ", [pa.list_(pa.float32()), pa.large_list(pa.float32()), pa.list_(pa.float64())])
def test_vector_lists(typ: pa.DataType) -> None:
    values = [v for v, _ in VECTOR_CASES] + [None]
    assert text_out(values, T.VECTOR, typ) == [t for _, t in VECTOR_CASES] + [None]
    assert binary_out(values, T.VECTOR, typ) == [vec_binary(v) for v, _ in VECTOR_CASES] + [None]


def test_vector_fixed_size() -> None:
    typ = pa.list_(pa.float32(), 3)
    values = [[1.0, 2.0, 3.0], None, [0.25, -1e6, 7.0]]
    assert text_out(values, T.VECTOR, typ) == ["[1,2,3]", None, "[0.25,-1e+06,7]"]
    assert binary_out(values, T.VECTOR, typ) == [vec_binary([1, 2, 3]), None, vec_binary([0.25, -1e6, 7])]
    sliced = pa.array(values, typ).slice(1)
    assert text_out(sliced, T.VECTOR) == [None, "[0.25,-1e+06,7]"]


def test_vector_huge_and_random() -> None:
    rng = np.random.default_rng(3)
    big = rng.standard_normal(16000).astype(np.float32)
    expected = "[" + ",".join(pg_float(float(v), single=True) for v in big) + "]"
    assert text_out([big.tolist()], T.VECTOR, pa.list_(pa.float32())) == [expected]
    assert binary_out([big.tolist()], T.VECTOR, pa.list_(pa.float32(), 16000)) == [vec_binary(big.tolist())]
    flat = random_floats(rng, 4000).astype(np.float32)
    arr = pa.FixedSizeListArray.from_arrays(pa.array(flat), 8)
    rows = flat.reshape(-1, 8)
    assert text_out(arr, T.VECTOR) == ["[" + ",".join(pg_float(float(v), single=True) for v in r) + "]" for r in rows]


def test_vector_stored_as_text_and_bad_elements() -> None:
    assert text_out(["[1,2]"], T.VECTOR, pa.string()) == ["[1,2]"]
    assert binary_out(["[1,2]"], T.VECTOR, pa.string()) == [vec_binary([1, 2])]
    with pytest.raises(PgError):
        text_out([[1.0, None]], T.VECTOR, pa.list_(pa.float32()))


# --------------------------------------------------------------------------- arrays (nice to have)


def test_arrays() -> None:
    assert text_out([[1, 2, None], [], None], 1007, pa.list_(pa.int32())) == ["{1,2,NULL}", "{}", None]
    texts = [["a", "b c", None, "NULL", "", 'q"\\', "{x}"]]
    assert text_out(texts, 1009, pa.list_(pa.string())) == ['{a,"b c",NULL,"NULL","","q\\"\\\\","{x}"}']
    assert text_out([[1.5, math.inf]], 1022, pa.list_(pa.float64())) == ["{1.5,Infinity}"]
    assert text_out([[True, False]], 1000, pa.list_(pa.bool_())) == ["{t,f}"]
    binary = binary_out([[7, None], []], 1007, pa.list_(pa.int32()))
    assert binary[0] == struct.pack("!iiIii", 1, 1, 23, 2, 1) + struct.pack("!ii", 4, 7) + struct.pack("!i", -1)
    assert binary[1] == struct.pack("!iiI", 0, 0, 23)
    assert T.decode_param(binary[0], 1007, 1) == [7, None]
    # arrays of unknown OID (say, from a catalog query) are printed by their Arrow type
    assert text_out([[1, 2]], 424242, pa.list_(pa.int64())) == ["{1,2}"]


def test_all_null_and_empty_columns() -> None:
    assert text_out(pa.nulls(3), T.INT4) == [None, None, None]
    assert text_out(pa.array([], pa.int32()), T.INT4) == []
    assert text_out(pa.chunked_array([], pa.float64()), T.FLOAT8) == []
    assert text_out(pa.chunked_array([[1, 2], [3]], pa.int64()), T.INT8) == ["1", "2", "3"]


# --------------------------------------------------------------------------- DataRow batches


def reference_data_rows(batch: pa.RecordBatch, columns: list[ColumnDesc], formats: list[int]) -> bytes:
    """The obvious row-by-row construction, to check the vectorised one against."""
    encoded = [encode_column(batch.column(i), c.type_oid, f).to_pylist() for i, (c, f) in enumerate(zip(columns, formats))]
    return b"".join(codec.encode_data_row([col[r] for col in encoded]) for r in range(batch.num_rows))


def reference_value(value: Any, oid: int, fmt: int) -> bytes | None:
    """Per-value encodings, written independently of wire, for the common types."""
    if value is None:
        return None
    if oid == T.INT8:
        return str(value).encode() if fmt == 0 else struct.pack("!q", value)
    if oid == T.INT4:
        return str(value).encode() if fmt == 0 else struct.pack("!i", value)
    if oid == T.FLOAT8:
        return pg_float(value).encode() if fmt == 0 else struct.pack("!d", value)
    if oid == T.BOOL:
        return (b"t" if value else b"f") if fmt == 0 else bytes([value])
    if oid == T.TEXT:
        return value.encode()
    if oid == T.VECTOR:
        if fmt == 0:
            return ("[" + ",".join(pg_float(float(np.float32(v)), single=True) for v in value) + "]").encode()
        return vec_binary(value)
    if oid == T.TIMESTAMPTZ:
        if fmt == 1:
            return struct.pack("!q", (value - dt.datetime(2000, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1))
        text = value.strftime("%Y-%m-%d %H:%M:%S") + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
        return (text + "+00").encode()
    raise AssertionError(oid)


def random_batch(rng: np.random.Generator, n: int) -> tuple[pa.RecordBatch, list[ColumnDesc]]:
    def nulls(arr: pa.Array, p: float) -> pa.Array:
        mask = rng.random(n) < p
        return pa.array(arr.to_pylist(), arr.type, mask=mask) if mask.any() else arr

    words = ["", "a", "héllo", "tab\t", "x" * 300, "\u2603\u2603"]
    vec = rng.standard_normal(n * 4).astype(np.float32) * 10.0 ** rng.integers(-7, 8, n * 4)
    arrays = [
        nulls(pa.array(rng.integers(-(2**62), 2**62, n)), 0.1),
        nulls(pa.array(rng.integers(-(2**31), 2**31, n).astype(np.int32)), 0.0),
        nulls(pa.array(random_floats(rng, n)), 0.2),
        nulls(pa.array(rng.random(n) < 0.5), 0.3),
        nulls(pa.array([words[i] for i in rng.integers(0, len(words), n)]), 0.2),
        nulls(pa.FixedSizeListArray.from_arrays(pa.array(vec), 4), 0.1),
        nulls(pa.array(rng.integers(-10**15, 10**15, n), pa.timestamp("us", tz="UTC")), 0.1),
    ]
    columns = [ColumnDesc("a", T.INT8), ColumnDesc("b", T.INT4), ColumnDesc("c", T.FLOAT8), ColumnDesc("d", T.BOOL),
               ColumnDesc("e", T.TEXT), ColumnDesc("f", T.VECTOR), ColumnDesc("g", T.TIMESTAMPTZ)]
    return pa.record_batch(arrays, names=[c.name for c in columns]), columns


@pytest.mark.parametrize("seed", range(6))
def test_data_rows_equal_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, columns = random_batch(rng, int(rng.integers(1, 400)))
    formats = [int(f) for f in rng.integers(0, 2, len(columns))]
    got = encode_data_rows(batch, columns, formats)
    assert got == reference_data_rows(batch, columns, formats)
    # and the values themselves, against independent per-value encoders
    rows = batch.to_pylist()
    expected = b"".join(
        codec.encode_data_row([reference_value(row[c.name], c.type_oid, f) for c, f in zip(columns, formats)])
        for row in rows
    )
    assert got == expected
    # a slice of the batch encodes like the same rows on their own
    sliced = batch.slice(3)
    assert encode_data_rows(sliced, columns, formats) == reference_data_rows(sliced, columns, formats)


def test_data_rows_fixed_width_fast_path() -> None:
    batch = pa.record_batch([pa.array([1, 2, 3]), pa.array([0.5, 1.5, 2.5])], names=["a", "b"])
    columns = [ColumnDesc("a", T.INT8), ColumnDesc("b", T.FLOAT8)]
    assert encode_data_rows(batch, columns, [1, 1]) == reference_data_rows(batch, columns, [1, 1])
    assert encode_data_rows(batch, columns, [1, 1]) == b"".join(
        codec.encode_data_row([struct.pack("!q", a), struct.pack("!d", b)]) for a, b in [(1, .5), (2, 1.5), (3, 2.5)])


def test_data_rows_edge_shapes() -> None:
    empty = pa.record_batch([pa.array([], pa.int64())], names=["a"])
    assert encode_data_rows(empty, [ColumnDesc("a", T.INT8)], [0]) == b""
    no_columns = pa.RecordBatch.from_pydict({}).slice(0, 0)
    assert encode_data_rows(no_columns, [], []) == b""
    nulls_only = pa.record_batch([pa.nulls(2, pa.int64())], names=["a"])
    assert encode_data_rows(nulls_only, [ColumnDesc("a", T.INT8)], [1]) == codec.encode_data_row([None]) * 2
    with pytest.raises(ValueError):
        encode_data_rows(nulls_only, [], [])


def test_data_rows_many_rows() -> None:
    n = 100_000
    rng = np.random.default_rng(11)
    batch = pa.record_batch([
        pa.array(np.arange(n)), pa.array([f"row {i}" for i in range(n)]), pa.array(rng.standard_normal(n)),
        pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n * 8).astype(np.float32)), 8),
    ], names=list("abcd"))
    columns = [ColumnDesc("a", T.INT8), ColumnDesc("b", T.TEXT), ColumnDesc("c", T.FLOAT8), ColumnDesc("d", T.VECTOR)]
    for formats in ([0, 0, 0, 0], [1, 1, 1, 1]):
        data = encode_data_rows(batch, columns, formats)
        messages = data.count(b"D\x00")  # cheap sanity: every row present and parseable at the ends
        assert messages >= n
        assert data[: len(first := reference_data_rows(batch.slice(0, 5), columns, formats))] == first
        assert data.endswith(reference_data_rows(batch.slice(n - 5), columns, formats))
