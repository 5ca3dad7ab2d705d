"""What a statement runs against, and the DuckDB path every executor shares.

:class:`StatementContext` holds one statement's snapshot, the session's open transaction, its DuckDB
connection and the bound parameters; executors (sqlvec/execute.py, sqlvec/vector_search.py) take one
and return a :class:`Result`. The rest of this module turns sqlvec-dialect trees into DuckDB SQL,
DuckDB's errors into PostgreSQL's, and constants of a plan into Python values.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from planner import params as P
from planner.dialect import SqlVecDuckDB
from planner.plan import Query
from sqlvec import pg_catalog
from sqlvec.transaction import ROWID, Part, Transaction, snapshot_parts
from storage import Snapshot
from storage.types import TableSchema
from storage.vector_index import SearchParams
from wire.session import PgError

if TYPE_CHECKING:
    from sqlvec.engine import Engine

DUCK_ROWID = "__rowid"
DISTANCE = "__distance"


@dataclass
class Result:
    rows: pa.Table | None
    tag: str
    names: dict[int, str] | None = None
    column_types: dict | None = None
    binary: bool = False  # FETCH from a BINARY cursor
    more: Any = None  # the rest of a streamed result: a source of record batches (sqlvec.cursors)



class StatementContext:
    """What one statement runs against."""

    def __init__(self, engine: Engine, snapshot: Snapshot, txn: Transaction | None, con: duckdb.DuckDBPyConnection,
                 params: Sequence[Any], settings: Any, cancelled: threading.Event,
                 notices: list[PgError] | None = None, *, in_block: bool = False) -> None:
        self.engine = engine
        self.in_block = in_block  # inside BEGIN ... COMMIT (not an implicit transaction)
        self.session: Any = None  # the engine Session running the statement, where there is one
        self.snapshot = snapshot
        self.txn = txn
        self.con = con
        self.params = list(params)
        self.settings = settings
        self.cancelled = cancelled
        self.notices = notices if notices is not None else []
        self.catalog = txn.catalog(snapshot.catalog) if txn else snapshot.catalog

    def report_search(self, hows: list[tuple]) -> None:
        """Keep how each segment was searched; SHOW sqlvec.last_search formats it (not every query)."""
        if self.session is not None:
            self.session.last_search = hows

    def search_params(self) -> SearchParams:
        """Index search settings of the session as the statement runs (SET / SET LOCAL obeyed)."""
        return self.settings.derived("search_params", _search_params)

    def check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise PgError("57014", "canceling statement due to user request")

    def schema(self, table: str) -> TableSchema:
        s = self.catalog.get(table)
        if s is None:
            raise PgError("42P01", f'relation "{table}" does not exist')
        return s

    def parts(self, table: str) -> list[Part]:
        if self.txn is not None:
            return self.txn.parts(self.snapshot, table)
        return snapshot_parts(self.snapshot, table)

    def table(self, table: str, *, with_rowid: bool = False) -> pa.Table:
        """Every live row of ``table`` for DuckDB, with its row id as ``__rowid`` if asked."""
        schema = self.schema(table)
        pieces = [p.live_table() for p in self.parts(table)]
        names = [c.name for c in schema.columns] + ([ROWID] if with_rowid else [])
        if not pieces:
            empty = schema.arrow_schema()
            if with_rowid:
                empty = empty.append(pa.field(ROWID, pa.int64()))
            t = empty.empty_table()
        else:
            t = concat([p.select(names) for p in pieces])
        return t.rename_columns([c.name for c in schema.columns] + ([DUCK_ROWID] if with_rowid else []))

    # -- DuckDB ---------------------------------------------------------------------------------

    def register_tables(self, q: Query, views: dict[str, pa.Table] | None = None) -> None:
        """Make the query's tables visible to DuckDB: the snapshot's rows, or the given ``views``."""
        for name in q.tables:
            if views is None or name not in views:
                self.con.register(name, self.table(name, with_rowid=q.uses_rowid))
        for name, t in (views or {}).items():
            self.con.register(name, t)
        if q.catalog_relations:
            user, database = (self.session.user, self.session.database) if self.session is not None \
                else ("postgres", "sqlvec")
            pg_catalog.register(self.con, pg_catalog.CatalogSource(self.catalog, self.settings, user, database),
                                q.catalog_relations)

    def run_query(self, q: Query, views: dict[str, pa.Table] | None = None) -> pa.Table:
        self.register_tables(q, views)
        return self.run_sql(q.ast)

    def run_sql(self, ast: exp.Expr) -> pa.Table:
        sql, used = duckdb_sql(ast)
        values = [duckdb_value(self.params[n - 1]) if n - 1 < len(self.params) else None for n in used]
        self.check_cancel()
        try:
            rel = self.con.sql(sql, params=values) if values else self.con.sql(sql)
            return rel.to_arrow_table()
        except duckdb.Error as e:
            raise duckdb_error(e) from None


_SEARCH_SETTINGS = {  # SearchParams field -> setting
    "ef_search": "hnsw.ef_search",
    "probes": "ivfflat.probes",
    "rerank": "sqlvec.rerank",
    "exact_below": "sqlvec.exact_below",
    "leaves_to_search": "scann.leaves_to_search",
    "reorder": "scann.reorder",
}


def _search_params(settings: Any) -> SearchParams:
    fields = {f.name for f in dataclasses.fields(SearchParams)}
    return SearchParams(**{f: int(settings.get(name)) for f, name in _SEARCH_SETTINGS.items() if f in fields})


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate pieces of one table whose fields may differ only in nullability."""
    if len(tables) == 1:
        return tables[0]
    schema = pa.schema([f.with_nullable(True) for f in tables[0].schema])
    return pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in tables])


