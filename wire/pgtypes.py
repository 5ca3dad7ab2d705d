"""PostgreSQL types on the wire: OIDs, and decoding of Bind parameters (text and binary).

Parameters arrive one value at a time and are few, so they are decoded with plain Python (plus
numpy for vectors). Result columns go the other way, column-at-a-time and vectorised, in
:mod:`wire.column_encoding`; :func:`encode_column` and :func:`encode_data_rows` are re-exported
here so that all value codecs can be imported from one place.

Text formats follow each type's input function in PostgreSQL 16 (``boolin``, ``int4in``,
``float8in``, ``date_in``...) and pgvector's ``vector_in``; binary formats follow the ``*_recv``
functions: https://www.postgresql.org/docs/16/protocol-overview.html#PROTOCOL-FORMAT-CODES
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import numpy as np

from wire.session import PgError

# --------------------------------------------------------------------------- OIDs

BOOL = 16
BYTEA = 17
CHAR = 18
NAME = 19
INT8 = 20
INT2 = 21
INT2VECTOR = 22
INT4 = 23
REGPROC = 24
TEXT = 25
OID = 26
XID = 28
CID = 29
OIDVECTOR = 30
JSON = 114
FLOAT4 = 700
FLOAT8 = 701
UNKNOWN = 705
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
NUMERIC = 1700
REGCLASS = 2205
REGTYPE = 2206
UUID = 2950
JSONB = 3802
# pgvector's types get their OIDs at CREATE EXTENSION time; sqlvec fixes them.
VECTOR = 16385
VECTOR_ARRAY = 16386

VECTOR_MAX_DIM = 16000  # pgvector's VECTOR_MAX_DIM

# Seconds between the Unix epoch and PostgreSQL's (2000-01-01), and the same in days.
PG_EPOCH_UNIX_SECONDS = 946_684_800
PG_EPOCH_UNIX_DAYS = 10_957


@dataclass(frozen=True)
class PgTypeInfo:
    name: str  # SQL name used in error messages ("integer", "double precision")
    oid: int
    typlen: int  # pg_type.typlen, -1 varlena, -2 cstring
    array_oid: int = 0


_TYPE_LIST = (
    PgTypeInfo("boolean", BOOL, 1, 1000),
    PgTypeInfo("bytea", BYTEA, -1, 1001),
    PgTypeInfo('"char"', CHAR, 1, 1002),
    PgTypeInfo("name", NAME, 64, 1003),
    PgTypeInfo("bigint", INT8, 8, 1016),
    PgTypeInfo("smallint", INT2, 2, 1005),
    PgTypeInfo("int2vector", INT2VECTOR, -1, 1006),
    PgTypeInfo("integer", INT4, 4, 1007),
    PgTypeInfo("regproc", REGPROC, 4, 1008),
    PgTypeInfo("text", TEXT, -1, 1009),
    PgTypeInfo("oid", OID, 4, 1028),
    PgTypeInfo("xid", XID, 4, 1011),
    PgTypeInfo("cid", CID, 4, 1012),
    PgTypeInfo("oidvector", OIDVECTOR, -1, 1013),
    PgTypeInfo("json", JSON, -1, 199),
    PgTypeInfo("real", FLOAT4, 4, 1021),
    PgTypeInfo("double precision", FLOAT8, 8, 1022),
    PgTypeInfo("unknown", UNKNOWN, -2, 0),
    PgTypeInfo("character", BPCHAR, -1, 1014),
    PgTypeInfo("character varying", VARCHAR, -1, 1015),
    PgTypeInfo("date", DATE, 4, 1182),
    PgTypeInfo("time without time zone", TIME, 8, 1183),
    PgTypeInfo("timestamp without time zone", TIMESTAMP, 8, 1115),
    PgTypeInfo("timestamp with time zone", TIMESTAMPTZ, 8, 1185),
    PgTypeInfo("interval", INTERVAL, 16, 1187),
    PgTypeInfo("numeric", NUMERIC, -1, 1231),
    PgTypeInfo("regclass", REGCLASS, 4, 2210),
    PgTypeInfo("regtype", REGTYPE, 4, 2211),
    PgTypeInfo("uuid", UUID, 16, 2951),
    PgTypeInfo("jsonb", JSONB, -1, 3807),
    PgTypeInfo("vector", VECTOR, -1, VECTOR_ARRAY),
)
TYPES: dict[int, PgTypeInfo] = {t.oid: t for t in _TYPE_LIST}
# array OID -> element OID
ARRAY_ELEMENT: dict[int, int] = {t.array_oid: t.oid for t in _TYPE_LIST if t.array_oid}
for _elem in ARRAY_ELEMENT.items():
    TYPES[_elem[0]] = PgTypeInfo(TYPES[_elem[1]].name + "[]", _elem[0], -1)

TEXT_LIKE = frozenset({TEXT, VARCHAR, BPCHAR, NAME, CHAR, UNKNOWN, JSON, 0})
INTEGER_BITS = {INT2: 16, INT4: 32, INT8: 64}
# Types whose values are unsigned 32-bit object identifiers.
OID_LIKE = frozenset({OID, REGPROC, REGCLASS, REGTYPE, XID, CID})


def type_name(oid: int) -> str:
    info = TYPES.get(oid)
    return info.name if info else f"oid {oid}"


def type_size(oid: int) -> int:
    """pg_type.typlen for RowDescription (-1 where unknown)."""
    info = TYPES.get(oid)
    return info.typlen if info else -1


# --------------------------------------------------------------------------- errors


def _syntax(type_label: str, text: str, *, sqlstate: str = "22P02", detail: str | None = None) -> PgError:
    return PgError(sqlstate, f'invalid input syntax for type {type_label}: "{text}"', detail=detail)


def _out_of_range(text: str, type_label: str) -> PgError:
    return PgError("22003", f'value "{text}" is out of range for type {type_label}')


def insufficient_data() -> PgError:
    return PgError("08P01", "insufficient data left in message")


def bad_binary(detail: str | None = None) -> PgError:
    return PgError("22P03", "incorrect binary data format", detail=detail)


# --------------------------------------------------------------------------- text parsers

_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")


def parse_bool(text: str) -> bool:
    """boolin: any prefix of true/false/yes/no, on/off (2+ chars), 1/0; case-insensitive, trimmed."""
    s = text.strip().lower()
    if s:
        if s == "1":
            return True
        if s == "0":
            return False
        if s[0] == "o":
            if len(s) >= 2 and "on".startswith(s):
                return True
            if len(s) >= 2 and "off".startswith(s):
                return False
        else:
            for word in _TRUE_WORDS[:2]:
                if word.startswith(s):
                    return True
            for word in _FALSE_WORDS[:2]:
                if word.startswith(s):
                    return False
    raise _syntax("boolean", text)


_INT_RE = re.compile(
    r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|[0-9](?:_?[0-9])*)"
)


def parse_int(text: str, bits: int = 64, type_label: str = "bigint") -> int:
    """int2in/int4in/int8in, including PostgreSQL 16's 0x/0o/0b prefixes and digit separators."""
    s = text.strip()
    if not _INT_RE.fullmatch(s):
        raise _syntax(type_label, text)
    digits = s.replace("_", "")
    prefixed = digits.lstrip("+-")[1:2] in ("x", "X", "o", "O", "b", "B")
    value = int(digits, 0 if prefixed else 10)
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise _out_of_range(text, type_label)
    return value


