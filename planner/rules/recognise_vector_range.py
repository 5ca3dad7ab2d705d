"""Rule: a single-table query whose WHERE bounds a vector distance becomes VectorRange (range search).

Example::

    SELECT id, embedding <-> $1 AS d FROM docs WHERE embedding <-> $1 < 0.5 AND lang = 'en'
    -> VectorRange(table=docs, column=embedding, metric=l2, query=$1, upper=0.5 (exclusive),
                   filter=lang = 'en',
                   projection=SELECT id, __distance AS d FROM __range AS docs
                              ORDER BY __distance NULLS LAST, __rowid)

A top-level AND conjunct of the form ``distance < r``, ``<= r``, ``> r``, ``>= r`` (either side) or
``distance BETWEEN lo AND hi``, where ``distance`` is ``column <op> q`` (or an l2/cosine/l1_distance call)
with q a constant or parameter and the bounds constants or parameters, is answered by the segment's
index range search (or exactly) instead of computing every row's distance in DuckDB. At least one upper
bound is needed (a lower bound alone admits most rows: nothing to search). Every bounding conjunct must
use the same column, operator and query vector; the other conjuncts form the filter. The rest of the
statement (select list, ORDER BY, LIMIT, OFFSET) runs in DuckDB over the rows found, with the distance
expression replaced by their ``__distance``; without an ORDER BY they come nearest first.

Queries that also end in ``ORDER BY distance LIMIT k`` are VectorTopK's (it runs first): k rows are cheaper
than every row within the radius.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from planner.plan import Plan, Query, VectorRange
from planner.rules.recognise_vector_topk import (
    DISTANCE,
    ROWID,
    _as_distance,
    _expand_stars,
    _is_constant_vector,
    _same_distance,
)
from storage.types import TableSchema

RANGE_TABLE = "__range"

# comparison -> (distance on the left: bound kind, inclusive), mirrored when the distance is on the right
_BOUNDS: dict[type, tuple[str, bool]] = {
    exp.LT: ("upper", False),
    exp.LTE: ("upper", True),
    exp.GT: ("lower", False),
    exp.GTE: ("lower", True),
}
_MIRROR = {"upper": "lower", "lower": "upper"}


def recognise_vector_range(node: Plan, catalog: Mapping[str, TableSchema]) -> Plan:
    if not isinstance(node, Query):
        return node
    ast = node.ast
    if not isinstance(ast, exp.Select) or len(node.tables) != 1 or ast.args.get("where") is None:
        return node
    if any(ast.args.get(k) for k in ("joins", "group", "having", "distinct", "windows", "with_", "with")):
        return node
    if any(True for _ in ast.find_all(exp.AggFunc, exp.Window, exp.Subquery)):
        return node
    schema = catalog[node.tables[0]]
    distance = None
    bounds: dict[str, tuple[exp.Expr, bool]] = {}
    rest: list[exp.Expr] = []
    for conjunct in _conjuncts(ast.args["where"].this):
        found = _bound(conjunct)
        if found is None:
            rest.append(conjunct)
            continue
        d, parts = found
        if distance is None:
            distance = d
        elif not _same_distance(d, distance):
            return node  # bounds on two different distances: DuckDB evaluates them
        for kind, value, inclusive in parts:
            if kind in bounds:
                return node  # two upper (or lower) bounds: rare; DuckDB evaluates them
            bounds[kind] = (value, inclusive)
    if distance is None or "upper" not in bounds:
        return node
    column, query = distance.this, distance.expression
    if not isinstance(column, exp.Column) or not _is_constant_vector(query):
        return node
    col = schema.column(column.name if column.this.quoted else column.name.lower())
    if col is None or col.type.name != "vector":
        return node

    source = ast.args["from_"].this
    alias = source.alias_or_name
    projection = ast.copy()
    projection.set("where", None)
    projection = projection.transform(lambda e: exp.column(DISTANCE) if _same_distance(e, distance) else e)
    projection.set("expressions", _expand_stars(projection.expressions, alias, schema))
    projection.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(RANGE_TABLE),
                                                     alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))))
    nearest_first = not any(projection.args.get(k) for k in ("order", "limit", "offset"))
    if projection.args.get("order") is None:
        projection = projection.order_by(exp.Ordered(this=exp.column(DISTANCE), nulls_first=False),
                                         exp.column(ROWID))
    proj = Query(projection, (), node.column_types, node.names)
    proj.param_oids = node.param_oids
    filter_ = exp.and_(*[c.copy() for c in rest]) if rest else None
    lower = bounds.get("lower")
    upper = bounds["upper"]
    plan = VectorRange(
        table=node.tables[0], column=col.name, metric=distance.metric, query=query.copy(),
        lower=lower[0].copy() if lower else None, lower_inclusive=lower[1] if lower else True,
        upper=upper[0].copy(), upper_inclusive=upper[1], filter=filter_, projection=proj, dim=col.type.dim,
        nearest_first=nearest_first,
    )
    plan.param_oids = node.param_oids
    return plan


def _conjuncts(e: exp.Expr) -> list[exp.Expr]:
    """The top-level AND terms, through parentheses (``WITHIN lo TO hi`` parses to a parenthesised AND)."""
    if isinstance(e, exp.Paren):
        return _conjuncts(e.this)
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _bound(e: exp.Expr) -> tuple[exp.Expr, list[tuple[str, exp.Expr, bool]]] | None:
    """(distance, [(upper|lower, bound, inclusive)]) when ``e`` bounds a vector distance by constants."""
    if isinstance(e, exp.Paren):
        return _bound(e.this)
    if isinstance(e, exp.Between):
        d = _as_distance(e.this)
        low, high = e.args.get("low"), e.args.get("high")
        if d is None or not (_is_constant_number(low) and _is_constant_number(high)):
            return None
        return d, [("lower", low, True), ("upper", high, True)]
    kind = _BOUNDS.get(type(e))
    if kind is None:
        return None
    left, right = _as_distance(e.this), _as_distance(e.expression)
    if left is not None and _is_constant_number(e.expression):
        return left, [(kind[0], e.expression, kind[1])]
    if right is not None and _is_constant_number(e.this):
        return right, [(_MIRROR[kind[0]], e.this, kind[1])]
    return None


def _is_constant_number(e: exp.Expr | None) -> bool:
    while isinstance(e, (exp.Cast, exp.Paren)):
        e = e.this
    if isinstance(e, exp.Neg):
        e = e.this
    return isinstance(e, exp.Parameter) or (isinstance(e, exp.Literal) and not e.is_string)
