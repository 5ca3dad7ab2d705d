"""pg_catalog and information_schema relations, built from sqlvec's own catalog for DuckDB to query.

Drivers and tools introspect a server with real PostgreSQL SQL over pg_catalog (joins, CASE,
subqueries, regex operators, ``::regclass`` casts). sqlvec answers those queries with a real SQL
engine: planner/rules/translate_pg_catalog.py rewrites the statement for DuckDB (relations renamed to
the views registered here, ``pg_catalog.`` functions to the macros defined here), and
:func:`register` makes the relations the statement reads visible on the session's DuckDB connection,
built at that moment from the statement's snapshot of the catalog, so DDL shows at once.

Each relation has PostgreSQL 16's columns, in order, with these types: ``oid``, ``regproc``, ``xid``
and other OID-like columns are BIGINT; ``name``, ``"char"`` and ``text`` are VARCHAR; ``int2vector``,
``oidvector`` and arrays are DuckDB lists. Rows: the namespaces pg_catalog, public and
information_schema; each table, its primary-key index and its vector indexes (pg_class, pg_index,
pg_constraint); each column (pg_attribute, with its DEFAULT in pg_attrdef); the types sqlvec stores,
with ``vector`` and ``_vector`` at fixed OIDs; the access methods btree, hnsw and ivfflat; the
``vector`` extension; one database per name a client connected with; one role.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from planner.catalog_schema import ARROW, CATALOG_COLUMNS, OIDS
from planner.index_options import DEFAULT_OPCLASS, METHODS, OPCLASSES
from planner.rules.translate_pg_catalog import CATALOG_RELATIONS, relation_view
from sqlvec.settings import SETTINGS
from storage.types import PG_TYPES, VECTOR_ARRAY_OID, VECTOR_OID, PgType, TableSchema

PG_CATALOG_OID = 11
PUBLIC_OID = 2200
INFORMATION_SCHEMA_OID = 13_000
BOOTSTRAP_ROLE_OID = 10
DATABASE_OID = 5
VECTOR_EXTENSION_OID = 16_384
PG_CLASS_OID = 1259
PG_EXTENSION_OID = 3079
PG_TYPE_OID = 1247
PG_CONSTRAINT_OID = 2606
HEAP_AM_OID = 2
BTREE_AM_OID = 403
# sqlvec's vector index methods and operator classes, at OIDs of their own.
AMS = {"btree": BTREE_AM_OID, **{m: 16_390 + i for i, m in enumerate(METHODS)}}
OPCLASS_OIDS = {(m, op): 16_500 + 10 * i + j for i, m in enumerate(METHODS) for j, op in enumerate(OPCLASSES)}
_PKEY_INDEX_OFFSET = 1_000_000_000  # a table's primary-key index and constraint: OIDs derived from the table's
_PKEY_CONSTRAINT_OFFSET = 1_100_000_000
_SEQUENCE_OFFSET = 1_300_000_000  # + table oid * 1600 + attnum: an identity column's sequence
_ATTRDEF_OFFSET = 1_200_000_000  # + table oid * 1600 + attnum

_INT, _TEXT = pa.int64(), pa.string()
_COLUMNS = {name: [(c, ARROW[t]) for c, t in cols] for name, cols in CATALOG_COLUMNS.items()}
# Helper relations the macros read (not PostgreSQL's): format_type's answers, index and constraint text.
_HELPERS: dict[str, list[tuple[str, pa.DataType]]] = {
    "format_type": [("typid", _INT), ("typmod", _INT), ("formatted", _TEXT)],
    "type_names": [("name", _TEXT), ("oid", _INT)],
    "indexdef": [("oid", _INT), ("def", _TEXT)],
    "constraintdef": [("oid", _INT), ("def", _TEXT)],
}
assert set(_COLUMNS) == set(CATALOG_RELATIONS), set(_COLUMNS) ^ set(CATALOG_RELATIONS)

# Macros, one per PostgreSQL function that tools call (translate_pg_catalog renames the calls).
_MACROS = {
    "pg_table_is_visible": ["(o) AS true"],
    "pg_type_is_visible": ["(o) AS true"],
    "pg_get_userbyid": ["(o) AS (SELECT rolname FROM __pgc_pg_roles WHERE oid = o)"],
    "format_type": ["(t, m) AS coalesce((SELECT formatted FROM __pgh_format_type WHERE typid = t "
                    "AND typmod = coalesce(m, -1)), (SELECT formatted FROM __pgh_format_type WHERE typid = t "
                    "AND typmod = -1), CASE WHEN t IS NULL THEN NULL ELSE '???' END)"],
    "pg_get_expr": ["(e, r) AS e", "(e, r, p) AS e"],
    "pg_get_indexdef": ["(o) AS (SELECT def FROM __pgh_indexdef WHERE oid = o)",
                        "(o, c, p) AS (SELECT def FROM __pgh_indexdef WHERE oid = o)"],
    "pg_get_constraintdef": ["(o) AS (SELECT def FROM __pgh_constraintdef WHERE oid = o)",
                             "(o, p) AS (SELECT def FROM __pgh_constraintdef WHERE oid = o)"],
    "pg_encoding_to_char": ["(e) AS CASE e WHEN 6 THEN 'UTF8' WHEN 0 THEN 'SQL_ASCII' ELSE '' END"],
    "pg_relation_is_publishable": ["(o) AS false"],
    "pg_get_statisticsobjdef_columns": ["(o) AS CAST(NULL AS VARCHAR)"],
    "obj_description": ["(o) AS (SELECT description FROM __pgc_pg_description WHERE objoid = o AND objsubid = 0 "
                        "LIMIT 1)",
                        "(o, c) AS (SELECT description FROM __pgc_pg_description WHERE objoid = o AND objsubid = 0 "
                        "LIMIT 1)"],
    "col_description": ["(o, n) AS (SELECT description FROM __pgc_pg_description WHERE objoid = o "
                        "AND objsubid = n LIMIT 1)"],
    "to_regtype": ["(s) AS (SELECT oid FROM __pgh_type_names WHERE name = lower(s) LIMIT 1)"],
    "to_regclass": ["(s) AS (SELECT c.oid FROM __pgc_pg_class c JOIN __pgc_pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = s OR n.nspname || '.' || c.relname = s ORDER BY c.relnamespace LIMIT 1)"],
    "regclass_name": ["(o) AS (SELECT relname FROM __pgc_pg_class WHERE oid = o)"],
    "regtype_name": ["(o) AS __pgf_format_type(o, NULL)"],
    "regnamespace_name": ["(o) AS (SELECT nspname FROM __pgc_pg_namespace WHERE oid = o)"],
    "has_table_privilege": ["(a, b) AS true", "(a, b, c) AS true"],
    "has_schema_privilege": ["(a, b) AS true", "(a, b, c) AS true"],
    "has_database_privilege": ["(a, b) AS true", "(a, b, c) AS true"],
    # set_config() of the planner settings PostgreSQL has and sqlvec does not (asyncpg turns jit off before
    # its type introspection): nothing to change. Any other setting is changed with SET, not here.
    "set_config": ["(n, v, l) AS CASE WHEN lower(n) IN ('jit', 'jit_above_cost', 'jit_inline_above_cost', "
                   "'jit_optimize_above_cost') THEN v ELSE error('set_config(' || n || ') is not supported: "
                   "use SET') END"],
    "pg_function_is_visible": ["(o) AS true"],
    "pg_get_function_result": ["(o) AS (SELECT __pgf_format_type(prorettype, NULL) FROM __pgc_pg_proc WHERE oid = o)"],
    "pg_get_function_arguments": ["(o) AS (SELECT string_agg(f.formatted, ', ' ORDER BY a.i) FROM (SELECT "
                                  "unnest(proargtypes) AS t, generate_subscripts(proargtypes, 1) AS i FROM "
                                  "__pgc_pg_proc WHERE oid = o) a JOIN __pgh_format_type f ON f.typid = a.t "
                                  "AND f.typmod = -1)"],
    "pg_get_serial_sequence": ["(t, c) AS (SELECT 'public.' || s.relname FROM __pgc_pg_class s "
                               "WHERE s.relkind = 'S' AND s.relname = replace(t, '\"', '') || '_' || c || '_seq')"],
    "quote_ident": ["(s) AS CASE WHEN regexp_full_match(s, '[a-z_][a-z0-9_$]*') THEN s "
                    "ELSE '\"' || replace(s, '\"', '\"\"') || '\"' END"],
}
# The relations each macro reads, registered with any statement that may call it.
MACRO_RELATIONS = ("pg_catalog.pg_roles", "pg_catalog.pg_description", "pg_catalog.pg_class",
                   "pg_catalog.pg_namespace", "pg_catalog.pg_proc")


class CatalogSource:
    """What the relations are built from: the statement's catalog snapshot, the session's settings,
    user and database."""

    def __init__(self, tables: dict[str, TableSchema], settings: Any, user: str, database: str) -> None:
        self.tables = sorted(tables.values(), key=lambda t: t.oid)
        self.settings = settings
        self.user = user
        self.database = database


def register(con: duckdb.DuckDBPyConnection, source: CatalogSource, relations: tuple[str, ...]) -> None:
    """Register ``relations`` (and what the macros read) on ``con``, built now; define the macros on
    ``con``'s database the first time."""
    wanted = dict.fromkeys([*relations, *MACRO_RELATIONS])
    for name in wanted:
        con.register(relation_view(name), _table(name, _BUILDERS[name](source)))
    for name, build in _HELPER_BUILDERS.items():
        con.register(f"__pgh_{name}", _table(name, build(source), _HELPERS[name]))
    if not _has_macros(con):
        for fn, bodies in _MACROS.items():
            con.execute(f"CREATE OR REPLACE MACRO __pgf_{fn}{', '.join(bodies)}")