def parse_oid(text: str) -> int:
    """oidin: an unsigned 32-bit number (negative input wraps, as in PostgreSQL)."""
    s = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise _syntax("oid", text)
    value = int(s)
    if not -(1 << 31) <= value < (1 << 32):
        raise _out_of_range(text, "oid")
    return value & 0xFFFFFFFF


_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_float(text: str, *, single: bool = False) -> float:
    """float8in / float4in: decimal or exponent notation, NaN, [+-]Infinity; out of range -> 22003."""
    label = "real" if single else "double precision"
    s = text.strip()
    if not _FLOAT_RE.fullmatch(s):
        raise _syntax(label, text)
    value = float(s)
    if math.isinf(value) and "inf" not in s.lower():
        raise PgError("22003", f'"{text}" is out of range for type {label}')
    if single and math.isfinite(value):
        with np.errstate(over="ignore"):
            value32 = float(np.float32(value))
        if math.isinf(value32) or (value32 == 0.0 and _has_nonzero_digit(s)):
            raise PgError("22003", f'"{text}" is out of range for type {label}')
        return value32
    if value == 0.0 and _has_nonzero_digit(s):
        raise PgError("22003", f'"{text}" is out of range for type {label}')
    return value


def _has_nonzero_digit(s: str) -> bool:
    mantissa = re.split(r"[eE]", s, maxsplit=1)[0]
    return any(c in "123456789" for c in mantissa)


