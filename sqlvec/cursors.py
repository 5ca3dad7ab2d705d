"""SQL cursors (DECLARE / FETCH / MOVE / CLOSE) over a snapshot, read batch by batch.

A cursor's rows come from a *source* opened at DECLARE on the snapshot of that moment (the
transaction's own writes included), so that no later write, commit or compaction changes what it
returns:

  DuckSource     a query DuckDB runs (joins, aggregates, plain scans), streamed as Arrow record
                  batches from a DuckDB connection of the cursor's own (the session's stays free for
                  other statements), so memory does not grow with the result
  VectorIterator  ``ORDER BY vector <op> q`` without a LIMIT: every row nearest first, from one exact
                  search whose candidates are kept (sqlvec/vector_search.py)
  TableSource    anything else that returns rows (a top-k with a LIMIT, a range search, count(*)),
                  run at DECLARE and kept whole

Positions follow PostgreSQL (https://www.postgresql.org/docs/16/sql-fetch.html): 0 is before the
first row, n + 1 after the last; FETCH returns the rows it passes over and MOVE counts them.
A SCROLL cursor keeps the rows it has read, to go back to them; any other cursor reads forward
only, keeping nothing behind it, and a backward motion is error 55000, as for a NO SCROLL cursor
in PostgreSQL (PostgreSQL allows some backward motions on cursors declared with neither option,
depending on the plan; sqlvec never does: declare SCROLL to scroll).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from planner.cursor import Motion
from sqlvec.statement import StatementContext, duckdb_error, duckdb_sql, duckdb_value
from wire.session import ColumnDesc, PgError

READ_ROWS = 10_000  # rows a forward read asks a source for at least (DuckDB hands out batches this size)


class TableSource:
    def __init__(self, rows: pa.Table) -> None:
        self.schema = rows.schema
        self._rows: pa.Table | None = rows
        self._offset = 0

    def read(self, n: int) -> pa.Table | None:
        if self._rows is None or self._offset >= self._rows.num_rows:
            self._rows = None
            return None
        piece = self._rows.slice(self._offset, n)
        self._offset += piece.num_rows
        return piece

    def close(self) -> None:
        self._rows = None


class DuckSource:
    """A Query plan run by DuckDB on a connection of its own, read a record batch at a time."""

    def __init__(self, plan: Any, ctx: StatementContext, con: duckdb.DuckDBPyConnection,
                 running: set | None = None) -> None:
        """``running``: a set the connection is in while the source is open (for cancelling it)."""
        self.con = con
        self._running = running
        if running is not None:
            running.add(con)
        ctx.con = con
        ctx.register_tables(plan)
        sql, used = duckdb_sql(plan.ast)
        values = [duckdb_value(ctx.params[n - 1]) if n - 1 < len(ctx.params) else None for n in used]
        try:
            rel = con.sql(sql, params=values) if values else con.sql(sql)
            self._reader: pa.RecordBatchReader | None = rel.to_arrow_reader(READ_ROWS)
        except duckdb.Error as e:
            self.close()
            raise duckdb_error(e) from None
        self.schema = self._reader.schema

    def read(self, n: int) -> pa.Table | None:
        if self._reader is None:
            return None
        batches: list[pa.RecordBatch] = []
        got = 0
        try:
            while got < n:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    self.close()
                    break
                batches.append(batch)
                got += batch.num_rows
        except duckdb.Error as e:
            self.close()
            raise duckdb_error(e) from None
        if not batches:
            return None
        return pa.Table.from_batches(batches, schema=self.schema)

    @property
    def exhausted(self) -> bool:
        return self._reader is None

    def close(self) -> None:
        self._reader = None
        if self._running is not None:
            self._running.discard(self.con)
        try:
            self.con.close()
        except duckdb.Error:
            pass


class IteratorSource:
    def __init__(self, iterator: Any) -> None:
        self._it = iterator
        first = iterator.empty()
        self.schema = first.schema

    def read(self, n: int) -> pa.Table | None:
        return self._it.read(max(n, 1)) if self._it is not None else None

    def close(self) -> None:
        self._it = None


class ExecutionSource:
    """The rest of a protocol portal's rows (an :class:`sqlvec.engine.Execution`)."""

    def __init__(self, execution: Any) -> None:
        self._execution = execution
        self.schema = execution.schema

    def read(self, n: int) -> pa.Table | None:
        batch = self._execution.fetch(n)
        return None if batch is None or batch.num_rows == 0 else pa.Table.from_batches([batch])

    def close(self) -> None:
        pass  # the portal stays open: Close or the end of the transaction closes it


def _forward_only() -> PgError:
    return PgError("55000", "cursor can only scan forward",
                   hint="Declare it with SCROLL option to enable backward scan.")


