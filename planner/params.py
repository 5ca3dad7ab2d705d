"""Parameter types from context, as PostgreSQL's parse analysis infers them.

Clients that send parameters as text with type 0 (psycopg for str, psql's \\bind) rely on the
server to infer ``$n``'s type from where it appears; clients that send binary (asyncpg) encode
by the OIDs in ParameterDescription. The rules, in order of precedence:

* ``$1::T`` / ``CAST($1 AS T)``            -> T
* ``col <op> $1`` (comparison, arithmetic, IN, BETWEEN, distance operators) -> col's type
* ``col <-> $1`` with a non-column left side -> vector
* ``col @> $1``, ``col <@ $1``, ``col && $1`` -> col's (array) type; ``$1 = ANY(col)`` -> its element
  type; ``col = ANY($1)`` -> an array of col's type; ``a[$1]`` -> integer
* ``INSERT INTO t (a, b) VALUES ($1, $2)``  -> a's and b's types (done by the INSERT planner)
* ``LIMIT $1`` / ``OFFSET $1``              -> bigint
* otherwise text.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from planner.dialect import VectorDistance
from planner.errors import feature_not_supported
from storage.types import ARRAY_ELEMENTS, PG_TYPES, TYPE_ALIASES, ColumnType

TEXT_OID = PG_TYPES["text"].oid
INT8_OID = PG_TYPES["int8"].oid
FLOAT8_OID = PG_TYPES["float8"].oid
BOOL_OID = PG_TYPES["bool"].oid
NUMERIC_OID = PG_TYPES["numeric"].oid

ColumnTypeOf = Callable[[exp.Column], ColumnType | None]

_BINARY_CONTEXTS = (
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.Mod, exp.Like, exp.ILike, exp.Is, exp.ArrayContainsAll, exp.ArrayContainedBy, exp.ArrayOverlaps,
)
INT4_OID = PG_TYPES["int4"].oid


def parameter_number(p: exp.Parameter) -> int:
    return int(p.this.name)


def parameters(ast: exp.Expr) -> list[exp.Parameter]:
    return [p for p in ast.find_all(exp.Parameter) if p.this is not None and p.this.is_int]


def column_type_from_datatype(dt: exp.DataType, *, column: bool = False) -> ColumnType | None:
    """A sqlglot DataType -> ColumnType, or None for types sqlvec cannot store. With ``column`` (a
    column definition), arrays of more than one dimension or of types that cannot be array elements
    (storage.types.ARRAY_ELEMENTS) are 0A000 rather than None."""
    if dt.this == exp.DType.ARRAY:
        inner = dt.expressions[0] if dt.expressions else None
        element = column_type_from_datatype(inner) if isinstance(inner, exp.DataType) else None
        if element is None:
            return None
        if inner.this == exp.DType.ARRAY or element.name not in ARRAY_ELEMENTS:
            if not column:
                return None
            if inner.this == exp.DType.ARRAY:
                raise feature_not_supported("a multidimensional array column")
            raise feature_not_supported(f"an array column of type {element.sql()}")
        return element.array_of()
    name = dt.sql("postgres").lower()
    base = name.split("(", 1)[0].strip()
    params = [e.this.name for e in dt.expressions if isinstance(e, exp.DataTypeParam)]
    if dt.this == exp.DType.VECTOR:
        return ColumnType("vector", dim=int(params[0]) if params else None)
    if dt.this in (exp.DType.BIGSERIAL,):
        return ColumnType("int8")
    if dt.this in (exp.DType.SERIAL,):
        return ColumnType("int4")
    if dt.this in (exp.DType.SMALLSERIAL,):
        return ColumnType("int2")
    if dt.this in (exp.DType.TIMESTAMPTZ,):
        return ColumnType("timestamptz")
    if dt.this in (exp.DType.TIMESTAMP,):
        return ColumnType("timestamp")
    if dt.this in (exp.DType.DOUBLE,):
        return ColumnType("float8")
    if dt.this in (exp.DType.FLOAT,):
        return ColumnType("float4")
    if dt.this in (exp.DType.VARCHAR,):
        return ColumnType("varchar", length=int(params[0]) if params else None)
    if dt.this in (exp.DType.DECIMAL,):
        if params:
            return ColumnType("numeric", precision=int(params[0]),
                              scale=int(params[1]) if len(params) > 1 else 0)
        return ColumnType("numeric")
    canonical = TYPE_ALIASES.get(base)
    if canonical is None:
        return None
    return ColumnType(canonical)


def infer(ast: exp.Expr, column_type_of: ColumnTypeOf, known: dict[int, int] | None = None) -> dict[int, int]:
    """OID per parameter number found in ``ast`` (``known`` wins; it holds client-given OIDs)."""
    found: dict[int, int] = {}
    for p in parameters(ast):
        n = parameter_number(p)
        if n in found:
            continue
        oid = _from_context(p, column_type_of)
        if oid is not None:
            found[n] = oid
    for p in parameters(ast):
        found.setdefault(parameter_number(p), TEXT_OID)
    if known:
        found.update({n: oid for n, oid in known.items() if oid})
    return found


def _from_context(p: exp.Parameter, column_type_of: ColumnTypeOf) -> int | None:
    param, parent = p, p.parent
    while isinstance(parent, (exp.Paren, exp.Neg)):
        p, parent = parent, parent.parent  # type: ignore[assignment]
    if parent is None:
        return None
    if isinstance(parent, exp.Cast):
        ct = column_type_from_datatype(parent.to)
        return ct.oid if ct else None
    if isinstance(parent, (exp.Limit, exp.Offset, exp.Fetch)):
        return INT8_OID
    if isinstance(parent, VectorDistance):
        other = parent.expression if parent.this is p else parent.this
        return PG_TYPES["vector"].oid if other is not None else None
    if isinstance(parent, exp.Anonymous) and parent.name.lower() in (
        "l2_distance", "cosine_distance", "inner_product", "l1_distance", "vector_dims", "vector_norm",
        "l2_normalize",
    ):
        return PG_TYPES["vector"].oid
    if quantified(parent) is param and isinstance(parent.parent, _BINARY_CONTEXTS):  # x = ANY($1)
        comparison = parent.parent
        other = comparison.expression if comparison.this is parent else comparison.this
        element = _type_of_operand(other, column_type_of)
        array = next((t.array_oid for t in PG_TYPES.values() if t.oid == element and t.array_oid), None)
        return array
    if isinstance(parent, exp.Bracket) and parent.this is not p:
        return INT4_OID
    if isinstance(parent, _BINARY_CONTEXTS):
        other = parent.expression if parent.this is p else parent.this
        inner = quantified(other)
        if inner is not None:  # $1 = ANY(col): col's element type
            array = _type_of_operand(inner, column_type_of)
            return next((t.oid for t in PG_TYPES.values() if t.array_oid == array and array), None)
        return _type_of_operand(other, column_type_of)
    if isinstance(parent, exp.In):
        return _type_of_operand(parent.this, column_type_of)
    if isinstance(parent, exp.Between):
        return _type_of_operand(parent.this, column_type_of)
    if isinstance(parent, (exp.And, exp.Or, exp.Not)):
        return BOOL_OID
    return None


def quantified(e: exp.Expr | None) -> exp.Expr | None:
    """The argument of ``ANY(...)`` / ``ALL(...)`` (sqlglot parses ALL as a plain call)."""
    inner = None
    if isinstance(e, (exp.Any, exp.All)):
        inner = e.this
    elif isinstance(e, exp.Anonymous) and e.name.upper() == "ALL" and len(e.expressions) == 1:
        inner = e.expressions[0]
    while isinstance(inner, exp.Paren):
        inner = inner.this
    return inner


def _type_of_operand(e: exp.Expr | None, column_type_of: ColumnTypeOf) -> int | None:
    if isinstance(e, exp.Column):
        ct = column_type_of(e)
        return ct.oid if ct else None
    if isinstance(e, exp.Cast):
        ct = column_type_from_datatype(e.to)
        return ct.oid if ct else None
    if isinstance(e, exp.Literal):
        if e.is_string:
            return TEXT_OID
        return INT8_OID if e.is_int else NUMERIC_OID
    return None