_NUMERIC_RE = re.compile(r"[+-]?(?:(?:[0-9](?:_?[0-9])*)?\.?(?:[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9]+)?)")


def parse_numeric(text: str) -> Decimal:
    """numeric_in: exact decimal (digit separators allowed), NaN, [+-]Infinity."""
    s = text.strip()
    low = s.lower()
    if low == "nan":
        return Decimal("NaN")
    if low.lstrip("+-") in ("infinity", "inf"):
        return Decimal("-Infinity") if low.startswith("-") else Decimal("Infinity")
    if not s or not _NUMERIC_RE.fullmatch(s) or not any(c.isdigit() for c in s.split("e")[0].split("E")[0]):
        raise _syntax("numeric", text)
    try:
        return Decimal(s.replace("_", ""))
    except InvalidOperation:
        raise _syntax("numeric", text) from None


def parse_bytea(text: str) -> bytes:
    """byteain: hex format ``\\x0a0b`` (whitespace between digit pairs allowed) or escape format."""
    if text.startswith("\\x"):
        digits = re.sub(r"[ \t\n\r]", "", text[2:])
        if len(digits) % 2:
            raise PgError("22023", "invalid hexadecimal data: odd number of digits")
        try:
            return bytes.fromhex(digits)
        except ValueError:
            bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
            raise PgError("22023", f'invalid hexadecimal digit: "{bad}"') from None
    out = bytearray()
    raw = text.encode("utf-8")
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != 0x5C:
            out.append(c)
            i += 1
        elif raw[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif re.fullmatch(rb"[0-3][0-7][0-7]", raw[i + 1 : i + 4]):
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            raise _syntax("bytea", text)
    return bytes(out)


_DATE_RE = re.compile(r"(\d{4,})-(\d{1,2})-(\d{1,2})|(\d{4})(\d{2})(\d{2})")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d*))?)?")
_TZ_RE = re.compile(r"(?:z|utc|gmt|(?:[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?))", re.IGNORECASE)


def _split_datetime(text: str, type_label: str) -> tuple[re.Match[str], re.Match[str] | None, str, bool]:
    s = text.strip()
    bc = False
    if s.upper().endswith(" BC"):
        bc = True
        s = s[:-3].rstrip()
    m = _DATE_RE.match(s)
    if not m:
        raise _syntax(type_label, text, sqlstate="22007")
    rest = s[m.end() :]
    tm = None
    if rest[:1] in (" ", "T", "t"):
        tm = _TIME_RE.match(rest.lstrip(" Tt"))
        if tm is None:
            raise _syntax(type_label, text, sqlstate="22007")
        rest = rest.lstrip(" Tt")[tm.end() :]
    return m, tm, rest.strip(), bc


def _ymd(m: re.Match[str]) -> tuple[int, int, int]:
    if m.group(1) is not None:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return int(m.group(4)), int(m.group(5)), int(m.group(6))


