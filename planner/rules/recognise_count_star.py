"""Rule: ``SELECT count(*) FROM t`` (no WHERE, GROUP BY, joins) becomes CountStar.

Example::

    SELECT count(*) FROM docs      -> CountStar(table=docs)
    SELECT count(*) AS n FROM docs -> CountStar(table=docs, name=n)

The count is exact and real time: storage keeps each segment's live-row count.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from planner.plan import CountStar, Plan, Query
from storage.types import TableSchema


def recognise_count_star(node: Plan, catalog: Mapping[str, TableSchema]) -> Plan:
    if not isinstance(node, Query) or len(node.tables) != 1:
        return node
    ast = node.ast
    if not isinstance(ast, exp.Select) or len(ast.expressions) != 1:
        return node
    if any(ast.args.get(k) for k in ("joins", "where", "group", "having", "distinct", "order", "limit",
                                     "offset", "with_", "with", "qualify")):
        return node
    item = ast.expressions[0]
    count = item.this if isinstance(item, exp.Alias) else item
    if not isinstance(count, exp.Count) or not isinstance(count.this, exp.Star):
        return node
    if not isinstance(ast.args["from_"].this, exp.Table):
        return node
    plan = CountStar(node.tables[0], node.names.get(0, "count"))
    plan.param_oids = node.param_oids
    return plan
