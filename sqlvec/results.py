"""Arrow results -> RowDescription columns (PostgreSQL type OIDs) and the rows wire/ encodes."""

from __future__ import annotations

import pyarrow as pa

from storage.types import PG_TYPES, VECTOR_OID, ColumnType
from wire.pgtypes import type_size
from wire.session import ColumnDesc

_OID = {name: t.oid for name, t in PG_TYPES.items()}


def oid_of_arrow(t: pa.DataType) -> int:
    if pa.types.is_boolean(t):
        return _OID["bool"]
    if pa.types.is_int16(t) or pa.types.is_int8(t) or pa.types.is_uint8(t):
        return _OID["int2"]
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return _OID["int4"]
    if pa.types.is_uint32(t):  # how sqlvec's catalog and DuckDB's UINTEGER keep PostgreSQL's oid
        return 26
    if pa.types.is_integer(t):
        return _OID["int8"]
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return _OID["float4"]
    if pa.types.is_float64(t):
        return _OID["float8"]
    if pa.types.is_decimal(t):
        return _OID["numeric"]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _OID["text"]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _OID["bytea"]
    if pa.types.is_date(t):
        return _OID["date"]
    if pa.types.is_timestamp(t):
        return _OID["timestamptz"] if t.tz else _OID["timestamp"]
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        v = t.value_type
        if pa.types.is_float32(v):
            return VECTOR_OID  # DuckDB's FLOAT[]: vector expressions (l2_normalize, ...)
        element = oid_of_arrow(v)
        if element == 26:
            return 1028  # oid[]
        array = next((t.array_oid for t in PG_TYPES.values() if t.oid == element and t.array_oid), None)
        return array if array is not None and not pa.types.is_list(v) else _OID["_text"]
    return _OID["text"]


def describe(schema: pa.Schema, names: dict[int, str] | None = None,
             column_types: dict[int, ColumnType] | None = None) -> list[ColumnDesc]:
    out = []
    for i, field in enumerate(schema):
        name = (names or {}).get(i, field.name)
        ct = (column_types or {}).get(i)
        if isinstance(ct, int):  # a catalog column's PostgreSQL type (planner/catalog_schema.py)
            out.append(ColumnDesc(name, ct, -1, type_size(ct)))
        elif ct is not None:
            pg = PG_TYPES[ct.name]
            out.append(ColumnDesc(name, ct.oid, ct.typmod, pg.typlen))
        else:
            oid = oid_of_arrow(field.type)
            typlen = next((t.typlen for t in PG_TYPES.values() if t.oid == oid), -1)
            out.append(ColumnDesc(name, oid, -1, typlen))
    return out
