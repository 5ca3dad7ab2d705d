"""Values arriving for a column -> the column's stored Arrow type, with PostgreSQL's input errors.

Inputs come as Arrow arrays (from DuckDB results or COPY decoding) or Python lists (bound
parameters and literals of INSERT ... VALUES). Conversions are vectorised: vectors are parsed with
pyarrow string kernels, everything else is cast by DuckDB in one SELECT per batch. Errors carry
PostgreSQL's SQLSTATEs: 22P02 bad text, 22003 out of range, 22001 too long, 22000 vector rules.

Array columns take lists (whose elements are coerced as one flat column of the element type) or
PostgreSQL's array text, ``{1,2,NULL}`` / ``{"a b",c}``: its elements are split by DuckDB's list
parser (whose quoting rules are PostgreSQL's for double quotes), except in the rare values holding
a backslash, single quote, bracket or inner brace, which PostgreSQL's own rules split one by one.
"""

from __future__ import annotations

import datetime
import decimal
import re
import threading
import uuid
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.types import ColumnType
from wire.copy_text import parse_vector_array
from wire.pgtypes import split_array_text
from wire.session import PgError

DUCKDB_TYPES: dict[str, str] = {
    "bool": "BOOLEAN", "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT",
    "float4": "FLOAT", "float8": "DOUBLE", "text": "VARCHAR", "varchar": "VARCHAR",
    "json": "VARCHAR", "jsonb": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ", "uuid": "UUID", "bytea": "BLOB",
}

_PG_TYPE_WORD = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real", "float8": "double precision",
    "bool": "boolean", "date": "date", "timestamp": "timestamp", "timestamptz": "timestamp with time zone",
    "uuid": "uuid", "numeric": "numeric", "json": "json", "jsonb": "json", "bytea": "bytea", "vector": "vector",
}
_RANGE_NAME = {"int2": "smallint", "int4": "integer", "int8": "bigint"}

_TRUE = ["t", "true", "y", "yes", "on", "1"]
_FALSE = ["f", "false", "n", "no", "off", "0"]


