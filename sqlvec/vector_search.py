"""Vector search plans: top-k (VectorTopK) and range search (VectorRange) over a snapshot's segments.

Per part (a sealed or growing segment, or a transaction's pending rows) the plan's filter runs first
(Arrow kernels, else DuckDB) into an allow-mask; then each part is searched on the engine's search
threads, through a ready index of its segment whose operator class matches the query's operator, or
exactly; the parts' answers merge into the result, and only the winning rows are projected. EXPLAIN
and ``SHOW sqlvec.last_search`` describe the same choices.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.dialect import SqlVec
from planner.plan import Query, VectorRange, VectorTopK
from sqlvec import arrow_filter, coerce
from sqlvec.statement import DISTANCE, DUCK_ROWID, Result, StatementContext, concat, constant_value
from sqlvec.transaction import ROWID, Part
from storage import SegmentIndex, flat
from storage.types import IndexSchema, TableSchema
from storage.vector_index import SearchParams
from wire.session import PgError


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
    ctx.check_cancel()
    ranked = _Ranked.merge(parts, found, want)
    sl = slice(offset, offset + limit if limit >= 0 else None)
    rows = ranked.project(plan, ctx, schema, sl)
    return Result(rows, "", plan.projection.names, plan.projection.column_types)


@dataclasses.dataclass
class _Ranked:
    """Candidates of a top-k search over several parts, in result order: nearest first, NaN distances
    after the rest, then rows whose vector is NULL (no distance); ties by row id."""

    parts: list[Part]
    part_idx: np.ndarray
    positions: np.ndarray
    dists: np.ndarray
    rowids: np.ndarray
    has_dist: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def merge(cls, parts: list[Part], found: list[tuple], want: int) -> _Ranked:
        chosen: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (part index, positions, dists, rowids)
        null_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
        for i, (part, (pos, dist, nulls, _)) in enumerate(zip(parts, found)):
            rowids = part.data.column(ROWID).to_numpy()
            if pos is not None:
                chosen.append((i, pos, dist, rowids[pos]))
            if nulls is not None and len(nulls):
                null_rows.append((i, nulls, rowids[nulls]))
        part_idx = np.concatenate([np.full(len(c[1]), c[0]) for c in chosen]) if chosen else np.zeros(0, int)
        positions = np.concatenate([c[1] for c in chosen]) if chosen else np.zeros(0, np.int64)
        dists = np.concatenate([c[2] for c in chosen]) if chosen else np.zeros(0)
        rowids = np.concatenate([c[3] for c in chosen]) if chosen else np.zeros(0, np.int64)
        if len(chosen) > 1:
            nan = np.isnan(dists)
            order = np.lexsort((rowids, np.where(nan, 0.0, dists), nan))[:want]
            part_idx, positions, dists, rowids = part_idx[order], positions[order], dists[order], rowids[order]
        else:  # one part's search answers in result order already
            part_idx, positions, dists, rowids = part_idx[:want], positions[:want], dists[:want], rowids[:want]
        has_dist = np.ones(len(positions), bool)
        if len(positions) < want and null_rows:
            n_idx = np.concatenate([np.full(len(r[1]), r[0]) for r in null_rows])
            n_pos = np.concatenate([r[1] for r in null_rows])
            n_ids = np.concatenate([r[2] for r in null_rows])
            o = np.argsort(n_ids, kind="stable")[: want - len(positions)]
            part_idx = np.concatenate([part_idx, n_idx[o]])
            positions = np.concatenate([positions, n_pos[o]])
            dists = np.concatenate([dists, np.zeros(len(o))])
            rowids = np.concatenate([rowids, n_ids[o]])
            has_dist = np.concatenate([has_dist, np.zeros(len(o), bool)])
        return cls(parts, part_idx, positions, dists, rowids, has_dist)

    def project(self, plan: VectorTopK, ctx: StatementContext, schema: TableSchema, sl: slice) -> pa.Table:
        """The select list over the candidates ``sl``, in their order."""
        part_idx, positions, dists, rowids, has_dist = (
            a[sl] for a in (self.part_idx, self.positions, self.dists, self.rowids, self.has_dist))
        parts = self.parts
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
        return rows


class VectorIterator:
    """Every row of a ``VectorTopK`` plan (its LIMIT ignored), nearest first, a slice at a time: the
    rows of a cursor declared ``FOR SELECT ... ORDER BY embedding <-> q`` without a LIMIT.

    The search runs once, exactly, over the snapshot ``ctx`` was given (its filter applied): what is
    kept between slices is each candidate's part, position, row id and distance (32 bytes a row), so
    every FETCH continues where the last one stopped and no row is lost or repeated whatever others
    write meanwhile. The order is the exact one, so the rows iterated equal an exact search's."""

    def __init__(self, plan: VectorTopK, ctx: StatementContext) -> None:
        self.plan, self.ctx = plan, ctx
        self.schema = ctx.schema(plan.table)
        q = _query_vector(plan, ctx)
        parts = ctx.parts(plan.table)
        everything = 1 << 62
        found = _search_parts(plan, ctx, parts, _SegmentSearch(plan, ctx, q, everything, []), parallel=q is not None)
        ctx.report_search([f[3] for f in found])
        self._ranked = _Ranked.merge(parts, found, everything)
        self._offset = 0

    def __len__(self) -> int:
        return len(self._ranked)

    def empty(self) -> pa.Table:
        """No rows, with the result's columns."""
        return self._ranked.project(self.plan, self.ctx, self.schema, slice(0, 0))

    def read(self, n: int) -> pa.Table | None:
        """The next ``n`` rows, projected; None when every row was read."""
        if self._offset >= len(self._ranked):
            return None
        sl = slice(self._offset, min(self._offset + n, len(self._ranked)))
        self._offset = sl.stop
        return self._ranked.project(self.plan, self.ctx, self.schema, sl)


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
            # A range holds many more rows than a top-10: its first k-NN round (64 rows) searches 4x wider
            # than hnsw.ef_search says (a 50-row range at ef_search 80 was found 0.925 -> 0.995 in sqlvec
            # bench); the later rounds widen with k (storage.vector_index).
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
            found = handle.range_search(q.reshape(1, -1), lower, self.upper, self.params, mask[:covered],
                                        vectors_for_rerank=lambda rows: matrix[rows])[0]
            if found is None:  # the range holds too large a share of the rows for the index: all exact
                covered = 0
            else:
                pos, dist = found
                few = _few_matching(handle, mask[:covered] if allowed is not None else None, self.params)
                how = ("index", index.name, index.method, part.segment.sealed, n - covered,  # type: ignore[union-attr]
                       few)
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
    masks = _allowed_masks(plan, ctx, parts)
    if parallel and len(parts) > 1:
        return list(ctx.engine.search_pool.map(search, parts, masks))
    return [search(part, allowed) for part, allowed in zip(parts, masks)]


