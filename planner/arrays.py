"""Array expressions with PostgreSQL's meaning, written for DuckDB's lists.

Array columns (``integer[]``, ``text[]``, ...) are DuckDB lists, and most of PostgreSQL's array SQL
means the same there: ``x = ANY(a)``, ``x <> ALL(a)``, ``a && b``, ``a = b``, ``ARRAY[...]``,
``unnest``, ``array_position``, ``array_to_string``. ``rewrite`` (one ``transform`` pass over a bound
query) changes the rest:

    '{1,2}' beside an array, '{1,2}'::int[]   CAST(sqlvec_array_in('{1,2}') AS INTEGER[])
    a @> b, a <@ b                            sqlvec_array_contains: no NULL element is contained
    a[i]                                      sqlvec_array_elem: NULL for i < 1 (DuckDB counts back)
    a[lo:hi], a[lo:], a[:hi]                  sqlvec_array_slice: bounds clamped, never counted back
    array_length(a, 1), cardinality(a)        integer, NULL / 0 for an empty array
    array_upper(a, 1), array_lower(a, 1), array_ndims(a)
    a || x, x || a (x an element)             list_append / list_prepend
    x op ANY(a), x op ALL(a)                  sqlvec_any / sqlvec_all over list_transform(a, x op e):
                                              NULL, not false, when no element decides and one is NULL
    a::text                                   sqlvec_array_out_*: '{1,"a b",NULL}', PostgreSQL's quoting

"Beside an array" means the other operand of a comparison, containment, overlap, ``||`` or
``= ANY(...)`` whose type is known: an array column, a cast to an array type, an ``ARRAY[...]``.
PostgreSQL types such literals from that context; DuckDB would compare a list with a string.
Literal text is split by DuckDB's list reader (double quotes as PostgreSQL quotes them); unquoted
backslash escapes and single quotes inside elements are not PostgreSQL's there (stored values are
parsed exactly, by sqlvec/coerce.py). ``real[]``/``double precision[]`` cast to text print their
elements as DuckDB does, without PostgreSQL's exponent rules (result columns are encoded exactly, by
wire/column_encoding.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from planner import params as P
from storage.types import ColumnType

ColumnTypeOf = Callable[[exp.Column], "ColumnType | None"]

_SCALAR_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
_COMPARISONS = (*_SCALAR_COMPARISONS, exp.ArrayContainsAll, exp.ArrayContainedBy, exp.ArrayOverlaps, exp.DPipe)

# DuckDB's names for the element types of array columns (storage.types.ARRAY_ELEMENTS)
DUCKDB_ELEMENT = {"bool": "BOOLEAN", "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT",
                  "float4": "FLOAT", "float8": "DOUBLE", "text": "VARCHAR", "varchar": "VARCHAR"}


def array_type(e: exp.Expr | None, column_type_of: ColumnTypeOf) -> ColumnType | None:
    """The array type of ``e`` where the query says it (a column, a cast, a slice of one)."""
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.Column):
        ct = column_type_of(e)
        return ct if ct is not None and ct.is_array else None
    if isinstance(e, exp.Cast):
        ct = P.column_type_from_datatype(e.to)
        return ct if ct is not None and ct.is_array else None
    if isinstance(e, exp.Bracket) and len(e.expressions) == 1 and isinstance(e.expressions[0], exp.Slice):
        return array_type(e.this, column_type_of)
    return None


def _is_array(e: exp.Expr | None, column_type_of: ColumnTypeOf) -> bool:
    while isinstance(e, exp.Paren):
        e = e.this
    return array_type(e, column_type_of) is not None or isinstance(e, exp.Array) or (
        isinstance(e, exp.Anonymous) and e.name.lower() == "sqlvec_array_in")


def _duckdb_type(ct: ColumnType) -> exp.DataType:
    return exp.DataType.build(f"{DUCKDB_ELEMENT[ct.element.name]}[]", dialect="duckdb")


def from_text(literal: exp.Expr, ct: ColumnType | None) -> exp.Expr:
    """``literal`` (array text) read as an array of ``ct`` (None: of text)."""
    parsed = exp.Anonymous(this="sqlvec_array_in", expressions=[literal.copy()])
    return exp.Cast(this=parsed, to=_duckdb_type(ct)) if ct is not None else parsed


def _is_text_literal(e: exp.Expr | None) -> bool:
    return isinstance(e, exp.Literal) and e.is_string


def _element_of(e: exp.Expr | None, column_type_of: ColumnTypeOf) -> ColumnType | None:
    """The scalar type of a column or cast, as the element of the array beside it in ``x = ANY(...)``."""
    if isinstance(e, exp.Column):
        ct = column_type_of(e)
    elif isinstance(e, exp.Cast):
        ct = P.column_type_from_datatype(e.to)
    else:
        return None
    if ct is None or ct.is_array or ct.name not in DUCKDB_ELEMENT:
        return None
    return ct


_TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR)
_ELEMENT_TEXT = {"bool": "bool", "float4": "float", "float8": "float", "text": "text", "varchar": "text"}


def rewrite(e: exp.Expr, column_type_of: ColumnTypeOf) -> exp.Expr:
    """One node of a bound query, rewritten as the module docstring lists (for ``ast.transform``)."""
    if isinstance(e, exp.Cast) and _is_text_literal(e.this):
        ct = array_type(e, column_type_of)
        if ct is not None and ct.element.name in DUCKDB_ELEMENT:
            return exp.Cast(this=from_text(e.this, None), to=e.to.copy())
        return e
    if isinstance(e, exp.Cast) and e.to.this in _TEXT_TYPES and not e.to.expressions:
        ct = array_type(e.this, column_type_of)
        if ct is not None:
            kind = _ELEMENT_TEXT.get(ct.element.name, "int")
            return exp.Anonymous(this=f"sqlvec_array_out_{kind}", expressions=[e.this])
        return e
    if isinstance(e, _COMPARISONS):
        e = _binary(e, column_type_of)
        return _quantified(e, column_type_of) if isinstance(e, _SCALAR_COMPARISONS) else e
    if isinstance(e, exp.Bracket) and _is_array(e.this, column_type_of) and len(e.expressions) == 1:
        index = e.expressions[0]
        if isinstance(index, exp.Slice):
            lo = index.this if index.this is not None else exp.Literal.number(1)
            hi = index.expression if index.expression is not None else exp.Null()
            return exp.Anonymous(this="sqlvec_array_slice", expressions=[e.this, lo, hi])
        if isinstance(index, exp.Literal) and index.is_int:  # sqlglot keeps literal subscripts 0-based
            index = exp.Literal.number(int(index.this) + 1)
        return exp.Anonymous(this="sqlvec_array_elem", expressions=[e.this, index])
    if isinstance(e, exp.ArraySize) and _is_array(e.this, column_type_of):
        return exp.Anonymous(this="sqlvec_array_length", expressions=[e.this, e.expression or exp.Literal.number(1)])
    if isinstance(e, exp.Anonymous) and e.expressions and _is_array(e.expressions[0], column_type_of):
        name = e.name.lower()
        if name in ("cardinality", "array_upper", "array_lower", "array_ndims"):
            return exp.Anonymous(this=f"sqlvec_{name}", expressions=e.expressions)
    return e


_ELEMENT = "sqlvec_e"


def _quantified(e: exp.Expr, column_type_of: ColumnTypeOf) -> exp.Expr:
    """``x op ANY(a)`` / ``x op ALL(a)`` over a list, with PostgreSQL's three-valued answer."""
    inner = P.quantified(e.expression)
    if inner is None or isinstance(inner, (exp.Select, exp.Subquery, exp.Union)):
        return e
    each = type(e)(this=e.this.copy(), expression=exp.column(_ELEMENT))
    element = _element_of(e.this, column_type_of) if isinstance(inner, exp.Parameter) else None
    if element is not None:  # an array parameter, typed: DuckDB cannot bind a lambda over an empty untyped list
        inner = exp.Cast(this=inner.copy(), to=_duckdb_type(element.array_of()))
    tests = exp.Anonymous(this="list_transform", expressions=[
        inner.copy(), exp.Lambda(this=each, expressions=[exp.to_identifier(_ELEMENT)])])
    name = "sqlvec_any" if isinstance(e.expression, exp.Any) else "sqlvec_all"
    return exp.Anonymous(this=name, expressions=[inner.copy(), tests])


