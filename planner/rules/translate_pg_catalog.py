"""Rule: a query over pg_catalog is rewritten for DuckDB, over the relations sqlvec/pg_catalog.py builds.

Example::

    SELECT c.relname FROM pg_catalog.pg_class c
    WHERE c.relname OPERATOR(pg_catalog.~) '^(items)$' COLLATE pg_catalog.default
      AND pg_catalog.pg_table_is_visible(c.oid)
 -> SELECT c.relname FROM __pgc_pg_class AS c
    WHERE regexp_matches(c.relname, '^(items)$') AND __pgf_pg_table_is_visible(c.oid)

What changes:
- relations: ``pg_catalog.X`` (or a bare ``X`` that is a catalog relation and not a table of the user's)
  becomes the view ``__pgc_X``, aliased to its name when it had no alias;
- ``OPERATOR(pg_catalog.~)`` and ``~``, ``!~``, ``~*``, ``!~*`` become regexp_matches; ``COLLATE`` is dropped;
- the functions tools call (``pg_catalog.format_type``, ``pg_get_indexdef`` ...) become sqlvec's macros;
- casts: ``'name'::regclass`` is the relation's OID, ``x::regclass`` / ``::regtype`` / ``::regnamespace`` the
  name of the object OID ``x``; ``::oid`` is BIGINT, ``::name`` and ``::"char"`` VARCHAR; ``pg_catalog.``
  type qualifiers go;
- a set-returning function in FROM with a table alias only gets that alias as its column name too, as
  PostgreSQL names it (``generate_series(1, 3) s`` reads as ``s``).
"""

from __future__ import annotations

from collections.abc import Container

from sqlglot import exp

CATALOG_RELATIONS = (
    "pg_catalog.pg_namespace", "pg_catalog.pg_class", "pg_catalog.pg_attribute", "pg_catalog.pg_type",
    "pg_catalog.pg_index", "pg_catalog.pg_am", "pg_catalog.pg_opclass", "pg_catalog.pg_extension",
    "pg_catalog.pg_database", "pg_catalog.pg_roles", "pg_catalog.pg_description", "pg_catalog.pg_attrdef",
    "pg_catalog.pg_constraint", "pg_catalog.pg_collation", "pg_catalog.pg_policy", "pg_catalog.pg_statistic_ext",
    "pg_catalog.pg_publication", "pg_catalog.pg_publication_namespace", "pg_catalog.pg_publication_rel",
    "pg_catalog.pg_inherits", "pg_catalog.pg_tablespace", "pg_catalog.pg_settings", "pg_catalog.pg_tables",
    "pg_catalog.pg_sequence", "pg_catalog.pg_auth_members", "pg_catalog.pg_proc", "pg_catalog.pg_range",
    "pg_catalog.pg_enum",
    "information_schema.schemata", "information_schema.tables", "information_schema.columns",
    "information_schema.views", "information_schema.table_constraints", "information_schema.key_column_usage",
)
_BY_NAME = {r.split(".", 1)[1]: r for r in CATALOG_RELATIONS if r.startswith("pg_catalog.")}
# PostgreSQL 16 relations sqlvec does not have yet: reading one is feature_not_supported, not "does not exist".
NOT_YET = frozenset(f"pg_catalog.{n}" for n in (
    "pg_trigger", "pg_rewrite", "pg_depend", "pg_shdepend",
    "pg_views", "pg_matviews", "pg_indexes", "pg_sequences", "pg_stat_user_tables", "pg_stat_all_tables",
    "pg_stat_activity", "pg_statio_user_tables", "pg_user", "pg_authid", "pg_shadow",
    "pg_operator", "pg_opfamily", "pg_amop", "pg_amproc", "pg_aggregate", "pg_cast", "pg_conversion",
    "pg_language", "pg_event_trigger", "pg_foreign_table", "pg_foreign_server", "pg_foreign_data_wrapper",
    "pg_partitioned_table", "pg_statistic", "pg_stats", "pg_locks", "pg_shdescription", "pg_init_privs",
    "pg_seclabel", "pg_ts_config", "pg_ts_dict", "pg_ts_parser", "pg_ts_template", "pg_default_acl",
    "pg_largeobject_metadata", "pg_subscription", "pg_user_mappings", "pg_prepared_statements", "pg_cursors",
    "pg_timezone_names", "pg_available_extensions", "pg_file_settings", "pg_replication_slots",
    "pg_stat_replication", "pg_stat_database", "pg_statio_all_tables", "pg_stat_user_indexes",
    "pg_publication_tables", "pg_policies", "pg_rules", "pg_triggers"))
