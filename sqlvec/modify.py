"""UPDATE, INSERT ... ON CONFLICT and TRUNCATE: rows replaced or removed by row id.

An update is the delete of the old rows and the insert of their new versions in one storage commit
(or in the session's open transaction, which commits them together): no reader sees both versions or
neither. The new values come from DuckDB for the assigned columns only; the other columns are taken
from the stored rows by row id, so they come back bit for bit (a float32 vector is not round-tripped
through DuckDB's doubles).

Concurrency is optimistic. A statement reads a snapshot; storage applies commits one at a time and
refuses to delete a row that is no longer live (``RowNotLiveError``) or to insert a key that is
(``DuplicateKeyError``). Outside a transaction block the statement is then run again on a fresh
snapshot (``run_retrying``), as PostgreSQL re-evaluates a READ COMMITTED write against the newest row
version; inside one, COMMIT fails with 40001 and changes nothing. Never a lost update, never a
duplicate key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.plan import Insert, KeyLookup, Truncate, Update, Upsert
from planner.planner import EXCLUDED, identifier_name
from sqlvec import coerce
from sqlvec.statement import DUCK_ROWID, Result, StatementContext, concat, constant_value
from sqlvec.transaction import ROWID
from storage import Delete as DeleteOp
from storage import Insert as InsertOp
from storage.errors import DuplicateKeyError, RowNotLiveError
from storage.types import TableSchema
from wire.session import PgError

NO_ROW = np.iinfo(np.int64).min  # "no conflicting row" (row ids of a transaction's own rows are negative)
RETRIES = 20


class RowsChanged(Exception):
    """A row the statement read was replaced or deleted by a commit after its snapshot."""


def serialization_failure() -> PgError:
    return PgError("40001", "could not serialize access due to concurrent update",
                   hint="Another transaction changed the same rows first; run the transaction again.")


def run_retrying(run: Callable[[], Result], retryable: tuple[type[Exception], ...]) -> Result:
    """Run a statement outside a transaction block; if a concurrent commit got to its rows first, run
    it again on a newer snapshot (``run`` takes a fresh one each time)."""
    for attempt in range(RETRIES):
        try:
            return run()
        except retryable:
            if attempt == RETRIES - 1:
                raise serialization_failure() from None
            if attempt:  # the commit in the way may still be on its way to the disk: let it land
                time.sleep(min(0.001 * 2 ** attempt, 0.05))
    raise AssertionError("unreachable")


def retryable_errors(plan: object) -> tuple[type[Exception], ...]:
    """What a concurrent commit makes a write statement fail with, when running it again is the answer."""
    if isinstance(plan, Insert):
        if plan.on_conflict_update is not None or plan.on_conflict_do_nothing:
            return RowNotLiveError, RowsChanged, DuplicateKeyError
        return ()
    return RowNotLiveError, RowsChanged


# -- reading rows by id ---------------------------------------------------------------------------------


def rows_by_id(ctx: StatementContext, schema: TableSchema, ids: np.ndarray) -> pa.Table:
    """The live rows with row ids ``ids`` (user columns, in the order of ``ids``), as ``ctx`` sees them.
    Raises RowsChanged when one is not there (a newer commit replaced it)."""
    names = [c.name for c in schema.columns]
    want = np.asarray(ids, np.int64)
    pieces: list[pa.Table] = []
    slots: list[np.ndarray] = []
    found = np.zeros(len(want), bool)
    txn = ctx.txn
    if txn is not None:  # the transaction's deletes checked for these ids only, not masked over every part
        parts = txn.parts(ctx.snapshot, schema.name, mask_deletes=False)
        deleted = txn.is_deleted(schema.name, want)
    else:
        parts, deleted = ctx.parts(schema.name), None
    for part in parts:
        n = part.data.num_rows
        if n == 0 or found.all():
            continue
        rid = part.data.column(ROWID).to_numpy()
        if part.segment is not None:  # a stored segment holds its rows in ascending row id order
            pos = np.minimum(np.searchsorted(rid, want), n - 1)
        elif n == 1 or bool((np.diff(rid) < 0).all()):  # a transaction's own rows: ids decrease
            pos = np.minimum(np.searchsorted(-rid, -want), n - 1)
        else:
            pos = pc.index_in(pa.array(want), value_set=pa.array(rid)).fill_null(0).to_numpy()
        hit = (rid[pos] == want) & ~found
        if deleted is not None:
            hit &= ~deleted
        if part.live is not None:
            hit &= part.live[pos]
        if hit.any():
            pieces.append(part.data.select(names).take(pa.array(pos[hit])))
            slots.append(np.flatnonzero(hit))
            found |= hit
    if not found.all():
        raise RowsChanged
    if not pieces:
        return schema.arrow_schema().empty_table()
    t = concat(pieces)
    order = np.empty(len(want), np.int64)
    order[np.concatenate(slots)] = np.arange(len(want))
    return t.take(pa.array(order))


_KEY_KINDS = {"int2": int, "int4": int, "int8": int, "text": str, "varchar": str}


def key_rows(ctx: StatementContext, schema: TableSchema, keys: KeyLookup) -> pa.Table | None:
    """The live rows whose primary key the statement's WHERE names, with their ``__rowid``, found through
    the key index; None where the values are not plain keys of the column's type (the caller scans)."""
    values: list = []
    for e in keys.values:
        if isinstance(e, exp.Anonymous) and e.name.upper() == "ANY":
            v = constant_value(e.expressions[0], ctx.params)
            values.extend([] if v is None else list(v))
        else:
            values.append(constant_value(e, ctx.params))
    col = schema.column(keys.column)
    assert col is not None
    kind = _KEY_KINDS.get(col.type.name)
    if kind is None or any(v is not None and (type(v) is not kind) for v in values):
        return None  # e.g. id = 1.5: PostgreSQL compares as numeric; the scan does that
    try:
        arr = coerce.from_python(values, col.type)
    except PgError:
        return None  # out of the column's range: matches nothing, as the scan will say
    ids = conflicting_rows(ctx, schema, pa.table({keys.column: arr}))
    ids = np.unique(ids[ids != NO_ROW])
    return rows_by_id(ctx, schema, ids).append_column(DUCK_ROWID, pa.array(ids, pa.int64()))