def _binary(e: exp.Expr, column_type_of: ColumnTypeOf) -> exp.Expr:
    left, right = e.this, e.expression
    for this, other, key in ((left, right, "expression"), (right, left, "this")):
        inner = P.quantified(other)
        if inner is not None and _is_text_literal(inner) and isinstance(e, _SCALAR_COMPARISONS):
            element = _element_of(this, column_type_of)
            converted = from_text(inner, element.array_of() if element else None)
            quantifier = other.copy()
            quantifier.set("expressions" if isinstance(quantifier, exp.Anonymous) else "this",
                           [converted] if isinstance(quantifier, exp.Anonymous) else converted)
            e = e.copy()
            e.set(key, quantifier)
            return e
        if _is_text_literal(other) and _is_array(this, column_type_of):
            e = e.copy()
            e.set(key, from_text(other, array_type(this, column_type_of)))
            left, right = e.this, e.expression
            break
    if isinstance(e, (exp.ArrayContainsAll, exp.ArrayContainedBy)) and (
            _is_array(left, column_type_of) or _is_array(right, column_type_of)):
        outer, inner_ = (left, right) if isinstance(e, exp.ArrayContainsAll) else (right, left)
        return exp.Anonymous(this="sqlvec_array_contains", expressions=[outer, inner_])
    if isinstance(e, exp.DPipe):
        left_array, right_array = _is_array(left, column_type_of), _is_array(right, column_type_of)
        if left_array and not right_array:
            return exp.Anonymous(this="list_append", expressions=[left, right])
        if right_array and not left_array:
            return exp.Anonymous(this="list_prepend", expressions=[left, right])
    return e


