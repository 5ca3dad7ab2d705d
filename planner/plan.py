"""Plan nodes: one small class tree the engine executes and rules rewrite.

Every plan knows the types of its parameters (``param_oids``, one per ``$n``) so that wire/ can
describe and decode them. Expressions inside plans are sqlglot trees in the sqlvec dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from planner.copy import CopyOptions
from planner.parse import Utility
from storage.types import ColumnType, TableSchema


@dataclass
class Plan:
    param_oids: list[int] = field(default_factory=list, kw_only=True)

    #: Plan classes that produce rows (RowDescription); the rest answer NoData.
    returns_rows = False


@dataclass
class Query(Plan):
    """A read that runs in DuckDB over Arrow views of the snapshot of ``tables``.

    ``ast`` is already rewritten for DuckDB; ``column_types`` gives the catalog type of output
    columns that are plain column references (so a jsonb column is described as jsonb, not text).
    """

    ast: exp.Expr
    tables: tuple[str, ...]
    column_types: dict[int, ColumnType | int] = field(default_factory=dict)  # int: a catalog column's type OID
    names: dict[int, str] = field(default_factory=dict)
    catalog_relations: tuple[str, ...] = ()  # pg_catalog relations it reads (planner/rules/translate_pg_catalog.py)
    returns_rows = True

    @property
    def uses_rowid(self) -> bool:
        """Whether the query reads the ``__rowid`` pseudo-column (DELETE does; user queries do not)."""
        return any(c.name == "__rowid" for c in self.ast.find_all(exp.Column))


@dataclass
class CountStar(Plan):
    """``SELECT count(*) FROM table``: answered exactly from segment metadata."""

    table: str
    name: str = "count"
    returns_rows = True


@dataclass
class VectorTopK(Plan):
    """``SELECT ... FROM table [WHERE filter] ORDER BY column <op> query LIMIT k [OFFSET o]``.

    Executed by exact (or, later, index) search over the snapshot's segments; only the k winning
    rows are then projected, by ``projection`` (a Query over the winners, where ``__distance``
    stands for the ORDER BY distance and ``__rowid`` breaks ties).
    """

    table: str
    column: str
    metric: str
    query: exp.Expr
    limit: exp.Expr
    offset: exp.Expr | None
    filter: exp.Expr | None
    projection: Query
    dim: int | None = None
    returns_rows = True


@dataclass
class VectorRange(Plan):
    """``SELECT ... FROM table WHERE column <op> query < upper [AND ... >= lower] [AND filter] ...``.

    Executed by range search over the snapshot's segments (each segment's index where one matches the
    operator, else exactly); ``projection`` (a Query over the rows found, ``__range``, where
    ``__distance`` stands for the distance and ``__rowid`` breaks ties) gives the select list, ORDER BY
    and LIMIT.
    """

    table: str
    column: str
    metric: str
    query: exp.Expr
    lower: exp.Expr | None
    lower_inclusive: bool
    upper: exp.Expr
    upper_inclusive: bool
    filter: exp.Expr | None
    projection: Query
    dim: int | None = None
    nearest_first: bool = False  # the statement had no ORDER BY / LIMIT / OFFSET: rows come nearest first
    returns_rows = True


@dataclass
class Insert(Plan):
    """INSERT: ``rows`` of expressions (VALUES), or a ``source`` query; optional RETURNING query."""

    table: str
    columns: list[str]
    rows: list[list[exp.Expr]] | None
    source: Query | None
    returning: Query | None
    on_conflict_do_nothing: bool = False
    on_conflict_update: Upsert | None = None

    @property
    def returns_rows(self) -> bool:  # type: ignore[override]
        return self.returning is not None


@dataclass
class KeyLookup:
    """The WHERE of an UPDATE or DELETE names rows by primary key (``pk = $1``, ``pk IN (...)``,
    ``pk = ANY($1)``): their values, constants or parameters, each one key or (ANY) an array of keys.
    The rows are found through the key index instead of a scan; the WHERE is still applied to them."""

    column: str
    values: tuple[exp.Expr, ...]


@dataclass
class Upsert:
    """``ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]``: ``rows`` joins the existing rows (the target
    table, ``__rowid`` the row a proposed row conflicts with) to ``excluded`` (the proposed rows, carrying
    that same ``__rowid``) and selects every column's new value in table order, then the ``__rowid``
    to replace; a row the WHERE rejects is left as it is. ``defaults``: columns SET to DEFAULT."""

    rows: Query
    set_columns: tuple[str, ...]
    defaults: tuple[str, ...]
    #: every SET is a parameter, a plain literal or ``EXCLUDED.col`` and there is no WHERE: the new values
    #: are taken as they are (column -> expression), without DuckDB
    direct: tuple[tuple[str, exp.Expr], ...] | None = None


@dataclass
class Update(Plan):
    """UPDATE: ``rows`` selects every column's new value (table order), then the ``__rowid`` of the row
    it replaces; ``set_columns`` are the assigned ones, ``defaults`` those SET to DEFAULT."""

    table: str
    rows: Query
    set_columns: tuple[str, ...]
    defaults: tuple[str, ...]
    returning: Query | None
    keys: KeyLookup | None = None
    #: with ``keys``: every SET is a parameter or plain literal (column -> expression), taken as it is
    direct: tuple[tuple[str, exp.Expr], ...] | None = None

    @property
    def returns_rows(self) -> bool:  # type: ignore[override]
        return self.returning is not None


@dataclass
class Truncate(Plan):
    tables: list[str]
    restart_identity: bool


@dataclass
class Delete(Plan):
    """DELETE: ``rows`` selects the ``__rowid`` of every row to delete."""

    table: str
    rows: Query
    returning: Query | None
    keys: KeyLookup | None = None

    @property
    def returns_rows(self) -> bool:  # type: ignore[override]
        return self.returning is not None


@dataclass
class CreateTable(Plan):
    schema: TableSchema
    if_not_exists: bool


@dataclass
class DropTable(Plan):
    names: list[str]
    if_exists: bool


@dataclass
class CreateIndex(Plan):
    """``CREATE INDEX [CONCURRENTLY] [IF NOT EXISTS] name ON table USING method (column opclass) WITH (...)``.

    ``name`` is generated as PostgreSQL does (``<table>_<column>_idx``, numbered when taken) when the
    statement has none; ``params`` are the checked WITH options with defaults filled in.
    """

    name: str
    table: str
    column: str
    method: str
    opclass: str
    metric: str
    params: tuple[tuple[str, int | float], ...]
    if_not_exists: bool
    concurrently: bool


@dataclass
class DropIndex(Plan):
    names: list[str]
    if_exists: bool
    concurrently: bool


@dataclass
class CopyFrom(Plan):
    """COPY table [(columns)] FROM STDIN: the client's data, decoded by ``options.format``."""

    table: str
    columns: list[str]
    options: CopyOptions


@dataclass
class CopyTo(Plan):
    """COPY table [(columns)] | (query) TO STDOUT: ``query``'s rows, encoded by ``options.format``."""

    query: Plan
    options: CopyOptions


@dataclass
class UtilityPlan(Plan):
    utility: Utility

    @property
    def returns_rows(self) -> bool:  # type: ignore[override]
        return self.utility.kind in ("show", "explain") or (
            self.utility.kind == "fetch" and self.utility.args["command"].upper() == "FETCH")