def _allowed_masks(plan: VectorTopK | VectorRange, ctx: StatementContext, parts: list[Part]
                   ) -> list[np.ndarray | None]:
    """Per part, its live rows that pass the plan's filter (None: every row)."""
    alias = plan.projection.ast.args["from_"].this.alias
    masks: list[np.ndarray | None] = []
    for part in parts:
        ctx.check_cancel()
        allowed = part.live
        if plan.filter is not None:
            mask = _filter_mask(plan, part, alias, ctx)  # type: ignore[arg-type]
            allowed = mask if allowed is None else (allowed & mask)
        masks.append(allowed)
    return masks


def _few_matching(handle: SegmentIndex, head: np.ndarray | None, params: SearchParams) -> int | None:
    """How many rows ``head`` admits when they are few enough for the index to search them exactly
    instead of walking its structure (``VectorIndex.searches_exactly``); else None."""
    if head is None:
        return None
    n = int(np.count_nonzero(head))
    return n if handle.searches_exactly(n, params) else None


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
        ("index", name, method, sealed, rows past the index searched exactly, rows the filter admits when
        so few that the index searched them exactly, else None) or ("exact", rows))."""
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
            covered = min(handle.covered, n)
            head = None if allowed is None else allowed[:covered]
            few = _few_matching(handle, head, self._for_filter(head, covered))
            if few is not None:  # the filter's few matches, and any rows past the index: one exact scan
                pos, dist = flat.topk(vm, allowed, q, k, plan.metric)
            else:
                pos, dist = self._indexed(handle, vm, allowed, q, k, n)
            how = ("index", index.name, index.method, part.segment.sealed, n - covered, few)  # type: ignore[union-attr]
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
        return _scaled(self.params, head, covered)

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


def explain_search(plan: VectorTopK | VectorRange, ctx: StatementContext) -> list[str]:
    """EXPLAIN's lines for a vector search as it would run against ``ctx``'s snapshot now."""
    op = _OPERATORS[plan.metric]
    if isinstance(plan, VectorTopK):
        head = f"Vector Top-K on {plan.table} (ORDER BY {plan.column} {op} q LIMIT {plan.limit.sql(SqlVec)})"
    else:
        lo = f"{plan.lower.sql(SqlVec)} {'<=' if plan.lower_inclusive else '<'} " if plan.lower is not None else ""
        hi = f"{'<=' if plan.upper_inclusive else '<'} {plan.upper.sql(SqlVec)}"
        head = f"Vector Range Search on {plan.table} ({lo}{plan.column} {op} q {hi})"
    lines = [head]
    p = ctx.search_params()
    if plan.filter is not None:
        lines.append(f"  Filter: {plan.filter.sql(SqlVec)} (a bitmap per segment; where it admits at most "
                     f"sqlvec.exact_below = {p.exact_below} rows, those rows are searched exactly, else the "
                     "index searches with it as an allow-list)")
    indexes = _usable_indexes(ctx.schema(plan.table), plan)  # type: ignore[arg-type]
    if not indexes:
        lines.append(f"  No index serves {op} on {plan.column}: every segment is searched exactly")
    parts = ctx.parts(plan.table)
    masks = _allowed_masks(plan, ctx, parts) if plan.filter is not None else [None] * len(parts)
    for part, allowed in zip(parts, masks):
        seg = part.segment
        n = part.data.num_rows
        kind = "pending rows of this transaction" if seg is None else ("sealed segment" if seg.sealed
                                                                        else "growing segment")
        admits = "" if allowed is None else f", filter admits {int(np.count_nonzero(allowed))}"
        ready = _ready_index(ctx, plan.table, indexes, part)
        if ready is not None:
            index, handle = ready
            covered = min(handle.covered, n)
            head = None if allowed is None else allowed[:covered]
            few = _few_matching(handle, head, _scaled(p, head, covered) if isinstance(plan, VectorTopK) else p)
            if few is not None:
                how = f"exact over the filter's {few} matching rows (index {index.name} not needed)"
            else:
                how = f"index {index.name} ({index.method}, {index.opclass})"
                if head is not None:
                    how += " with the filter as an allow-list" + _widened(index.method, p, head, covered)
            if covered < n:
                how += f", the last {n - covered} rows exactly"
        else:
            how = "exact (its index is not built yet)" if indexes and seg is not None and seg.sealed else "exact"
        lines.append(f"  -> {kind}, {n} rows{admits}: {how}")
    if isinstance(plan, VectorRange) or plan.projection.ast.args.get("where") is not None:
        lines.append(f"  Then in DuckDB: {plan.projection.ast.sql(SqlVec)}")
    return lines


def _filter_scale(head: np.ndarray | None, covered: int) -> float | None:
    """1/selectivity of a filter (at most 16x), by which a filtered index search widens; None when the
    filter admits 90% of the rows or more."""
    if head is None or covered == 0:
        return None
    frac = np.count_nonzero(head) / covered
    return None if frac >= 0.9 else min(16.0, 1.0 / max(frac, 1e-9))


def _scaled(p: SearchParams, head: np.ndarray | None, covered: int) -> SearchParams:
    """``p`` with ef_search, probes and leaves_to_search grown by ``_filter_scale``."""
    scale = _filter_scale(head, covered)
    if scale is None:
        return p
    return dataclasses.replace(p, ef_search=int(p.ef_search * scale), probes=int(np.ceil(p.probes * scale)),
                               leaves_to_search=int(np.ceil(p.leaves_to_search * scale)))


def _widened(method: str, p: SearchParams, head: np.ndarray, covered: int) -> str:
    """How _SegmentSearch._for_filter scales the search for a filter's selectivity, for EXPLAIN."""
    scale = _filter_scale(head, covered)
    if scale is None:
        return ""
    if method == "hnsw":
        return f" (hnsw.ef_search {p.ef_search} -> {int(p.ef_search * scale)})"
    if method == "scann":
        return " (scann.leaves_to_search scaled by " + f"{scale:.1f})"
    if method.startswith("ivf"):
        return f" (ivfflat.probes {p.probes} -> {int(np.ceil(p.probes * scale))})"
    return ""