def _has_macros(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.sql("SELECT count(*) FROM duckdb_functions() WHERE function_name = '__pgf_format_type'")
    return bool(found.fetchall()[0][0])


def _table(name: str, rows: list[dict[str, Any]], columns: list[tuple[str, pa.DataType]] | None = None) -> pa.Table:
    cols = columns if columns is not None else _COLUMNS[name]
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in cols})


# ------------------------------------------------------------------------------------ builders


def _namespaces(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"oid": PG_CATALOG_OID, "nspname": "pg_catalog", "nspowner": BOOTSTRAP_ROLE_OID},
            {"oid": PUBLIC_OID, "nspname": "public", "nspowner": BOOTSTRAP_ROLE_OID},
            {"oid": INFORMATION_SCHEMA_OID, "nspname": "information_schema", "nspowner": BOOTSTRAP_ROLE_OID}]


def _class_row(oid: int, name: str, kind: str, am: int, natts: int, **extra: Any) -> dict[str, Any]:
    return {"oid": oid, "relname": name, "relnamespace": PUBLIC_OID, "reltype": 0, "reloftype": 0,
            "relowner": BOOTSTRAP_ROLE_OID, "relam": am, "relfilenode": oid, "reltablespace": 0, "relpages": 0,
            "reltuples": -1.0, "relallvisible": 0, "reltoastrelid": 0, "relhasindex": False, "relisshared": False,
            "relpersistence": "p", "relkind": kind, "relnatts": natts, "relchecks": 0, "relhasrules": False,
            "relhastriggers": False, "relhassubclass": False, "relrowsecurity": False,
            "relforcerowsecurity": False, "relispopulated": True, "relreplident": "d" if kind == "r" else "n",
            "relispartition": False, "relrewrite": 0, "relfrozenxid": 0, "relminmxid": 0, **extra}