FUNCTIONS = frozenset({
    "pg_table_is_visible", "pg_type_is_visible", "pg_get_userbyid", "format_type", "pg_get_expr",
    "pg_get_indexdef", "pg_get_constraintdef", "pg_encoding_to_char", "pg_relation_is_publishable",
    "pg_get_statisticsobjdef_columns", "obj_description", "col_description", "to_regtype", "to_regclass",
    "has_table_privilege", "has_schema_privilege", "has_database_privilege", "pg_get_serial_sequence",
    "quote_ident", "set_config", "pg_function_is_visible", "pg_get_function_result", "pg_get_function_arguments",
})
# Functions whose text result names a relation: ``f(...)::regclass`` looks the name up (to its OID).
_NAMING = frozenset({"pg_get_serial_sequence", "quote_ident", "concat", "format", "lower", "upper"})
_SCHEMAS = ("pg_catalog", "information_schema")


def relation_view(relation: str) -> str:
    """The DuckDB name a catalog relation is registered under: ``pg_catalog.pg_class`` -> ``__pgc_pg_class``,
    ``information_schema.tables`` -> ``__pgi_tables``."""
    schema, name = relation.split(".", 1)
    return ("__pgc_" if schema == "pg_catalog" else "__pgi_") + name


def catalog_relations(ast: exp.Expr, user_tables: Container[str]) -> tuple[str, ...] | None:
    """The catalog relations ``ast`` reads, in order of appearance; None if it reads none.

    Raises LookupError naming a pg_catalog or information_schema relation sqlvec does not have (see
    NOT_YET for the ones PostgreSQL has)."""
    ctes = {c.alias_or_name.lower() for c in ast.find_all(exp.CTE)}
    found: dict[str, None] = {}
    for t in ast.find_all(exp.Table):
        relation = _relation(t, user_tables, ctes)
        if relation is not None:
            found[relation] = None
    if not found and any(_is_catalog_call(e) for e in ast.find_all(exp.Dot, exp.Anonymous, exp.Cast)):
        found["pg_catalog.pg_class"] = None  # no relation, but a catalog function (its macros read pg_class)
    return tuple(found) or None


_REG_TYPES = ("regclass", "regtype", "regnamespace", "regproc")


def _is_catalog_call(e: exp.Expr) -> bool:
    """A catalog function call (``pg_catalog.f()`` or one of FUNCTIONS) or a cast to a reg* type."""
    if isinstance(e, exp.Cast):
        return e.to.sql("postgres").lower().replace("pg_catalog.", "").strip('"') in _REG_TYPES
    if isinstance(e, exp.Dot):
        return isinstance(e.this, (exp.Column, exp.Identifier)) and e.this.name.lower() == "pg_catalog" \
            and isinstance(e.expression, exp.Func)
    return e.name.lower() in FUNCTIONS


def _relation(t: exp.Table, user_tables: Container[str], ctes: set[str]) -> str | None:
    if not isinstance(t.this, exp.Identifier) or t.name.startswith(("__pgc_", "__pgi_")):
        return None  # a function in FROM
    schema, name = t.db.lower(), t.name.lower() if not t.this.quoted else t.name
    if schema in _SCHEMAS:
        relation = f"{schema}.{name}"
        if relation not in CATALOG_RELATIONS:
            raise LookupError(relation)
        return relation
    if not schema and name in _BY_NAME and name not in user_tables and name not in ctes:
        return _BY_NAME[name]
    return None


