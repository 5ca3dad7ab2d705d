"""Executing plans: one function per plan class, looked up in ``EXECUTORS``.

Each executor takes the plan and a :class:`StatementContext` (snapshot, the session's open
transaction, its DuckDB connection, bound parameters) and returns a :class:`Result`: an Arrow
table of rows (or None) and the command tag. Reads run in DuckDB over Arrow views of the snapshot;
vector top-k runs exact search per segment; writes become storage operations.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import params as P
from planner.dialect import SqlVec, SqlVecDuckDB
from planner.plan import (
    CopyFrom,
    CountStar,
    CreateIndex,
    CreateTable,
    Delete,
    DropIndex,
    DropTable,
    Insert,
    Plan,
    Query,
    VectorRange,
    VectorTopK,
)
from planner.planner import relation_names
from sqlvec import arrow_filter, coerce
from sqlvec.transaction import ROWID, Part, Transaction, snapshot_parts
from storage import CreateIndex as CreateIndexOp
from storage import CreateTable as CreateOp
from storage import Delete as DeleteOp
from storage import DropIndex as DropIndexOp
from storage import DropTable as DropOp
from storage import Insert as InsertOp
from storage import SegmentIndex, Snapshot, flat
from storage.segment_index import index_params
from storage.types import IndexSchema, TableSchema
from storage.vector_index import SearchParams
from wire.copy_text import decode_copy_text
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


class VectorCache:
    """Dense matrices of segments' vector columns, keyed by (segment key, column).

    A sealed segment's matrix is a zero-copy view of its memory-mapped file. The growing segment is
    append-only within one generation (its key changes with every append), so its matrix is kept in a
    buffer that is extended by the new rows only, never rebuilt: otherwise a query after each insert
    would copy the whole growing segment (up to ``--seal-rows`` rows).
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[tuple[str, str], flat.VectorMatrix] = OrderedDict()
        self._growing: OrderedDict[tuple[str, str], _GrowingMatrix] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, part: Part, column: str, dim: int) -> flat.VectorMatrix:
        seg = part.segment
        if seg is not None and not seg.sealed and part.key == seg.segment_id:
            return self._get_growing(part, seg.segment_id.rsplit(".", 1)[0], column, dim)
        key = (part.key, column)
        with self._lock:
            vm = self._entries.get(key)
            if vm is not None:
                self._entries.move_to_end(key)
                return vm
        vm = _matrix(part.data.column(column), dim)
        with self._lock:
            self._entries[key] = vm
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return vm

    def _get_growing(self, part: Part, generation: str, column: str, dim: int) -> flat.VectorMatrix:
        key = (generation, column)
        n = part.data.num_rows
        with self._lock:
            grow = self._growing.get(key)
            if grow is None or grow.dim != dim:
                grow = self._growing[key] = _GrowingMatrix(dim)
                while len(self._growing) > self.max_entries:
                    self._growing.popitem(last=False)
            self._growing.move_to_end(key)
            if grow.rows < n:  # under the lock: one thread appends, the others then find the rows there
                grow.append(_matrix(part.data.column(column).slice(grow.rows, n - grow.rows), dim))
            return grow.view(n)


def _matrix(column: pa.ChunkedArray, dim: int) -> flat.VectorMatrix:
    try:
        return flat.VectorMatrix.from_arrow(column, dim)
    except flat.DimensionMismatch as e:
        raise PgError("22000", str(e)) from None