def _make_date(m: re.Match[str], text: str, type_label: str, bc: bool) -> dt.date:
    year, month, day = _ymd(m)
    if bc or year > 9999 or year < 1:
        # Valid in PostgreSQL, but not representable as a Python date.
        raise PgError("22008", f'{"date" if type_label == "date" else "timestamp"} out of range: "{text}"')
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise PgError("22008", f'date/time field value out of range: "{text}"') from None


_SPECIAL_DATES = {"epoch": dt.date(1970, 1, 1)}


def parse_date(text: str) -> dt.date:
    """date_in for ISO dates (``YYYY-MM-DD``, ``YYYYMMDD``, optionally followed by a time)."""
    low = text.strip().lower()
    if low in _SPECIAL_DATES:
        return _SPECIAL_DATES[low]
    if low in ("infinity", "-infinity", "+infinity"):
        raise PgError("22008", f'date out of range: "{text}"', detail="Infinite dates have no Python value.")
    m, _tm, rest, bc = _split_datetime(text, "date")
    if rest and not _TZ_RE.fullmatch(rest):
        raise _syntax("date", text, sqlstate="22007")
    return _make_date(m, text, "date", bc)


def _tz_offset(tz: str) -> dt.timedelta:
    if tz.lower() in ("z", "utc", "gmt"):
        return dt.timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    if len(digits) <= 2:
        h, mnt, sec = int(digits), 0, 0
    else:
        h = int(digits[:-2]) if len(digits) in (3, 4) else int(digits[:-4])
        mnt = int(digits[-2:]) if len(digits) in (3, 4) else int(digits[-4:-2])
        sec = 0 if len(digits) in (3, 4) else int(digits[-2:])
    if h > 15 or mnt > 59 or sec > 59:
        raise ValueError(tz)
    return sign * dt.timedelta(hours=h, minutes=mnt, seconds=sec)


def parse_timestamp(text: str, *, with_tz: bool = False) -> dt.datetime:
    """timestamp_in / timestamptz_in for ISO input.

    timestamptz -> aware datetime in UTC (input without an offset is in the session TimeZone,
    which sqlvec fixes to UTC); timestamp -> naive datetime, any offset given is ignored.
    Fractions beyond microseconds are rounded, as PostgreSQL does.
    """
    label = "timestamp with time zone" if with_tz else "timestamp"
    low = text.strip().lower()
    if low == "epoch":
        base = dt.datetime(1970, 1, 1)
        return base.replace(tzinfo=dt.UTC) if with_tz else base
    if low in ("infinity", "-infinity", "+infinity"):
        raise PgError("22008", f'timestamp out of range: "{text}"', detail="Infinite timestamps have no Python value.")
    m, tm, rest, bc = _split_datetime(text, label)
    offset = dt.timedelta(0)
    if rest:
        if not _TZ_RE.fullmatch(rest):
            raise _syntax(label, text, sqlstate="22007")
        try:
            offset = _tz_offset(rest)
        except ValueError:
            raise _syntax(label, text, sqlstate="22007") from None
    day = _make_date(m, text, label, bc)
    micros = 0
    if tm is not None:
        hour, minute = int(tm.group(1)), int(tm.group(2))
        second = int(tm.group(3) or 0)
        frac = tm.group(4) or ""
        if hour > 24 or minute > 59 or second > 60 or (hour == 24 and (minute or second or frac.strip("0"))):
            raise PgError("22008", f'date/time field value out of range: "{text}"')
        micros = int((frac + "000000")[:6]) + (1 if frac[6:7] >= "5" else 0)
        micros += ((hour * 60 + minute) * 60 + second) * 1_000_000
    try:
        value = dt.datetime.combine(day, dt.time()) + dt.timedelta(microseconds=micros)
        if with_tz:
            value = (value - offset).replace(tzinfo=dt.UTC)
    except OverflowError:
        raise PgError("22008", f'timestamp out of range: "{text}"') from None
    return value