def _index_relations(t: TableSchema) -> list[tuple[int, str, str, list[int], str, bool]]:
    """(oid, name, access method, key attnums, definition, is primary) for each index of ``t``;
    :func:`_index_extras` has each one's operator classes and options."""
    attnum = {c.name: i + 1 for i, c in enumerate(t.columns)}
    out = []
    if t.primary_key:
        name = t.key_name
        cols = ", ".join(_ident(c) for c in t.primary_key)
        out.append((t.oid + _PKEY_INDEX_OFFSET, name, "btree", [attnum[c] for c in t.primary_key],
                    f"CREATE UNIQUE INDEX {_ident(name)} ON public.{_ident(t.name)} USING btree ({cols})", True))
    for ix in t.indexes:
        options = ", ".join(f"{k}='{v}'" for k, v in ix.params)
        with_ = f" WITH ({options})" if options else ""
        out.append((ix.oid, ix.name, ix.method, [attnum.get(ix.column, 0)],
                    f"CREATE INDEX {_ident(ix.name)} ON public.{_ident(t.name)} USING {ix.method} "
                    f"({_ident(ix.column)} {ix.opclass}){with_}", False))
    return out


# pg_catalog's own relations, at PostgreSQL's OIDs where they have fixed ones ("v": a view there).
_SYSTEM_RELATIONS = {"pg_type": 1247, "pg_attribute": 1249, "pg_class": 1259, "pg_database": 1262,
                     "pg_namespace": 2615, "pg_am": 2601, "pg_attrdef": 2604, "pg_constraint": 2606,
                     "pg_description": 2609, "pg_index": 2610, "pg_inherits": 2611, "pg_opclass": 2616,
                     "pg_extension": 3079, "pg_collation": 3456, "pg_policy": 3256, "pg_statistic_ext": 3381,
                     "pg_publication": 6104, "pg_publication_namespace": 6237, "pg_publication_rel": 6106,
                     "pg_tablespace": 1213, "pg_sequence": 2224, "pg_auth_members": 1261, "pg_proc": 1255,
                     "pg_range": 3541, "pg_enum": 3501,
                     "pg_roles": 12_001, "pg_settings": 12_002,
                     "pg_tables": 12_003}