def conflicting_rows(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> np.ndarray:
    """Per row of ``data``, the row id of the live row with the same primary key (NO_ROW where none):
    a committed row the transaction has not deleted, or a row the transaction inserted."""
    from sqlvec.execute import key_strings, pending_key_index

    n = data.num_rows
    out = np.full(n, NO_ROW, np.int64)
    txn = ctx.txn
    if txn is None or not txn.created_here(schema.name):
        ids = np.asarray(ctx.engine.store.lookup_row_ids(schema.name, data.select(list(schema.primary_key))))
        hit = ids >= 0
        if txn is not None and hit.any():
            hit &= ~txn.is_deleted(schema.name, ids)
        out[hit] = ids[hit]
    if txn is not None:
        pending = pending_key_index(txn, schema)
        if pending:  # one dict probe per key, in C (map), as the primary-key index's growing part does
            mine = key_strings(data, schema.primary_key).to_pylist()
            ids = np.fromiter(map(pending.get, mine, repeat(NO_ROW)), dtype=np.int64, count=n)
            hit = ids != NO_ROW
            out[hit] = ids[hit]
    return out


# -- writing ---------------------------------------------------------------------------------------------


def replace_rows(ctx: StatementContext, schema: TableSchema, old_ids: np.ndarray, rows: pa.Table) -> None:
    """Delete the rows ``old_ids`` and insert ``rows``, atomically."""
    from sqlvec.execute import write_rows

    if ctx.txn is not None:
        if len(old_ids):
            ctx.txn.delete(schema.name, old_ids)
        write_rows(ctx, schema, rows)  # the key check sees the old rows gone
        return
    ops: list[object] = []
    if len(old_ids):
        ops.append(DeleteOp(schema.name, old_ids))
    if rows.num_rows:
        ops.append(InsertOp(schema.name, rows))
    if ops:
        ctx.engine.commit(ops)


def new_versions(ctx: StatementContext, schema: TableSchema, old: pa.Table, values: pa.Table | dict,
                 set_columns: tuple[str, ...], defaults: tuple[str, ...]) -> pa.Table:
    """The rows ``old`` with the assigned columns taken from ``values`` (by name) or their DEFAULT."""
    from sqlvec.execute import default_values

    n = old.num_rows
    out = []
    for col in schema.columns:
        if col.name in defaults:
            arr = default_values(ctx, schema, col, n)
        elif col.name in set_columns:
            arr = coerce.coerce(values[col.name] if isinstance(values, dict) else values.column(col.name), col.type,
                                column=col.name)
        else:
            out.append(old.column(col.name))
            continue
        if col.not_null and arr.null_count:
            raise PgError("23502", f'null value in column "{col.name}" of relation "{schema.name}" violates '
                                   "not-null constraint")
        out.append(arr)
    return pa.Table.from_arrays(out, schema=schema.arrow_schema())


def _returned(ctx: StatementContext, plan: Insert | Update, schema: TableSchema, rows: pa.Table) -> Result | None:
    if plan.returning is None:
        return None
    return ctx.run_query(plan.returning, {schema.name: rows})


def _result(plan: Insert | Update, rows: pa.Table | None, tag: str) -> Result:
    r = plan.returning
    return Result(rows, tag, r.names if r else None, r.column_types if r else None)


def direct_values(ctx: StatementContext, schema: TableSchema, direct: tuple[tuple[str, exp.Expr], ...], n: int,
                  excluded: pa.Table | None = None) -> dict[str, pa.Array]:
    """The new values of assignments that are parameters, literals or ``EXCLUDED.col`` (planner's _direct)."""
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name, e in direct:
        if isinstance(e, exp.Column):
            assert excluded is not None
            out[name] = excluded.column(e.name if e.this.args.get("quoted") else e.name.lower())
        else:
            col = schema.column(name)
            assert col is not None
            one = coerce.from_python([constant_value(e, ctx.params)], col.type)
            out[name] = one.take(pa.array(np.zeros(n, np.int64)))
    return out


def run_update(plan: Update, ctx: StatementContext) -> Result:
    schema = ctx.schema(plan.table)
    view = key_rows(ctx, schema, plan.keys) if plan.keys is not None else None
    if view is not None and plan.direct is not None:  # WHERE pk = ... SET col = $1, ...: no DuckDB
        ids = view.column(DUCK_ROWID).to_numpy()
        rows = new_versions(ctx, schema, view.drop_columns([DUCK_ROWID]),
                            direct_values(ctx, schema, plan.direct, len(ids)), plan.set_columns, plan.defaults)
        replace_rows(ctx, schema, ids, rows)
        return _result(plan, _returned(ctx, plan, schema, rows), f"UPDATE {rows.num_rows}")
    values = ctx.run_query(plan.rows, None if view is None else {schema.name: view})
    ids = values.column(values.num_columns - 1).to_numpy()
    if len(np.unique(ids)) < len(ids):  # UPDATE ... FROM matched a row more than once: it changes once
        _, first = np.unique(ids, return_index=True)
        values = values.take(pa.array(np.sort(first)))
        ids = values.column(values.num_columns - 1).to_numpy()
    old = rows_by_id(ctx, schema, ids)
    rows = new_versions(ctx, schema, old, values, plan.set_columns, plan.defaults)
    replace_rows(ctx, schema, ids, rows)
    return _result(plan, _returned(ctx, plan, schema, rows), f"UPDATE {rows.num_rows}")


def upsert(plan: Insert, ctx: StatementContext, schema: TableSchema, data: pa.Table) -> Result:
    """INSERT ... ON CONFLICT (key) DO UPDATE: each proposed row whose key is live updates that row
    (unless the WHERE says no), the others are inserted; all in one commit."""
    from sqlvec.execute import key_strings

    spec = plan.on_conflict_update
    assert isinstance(spec, Upsert)
    keys = key_strings(data, schema.primary_key)
    if pc.count_distinct(keys).as_py() < data.num_rows:
        raise PgError("21000", "ON CONFLICT DO UPDATE command cannot affect row a second time",
                      hint="Ensure that no rows proposed for insertion within the same command have duplicate "
                           "constrained values.")
    target = conflicting_rows(ctx, schema, data)
    conflict = target != NO_ROW
    proposed_at = np.flatnonzero(conflict)
    fresh = data.filter(pa.array(~conflict))
    updated = schema.arrow_schema().empty_table()
    replaced = np.zeros(0, np.int64)
    updated_at = np.zeros(0, np.int64)
    if len(proposed_at):
        existing_ids = target[conflict]
        old = rows_by_id(ctx, schema, existing_ids)
        excluded = data.filter(pa.array(conflict))
        if spec.direct is not None:  # SET col = EXCLUDED.col, ... (no WHERE): no DuckDB
            replaced = existing_ids
            values = direct_values(ctx, schema, spec.direct, len(existing_ids), excluded)
            updated = new_versions(ctx, schema, old, values, spec.set_columns, spec.defaults)
            updated_at = proposed_at
        else:
            values = ctx.run_query(spec.rows, {
                schema.name: old.append_column(DUCK_ROWID, pa.array(existing_ids)),
                EXCLUDED: excluded.append_column(DUCK_ROWID, pa.array(existing_ids))})
            replaced = values.column(values.num_columns - 1).to_numpy()
            which = pc.index_in(pa.array(replaced), value_set=pa.array(existing_ids)).to_numpy()
            updated = new_versions(ctx, schema, old.take(pa.array(which)), values, spec.set_columns, spec.defaults)
            updated_at = proposed_at[which]
    rows = concat([updated, fresh]) if updated.num_rows else fresh
    replace_rows(ctx, schema, replaced, rows)
    returned = None
    if plan.returning is not None:  # in the order the rows were proposed, as PostgreSQL returns them
        order = np.argsort(np.concatenate([updated_at, np.flatnonzero(~conflict)]), kind="stable")
        returned = _returned(ctx, plan, schema, rows.take(pa.array(order)))
    return _result(plan, returned, f"INSERT 0 {rows.num_rows}")


def merge_repeated_keys(plan: Insert, schema: TableSchema, data: pa.Table) -> pa.Table:
    """Rows for one upsert that does what the single-row upserts of ``data`` do one after another, when
    their SET only copies EXCLUDED columns or literals: a key's first row (inserted, or updating the
    stored row) with the assigned columns of its last row, which overwrites what the earlier ones set."""
    from sqlvec.execute import key_strings

    spec = plan.on_conflict_update
    assert spec is not None and spec.direct is not None
    if not all(isinstance(e, exp.Column) for _, e in spec.direct):
        return data  # SET col = literal on a key inserted by this batch: one by one (21000 fallback)
    keys = key_strings(data, schema.primary_key)
    codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    if len(first) == data.num_rows:
        return data
    _, last_rev = np.unique(codes[::-1], return_index=True)
    last = data.num_rows - 1 - last_rev  # np.unique orders both by code
    base = data.take(pa.array(first))
    later = data.take(pa.array(last))
    cols = {}
    for name in data.column_names:
        src = next((e for c, e in spec.direct if c == name), None)
        if src is not None:  # SET name = EXCLUDED.other: the last row's value of "other"
            cols[name] = later.column(identifier_name(src.this))
        else:
            cols[name] = base.column(name)
    order = np.argsort(first)
    return pa.table(cols, schema=data.schema).take(pa.array(order))


def drop_conflicts(ctx: StatementContext, schema: TableSchema, data: pa.Table) -> pa.Table:
    """ON CONFLICT DO NOTHING: the rows whose key is not live, the first of each key within ``data``."""
    from sqlvec.execute import key_strings

    keep = conflicting_rows(ctx, schema, data) == NO_ROW
    keys = key_strings(data, schema.primary_key)
    first = np.zeros(data.num_rows, bool)
    _, idx = np.unique(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), return_index=True)
    first[idx] = True
    return data.filter(pa.array(keep & first))


def run_truncate(plan: Truncate, ctx: StatementContext) -> Result:
    if plan.restart_identity:
        raise PgError("0A000", "TRUNCATE ... RESTART IDENTITY is not supported",
                      hint="Identity and serial values are never handed out twice in sqlvec.")
    ops: list[object] = []
    for name in plan.tables:
        ctx.schema(name)
        ids = [p.data.column(ROWID).to_numpy()[p.live] if p.live is not None else p.data.column(ROWID).to_numpy()
               for p in ctx.parts(name)]
        ids = [i for i in ids if len(i)]
        if ids:
            ops.append(DeleteOp(name, np.concatenate(ids)))
    if ctx.txn is not None:
        for op in ops:
            ctx.txn.delete(op.table, op.row_ids)  # type: ignore[attr-defined]
    elif ops:
        ctx.engine.commit(ops)
    return Result(None, "TRUNCATE TABLE")