class _GrowingMatrix:
    """The growing segment's vectors, norms and validity in buffers that double when full. Views
    handed out stay valid: appends write past them, and a reallocation leaves the old buffer to its
    views."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = 0
        self.matrix = np.zeros((0, dim), np.float32)
        self.norms = np.zeros(0, np.float32)
        self.valid = np.zeros(0, bool)

    def append(self, vm: flat.VectorMatrix) -> None:
        end = self.rows + len(vm.valid)
        if end > len(self.valid):
            cap = max(end, 2 * len(self.valid), 1024)
            for name in ("matrix", "norms", "valid"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), old.dtype)
                new[: self.rows] = old[: self.rows]
                setattr(self, name, new)
        self.matrix[self.rows:end] = vm.matrix
        self.norms[self.rows:end] = vm.sq_norms
        self.valid[self.rows:end] = vm.valid
        self.rows = end

    def view(self, n: int) -> flat.VectorMatrix:
        return flat.VectorMatrix(self.matrix[:n], self.valid[:n], self.norms[:n])


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

    if isinstance(e, exp.CurrentVersion):
        return exp.Literal.string(VERSION_STRING)
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
)
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


def run_query(plan: Query, ctx: StatementContext) -> Result:
    return Result(ctx.run_query(plan), "", plan.names, plan.column_types)


def run_count(plan: CountStar, ctx: StatementContext) -> Result:
    ctx.schema(plan.table)
    if ctx.txn is None or ctx.txn.created_here(plan.table):
        n = 0 if ctx.txn is not None else ctx.snapshot.count(plan.table)
        if ctx.txn is not None:
            n = sum(p.data.num_rows if p.live is None else int(p.live.sum()) for p in ctx.parts(plan.table))
    else:
        n = sum(p.data.num_rows if p.live is None else int(p.live.sum()) for p in ctx.parts(plan.table))
    return Result(pa.table({plan.name: pa.array([n], pa.int64())}), "", {0: plan.name})


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


def _query_vector(plan: VectorTopK, ctx: StatementContext) -> np.ndarray:
    v = constant_value(plan.query, ctx.params)
    if v is None:
        return None  # type: ignore[return-value]
    if isinstance(v, str):
        from storage.types import ColumnType
        v = coerce.from_python([v], ColumnType("vector")).values.to_numpy(zero_copy_only=False)
    q = np.asarray(v, dtype=np.float32).ravel()
    if plan.dim is not None and len(q) != plan.dim:
        raise PgError("22000", f"different vector dimensions {plan.dim} and {len(q)}")
    return q


def _int_value(e: exp.Expr, ctx: StatementContext, what: str) -> int:
    v = constant_value(e, ctx.params)
    if v is None:
        return -1
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise PgError("22P02", f'invalid input syntax for type bigint: "{v}"') from None
    if n < 0:
        raise PgError("2201W" if what == "LIMIT" else "2201X", f"{what} must not be negative")
    return n


def run_vector_topk(plan: VectorTopK, ctx: StatementContext) -> Result:
    schema = ctx.schema(plan.table)
    limit = _int_value(plan.limit, ctx, "LIMIT")
    offset = _int_value(plan.offset, ctx, "OFFSET") if plan.offset is not None else 0
    q = _query_vector(plan, ctx)
    parts = ctx.parts(plan.table)
    want = (limit if limit >= 0 else 1 << 62) + offset
    indexes = _usable_indexes(schema, plan) if q is not None and limit >= 0 else []
    search = _SegmentSearch(plan, ctx, q, want, indexes)
    found = _search_parts(plan, ctx, parts, search, parallel=q is not None)
    ctx.report_search([f[3] for f in found])
    if len(parts) == 1 and found[0][0] is not None and (found[0][2] is None or len(found[0][0]) >= want):
        # One segment (the common case of a sealed, indexed table): its top-k, already in result order
        # (nearest first, NaN last, ties by position = row id), is the answer; no merge needed.
        pos, dist = found[0][0][offset:want], found[0][1][offset:want]
        rows = _plain_winners(plan, parts[0], pos, dist)
        if rows is not None:
            return Result(rows, "", plan.projection.names, plan.projection.column_types)
    chosen: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (part index, positions, dists, rowids)
    null_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    for i, (part, (pos, dist, nulls, _)) in enumerate(zip(parts, found)):
        rowids = part.data.column(ROWID).to_numpy()
        if pos is not None:
            chosen.append((i, pos, dist, rowids[pos]))
        if nulls is not None and len(nulls):
            null_rows.append((i, nulls, rowids[nulls]))
    ctx.check_cancel()
    part_idx = np.concatenate([np.full(len(c[1]), c[0]) for c in chosen]) if chosen else np.zeros(0, int)
    positions = np.concatenate([c[1] for c in chosen]) if chosen else np.zeros(0, np.int64)
    dists = np.concatenate([c[2] for c in chosen]) if chosen else np.zeros(0)
    rowids = np.concatenate([c[3] for c in chosen]) if chosen else np.zeros(0, np.int64)
    nan = np.isnan(dists)
    order = np.lexsort((rowids, np.where(nan, 0.0, dists), nan))[:want]
    part_idx, positions, dists, rowids = part_idx[order], positions[order], dists[order], rowids[order]
    has_dist = np.ones(len(order), bool)
    if len(order) < want and null_rows:
        n_idx = np.concatenate([np.full(len(r[1]), r[0]) for r in null_rows])
        n_pos = np.concatenate([r[1] for r in null_rows])
        n_ids = np.concatenate([r[2] for r in null_rows])
        o = np.argsort(n_ids, kind="stable")[: want - len(order)]
        part_idx = np.concatenate([part_idx, n_idx[o]])
        positions = np.concatenate([positions, n_pos[o]])
        dists = np.concatenate([dists, np.zeros(len(o))])
        rowids = np.concatenate([rowids, n_ids[o]])
        has_dist = np.concatenate([has_dist, np.zeros(len(o), bool)])
    sl = slice(offset, offset + limit if limit >= 0 else None)
    part_idx, positions, dists, rowids, has_dist = (a[sl] for a in (part_idx, positions, dists, rowids, has_dist))
    names = [c.name for c in schema.columns]
    if len(np.unique(part_idx)) == 1:
        winners = parts[int(part_idx[0])].data.select(names).take(pa.array(positions))
    elif len(part_idx):
        pieces = []
        for i in np.unique(part_idx):
            sel = part_idx == i
            pieces.append(parts[i].data.select(names).take(pa.array(positions[sel])))
        winners = concat(pieces)
        # concat grouped rows by part; restore the merged order
        regroup = np.concatenate([np.flatnonzero(part_idx == i) for i in np.unique(part_idx)])
        winners = winners.take(pa.array(np.argsort(regroup, kind="stable")))
    else:
        winners = schema.arrow_schema().empty_table()
    winners = winners.append_column(DUCK_ROWID, pa.array(rowids, pa.int64()))
    winners = winners.append_column(DISTANCE, pa.array(dists, pa.float64(), mask=~has_dist))
    rows = _plain_projection(plan.projection, winners)
    if rows is None:
        rows = ctx.run_query(plan.projection, {"__topk": winners})
    return Result(rows, "", plan.projection.names, plan.projection.column_types)


def run_vector_range(plan: VectorRange, ctx: StatementContext) -> Result:
    """Every row whose distance lies within the bounds (and that passes the filter), through each
    segment's index range search where one matches the operator, else exactly; then the select list,
    ORDER BY and LIMIT in DuckDB over those rows."""
    schema = ctx.schema(plan.table)
    q = _query_vector(plan, ctx)  # type: ignore[arg-type]
    lower, upper = _range_bounds(plan, ctx)
    names = [c.name for c in schema.columns]
    pieces = []
    if q is not None and lower is not None and upper is not None and upper > lower:
        parts = ctx.parts(plan.table)
        search = _SegmentRange(plan, ctx, q, lower, upper, _usable_indexes(schema, plan))  # type: ignore[arg-type]
        found = _search_parts(plan, ctx, parts, search, parallel=True)
        ctx.report_search([f[2] for f in found])
        ctx.check_cancel()
        if plan.nearest_first and len(parts) == 1:
            # One segment and a plain select list: order the rows found (nearest first, ties by position =
            # row id) and gather the selected columns, without DuckDB.
            pos, dist, _ = found[0]
            order = np.lexsort((pos, dist))
            rows = _plain_winners(plan, parts[0], pos[order], dist[order])  # type: ignore[arg-type]
            if rows is not None:
                return Result(rows, "", plan.projection.names, plan.projection.column_types)
        for part, (pos, dist, _) in zip(parts, found):
            if len(pos):
                rows = part.data.select(names + [ROWID]).take(pa.array(pos, pa.int64()))
                rows = rows.rename_columns(names + [DUCK_ROWID])
                pieces.append(rows.append_column(DISTANCE, pa.array(dist, pa.float64())))
    if pieces:
        found_rows = concat(pieces)
    else:
        empty = schema.arrow_schema()
        found_rows = empty.append(pa.field(DUCK_ROWID, pa.int64())).append(
            pa.field(DISTANCE, pa.float64())).empty_table()
    rows = ctx.run_query(plan.projection, {"__range": found_rows})
    return Result(rows, "", plan.projection.names, plan.projection.column_types)


def _range_bounds(plan: VectorRange, ctx: StatementContext) -> tuple[float | None, float | None]:
    """The bounds as the half-open interval [lower, upper) that range search takes (an inclusive upper
    bound becomes the next float above it, an exclusive lower one likewise); None when a bound is NULL
    (then no row matches, as distance < NULL is never true)."""
    def value(e: exp.Expr) -> float | None:
        v = constant_value(e, ctx.params)
        if v is None:
            return None
        try:
            return float(v)
        except (TypeError, ValueError):
            raise PgError("22P02", f'invalid input syntax for type double precision: "{v}"') from None

    upper = value(plan.upper)
    if upper is not None and plan.upper_inclusive:
        upper = float(np.nextafter(upper, np.inf))
    lower: float | None = -np.inf
    if plan.lower is not None:
        lower = value(plan.lower)
        if lower is not None and not plan.lower_inclusive:
            lower = float(np.nextafter(lower, np.inf))
    return lower, upper


class _SegmentRange:
    """The rows of one part within the bounds: (positions, distances, how it was searched)."""

    def __init__(self, plan: VectorRange, ctx: StatementContext, q: np.ndarray, lower: float, upper: float,
                 indexes: list[IndexSchema]) -> None:
        self.plan, self.ctx, self.q, self.lower, self.upper, self.indexes = plan, ctx, q, lower, upper, indexes
        self.params = None
        if indexes:
            # A graph's range search returns at most ef_search candidates inside the bound, and a range
            # holds many more rows than a top-10: search 4x wider than hnsw.ef_search says (recall of a
            # 50-row range at ef_search 80 went from 0.925 to 0.995 in sqlvec bench, 934 to 755 QPS).
            p = ctx.search_params()
            self.params = dataclasses.replace(p, ef_search=min(p.ef_search * 4, 4096))

    def __call__(self, part: Part, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, tuple]:
        _one_openmp_thread()
        plan, q = self.plan, self.q
        n = part.data.num_rows
        vm = self.ctx.engine.vectors.get(part, plan.column, plan.dim or len(q))
        mask = vm.valid if allowed is None else (vm.valid & allowed)
        ready = _ready_index(self.ctx, plan.table, self.indexes, part)
        covered = 0
        pos, dist = np.zeros(0, np.int64), np.zeros(0)
        how: tuple = ("exact", n)
        if ready is not None:
            index, handle = ready
            covered = min(handle.covered, n)
            matrix = vm.matrix
            lower = None if self.lower == -np.inf else self.lower
            pos, dist = handle.range_search(q.reshape(1, -1), lower, self.upper, self.params, mask[:covered],
                                            vectors_for_rerank=lambda rows: matrix[rows])[0]
            how = ("index", index.name, index.method, part.segment.sealed, n - covered)  # type: ignore[union-attr]
        if covered < n:  # rows without an index (or past a growing index's coverage): exact
            rows = np.flatnonzero(mask[covered:]) + covered
            # float32 BLAS distances pick the candidates (bounds widened by a rounding tolerance), which
            # are then checked in float64: a full float64 pass over every row cost 5x as much.
            rows = rows[self._candidates(vm, rows, n, q)]
            d = flat.exact_distances(vm.matrix[rows], q, plan.metric)
            keep = (d >= self.lower) & (d < self.upper)  # NaN never matches
            pos, dist = np.concatenate([pos, rows[keep]]), np.concatenate([dist, d[keep]])
        return pos.astype(np.int64, copy=False), dist, how


    def _candidates(self, vm: flat.VectorMatrix, rows: np.ndarray, n: int, q: np.ndarray) -> np.ndarray:
        """Which of ``rows`` may lie within the bounds, by float32 distances with the bounds widened by
        their rounding error (l2 in squared form, whose error grows with the vectors' norms)."""
        if len(rows) == 0:
            return np.zeros(0, bool)
        positions = None if len(rows) == n else rows
        metric, lower, upper = self.plan.metric, self.lower, self.upper
        q32 = q.astype(np.float32)
        if metric == "l2":
            sq = flat.approximate_distances(vm, positions, q, "l2", squared_l2=True)
            tol = 1e-5 * (float(vm.sq_norms[rows].max()) + float(q32 @ q32)) + 1e-12
            low = max(lower, 0.0) ** 2 - tol if np.isfinite(lower) else -np.inf
            return (sq < upper * upper + tol) & (sq >= low)
        d = flat.approximate_distances(vm, positions, q, metric)
        if metric == "ip":
            tol = 1e-4 * float(np.sqrt(vm.sq_norms[rows].max()) * np.sqrt(q32 @ q32)) + 1e-9
        else:  # cosine (in [0, 2]) and l1 (float32 sums of |differences|)
            tol = 1e-4 * (1.0 + abs(upper) + (abs(lower) if np.isfinite(lower) else 0.0))
        return (d < upper + tol) & (d >= lower - tol)


def _search_parts(plan: VectorTopK | VectorRange, ctx: StatementContext, parts: list[Part],
                  search: Callable[[Part, np.ndarray | None], Any], *, parallel: bool) -> list[Any]:
    """``search(part, allowed)`` for every part, where ``allowed`` is the part's live rows that pass the
    plan's filter. Filters run first, one part at a time on this session's DuckDB connection (it is not
    shared between threads); the searches then fan out over the parts on the engine's search threads."""
    alias = plan.projection.ast.args["from_"].this.alias
    masks: list[np.ndarray | None] = []
    for part in parts:
        ctx.check_cancel()
        allowed = part.live
        if plan.filter is not None:
            mask = _filter_mask(plan, part, alias, ctx)  # type: ignore[arg-type]
            allowed = mask if allowed is None else (allowed & mask)
        masks.append(allowed)
    if parallel and len(parts) > 1:
        return list(ctx.engine.search_pool.map(search, parts, masks))
    return [search(part, allowed) for part, allowed in zip(parts, masks)]


def _ready_index(ctx: StatementContext, table: str, indexes: list[IndexSchema], part: Part
                 ) -> tuple[IndexSchema, SegmentIndex] | None:
    """The first of ``indexes`` that is ready for the part's segment (covering at least one row)."""
    if part.segment is None:
        return None
    for index in indexes:
        handle = ctx.snapshot.segment_index(table, index.name, part.segment)
        if handle is not None and handle.covered > 0:
            return index, handle
    return None


def _usable_indexes(schema: TableSchema, plan: VectorTopK) -> list[IndexSchema]:
    """The table's indexes that can answer this ORDER BY: same column, and an opclass whose operator
    is the query's (an index built for cosine cannot order by L2 distance)."""
    return [i for i in schema.indexes if i.column == plan.column and i.metric == plan.metric]


_THREAD = threading.local()


def _one_openmp_thread() -> None:
    """One query's faiss search runs on one thread; parallelism comes from the segment fan-out and
    from concurrent sessions. With the default (every core) faiss still starts an OpenMP team for a
    single query, whose idle member spins: measured 155 us wall but 313 us of CPU per HNSW search on
    2 cores, against 155 / 155 with one thread. The setting is the calling thread's own (index builds
    keep every core)."""
    if not getattr(_THREAD, "single", False):
        faiss.omp_set_num_threads(1)
        _THREAD.single = True


class _SegmentSearch:
    """The k nearest rows of one part: through a ready index of its segment where there is one (and
    exactly over the rows the index does not cover yet), else exactly. Called from several threads
    at once (faiss and numpy release the GIL); touches no DuckDB connection."""

    def __init__(self, plan: VectorTopK, ctx: StatementContext, q: np.ndarray | None, want: int,
                 indexes: list[IndexSchema]) -> None:
        self.plan = plan
        self.ctx = ctx
        self.q = q
        self.want = want
        self.indexes = indexes
        self.params = ctx.search_params() if indexes else None

    def __call__(self, part: Part, allowed: np.ndarray | None
                 ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, tuple]:
        """(positions, distances, positions of allowed rows whose vector is NULL, how it was searched:
        ("index", name, method, sealed, rows searched exactly) or ("exact", rows))."""
        _one_openmp_thread()
        plan, q = self.plan, self.q
        n = part.data.num_rows
        if q is None:  # distance to NULL is NULL for every row
            nulls = np.arange(n) if allowed is None else np.flatnonzero(allowed)
            return None, None, nulls, ("exact", n)
        vm = self.ctx.engine.vectors.get(part, plan.column, plan.dim or len(q))
        k = min(self.want, n)
        found = _ready_index(self.ctx, plan.table, self.indexes, part)
        if found is None:
            pos, dist = flat.topk(vm, allowed, q, k, plan.metric)
            how: tuple = ("exact", n)
        else:
            index, handle = found
            pos, dist = self._indexed(handle, vm, allowed, q, k, n)
            how = ("index", index.name, index.method, part.segment.sealed,  # type: ignore[union-attr]
                   n - min(handle.covered, n))
        nulls = ~vm.valid if allowed is None else (~vm.valid & allowed)
        return pos, dist, (np.flatnonzero(nulls) if nulls.any() else None), how

    def _indexed(self, handle: SegmentIndex, vm: flat.VectorMatrix, allowed: np.ndarray | None,
                 q: np.ndarray, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        covered = min(handle.covered, n)
        head = None if allowed is None else allowed[:covered]
        matrix = vm.matrix
        ids, dist = handle.search(q.reshape(1, -1), min(k, covered), self._for_filter(head, covered), head,
                                  vectors_for_rerank=lambda rows: matrix[rows])
        ids, dist = ids[0], dist[0]
        found = ids >= 0
        ids, dist = ids[found], dist[found]
        if len(ids) < min(k, covered):
            ids, dist = self._widen(handle, vm, head, q, min(k, covered), covered, n, ids, dist)
        if covered < n:  # rows appended after the (growing) index was last extended: exact
            tail = np.zeros(n, bool)
            tail[covered:] = True if allowed is None else allowed[covered:]
            tpos, tdist = flat.topk(vm, tail, q, min(k, n - covered), self.plan.metric)
            ids, dist = np.concatenate([ids, tpos]), np.concatenate([dist, tdist])
            nan = np.isnan(dist)
            order = np.lexsort((ids, np.where(nan, 0.0, dist), nan))[:k]
            ids, dist = ids[order], dist[order]
        return ids.astype(np.int64, copy=False), dist


    def _for_filter(self, head: np.ndarray | None, covered: int) -> SearchParams:
        """Search settings scaled to the filter's selectivity: a filter admitting a fraction f of the rows
        leaves a graph walk or a probed list about f as many candidates, so ef_search, probes and
        leaves_to_search grow by 1/f (at most 16x); unfiltered queries use the settings as they are."""
        p = self.params
        if head is None or covered == 0:
            return p
        frac = np.count_nonzero(head) / covered
        if frac >= 0.9:
            return p
        scale = min(16.0, 1.0 / max(frac, 1e-9))
        return dataclasses.replace(p, ef_search=int(p.ef_search * scale), probes=int(np.ceil(p.probes * scale)),
                                   leaves_to_search=int(np.ceil(p.leaves_to_search * scale)))

    def _widen(self, handle: SegmentIndex, vm: flat.VectorMatrix, head: np.ndarray | None, q: np.ndarray,
               want: int, covered: int, n: int, ids: np.ndarray, dist: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """The index came back short: a filter left the graph walk or the probed lists fewer allowed rows
        than asked for. If more matching rows exist, search wider (8x ef_search / probes / leaves), and
        if that is still short, search the matching rows exactly, so a filtered query never returns
        fewer rows than there are matches."""
        matching = vm.valid[:covered] if head is None else (vm.valid[:covered] & head)
        if np.count_nonzero(matching) <= len(ids):
            return ids, dist  # every match was found
        p = self.params
        wider = dataclasses.replace(p, ef_search=min(p.ef_search * 8, 1 << 16), probes=p.probes * 8,
                                    leaves_to_search=p.leaves_to_search * 8 if p.leaves_to_search else 1 << 16)
        matrix = vm.matrix
        wids, wdist = handle.search(q.reshape(1, -1), want, wider, head, vectors_for_rerank=lambda rows: matrix[rows])
        keep = wids[0] >= 0
        if np.count_nonzero(keep) >= min(want, np.count_nonzero(matching)):
            return wids[0][keep], wdist[0][keep]
        allow = np.zeros(n, bool)
        allow[:covered] = matching
        return flat.topk(vm, allow, q, want, self.plan.metric)


_OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>", "l1": "<+>"}


def explain(plan: Plan, ctx: StatementContext) -> list[str]:
    """EXPLAIN's lines for ``plan`` as it would run against ``ctx``'s snapshot now."""
    if isinstance(plan, (VectorTopK, VectorRange)):
        op = _OPERATORS[plan.metric]
        if isinstance(plan, VectorTopK):
            head = f"Vector Top-K on {plan.table} (ORDER BY {plan.column} {op} q LIMIT {plan.limit.sql(SqlVec)})"
        else:
            lo = f"{plan.lower.sql(SqlVec)} {'<=' if plan.lower_inclusive else '<'} " if plan.lower is not None else ""
            hi = f"{'<=' if plan.upper_inclusive else '<'} {plan.upper.sql(SqlVec)}"
            head = f"Vector Range Search on {plan.table} ({lo}{plan.column} {op} q {hi})"
        lines = [head]
        if plan.filter is not None:
            p = ctx.search_params()
            lines.append(f"  Filter: {plan.filter.sql(SqlVec)} (an allow-list inside each segment's search; a "
                         f"segment where it admits at most sqlvec.exact_below = {p.exact_below} rows is searched "
                         "exactly)")
        indexes = _usable_indexes(ctx.schema(plan.table), plan)  # type: ignore[arg-type]
        if not indexes:
            lines.append(f"  No index serves {op} on {plan.column}: every segment is searched exactly")
        for part in ctx.parts(plan.table):
            seg = part.segment
            kind = "pending rows of this transaction" if seg is None else ("sealed segment" if seg.sealed
                                                                            else "growing segment")
            ready = _ready_index(ctx, plan.table, indexes, part)
            if ready is not None:
                index, handle = ready
                how = f"index {index.name} ({index.method}, {index.opclass})"
                if handle.covered < part.data.num_rows:
                    how += f" over {handle.covered} rows, the last {part.data.num_rows - handle.covered} exactly"
            else:
                how = "exact (its index is not built yet)" if indexes and seg is not None and seg.sealed else "exact"
            lines.append(f"  -> {kind}, {part.data.num_rows} rows: {how}")
        if isinstance(plan, VectorRange) or plan.projection.ast.args.get("where") is not None:
            lines.append(f"  Then in DuckDB: {plan.projection.ast.sql(SqlVec)}")
        return lines
    if isinstance(plan, CountStar):
        return [f"Count of {plan.table} from segment metadata (exact, no scan)"]
    if isinstance(plan, Query):
        sql, _ = duckdb_sql(plan.ast)
        return ["DuckDB over Arrow views of the snapshot:", f"  {sql}"]
    return [type(plan).__name__]


def describe_search(hows: list[tuple] | None) -> str:
    """SHOW sqlvec.last_search: e.g. "index items_e_idx (hnsw): 3 sealed, 1 growing; exact: 1 segments
    (120 rows)" (rows searched exactly include the tail a growing index does not cover yet)."""
    if hows is None:
        return ""
    used: dict[tuple[str, str], list[int]] = {}
    exact_segments, exact_rows = 0, 0
    for how in hows:
        if how[0] == "index":
            counts = used.setdefault((how[1], how[2]), [0, 0])
            counts[0 if how[3] else 1] += 1
            exact_rows += how[4]
        else:
            exact_segments += 1
            exact_rows += how[1]
    out = []
    for (name, method), (sealed, growing) in used.items():
        out.append(f"index {name} ({method}): {sealed} sealed" + (f", {growing} growing" if growing else ""))
    if exact_segments or exact_rows or not out:
        out.append(f"exact: {exact_segments} segments ({exact_rows} rows)")
    return "; ".join(out)


def _plain_winners(plan: VectorTopK, part: Part, positions: np.ndarray, dists: np.ndarray) -> pa.Table | None:
    """The result straight from one part's winners when the select list is plain columns and the
    distance (None otherwise): only the selected columns are gathered."""
    spec = plan.__dict__.get("_plain_spec", False)
    if spec is False:
        spec = plan.__dict__["_plain_spec"] = _plain_spec(plan.projection, {c for c in part.data.column_names})
    if spec is None:
        return None
    columns = [pa.array(dists, pa.float64()) if name == DISTANCE else _gather(part.data.column(name), positions)
               for name, _ in spec]
    return pa.Table.from_arrays(columns, names=[out for _, out in spec])


def _gather(column: pa.ChunkedArray, positions: np.ndarray) -> pa.Array:
    """``column.take(positions)``; numpy indexing for a one-chunk column of numbers without NULLs
    (a few microseconds, where Arrow's take costs tens for the ten rows of a top-k)."""
    if column.num_chunks == 1 and column.null_count == 0 and (pa.types.is_integer(column.type)
                                                              or pa.types.is_floating(column.type)):
        return pa.array(column.chunk(0).to_numpy()[positions], column.type)
    return column.take(pa.array(positions, pa.int64()))


def _plain_spec(projection: Query, stored: set[str]) -> list[tuple[str, str]] | None:
    """(column or ``__distance``, output name) for each select item when all are plain; else None."""
    select = projection.ast
    if not isinstance(select, exp.Select) or select.args.get("distinct"):
        return None
    spec = []
    for e in select.expressions:
        inner = e.this if isinstance(e, exp.Alias) else e
        if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
            return None
        name = inner.name if inner.this.quoted else inner.name.lower()
        if name != DISTANCE and (name not in stored or name == ROWID):
            return None
        spec.append((name, e.alias if isinstance(e, exp.Alias) else name))
    return spec


def _plain_projection(projection: Query, winners: pa.Table) -> pa.Table | None:
    """Columns and the distance, renamed, straight from the winners (already in result order);
    None when the select list has any other expression (DuckDB evaluates those)."""
    select = projection.ast
    if not isinstance(select, exp.Select) or select.args.get("distinct"):
        return None
    columns, names = [], []
    for e in select.expressions:
        inner = e.this if isinstance(e, exp.Alias) else e
        if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
            return None
        name = inner.name if inner.this.quoted else inner.name.lower()
        if name not in winners.column_names:
            return None
        columns.append(winners.column(name))
        names.append(e.alias if isinstance(e, exp.Alias) else name)
    return pa.Table.from_arrays(columns, names=names)


def _filter_mask(plan: VectorTopK, part: Part, alias: str, ctx: StatementContext) -> np.ndarray:
    schema = ctx.schema(plan.table)
    fast = arrow_filter.filter_mask(plan.filter, part.data, schema, alias, ctx.params)
    if fast is not None:  # a few comparisons of columns with constants: Arrow's kernels, not DuckDB
        return fast
    names = [c.name for c in schema.columns]
    view = part.data.select(names + [ROWID]).rename_columns(names + [DUCK_ROWID])
    ctx.con.register("__part", view)
    # Built once per plan: duckdb_sql caches the DuckDB text by tree, and generating it again for every
    # query (sqlglot) cost about 2 ms of each filtered search.
    select = plan.__dict__.get("_filter_select")
    if select is None:
        source = exp.Table(this=exp.to_identifier("__part"),
                           alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        select = plan.__dict__["_filter_select"] = exp.Select(
            expressions=[exp.alias_(plan.filter.copy(), "m")]).from_(source)
    out = ctx.run_sql(select).column(0)
    return np.asarray(pc.fill_null(out.cast(pa.bool_()), False).to_numpy(zero_copy_only=False), dtype=bool)


# -- writes ---------------------------------------------------------------------------------------


def commit_or_buffer(ctx: StatementContext, ops: list[object]) -> None:
    if ctx.txn is not None:
        for op in ops:
            if isinstance(op, InsertOp):
                ctx.txn.insert(op.table, op.data if isinstance(op.data, pa.Table) else pa.Table.from_batches([op.data]))
            elif isinstance(op, DeleteOp):
                ctx.txn.delete(op.table, op.row_ids)
            elif isinstance(op, CreateOp):
                ctx.txn.create_table(op.schema)
            elif isinstance(op, DropOp):
                ctx.txn.drop_table(op.name)
        return
    ctx.engine.commit(ops)


def build_rows(ctx: StatementContext, schema: TableSchema, columns: list[str], arrays: dict[str, pa.Array],
               n: int, defaults: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Target-column values -> a full row batch of ``schema``: coercion, DEFAULTs, identity, NOT NULL."""
    out = []
    for col in schema.columns:
        if col.name in arrays:
            arr = coerce.coerce(arrays[col.name], col.type, column=col.name)
            use_default = (defaults or {}).get(col.name)
            if col.identity == "always" and (use_default is None or not use_default.all()):
                raise PgError("428C9", f'cannot insert a non-DEFAULT value into column "{col.name}"',
                              detail=f'Column "{col.name}" is an identity column defined as GENERATED ALWAYS.',
                              hint="Use OVERRIDING SYSTEM VALUE to override.")
            if use_default is not None and use_default.any():
                filler = _default_values(ctx, schema, col, n)
                arr = pc.if_else(pa.array(use_default), filler, arr)
        else:
            arr = _default_values(ctx, schema, col, n)
        if col.not_null and arr.null_count:
            raise PgError("23502", f'null value in column "{col.name}" of relation "{schema.name}" violates '
                                   "not-null constraint")
        out.append(arr)
    return pa.Table.from_arrays(out, schema=schema.arrow_schema())


def _default_values(ctx: StatementContext, schema: TableSchema, col: Any, n: int) -> pa.Array:
    if col.identity is not None:
        return pa.array(ctx.engine.store.next_values(schema.name, col.name, n)).cast(col.type.arrow())
    if col.default is None:
        return pa.nulls(n, col.type.arrow())
    import sqlglot

    expr = sqlglot.parse_one(col.default, dialect=SqlVec)
    select = exp.Select(expressions=[exp.alias_(expr, "v")]).from_(
        exp.Table(this=exp.Anonymous(this="range", expressions=[exp.Literal.number(n)])))
    value = ctx.run_sql(select).column(0)
    return coerce.coerce(value, col.type, column=col.name)


def _is_default(e: exp.Expr) -> bool:
    return isinstance(e, exp.Var) and e.name.upper() == "DEFAULT"


def _constant_rows(plan: Insert, schema: TableSchema, param_sets: Sequence[Sequence[Any]]
                   ) -> tuple[dict[str, pa.Array], dict[str, np.ndarray], int]:
    """VALUES rows of constants and parameters, for each parameter set, as column arrays.

    Raises ValueError when an item is an expression (DuckDB evaluates those)."""
    assert plan.rows is not None
    rows = plan.rows
    n = len(rows) * len(param_sets)
    arrays: dict[str, pa.Array] = {}
    defaults: dict[str, np.ndarray] = {}
    for j, col in enumerate(plan.columns):
        items = [row[j] if j < len(row) else exp.Var(this="DEFAULT") for row in rows]
        is_default = np.array([_is_default(e) for e in items] * len(param_sets), dtype=bool)
        values = [None if _is_default(e) else constant_value(e, params) for params in param_sets for e in items]
        arrays[col] = coerce.from_python(values, schema.column(col).type)  # type: ignore[union-attr]
        if is_default.any():
            defaults[col] = is_default
    return arrays, defaults, n


def insert_param_sets(plan: Insert, ctx: StatementContext, param_sets: Sequence[Sequence[Any]]) -> int:
    """One INSERT ... VALUES run for many parameter sets at once (a pipelined executemany).

    Everything is checked before anything is written: on an error nothing has changed."""
    schema = ctx.schema(plan.table)
    arrays, defaults, n = _constant_rows(plan, schema, param_sets)
    data = build_rows(ctx, schema, plan.columns, arrays, n, defaults)
    _write_rows(ctx, schema, data)
    return data.num_rows


def _write_rows(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> None:
    if data.num_rows and ctx.txn is not None:
        keys = check_keys_in_transaction(ctx, schema, data) if schema.primary_key else None
        ctx.txn.insert(schema.name, data, keys)
    elif data.num_rows:
        commit_or_buffer(ctx, [InsertOp(schema.name, data)])


def run_insert(plan: Insert, ctx: StatementContext) -> Result:
    schema = ctx.schema(plan.table)
    arrays: dict[str, pa.Array] = {}
    defaults: dict[str, np.ndarray] = {}
    if plan.rows is not None:
        try:
            arrays, defaults, n = _constant_rows(plan, schema, [ctx.params])
        except ValueError:  # expressions: evaluate the VALUES list in DuckDB
            arrays, defaults, n = _values_by_duckdb(plan, ctx, schema)
    else:
        assert plan.source is not None
        src = ctx.run_query(plan.source)
        if src.num_columns != len(plan.columns):
            raise PgError("42601", "INSERT has more expressions than target columns"
                          if src.num_columns > len(plan.columns) else "INSERT has more target columns than expressions")
        n = src.num_rows
        arrays = {col: src.column(i) for i, col in enumerate(plan.columns)}
    data = build_rows(ctx, schema, plan.columns, arrays, n, defaults)
    if plan.on_conflict_do_nothing and schema.primary_key:
        data = _drop_conflicts(ctx, schema, data)
    _write_rows(ctx, schema, data)
    rows = None
    if plan.returning is not None:
        inserted = data.append_column(DUCK_ROWID, pa.nulls(data.num_rows, pa.int64()))
        rows = ctx.run_query(plan.returning, {schema.name: inserted})
    return Result(rows, f"INSERT 0 {data.num_rows}",
                  plan.returning.names if plan.returning else None,
                  plan.returning.column_types if plan.returning else None)


def _key_strings(t: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """One comparable string per row for a (possibly multi-column) key."""
    parts = [pc.cast(t.column(c), pa.string()) for c in columns]
    if len(parts) == 1:
        return parts[0].combine_chunks() if isinstance(parts[0], pa.ChunkedArray) else parts[0]
    joined = pc.binary_join_element_wise(*parts, "\x00")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _key_repr(schema: TableSchema, t: pa.Table, i: int) -> str:
    values = [t.column(c)[i].as_py() for c in schema.primary_key]
    return f"({', '.join(schema.primary_key)})=({', '.join(str(v) for v in values)})"


def check_keys_in_transaction(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> list:
    """Inside a transaction the key check runs at INSERT, as in PostgreSQL, not only at COMMIT.

    A key conflicts with a committed live row the transaction has not deleted, with a row the
    transaction inserted earlier, or with another row of the same statement.
    """
    txn = ctx.txn
    assert txn is not None
    keys = _key_strings(data, schema.primary_key)
    dup_in_batch = pc.greater(pc.value_counts(keys).field("counts"), 1)
    if pc.any(dup_in_batch).as_py():
        value = pc.filter(pc.value_counts(keys).field("values"), dup_in_batch)[0]
        i = int(pc.index(keys, value).as_py())
        raise PgError("23505", f'duplicate key value violates unique constraint "{schema.name}_pkey"',
                      detail=f"Key {_key_repr(schema, data, i)} already exists.")
    pending = txn.pending_keys.get(schema.name)
    if pending is None:  # after a DELETE of the transaction's own rows: rebuild from what is left
        pending = set()
        for rows in txn.pending_rows(schema.name):
            pending.update(_key_strings(rows, schema.primary_key).to_pylist())
        txn.pending_keys[schema.name] = pending
    batch_keys = keys.to_pylist()
    if pending and not pending.isdisjoint(batch_keys):
        i = next(j for j, k in enumerate(batch_keys) if k in pending)
        raise PgError("23505", f'duplicate key value violates unique constraint "{schema.name}_pkey"',
                      detail=f"Key {_key_repr(schema, data, i)} already exists.")
    if not txn.created_here(schema.name):
        existing = np.asarray(ctx.engine.store.lookup_row_ids(schema.name, data.select(list(schema.primary_key))))
        live = existing >= 0
        if live.any():
            live &= ~np.isin(existing, txn.deleted_ids(schema.name))
        if live.any():
            i = int(np.flatnonzero(live)[0])
            raise PgError("23505", f'duplicate key value violates unique constraint "{schema.name}_pkey"',
                          detail=f"Key {_key_repr(schema, data, i)} already exists.")
    return batch_keys


def _values_by_duckdb(plan: Insert, ctx: StatementContext, schema: TableSchema):
    assert plan.rows is not None
    n = len(plan.rows)
    width = len(plan.columns)
    defaults: dict[str, np.ndarray] = {c: np.zeros(n, bool) for c in plan.columns}
    tuples = []
    for i, row in enumerate(plan.rows):
        items = []
        for j in range(width):
            e = row[j] if j < len(row) else exp.Var(this="DEFAULT")
            if isinstance(e, exp.Var) and e.name.upper() == "DEFAULT":
                defaults[plan.columns[j]][i] = True
                items.append(exp.Null())
            else:
                items.append(e.copy())
        tuples.append(exp.Tuple(expressions=items))
    cols = [f"c{j}" for j in range(width)]
    values = exp.Values(expressions=tuples, alias=exp.TableAlias(this=exp.to_identifier("v"),
                                                                  columns=[exp.to_identifier(c) for c in cols]))
    select = exp.Select(expressions=[exp.Star()]).from_(values)
    t = ctx.run_sql(select)
    arrays = {col: t.column(j) for j, col in enumerate(plan.columns)}
    return arrays, {c: m for c, m in defaults.items() if m.any()}, n


def _drop_conflicts(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> pa.Table:
    keys = data.select(list(schema.primary_key))
    existing = ctx.engine.store.lookup_row_ids(schema.name, keys) if not (
        ctx.txn and ctx.txn.created_here(schema.name)) else np.full(data.num_rows, -1)
    keep = np.asarray(existing) < 0
    # within the batch, the first row with a key wins
    if len(schema.primary_key) == 1:
        col = keys.column(0).combine_chunks()
        first = np.zeros(data.num_rows, bool)
        _, idx = np.unique(np.asarray(pc.dictionary_encode(col).indices), return_index=True)
        first[idx] = True
        keep &= first
    return data.filter(pa.array(keep))


def run_delete(plan: Delete, ctx: StatementContext) -> Result:
    schema = ctx.schema(plan.table)
    full = ctx.table(plan.table, with_rowid=True)
    selected = ctx.run_query(plan.rows, {plan.table: full})
    ids = selected.column(0).to_numpy()
    rows = None
    if plan.returning is not None:
        gone = full.filter(pc.is_in(full.column(DUCK_ROWID), pa.array(ids)))
        rows = ctx.run_query(plan.returning, {schema.name: gone})
    if len(ids):
        if ctx.txn is not None:
            ctx.txn.delete(plan.table, ids)
        else:
            commit_or_buffer(ctx, [DeleteOp(plan.table, ids)])
    return Result(rows, f"DELETE {len(ids)}",
                  plan.returning.names if plan.returning else None,
                  plan.returning.column_types if plan.returning else None)


def run_create_table(plan: CreateTable, ctx: StatementContext) -> Result:
    if plan.schema.name in ctx.catalog:
        if plan.if_not_exists:
            ctx.notices.append(PgError("42P07", f'relation "{plan.schema.name}" already exists, skipping',
                                      severity="NOTICE"))
            return Result(None, "CREATE TABLE")
        raise PgError("42P07", f'relation "{plan.schema.name}" already exists')
    commit_or_buffer(ctx, [CreateOp(plan.schema)])
    return Result(None, "CREATE TABLE")


def run_drop_table(plan: DropTable, ctx: StatementContext) -> Result:
    ops = []
    for name in plan.names:
        if name not in ctx.catalog and name in relation_names(ctx.catalog):
            raise PgError("42809", f'"{name}" is not a table', hint="Use DROP INDEX to remove an index.")
        if name not in ctx.catalog:
            if plan.if_exists:
                ctx.notices.append(PgError("00000", f'table "{name}" does not exist, skipping', severity="NOTICE"))
                continue
            raise PgError("42P01", f'table "{name}" does not exist')
        ops.append(DropOp(name))
    if ops:
        commit_or_buffer(ctx, ops)
    return Result(None, "DROP TABLE")


def run_create_index(plan: CreateIndex, ctx: StatementContext) -> Result:
    ctx.schema(plan.table)
    if plan.name in relation_names(ctx.catalog):
        if plan.if_not_exists:
            ctx.notices.append(PgError("42P07", f'relation "{plan.name}" already exists, skipping',
                                      severity="NOTICE"))
            return Result(None, "CREATE INDEX")
        raise PgError("42P07", f'relation "{plan.name}" already exists')
    if plan.concurrently and ctx.in_block:
        raise PgError("25001", "CREATE INDEX CONCURRENTLY cannot run inside a transaction block")
    index = IndexSchema(plan.name, plan.column, plan.method, plan.metric, plan.opclass, plan.params)
    try:  # what only the index method knows (ivfpq's m must divide the dimension, ...): now, not at COMMIT
        index_params(index, ctx.schema(plan.table).column(plan.column).type.dim)
    except ValueError as e:
        raise PgError("22023", str(e)) from None
    op = CreateIndexOp(plan.table, index)
    if ctx.txn is not None:
        ctx.txn.create_index(op, wait=not plan.concurrently)
    else:
        ctx.engine.commit([op], wait_indexes=[] if plan.concurrently else [(plan.table, plan.name)],
                          cancelled=ctx.cancelled)
    return Result(None, "CREATE INDEX")


def run_drop_index(plan: DropIndex, ctx: StatementContext) -> Result:
    if plan.concurrently:
        if len(plan.names) > 1:
            raise PgError("0A000", "DROP INDEX CONCURRENTLY does not support dropping multiple objects")
        if ctx.in_block:
            raise PgError("25001", "DROP INDEX CONCURRENTLY cannot run inside a transaction block")
    indexes = {i.name for t in ctx.catalog.values() for i in t.indexes}
    ops = []
    for name in plan.names:
        if name not in indexes:
            if name in ctx.catalog:
                raise PgError("42809", f'"{name}" is not an index', hint="Use DROP TABLE to remove a table.")
            if plan.if_exists:
                ctx.notices.append(PgError("00000", f'index "{name}" does not exist, skipping', severity="NOTICE"))
                continue
            raise PgError("42704", f'index "{name}" does not exist')
        ops.append(DropIndexOp(name))
    if ops:
        if ctx.txn is not None:
            for op in ops:
                ctx.txn.drop_index(op)
        else:
            ctx.engine.commit(ops)
    return Result(None, "DROP INDEX")


EXECUTORS: dict[type, Callable[[Any, StatementContext], Result]] = {
    Query: run_query,
    CountStar: run_count,
    VectorTopK: run_vector_topk,
    VectorRange: run_vector_range,
    Insert: run_insert,
    Delete: run_delete,
    CreateTable: run_create_table,
    DropTable: run_drop_table,
    CreateIndex: run_create_index,
    DropIndex: run_drop_index,
}


def execute(plan: Plan, ctx: StatementContext) -> Result:
    return EXECUTORS[type(plan)](plan, ctx)


def copy_rows(plan: CopyFrom, ctx: StatementContext, data: bytes) -> int:
    """COPY ... FROM STDIN text data -> rows inserted."""
    schema = ctx.schema(plan.table)
    cols = [schema.column(c) for c in plan.columns]
    table = decode_copy_text(data, [c.name for c in cols], [c.type.oid for c in cols],  # type: ignore[union-attr]
                             [c.type.arrow() for c in cols], delimiter=plan.delimiter, null=plan.null)  # type: ignore[union-attr]
    arrays = {c: table.column(i) for i, c in enumerate(plan.columns)}
    rows = build_rows(ctx, schema, plan.columns, arrays, table.num_rows)
    if rows.num_rows:
        commit_or_buffer(ctx, [InsertOp(schema.name, rows)])
    return rows.num_rows