def describe_search(hows: list[tuple] | None) -> str:
    """SHOW sqlvec.last_search: e.g. "index items_e_idx (hnsw): 3 sealed, 1 growing; exact: 1 segments
    (120 rows)" (rows searched exactly include the tail a growing index does not cover yet), and
    "exact over the filter's matches: 2 segments (310 rows)" for indexed segments where the filter
    admitted at most sqlvec.exact_below rows."""
    if hows is None:
        return ""
    used: dict[tuple[str, str], list[int]] = {}
    exact_segments, exact_rows = 0, 0
    filtered_segments, filtered_rows = 0, 0
    for how in hows:
        if how[0] == "index" and how[5] is not None:
            filtered_segments += 1
            filtered_rows += how[5]
            exact_rows += how[4]
        elif how[0] == "index":
            counts = used.setdefault((how[1], how[2]), [0, 0])
            counts[0 if how[3] else 1] += 1
            exact_rows += how[4]
        else:
            exact_segments += 1
            exact_rows += how[1]
    out = []
    for (name, method), (sealed, growing) in used.items():
        out.append(f"index {name} ({method}): {sealed} sealed" + (f", {growing} growing" if growing else ""))
    if filtered_segments:
        out.append(f"exact over the filter's matches: {filtered_segments} segments ({filtered_rows} rows)")
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