_SYSTEM_VIEWS = {"pg_roles", "pg_settings", "pg_tables"}


def _index_extras(t: TableSchema) -> dict[int, tuple[list[int], list[str] | None]]:
    """Index OID -> (pg_index.indclass, pg_class.reloptions) for the vector indexes of ``t``."""
    return {ix.oid: ([OPCLASS_OIDS.get((ix.method, ix.opclass), 0)], [f"{k}={v}" for k, v in ix.params] or None)
            for ix in t.indexes}


def _classes(src: CatalogSource) -> list[dict[str, Any]]:
    rows = [_class_row(oid, name, "v" if name in _SYSTEM_VIEWS else "r", 0 if name in _SYSTEM_VIEWS else HEAP_AM_OID,
                       len(_COLUMNS[f"pg_catalog.{name}"]), relnamespace=PG_CATALOG_OID)
            for name, oid in _SYSTEM_RELATIONS.items()]
    for t in src.tables:
        indexes = _index_relations(t)
        rows.append(_class_row(t.oid, t.name, "r", HEAP_AM_OID, len(t.columns), relhasindex=bool(indexes)))
        extras = _index_extras(t)
        for oid, name, method, keys, _, _ in indexes:
            rows.append(_class_row(oid, name, "i", AMS.get(method, 0), len(keys),
                                   reloptions=extras.get(oid, ([], None))[1]))
        for oid, name, _ in _sequences_of(t):
            rows.append(_class_row(oid, name, "S", 0, 3))
    return rows


def _sequences_of(t: TableSchema) -> list[tuple[int, str, int]]:
    """(oid, name, type oid) of the sequence behind each identity column of ``t``."""
    return [(_SEQUENCE_OFFSET + t.oid * 1600 + i + 1, f"{t.name}_{c.name}_seq", c.type.oid)
            for i, c in enumerate(t.columns) if c.identity is not None]


def _sequences(src: CatalogSource) -> list[dict[str, Any]]:
    top = {21: 32767, 23: 2147483647, 20: 9223372036854775807}
    return [{"seqrelid": oid, "seqtypid": typ, "seqstart": 1, "seqincrement": 1, "seqmax": top.get(typ, top[20]),
             "seqmin": 1, "seqcache": 1, "seqcycle": False} for t in src.tables for oid, _, typ in _sequences_of(t)]


def _attribute(relid: int, name: str, attnum: int, typid: int, typlen: int, **extra: Any) -> dict[str, Any]:
    """A pg_attribute row: a plain, local, undropped column unless ``extra`` says otherwise."""
    return {"attrelid": relid, "attname": name, "atttypid": typid, "attlen": typlen, "attnum": attnum,
            "attcacheoff": -1, "atttypmod": -1, "attndims": 0, "attbyval": False, "attalign": "i", "attstorage": "p",
            "attcompression": "", "attnotnull": False, "atthasdef": False, "atthasmissing": False, "attidentity": "",
            "attgenerated": "", "attisdropped": False, "attislocal": True, "attinhcount": 0, "attstattarget": -1,
            "attcollation": 0, **extra}


def _attributes(src: CatalogSource) -> list[dict[str, Any]]:
    rows = [_attribute(oid, c, i + 1, OIDS[t], -1, attnotnull=not t.endswith("[]") and t != "text")
            for name, oid in _SYSTEM_RELATIONS.items()
            for i, (c, t) in enumerate(CATALOG_COLUMNS[f"pg_catalog.{name}"])]
    for t in src.tables:
        for i, c in enumerate(t.columns):
            typlen = c.type.pg.typlen
            rows.append(_attribute(
                t.oid, c.name, i + 1, c.type.oid, typlen, atttypmod=c.type.typmod,
                attndims=1 if c.type.is_array else 0, attbyval=typlen in (1, 2, 4, 8),
                attalign="d" if typlen == 8 else "i", attstorage="x" if typlen < 0 else "p", attnotnull=c.not_null,
                atthasdef=c.default is not None,
                attidentity={"always": "a", "by default": "d"}.get(c.identity or "", ""),
                attcollation=100 if c.type.name in ("text", "varchar") else 0))
        for oid, _, _, keys, _, _ in _index_relations(t):
            for n, key in enumerate(keys):
                c = t.columns[key - 1]
                rows.append(_attribute(oid, c.name, n + 1, c.type.oid, c.type.pg.typlen, atttypmod=c.type.typmod))
    return rows