_UUID_RE = re.compile(r"\{?(?:[0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4}\}?")


def parse_uuid(text: str) -> uuid.UUID:
    """uuid_in: 32 hex digits, optionally hyphenated after any group of four, optionally in braces."""
    s = text.strip()
    if not _UUID_RE.fullmatch(s) or (s.startswith("{") != s.endswith("}")):
        raise _syntax("uuid", text)
    return uuid.UUID(s.strip("{}").replace("-", ""))


_VECTOR_ELEMENT = r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\s*"
_VECTOR_RE = re.compile(rf"\s*\[(?:{_VECTOR_ELEMENT})(?:,{_VECTOR_ELEMENT})*\]\s*", re.IGNORECASE)


def check_vector_values(values: np.ndarray) -> None:
    """pgvector's CheckElement for a whole vector (NaN and infinities are not allowed)."""
    if not np.isfinite(values).all():
        if np.isnan(values).any():
            raise PgError("22000", "NaN not allowed in vector")
        raise PgError("22000", "infinite value not allowed in vector")


def parse_vector(text: str) -> np.ndarray:
    """pgvector's vector_in: ``[1,2.5,-3e-2]`` -> float32 array (whitespace allowed around elements)."""
    if not _VECTOR_RE.fullmatch(text):
        s = text.strip()
        if not s.startswith("["):
            raise _syntax("vector", text, detail='Vector contents must start with "[".')
        if re.fullmatch(r"\[\s*\]", s):
            raise PgError("22000", "vector must have at least 1 dimension")
        if re.fullmatch(rf"\[(?:{_VECTOR_ELEMENT})(?:,{_VECTOR_ELEMENT})*\].*", s, re.IGNORECASE | re.DOTALL):
            raise _syntax("vector", text, detail="Junk after closing right brace.")
        raise _syntax("vector", text)
    inner = text[text.index("[") + 1 : text.rindex("]")]
    count = inner.count(",") + 1
    if count > VECTOR_MAX_DIM:
        raise PgError("54000", f"vector cannot have more than {VECTOR_MAX_DIM} dimensions")
    with np.errstate(over="ignore"):
        # The regular expression above has checked every element, so numpy's C parser (which would
        # stop quietly at a bad one) sees only numbers; 10x faster than float() per element.
        values = np.fromstring(inner, dtype=np.float64, sep=",").astype(np.float32)
    if len(values) != count:
        raise _syntax("vector", text)
    check_vector_values(values)
    return values


