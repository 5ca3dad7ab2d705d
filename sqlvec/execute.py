"""Executing plans: one function per plan class, looked up in ``EXECUTORS``.

Each executor takes the plan and a :class:`~sqlvec.statement.StatementContext` (snapshot, the session's
open transaction, its DuckDB connection, bound parameters) and returns a
:class:`~sqlvec.statement.Result`: an Arrow table of rows (or None) and the command tag. Reads run in
DuckDB over Arrow views of the snapshot; vector top-k and range search are sqlvec/vector_search.py's;
writes become storage operations.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import arrays as array_sql
from planner.dialect import SqlVec
from planner.plan import (
    CopyFrom,
    CopyTo,
    CountStar,
    CreateIndex,
    CreateTable,
    Delete,
    DropIndex,
    DropTable,
    Insert,
    Plan,
    Query,
    Truncate,
    Update,
    VectorRange,
    VectorTopK,
)
from planner.planner import relation_names
from sqlvec import coerce, modify
from sqlvec.statement import DUCK_ROWID, Result, StatementContext, constant_value, duckdb_sql
from sqlvec.transaction import ROWID, Transaction
from sqlvec.vector_search import explain_search, run_vector_range, run_vector_topk
from storage import CreateIndex as CreateIndexOp
from storage import CreateTable as CreateOp
from storage import Delete as DeleteOp
from storage import DropIndex as DropIndexOp
from storage import DropTable as DropOp
from storage import Insert as InsertOp
from storage.segment_index import index_params
from storage.staging import StagedRows
from storage.types import IndexSchema, TableSchema
from wire.copy_binary import CopyBinaryDecoder
from wire.copy_csv import check_header, decode_copy_csv
from wire.copy_text import CopyTextDecoder
from wire.session import PgError


def run_query(plan: Query, ctx: StatementContext) -> Result:
    return Result(ctx.run_query(plan), "", plan.names, plan.column_types)


def run_count(plan: CountStar, ctx: StatementContext) -> Result:
    ctx.schema(plan.table)
    n = ctx.snapshot.count(plan.table) if ctx.txn is None else ctx.txn.count(ctx.snapshot, plan.table)
    return Result(pa.table({plan.name: pa.array([n], pa.int64())}), "", {0: plan.name})



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
                filler = default_values(ctx, schema, col, n)
                arr = pc.if_else(pa.array(use_default), filler, arr)
        else:
            arr = default_values(ctx, schema, col, n)
        if col.not_null and arr.null_count:
            raise PgError("23502", f'null value in column "{col.name}" of relation "{schema.name}" violates '
                                   "not-null constraint")
        out.append(arr)
    return pa.Table.from_arrays(out, schema=schema.arrow_schema())


def default_values(ctx: StatementContext, schema: TableSchema, col: Any, n: int) -> pa.Array:
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
    if plan.on_conflict_update is not None:
        modify.upsert(plan, ctx, schema, modify.merge_repeated_keys(plan, schema, data))
        return data.num_rows
    write_rows(ctx, schema, data)
    return data.num_rows


def write_rows(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> None:
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
    if plan.on_conflict_update is not None:
        return modify.upsert(plan, ctx, schema, data)
    if plan.on_conflict_do_nothing and schema.primary_key:
        data = modify.drop_conflicts(ctx, schema, data)
    write_rows(ctx, schema, data)
    rows = None
    if plan.returning is not None:
        rows = ctx.run_query(plan.returning, {schema.name: data})
    return Result(rows, f"INSERT 0 {data.num_rows}",
                  plan.returning.names if plan.returning else None,
                  plan.returning.column_types if plan.returning else None)


def key_strings(t: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """One comparable string per row for a (possibly multi-column) key."""
    parts = [pc.cast(t.column(c), pa.string()) for c in columns]
    if len(parts) == 1:
        return parts[0].combine_chunks() if isinstance(parts[0], pa.ChunkedArray) else parts[0]
    joined = pc.binary_join_element_wise(*parts, "\x00")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _key_repr(schema: TableSchema, t: pa.Table, i: int) -> str:
    values = [t.column(c)[i].as_py() for c in schema.primary_key]
    return f"({', '.join(schema.primary_key)})=({', '.join(str(v) for v in values)})"


def pending_key_index(txn: Transaction, schema: TableSchema) -> dict:
    """Key string -> temporary row id of every row the transaction inserted into the table and still
    has; built again from the pending rows after a DELETE of its own rows or a COPY dropped it."""
    pending = txn.pending_keys.get(schema.name)
    if pending is None:
        pending = {}
        for rows in txn.pending_rows(schema.name):
            pending.update(zip(key_strings(rows, schema.primary_key).to_pylist(), rows.column(ROWID).to_pylist()))
        txn.pending_keys[schema.name] = pending
    return pending


def check_keys_in_transaction(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> list:
    """Inside a transaction the key check runs at INSERT, as in PostgreSQL, not only at COMMIT.

    A key conflicts with a committed live row the transaction has not deleted, with a row the
    transaction inserted earlier, or with another row of the same statement.
    """
    txn = ctx.txn
    assert txn is not None
    keys = key_strings(data, schema.primary_key)
    dup_in_batch = pc.greater(pc.value_counts(keys).field("counts"), 1)
    if pc.any(dup_in_batch).as_py():
        value = pc.filter(pc.value_counts(keys).field("values"), dup_in_batch)[0]
        i = int(pc.index(keys, value).as_py())
        raise PgError("23505", f'duplicate key value violates unique constraint "{schema.key_name}"',
                      detail=f"Key {_key_repr(schema, data, i)} already exists.")
    pending = pending_key_index(txn, schema)
    batch_keys = keys.to_pylist()
    if pending and not pending.keys().isdisjoint(batch_keys):
        i = next(j for j, k in enumerate(batch_keys) if k in pending)
        raise PgError("23505", f'duplicate key value violates unique constraint "{schema.key_name}"',
                      detail=f"Key {_key_repr(schema, data, i)} already exists.")
    if not txn.created_here(schema.name):
        existing = np.asarray(ctx.engine.store.lookup_row_ids(schema.name, data.select(list(schema.primary_key))))
        live = existing >= 0
        if live.any():
            live &= ~txn.is_deleted(schema.name, existing)
        if live.any():
            i = int(np.flatnonzero(live)[0])
            raise PgError("23505", f'duplicate key value violates unique constraint "{schema.key_name}"',
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
            elif isinstance(e, exp.Literal) and e.is_string and schema.column(plan.columns[j]).type.is_array:
                items.append(array_sql.from_text(e, schema.column(plan.columns[j]).type))  # type: ignore[union-attr]
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


def run_delete(plan: Delete, ctx: StatementContext) -> Result:
    schema = ctx.schema(plan.table)
    full = modify.key_rows(ctx, schema, plan.keys) if plan.keys is not None else None
    if full is None:
        full = ctx.table(plan.table, with_rowid=True)
    selected = ctx.run_query(plan.rows, {plan.table: full})
    ids = selected.column(0).to_numpy()
    rows = None
    if plan.returning is not None:
        gone = full.filter(pc.is_in(full.column(DUCK_ROWID), pa.array(ids))).drop_columns([DUCK_ROWID])
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


def explain(plan: Plan, ctx: StatementContext) -> list[str]:
    """EXPLAIN's lines for ``plan`` as it would run against ``ctx``'s snapshot now."""
    if isinstance(plan, (VectorTopK, VectorRange)):
        return explain_search(plan, ctx)
    if isinstance(plan, CountStar):
        return [f"Count of {plan.table} from segment metadata (exact, no scan)"]
    if isinstance(plan, Query):
        sql, _ = duckdb_sql(plan.ast)
        return ["DuckDB over Arrow views of the snapshot:", f"  {sql}"]
    return [type(plan).__name__]


def run_copy_to(plan: CopyTo, ctx: StatementContext) -> Result:
    """COPY ... TO STDOUT: the query's rows, tagged ``COPY n``; wire encodes them in the COPY format."""
    result = execute(plan.query, ctx)
    n = result.rows.num_rows if result.rows is not None else 0
    return Result(result.rows, f"COPY {n}", result.names, result.column_types)