_CATEGORY = {"bool": "B", "int2": "N", "int4": "N", "int8": "N", "float4": "N", "float8": "N", "numeric": "N",
             "text": "S", "varchar": "S", "date": "D", "timestamp": "D", "timestamptz": "D", "uuid": "U",
             "json": "U", "jsonb": "U", "bytea": "U", "vector": "U"}


# Built-in types tools look up that sqlvec does not store (yet): in pg_type, so lookups find them.
_CATALOG_ONLY_TYPES = [PgType(*t) for t in (
    ("char", 18, 1002, 1, '"char"'), ("name", 19, 1003, 64, "name"), ("int2vector", 22, 1006, -1, "int2vector"),
    ("regproc", 24, 1008, 4, "regproc"), ("oid", 26, 1028, 4, "oid"), ("xid", 28, 1011, 4, "xid"),
    ("oidvector", 30, 1013, -1, "oidvector"), ("bpchar", 1042, 1014, -1, "character"),
    ("time", 1083, 1183, 8, "time without time zone"), ("interval", 1186, 1187, 16, "interval"),
    ("bit", 1560, 1561, -1, "bit"), ("varbit", 1562, 1563, -1, "bit varying"), ("regclass", 2205, 2210, 4, "regclass"),
    ("regtype", 2206, 2211, 4, "regtype"))]
_CATALOG_ONLY_TYPES += [PgType(f"_{t.name}", t.array_oid, 0, -1, t.sql_name + "[]") for t in _CATALOG_ONLY_TYPES]
_CATALOG_ONLY_TYPES.append(PgType("_vector", VECTOR_ARRAY_OID, 0, -1, "vector[]"))  # pgvector's array type
_ALL_TYPES = {t.name: t for t in [*PG_TYPES.values(), *_CATALOG_ONLY_TYPES]}


def _types(src: CatalogSource) -> list[dict[str, Any]]:
    rows = []
    for t in _ALL_TYPES.values():
        array = t.name.startswith("_")
        element = _ALL_TYPES[t.name[1:]].oid if array else 0
        rows.append({"oid": t.oid, "typname": t.name, "typnamespace": PUBLIC_OID if t.name in ("vector", "_vector")
                     else PG_CATALOG_OID, "typowner": BOOTSTRAP_ROLE_OID, "typlen": t.typlen,
                     "typbyval": t.typlen in (1, 2, 4, 8), "typtype": "b", "typcategory": "A" if array
                     else _CATEGORY.get(t.name, "U"), "typispreferred": t.name in ("text", "float8", "timestamptz"),
                     "typisdefined": True, "typdelim": ",", "typrelid": 0, "typsubscript": 0, "typelem": element,
                     "typarray": t.array_oid, "typinput": 0, "typoutput": 0, "typreceive": 0, "typsend": 0,
                     "typmodin": 0, "typmodout": 0, "typanalyze": 0, "typalign": "d" if t.typlen == 8 else "i",
                     "typstorage": "x" if t.typlen < 0 else "p", "typnotnull": False, "typbasetype": 0,
                     "typtypmod": -1, "typndims": 0, "typcollation": 100 if t.name in ("text", "varchar") else 0})
    return rows


def _indexes(src: CatalogSource) -> list[dict[str, Any]]:
    rows = []
    for t in src.tables:
        extras = _index_extras(t)
        for oid, _, _, keys, _, primary in _index_relations(t):
            rows.append({"indexrelid": oid, "indrelid": t.oid, "indnatts": len(keys), "indnkeyatts": len(keys),
                         "indisunique": primary, "indnullsnotdistinct": False, "indisprimary": primary,
                         "indisexclusion": False, "indimmediate": True, "indisclustered": False, "indisvalid": True,
                         "indcheckxmin": False, "indisready": True, "indislive": True, "indisreplident": False,
                         "indkey": keys, "indcollation": [0] * len(keys),
                         "indclass": extras.get(oid, ([0] * len(keys), None))[0],
                         "indoption": [0] * len(keys)})
    return rows


