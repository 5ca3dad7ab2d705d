"""Result columns -> wire bytes, a column at a time, and whole batches of DataRow messages.

Every encoder takes one Arrow array (whatever compatible Arrow type the engine produced: int32
data for an int8 column, large_string, decimal128, fixed_size_list or list for vector, string or
fixed_size_binary(16) for uuid, timestamps of any unit with or without a zone) and returns every
value's bytes at once, computed with pyarrow.compute / numpy. Only rare types (numeric in binary,
years outside 1..9999) fall back to Python per value.

Text output matches PostgreSQL 16 with DateStyle=ISO and TimeZone=UTC (which wire reports at
startup): ``float8out`` / ``float4out`` shortest round-trip digits with exponent form outside
1e-4 <= |x| < 1e15 (float4, and pgvector's elements: 1e6), ``byteaout`` hex, ISO dates and
timestamps with trailing fractional zeros trimmed and ``+00`` for timestamptz.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wire import pgtypes as T
from wire.session import ColumnDesc, PgError

_LB = pa.large_binary()
_EMPTY = pa.scalar(b"", _LB)


@dataclass
class _Fixed:
    """Values of one width: row i is ``matrix[i]``; NULL where ``valid`` is False."""

    matrix: np.ndarray  # (n, width) uint8, C-contiguous
    valid: np.ndarray | None  # bool (n,), None when there are no NULLs


_Encoded: TypeAlias = "pa.Array | _Fixed"
_Encoder: TypeAlias = Callable[[pa.Array], "pa.Array | _Fixed"]


# --------------------------------------------------------------------------- Arrow plumbing


def _prepare(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else (
            values.combine_chunks() if values.num_chunks else pa.array([], values.type)
        )
    t = values.type
    if isinstance(t, pa.ExtensionType):
        values = values.storage
        t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_string_view(t):
        values = values.cast(pa.large_string())
    elif pa.types.is_binary_view(t):
        values = values.cast(_LB)
    return values


def _valid(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _with_nulls(arr: pa.Array, valid: np.ndarray | None) -> pa.Array:
    if valid is None or valid.all():
        return arr
    return pc.if_else(pa.array(valid), arr, pa.scalar(None, arr.type))


def _as_large_binary(arr: pa.Array) -> pa.Array:
    t = arr.type
    if t == _LB:
        return arr
    if pa.types.is_large_string(t):
        return arr.view(_LB)
    if pa.types.is_string(t):
        return arr.view(pa.binary()).cast(_LB)
    return arr.cast(_LB)


def _binary_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 [n+1], data uint8) of a large_binary array, offsets rebased to the data."""
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64)[arr.offset : arr.offset + n + 1] if n else np.zeros(1, np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    start = int(offsets[0])
    return offsets - start, data[start : int(offsets[-1])]


def _from_parts(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    n = len(offsets) - 1
    validity = None
    null_count = 0
    if valid is not None and not valid.all():
        validity = pa.array(valid).buffers()[1]
        null_count = int(n - valid.sum())
    return pa.Array.from_buffers(
        _LB, n, [validity, pa.py_buffer(np.ascontiguousarray(offsets, np.int64)),
                 pa.py_buffer(np.ascontiguousarray(data, np.uint8))], null_count
    )


def _fixed_to_binary(f: _Fixed) -> pa.Array:
    n, width = f.matrix.shape
    if f.valid is None:
        return _from_parts(np.arange(n + 1, dtype=np.int64) * width, f.matrix.reshape(-1), None)
    lengths = np.where(f.valid, width, 0)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _from_parts(offsets, f.matrix[f.valid].reshape(-1), f.valid)


def _to_binary(enc: _Encoded) -> pa.Array:
    return _fixed_to_binary(enc) if isinstance(enc, _Fixed) else _as_large_binary(enc)


def _concat(*items: pa.Array | bytes) -> pa.Array:
    """Element-wise concatenation of arrays and constant byte strings (NULL if any array is NULL)."""
    args = [pa.scalar(x, _LB) if isinstance(x, bytes) else _as_large_binary(x) for x in items]
    return pc.binary_join_element_wise(*args, _EMPTY)


def _prefix(prefix: bytes, arr: pa.Array) -> pa.Array:
    """Each non-NULL value with ``prefix`` in front (NULL stays NULL)."""
    return _concat(prefix, arr)


def _fixed_from(values: np.ndarray, valid: np.ndarray | None) -> _Fixed:
    """A big-endian numpy vector -> its bytes as one fixed-width matrix."""
    values = np.ascontiguousarray(values)
    return _Fixed(values.view(np.uint8).reshape(len(values), values.dtype.itemsize), valid)


def _python_fallback(arr: pa.Array, fn: Callable[[object], bytes | str]) -> pa.Array:
    out = [None if v is None else fn(v) for v in arr.to_pylist()]
    encoded = [v.encode("utf-8") if isinstance(v, str) else v for v in out]
    return pa.array(encoded, _LB)


def _is_stringish(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_binaryish(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or _is_stringish(t))


# --------------------------------------------------------------------------- numbers


def _to_float_numpy(arr: pa.Array, single: bool) -> np.ndarray:
    dtype = np.float32 if single else np.float64
    t = arr.type
    if pa.types.is_decimal(t) or pa.types.is_boolean(t) or pa.types.is_integer(t):
        arr = arr.cast(pa.float64())
    if pa.types.is_floating(arr.type):
        filled = arr.fill_null(0) if arr.null_count else arr
        with np.errstate(over="ignore"):
            return filled.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    raise PgError("XX000", f"cannot encode Arrow {t} as a floating-point value")


_POW10_RANGE = 24
# Parsed from decimal text, so each entry is the float nearest to 10^k (10.0 ** -5 is not).
_POW10_F64 = np.array([float(f"1e{k}") for k in range(-_POW10_RANGE, _POW10_RANGE + 1)], np.float64)
_POW10_F32 = np.array([np.float32(f"1e{k}") for k in range(-_POW10_RANGE, _POW10_RANGE + 1)], np.float32)


def _decimal_exponents(a: np.ndarray, single: bool) -> np.ndarray:
    """floor(log10(a)) of the shortest representation, exact near powers of ten.

    A value below fl(10^k) (the nearest float to 10^k, in the same precision) always has a
    shortest decimal below 10^k, and at or above it one at or above, so comparing against the
    table corrects log10's rounding.
    """
    pow10 = _POW10_F32 if single else _POW10_F64
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log10(a.astype(np.float64))).astype(np.int64)
    e = np.clip(e, -_POW10_RANGE, _POW10_RANGE - 1)
    e -= a < pow10[e + _POW10_RANGE]
    e = np.clip(e, -_POW10_RANGE, _POW10_RANGE - 1)
    e += a >= pow10[e + 1 + _POW10_RANGE]
    return e


_PARALLEL_CAST_VALUES = 1 << 16  # from this many values, the float -> text cast is split across the cores
_cast_pool: ThreadPoolExecutor | None = None
_cast_pool_lock = threading.Lock()


def _float_strings(x: np.ndarray) -> pa.Array:
    """Arrow's shortest round-trip text of each float. The cast is most of the cost of sending vectors
    as text and holds no GIL, so a large array is cast in pieces on every core."""
    global _cast_pool
    cores = os.cpu_count() or 1
    if len(x) < _PARALLEL_CAST_VALUES or cores == 1:
        return pc.cast(pa.array(x), pa.string())
    with _cast_pool_lock:
        if _cast_pool is None:
            _cast_pool = ThreadPoolExecutor(cores, thread_name_prefix="sqlvec-cast")
    step = -(-len(x) // cores)
    pieces = list(_cast_pool.map(lambda start: pc.cast(pa.array(x[start: start + step]), pa.string()),
                                 range(0, len(x), step)))
    return pa.concat_arrays(pieces)


def _format_floats(x: np.ndarray, single: bool) -> pa.Array:
    """Shortest round-trip text of each value, formatted as PostgreSQL's float4out/float8out.

    Arrow's cast gives the shortest digits but switches between plain and exponent notation at
    other exponents (and writes ``e-7``); the rows whose decimal exponent falls where the two
    styles differ are rewritten with a few regexes, band by band.
    """
    s = _float_strings(x)
    n = len(x)
    if n == 0:
        return s
    a = np.abs(x)
    finite = np.isfinite(x)
    nonzero = finite & (a != 0)
    e = np.where(nonzero, _decimal_exponents(np.where(nonzero, a, 1), single), 0)
    pieces = [s]
    index = np.arange(n)
    total = n

    def replace(mask: np.ndarray, fn: Callable[[pa.Array], pa.Array]) -> None:
        nonlocal total
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        sub = fn(s.take(pa.array(idx)))
        index[idx] = total + np.arange(idx.size)
        total += idx.size
        pieces.append(sub)

    def exponent_digits(arr: pa.Array) -> pa.Array:
        # RE2 rewrites take single-digit group numbers: \1 then a literal 0.
        return pc.replace_substring_regex(arr, r"e([+-])(\d)$", r"e\10\2")

    def small(k: int) -> Callable[[pa.Array], pa.Array]:
        def rewrite(arr: pa.Array) -> pa.Array:
            zeros = "0" * (k - 1)
            arr = pc.replace_substring_regex(arr, rf"^(-?)0\.{zeros}(\d)(\d*)$", rf"\1\2.\3e-0{k}")
            return exponent_digits(pc.replace_substring(arr, ".e", "e"))

        return rewrite

    def large_fixed(k: int) -> Callable[[pa.Array], pa.Array]:
        # exponent form -> plain digits (float8 between 1e10 and 1e15)
        def rewrite(arr: pa.Array) -> pa.Array:
            arr = pc.replace_substring_regex(arr, rf"^(-?)(\d)(?:\.(\d+))?e\+{k}$", r"\1\2\3" + "0" * k)
            arr = pc.replace_substring_regex(arr, rf"^(-?\d{{{k + 1}}})(\d*?)0*$", r"\1.\2")
            return pc.replace_substring_regex(arr, r"\.$", "")

        return rewrite

    def large_exp(k: int) -> Callable[[pa.Array], pa.Array]:
        # plain digits -> exponent form (float4 between 1e6 and 1e10)
        def rewrite(arr: pa.Array) -> pa.Array:
            arr = pc.replace_substring_regex(arr, rf"^(-?)(\d)(\d{{{k}}})(?:\.(\d+))?$", rf"\1\2.\3\4e+0{k}")
            arr = pc.replace_substring_regex(arr, r"(\.\d*?)0+e", r"\1e")
            return exponent_digits(pc.replace_substring(arr, ".e", "e"))

        return rewrite

    replace(nonzero & (e == -5), small(5))
    replace(nonzero & (e == -6), small(6))
    replace(nonzero & (e <= -7) & (e >= -9), exponent_digits)
    if single:
        for k in range(6, 10):
            replace(nonzero & (e == k), large_exp(k))
    else:
        for k in range(10, 15):
            replace(nonzero & (e == k), large_fixed(k))
    def constant(text: str) -> Callable[[pa.Array], pa.Array]:
        return lambda sub: pa.array([text] * len(sub), pa.string())

    if not finite.all():
        replace(np.isnan(x), constant("NaN"))
        replace(np.isposinf(x), constant("Infinity"))
        replace(np.isneginf(x), constant("-Infinity"))
    if len(pieces) == 1:
        return s
    return pa.concat_arrays(pieces).take(pa.array(index))


def _float_text(arr: pa.Array, single: bool) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    return _with_nulls(_format_floats(_to_float_numpy(arr, single), single), _valid(arr))


def _float_binary(arr: pa.Array, single: bool) -> _Encoded:
    values = _to_float_numpy(arr, single)
    return _fixed_from(values.astype(">f4" if single else ">f8"), _valid(arr))


def _to_int_numpy(arr: pa.Array, bits: int, label: str, unsigned: bool = False) -> np.ndarray:
    """int64 values (NULL -> 0) checked against the target type's range.

    ``unsigned`` (oid): PostgreSQL also accepts negative int32 values there and wraps them.
    """
    t = arr.type
    if pa.types.is_floating(t):
        arr = pc.round(arr, round_mode="half_to_even")
    try:
        if not pa.types.is_integer(arr.type):
            arr = arr.cast(pa.int64())
        if pa.types.is_uint64(arr.type):
            arr = arr.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PgError("22003", f"{label} out of range", detail=str(exc)) from None
    filled = arr.fill_null(0) if arr.null_count else arr
    values = filled.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    lo, hi = (-(1 << 31), (1 << 32) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if len(values) and (values.min() < lo or values.max() > hi):
        raise PgError("22003", f"{label} out of range")
    return values


def _int_text(arr: pa.Array) -> _Encoded:
    t = arr.type
    if _is_stringish(t):
        return arr
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.large_string())  # large: becomes the wire's large_binary by a view, not a cast
    if pa.types.is_boolean(t):
        return pc.cast(pc.cast(arr, pa.int8()), pa.string())
    if pa.types.is_decimal(t) and t.scale == 0:
        return pc.cast(arr, pa.string())
    values = _to_int_numpy(arr, 64, "bigint")
    return _with_nulls(pc.cast(pa.array(values), pa.string()), _valid(arr))


def _oid_text(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    values = _to_int_numpy(arr, 32, "oid", unsigned=True).astype(np.int64) & 0xFFFFFFFF
    return _with_nulls(pc.cast(pa.array(values), pa.string()), _valid(arr))


def _int_binary(arr: pa.Array, bits: int, label: str) -> _Encoded:
    values = _to_int_numpy(arr, bits, label)
    return _fixed_from(values.astype(f">i{bits // 8}"), _valid(arr))


def _oid_binary(arr: pa.Array) -> _Encoded:
    values = _to_int_numpy(arr, 32, "oid", unsigned=True).astype(np.int64) & 0xFFFFFFFF
    return _fixed_from(values.astype(">u4"), _valid(arr))


def _bool_text(arr: pa.Array) -> _Encoded:
    t = arr.type
    if _is_stringish(t):
        return arr
    if not pa.types.is_boolean(t):
        arr = pc.not_equal(arr, 0)
    return pc.if_else(arr, "t", "f")


def _bool_binary(arr: pa.Array) -> _Encoded:
    t = arr.type
    if not pa.types.is_boolean(t):
        arr = pc.not_equal(arr, 0)
    values = (arr.fill_null(False) if arr.null_count else arr).to_numpy(zero_copy_only=False)
    return _fixed_from(values.astype(np.uint8), _valid(arr))


def _numeric_text(arr: pa.Array) -> _Encoded:
    t = arr.type
    if _is_stringish(t):
        return arr
    if pa.types.is_decimal(t) or pa.types.is_integer(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_floating(t):
        return _float_text(arr, single=False)
    return _generic_text(arr)


def _to_decimal(v: object) -> Decimal:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        return Decimal(repr(v)) if math.isfinite(v) else Decimal(str(v))
    return T.parse_numeric(str(v))


def _numeric_binary(arr: pa.Array) -> _Encoded:
    # Rare enough in result sets to take the per-value path.
    return _python_fallback(arr, lambda v: T.numeric_to_binary(_to_decimal(v)))


# --------------------------------------------------------------------------- text and bytes


def _text_text(arr: pa.Array) -> _Encoded:
    t = arr.type
    if _is_stringish(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return arr
    return _generic_text(arr)


def _json_text(arr: pa.Array) -> _Encoded:
    """json/jsonb: JSON text as stored; nested Arrow values (struct, map, list) serialised per value."""
    t = arr.type
    if pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        return _python_fallback(arr, lambda v: json.dumps(v, default=str, separators=(", ", ": ")))
    return _text_text(arr)


def _jsonb_binary(arr: pa.Array) -> _Encoded:
    return _prefix(b"\x01", _to_binary(_json_text(arr)))


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_PAIRS = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1)


def _bytea_binary(arr: pa.Array) -> _Encoded:
    t = arr.type
    if pa.types.is_fixed_size_binary(t):
        return arr.cast(pa.binary())
    if _is_binaryish(t):
        return arr
    return _to_binary(_generic_text(arr))


def _bytea_text(arr: pa.Array) -> _Encoded:
    b = _as_large_binary(_bytea_binary(arr) if not _is_stringish(arr.type) else arr)
    valid = _valid(b)
    if valid is not None:
        b = b.fill_null(b"")
    offsets, data = _binary_parts(b)
    hexed = _from_parts(offsets * 2, _HEX_PAIRS[data].reshape(-1), valid)
    return _prefix(b"\\x", hexed)


# --------------------------------------------------------------------------- dates and times

_MIN_DAY = -719_162  # 0001-01-01
_MAX_DAY = 2_932_896  # 9999-12-31
_US_PER_DAY = 86_400_000_000
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) for days since 1970-01-01; year 0 is 1 BC."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_py(days: int) -> tuple[str, str]:
    y, m, d = _civil_from_days(days)
    if y <= 0:
        return f"{1 - y:04d}-{m:02d}-{d:02d}", " BC"
    return f"{y:04d}-{m:02d}-{d:02d}", ""


def _timestamp_py(micros: int, with_tz: bool) -> str:
    days, rest = divmod(micros, _US_PER_DAY)
    date, bc = _date_py(days)
    secs, frac = divmod(rest, 1_000_000)
    text = f"{date} {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    if frac:
        text += f".{frac:06d}".rstrip("0")
    return text + ("+00" if with_tz else "") + bc


def _days(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_date32(t):
        v = arr.cast(pa.int32())
        return (v.fill_null(0) if v.null_count else v).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.floor_divide(_micros(arr), _US_PER_DAY)


def _micros(arr: pa.Array) -> np.ndarray:
    """Microseconds since 1970-01-01 (UTC for zoned timestamps, wall time for naive ones)."""
    t = arr.type
    if pa.types.is_timestamp(t):
        v = arr.view(pa.int64())
        raw = (v.fill_null(0) if v.null_count else v).to_numpy(zero_copy_only=False)
        scale = _UNIT_US[t.unit]
        return np.floor_divide(raw, 1000) if scale is None else raw * scale
    if pa.types.is_date32(t):
        return _days(arr) * _US_PER_DAY
    if pa.types.is_date64(t):
        v = arr.cast(pa.int64())
        return (v.fill_null(0) if v.null_count else v).to_numpy(zero_copy_only=False) * 1000
    raise PgError("XX000", f"cannot encode Arrow {t} as a date/time value")


def _patch_rare(strings: pa.Array, rare: np.ndarray, texts: list[str]) -> pa.Array:
    idx = np.flatnonzero(rare)
    index = np.arange(len(strings))
    index[idx] = len(strings) + np.arange(idx.size)
    return pa.concat_arrays([strings, pa.array(texts, strings.type)]).take(pa.array(index))


def _date_text(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    valid = _valid(arr)
    days = _days(arr)
    rare = (days < _MIN_DAY) | (days > _MAX_DAY)
    if valid is not None:
        rare &= valid
    s = pc.cast(pa.array(np.where(rare, 0, days).astype(np.int32), pa.date32()), pa.string())
    if rare.any():
        s = _patch_rare(s, rare, ["".join(_date_py(int(d))) for d in days[rare]])
    return _with_nulls(s, valid)


def _timestamp_text(arr: pa.Array, with_tz: bool) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    valid = _valid(arr)
    micros = _micros(arr)
    rare = (micros < _MIN_DAY * _US_PER_DAY) | (micros >= (_MAX_DAY + 1) * _US_PER_DAY)
    if valid is not None:
        rare &= valid
    s = pc.cast(pa.array(np.where(rare, 0, micros), pa.timestamp("us")), pa.string())
    s = pc.replace_substring_regex(s, r"\.?0+$", "")
    if with_tz:
        s = _concat(s, b"+00")
    if rare.any():
        s = _patch_rare(s, rare, [_timestamp_py(int(m), with_tz) for m in micros[rare]])
    return _with_nulls(s, valid)


def _date_binary(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        return _python_fallback(arr, lambda v: _date_days_bytes(T.parse_date(str(v))))
    days = _days(arr) - T.PG_EPOCH_UNIX_DAYS
    return _fixed_from(days.astype(">i4"), _valid(arr))


def _date_days_bytes(d: dt.date) -> bytes:
    return (d - dt.date(2000, 1, 1)).days.to_bytes(4, "big", signed=True)


def _timestamp_binary(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        raise PgError("XX000", "timestamp column holds text; cannot send it in binary format")
    micros = _micros(arr) - T.PG_EPOCH_UNIX_SECONDS * 1_000_000
    return _fixed_from(micros.astype(">i8"), _valid(arr))


# --------------------------------------------------------------------------- uuid

_UUID_CANONICAL = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_NIBBLE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def _uuid_hex32(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """uuid strings in any accepted spelling -> (n, 32) matrix of lower-case hex digits."""
    valid = _valid(arr)
    s = pc.replace_substring_regex(pc.utf8_lower(arr.fill_null("0" * 32)), r"[-{}]", "")
    bad = pc.invert(pc.match_substring_regex(s, r"^[0-9a-f]{32}$")).to_numpy(zero_copy_only=False)
    if bad.any():
        text = arr[int(np.flatnonzero(bad)[0])].as_py()
        raise PgError("22P02", f'invalid input syntax for type uuid: "{text}"')
    _, data = _binary_parts(_as_large_binary(s))
    return data.reshape(len(arr), 32), valid


def _uuid_matrix16(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    t = arr.type
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
        valid = _valid(arr)
        data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * 16 : (arr.offset + len(arr)) * 16]
        return data.reshape(len(arr), 16), valid
    if _is_stringish(t):
        hex32, valid = _uuid_hex32(arr)
        nib = _NIBBLE[hex32]
        return (nib[:, 0::2] << 4) | nib[:, 1::2], valid
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths = pc.binary_length(arr).fill_null(16).to_numpy(zero_copy_only=False)
        if (lengths != 16).any():
            raise PgError("22P03", "uuid values must be 16 bytes")
        return _uuid_matrix16(arr.fill_null(b"\x00" * 16).cast(pa.binary(16)))[0], _valid(arr)
    raise PgError("XX000", f"cannot encode Arrow {t} as uuid")


def _uuid_text(arr: pa.Array) -> _Encoded:
    t = arr.type
    if _is_stringish(t):
        if pc.all(pc.match_substring_regex(arr, _UUID_CANONICAL)).as_py() in (True, None):
            return arr
        hex32, valid = _uuid_hex32(arr)
    else:
        raw, valid = _uuid_matrix16(arr)
        hex32 = _HEX_PAIRS[raw].reshape(len(arr), 32)
    out = np.full((len(arr), 36), ord("-"), np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = hex32[:, src : src + width]
    return _Fixed(out, valid)


def _uuid_binary(arr: pa.Array) -> _Encoded:
    raw, valid = _uuid_matrix16(arr)
    return _Fixed(np.ascontiguousarray(raw), valid)


# --------------------------------------------------------------------------- vector and arrays


def _list_parts(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(flat child values, offsets int64 [n+1] into them) of any list-like array."""
    t = arr.type
    n = len(arr)
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        child = arr.values.slice(arr.offset * d, n * d)
        return child, np.arange(n + 1, dtype=np.int64) * d
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        start, end = int(offsets[0]), int(offsets[-1])
        return arr.values.slice(start, end - start), offsets - start
    raise PgError("XX000", f"cannot encode Arrow {t} as an array")


def _vector_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    child, offsets = _list_parts(arr)
    if child.null_count:
        # Elements under NULL rows don't matter; elsewhere a NULL element cannot be sent.
        valid = _valid(arr)
        counts = np.diff(offsets)
        row_valid = np.repeat(valid if valid is not None else np.ones(len(arr), bool), counts)
        if (child.is_null().to_numpy(zero_copy_only=False) & row_valid).any():
            raise PgError("22004", "vector elements cannot be NULL")
        child = child.fill_null(0)
    if not pa.types.is_float32(child.type):
        child = child.cast(pa.float32(), safe=False)
    return child.to_numpy(zero_copy_only=False), offsets


def _vector_text(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    values, offsets = _vector_values(arr)
    elements = _format_floats(values, single=True)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), elements)
    joined = pc.binary_join(lists, ",")
    return _with_nulls(_concat(b"[", joined, b"]"), _valid(arr))


def _vector_binary(arr: pa.Array) -> _Encoded:
    if _is_stringish(arr.type):
        return _python_fallback(arr, lambda v: _vector_bytes(T.parse_vector(str(v))))
    values, offsets = _vector_values(arr)
    valid = _valid(arr)
    dims = np.diff(offsets)
    if len(dims) and dims.max() > 32767:
        raise PgError("54000", f"vector cannot have more than {T.VECTOR_MAX_DIM} dimensions")
    be = values.astype(">f4")
    if pa.types.is_fixed_size_list(arr.type):
        d = arr.type.list_size
        out = np.zeros((len(arr), 4 + 4 * d), np.uint8)
        out[:, 0:2] = np.array([d], ">i2").view(np.uint8)
        out[:, 4:] = be.view(np.uint8).reshape(len(arr), 4 * d)
        return _Fixed(out, valid)
    header = np.zeros((len(arr), 4), np.uint8)
    header[:, 0:2] = dims.astype(">i2").view(np.uint8).reshape(-1, 2)
    body = _from_parts(offsets * 4, be.view(np.uint8))
    return _with_nulls(_concat(_fixed_to_binary(_Fixed(header, None)), body), valid)


def _vector_bytes(v: np.ndarray) -> bytes:
    return len(v).to_bytes(2, "big") + b"\x00\x00" + v.astype(">f4").tobytes()


_ARRAY_QUOTE = r'^$|[{},"\\\s]|^[Nn][Uu][Ll][Ll]$'


def _array_text(arr: pa.Array, element_oid: int) -> _Encoded:
    if _is_stringish(arr.type):
        return arr
    child, offsets = _list_parts(arr)
    elements = _to_binary(_encode(child, element_oid, 0)).view(pa.large_string())
    valid_elements = _valid(child)
    if len(elements):
        needs_quote = pc.match_substring_regex(elements.fill_null("x"), _ARRAY_QUOTE)
        escaped = pc.replace_substring_regex(elements, r'(["\\])', r"\\\1")
        quoted = _concat(b'"', escaped, b'"').view(pa.large_string())
        elements = pc.if_else(needs_quote, quoted, elements)
    if valid_elements is not None:
        elements = elements.fill_null("NULL")
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), elements)
    joined = pc.binary_join(lists, pa.scalar(",", pa.large_string()))
    return _with_nulls(_concat(b"{", joined, b"}"), _valid(arr))


def _array_binary(arr: pa.Array, element_oid: int) -> _Encoded:
    child, offsets = _list_parts(arr)
    n = len(arr)
    elements = _to_binary(_encode(child, element_oid, 1))
    el_valid = _valid(elements)
    lengths = pc.binary_length(elements).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if el_valid is not None:
        elements = elements.fill_null(b"")
    length_fields = _fixed_to_binary(_Fixed(lengths.astype(">i4").view(np.uint8).reshape(-1, 4), None))
    pieces = _concat(length_fields, elements)
    bodies = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pieces), _EMPTY)
    counts = np.diff(offsets)
    has_null = np.zeros(n, np.int64)
    if el_valid is not None:
        nulls_before = np.concatenate([[0], np.cumsum(~el_valid)])
        has_null = (nulls_before[offsets[1:]] > nulls_before[offsets[:-1]]).astype(np.int64)
    header = np.zeros((n, 5), ">i4")
    header[:, 0] = np.where(counts > 0, 1, 0)
    header[:, 1] = has_null
    header[:, 2] = element_oid
    header[:, 3] = counts
    header[:, 4] = 1
    header_bytes = header.view(np.uint8).reshape(n, 20)
    # Empty arrays have no dimensions: only ndim, flags and element type (12 bytes).
    head_len = np.where(counts > 0, 20, 12)
    head_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(head_len, out=head_offsets[1:])
    head_data = header_bytes[np.arange(20)[None, :] < head_len[:, None]]
    heads = _from_parts(head_offsets, head_data)
    return _with_nulls(_concat(heads, bodies), _valid(arr))


# --------------------------------------------------------------------------- by Arrow type


def _arrow_element_oid(t: pa.DataType) -> int:
    if pa.types.is_boolean(t):
        return T.BOOL
    if pa.types.is_int16(t) or pa.types.is_int8(t) or pa.types.is_uint8(t):
        return T.INT2
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return T.INT4
    if pa.types.is_integer(t):
        return T.INT8
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return T.FLOAT4
    if pa.types.is_floating(t):
        return T.FLOAT8
    if pa.types.is_decimal(t):
        return T.NUMERIC
    if pa.types.is_date(t):
        return T.DATE
    if pa.types.is_timestamp(t):
        return T.TIMESTAMPTZ if t.tz else T.TIMESTAMP
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return T.BYTEA
    return T.TEXT


def _int_vector_text(arr: pa.Array) -> _Encoded:
    """int2vector / oidvector text: the numbers separated by spaces (``1 3``), a list's or the text as sent."""
    if _is_stringish(arr.type):
        return arr
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return _generic_text(arr)
    return pc.binary_join(pc.cast(arr, pa.list_(pa.string())), " ")


def _generic_text(arr: pa.Array) -> _Encoded:
    """Text for values whose OID wire doesn't know (or whose Arrow type doesn't fit the OID)."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if _is_stringish(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return arr
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _array_text(arr, _arrow_element_oid(t.value_type))
    if pa.types.is_time(t):
        return pc.replace_substring_regex(pc.cast(arr, pa.string()), r"\.?0+$", "")
    oid = _arrow_element_oid(t)
    if oid != T.TEXT:
        return _TEXT_ENCODERS[oid](arr)
    return _python_fallback(arr, str)


_TEXT_ENCODERS: dict[int, _Encoder] = {
    T.BOOL: _bool_text,
    T.INT2: _int_text,
    T.INT4: _int_text,
    T.INT8: _int_text,
    T.FLOAT4: partial(_float_text, single=True),
    T.FLOAT8: partial(_float_text, single=False),
    T.NUMERIC: _numeric_text,
    T.BYTEA: _bytea_text,
    T.DATE: _date_text,
    T.TIMESTAMP: partial(_timestamp_text, with_tz=False),
    T.TIMESTAMPTZ: partial(_timestamp_text, with_tz=True),
    T.UUID: _uuid_text,
    T.VECTOR: _vector_text,
    T.JSON: _json_text,
    T.JSONB: _json_text,
    **{oid: _oid_text for oid in T.OID_LIKE},
    **{oid: _text_text for oid in T.TEXT_LIKE if oid != T.JSON},
    T.INT2VECTOR: _int_vector_text,
    T.OIDVECTOR: _int_vector_text,
}

_BINARY_ENCODERS: dict[int, _Encoder] = {
    T.BOOL: _bool_binary,
    T.INT2: partial(_int_binary, bits=16, label="smallint"),
    T.INT4: partial(_int_binary, bits=32, label="integer"),
    T.INT8: partial(_int_binary, bits=64, label="bigint"),
    T.FLOAT4: partial(_float_binary, single=True),
    T.FLOAT8: partial(_float_binary, single=False),
    T.NUMERIC: _numeric_binary,
    T.BYTEA: _bytea_binary,
    T.DATE: _date_binary,
    T.TIMESTAMP: _timestamp_binary,
    T.TIMESTAMPTZ: _timestamp_binary,
    T.UUID: _uuid_binary,
    T.VECTOR: _vector_binary,
    T.JSON: _json_text,
    T.JSONB: _jsonb_binary,
    **{oid: _oid_binary for oid in T.OID_LIKE},
    **{oid: _text_text for oid in T.TEXT_LIKE if oid != T.JSON},
}


def _encode(values: pa.Array | pa.ChunkedArray, oid: int, format_code: int) -> _Encoded:
    arr = _prepare(values)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), _LB)
    table = _BINARY_ENCODERS if format_code == 1 else _TEXT_ENCODERS
    encoder = table.get(oid)
    if encoder is None:
        element = T.ARRAY_ELEMENT.get(oid)
        if element is not None and not _is_stringish(arr.type):
            return (_array_binary if format_code == 1 else _array_text)(arr, element)
        # Unknown types have no binary form of ours: send their text bytes.
        encoder = _generic_text
    return encoder(arr)


def encode_column(values: pa.Array | pa.ChunkedArray, oid: int, format_code: int) -> pa.LargeBinaryArray:
    """Every value of one column in wire format (text 0 / binary 1); NULL stays NULL."""
    if format_code not in (0, 1):
        raise PgError("22023", f"unsupported format code: {format_code}")
    return _to_binary(_encode(values, oid, format_code))


# --------------------------------------------------------------------------- DataRow batches


def _length_field(lengths: np.ndarray) -> _Fixed:
    return _Fixed(lengths.astype(">i4").view(np.uint8).reshape(-1, 4), None)


def encode_data_rows(batch: pa.RecordBatch, columns: Sequence[ColumnDesc], formats: Sequence[int], *,
                     messages: bool = True, type_byte: bytes = b"D") -> bytes:
    """Every row of ``batch`` as consecutive DataRow messages, built column-at-a-time. With
    ``messages=False``, the rows without the message header (type byte and length): the tuples
    of COPY's binary format, which are DataRow bodies (``type_byte=b"d"``: the same rows as
    CopyData messages, one per row).

    Each column is encoded once; per-row lengths give each message's size; fixed-width pieces
    (the 'D' header, length fields, binary ints...) are numpy matrices concatenated side by side,
    and the variable-width ones are interleaved with them by one Arrow element-wise join, whose
    output buffer already is the message stream.
    """
    n = batch.num_rows
    k = batch.num_columns
    if len(columns) != k or len(formats) != k:
        raise ValueError(f"batch has {k} columns, description {len(columns)}, formats {len(formats)}")
    if n == 0:
        return b""
    row_length = np.full(n, 4 + 2 + 4 * k, np.int64)  # length word, column count, length fields
    parts: list[_Fixed | pa.Array] = []
    for i in range(k):
        enc = _encode(batch.column(i), columns[i].type_oid, formats[i])
        if isinstance(enc, _Fixed) and enc.valid is None:
            width = enc.matrix.shape[1]
            parts.append(_length_field(np.full(n, width, np.int64)))
            parts.append(enc)
            row_length += width
            continue
        data = _to_binary(enc)
        valid = _valid(data)
        offsets, _ = _binary_parts(data)
        lengths = np.diff(offsets)
        if valid is not None:
            if lengths[~valid].any():
                data = pc.if_else(pa.array(valid), data, _EMPTY)
                offsets, _ = _binary_parts(data)
                lengths = np.diff(offsets)
            data = _from_parts(*_binary_parts(data))  # drop validity: NULLs are empty values
        parts.append(_length_field(np.where(valid, lengths, -1) if valid is not None else lengths))
        parts.append(data)
        row_length += lengths
    if messages:
        header = np.empty((n, 7), np.uint8)
        header[:, 0] = type_byte[0]
        header[:, 1:5] = row_length.astype(">i4").view(np.uint8).reshape(n, 4)
    else:
        header = np.empty((n, 2), np.uint8)
    header[:, -2:] = np.frombuffer(k.to_bytes(2, "big"), np.uint8)
    merged: list[_Fixed | pa.Array] = [_Fixed(header, None)]
    for part in parts:
        last = merged[-1]
        if isinstance(part, _Fixed) and isinstance(last, _Fixed):
            merged[-1] = _Fixed(np.concatenate([last.matrix, part.matrix], axis=1), None)
        else:
            merged.append(part)
    if len(merged) == 1:
        return merged[0].matrix.tobytes()  # type: ignore[union-attr]
    arrays = [_fixed_to_binary(p) if isinstance(p, _Fixed) else p for p in merged]
    joined = pc.binary_join_element_wise(*arrays, _EMPTY)
    offsets, data = _binary_parts(joined)
    return data.tobytes()
