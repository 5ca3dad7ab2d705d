"""Simple WHERE predicates of a vector search, evaluated straight with Arrow compute kernels.

A filtered top-k or range search needs the filter as a bool mask per segment. DuckDB evaluates any
predicate, but each call costs about 2 ms (registering the view, binding, planning); most filters are a
few comparisons of columns with constants, which Arrow's kernels evaluate in tens of microseconds. This
module handles exactly those and answers None for anything else, so the caller falls back to DuckDB:

    column <op> constant (=, <>, <, <=, >, >=, either side), column <op> column of the same kind,
    AND, OR, NOT, parentheses, IN / NOT IN (constants, no NULL among them), BETWEEN, IS [NOT] NULL

over integer, floating-point, boolean and text columns, where the constant is of the column's kind (a
number for numbers, a string for text, a boolean for booleans). SQL's three-valued logic is kept
(Kleene AND/OR; a comparison with NULL is NULL; NULL NOT IN (...) is NULL); NULL counts as false in the
final mask, as in WHERE. Anything that would need PostgreSQL's implicit casts (a string compared with a
number, dates, numeric, json) goes to DuckDB, which applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import params as P
from storage.types import TableSchema

_KINDS = {"int2": "number", "int4": "number", "int8": "number", "float4": "number", "float8": "number",
          "bool": "bool", "text": "text", "varchar": "text"}

_COMPARE = {exp.EQ: "equal", exp.NEQ: "not_equal", exp.LT: "less", exp.LTE: "less_equal",
            exp.GT: "greater", exp.GTE: "greater_equal"}


class _Unsupported(Exception):
    """The predicate has something this module does not evaluate: DuckDB does."""


class _Value:
    """An evaluated operand: an Arrow array (a column or a boolean result) or a Python constant."""

    __slots__ = ("array", "constant", "kind")

    def __init__(self, array: pa.ChunkedArray | pa.Array | None, constant: Any, kind: str) -> None:
        self.array, self.constant, self.kind = array, constant, kind


def filter_mask(predicate: exp.Expr, data: pa.Table, schema: TableSchema, alias: str,
                params: Sequence[Any]) -> np.ndarray | None:
    """The rows of ``data`` for which ``predicate`` is true, or None when the predicate is not simple."""
    try:
        out = _Evaluator(data, schema, alias, params).boolean(predicate)
    except (_Unsupported, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
        return None
    return np.asarray(pc.fill_null(out, False).to_numpy(zero_copy_only=False), dtype=bool)


class _Evaluator:
    def __init__(self, data: pa.Table, schema: TableSchema, alias: str, params: Sequence[Any]) -> None:
        self.data, self.schema, self.alias, self.params = data, schema, alias, params

    def boolean(self, e: exp.Expr) -> pa.ChunkedArray | pa.Array:
        if isinstance(e, exp.Paren):
            return self.boolean(e.this)
        if isinstance(e, exp.And):
            return pc.and_kleene(self.boolean(e.this), self.boolean(e.expression))
        if isinstance(e, exp.Or):
            return pc.or_kleene(self.boolean(e.this), self.boolean(e.expression))
        if isinstance(e, exp.Not):
            return pc.invert(self.boolean(e.this))
        if type(e) in _COMPARE:
            return self._compare(_COMPARE[type(e)], self.value(e.this), self.value(e.expression))
        if isinstance(e, exp.Between):
            x = self.value(e.this)
            return pc.and_kleene(self._compare("greater_equal", x, self.value(e.args["low"])),
                                 self._compare("less_equal", x, self.value(e.args["high"])))
        if isinstance(e, exp.In):
            found = self._in(e)
            return pc.invert(found) if e.args.get("negate") else found
        if isinstance(e, exp.Is) and isinstance(e.expression, exp.Null):
            x = self.value(e.this)
            if x.array is None:
                raise _Unsupported("IS NULL of a constant")
            return pc.is_valid(x.array) if e.args.get("negate") else pc.is_null(x.array)
        if isinstance(e, exp.Column):
            v = self.value(e)
            if v.kind != "bool":
                raise _Unsupported("a non-boolean column as a condition")
            return v.array
        raise _Unsupported(type(e).__name__)

    def value(self, e: exp.Expr) -> _Value:
        if isinstance(e, exp.Paren):
            return self.value(e.this)
        if isinstance(e, exp.Column):
            qualifier = e.args.get("table")
            if qualifier is not None and qualifier.name != self.alias:
                raise _Unsupported("another table's column")
            name = e.this.this if e.this.quoted else e.name.lower()
            col = self.schema.column(name)
            kind = _KINDS.get(col.type.name) if col is not None else None
            if kind is None:
                raise _Unsupported(f"column {name}")
            return _Value(self.data.column(name), None, kind)
        if isinstance(e, exp.Literal):
            if e.is_string:
                return _Value(None, e.this, "text")
            return _Value(None, int(e.this) if e.is_int else float(e.this), "number")
        if isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal) and not e.this.is_string:
            v = self.value(e.this)
            return _Value(None, -v.constant, "number")
        if isinstance(e, exp.Boolean):
            return _Value(None, bool(e.this), "bool")
        if isinstance(e, exp.Null):
            return _Value(None, None, "null")
        if isinstance(e, exp.Parameter):
            n = P.parameter_number(e)
            v = self.params[n - 1] if 0 < n <= len(self.params) else None
            if isinstance(v, np.generic):
                v = v.item()
            if v is None:
                return _Value(None, None, "null")
            if isinstance(v, bool):
                return _Value(None, v, "bool")
            if isinstance(v, (int, float)):
                return _Value(None, v, "number")
            if isinstance(v, str):
                return _Value(None, v, "text")
            raise _Unsupported(f"a {type(v).__name__} parameter")
        raise _Unsupported(type(e).__name__)

    def _compare(self, fn: str, a: _Value, b: _Value) -> pa.ChunkedArray | pa.Array:
        if a.array is None and b.array is None:
            raise _Unsupported("two constants")
        column = a.array if a.array is not None else b.array
        if a.kind == "null" or b.kind == "null":
            return pa.nulls(len(column), pa.bool_())  # a comparison with NULL is NULL
        if a.kind != b.kind:
            raise _Unsupported(f"{a.kind} compared with {b.kind}")  # PostgreSQL would cast: DuckDB does
        left = a.array if a.array is not None else pa.scalar(a.constant)
        right = b.array if b.array is not None else pa.scalar(b.constant)
        return getattr(pc, fn)(left, right)

    def _in(self, e: exp.In) -> pa.ChunkedArray | pa.Array:
        if e.args.get("query") is not None or e.args.get("unnest") is not None or e.args.get("field") is not None:
            raise _Unsupported("IN with a subquery")
        x = self.value(e.this)
        if x.array is None:
            raise _Unsupported("IN of a constant")
        values = [self.value(v) for v in e.expressions]
        if not values or any(v.array is not None or v.kind != x.kind for v in values):
            raise _Unsupported("IN list of non-constants or other kinds")
        found = pc.is_in(x.array, value_set=pa.array([v.constant for v in values]).cast(x.array.type))
        return pc.if_else(pc.is_null(x.array), pa.scalar(None, pa.bool_()), found)