def _constraints(src: CatalogSource) -> list[dict[str, Any]]:
    rows = []
    for t in src.tables:
        if t.primary_key:
            attnum = {c.name: i + 1 for i, c in enumerate(t.columns)}
            rows.append({"oid": t.oid + _PKEY_CONSTRAINT_OFFSET, "conname": t.key_name,
                         "connamespace": PUBLIC_OID, "contype": "p", "condeferrable": False, "condeferred": False,
                         "convalidated": True, "conrelid": t.oid, "contypid": 0,
                         "conindid": t.oid + _PKEY_INDEX_OFFSET, "conparentid": 0, "confrelid": 0,
                         "confupdtype": " ", "confdeltype": " ", "confmatchtype": " ", "conislocal": True,
                         "coninhcount": 0, "connoinherit": True, "conkey": [attnum[c] for c in t.primary_key]})
    return rows


def _attrdefs(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"oid": _ATTRDEF_OFFSET + t.oid * 1600 + i + 1, "adrelid": t.oid, "adnum": i + 1,
             "adbin": _default_text(c.default, c.type.sql())}
            for t in src.tables for i, c in enumerate(t.columns) if c.default is not None]


def _default_text(default: str, type_sql: str) -> str:
    """pg_get_expr's text of a DEFAULT: a bare string literal carries its column's type, as PostgreSQL's does."""
    if re.fullmatch(r"'(?:[^']|'')*'", default.strip()):
        return f"{default.strip()}::{type_sql}"
    return default


def _roles(src: CatalogSource) -> list[dict[str, Any]]:
    names = dict.fromkeys(["postgres", src.user])
    return [{"rolname": n, "rolsuper": True, "rolinherit": True, "rolcreaterole": True, "rolcreatedb": True,
             "rolcanlogin": True, "rolreplication": False, "rolconnlimit": -1, "rolpassword": "********",
             "rolbypassrls": True, "oid": BOOTSTRAP_ROLE_OID if n == "postgres" else BOOTSTRAP_ROLE_OID + 1 + i}
            for i, n in enumerate(names)]


def _databases(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"oid": DATABASE_OID, "datname": src.database, "datdba": BOOTSTRAP_ROLE_OID, "encoding": 6,
             "datlocprovider": "c", "datistemplate": False, "datallowconn": True, "datconnlimit": -1,
             "dattablespace": 1663, "datcollate": "C.UTF-8", "datctype": "C.UTF-8"}]


def _settings(src: CatalogSource) -> list[dict[str, Any]]:
    rows = []
    for name, s in sorted(SETTINGS.items()):
        value = src.settings.get(name) if src.settings is not None else s.default
        rows.append({"name": name, "setting": value, "category": "sqlvec", "short_desc": "", "context": "user"
                     if s.settable else "internal", "vartype": "string", "source": "default", "boot_val": s.default,
                     "reset_val": s.default, "pending_restart": False})
    return rows


_AM_ROWS = [{"oid": HEAP_AM_OID, "amname": "heap", "amtype": "t"},
            *({"oid": oid, "amname": name, "amtype": "i"} for name, oid in AMS.items())]
_OPCLASS_ROWS = [{"oid": oid, "opcmethod": AMS[m], "opcname": op, "opcnamespace": PUBLIC_OID,
                  "opcowner": BOOTSTRAP_ROLE_OID, "opcfamily": oid, "opcintype": VECTOR_OID,
                  "opcdefault": op == DEFAULT_OPCLASS, "opckeytype": 0} for (m, op), oid in OPCLASS_OIDS.items()]


# The functions of pgvector that sqlvec has, in public as CREATE EXTENSION vector puts them.
_FLOAT8, _INT4 = 701, 23
_FUNCTIONS = [("l2_distance", [VECTOR_OID, VECTOR_OID], _FLOAT8), ("inner_product", [VECTOR_OID, VECTOR_OID], _FLOAT8),
              ("cosine_distance", [VECTOR_OID, VECTOR_OID], _FLOAT8),
              ("l1_distance", [VECTOR_OID, VECTOR_OID], _FLOAT8),
              ("vector_dims", [VECTOR_OID], _INT4), ("vector_norm", [VECTOR_OID], _FLOAT8),
              ("l2_normalize", [VECTOR_OID], VECTOR_OID)]