class Cursor:
    def __init__(self, name: str, source: Any, columns: list[ColumnDesc], names: dict | None,
                 column_types: dict | None, *, scroll: bool, hold: bool, binary: bool, txn: Any) -> None:
        self.name = name
        self.columns = columns
        self.names, self.column_types = names, column_types
        self.scroll, self.hold, self.binary = scroll, hold, binary
        self.txn = txn  # the transaction that declared it (None once that committed)
        self._source = source
        self._kept = source.schema.empty_table()  # rows base + 1 .. base + len, read but not yet dropped
        self._base = 0
        self._total: int | None = None  # known once the source is exhausted
        self.pos = 0

    # -- rows ---------------------------------------------------------------------------------------

    @property
    def _have(self) -> int:
        return self._base + self._kept.num_rows

    def _ensure(self, upto: int | None) -> None:
        """Read until row ``upto`` (None: every row) is kept or the source ends."""
        self._read(upto, keep=True)

    def _skip(self, upto: int | None) -> None:
        """Pass over rows up to ``upto`` (None: all) without keeping them (forward-only cursors)."""
        self._read(upto, keep=False)
        self._drop_to(self._have if upto is None else min(upto, self._have))

    def _read(self, upto: int | None, *, keep: bool) -> None:
        while self._total is None and (upto is None or self._have < upto):
            if not keep:
                self._drop_to(self._have)
            want = READ_ROWS if upto is None else max(upto - self._have, 1)
            piece = self._source.read(want)
            if piece is None or piece.num_rows == 0:
                self._total = self._have
                self._source.close()
                break
            self._kept = pa.concat_tables([self._kept, piece]) if self._kept.num_rows else piece

    def _drop_to(self, row: int) -> None:
        """Forget rows up to ``row`` (forward-only cursors keep none behind their position)."""
        if not self.scroll and row > self._base:
            self._kept = self._kept.slice(row - self._base)
            self._base = row

    def _rows(self, first: int, last: int) -> pa.Table:
        """Rows ``first`` .. ``last`` (1-based, inclusive; ascending), already kept."""
        if last < first:
            return self._kept.slice(0, 0)
        return self._kept.slice(first - 1 - self._base, last - first + 1)

    # -- motions ------------------------------------------------------------------------------------

    def move(self, m: Motion, *, fetch: bool) -> tuple[pa.Table | None, int]:
        """Move as ``m`` says: (the rows passed over, in the order passed, when ``fetch``; their count)."""
        if not self.scroll and (m.backward or (m.kind == "absolute" and m.count is not None
                                               and 0 < m.count <= self.pos)):
            raise _forward_only()
        if m.kind == "forward" and m.count != 0:
            return self._forward(m.count, fetch)
        if m.kind == "backward" and m.count != 0:
            return self._backward(m.count, fetch)
        if m.kind in ("forward", "backward") or (m.kind == "relative" and m.count == 0):
            return self._current(fetch)
        if m.kind == "relative":
            assert m.count is not None
            if m.count > 0 and self._total is not None and self.pos > self._total:
                return self._empty(fetch), 0  # already after the last row
            return self._to(self.pos + m.count, fetch)
        assert m.count is not None
        if m.count < 0:
            self._ensure(None)
            assert self._total is not None
            return self._to(self._total + 1 + m.count, fetch)
        return self._to(m.count, fetch)

    def _empty(self, fetch: bool) -> pa.Table | None:
        return self._kept.slice(0, 0) if fetch else None

    def _forward(self, count: int | None, fetch: bool) -> tuple[pa.Table | None, int]:
        if self._total is not None and self.pos > self._total:
            return self._empty(fetch), 0
        start = self.pos + 1
        end = None if count is None else self.pos + count
        if fetch or self.scroll:
            self._ensure(end)
        else:
            self._skip(end)
        last = self._have if end is None else min(end, self._have)
        rows = self._rows(start, last) if fetch else None
        n = max(0, last - start + 1)
        self.pos = last + 1 if (end is None or last < end) else end
        self._drop_to(min(self.pos, self._have))
        return rows, n

    def _backward(self, count: int | None, fetch: bool) -> tuple[pa.Table | None, int]:
        if self.pos > self._have:  # after the last row: the rows before it are all kept (SCROLL)
            self._ensure(None)
            assert self._total is not None
            self.pos = self._total + 1
        if self.pos <= 1:
            self.pos = 0
            return self._empty(fetch), 0
        start = self.pos - 1
        stop = 1 if count is None else max(1, self.pos - count)
        rows = None
        if fetch:
            ascending = self._rows(stop, start)
            rows = ascending.take(pa.array(range(ascending.num_rows - 1, -1, -1), pa.int64()))
        n = start - stop + 1
        self.pos = 0 if count is None or self.pos - count < 1 else self.pos - count
        return rows, n

    def _current(self, fetch: bool) -> tuple[pa.Table | None, int]:
        if 1 <= self.pos <= self._have:
            return (self._rows(self.pos, self.pos) if fetch else None), 1
        return self._empty(fetch), 0

    def _to(self, target: int, fetch: bool) -> tuple[pa.Table | None, int]:
        """ABSOLUTE target: that row, or before the first / after the last when out of range."""
        if target < 1:
            self.pos = 0
            return self._empty(fetch), 0
        if self.scroll or fetch:
            self._ensure(target)
        else:
            self._skip(target)
        if target > self._have:
            assert self._total is not None
            self.pos = self._total + 1
            self._drop_to(self._have)
            return self._empty(fetch), 0
        self.pos = target
        rows = self._rows(target, target) if fetch else None
        self._drop_to(target)
        return rows, 1

    def close(self) -> None:
        self._source.close()
        self._kept = self._kept.slice(0, 0)