def from_python(values: list[Any], ctype: ColumnType) -> pa.Array:
    """Bound parameters / literals for one column -> an Arrow array of ``ctype``'s stored type."""
    if ctype.name == "vector":
        return _vector_from_python(values, ctype)
    if ctype.is_array:
        return _array_from_python(values, ctype)
    if ctype.name == "numeric" and ctype.precision is None:  # keep each value's own scale: '1.50' stays
        values = [None if v is None else _as_text(v) for v in values]
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values), ctype.arrow())
    if len(kinds) > 1 and not kinds <= {int, float, decimal.Decimal} and not kinds <= {int, bool}:
        values = [None if v is None else _as_text(v) for v in values]
    elif kinds & {uuid.UUID}:
        values = [None if v is None else str(v) for v in values]
    elif kinds <= {dict, list}:
        import json
        values = [None if v is None else json.dumps(v) for v in values]
    try:
        arr = pa.array(values)
    except OverflowError:
        if kinds <= {int, bool} and ctype.name in _RANGE_NAME:
            raise PgError("22003", f"{_RANGE_NAME[ctype.name]} out of range") from None
        arr = pa.array([None if v is None else _as_text(v) for v in values], pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array([None if v is None else _as_text(v) for v in values], pa.string())
    return coerce(arr, ctype)


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    return str(v)


def coerce(arr: pa.Array | pa.ChunkedArray, ctype: ColumnType, *, column: str = "") -> pa.Array:
    """Cast ``arr`` to ``ctype.arrow()`` with PostgreSQL's input rules."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    target = ctype.arrow()
    if ctype.name == "vector":
        if arr.null_count == 0 and pa.types.is_fixed_size_list(target) and arr.type.equals(target):
            # already the column's type (a decoded COPY): only the finiteness rule is left to check
            _check_finite(arr.flatten().to_numpy(zero_copy_only=False))
            return arr
        return _vector(arr, ctype)
    if ctype.is_array:
        return _array(arr, ctype)
    if arr.type == target and ctype.name not in ("varchar", "json", "jsonb"):
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    if ctype.name == "bool" and _is_string(arr.type):
        return _bool_from_text(arr)
    if ctype.name in ("text", "varchar", "json", "jsonb") and not _is_string(arr.type):
        arr = _to_text(arr)
    if ctype.name == "numeric" and ctype.precision is None:
        return _free_numeric(arr)
    if ctype.name == "bytea" and _is_string(arr.type):
        return _bytea_from_text(arr)
    if ctype.name in ("json", "jsonb"):
        _check_json(arr)
        return arr.cast(pa.string())
    if ctype.name == "varchar" and ctype.length is not None:
        too_long = pc.greater(pc.utf8_length(arr), ctype.length)
        if pc.any(too_long).as_py():
            raise PgError("22001", f"value too long for type character varying({ctype.length})")
    if ctype.name in ("text", "varchar"):
        return arr.cast(pa.string())
    duck = DUCKDB_TYPES.get(ctype.name) or f"DECIMAL({ctype.precision},{ctype.scale or 0})"
    out = _duckdb_cast(arr, duck, ctype)
    if ctype.name == "uuid":
        out = out.cast(pa.string())
    return out.cast(target)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _to_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_boolean(arr.type):
        return pc.if_else(arr, "true", "false")
    return arr.cast(pa.string())


_local = threading.local()


def _duck() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection of this thread's own for casts (opening one costs tens of milliseconds)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        _local.con = con
    return con


_NUMERIC_TARGETS = {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "float4": pa.float32(),
                    "float8": pa.float64()}


def _duckdb_cast(arr: pa.Array, duck_type: str, ctype: ColumnType) -> pa.Array:
    target = _NUMERIC_TARGETS.get(ctype.name)
    if target is not None and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)) and not (
        pa.types.is_floating(arr.type) and pa.types.is_integer(target)
    ):
        try:
            return arr.cast(target, safe=True)
        except pa.ArrowInvalid:
            raise PgError("22003", f"{_RANGE_NAME.get(ctype.name, ctype.name)} out of range") from None
    con = _duck()
    try:
        con.register("__src", pa.table({"v": arr}))
        return con.sql(f"SELECT CAST(v AS {duck_type}) AS v FROM __src").to_arrow_table().column(0).combine_chunks()
    except duckdb.ConversionException as e:
        raise _conversion_error(str(e), ctype) from None
    except duckdb.Error as e:
        raise PgError("22P02", f"invalid input for type {_PG_TYPE_WORD.get(ctype.name, ctype.name)}: {e}") from None
    finally:
        con.unregister("__src")


_BAD_STRING = re.compile(r"Could not convert string '(.*?)' to")


def _conversion_error(message: str, ctype: ColumnType) -> PgError:
    word = _PG_TYPE_WORD.get(ctype.name, ctype.name)
    if "out of range" in message:
        if ctype.name in _RANGE_NAME:
            return PgError("22003", f"{_RANGE_NAME[ctype.name]} out of range")
        return PgError("22003", f"value out of range for type {word}")
    m = _BAD_STRING.search(message)
    if m and ctype.name in _RANGE_NAME and re.fullmatch(r"\s*[+-]?\d+\s*", m.group(1)):
        return PgError("22003", f'value "{m.group(1)}" is out of range for type {_RANGE_NAME[ctype.name]}')
    if m:
        return PgError("22P02", f'invalid input syntax for type {word}: "{m.group(1)}"')
    return PgError("22P02", f"invalid input syntax for type {word}: {message.splitlines()[0]}")


def _bool_from_text(arr: pa.Array) -> pa.Array:
    s = pc.utf8_lower(pc.utf8_trim_whitespace(arr.cast(pa.string())))
    is_true, is_false = pc.is_in(s, pa.array(_TRUE)), pc.is_in(s, pa.array(_FALSE))
    bad = pc.and_(pc.invert(pc.or_(is_true, is_false)), pc.is_valid(s))
    if pc.any(bad).as_py():
        first = pc.filter(arr, bad)[0].as_py()
        raise PgError("22P02", f'invalid input syntax for type boolean: "{first}"')
    return pc.if_else(pc.is_null(s), pa.scalar(None, pa.bool_()), is_true)


def _free_numeric(arr: pa.Array) -> pa.Array:
    """numeric without precision keeps its exact text (validated as a number)."""
    if _is_string(arr.type):
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        con = _duck()
        try:
            con.register("__src", pa.table({"v": text}))
            bad = con.sql("SELECT v FROM __src WHERE v IS NOT NULL AND TRY_CAST(v AS DOUBLE) IS NULL "
                          "LIMIT 1").fetchall()
        finally:
            con.unregister("__src")
        if bad:
            raise PgError("22P02", f'invalid input syntax for type numeric: "{bad[0][0]}"')
        return text
    if pa.types.is_floating(arr.type):
        return pc.cast(arr, pa.string())
    return arr.cast(pa.string())


def _bytea_from_text(arr: pa.Array) -> pa.Array:
    values = arr.to_pylist()  # bytea text input is rare: hex decoding per value
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif v.startswith("\\x"):
            try:
                out.append(bytes.fromhex(v[2:]))
            except ValueError:
                raise PgError("22P02", f'invalid input syntax for type bytea: "{v}"') from None
        else:
            out.append(v.encode())
    return pa.array(out, pa.binary())


def _check_json(arr: pa.Array) -> None:
    con = _duck()
    try:
        con.register("__src", pa.table({"v": arr.cast(pa.string())}))
        bad = con.sql("SELECT v FROM __src WHERE v IS NOT NULL AND NOT json_valid(v) LIMIT 1").fetchall()
    finally:
        con.unregister("__src")
    if bad:
        raise PgError("22P02", "invalid input syntax for type json", detail=f'Token in "{bad[0][0][:60]}" is invalid.')


# ---------------------------------------------------------------------------------------------
# vectors


_FEW = 8  # below this many values, plain Python parsing beats the vectorised kernels' fixed cost


def _vector_from_python(values: list[Any], ctype: ColumnType) -> pa.Array:
    if all(v is None or isinstance(v, str) for v in values):
        if len(values) <= _FEW:
            return vectors_from_numpy([None if v is None else _parse_one_vector(v) for v in values], ctype)
        return _vector(pa.array(values, pa.string()), ctype)
    rows = []
    for v in values:
        if v is None:
            rows.append(None)
        elif isinstance(v, str):
            rows.append(_vector(pa.array([v]), ctype).values.to_numpy())
        else:
            rows.append(np.asarray(v, dtype=np.float32).ravel())
    return vectors_from_numpy(rows, ctype)


def _parse_one_vector(text: str) -> np.ndarray:
    s = text.strip()
    if not (s.startswith("[") and s.endswith("]")):
        raise PgError("22P02", f'invalid input syntax for type vector: "{text}"',
                      detail='Vector contents must start with "[" and end with "]".')
    inner = s[1:-1].strip()
    if not inner:
        raise PgError("22000", "vector must have at least 1 dimension")
    parts = inner.split(",")
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise PgError("22P02", f'invalid input syntax for type vector: "{bad.strip()}"') from None
    _check_finite(values)
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if np.isinf(out).any():  # beyond float32: pgvector reads it as infinity
        raise PgError("22000", "infinite value not allowed in vector")
    return out


def vectors_from_numpy(rows: list[np.ndarray | None], ctype: ColumnType) -> pa.Array:
    lengths = np.array([0 if r is None else len(r) for r in rows], dtype=np.int64)
    valid = np.array([r is not None for r in rows], dtype=bool)
    if valid.any():
        _check_dims(lengths[valid], ctype.dim)
    dim = ctype.dim if ctype.dim is not None else None
    flat_parts = [r if r is not None else np.zeros(dim or 0, np.float32) for r in rows]
    flat = np.concatenate(flat_parts).astype(np.float32) if flat_parts else np.zeros(0, np.float32)
    _check_finite(flat)
    mask = pa.array(~valid)
    if dim is not None:
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), dim, mask=mask)
    offsets = np.concatenate([[0], np.cumsum(np.where(valid, lengths, 0))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat), mask=mask)


def _check_dims(lengths: np.ndarray, dim: int | None) -> None:
    if (lengths < 1).any():
        raise PgError("22000", "vector must have at least 1 dimension")
    if dim is not None and (lengths != dim).any():
        bad = int(lengths[lengths != dim][0])
        raise PgError("22000", f"expected {dim} dimensions, not {bad}")
    if (lengths > 16000).any():
        raise PgError("54000", "vector cannot have more than 16000 dimensions")


def _check_finite(flat: np.ndarray) -> None:
    if not np.isfinite(flat).all():
        if np.isnan(flat).any():
            raise PgError("22000", "NaN not allowed in vector")
        raise PgError("22000", "infinite value not allowed in vector")


def _vector(arr: pa.Array, ctype: ColumnType) -> pa.Array:
    """Strings '[1,2,3]' or numeric lists -> fixed_size_list<float32, dim> (list<float32> if no dim)."""
    if _is_string(arr.type):
        return parse_vector_array(arr, ctype.arrow())
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), ctype.arrow())
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            _check_dims(lengths[valid].astype(np.int64), ctype.dim)
        values = pc.list_flatten(arr).cast(pa.float32())
        flat = values.to_numpy(zero_copy_only=False)
        _check_finite(flat)
        if ctype.dim is None:
            return pa.ListArray.from_arrays(_offsets(lengths, valid), values, mask=pa.array(~valid))
        if not valid.all():  # list_flatten skipped null rows: put zeros back in their slots
            full = np.zeros((len(arr), ctype.dim), np.float32)
            full[valid] = flat.reshape(-1, ctype.dim)
            flat = full.ravel()
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), ctype.dim, mask=pa.array(~valid))
    raise PgError("42804", f"cannot cast type {arr.type} to vector")


def _offsets(lengths: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(np.where(valid, lengths, 0))]).astype(np.int32))


def _is_float(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# arrays


def _array_from_python(values: list[Any], ctype: ColumnType) -> pa.Array:
    if all(v is None or isinstance(v, str) for v in values):
        return _array(pa.array(values, pa.string()), ctype)
    if all(v is None or isinstance(v, (list, tuple)) for v in values):
        if any(isinstance(x, (list, tuple)) for v in values if v is not None for x in v):
            raise _multidimensional()
        elements = [x for v in values if v is not None for x in v]
        lengths = np.array([0 if v is None else len(v) for v in values], np.int64)
        flat = from_python(elements, ctype.element)
        return _lists(flat, lengths, np.array([v is not None for v in values]), ctype)
    bad = next(v for v in values if v is not None and not isinstance(v, (str, list, tuple)))
    raise PgError("22P02", f'malformed array literal: "{bad}"', detail='Array value must start with "{" or '
                  "dimension information.")


def _multidimensional() -> PgError:
    return PgError("0A000", "multidimensional arrays are not supported",
                   hint="sqlvec stores one-dimensional arrays.")


def _lists(flat: pa.Array, lengths: np.ndarray, valid: np.ndarray, ctype: ColumnType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(np.where(valid, lengths, 0))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat, ctype.arrow(), mask=pa.array(~valid))


def _array(arr: pa.Array, ctype: ColumnType) -> pa.Array:
    """Array text or lists -> list<element>, each element coerced to the element type."""
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), ctype.arrow())
    if _is_string(arr.type):
        arr = _split_array_texts(arr.cast(pa.string()))
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    if not pa.types.is_list(arr.type):
        raise PgError("42804", f'column is of type {ctype.sql()} but expression is of type {arr.type}')
    if pa.types.is_list(arr.type.value_type) or pa.types.is_large_list(arr.type.value_type):
        raise _multidimensional()
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = coerce(pc.list_flatten(arr), ctype.element)
    return _lists(flat, lengths, valid, ctype)


# Array text DuckDB's list parser does not read as PostgreSQL does: backslash escapes outside quotes,
# single quotes (DuckDB's quotes too), brackets (its nesting), braces inside (nesting in PostgreSQL).
_SPLIT_APART = r"[\\'\[\]]|^.+[{}].+$"


def _split_array_texts(text: pa.Array) -> pa.Array:
    """PostgreSQL array text '{1,NULL,"a b"}' -> list<string> of its elements (NULL for NULL)."""
    s = pc.utf8_trim_whitespace(text)
    bad = pc.invert(pc.and_(pc.starts_with(s, "{"), pc.ends_with(s, "}")))
    if pc.any(bad).as_py():
        first = pc.filter(text, bad)[0].as_py()
        if first.lstrip().startswith("[") and "=" in first:  # explicit bounds: '[0:1]={1,2}'
            raise PgError("0A000", f'array bounds are not supported: "{first}"')
        raise PgError("22P02", f'malformed array literal: "{first}"',
                      detail='Array value must start with "{" or dimension information.')
    inner = pc.utf8_slice_codeunits(s, 1, -1)
    nested = pc.starts_with(pc.utf8_ltrim_whitespace(inner), "{")
    if pc.any(nested).as_py():
        raise _multidimensional()
    apart = pc.fill_null(pc.match_substring_regex(inner, _SPLIT_APART), False)
    quoted = pc.fill_null(pc.match_substring(inner, '"'), False)
    # an unquoted empty element: '{1,,2}', '{,}', '{1,}'
    empty = pc.and_(pc.invert(quoted), pc.match_substring_regex(inner, r"^\s*,|,\s*,|,\s*$"))
    if pc.any(empty).as_py():
        raise PgError("22P02", f'malformed array literal: "{pc.filter(text, empty)[0].as_py()}"',
                      detail="Unexpected \",\" character.")
    con = _duck()
    try:
        con.register("__src", pa.table({"v": pc.binary_join_element_wise("[", inner, "]", "")}))
        lists = con.sql("SELECT CAST(v AS VARCHAR[]) AS v FROM __src").to_arrow_table().column(0).combine_chunks()
    except duckdb.Error:
        lists = None  # some value DuckDB cannot read: all of them by PostgreSQL's rules
    finally:
        con.unregister("__src")
    if lists is None or pc.any(apart).as_py():
        rows = np.flatnonzero(apart.to_numpy(zero_copy_only=False)) if lists is not None else np.arange(len(text))
        exact = [split_array_text(v) for v in pc.take(s, pa.array(rows)).to_pylist()]  # rare values only
        if any(isinstance(x, list) for v in exact for x in v):
            raise _multidimensional()
        fixed = pa.array(exact, pa.list_(pa.string()))
        if lists is None:
            lists = fixed
        else:
            lists = lists.cast(pa.list_(pa.string()))
            index = np.arange(len(text))
            index[rows] = len(text) + np.arange(len(rows))
            lists = pa.concat_arrays([lists, fixed]).take(pa.array(index))
    return lists.cast(pa.list_(pa.string()))