_PROC_ROWS = [{"oid": 16_600 + i, "proname": name, "pronamespace": PUBLIC_OID, "proowner": BOOTSTRAP_ROLE_OID,
               "prolang": 13, "procost": 1.0, "prorows": 0.0, "provariadic": 0, "prosupport": 0, "prokind": "f",
               "prosecdef": False, "proleakproof": False, "proisstrict": True, "proretset": False, "provolatile": "i",
               "proparallel": "s", "pronargs": len(args), "pronargdefaults": 0, "prorettype": ret,
               "proargtypes": args, "prosrc": name} for i, (name, args, ret) in enumerate(_FUNCTIONS)]


def _none(src: CatalogSource) -> list[dict[str, Any]]:
    return []


_BUILDERS: dict[str, Callable[[CatalogSource], list[dict[str, Any]]]] = {
    "pg_catalog.pg_namespace": _namespaces,
    "pg_catalog.pg_class": _classes,
    "pg_catalog.pg_attribute": _attributes,
    "pg_catalog.pg_type": _types,
    "pg_catalog.pg_index": _indexes,
    "pg_catalog.pg_am": lambda src: _AM_ROWS,
    "pg_catalog.pg_opclass": lambda src: _OPCLASS_ROWS,
    "pg_catalog.pg_extension": lambda src: [{"oid": VECTOR_EXTENSION_OID, "extname": "vector",
                                             "extowner": BOOTSTRAP_ROLE_OID, "extnamespace": PUBLIC_OID,
                                             "extrelocatable": True, "extversion": "0.8.0"}],
    "pg_catalog.pg_database": _databases,
    "pg_catalog.pg_roles": _roles,
    "pg_catalog.pg_description": lambda src: [{"objoid": VECTOR_EXTENSION_OID, "classoid": PG_EXTENSION_OID,
                                               "objsubid": 0, "description":
                                               "vector data type and ivfflat and hnsw access methods"}],
    "pg_catalog.pg_attrdef": _attrdefs,
    "pg_catalog.pg_constraint": _constraints,
    "pg_catalog.pg_collation": lambda src: [{"oid": 100, "collname": "default", "collnamespace": PG_CATALOG_OID,
                                             "collowner": BOOTSTRAP_ROLE_OID, "collprovider": "d",
                                             "collisdeterministic": True, "collencoding": -1}],
    "pg_catalog.pg_policy": _none,
    "pg_catalog.pg_statistic_ext": _none,
    "pg_catalog.pg_publication": _none,
    "pg_catalog.pg_publication_namespace": _none,
    "pg_catalog.pg_publication_rel": _none,
    "pg_catalog.pg_inherits": _none,
    "pg_catalog.pg_tablespace": lambda src: [{"oid": 1663, "spcname": "pg_default", "spcowner": BOOTSTRAP_ROLE_OID},
                                             {"oid": 1664, "spcname": "pg_global", "spcowner": BOOTSTRAP_ROLE_OID}],
    "pg_catalog.pg_settings": _settings,
    "pg_catalog.pg_sequence": _sequences,
    "pg_catalog.pg_auth_members": _none,
    "pg_catalog.pg_range": _none,
    "pg_catalog.pg_enum": _none,
    "pg_catalog.pg_proc": lambda src: _PROC_ROWS,
    "pg_catalog.pg_tables": lambda src: [{"schemaname": "public", "tablename": t.name, "tableowner": "postgres",
                                          "hasindexes": bool(_index_relations(t)), "hasrules": False,
                                          "hastriggers": False, "rowsecurity": False} for t in src.tables],
}


# information_schema (SQL-standard views PostgreSQL derives from pg_catalog), built from the same source.
def _schemata(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"catalog_name": src.database, "schema_name": n, "schema_owner": "postgres"}
            for n in ("pg_catalog", "public", "information_schema")]


def _is_tables(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"table_catalog": src.database, "table_schema": "public", "table_name": t.name, "table_type": "BASE TABLE",
             "is_insertable_into": "YES", "is_typed": "NO"} for t in src.tables]


_DATA_TYPE = {"varchar": "character varying", "timestamp": "timestamp without time zone",
              "timestamptz": "timestamp with time zone"}


