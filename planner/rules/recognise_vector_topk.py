"""Rule: a single-table query ordered by a vector distance with a LIMIT becomes VectorTopK.

Example::

    SELECT id, embedding <=> $1 AS d FROM docs WHERE lang = 'en' ORDER BY d LIMIT 10
    -> VectorTopK(table=docs, column=embedding, metric=cosine, query=$1, limit=10,
                  filter=lang = 'en',
                  projection=SELECT id, __distance AS d FROM __topk AS docs
                             ORDER BY __distance NULLS LAST, __rowid)

It matches only when search can answer exactly what PostgreSQL would: one table, no joins,
GROUP BY, DISTINCT, window functions or aggregates; one ORDER BY key, ascending, that is
``column <op> q`` (or an l2/cosine/l1_distance call, or a select alias of one of those) where
q is a constant or parameter; a constant or parameter LIMIT. Anything else stays a Query.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from planner.dialect import DISTANCE_FUNCTIONS, DISTANCE_OPERATORS, VectorDistance
from planner.plan import Plan, Query, VectorTopK
from storage.types import TableSchema

TOPK_TABLE = "__topk"
ROWID = "__rowid"
DISTANCE = "__distance"

_METRIC_CLASS = {cls.metric: cls for cls in DISTANCE_OPERATORS.values()}


def recognise_vector_topk(node: Plan, catalog: Mapping[str, TableSchema]) -> Plan:
    if not isinstance(node, Query):
        return node
    ast = node.ast
    if not isinstance(ast, exp.Select) or len(node.tables) != 1:
        return node
    if any(ast.args.get(k) for k in ("joins", "group", "having", "distinct", "windows", "with_", "with")):
        return node
    if any(True for _ in ast.find_all(exp.AggFunc, exp.Window, exp.Subquery)):
        return node
    order = ast.args.get("order")
    limit = ast.args.get("limit")
    if order is None or limit is None or len(order.expressions) != 1:
        return node
    ordered = order.expressions[0]
    if ordered.args.get("desc"):
        return node
    key = _resolve_alias(ordered.this, ast)
    distance = _as_distance(key)
    if distance is None:
        return node
    column, query = distance.this, distance.expression
    if not isinstance(column, exp.Column) or not _is_constant_vector(query):
        return node
    table = node.tables[0]
    schema = catalog[table]
    col = schema.column(column.name if column.this.quoted else column.name.lower())
    if col is None or col.type.name != "vector":
        return node
    limit_expr = limit.expression
    if not _is_constant_int(limit_expr):
        return node
    offset = ast.args.get("offset")
    offset_expr = offset.expression if offset is not None else None
    if offset_expr is not None and not _is_constant_int(offset_expr):
        return node

    source = ast.args["from_"].this if ast.args.get("from_") else ast.args["from"].this
    alias = source.alias_or_name
    projection = ast.copy()
    for k in ("where", "order", "limit", "offset"):
        projection.set(k, None)
    projection = projection.transform(lambda e: exp.column(DISTANCE) if _same_distance(e, distance) else e)
    projection.set("expressions", _expand_stars(projection.expressions, alias, schema))
    projection.set("from_", exp.From(this=exp.Table(this=exp.to_identifier(TOPK_TABLE),
                                                     alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))))
    projection = projection.order_by(exp.Ordered(this=exp.column(DISTANCE), nulls_first=False), exp.column(ROWID))
    proj = Query(projection, (), node.column_types, node.names)
    proj.param_oids = node.param_oids
    where = ast.args.get("where")
    topk = VectorTopK(
        table=table, column=col.name, metric=distance.metric, query=query.copy(), limit=limit_expr.copy(),
        offset=offset_expr.copy() if offset_expr is not None else None,
        filter=where.this.copy() if where is not None else None, projection=proj, dim=col.type.dim,
    )
    topk.param_oids = node.param_oids
    return topk


def _expand_stars(expressions: list[exp.Expr], alias: str, schema: TableSchema) -> list[exp.Expr]:
    """``*`` over the winners must not show the search's own ``__rowid`` / ``__distance`` columns."""
    out: list[exp.Expr] = []
    for e in expressions:
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            out.extend(exp.column(exp.to_identifier(c.name, quoted=True), table=exp.to_identifier(alias, quoted=True))
                       for c in schema.columns)
        else:
            out.append(e)
    return out


def _resolve_alias(key: exp.Expr, select: exp.Select) -> exp.Expr:
    """An output-column alias or position (``ORDER BY d``, ``ORDER BY 2``) -> the expression it names."""
    if isinstance(key, exp.Literal) and key.is_int and 1 <= int(key.this) <= len(select.expressions):
        e = select.expressions[int(key.this) - 1]
        return e.this if isinstance(e, exp.Alias) else e
    if isinstance(key, exp.Column) and not key.args.get("table"):
        for e in select.expressions:
            if isinstance(e, exp.Alias) and e.alias == key.name:
                return e.this
    return key


def _as_distance(e: exp.Expr) -> VectorDistance | None:
    if isinstance(e, VectorDistance):
        return e
    if isinstance(e, (exp.Anonymous,)) and e.name.lower() in DISTANCE_FUNCTIONS and len(e.expressions) == 2:
        cls = _METRIC_CLASS[DISTANCE_FUNCTIONS[e.name.lower()]]
        return cls(this=e.expressions[0], expression=e.expressions[1])
    return None


def _same_distance(e: exp.Expr, distance: VectorDistance) -> bool:
    d = _as_distance(e)
    return (d is not None and d.metric == distance.metric and d.this == distance.this
            and d.expression == distance.expression)


def _is_constant_vector(e: exp.Expr) -> bool:
    while isinstance(e, (exp.Cast, exp.Paren)):
        e = e.this
    return isinstance(e, exp.Parameter) or (isinstance(e, exp.Literal) and e.is_string)


def _is_constant_int(e: exp.Expr) -> bool:
    return isinstance(e, exp.Parameter) or (isinstance(e, exp.Literal) and e.is_int)