EXECUTORS: dict[type, Callable[[Any, StatementContext], Result]] = {
    CopyTo: run_copy_to,
    Query: run_query,
    CountStar: run_count,
    VectorTopK: run_vector_topk,
    VectorRange: run_vector_range,
    Insert: run_insert,
    Delete: run_delete,
    Update: modify.run_update,
    Truncate: modify.run_truncate,
    CreateTable: run_create_table,
    DropTable: run_drop_table,
    CreateIndex: run_create_index,
    DropIndex: run_drop_index,
}


def execute(plan: Plan, ctx: StatementContext) -> Result:
    return EXECUTORS[type(plan)](plan, ctx)


def _copy_context(plan: CopyFrom, work: Callable[[], Any]) -> Any:
    """``work()``; an error's CONTEXT names the table and the line, as PostgreSQL's does:
    ``COPY t, line 3, column id: "x"``."""
    try:
        return work()
    except PgError as err:
        if err.where is not None and err.where.startswith("COPY line "):
            err.where = f"COPY {plan.table}, line {err.where[len('COPY line '):]}"
        raise


# Pieces (up to 16 MB each, see wire/server.py) a COPY's decoder thread may have waiting.
_DECODE_QUEUE = 2


class CopyLoad:
    """COPY ... FROM STDIN as its data arrives. Text is decoded a chunk of whole lines at a time
    as it comes, binary a chunk of whole tuples when they share one layout (so memory holds
    decoded columns rather than the stream, and decoding overlaps the transfer); CSV is kept and
    decoded at the end. ``finish`` inserts every row in one write, so the COPY is all or nothing;
    an error in any chunk fails the whole COPY."""

    def __init__(self, plan: CopyFrom, ctx: StatementContext) -> None:
        self.plan = plan
        self._ctx = ctx  # the context of the COPY's start: row building (DEFAULTs, identity) as it decodes
        self.schema = ctx.schema(plan.table)
        cols = [self.schema.column(c) for c in plan.columns]
        self.names = [c.name for c in cols]  # type: ignore[union-attr]
        self.oids = [c.type.oid for c in cols]  # type: ignore[union-attr]
        # array columns arrive as their text ('{1,2}'), split and converted by build_rows' coercion
        self.types = [pa.string() if c.type.is_array else c.type.arrow() for c in cols]  # type: ignore[union-attr]
        o = plan.options
        self._chunks: list[bytes] = []
        self._tables: list[pa.Table] = []
        self._decoder: CopyTextDecoder | CopyBinaryDecoder | None = None
        if o.format == "binary":
            self._decoder = CopyBinaryDecoder(self.names, self.oids, self.types)
        elif o.format != "csv":
            self._decoder = CopyTextDecoder(self.names, self.oids, self.types, delimiter=o.delimiter, null=o.null,
                                         first_line=2 if o.header else 1)
        text_header = isinstance(self._decoder, CopyTextDecoder) and o.header
        self._header: bytearray | None = bytearray() if text_header else None
        # Outside a transaction block a large COPY writes its rows to a staged file as they are decoded,
        # so that its commit logs the file's name rather than the rows (storage/staging.py).
        self._stage_bytes = ctx.engine.store.stage_bytes if ctx.txn is None else 0
        self._staged: StagedRows | None = None
        self._pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=_DECODE_QUEUE)
        self._decoding: threading.Thread | None = None
        self._failure: BaseException | None = None

    def feed(self, data: bytes | bytearray) -> None:
        """Take the next piece of the stream. Text and binary are decoded in a thread of the COPY's own,
        so the connection goes on receiving meanwhile (a bounded queue holds it back when decoding falls
        behind); a decoding error is raised by the next feed or by finish."""
        if self._decoder is None:
            self._chunks.append(bytes(data))
            return
        if self._failure is not None:
            raise self._failure
        if self._decoding is None:
            self._decoding = threading.Thread(target=self._decode_loop, name="sqlvec-copy-decoder", daemon=True)
            self._decoding.start()
        self._pieces.put(data if isinstance(data, (bytes, bytearray)) else bytes(data))  # a bytearray is ours now

    def _decode_loop(self) -> None:
        while (data := self._pieces.get()) is not None:
            if self._failure is None:
                try:
                    self._decode_piece(data)
                except BaseException as e:  # noqa: BLE001 - raised by the next feed or by finish
                    self._failure = e

    def _drain(self) -> None:
        """Wait until every piece fed so far is decoded; raise the first decoding error."""
        if self._decoding is not None:
            self._pieces.put(None)
            self._decoding.join()
            self._decoding = None
        if self._failure is not None:
            raise self._failure

    def _decode_piece(self, data: bytes) -> None:
        if self._header is not None:
            self._header += data
            if b"\n" not in self._header:
                return
            cut = self._header.index(b"\n") + 1
            data = bytes(self._header[cut:])
            line = self._header[:cut].decode("utf-8", "replace").rstrip("\r\n")
            self._header = None
            if self.plan.options.header == "match":
                check_header(line.split(self.plan.options.delimiter), self.names)
        decoded = _copy_context(self.plan, lambda: self._decoder.feed(data))  # type: ignore[union-attr]
        rows = [self._rows(t) for t in decoded]
        self._tables += rows
        self._stage(rows)

    def _stage(self, rows: list[pa.Table]) -> None:
        """Append ``rows`` to the staged file, starting it once the COPY's rows reach stage_bytes."""
        if self._staged is None:
            if self._stage_bytes <= 0 or sum(t.nbytes for t in self._tables) < self._stage_bytes:
                return
            staged = self._ctx.engine.store.stage(self.plan.table)
            if not self._tables[0].schema.equals(staged.schema):  # not the stored layout: log the rows
                staged.discard()
                self._stage_bytes = 0
                return
            self._staged, rows = staged, self._tables
        for t in rows:
            self._staged.append(t)

    def abort(self) -> None:
        """Stop decoding; remove the staged file, unless the COPY's commit took it."""
        with contextlib.suppress(BaseException):
            self._drain()
        if self._staged is not None:
            self._staged.discard()
            self._staged = None

    def _rows(self, decoded: pa.Table) -> pa.Table:
        """Decoded columns -> rows of the table (coercion, DEFAULTs, identity, NOT NULL), a chunk at a time
        as it is decoded, so that CopyDone is left with the write alone."""
        arrays = {c: decoded.column(i) for i, c in enumerate(self.plan.columns)}
        return build_rows(self._ctx, self.schema, self.plan.columns, arrays, decoded.num_rows)

    def finish(self, ctx: StatementContext) -> int:
        """Decode what is left, insert every row (in ``ctx``'s transaction), return the count."""
        try:
            rows = _copy_context(self.plan, self._decode_rest)
            schema = ctx.schema(self.plan.table)
            if schema.oid != self.schema.oid or schema.columns != self.schema.columns:
                raise PgError("40001", f'table "{self.plan.table}" was altered or recreated during COPY')
            if rows.num_rows:
                commit_or_buffer(ctx, [InsertOp(schema.name, rows, self._staged if ctx.txn is None else None)])
            return rows.num_rows
        finally:
            self.abort()

    def _decode_rest(self) -> pa.Table:
        o = self.plan.options
        if self._decoder is not None:
            self._drain()
            if self._header is not None:  # the data ended inside the header line
                self._header = None
            rest = [self._rows(t) for t in self._decoder.finish()]
            self._tables += rest
            self._stage(rest)  # the text decoder's last chunks come from finish (one of them parsed ahead)
            tables, self._tables = self._tables, []
            if not tables:
                return self.schema.arrow_schema().empty_table()
            return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        data = b"".join(self._chunks)
        self._chunks = []
        return self._rows(decode_copy_csv(data, self.names, self.oids, self.types, delimiter=o.delimiter,
                                          null=o.null, header=o.header, quote=o.quote, escape=o.escape,
                                          force_not_null=o.force_not_null, force_null=o.force_null))