# DuckDB macros for the rewrites above (planner/dialect.py installs them with the others).
DUCKDB_MACROS: tuple[str, ...] = (
    # PostgreSQL's array text '{1,"a b",NULL}' -> VARCHAR[] (cast to the element type by the caller)
    "CREATE OR REPLACE MACRO sqlvec_array_in(s) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN NOT (trim(s) LIKE '{%}') THEN error('malformed array literal: \"' || s || '\"') "
    "WHEN ltrim(substr(trim(s), 2)) LIKE '{%' THEN error('multidimensional arrays are not supported') "
    "ELSE CAST('[' || substr(trim(s), 2, length(trim(s)) - 2) || ']' AS VARCHAR[]) END",
    # a @> b: every element of b is an element of a; a NULL element is never equal to anything
    "CREATE OR REPLACE MACRO sqlvec_array_contains(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "ELSE list_has_all(a, b) AND list_count(b) = len(b) END",
    "CREATE OR REPLACE MACRO sqlvec_array_elem(a, i) AS CASE WHEN i >= 1 THEN a[i] END",
    "CREATE OR REPLACE MACRO sqlvec_array_slice(a, lo, hi) AS CASE WHEN a IS NULL OR lo IS NULL THEN NULL "
    "WHEN coalesce(hi, len(a)) < greatest(lo, 1) THEN list_slice(a, 1, 0) "
    "ELSE list_slice(a, greatest(lo, 1), coalesce(hi, len(a))) END",
    "CREATE OR REPLACE MACRO sqlvec_array_length(a, d) AS "
    "CASE WHEN d = 1 AND len(a) > 0 THEN CAST(len(a) AS INTEGER) END",
    "CREATE OR REPLACE MACRO sqlvec_cardinality(a) AS CAST(len(a) AS INTEGER)",
    "CREATE OR REPLACE MACRO sqlvec_array_upper(a, d) AS sqlvec_array_length(a, d)",
    "CREATE OR REPLACE MACRO sqlvec_array_lower(a, d) AS CASE WHEN d = 1 AND len(a) > 0 THEN 1 END",
    "CREATE OR REPLACE MACRO sqlvec_array_ndims(a) AS CASE WHEN len(a) > 0 THEN 1 END",
    # t: the comparison with each element (TRUE / FALSE / NULL)
    "CREATE OR REPLACE MACRO sqlvec_any(a, t) AS CASE WHEN a IS NULL THEN NULL WHEN list_bool_or(t) THEN TRUE "
    "WHEN list_count(t) < len(t) THEN NULL ELSE FALSE END",
    "CREATE OR REPLACE MACRO sqlvec_all(a, t) AS CASE WHEN a IS NULL THEN NULL WHEN NOT list_bool_and(t) THEN FALSE "
    "WHEN list_count(t) < len(t) THEN NULL ELSE TRUE END",
    # array_out: elements joined by commas in braces, NULL as NULL, text quoted where array_in needs it
    *(f"CREATE OR REPLACE MACRO sqlvec_array_out_{kind}(a) AS CASE WHEN a IS NULL THEN NULL "
      f"ELSE '{{' || coalesce(array_to_string(list_transform(a, lambda x: coalesce({element}, 'NULL')), ','), '') "
      "|| '}' END"
      for kind, element in (
          ("int", "CAST(x AS VARCHAR)"),
          ("bool", "CASE WHEN x THEN 't' WHEN NOT x THEN 'f' END"),
          ("float", "CASE WHEN isnan(x) THEN 'NaN' WHEN x = 'inf'::DOUBLE THEN 'Infinity' "
                    "WHEN x = '-inf'::DOUBLE THEN '-Infinity' "
                    "ELSE regexp_replace(CAST(x AS VARCHAR), '\\.0$', '') END"),
          ("text", "CASE WHEN regexp_matches(x, '^$|[{},\"\\\\\\s]|^[Nn][Uu][Ll][Ll]$') "
                   "THEN '\"' || regexp_replace(x, '([\"\\\\])', '\\\\\\1', 'g') || '\"' ELSE x END"),
      )),
)