def output_types(ast: exp.Expr, user_tables: Container[str]) -> dict[int, int]:
    """PostgreSQL type OIDs of the select list's plain references to catalog columns (``c.relname``
    is ``name``, ``t.typtype`` ``"char"``), by position; other outputs are typed from their values."""
    from planner.catalog_schema import CATALOG_COLUMNS, OIDS

    if not isinstance(ast, exp.Select):
        return {}
    ctes = {c.alias_or_name.lower() for c in ast.find_all(exp.CTE)}
    scope: dict[str, str] = {}
    for t in ast.find_all(exp.Table):
        if t.find_ancestor(exp.Subquery, exp.CTE) is None and isinstance(t.this, exp.Identifier):
            relation = _relation(t, user_tables, ctes)
            if relation is not None:
                scope[(t.alias or t.name).lower()] = relation
    types = {}
    for i, e in enumerate(ast.expressions):
        inner = e.this if isinstance(e, exp.Alias) else e
        built = [f.name.lower() for f in inner.find_all(exp.Anonymous) if f.name.lower().endswith("json_build_object")]
        if built and not isinstance(inner, exp.Column):  # SQLAlchemy's identity options: decoded as json by drivers
            types[i] = 3802 if built[0].startswith("jsonb") else 114
            continue
        if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
            continue
        relations = [scope[inner.table.lower()]] if inner.table.lower() in scope else (
            [] if inner.table else list(scope.values()))
        found = [t for r in relations for c, t in CATALOG_COLUMNS[r] if c == inner.name.lower()]
        if len(found) == 1:
            types[i] = OIDS[found[0]]
    return types


