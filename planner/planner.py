"""Statements -> plans: binding names to the catalog, parameter types, and the rewrite rules.

``plan(statement, catalog, client_param_oids)`` dispatches on the statement's class through
``_PLANNERS`` (STYLE.md: dispatch tables, not if-chains). Names follow PostgreSQL: unquoted
identifiers fold to lower case; ``public.t`` is ``t``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

from sqlglot import exp

from planner import arrays, index_options
from planner import params as P
from planner import parse as parse_module
from planner.copy import copy_options
from planner.errors import SqlError, feature_not_supported, undefined_column
from planner.parse import Statement
from planner.plan import (
    CopyFrom,
    CopyTo,
    CreateIndex,
    CreateTable,
    Delete,
    DropIndex,
    DropTable,
    Insert,
    KeyLookup,
    Plan,
    Query,
    Truncate,
    Update,
    Upsert,
    UtilityPlan,
)
from planner.rules import REWRITE_RULES
from planner.rules.translate_pg_catalog import NOT_YET, catalog_relations, output_types, translate_pg_catalog
from storage.types import ColumnSchema, ColumnType, TableSchema

Catalog = Mapping[str, TableSchema]

ROWID = "__rowid"
EXCLUDED = "excluded"  # ON CONFLICT DO UPDATE's name for the row proposed for insertion
DISTANCE = "__distance"


def identifier_name(ident: exp.Expr | str | None) -> str:
    if ident is None:
        return ""
    if isinstance(ident, str):
        return ident
    if isinstance(ident, exp.Identifier):
        return ident.this if ident.quoted else ident.this.lower()
    return ident.name.lower()


def table_name(table: exp.Table, statement: Statement | None = None) -> str:
    """The catalog name of a table reference; other schemas than public are not there yet."""
    schema = identifier_name(table.args.get("db"))
    if schema and schema != "public":
        raise SqlError("42P01", f'relation "{schema}.{table.name}" does not exist',
                       position=_position(statement, table.name))
    return identifier_name(table.this)


def _position(statement: Statement | None, token: str) -> int | None:
    if statement is None or not token:
        return None
    i = statement.text.lower().find(token.lower())
    return statement.offset + i + 1 if i >= 0 else None


def plan(statement: Statement, catalog: Catalog, client_param_oids: Sequence[int] = ()) -> Plan:
    known = {i + 1: oid for i, oid in enumerate(client_param_oids) if oid}
    if statement.utility is not None and statement.utility.kind == "drop_index":
        node: Plan = _plan_drop_index(statement)
    elif statement.utility is not None:
        node = UtilityPlan(statement.utility)
    else:
        planner = _PLANNERS.get(type(statement.ast))
        if planner is None:
            kind = statement.text.split(None, 2)[:2]
            raise feature_not_supported(" ".join(kind).upper())
        node = planner(statement, catalog, known)
    for rule in REWRITE_RULES:
        node = rule(node, catalog)
    return node


# ---------------------------------------------------------------------------------------------
# Queries


class Scope:
    """Tables visible to a query, by alias, for column binding and parameter inference."""

    def __init__(self, catalog: Catalog, statement: Statement | None) -> None:
        self.catalog = catalog
        self.statement = statement
        self.tables: dict[str, TableSchema] = {}  # alias -> schema
        self.ctes: set[str] = set()

    def add(self, table: exp.Table) -> str | None:
        name = table_name(table, self.statement)
        if name in self.ctes:
            return None
        schema = self.catalog.get(name)
        if schema is None:
            raise SqlError("42P01", f'relation "{name}" does not exist', position=_position(self.statement, table.name))
        alias = identifier_name(table.args.get("alias").this) if table.args.get("alias") else name
        self.tables[alias] = schema
        return name

    def column_type(self, col: exp.Column) -> ColumnType | None:
        name = identifier_name(col.this)
        qualifier = identifier_name(col.args.get("table")) if col.args.get("table") else None
        for alias, schema in self.tables.items():
            if qualifier and qualifier != alias:
                continue
            c = schema.column(name)
            if c is not None:
                return c.type
        return None

    def has_column(self, name: str) -> bool:
        return any(schema.column(name) is not None for schema in self.tables.values())


def _bind_query(
    ast: exp.Expr, catalog: Catalog, statement: Statement | None
) -> tuple[exp.Expr, Scope, tuple[str, ...]]:
    """Check table names and rewrite them to their catalog names; collect the scope."""
    ast = ast.copy()
    scope = Scope(catalog, statement)
    for cte in ast.find_all(exp.CTE):
        scope.ctes.add(identifier_name(cte.args["alias"].this))
    used: list[str] = []
    for table in list(ast.find_all(exp.Table)):
        if isinstance(table.this, exp.Anonymous) or not table.name:  # table functions, e.g. generate_series
            continue
        name = scope.add(table)
        if name is None:
            continue
        if name not in used:
            used.append(name)
        table.set("db", None)
        table.set("this", exp.to_identifier(name, quoted=True))
    _check_columns(ast, scope, statement)
    ast = ast.transform(lambda e: _vector_to_text(e, scope))
    ast = ast.transform(lambda e: _jsonb_containment(e, scope))
    ast = ast.transform(lambda e: arrays.rewrite(e, scope.column_type))
    ast = ast.transform(lambda e: _free_numeric_as_double(e, scope))
    return ast, scope, tuple(used)


def _is_json(e: exp.Expr, scope: Scope) -> bool:
    if isinstance(e, exp.Column):
        ct = scope.column_type(e)
        return ct is not None and ct.name in ("jsonb", "json")
    if isinstance(e, exp.Cast):
        return e.to.this in (exp.DType.JSON, exp.DType.JSONB)
    return isinstance(e, (exp.JSONExtract, exp.JSONBExtract))


def _jsonb_containment(e: exp.Expr, scope: Scope) -> exp.Expr:
    """``a @> b`` / ``a <@ b`` on jsonb: PostgreSQL's containment (DuckDB's ``@>`` is for lists)."""
    if not isinstance(e, (exp.ArrayContainsAll, exp.ArrayContainedBy)):
        return e
    if not (_is_json(e.this, scope) or _is_json(e.expression, scope)):
        return e
    outer, inner = (e.this, e.expression) if isinstance(e, exp.ArrayContainsAll) else (e.expression, e.this)
    as_json = [exp.Cast(this=x.copy(), to=exp.DataType.build("JSON")) for x in (outer, inner)]
    return exp.Anonymous(this="json_contains", expressions=as_json)


def _free_numeric_as_double(e: exp.Expr, scope: Scope) -> exp.Expr:
    """``numeric`` without precision is stored as its exact text: a bare projection returns that text,
    anywhere else (arithmetic, comparison, ORDER BY, aggregates) it is a number (DuckDB's DOUBLE)."""
    if not isinstance(e, exp.Column) or isinstance(e.this, exp.Star):
        return e
    ct = scope.column_type(e)
    if ct is None or ct.name != "numeric" or ct.precision is not None:
        return e
    parent = e.parent
    if isinstance(parent, exp.Select) and e.arg_key == "expressions":
        return e
    if isinstance(parent, exp.Alias) and isinstance(parent.parent, exp.Select) and parent.arg_key == "expressions":
        return e
    if isinstance(parent, exp.Cast) and parent.to.this in (exp.DType.TEXT, exp.DType.VARCHAR):
        return e  # its text is the exact value
    return exp.Cast(this=e.copy(), to=exp.DataType.build("DOUBLE"))


def _is_vector(e: exp.Expr, scope: Scope) -> bool:
    if isinstance(e, exp.Column):
        ct = scope.column_type(e)
        return ct is not None and ct.name == "vector"
    if isinstance(e, exp.Cast):
        return e.to.this == exp.DType.VECTOR
    if isinstance(e, exp.Anonymous):
        return e.name.lower() == "l2_normalize"
    return False


def _vector_to_text(e: exp.Expr, scope: Scope) -> exp.Expr:
    """``v::text`` prints pgvector's text form, not DuckDB's list form."""
    if isinstance(e, exp.Cast) and e.to.this in (exp.DType.TEXT, exp.DType.VARCHAR) and _is_vector(e.this, scope):
        return exp.Anonymous(this="sqlvec_vector_text", expressions=[e.this])
    return e


def _check_columns(ast: exp.Expr, scope: Scope, statement: Statement | None) -> None:
    """Unqualified columns that no table in scope has and that are not output aliases: 42703."""
    if not scope.tables or scope.ctes or any(True for _ in ast.find_all(exp.Subquery)):
        return  # DuckDB's binder reports the rest; its error is mapped to 42703 too
    aliases = {identifier_name(a.args["alias"].this) for a in ast.find_all(exp.Alias) if a.args.get("alias")}
    for col in ast.find_all(exp.Column):
        if col.args.get("table") or isinstance(col.this, exp.Star):
            continue
        name = identifier_name(col.this)
        if name in (ROWID, DISTANCE):
            continue
        if not scope.has_column(name) and name not in aliases:
            err = undefined_column(name)
            err.position = _position(statement, col.name)
            raise err


def _output_columns(ast: exp.Expr, scope: Scope) -> tuple[dict[int, ColumnType], dict[int, str]]:
    """Catalog types of plain column outputs, and PostgreSQL's output names (FigureColname)."""
    if not isinstance(ast, exp.Select):
        return {}, {}
    types: dict[int, ColumnType] = {}
    names: dict[int, str] = {}
    i = 0
    for e in ast.expressions:
        inner = e.this if isinstance(e, exp.Alias) else e
        if isinstance(inner, exp.Star) or (isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)):
            qualifier = (identifier_name(inner.args.get("table"))
                         if isinstance(inner, exp.Column) and inner.args.get("table") else None)
            for alias, schema in scope.tables.items():
                if qualifier and qualifier != alias:
                    continue
                for c in schema.columns:
                    types[i] = c.type
                    names[i] = c.name
                    i += 1
            continue
        if isinstance(inner, exp.Column):
            ct = scope.column_type(inner)
            if ct is not None:
                types[i] = ct
        elif isinstance(inner, exp.Cast):
            ct = P.column_type_from_datatype(inner.to)
            if ct is not None and ct.name in ("json", "jsonb", "vector", "varchar", "numeric", "uuid"):
                types[i] = ct
        names[i] = identifier_name(e.args["alias"].this) if isinstance(e, exp.Alias) else _figure_name(inner)
        i += 1
    return types, names


