"""wire/pgtypes.py: Bind parameters -> Python values, text and binary, with PostgreSQL's errors."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from wire import pgtypes as T
from wire.pgtypes import decode_param
from wire.session import PgError

UTC = dt.UTC


def text(value: str, oid: int) -> Any:
    return decode_param(value.encode(), oid, 0)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == np.float32 and np.array_equal(a, b)
    if isinstance(a, Decimal) and a.is_nan():
        return isinstance(b, Decimal) and b.is_nan()
    return type(a) is type(b) and a == b


TEXT_CASES = [
    # boolin
    (T.BOOL, "t", True), (T.BOOL, "TRUE", True), (T.BOOL, " yes ", True), (T.BOOL, "on", True),
    (T.BOOL, "1", True), (T.BOOL, "y", True), (T.BOOL, "f", False), (T.BOOL, "False", False),
    (T.BOOL, "no", False), (T.BOOL, "off", False), (T.BOOL, "of", False), (T.BOOL, "0", False),
    # int2in / int4in / int8in (PostgreSQL 16: whitespace, +, 0x/0o/0b, separators)
    (T.INT2, "-32768", -32768), (T.INT2, "32767", 32767), (T.INT4, " 42 ", 42), (T.INT4, "+7", 7),
    (T.INT4, "-2147483648", -(2**31)), (T.INT8, "9223372036854775807", 2**63 - 1),
    (T.INT8, "-9223372036854775808", -(2**63)), (T.INT4, "0x1F", 31), (T.INT4, "0o17", 15),
    (T.INT4, "0b101", 5), (T.INT4, "1_000_000", 1_000_000), (T.INT4, "007", 7), (T.INT4, "-0", 0),
    (T.OID, "4294967295", 4294967295), (T.OID, "-1", 4294967295),
    # float8in / float4in
    (T.FLOAT8, "1.5", 1.5), (T.FLOAT8, "-0", -0.0), (T.FLOAT8, "NaN", math.nan), (T.FLOAT8, "Infinity", math.inf),
    (T.FLOAT8, "-Infinity", -math.inf), (T.FLOAT8, "inf", math.inf), (T.FLOAT8, " 1e308 ", 1e308),
    (T.FLOAT8, "4.9e-324", 5e-324), (T.FLOAT8, ".5", 0.5), (T.FLOAT8, "5.", 5.0),
    (T.FLOAT4, "1.1", float(np.float32(1.1))), (T.FLOAT4, "3.4028235e38", float(np.finfo(np.float32).max)),
    (T.FLOAT4, "-0.0", -0.0),
    # numeric_in
    (T.NUMERIC, "1.50", Decimal("1.50")), (T.NUMERIC, "-0.001", Decimal("-0.001")), (T.NUMERIC, "NaN", Decimal("NaN")),
    (T.NUMERIC, "Infinity", Decimal("Infinity")), (T.NUMERIC, "-inf", Decimal("-Infinity")),
    (T.NUMERIC, "1e3", Decimal("1e3")), (T.NUMERIC, " 12345678901234567890.123456789 ",
                                         Decimal("12345678901234567890.123456789")),
    (T.NUMERIC, "1_000.5", Decimal("1000.5")),
    # text-like and unknown
    (T.TEXT, "héllo\tworld", "héllo\tworld"), (T.VARCHAR, "", ""), (T.UNKNOWN, "x", "x"), (0, "[1,2]", "[1,2]"),
    (99999, "anything", "anything"), (T.JSONB, '{"a": [1, 2]}', '{"a": [1, 2]}'), (T.JSON, "3", "3"),
    (T.NAME, "n", "n"), (T.CHAR, "c", "c"),
    # byteain
    (T.BYTEA, "\\x0aff", b"\n\xff"), (T.BYTEA, "\\x", b""), (T.BYTEA, "\\x0A FF", b"\n\xff"),
    (T.BYTEA, "abc\\\\d\\001", b"abc\\d\x01"),
    # date_in / timestamp_in / timestamptz_in (ISO, session TimeZone UTC)
    (T.DATE, "2000-01-01", dt.date(2000, 1, 1)), (T.DATE, "0001-01-01", dt.date(1, 1, 1)),
    (T.DATE, "9999-12-31", dt.date(9999, 12, 31)), (T.DATE, "20240229", dt.date(2024, 2, 29)),
    (T.DATE, " 2024-1-5 ", dt.date(2024, 1, 5)), (T.DATE, "epoch", dt.date(1970, 1, 1)),
    (T.TIMESTAMP, "2000-01-01 00:00:00", dt.datetime(2000, 1, 1)),
    (T.TIMESTAMP, "1999-12-31T23:59:59.999999", dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
    (T.TIMESTAMP, "2024-03-01 12:34", dt.datetime(2024, 3, 1, 12, 34)),
    (T.TIMESTAMP, "2024-03-01 12:34:56.1234565", dt.datetime(2024, 3, 1, 12, 34, 56, 123457)),
    (T.TIMESTAMP, "2024-03-01 12:00:00+05", dt.datetime(2024, 3, 1, 12)),  # offset ignored, as in PostgreSQL
    (T.TIMESTAMP, "2024-03-01 24:00:00", dt.datetime(2024, 3, 2)),
    (T.TIMESTAMP, "2024-03-01", dt.datetime(2024, 3, 1)),
    (T.TIMESTAMPTZ, "2000-01-01 00:00:00+00", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    (T.TIMESTAMPTZ, "2000-01-01 05:30:00+05:30", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    (T.TIMESTAMPTZ, "1999-12-31 19:00:00-0500", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    (T.TIMESTAMPTZ, "2000-01-01T00:00:00Z", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    (T.TIMESTAMPTZ, "2000-01-01 00:00:00", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    (T.TIMESTAMPTZ, "2000-01-01 00:00:00 UTC", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    # uuid_in
    (T.UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    (T.UUID, "A0EEBC999C0B4EF8BB6D6BB9BD380A11", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    (T.UUID, "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    # pgvector's vector_in
    (T.VECTOR, "[1,2,3]", np.array([1, 2, 3], np.float32)),
    (T.VECTOR, " [ 1.5 , -2e-3,0.1 ] ", np.array([1.5, -2e-3, 0.1], np.float32)),
    (T.VECTOR, "[-0]", np.array([-0.0], np.float32)),
    (T.VECTOR, "[" + ",".join(["1"] * 16000) + "]", np.ones(16000, np.float32)),
    # arrays (nice to have)
    (1007, "{1,2,NULL}", [1, 2, None]), (1009, '{a,"b,c","q\\"x",NULL,"NULL"}', ["a", "b,c", 'q"x', None, "NULL"]),
    (1007, "{{1,2},{3,4}}", [[1, 2], [3, 4]]), (1009, "{}", []),
]


@pytest.mark.parametrize(("oid", "value", "expected"), TEXT_CASES, ids=[f"{c[0]}:{c[1][:30]}" for c in TEXT_CASES])
def test_text_parameters(oid: int, value: str, expected: Any) -> None:
    got = text(value, oid)
    assert same(expected, got), (got, expected)


TEXT_ERRORS = [
    (T.BOOL, "maybe", "22P02", 'invalid input syntax for type boolean: "maybe"'),
    (T.BOOL, "o", "22P02", None), (T.BOOL, "", "22P02", None),
    (T.INT4, "12a", "22P02", 'invalid input syntax for type integer: "12a"'),
    (T.INT4, "2147483648", "22003", 'value "2147483648" is out of range for type integer'),
    (T.INT2, "32768", "22003", 'value "32768" is out of range for type smallint'),
    (T.INT8, "9223372036854775808", "22003", None), (T.INT4, "1__0", "22P02", None), (T.INT4, "", "22P02", None),
    (T.INT4, "1.0", "22P02", None),
    (T.FLOAT8, "abc", "22P02", 'invalid input syntax for type double precision: "abc"'),
    (T.FLOAT8, "1e400", "22003", '"1e400" is out of range for type double precision'),
    (T.FLOAT8, "1e-400", "22003", None), (T.FLOAT4, "1e39", "22003", '"1e39" is out of range for type real'),
    (T.FLOAT8, "1_0", "22P02", None),
    (T.NUMERIC, "1.2.3", "22P02", 'invalid input syntax for type numeric: "1.2.3"'), (T.NUMERIC, "", "22P02", None),
    (T.NUMERIC, "sNaN", "22P02", None),
    (T.BYTEA, "\\x0", "22023", "invalid hexadecimal data: odd number of digits"),
    (T.BYTEA, "\\xzz", "22023", 'invalid hexadecimal digit: "z"'), (T.BYTEA, "a\\b", "22P02", None),
    (T.DATE, "2024-02-30", "22008", 'date/time field value out of range: "2024-02-30"'),
    (T.DATE, "yesterday-ish", "22007", 'invalid input syntax for type date: "yesterday-ish"'),
    (T.DATE, "infinity", "22008", None), (T.DATE, "0044-03-15 BC", "22008", None),
    (T.TIMESTAMP, "2024-01-01 25:00", "22008", None), (T.TIMESTAMP, "2024-01-01 10:00 nonsense", "22007", None),
    (T.TIMESTAMPTZ, "2024-01-01 10:00+99", "22007", None),
    (T.UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "22P02", None), (T.UUID, "{a0eebc999c0b4ef8bb6d6bb9bd380a11", "22P02", None),
    (T.VECTOR, "1,2,3", "22P02", 'invalid input syntax for type vector: "1,2,3"'),
    (T.VECTOR, "[1,2", "22P02", None), (T.VECTOR, "[1,,2]", "22P02", None), (T.VECTOR, "[1,a]", "22P02", None),
    (T.VECTOR, "[1,2] x", "22P02", None), (T.VECTOR, "[]", "22000", "vector must have at least 1 dimension"),
    (T.VECTOR, "[1,NaN]", "22000", "NaN not allowed in vector"),
    (T.VECTOR, "[Infinity]", "22000", "infinite value not allowed in vector"),
    (T.VECTOR, "[1e39]", "22000", "infinite value not allowed in vector"),
    (T.VECTOR, "[" + ",".join(["1"] * 16001) + "]", "54000", "vector cannot have more than 16000 dimensions"),
    (1007, "{1,2", "22P02", None), (1007, "{1,x}", "22P02", None),
]


@pytest.mark.parametrize(("oid", "value", "sqlstate", "message"), TEXT_ERRORS,
                         ids=[f"{c[0]}:{c[1][:20]}" for c in TEXT_ERRORS])
def test_text_parameter_errors(oid: int, value: str, sqlstate: str, message: str | None) -> None:
    with pytest.raises(PgError) as exc:
        text(value, oid)
    assert exc.value.sqlstate == sqlstate
    if message is not None:
        assert exc.value.message == message


def test_vector_error_detail_names_the_problem() -> None:
    with pytest.raises(PgError) as exc:
        text("1,2", T.VECTOR)
    assert exc.value.detail == 'Vector contents must start with "[".'
    with pytest.raises(PgError) as exc:
        text("[1] junk", T.VECTOR)
    assert exc.value.detail == "Junk after closing right brace."


def vec_bytes(values: list[float], dim: int | None = None, unused: int = 0) -> bytes:
    return struct.pack("!hh", len(values) if dim is None else dim, unused) + struct.pack(f"!{len(values)}f", *values)


def numeric_bytes(ndigits: int, weight: int, sign: int, dscale: int, *digits: int) -> bytes:
    return struct.pack(f"!hhHH{len(digits)}h", ndigits, weight, sign, dscale, *digits)


BINARY_CASES = [
    (T.BOOL, b"\x01", True), (T.BOOL, b"\x00", False),
    (T.INT2, struct.pack("!h", -32768), -32768), (T.INT4, struct.pack("!i", 2**31 - 1), 2**31 - 1),
    (T.INT8, struct.pack("!q", -(2**63)), -(2**63)), (T.OID, struct.pack("!I", 4294967295), 4294967295),
    (T.FLOAT4, struct.pack("!f", 1.5), 1.5), (T.FLOAT8, struct.pack("!d", -0.0), -0.0),
    (T.FLOAT8, struct.pack("!d", math.inf), math.inf), (T.FLOAT8, struct.pack("!d", math.nan), math.nan),
    (T.TEXT, "é".encode(), "é"), (T.VARCHAR, b"", ""), (T.JSON, b"[1]", "[1]"), (T.JSONB, b"\x01{}", "{}"),
    (T.BYTEA, b"\x00\xff", b"\x00\xff"), (T.UNKNOWN, b"u", "u"),
    (T.DATE, struct.pack("!i", 0), dt.date(2000, 1, 1)), (T.DATE, struct.pack("!i", -1), dt.date(1999, 12, 31)),
    (T.DATE, struct.pack("!i", -730119), dt.date(1, 1, 1)), (T.DATE, struct.pack("!i", 2921939), dt.date(9999, 12, 31)),
    (T.TIMESTAMP, struct.pack("!q", 0), dt.datetime(2000, 1, 1)),
    (T.TIMESTAMP, struct.pack("!q", -1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
    (T.TIMESTAMPTZ, struct.pack("!q", 86_400_000_001), dt.datetime(2000, 1, 2, 0, 0, 0, 1, tzinfo=UTC)),
    (T.UUID, bytes(range(16)), uuid.UUID(bytes=bytes(range(16)))),
    (T.NUMERIC, numeric_bytes(2, 0, 0, 2, 1, 5000), Decimal("1.50")),
    (T.NUMERIC, numeric_bytes(0, 0, 0, 0), Decimal(0)),
    (T.NUMERIC, numeric_bytes(0, 0, 0, 3), Decimal("0.000")),
    (T.NUMERIC, numeric_bytes(1, -1, 0x4000, 4, 12), Decimal("-0.0012")),
    (T.NUMERIC, numeric_bytes(1, 2, 0, 0, 1), Decimal(100000000)),
    (T.NUMERIC, numeric_bytes(0, 0, 0xC000, 0), Decimal("NaN")),
    (T.NUMERIC, numeric_bytes(0, 0, 0xD000, 0), Decimal("Infinity")),
    (T.NUMERIC, numeric_bytes(0, 0, 0xF000, 0), Decimal("-Infinity")),
    (T.VECTOR, vec_bytes([1, -2.5, 0]), np.array([1, -2.5, 0], np.float32)),
    (T.VECTOR, vec_bytes([0.0] * 16000), np.zeros(16000, np.float32)),
    (1007, struct.pack("!iiIii", 1, 1, 23, 3, 1) + struct.pack("!ii", 4, 7) + struct.pack("!i", -1)
     + struct.pack("!ii", 4, -1), [7, None, -1]),
    (1009, struct.pack("!iiI", 0, 0, 25), []),
]


@pytest.mark.parametrize(("oid", "data", "expected"), BINARY_CASES, ids=[f"{c[0]}:{c[1][:12].hex()}" for c in BINARY_CASES])
def test_binary_parameters(oid: int, data: bytes, expected: Any) -> None:
    got = decode_param(data, oid, 1)
    assert same(expected, got), (got, expected)


BINARY_ERRORS = [
    (T.INT4, b"\x00\x00\x01", "08P01"), (T.INT4, b"\x00" * 5, "22P03"), (T.INT8, b"", "08P01"),
    (T.BOOL, b"", "08P01"), (T.FLOAT8, b"\x00" * 4, "08P01"), (T.UUID, b"\x00" * 15, "08P01"),
    (T.JSONB, b"\x02{}", "22P03"), (T.TEXT, b"\xff", "22021"),
    (T.VECTOR, vec_bytes([1, 2], dim=3), "08P01"), (T.VECTOR, vec_bytes([1, 2], dim=1), "22P03"),
    (T.VECTOR, vec_bytes([1], unused=1), "22000"), (T.VECTOR, vec_bytes([math.nan]), "22000"),
    (T.VECTOR, vec_bytes([math.inf]), "22000"), (T.VECTOR, struct.pack("!hh", 0, 0), "22000"),
    (T.VECTOR, b"\x00", "08P01"),
    (T.NUMERIC, numeric_bytes(1, 0, 0, 0, 10000), "22P03"), (T.NUMERIC, numeric_bytes(1, 0, 0x1234, 0, 1), "22P03"),
    (T.NUMERIC, numeric_bytes(2, 0, 0, 0, 1), "08P01"),
    (T.DATE, struct.pack("!i", 2**31 - 1), "22008"), (T.TIMESTAMP, struct.pack("!q", 2**63 - 1), "22008"),
    (1007, struct.pack("!iiIii", 1, 0, 25, 1, 1) + struct.pack("!i", 1) + b"x", "42804"),
    (1007, struct.pack("!iiIii", 1, 0, 23, 2, 1) + struct.pack("!ii", 4, 1), "08P01"),
    (99999, b"x", "42883"),
]


@pytest.mark.parametrize(("oid", "data", "sqlstate"), BINARY_ERRORS, ids=[f"{c[0]}:{c[1][:12].hex()}" for c in BINARY_ERRORS])
def test_binary_parameter_errors(oid: int, data: bytes, sqlstate: str) -> None:
    with pytest.raises(PgError) as exc:
        decode_param(data, oid, 1)
    assert exc.value.sqlstate == sqlstate


def test_null_and_format_codes() -> None:
    assert decode_param(None, T.INT4, 0) is None
    assert decode_param(None, T.VECTOR, 1) is None
    with pytest.raises(PgError) as exc:
        decode_param(b"1", T.INT4, 2)
    assert exc.value.sqlstate == "22023"
    with pytest.raises(PgError) as exc:
        decode_param(b"a\x00b", T.TEXT, 0)
    assert exc.value.sqlstate == "22021"


@pytest.mark.parametrize("value", ["0", "0.00", "1.50", "-12345.678", "1e10", "0.0001", "-0.00012", "9999", "10000",
                                   "123456789012345678901234567890.000000001", "1E-20", "NaN", "Infinity", "-Infinity"])
def test_numeric_binary_roundtrip(value: str) -> None:
    d = Decimal(value)
    back = T.numeric_from_binary(T.numeric_to_binary(d))
    if d.is_nan():
        assert back.is_nan()
        return
    assert back == d
    if d.is_finite():  # the display scale survives: 1.50 stays 1.50, 1e10 has scale 0
        assert back.as_tuple().exponent == min(0, d.as_tuple().exponent)


def test_numeric_binary_matches_postgresql_layout() -> None:
    # numeric_send of 1.50, -12345.678 and 0.0001 (checked against PostgreSQL's format).
    assert T.numeric_to_binary(Decimal("1.50")) == numeric_bytes(2, 0, 0, 2, 1, 5000)
    assert T.numeric_to_binary(Decimal("-12345.678")) == numeric_bytes(3, 1, 0x4000, 3, 1, 2345, 6780)
    assert T.numeric_to_binary(Decimal("0.0001")) == numeric_bytes(1, -1, 0, 4, 1)
    assert T.numeric_to_binary(Decimal(10000)) == numeric_bytes(1, 1, 0, 0, 1)


def test_type_names_and_sizes() -> None:
    assert T.type_name(T.INT4) == "integer" and T.type_name(1007) == "integer[]"
    assert T.type_size(T.INT8) == 8 and T.type_size(T.TEXT) == -1 and T.type_size(123456) == -1
    assert T.ARRAY_ELEMENT[T.VECTOR_ARRAY] == T.VECTOR