_DUCKDB_SQL_CACHE: dict[int, tuple[exp.Expr, str, list[int]]] = {}


def duckdb_sql(ast: exp.Expr) -> tuple[str, list[int]]:
    """DuckDB text for a sqlvec-dialect tree, parameters renumbered 1..m; ``used`` maps back."""
    cached = _DUCKDB_SQL_CACHE.get(id(ast))
    if cached is not None and cached[0] is ast:
        return cached[1], cached[2]
    numbers = sorted({P.parameter_number(p) for p in P.parameters(ast)})
    renumber = {n: i + 1 for i, n in enumerate(numbers)}
    tree = ast.copy()
    for p in P.parameters(tree):
        p.set("this", exp.Literal.number(renumber[P.parameter_number(p)]))
    tree = tree.transform(_rewrite_for_duckdb)
    sql = tree.sql(SqlVecDuckDB)
    if len(_DUCKDB_SQL_CACHE) > 4096:
        _DUCKDB_SQL_CACHE.clear()
    _DUCKDB_SQL_CACHE[id(ast)] = (ast, sql, numbers)
    return sql, numbers


def _rewrite_for_duckdb(e: exp.Expr) -> exp.Expr:
    from sqlvec.settings import VERSION_STRING

    if isinstance(e, exp.CurrentVersion) or (isinstance(e, exp.Anonymous) and e.name.lower() == "version"
                                             and not e.expressions):
        return exp.Literal.string(VERSION_STRING)
    if isinstance(e, (exp.CurrentUser, exp.SessionUser)) or (  # an unquoted USER is current_user, as in PostgreSQL
            isinstance(e, exp.Column) and not e.table and isinstance(e.this, exp.Identifier) and not e.this.quoted
            and e.name.lower() in ("current_role", "user")):
        return exp.Anonymous(this="sqlvec_setting", expressions=[exp.Literal.string("session_authorization")])
    if isinstance(e, exp.CurrentDatabase) or (isinstance(e, exp.Anonymous) and e.name.lower() == "current_catalog"):
        return exp.Anonymous(this="sqlvec_current_database", expressions=[])
    if isinstance(e, exp.CurrentSchema):  # sqlvec's one schema; pg_catalog comes first on the search path
        return exp.Literal.string("public")
    if isinstance(e, exp.CurrentSchemas):
        implicit = e.this is not None and e.this.sql().lower() == "true"
        return exp.Array(expressions=[exp.Literal.string(n) for n in (["pg_catalog"] if implicit else []) + ["public"]])
    if isinstance(e, exp.Anonymous) and e.name.lower() == "current_setting":
        return exp.Anonymous(this="sqlvec_setting", expressions=e.expressions)
    return e


def duckdb_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.astype(np.float64).tolist()
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