def _figure_name(e: exp.Expr) -> str:
    if isinstance(e, exp.Column):
        return identifier_name(e.this)
    if isinstance(e, exp.Cast):
        inner = _figure_name(e.this)
        if inner != "?column?":
            return inner
        ct = P.column_type_from_datatype(e.to)
        return ct.name if ct else "?column?"
    if isinstance(e, exp.Anonymous):
        return e.name.lower()
    if isinstance(e, exp.Case):
        return "case"
    if isinstance(e, exp.CurrentVersion):
        return "version"
    if isinstance(e, exp.CurrentTimestamp):
        return "now"
    if isinstance(e, exp.Func):
        return e.sql_name().lower()
    return "?column?"


def query_plan(ast: exp.Expr, catalog: Catalog, known: dict[int, int], statement: Statement | None = None) -> Query:
    bound, scope, tables = _bind_query(ast, catalog, statement)
    oids = P.infer(bound, scope.column_type, known)
    types, names = _output_columns(bound, scope)
    q = Query(bound, tables, types, names)
    q.param_oids = _oid_list(oids)
    return q


def _oid_list(oids: dict[int, int]) -> list[int]:
    if not oids:
        return []
    n = max(oids)
    return [oids.get(i, P.TEXT_OID) for i in range(1, n + 1)]