def translate_pg_catalog(ast: exp.Expr, user_tables: Container[str]) -> exp.Expr:
    """``ast`` (not changed) rewritten for DuckDB; see the module doc."""
    ctes = {c.alias_or_name.lower() for c in ast.find_all(exp.CTE)}

    def rewrite(e: exp.Expr) -> exp.Expr:
        if isinstance(e, exp.Table):
            return _table(e, user_tables, ctes)
        if isinstance(e, exp.Column) and e.args.get("db") is not None and e.text("db").lower() in _SCHEMAS:
            column = e.copy()  # pg_catalog.pg_class.relname: the relation keeps its name as its alias
            column.set("db", None)
            return column
        if isinstance(e, exp.Operator):
            return _operator(e)
        if isinstance(e, exp.RegexpLike):
            return exp.Anonymous(this="regexp_matches", expressions=[e.this, e.expression])
        if isinstance(e, exp.RegexpILike):
            return exp.Anonymous(this="regexp_matches", expressions=[e.this, e.expression, exp.Literal.string("i")])
        if isinstance(e, exp.Collate):
            return e.this
        if isinstance(e, exp.Dot) and _is_catalog_call(e):
            return _function(e.expression)
        if isinstance(e, exp.Anonymous):
            return _function(e)
        if isinstance(e, exp.Cast):
            return _cast(e)
        return e

    tree = ast.copy()
    if isinstance(tree, exp.Select):  # 'name'::regclass shown as a result: its name, as PostgreSQL prints it
        for e in tree.expressions:
            inner = e.this if isinstance(e, exp.Alias) else e
            to = inner.to.sql("postgres").lower().replace("pg_catalog.", "") if isinstance(inner, exp.Cast) else ""
            if to in ("regclass", "regtype") and isinstance(inner.this, exp.Literal) and inner.this.is_string:
                look = exp.Anonymous(this=f"__pgf_to_{to}", expressions=[inner.this.copy()])
                inner.replace(exp.Anonymous(this=f"__pgf_{to}_name", expressions=[look]))
    for node in reversed(list(tree.walk())):  # children before their parents, so every node is rewritten
        new = rewrite(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def _table(t: exp.Table, user_tables: Container[str], ctes: set[str]) -> exp.Expr:
    relation = _relation(t, user_tables, ctes) if isinstance(t.this, exp.Identifier) else None
    if relation is None:
        if isinstance(t.this, exp.Func) and (t.args.get("db") or (t.alias and not t.args["alias"].columns)):
            t = t.copy()
            t.set("db", None)  # pg_catalog.generate_series(...)
            if t.alias and not t.args["alias"].columns:  # generate_series(...) s: s is its column too
                t.args["alias"].set("columns", [exp.to_identifier(t.alias)])
        return t
    alias = t.args.get("alias") or exp.TableAlias(this=exp.to_identifier(t.name))
    return exp.Table(this=exp.to_identifier(relation_view(relation), quoted=True), alias=alias.copy())


def _operator(e: exp.Operator) -> exp.Expr:
    op = str(e.args.get("operator") or "").split(".")[-1].strip()
    args = [e.this, e.expression]
    if op == "~":
        return exp.Anonymous(this="regexp_matches", expressions=args)
    if op == "~*":
        return exp.Anonymous(this="regexp_matches", expressions=[*args, exp.Literal.string("i")])
    if op == "!~":
        return exp.Not(this=exp.Anonymous(this="regexp_matches", expressions=args))
    if op == "!~*":
        return exp.Not(this=exp.Anonymous(this="regexp_matches", expressions=[*args, exp.Literal.string("i")]))
    binary = {"=": exp.EQ, "<>": exp.NEQ, "<": exp.LT, ">": exp.GT, "<=": exp.LTE, ">=": exp.GTE}.get(op)
    if binary is not None:
        return binary(this=e.this, expression=e.expression)
    return e


def _function(f: exp.Func) -> exp.Expr:
    name = f.name.lower() if isinstance(f, exp.Anonymous) else f.sql_name().lower()
    if name in ("json_build_object", "jsonb_build_object") and isinstance(f, exp.Anonymous):
        return exp.Anonymous(this="json_object", expressions=f.expressions)
    if name == "array_upper" and isinstance(f, exp.Anonymous):  # of a one-dimensional array: its length
        return exp.Anonymous(this="len", expressions=f.expressions[:1])
    if name in FUNCTIONS:
        return exp.Anonymous(this=f"__pgf_{name}", expressions=list(f.expressions) if isinstance(f, exp.Anonymous)
                             else [a for a in f.args.values() if isinstance(a, exp.Expr)])
    return f


def _cast(c: exp.Cast) -> exp.Expr:
    to = c.to.sql("postgres").lower().replace('"', "").replace("pg_catalog.", "")
    if to.startswith("array<") and to.endswith(">"):
        to = to[6:-1] + "[]"
    if to == "regclass":
        named = isinstance(c.this, exp.Anonymous) and c.this.name.lower().removeprefix("__pgf_") in _NAMING
        if (isinstance(c.this, exp.Literal) and c.this.is_string) or named \
                or isinstance(c.this, (exp.DPipe, exp.Placeholder, exp.Parameter)):
            return exp.Anonymous(this="__pgf_to_regclass", expressions=[c.this])
        return exp.Anonymous(this="__pgf_regclass_name", expressions=[c.this])
    if to == "regtype":
        if (isinstance(c.this, exp.Literal) and c.this.is_string) or isinstance(c.this, (exp.Placeholder,
                                                                                           exp.Parameter)):
            return exp.Anonymous(this="__pgf_to_regtype", expressions=[c.this])
        return exp.Anonymous(this="__pgf_regtype_name", expressions=[c.this])
    if to == "regnamespace":
        return exp.Anonymous(this="__pgf_regnamespace_name", expressions=[c.this])
    if to in ("oid", "regproc", "xid"):
        return exp.Cast(this=c.this, to=exp.DataType.build("BIGINT"))
    if to in ("name", "char", "text", "varchar") and isinstance(c.this, exp.Anonymous) \
            and c.this.name.lower() in ("__pgf_to_regclass", "__pgf_to_regtype"):  # 'x'::regclass::text: the name
        return exp.Anonymous(this=c.this.name.lower().replace("_to_", "_") + "_name", expressions=[c.this])
    if to in ("name", "char", "text"):
        return exp.Cast(this=c.this, to=exp.DataType.build("VARCHAR"))
    if to.endswith("[]") and to[:-2] in ("int2", "int4", "int8", "oid", "smallint", "int", "bigint"):
        return exp.Cast(this=c.this, to=exp.DataType.build("BIGINT[]"))
    if "pg_catalog." in c.to.sql("postgres"):  # another type named with its schema: the plain name
        return exp.Cast(this=c.this, to=exp.DataType.build(to, dialect="postgres"))
    return c