def _is_columns(src: CatalogSource) -> list[dict[str, Any]]:
    rows = []
    for t in src.tables:
        for i, c in enumerate(t.columns):
            ct = c.type
            data_type = "ARRAY" if ct.is_array else "USER-DEFINED" if ct.name == "vector" else \
                _DATA_TYPE.get(ct.name, ct.pg.sql_name)
            numeric = {"int2": 16, "int4": 32, "int8": 64, "float4": 24, "float8": 53}.get(ct.name)
            if ct.name == "numeric":
                numeric = ct.precision
            rows.append({
                "table_catalog": src.database, "table_schema": "public", "table_name": t.name, "column_name": c.name,
                "ordinal_position": i + 1, "column_default": None if c.default is None
                else _default_text(c.default, ct.sql()), "is_nullable": "NO" if c.not_null else "YES",
                "data_type": data_type, "character_maximum_length": ct.length if ct.name == "varchar" else None,
                "numeric_precision": numeric, "numeric_precision_radix": (10 if ct.name == "numeric" else 2)
                if numeric is not None else None, "numeric_scale": (ct.scale or 0) if ct.name == "numeric"
                and ct.precision is not None else 0 if ct.name in ("int2", "int4", "int8") else None,
                "udt_catalog": src.database, "udt_schema": "public" if ct.name in ("vector", "_vector")
                else "pg_catalog", "udt_name": ct.name, "dtd_identifier": str(i + 1), "is_self_referencing": "NO",
                "is_identity": "YES" if c.identity else "NO", "identity_generation": (c.identity or "").upper()
                or None, "is_generated": "NEVER", "is_updatable": "YES"})
    return rows


def _is_constraints(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"constraint_catalog": src.database, "constraint_schema": "public", "constraint_name": t.key_name,
             "table_catalog": src.database, "table_schema": "public", "table_name": t.name,
             "constraint_type": "PRIMARY KEY", "is_deferrable": "NO", "initially_deferred": "NO", "enforced": "YES"}
            for t in src.tables if t.primary_key]


def _is_key_columns(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"constraint_catalog": src.database, "constraint_schema": "public", "constraint_name": t.key_name,
             "table_catalog": src.database, "table_schema": "public", "table_name": t.name, "column_name": c,
             "ordinal_position": n + 1} for t in src.tables for n, c in enumerate(t.primary_key)]


_BUILDERS.update({
    "information_schema.schemata": _schemata, "information_schema.tables": _is_tables,
    "information_schema.columns": _is_columns, "information_schema.views": _none,
    "information_schema.table_constraints": _is_constraints, "information_schema.key_column_usage": _is_key_columns,
})


def _format_types(src: CatalogSource) -> list[dict[str, Any]]:
    seen = {(t.oid, -1): t.sql_name for t in _ALL_TYPES.values()}
    for t in src.tables:
        for c in t.columns:
            seen[(c.type.oid, c.type.typmod)] = c.type.sql()
    return [{"typid": k[0], "typmod": k[1], "formatted": v} for k, v in seen.items()]


def _type_names(src: CatalogSource) -> list[dict[str, Any]]:
    from storage.types import TYPE_ALIASES

    names = {t.name: t.oid for t in _ALL_TYPES.values()}
    names.update({t.sql_name: t.oid for t in _ALL_TYPES.values()})
    names.update({alias: PG_TYPES[name].oid for alias, name in TYPE_ALIASES.items()})
    names.update({f"pg_catalog.{n}": oid for n, oid in list(names.items())})
    names.update({f"public.{t.name}": t.oid for t in PG_TYPES.values() if "vector" in t.name})
    return [{"name": n, "oid": oid} for n, oid in names.items()]


def _indexdefs(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"oid": oid, "def": definition} for t in src.tables for oid, _, _, _, definition, _ in _index_relations(t)]


def _constraintdefs(src: CatalogSource) -> list[dict[str, Any]]:
    return [{"oid": t.oid + _PKEY_CONSTRAINT_OFFSET, "def": f"PRIMARY KEY ({', '.join(map(_ident, t.primary_key))})"}
            for t in src.tables if t.primary_key]


_HELPER_BUILDERS: dict[str, Callable[[CatalogSource], list[dict[str, Any]]]] = {
    "format_type": _format_types, "type_names": _type_names, "indexdef": _indexdefs,
    "constraintdef": _constraintdefs,
}


def _ident(name: str) -> str:
    """quote_ident: bare when it is a plain lower-case identifier, else double-quoted."""
    plain = name.isidentifier() and name == name.lower() and name.isascii()
    return name if plain else '"' + name.replace('"', '""') + '"'