# DuckDB's errors -> PostgreSQL's: (exception class or None for any, pattern in DuckDB's message,
# SQLSTATE, message built from the match). The first match wins; then the class default below.
_DUCKDB_ERRORS: tuple[tuple[type | None, re.Pattern[str], str, Callable[[re.Match[str]], str]], ...] = (
    (None, re.compile(r"list dimensions must be equal, got left length '(\d+)' and right length '(\d+)'"),
     "22000", lambda m: f"different vector dimensions {m.group(1)} and {m.group(2)}"),
    (None, re.compile(r"different vector dimensions.*"), "22000", lambda m: m.group(0)),
    (None, re.compile(r"Division by zero"), "22012", lambda m: "division by zero"),
    (duckdb.BinderException, re.compile(r'Referenced column "?([^"\s]+)"? not found'),
     "42703", lambda m: f'column "{m.group(1)}" does not exist'),
    (duckdb.BinderException, re.compile(r"No function matches the given name and argument types '([^']*)'"),
     "42883", lambda m: f"function {m.group(1)} does not exist"),
    (duckdb.BinderException, re.compile(r".*must appear in the GROUP BY clause.*"), "42803", lambda m: m.group(0)),
    (duckdb.CatalogException, re.compile(r"Table with name (\S+) does not exist"),
     "42P01", lambda m: f'relation "{m.group(1)}" does not exist'),
    (duckdb.CatalogException, re.compile(r"Function with name (\S+) does not exist"),
     "42883", lambda m: f"function {m.group(1)} does not exist"),
    (duckdb.ConversionException, re.compile(r".*out of range.*"), "22003", lambda m: m.group(0)),
    (duckdb.ConversionException, re.compile(r"Could not convert string '(.*)' to (\w+)"),
     "22P02", lambda m: f'invalid input syntax for type {_PG_TYPE_OF.get(m.group(2), m.group(2).lower())}: '
                        f'"{m.group(1)}"'),
    (None, re.compile(r"malformed array literal: .*"), "22P02", lambda m: m.group(0)),
    (None, re.compile(r"multidimensional arrays are not supported"), "0A000", lambda m: m.group(0)),
)
_PG_TYPE_OF = {"INT16": "smallint", "INT32": "integer", "INT64": "bigint", "FLOAT": "real",
               "DOUBLE": "double precision", "BOOL": "boolean", "DATE": "date", "UUID": "uuid"}
_DUCKDB_DEFAULT_SQLSTATE: tuple[tuple[type, str], ...] = (
    (duckdb.InterruptException, "57014"),
    (duckdb.BinderException, "42804"),
    (duckdb.CatalogException, "42704"),
    (duckdb.ConversionException, "22P02"),
    (duckdb.OutOfRangeException, "22003"),
    (duckdb.ParserException, "42601"),
    (duckdb.InvalidInputException, "22023"),
)


def duckdb_error(e: duckdb.Error) -> PgError:
    msg = str(e).split("\n")[0]
    text = msg.split(": ", 1)[1] if ": " in msg else msg
    if isinstance(e, duckdb.InterruptException):
        return PgError("57014", "canceling statement due to user request")
    for cls, pattern, sqlstate, message in _DUCKDB_ERRORS:
        if cls is not None and not isinstance(e, cls):
            continue
        m = pattern.search(text)
        if m:
            return PgError(sqlstate, message(m))
    sqlstate = next((code for cls, code in _DUCKDB_DEFAULT_SQLSTATE if isinstance(e, cls)), "XX000")
    return PgError(sqlstate, text)


# ---------------------------------------------------------------------------------------------
# executors



def constant_value(e: exp.Expr, params: Sequence[Any]) -> Any:
    """A literal, parameter, or cast of one, as a Python value."""
    while isinstance(e, (exp.Cast, exp.Paren)):
        e = e.this
    if isinstance(e, exp.Parameter):
        n = P.parameter_number(e)
        if n > len(params):
            raise PgError("08P01", f"there is no parameter ${n}")
        return params[n - 1]
    if isinstance(e, exp.Null):
        return None
    if isinstance(e, exp.Boolean):
        return e.this
    if isinstance(e, exp.Neg):
        v = constant_value(e.this, params)
        return -v if v is not None else None
    if isinstance(e, exp.Literal):
        if e.is_string:
            return e.this
        text = e.this
        try:
            return int(text)
        except ValueError:
            return decimal.Decimal(text)
    raise ValueError("not a constant")