def _plan_select(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    assert statement.ast is not None
    try:
        relations = catalog_relations(statement.ast, catalog)
    except LookupError as e:
        relation = e.args[0]
        if relation in NOT_YET or relation.startswith("information_schema."):
            raise feature_not_supported(f"the catalog relation {relation}") from None
        raise SqlError("42P01", f'relation "{relation}" does not exist') from None
    if relations is None:
        return query_plan(statement.ast, catalog, known, statement)
    # A catalog query runs as PostgreSQL SQL in DuckDB over the relations sqlvec/pg_catalog.py builds.
    names: dict[int, str] = {}
    if isinstance(statement.ast, exp.Select) and not any(isinstance(e, exp.Star) or isinstance(e.this, exp.Star)
                                                         for e in statement.ast.expressions):
        names = {i: identifier_name(e.args["alias"].this) if isinstance(e, exp.Alias) else _figure_name(e)
                 for i, e in enumerate(statement.ast.expressions)}
    users = tuple(dict.fromkeys(identifier_name(t.this) for t in statement.ast.find_all(exp.Table)
                                if not t.db and identifier_name(t.this) in catalog))  # read as they are named
    q = Query(translate_pg_catalog(statement.ast, catalog), users, output_types(statement.ast, catalog),
              names, catalog_relations=relations)
    count = max((P.parameter_number(p) for p in P.parameters(statement.ast)), default=0)
    q.param_oids = [known.get(i, P.TEXT_OID) for i in range(1, count + 1)]
    for p in P.parameters(statement.ast):  # $1::oid, $1::oid[] (asyncpg's introspection): typed as cast
        cast = p.parent if isinstance(p.parent, exp.Cast) else None
        n = P.parameter_number(p)
        if cast is not None and n not in known:
            to = cast.to
            if to.this == exp.DType.UINT:
                q.param_oids[n - 1] = 26
            elif to.this == exp.DType.ARRAY and to.expressions and to.expressions[0].this == exp.DType.UINT:
                q.param_oids[n - 1] = 1028
    return q


# ---------------------------------------------------------------------------------------------
# INSERT / DELETE


def _target(statement: Statement, node: exp.Expr, catalog: Catalog) -> TableSchema:
    table = node if isinstance(node, exp.Table) else node.find(exp.Table)
    assert isinstance(table, exp.Table)
    name = table_name(table, statement)
    schema = catalog.get(name)
    if schema is None:
        raise SqlError("42P01", f'relation "{name}" does not exist', position=_position(statement, table.name))
    return schema


def _returning(statement: Statement, ast: exp.Expr, schema: TableSchema, catalog: Catalog,
               known: dict[int, int], alias: str | None = None) -> Query | None:
    ret = ast.args.get("returning")
    if ret is None:
        return None
    select = exp.Select(expressions=[e.copy() for e in ret.expressions]).from_(_table_as(schema, alias))
    return query_plan(select, catalog, known, statement)


def _table_as(schema: TableSchema, alias: str | None) -> exp.Table:
    table = exp.Table(this=exp.to_identifier(schema.name, quoted=True))
    if alias and alias != schema.name:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    return table


def _alias_of(table: exp.Expr, schema: TableSchema) -> str:
    alias = table.args.get("alias") if isinstance(table, exp.Table) else None
    return identifier_name(alias.this) if alias is not None else schema.name


def _plan_insert(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Insert)
    target = ast.this
    schema = _target(statement, target, catalog)
    if isinstance(target, exp.Schema):
        columns = [identifier_name(i) for i in target.expressions]
    else:
        columns = [c.name for c in schema.columns]
    for c in columns:
        if schema.column(c) is None:
            raise SqlError("42703", f'column "{c}" of relation "{schema.name}" does not exist',
                           position=_position(statement, c))
    if len(set(columns)) != len(columns):
        raise SqlError("42701", "column specified more than once")
    conflict = ast.args.get("conflict")
    do_nothing = False
    do_update = False
    if conflict is not None:
        action = conflict.args.get("action")
        do_nothing = action is not None and "NOTHING" in action.name.upper()
        do_update = not do_nothing
        _check_conflict_target(statement, conflict, schema, do_update)
    source = ast.expression
    oids: dict[int, int] = {}
    rows: list[list[exp.Expr]] | None = None
    src_query: Query | None = None
    if isinstance(source, exp.Values):
        rows = []
        for tup in source.expressions:
            items = list(tup.expressions) if isinstance(tup, exp.Tuple) else [tup]
            if len(items) > len(columns):
                raise SqlError("42601", "INSERT has more expressions than target columns",
                               position=_position(statement, "values"))
            if len(items) < len(columns) and isinstance(target, exp.Schema):
                raise SqlError("42601", "INSERT has more target columns than expressions",
                               position=_position(statement, "values"))
            for col, item in zip(columns, items):
                ctype = schema.column(col).type  # type: ignore[union-attr]
                if isinstance(item, exp.Parameter):
                    oids.setdefault(P.parameter_number(item), ctype.oid)
            rows.append(items)
        scope = Scope(catalog, statement)
        scope.tables[schema.name] = schema
        for n, oid in P.infer(source, scope.column_type, {}).items():
            oids.setdefault(n, oid)
    elif source is not None:
        src_query = query_plan(source, catalog, known, statement)
        if src_query.param_oids:
            oids.update({i + 1: o for i, o in enumerate(src_query.param_oids)})
    else:
        raise feature_not_supported("INSERT ... DEFAULT VALUES")
    alias = _alias_of(target.this if isinstance(target, exp.Schema) else target, schema)
    upsert = None
    if do_update:
        upsert = _plan_upsert(statement, conflict, schema, alias, catalog, known, oids)
    returning = _returning(statement, ast, schema, catalog, known, alias)
    if returning is not None:
        for i, o in enumerate(returning.param_oids):
            oids.setdefault(i + 1, o)
    oids.update(known)
    node = Insert(schema.name, columns, rows, src_query, returning, on_conflict_do_nothing=do_nothing,
                  on_conflict_update=upsert)
    node.param_oids = _oid_list(oids)
    return node


def _check_conflict_target(statement: Statement, conflict: exp.Expr, schema: TableSchema, do_update: bool) -> None:
    """The arbiter of ON CONFLICT must be the primary key, the one unique constraint sqlvec has."""
    constraint = conflict.args.get("constraint")
    keys = conflict.args.get("conflict_keys") or []
    if constraint is not None:
        name = identifier_name(constraint)
        if not schema.primary_key or name != schema.key_name:
            raise SqlError("42704", f'constraint "{name}" for table "{schema.name}" does not exist')
    elif keys:
        names = [identifier_name((k.this if isinstance(k, exp.Ordered) else k).this) for k in keys]
        if not schema.primary_key or sorted(set(names)) != sorted(schema.primary_key):
            raise SqlError("42P10", "there is no unique or exclusion constraint matching the ON CONFLICT "
                                    "specification")
    elif do_update:
        raise SqlError("42601", "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                       hint="For example, ON CONFLICT (column_name).", position=_position(statement, "conflict"))


def _is_default_item(e: exp.Expr) -> bool:
    return (isinstance(e, exp.Var) or (isinstance(e, exp.Column) and not e.args.get("table")
                                       and not e.this.args.get("quoted"))) and e.name.upper() == "DEFAULT"


def _assignments(statement: Statement, items: list[exp.Expr], schema: TableSchema
                 ) -> dict[str, exp.Expr | None]:
    """``SET col = expr, ...`` -> {column: expression, or None for DEFAULT}, checked as PostgreSQL does."""
    out: dict[str, exp.Expr | None] = {}
    for item in items:
        if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
            raise feature_not_supported("SET (column, ...) = (...)")
        name = identifier_name(item.this.this)
        if item.this.args.get("table") is not None:  # PostgreSQL reads "t.a" as column t's field a
            name = identifier_name(item.this.args["table"])
        col = schema.column(name)
        if col is None:
            raise SqlError("42703", f'column "{name}" of relation "{schema.name}" does not exist',
                           position=_position(statement, name))
        if name in out:
            raise SqlError("42601", f'multiple assignments to same column "{name}"')
        value = None if _is_default_item(item.expression) else item.expression
        if value is not None and col.identity == "always":
            raise SqlError("428C9", f'column "{name}" can only be updated to DEFAULT',
                           detail=f'Column "{name}" is an identity column defined as GENERATED ALWAYS.')
        out[name] = value
    return out


def _new_row_values(schema: TableSchema, alias: str, assign: dict[str, exp.Expr | None],
                    known: dict[int, int], qualify: bool) -> list[exp.Expr]:
    """The assigned columns' new values (DEFAULTs left out), each named after its column, then the
    replaced row's ``__rowid``. A bare parameter takes its column's type; with ``qualify`` (ON CONFLICT),
    columns must be qualified."""
    out: list[exp.Expr] = []
    for c in schema.columns:
        value = assign.get(c.name)
        if value is None:
            continue
        value = value.copy()
        if isinstance(value, exp.Parameter):
            known.setdefault(P.parameter_number(value), c.type.oid)
        elif qualify:
            value = _qualified(value, schema)
        out.append(exp.alias_(value, c.name, quoted=True))
    out.append(exp.column(ROWID, table=alias, quoted=True))
    return out


def _qualified(e: exp.Expr, schema: TableSchema) -> exp.Expr:
    """ON CONFLICT DO UPDATE sees the target row and ``excluded``, with the same columns: an unqualified
    column names either, so PostgreSQL refuses it (42702)."""
    for col in e.find_all(exp.Column):
        if not col.args.get("table") and not isinstance(col.this, exp.Star) and schema.column(col.name) is not None:
            raise SqlError("42702", f'column reference "{identifier_name(col.this)}" is ambiguous')
    return e


_STRING_LITERAL_TYPES = ("text", "varchar", "json", "jsonb", "vector")
_NUMBER_LITERAL_TYPES = ("int2", "int4", "int8", "float4", "float8")


def _direct(assign: dict[str, exp.Expr | None], schema: TableSchema, excluded: bool
            ) -> tuple[tuple[str, exp.Expr], ...] | None:
    """The assignments, when each is a parameter (typed as its column), a literal the column reads as
    it is, or (``excluded``) ``EXCLUDED.col``; else None."""
    out = []
    for name, e in assign.items():
        col = schema.column(name)
        if e is None or col is None:
            return None
        if isinstance(e, exp.Parameter):
            pass
        elif isinstance(e, exp.Literal):
            if col.type.name not in (_STRING_LITERAL_TYPES if e.is_string else _NUMBER_LITERAL_TYPES):
                return None
        elif not (excluded and isinstance(e, exp.Column) and e.args.get("table") is not None
                  and identifier_name(e.args["table"]) == EXCLUDED and schema.column(identifier_name(e.this))):
            return None
        out.append((name, e))
    return tuple(out)


def _plan_upsert(statement: Statement, conflict: exp.Expr, schema: TableSchema, alias: str, catalog: Catalog,
                 known: dict[int, int], oids: dict[int, int]) -> Upsert:
    assign = _assignments(statement, conflict.expressions, schema)
    set_known = dict(known)
    for n, o in oids.items():
        set_known.setdefault(n, o)
    values = _new_row_values(schema, alias, assign, set_known, qualify=True)
    select = exp.Select(expressions=values).from_(_table_as(schema, alias)).join(
        exp.Table(this=exp.to_identifier(EXCLUDED, quoted=True)),
        on=exp.EQ(this=exp.column(ROWID, table=alias, quoted=True), expression=exp.column(ROWID, table=EXCLUDED)))
    where = conflict.args.get("where")
    if where is not None:
        select = select.where(_qualified(where.this.copy(), schema))
    scope_catalog = dict(catalog)
    scope_catalog[EXCLUDED] = dataclasses.replace(schema, name=EXCLUDED)
    q = query_plan(select, scope_catalog, set_known, statement)
    for i, o in enumerate(q.param_oids):
        oids.setdefault(i + 1, o)
    return Upsert(q, tuple(c for c, v in assign.items() if v is not None),
                  tuple(c for c, v in assign.items() if v is None),
                  None if where is not None else _direct(assign, schema, excluded=True))


def _is_constant(e: exp.Expr) -> bool:
    while isinstance(e, (exp.Cast, exp.Paren, exp.Neg)):
        e = e.this
    return isinstance(e, (exp.Literal, exp.Parameter))


def _key_lookup(where: exp.Expr | None, schema: TableSchema, alias: str) -> KeyLookup | None:
    """KeyLookup for ``WHERE pk = c``, ``pk IN (c, ...)`` or ``pk = ANY(c)`` with constants or parameters."""
    if where is None or len(schema.primary_key) != 1:
        return None
    pk = schema.primary_key[0]
    cond = where.this
    while isinstance(cond, exp.Paren):
        cond = cond.this

    def is_key(e: exp.Expr) -> bool:
        if not isinstance(e, exp.Column) or identifier_name(e.this) != pk:
            return False
        return e.args.get("table") is None or identifier_name(e.args["table"]) == alias

    if isinstance(cond, exp.EQ):
        col, value = (cond.this, cond.expression) if is_key(cond.this) else (cond.expression, cond.this)
        if not is_key(col):
            return None
        if isinstance(value, exp.Any):
            value = value.this
            while isinstance(value, exp.Paren):
                value = value.this
            return KeyLookup(pk, (exp.Anonymous(this="ANY", expressions=[value]),)) if _is_constant(value) else None
        return KeyLookup(pk, (value,)) if _is_constant(value) else None
    if isinstance(cond, exp.In) and is_key(cond.this) and cond.expressions and not cond.args.get("query") \
            and all(_is_constant(v) for v in cond.expressions):
        return KeyLookup(pk, tuple(cond.expressions))
    return None


def _plan_update(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Update)
    schema = _target(statement, ast.this, catalog)
    alias = _alias_of(ast.this, schema)
    assign = _assignments(statement, ast.expressions, schema)
    set_known = dict(known)
    select = exp.Select(expressions=_new_row_values(schema, alias, assign, set_known, qualify=False)).from_(
        _table_as(schema, alias))
    source = ast.args.get("from_") or ast.args.get("from")
    if source is not None:  # UPDATE ... FROM a, b JOIN c ON ...: joined to the target, the WHERE relates them
        first = source.this.copy()
        joins = first.args.pop("joins", None) or []
        select = select.join(first)
        for j in joins:
            select = select.join(j)
    if ast.args.get("where") is not None:
        select = select.where(ast.args["where"].this.copy())
    q = query_plan(select, catalog, set_known, statement)
    returning = _returning(statement, ast, schema, catalog, known, alias)
    oids = {i + 1: o for i, o in enumerate(q.param_oids)}
    if returning is not None:
        for i, o in enumerate(returning.param_oids):
            oids.setdefault(i + 1, o)
    keys = None if source is not None else _key_lookup(ast.args.get("where"), schema, alias)
    node = Update(schema.name, q, tuple(c for c, v in assign.items() if v is not None),
                  tuple(c for c, v in assign.items() if v is None), returning, keys,
                  _direct(assign, schema, excluded=False) if keys is not None else None)
    node.param_oids = _oid_list(oids)
    return node


def _plan_truncate(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.TruncateTable)
    names = [_target(statement, t, catalog).name for t in ast.expressions]
    return Truncate(names, str(ast.args.get("identity") or "").upper() == "RESTART")


def _plan_delete(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Delete)
    schema = _target(statement, ast.this, catalog)
    where = ast.args.get("where")
    alias = _alias_of(ast.this, schema)
    select = exp.Select(expressions=[exp.column(ROWID, table=alias, quoted=True)]).from_(_table_as(schema, alias))
    if where is not None:
        select = select.where(where.this.copy())
    q = query_plan(select, catalog, known, statement)
    returning = _returning(statement, ast, schema, catalog, known)
    oids = {i + 1: o for i, o in enumerate(q.param_oids)}
    if returning is not None:
        for i, o in enumerate(returning.param_oids):
            oids.setdefault(i + 1, o)
    node = Delete(schema.name, q, returning, _key_lookup(where, schema, alias))
    node.param_oids = _oid_list(oids)
    return node


# ---------------------------------------------------------------------------------------------
# DDL


def _plan_create(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Create)
    kind = (ast.args.get("kind") or "").upper()
    if kind == "INDEX":
        return _plan_create_index(statement, ast, catalog)
    if kind != "TABLE":
        raise feature_not_supported(f"CREATE {kind}")
    schema_node = ast.this
    if not isinstance(schema_node, exp.Schema):
        raise feature_not_supported("CREATE TABLE AS")
    name = table_name(schema_node.this, statement)
    columns: list[ColumnSchema] = []
    primary_key: list[str] = []
    key_name = ""
    for item in schema_node.expressions:
        if isinstance(item, exp.Constraint) and len(item.expressions) == 1 \
                and isinstance(item.expressions[0], exp.PrimaryKey):  # CONSTRAINT name PRIMARY KEY (...)
            key_name = identifier_name(item.this)
            item = item.expressions[0]
        if isinstance(item, exp.ColumnDef):
            col, is_pk = _column_def(item, statement)
            if any(c.name == col.name for c in columns):
                raise SqlError("42701", f'column "{col.name}" specified more than once')
            columns.append(col)
            if is_pk:
                if primary_key:
                    raise SqlError("42P16", f'multiple primary keys for table "{name}" are not allowed')
                primary_key = [col.name]
        elif isinstance(item, exp.PrimaryKey):
            if primary_key:
                raise SqlError("42P16", f'multiple primary keys for table "{name}" are not allowed')
            primary_key = [identifier_name(i if isinstance(i, exp.Identifier) else i.this) for i in item.expressions]
        else:
            raise feature_not_supported(f"table constraint {item.sql('postgres')}")
    names = {c.name for c in columns}
    for k in primary_key:
        if k not in names:
            raise SqlError("42703", f'column "{k}" named in key does not exist')
    columns = [ColumnSchema(c.name, c.type, c.not_null or c.name in primary_key, c.default, c.identity)
               for c in columns]
    return CreateTable(TableSchema(name, tuple(columns), tuple(primary_key), primary_key_name=key_name),
                       bool(ast.args.get("exists")))


_SERIAL = {exp.DType.SERIAL: "int4", exp.DType.BIGSERIAL: "int8", exp.DType.SMALLSERIAL: "int2"}


def _column_def(cd: exp.ColumnDef, statement: Statement) -> tuple[ColumnSchema, bool]:
    name = identifier_name(cd.this)
    kind = cd.args.get("kind")
    if kind is None:
        raise SqlError("42601", f'syntax error: column "{name}" has no type')
    ctype = P.column_type_from_datatype(kind, column=True)
    if ctype is None:
        raise SqlError("42704", f'type "{kind.sql("postgres").lower()}" does not exist',
                       position=_position(statement, kind.sql("postgres")))
    if ctype.name == "vector" and ctype.dim is not None and not 1 <= ctype.dim <= 16000:
        raise SqlError("22023", "dimensions for type vector must be between 1 and 16000")
    not_null = False
    default: str | None = None
    identity: str | None = None
    is_pk = False
    if kind.this in _SERIAL:
        identity, not_null = "by default", True
    for constraint in cd.args.get("constraints") or []:
        c = constraint.args.get("kind")
        if isinstance(c, exp.NotNullColumnConstraint):
            if c.args.get("allow_null"):
                continue
            not_null = True
        elif isinstance(c, exp.PrimaryKeyColumnConstraint):
            is_pk = True
        elif isinstance(c, exp.DefaultColumnConstraint):
            default = c.this.sql("postgres")
        elif isinstance(c, exp.GeneratedAsIdentityColumnConstraint):
            if ctype.name not in ("int2", "int4", "int8"):
                raise SqlError("22023", 'identity column type must be smallint, integer, or bigint')
            identity = "always" if c.this else "by default"
            not_null = True
        else:
            raise feature_not_supported(f"column constraint {c.sql('postgres') if c else constraint.sql('postgres')}")
    return ColumnSchema(name, ctype, not_null, default, identity), is_pk


def _plan_drop(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Drop)
    kind = (ast.args.get("kind") or "").upper()
    tables = ast.args.get("tables") or [ast.this]
    if kind == "INDEX":
        return DropIndex([table_name(t, statement) for t in tables], bool(ast.args.get("exists")),
                         bool(ast.args.get("concurrently")))
    if kind != "TABLE":
        raise feature_not_supported(f"DROP {kind}")
    return DropTable([table_name(t, statement) for t in tables], bool(ast.args.get("exists")))


def _plan_drop_index(statement: Statement) -> Plan:
    args = statement.utility.args  # type: ignore[union-attr]
    names = []
    for item in re.split(r"\s*,\s*", args["names"].strip()):
        parts = [parse_module.unquote_identifier(p) for p in re.findall(r'"(?:[^"]|"")+"|[^."]+', item)]
        if len(parts) > 1 and parts[-2] != "public":
            raise SqlError("42704", f'index "{".".join(parts)}" does not exist')
        names.append(parts[-1])
    return DropIndex(names, "ie" in args, "concurrently" in args)


def relation_names(catalog: Catalog) -> set[str]:
    """Tables and indexes share PostgreSQL's relation namespace."""
    names = set(catalog)
    for schema in catalog.values():
        names.update(i.name for i in schema.indexes)
    return names


def _plan_create_index(statement: Statement, ast: exp.Create, catalog: Catalog) -> Plan:
    index = ast.this
    params = index.args.get("params")
    if ast.args.get("unique"):
        raise feature_not_supported("CREATE UNIQUE INDEX")
    table_node = index.args.get("table")
    table = table_name(table_node, statement)
    schema = catalog.get(table)
    if schema is None:
        raise SqlError("42P01", f'relation "{table}" does not exist', position=_position(statement, table_node.name))
    using = params.args.get("using") if params is not None else None
    method = index_options.method(using.name.lower() if using is not None else "btree")
    columns = params.args.get("columns") or []
    if len(columns) != 1:
        raise SqlError("0A000", f'access method "{method.name}" does not support multicolumn indexes')
    item = columns[0].this if isinstance(columns[0], exp.Ordered) else columns[0]
    opclass = index_options.DEFAULT_OPCLASS
    if isinstance(item, exp.Opclass):
        opclass = identifier_name(item.expression.this if isinstance(item.expression, exp.Table) else item.expression)
        item = item.this
    if not isinstance(item, exp.Column):
        raise feature_not_supported("an index on an expression")
    column = identifier_name(item.this)
    col = schema.column(column)
    if col is None:
        raise SqlError("42703", f'column "{column}" does not exist', position=_position(statement, item.name))
    metric = index_options.metric_for(method, opclass)
    if col.type.name != "vector":
        raise SqlError("42804", f'operator class "{opclass}" does not accept data type {col.type.pg.sql_name}')
    if col.type.dim is None:
        raise SqlError("22023", "column does not have dimensions")
    given: dict[str, str] = {}
    for prop in params.args.get("with_storage") or []:
        key = prop.this.name.lower() if isinstance(prop.this, exp.Expr) else str(prop.this).lower()
        value = prop.args.get("value")
        given[key] = value.name if isinstance(value, exp.Literal) else value.sql("postgres")
    if method.name == "scann" and "dims_per_block" not in given and col.type.dim % 2:
        given["dims_per_block"] = "1"  # the default 2 must divide the dimension
    options = index_options.check_options(method, given)
    name_node = index.this
    if name_node is not None:
        name = identifier_name(name_node)
    else:
        taken = relation_names(catalog)
        base = f"{table}_{column}_idx"
        name, n = base, 0
        while name in taken:
            n += 1
            name = f"{base}{n}"
    return CreateIndex(name, table, column, method.name, opclass, metric, options,
                       bool(ast.args.get("exists")), bool(ast.args.get("concurrently")))


def _plan_copy(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    ast = statement.ast
    assert isinstance(ast, exp.Copy)
    is_from = bool(ast.args.get("kind"))
    files = ast.args.get("files") or []
    if len(files) != 1 or files[0].name.upper() != ("STDIN" if is_from else "STDOUT"):
        where, stream = ("from", "FROM STDIN") if is_from else ("to", "TO STDOUT")
        raise SqlError("42501", f"COPY {where} a file is not allowed; use COPY ... {stream} (psql: \\copy)")
    pairs = ast.meta.get("copy_options")
    if pairs is None:  # parsed without planner.parse's cut (cannot happen for COPY ... STDIN/STDOUT)
        raise feature_not_supported("this form of COPY")
    options = copy_options(pairs, is_from=is_from)
    target = ast.this
    if isinstance(target, exp.Subquery):
        if is_from:
            raise SqlError("42601", 'syntax error at or near "("')
        query = target.this
        if not isinstance(query, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values)):
            raise feature_not_supported("COPY (statement) TO other than a query")
        return CopyTo(plan(Statement(statement.text, statement.offset, ast=query.copy()), catalog), options)
    schema = _target(statement, target, catalog)
    if isinstance(target, exp.Schema):
        columns = [identifier_name(i) for i in target.expressions]
    else:
        columns = [c.name for c in schema.columns]
    for c in columns:
        if schema.column(c) is None:
            raise SqlError("42703", f'column "{c}" of relation "{schema.name}" does not exist')
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise SqlError("42701", f'column "{dup}" specified more than once')
    for option in ("force_quote", "force_not_null", "force_null"):
        named = getattr(options, option)
        for c in named if named != "*" else ():
            if schema.column(c) is None:
                raise SqlError("42703", f'column "{c}" of relation "{schema.name}" does not exist')
            if c not in columns:
                raise SqlError("42P10", f'{option.upper()} column "{c}" not referenced by COPY')
    if is_from:
        return CopyFrom(schema.name, columns, options)
    select = exp.Select(expressions=[exp.column(c, quoted=True) for c in columns]).from_(
        exp.Table(this=exp.to_identifier(schema.name, quoted=True)))
    return CopyTo(plan(Statement(statement.text, statement.offset, ast=select), catalog), options)


def _plan_transaction(statement: Statement, catalog: Catalog, known: dict[int, int]) -> Plan:
    from planner.parse import Utility

    kind = {exp.Transaction: "begin", exp.Commit: "commit", exp.Rollback: "rollback"}[type(statement.ast)]
    if isinstance(statement.ast, exp.Rollback) and statement.ast.args.get("savepoint") is not None:
        return UtilityPlan(Utility("rollback_to", {"name": identifier_name(statement.ast.args["savepoint"])}))
    return UtilityPlan(Utility(kind))


_PLANNERS: dict[type, Callable[[Statement, Catalog, dict[int, int]], Plan]] = {
    exp.Select: _plan_select,
    exp.Union: _plan_select,
    exp.Intersect: _plan_select,
    exp.Except: _plan_select,
    exp.Subquery: _plan_select,
    exp.Values: _plan_select,
    exp.Insert: _plan_insert,
    exp.Delete: _plan_delete,
    exp.Update: _plan_update,
    exp.TruncateTable: _plan_truncate,
    exp.Create: _plan_create,
    exp.Drop: _plan_drop,
    exp.Copy: _plan_copy,
    exp.Transaction: _plan_transaction,
    exp.Commit: _plan_transaction,
    exp.Rollback: _plan_transaction,
}