def _parse_json(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as exc:
        raise _syntax("json", text[:200], detail=str(exc)) from None
    return text


# --------------------------------------------------------------------------- array text format


def split_array_text(text: str) -> list[Any]:
    """array_in for the common forms: ``{1,2,NULL,"a \\"b\\""}`` and nested braces.

    Returns nested lists of str (or None for NULL elements).
    """
    s = text.strip()
    if s.startswith("[") and "=" in s:  # explicit bounds like [0:2]={1,2,3}
        s = s[s.index("=") + 1 :].strip()
    pos = 0

    def fail() -> PgError:
        return PgError("22P02", f'malformed array literal: "{text}"')

    def parse_level() -> list[Any]:
        nonlocal pos
        if pos >= len(s) or s[pos] != "{":
            raise fail()
        pos += 1
        items: list[Any] = []
        expect_item = True
        while True:
            while pos < len(s) and s[pos].isspace():
                pos += 1
            if pos >= len(s):
                raise fail()
            c = s[pos]
            if c == "}":
                if expect_item and items:
                    raise fail()
                pos += 1
                return items
            if not expect_item:
                if c != ",":
                    raise fail()
                pos += 1
                expect_item = True
                continue
            if c == "{":
                items.append(parse_level())
            elif c == '"':
                pos += 1
                buf = []
                while True:
                    if pos >= len(s):
                        raise fail()
                    ch = s[pos]
                    if ch == "\\":
                        pos += 1
                        if pos >= len(s):
                            raise fail()
                        buf.append(s[pos])
                    elif ch == '"':
                        pos += 1
                        break
                    else:
                        buf.append(ch)
                    pos += 1
                items.append("".join(buf))
            else:
                buf = []
                while pos < len(s) and s[pos] not in ",}":
                    if s[pos] == "\\":
                        pos += 1
                        if pos >= len(s):
                            raise fail()
                    elif s[pos] in '{"':
                        raise fail()
                    buf.append(s[pos])
                    pos += 1
                word = "".join(buf).strip()
                items.append(None if word.upper() == "NULL" else word)
            expect_item = False

    result = parse_level()
    if s[pos:].strip():
        raise fail()
    return result


def parse_array(text: str, element_oid: int) -> list[Any]:
    def convert(items: list[Any]) -> list[Any]:
        return [
            convert(v) if isinstance(v, list) else None if v is None else decode_text(v, element_oid)
            for v in items
        ]

    return convert(split_array_text(text))


# --------------------------------------------------------------------------- decoding dispatch

_TEXT_DECODERS: dict[int, Callable[[str], Any]] = {
    BOOL: parse_bool,
    INT2: lambda s: parse_int(s, 16, "smallint"),
    INT4: lambda s: parse_int(s, 32, "integer"),
    INT8: lambda s: parse_int(s, 64, "bigint"),
    OID: parse_oid,
    REGPROC: parse_oid,
    REGCLASS: parse_oid,
    REGTYPE: parse_oid,
    XID: parse_oid,
    CID: parse_oid,
    FLOAT4: lambda s: parse_float(s, single=True),
    FLOAT8: parse_float,
    NUMERIC: parse_numeric,
    DATE: parse_date,
    TIMESTAMP: parse_timestamp,
    TIMESTAMPTZ: lambda s: parse_timestamp(s, with_tz=True),
    UUID: parse_uuid,
    VECTOR: parse_vector,
    BYTEA: parse_bytea,
    JSON: _parse_json,
    JSONB: _parse_json,
}


def decode_text(text: str, oid: int) -> Any:
    """One value in text format -> the Python value wire/session.py documents for ``oid``."""
    decoder = _TEXT_DECODERS.get(oid)
    if decoder is not None:
        return decoder(text)
    element = ARRAY_ELEMENT.get(oid)
    if element is not None:
        return parse_array(text, element)
    return text


def _exact(data: bytes, size: int) -> bytes:
    if len(data) < size:
        raise insufficient_data()
    if len(data) > size:
        raise bad_binary()
    return data


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PgError(
            "22021", f'invalid byte sequence for encoding "UTF8": 0x{data[exc.start:exc.start + 1].hex()}'
        ) from None


def _recv_bool(data: bytes) -> bool:
    return _exact(data, 1)[0] != 0


def _recv_date(data: bytes) -> dt.date:
    (days,) = struct.unpack("!i", _exact(data, 4))
    try:
        return dt.date(2000, 1, 1) + dt.timedelta(days=days)
    except OverflowError:
        raise PgError("22008", "date out of range", detail=f"{days} days from 2000-01-01") from None


def _recv_timestamp(data: bytes, with_tz: bool) -> dt.datetime:
    (micros,) = struct.unpack("!q", _exact(data, 8))
    try:
        value = dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise PgError("22008", "timestamp out of range", detail=f"{micros} microseconds from 2000-01-01") from None
    return value.replace(tzinfo=dt.UTC) if with_tz else value


NUMERIC_POS = 0x0000
NUMERIC_NEG = 0x4000
NUMERIC_NAN = 0xC000
NUMERIC_PINF = 0xD000
NUMERIC_NINF = 0xF000


def numeric_from_binary(data: bytes) -> Decimal:
    """numeric_recv: int16 ndigits, int16 weight, uint16 sign, uint16 dscale, ndigits base-10000 int16."""
    if len(data) < 8:
        raise insufficient_data()
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHH", data)
    if ndigits < 0 or len(data) < 8 + 2 * ndigits:
        raise insufficient_data()
    if len(data) > 8 + 2 * ndigits:
        raise bad_binary()
    if sign == NUMERIC_NAN:
        return Decimal("NaN")
    if sign == NUMERIC_PINF:
        return Decimal("Infinity")
    if sign == NUMERIC_NINF:
        return Decimal("-Infinity")
    if sign not in (NUMERIC_POS, NUMERIC_NEG):
        raise PgError("22P03", 'invalid sign in external "numeric" value')
    if dscale > 0x3FFF:
        raise PgError("22P03", 'invalid scale in external "numeric" value')
    digits = struct.unpack_from(f"!{ndigits}h", data, 8)
    if any(d < 0 or d >= 10000 for d in digits):
        raise PgError("22P03", 'invalid digit in external "numeric" value')
    text = "".join(f"{d:04d}" for d in digits) or "0"
    exponent = (weight - ndigits + 1) * 4
    value = Decimal((1 if sign == NUMERIC_NEG else 0, tuple(int(c) for c in text), exponent))
    # The display scale is part of the value: 1.50 stays 1.50.
    if value.as_tuple().exponent != -dscale:
        ctx = Context(prec=max(1, len(text) + abs(exponent) + dscale + 1))
        value = value.quantize(Decimal(1).scaleb(-dscale, ctx), context=ctx)
    return value


def numeric_to_binary(value: Decimal) -> bytes:
    """numeric_send for one Decimal (display scale = digits after the point, at least 0)."""
    if value.is_nan():
        return struct.pack("!hhHH", 0, 0, NUMERIC_NAN, 0)
    if value.is_infinite():
        return struct.pack("!hhHH", 0, 0, NUMERIC_NINF if value < 0 else NUMERIC_PINF, 0)
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    digits = "".join(map(str, digit_tuple))
    if exponent >= 0:
        int_part, frac_part = digits + "0" * exponent, ""
    else:
        digits = digits.rjust(dscale + 1, "0")
        int_part, frac_part = digits[:-dscale], digits[-dscale:]
    int_part = int_part.rjust(-(-len(int_part) // 4) * 4, "0")
    frac_part = frac_part.ljust(-(-len(frac_part) // 4) * 4, "0")
    all_digits = int_part + frac_part
    groups = [int(all_digits[i : i + 4]) for i in range(0, len(all_digits), 4)]
    weight = len(int_part) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHH{len(groups)}h", len(groups), weight, NUMERIC_NEG if sign else NUMERIC_POS,
                       dscale, *groups)


def _recv_vector(data: bytes) -> np.ndarray:
    if len(data) < 4:
        raise insufficient_data()
    dim, unused = struct.unpack_from("!hh", data)
    if dim < 1:
        raise PgError("22000", "vector must have at least 1 dimension")
    if dim > VECTOR_MAX_DIM:
        raise PgError("54000", f"vector cannot have more than {VECTOR_MAX_DIM} dimensions")
    if unused != 0:
        raise PgError("22000", f"expected unused to be 0, not {unused}")
    if len(data) < 4 + 4 * dim:
        raise insufficient_data()
    if len(data) > 4 + 4 * dim:
        raise bad_binary()
    values = np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)
    check_vector_values(values)
    return values


def _recv_jsonb(data: bytes) -> str:
    if not data:
        raise insufficient_data()
    if data[0] != 1:
        raise PgError("22P03", f"unsupported jsonb version number {data[0]}")
    return _utf8(data[1:])


def _recv_uuid(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=_exact(data, 16))


def _recv_array(data: bytes, expected_element: int) -> list[Any]:
    if len(data) < 12:
        raise insufficient_data()
    ndim, flags, element_oid = struct.unpack_from("!iiI", data)
    if ndim < 0 or ndim > 6:
        raise PgError("22P03", f"invalid number of dimensions: {ndim}")
    if flags not in (0, 1):
        raise PgError("22P03", "invalid array flags")
    if element_oid != expected_element:
        raise PgError("42804", "binary data has array element type "
                      f"{element_oid} ({type_name(element_oid)}) instead of expected "
                      f"{expected_element} ({type_name(expected_element)})")
    pos = 12
    dims = []
    for _ in range(ndim):
        if len(data) < pos + 8:
            raise insufficient_data()
        size, _lower = struct.unpack_from("!ii", data, pos)
        if size < 0:
            raise PgError("22P03", "invalid array dimension")
        dims.append(size)
        pos += 8
    total = math.prod(dims) if dims else 0
    flat: list[Any] = []
    for _ in range(total):
        if len(data) < pos + 4:
            raise insufficient_data()
        (size,) = struct.unpack_from("!i", data, pos)
        pos += 4
        if size == -1:
            flat.append(None)
            continue
        if size < 0 or len(data) < pos + size:
            raise insufficient_data()
        flat.append(decode_binary(data[pos : pos + size], element_oid))
        pos += size
    if pos != len(data):
        raise bad_binary()

    def nest(items: list[Any], shape: list[int]) -> list[Any]:
        if len(shape) <= 1:
            return items
        step = len(items) // shape[0] if shape[0] else 0
        return [nest(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]

    return nest(flat, dims)


_BINARY_DECODERS: dict[int, Callable[[bytes], Any]] = {
    BOOL: _recv_bool,
    INT2: lambda b: struct.unpack("!h", _exact(b, 2))[0],
    INT4: lambda b: struct.unpack("!i", _exact(b, 4))[0],
    INT8: lambda b: struct.unpack("!q", _exact(b, 8))[0],
    OID: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    REGPROC: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    REGCLASS: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    REGTYPE: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    XID: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    CID: lambda b: struct.unpack("!I", _exact(b, 4))[0],
    FLOAT4: lambda b: struct.unpack("!f", _exact(b, 4))[0],
    FLOAT8: lambda b: struct.unpack("!d", _exact(b, 8))[0],
    NUMERIC: numeric_from_binary,
    DATE: _recv_date,
    TIMESTAMP: lambda b: _recv_timestamp(b, False),
    TIMESTAMPTZ: lambda b: _recv_timestamp(b, True),
    UUID: _recv_uuid,
    VECTOR: _recv_vector,
    BYTEA: bytes,
    JSONB: _recv_jsonb,
    JSON: _utf8,
    TEXT: _utf8,
    VARCHAR: _utf8,
    BPCHAR: _utf8,
    NAME: _utf8,
    CHAR: _utf8,
    UNKNOWN: _utf8,
}


def decode_binary(data: bytes, oid: int) -> Any:
    decoder = _BINARY_DECODERS.get(oid)
    if decoder is not None:
        return decoder(data)
    element = ARRAY_ELEMENT.get(oid)
    if element is not None:
        return _recv_array(data, element)
    raise PgError("42883", f"no binary input function available for type {type_name(oid)}")


def decode_param(data: bytes | None, oid: int, format_code: int) -> Any:
    """One Bind parameter -> Python value (None for NULL), as wire/session.py documents.

    ``format_code`` 0 is text (unknown OIDs and 0 give str), 1 is binary. Errors are PgError with
    PostgreSQL's SQLSTATE: 22P02 / 22007 bad text, 22003 out of range, 08P01 too short,
    22P03 wrong binary layout.
    """
    if data is None:
        return None
    if format_code == 0:
        text = _utf8(data)
        if "\x00" in text:
            raise PgError("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
        return decode_text(text, oid)
    if format_code == 1:
        return decode_binary(data, oid)
    raise PgError("22023", f"unsupported format code: {format_code}")


def __getattr__(name: str) -> Any:
    # The vectorised result encoders live in wire.column_encoding (which imports this module).
    if name in ("encode_column", "encode_data_rows"):
        from wire import column_encoding

        return getattr(column_encoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
