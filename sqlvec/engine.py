"""The engine: sessions, transactions and statement execution behind wire/'s Session interface.

One :class:`Engine` per server owns the store, the plan cache and the caches shared by sessions.
A :class:`Session` per connection keeps its settings, its open transaction and a DuckDB
connection of its own. Statements are parsed and planned once per text (the plan cache is keyed
by text, client parameter types and catalog version), and settings are read at execution.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from planner import arrays
from planner import cursor as cursor_sql
from planner import parse as parser
from planner.dialect import DUCKDB_MACROS
from planner.errors import SqlError
from planner.plan import CopyFrom, CopyTo, Plan, Query, UtilityPlan, VectorRange, VectorTopK
from planner.planner import plan as make_plan
from sqlvec import cursors as C
from sqlvec import execute as X
from sqlvec import modify
from sqlvec import statement as S
from sqlvec import vector_search as V
from sqlvec.results import describe
from sqlvec.settings import SessionSettings, SettingError
from sqlvec.transaction import Transaction
from storage import (
    DuplicateKeyError,
    IndexExistsError,
    NoSuchIndexError,
    NoSuchTableError,
    RowNotLiveError,
    StorageError,
    Store,
    TableExistsError,
)
from wire.session import ColumnDesc, CopyOut, PgError, StartupInfo, StatementDesc

log = logging.getLogger("sqlvec.engine")

_EXTENSIONS = {"vector", "plpgsql"}


def to_pg_error(e: Exception) -> PgError:
    if isinstance(e, PgError):
        return e
    if isinstance(e, SqlError):
        return PgError(e.sqlstate, e.message, position=e.position, detail=e.detail, hint=e.hint)
    if isinstance(e, SettingError):
        return PgError(e.sqlstate, e.message)
    if isinstance(e, (RowNotLiveError, modify.RowsChanged)):
        return modify.serialization_failure()
    if isinstance(e, DuplicateKeyError):
        return PgError("23505", f'duplicate key value violates unique constraint "{e.constraint}"',
                       detail=f"Key {e.key_repr} already exists.")
    if isinstance(e, NoSuchTableError):
        return PgError("42P01", str(e))
    if isinstance(e, IndexExistsError):
        return PgError("42P07", f'relation "{e.index}" already exists')
    if isinstance(e, TableExistsError):
        return PgError("42P07", str(e))
    if isinstance(e, NoSuchIndexError):
        return PgError("42704", str(e))
    if isinstance(e, duckdb.Error):
        return S.duckdb_error(e)
    if isinstance(e, StorageError):
        return PgError("XX000", str(e))
    log.exception("internal error")
    return PgError("XX000", f"internal error: {type(e).__name__}: {e}")


class Engine:
    """The SessionFactory wire/ is given."""

    def __init__(self, store: Store, *, plan_cache_size: int = 1024) -> None:
        self.store = store
        self.vectors = V.VectorCache()
        self._plans: OrderedDict[tuple, tuple[int, Plan]] = OrderedDict()
        self._parses: OrderedDict[str, list[parser.Statement]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.plan_cache_size = plan_cache_size
        self.catalog_version = 0
        self.plans_made = 0  # for tests: how often the planner ran
        self.sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        # Vector search fans out over a table's segments on these threads (faiss and numpy release
        # the GIL, so one query uses every core).
        self.search_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                              thread_name_prefix="sqlvec-search")

    def open_session(self, startup: StartupInfo) -> Session:
        session = Session(self, startup)
        self.sessions.add(session)
        return session

    def cancel_all(self) -> None:
        for session in list(self.sessions):
            session.cancel()

    def commit(self, ops: list[object], *, wait_indexes: Sequence[tuple[str, str]] = (),
               cancelled: threading.Event | None = None) -> int:
        """Commit ``ops``; then, like PostgreSQL's CREATE INDEX, return only once the indexes named in
        ``wait_indexes`` (table, index) are built for every sealed segment. A cancel ends the wait
        (57014) but not the build: the index is committed and finishes in the background."""
        from storage import CreateIndex, CreateTable, DropIndex, DropTable

        lsn = self.store.commit(ops)
        if any(isinstance(op, (CreateTable, DropTable, CreateIndex, DropIndex)) for op in ops):
            with self._cache_lock:
                self.catalog_version += 1
        for table, index in wait_indexes:
            while self.store.builds_indexes:
                try:
                    if self.store.wait_for_indexes(table, index, timeout=0.1):
                        break
                except (NoSuchTableError, NoSuchIndexError):
                    break  # dropped by another session meanwhile
                if cancelled is not None and cancelled.is_set():
                    raise PgError("57014", "canceling statement due to user request",
                                  detail=f'Index "{index}" is committed and goes on building in the background.')
            failed = next((st.error for st in self.store.index_status()
                           if st.index == index and st.error and not st.error.startswith("growing index")), None)
            if failed is not None:
                # As in PostgreSQL, a CREATE INDEX whose build fails leaves no index behind.
                from storage import DropIndex

                self.commit([DropIndex(index)])
                raise PgError("XX000", f'could not build index "{index}": {failed}')
        return lsn

    def parse(self, sql: str) -> list[parser.Statement]:
        with self._cache_lock:
            cached = self._parses.get(sql)
            if cached is not None:
                self._parses.move_to_end(sql)
                return cached
        statements = parser.parse(sql)
        with self._cache_lock:
            self._parses[sql] = statements
            if len(self._parses) > self.plan_cache_size:
                self._parses.popitem(last=False)
        return statements

    def plan(self, statement: parser.Statement, catalog: Any, oids: Sequence[int], txn: Transaction | None) -> Plan:
        cacheable = txn is None or not txn.has_ddl
        key = (statement.text, tuple(oids))
        version = self.catalog_version
        if cacheable:
            with self._cache_lock:
                hit = self._plans.get(key)
                if hit is not None and hit[0] == version:
                    self._plans.move_to_end(key)
                    return hit[1]
        p = make_plan(statement, catalog, oids)
        self.plans_made += 1
        if cacheable:
            with self._cache_lock:
                self._plans[key] = (version, p)
                if len(self._plans) > self.plan_cache_size:
                    self._plans.popitem(last=False)
        return p


class PreparedStatement:
    def __init__(self, statement: parser.Statement | None, client_oids: Sequence[int], desc: StatementDesc) -> None:
        self.statement = statement
        self.client_oids = list(client_oids)
        self.desc = desc


class Execution:
    """One statement's run: lazy until columns or rows are asked for, then fully materialised."""

    def __init__(self, session: Session, statement: parser.Statement | None, client_oids: Sequence[int],
                 params: Sequence[Any], *, last_of_implicit: bool = False, extended: bool = False) -> None:
        self.session = session
        self.extended = extended
        self.statement = statement
        self.client_oids = client_oids
        self.params = params
        self.last_of_implicit = last_of_implicit
        self._plan: Plan | None = None
        self._ran = False
        self._rows: pa.Table | None = None
        self._columns: list[ColumnDesc] | None = None
        self._offset = 0
        self._tag = ""
        self.binary = False  # rows of a BINARY cursor's FETCH: sent in binary by the simple query protocol
        self.names: dict | None = None
        self.column_types: dict | None = None
        self._stream: C.DuckSource | None = None  # the rest of a result DuckDB streams (a large SELECT)
        self._returned = 0
        self.copy_in: CopySink | None = None
        self.copy_in_columns = 0
        self.copy_in_binary = False
        self.copy_out: CopyOut | None = None
        self._closed = False
        if statement is not None:
            self._prepare_copy()

    def _prepare_copy(self) -> None:
        """COPY must be known before the first fetch, so wire can start the sub-protocol."""
        st = self.statement
        if st is not None and st.ast is not None and isinstance(st.ast, exp.Copy):
            plan = self.session.guarded(lambda: self.session.plan_for(st, self.client_oids))
            if isinstance(plan, CopyFrom):
                self._plan = plan
                self.copy_in = CopySink(self, plan)
                self.copy_in_columns = len(plan.columns)
                self.copy_in_binary = plan.options.format == "binary"
            elif isinstance(plan, CopyTo):
                o = plan.options
                self.copy_out = CopyOut(o.format, o.delimiter, o.null, bool(o.header), o.quote, o.escape,
                                        o.force_quote)

    # -- running --------------------------------------------------------------------------------

    def _run(self) -> None:
        if self._ran:
            return
        self._ran = True
        if self.statement is None:
            return
        s = self.session
        if self.extended:
            s.begin_implicit()
        result = s.guarded(lambda: s.run_statement(self.statement, self.client_oids, self.params, stream=True),
                           implicit_last=self.last_of_implicit)
        self._rows, self._tag = result.rows, result.tag
        self._stream = result.more
        self.binary = result.binary
        self.names, self.column_types = result.names, result.column_types
        if result.rows is not None:
            self._columns = describe(result.rows.schema, result.names, result.column_types)
            if not self._tag and self._stream is None:
                self._tag = f"SELECT {result.rows.num_rows}"

    @property
    def schema(self) -> pa.Schema:
        self._run()
        assert self._rows is not None
        return self._rows.schema

    @property
    def columns(self) -> list[ColumnDesc] | None:
        if self.copy_in is not None:
            return None
        self._run()
        return self._columns

    def fetch(self, max_rows: int) -> pa.RecordBatch | None:
        self._run()
        if self._rows is None:
            return None
        if self._offset >= self._rows.num_rows and self._stream is not None:
            self._next_piece(max_rows)
        remaining = self._rows.num_rows - self._offset
        n = remaining if max_rows <= 0 else min(max_rows, remaining)
        if n <= 0:
            return None
        piece = self._rows.slice(self._offset, n).combine_chunks()
        self._offset += n
        self._returned += n
        batches = piece.to_batches()
        if not batches:
            return pa.RecordBatch.from_pylist([], schema=piece.schema)
        return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]

    def _next_piece(self, max_rows: int) -> None:
        """The next rows of a streamed result (its first piece came with the result)."""
        stream = self._stream
        assert stream is not None and self._rows is not None
        piece = self.session.guarded(lambda: stream.read(max(max_rows, C.READ_ROWS)))
        if piece is None:
            self._stream = None
            self._tag = self._tag or f"SELECT {self._returned}"
            piece = self._rows.slice(0, 0)
        self._rows, self._offset = piece, 0

    @property
    def done(self) -> bool:
        if not self._ran:
            return False
        return self._rows is None or (self._offset >= self._rows.num_rows and self._stream is None)

    @property
    def command_tag(self) -> str:
        return self._tag or f"SELECT {self._returned}"

    def close(self) -> None:
        self._closed = True
        self._rows = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class CopySink:
    """COPY ... FROM STDIN: hands the client's data to a :class:`sqlvec.execute.CopyLoad` as it
    arrives (text is decoded chunk by chunk there) and loads the rows at CopyDone."""

    def __init__(self, execution: Execution, plan: CopyFrom) -> None:
        self.execution = execution
        self.plan = plan
        self._load: X.CopyLoad | None = None

    def _opened(self) -> X.CopyLoad:
        if self._load is None:
            s = self.execution.session
            if self.execution.extended:
                s.begin_implicit()
            self._load = s.guarded(lambda: s.open_copy(self.plan))
        return self._load

    def feed(self, data: bytes) -> None:
        load = self._opened()
        self.execution.session.guarded(lambda: load.feed(data))

    def finish(self) -> str:
        s = self.execution.session
        load = self._opened()
        self._load = None
        n = s.guarded(lambda: s.finish_copy(load), implicit_last=self.execution.last_of_implicit)
        self.execution._ran = True
        self.execution._tag = f"COPY {n}"
        return self.execution._tag

    def abort(self, reason: str) -> None:
        if self._load is not None:
            self._load.abort()
        self._load = None
        self.execution._ran = True
        self.execution.session.fail()


class Session:
    def __init__(self, engine: Engine, startup: StartupInfo) -> None:
        self.engine = engine
        self.user = startup.user
        self.database = startup.database
        self.settings = SessionSettings(startup.user, startup.options)
        self.txn: Transaction | None = None
        self.failed = False
        self.implicit = False  # the transaction is the implicit one of a multi-statement query
        self.notices: list[PgError] = []
        self.deallocations: list[str] = []
        self.cancelled = threading.Event()
        self.last_search: list[tuple] | None = None  # how the last vector top-k ran, per segment
        self.cursors: dict[str, C.Cursor] = {}  # DECLAREd, by name
        self._streams: set[duckdb.DuckDBPyConnection] = set()  # connections of DuckDB results being read
        self.find_portal: Any = None  # set by wire: name -> the Execution of a protocol portal, or None
        self._first_report = True
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone='UTC'")
        for macro in DUCKDB_MACROS + arrays.DUCKDB_MACROS:
            self.con.execute(macro)
        self.con.execute("CREATE TABLE __settings (name VARCHAR, value VARCHAR)")
        self.con.execute("CREATE MACRO sqlvec_setting(n) AS "
                         "(SELECT value FROM __settings WHERE lower(name) = lower(n))")
        # current_database(): the name the client connected with (statement.py rewrites the call)
        quoted = startup.database.replace("'", "''")
        self.con.execute(f"CREATE MACRO sqlvec_current_database() AS '{quoted}'")

    # -- wire/ Session interface --------------------------------------------------------------------

    @property
    def transaction_status(self) -> str:
        if self.failed:
            return "E"
        return "T" if self.txn is not None and not self.implicit else "I"

    def take_parameter_changes(self) -> dict[str, str]:
        if self._first_report:
            self._first_report = False
            self.settings.changed.clear()
            return self.settings.reportable()
        changed, self.settings.changed = self.settings.changed, {}
        return changed

    def take_notices(self) -> list[PgError]:
        notices, self.notices = self.notices, []
        return notices

    def take_deallocations(self) -> list[str]:
        names, self.deallocations = self.deallocations, []
        return names

    def begin_implicit(self) -> None:
        """Extended query outside a block: statements up to Sync form one implicit transaction."""
        if self.txn is None and not self.failed:
            self.txn = Transaction()
            self.implicit = True

    def sync(self) -> None:
        if self.implicit:
            self._end_implicit(commit=True)

    def cancel(self) -> None:
        self.cancelled.set()
        for con in [self.con, *list(self._streams)]:
            try:
                con.interrupt()
            except Exception:  # noqa: BLE001 - nothing running is fine
                pass

    def close(self) -> None:
        self.txn = None
        for c in self.cursors.values():
            c.close()
        self.cursors.clear()
        try:
            self.con.close()
        except Exception:  # noqa: BLE001
            pass

    def prepare(self, sql: str, param_oids: Sequence[int]) -> PreparedStatement:
        def work() -> PreparedStatement:
            statements = self.engine.parse(sql)
            if len(statements) > 1:
                raise PgError("42601", "cannot insert multiple commands into a prepared statement")
            if not statements:
                return PreparedStatement(None, param_oids, StatementDesc([], None))
            st = statements[0]
            self._check_failed(st)
            plan = self.plan_for(st, param_oids)
            oids = list(plan.param_oids)
            for i, o in enumerate(param_oids):
                if o:
                    if i < len(oids):
                        oids[i] = o
                    else:
                        oids.extend([25] * (i - len(oids)) + [o])
            return PreparedStatement(st, param_oids, StatementDesc(oids, self._describe(plan, oids)))

        return self.guarded(work)

    def bind(self, statement: PreparedStatement, params: Sequence[Any], *, then_sync: bool = False) -> Execution:
        expected = len(statement.desc.param_oids)
        if len(params) != expected:
            raise PgError("08P01", f"bind message supplies {len(params)} parameters, "
                                   f"but prepared statement requires {expected}")
        # Bind, Execute, Sync outside a block: the statement is its own transaction, run as a simple
        # query's is (a write committed as it runs, so a concurrent commit to its rows can be retried).
        return Execution(self, statement.statement, statement.client_oids, params,
                         extended=not (then_sync and self.txn is None and not self.failed))

    def bind_many(self, statement: PreparedStatement, params: Sequence[Sequence[Any]]) -> list[str] | None:
        """A pipelined executemany of a one-row INSERT ... VALUES: one insert of all the rows. An upsert
        whose SET takes EXCLUDED values, parameters or literals (no WHERE) is one upsert of all the rows when
        their keys differ (each statement then changes its own row, so together they do the same).

        Declines (None, nothing changed) for anything else or on any error, so that wire runs the
        messages one at a time and the error is reported where PostgreSQL reports it."""
        from planner.plan import Insert

        st = statement.statement
        if st is None or self.failed or self.cancelled.is_set():
            return None
        try:
            plan = self.plan_for(st, statement.client_oids)
        except Exception:  # noqa: BLE001 - the one-at-a-time path reports it
            return None
        if not (isinstance(plan, Insert) and plan.rows is not None and len(plan.rows) == 1
                and plan.returning is None and not plan.on_conflict_do_nothing
                and (plan.on_conflict_update is None or (plan.on_conflict_update.direct is not None and all(
                    not isinstance(e, exp.Parameter) for _, e in plan.on_conflict_update.direct)))):
            return None
        started = self.txn is None
        self.begin_implicit()
        try:
            X.insert_param_sets(plan, self._context(()), params)
        except Exception:  # noqa: BLE001 - nothing was written; see the docstring
            if started and self.implicit:
                self.txn, self.implicit = None, False
            return None
        return ["INSERT 0 1"] * len(params)

    def simple_query(self, sql: str) -> Sequence[Execution]:
        statements = self.guarded(lambda: self.engine.parse(sql))
        many = len(statements) > 1
        if many and self.txn is None and not self.failed:
            self.txn = Transaction()
            self.implicit = True
        return [Execution(self, st, (), (), last_of_implicit=many and i == len(statements) - 1)
                for i, st in enumerate(statements)]

    # -- planning and running -------------------------------------------------------------------

    def guarded(self, work: Any, *, implicit_last: bool = False) -> Any:
        """Run ``work``; errors become PgError and put an open transaction in the failed state."""
        self.cancelled.clear()
        try:
            result = work()
        except Exception as e:  # noqa: BLE001 - everything reaches the client as an ErrorResponse
            err = to_pg_error(e)
            self.fail()
            raise err from None
        if implicit_last and self.implicit:
            self._end_implicit(commit=True)
        return result

    def fail(self) -> None:
        if self.implicit:
            self._end_cursors(self.txn, committed=False)
            self.txn = None
            self.implicit = False
            self.settings.end_transaction()
        elif self.txn is not None:
            self.failed = True

    def _end_implicit(self, *, commit: bool) -> None:
        txn, self.txn, self.implicit = self.txn, None, False
        self.settings.end_transaction()
        if commit and txn is not None and txn.ops:
            try:
                self.engine.commit(txn.storage_ops(), wait_indexes=txn.index_builds, cancelled=self.cancelled)
            except Exception as e:  # noqa: BLE001
                self._end_cursors(txn, committed=False)
                raise to_pg_error(e) from None
        self._end_cursors(txn, committed=commit)

    def _end_cursors(self, txn: Transaction | None, *, committed: bool) -> None:
        """At the end of ``txn``: its cursors WITHOUT HOLD close; WITH HOLD ones stay open if it committed
        (their snapshot is the one they read from the start) and close with it if it rolled back."""
        for name, c in list(self.cursors.items()):
            if c.txn is not None and c.txn is txn:
                if c.hold and committed:
                    c.txn = None
                else:
                    c.close()
                    del self.cursors[name]

    def _check_failed(self, st: parser.Statement) -> None:
        if self.failed and not (st.utility and st.utility.kind in ("commit", "rollback", "rollback_to")) and not (
            st.ast is not None and isinstance(st.ast, (exp.Commit, exp.Rollback))
        ):
            raise _aborted()

    def plan_for(self, st: parser.Statement, oids: Sequence[int]) -> Plan:
        snapshot_catalog = self.engine.store.catalog
        catalog = self.txn.catalog(snapshot_catalog) if self.txn else snapshot_catalog
        plan = self.engine.plan(st, catalog, oids, self.txn)
        if isinstance(plan, UtilityPlan) and plan.utility.kind == "explain":
            # EXPLAIN's parameters are its statement's: $1 has the type the statement gives it
            inner = self._explained(plan.utility.args)
            plan = dataclasses.replace(plan, param_oids=list(self.plan_for(inner, oids).param_oids))
        elif isinstance(plan, UtilityPlan) and plan.utility.kind == "declare":
            inner = self._declared(plan.utility.args)[1]  # its parameters are its query's
            plan = dataclasses.replace(plan, param_oids=list(self.plan_for(inner, oids).param_oids))
        return plan

    def _declared(self, args: dict) -> tuple[cursor_sql.Declare, parser.Statement]:
        d = cursor_sql.declare(args)
        statements = self.engine.parse(d.query)
        if len(statements) != 1 or statements[0].ast is None or not isinstance(
                statements[0].ast, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values)):
            first = d.query.split(None, 1)[0] if d.query.strip() else ""
            raise PgError("42601", f'syntax error at or near "{first}"')
        return d, statements[0]

    def _explained(self, args: dict) -> parser.Statement:
        statements = self.engine.parse(args["statement"])
        if len(statements) != 1:
            raise PgError("42601", "EXPLAIN takes one statement")
        return statements[0]

    def _context(self, params: Sequence[Any]) -> S.StatementContext:
        self._sync_settings_table()
        ctx = S.StatementContext(self.engine, self.engine.store.snapshot(), self.txn, self.con, params,
                                 self.settings, self.cancelled, self.notices,
                                 in_block=self.txn is not None and not self.implicit)
        ctx.session = self
        return ctx

    def _sync_settings_table(self) -> None:
        rows = [(k, v) for k, v in self.settings.values.items()] + list(self.settings.local.items())
        key = tuple(rows)
        if getattr(self, "_settings_key", None) == key:
            return
        self._settings_key = key
        self.con.execute("DELETE FROM __settings")
        self.con.executemany("INSERT INTO __settings VALUES (?, ?)", rows)

    def _describe(self, plan: Plan, oids: list[int]) -> list[ColumnDesc] | None:
        """RowDescription of a prepared statement before it runs: execute with NULL parameters, no rows."""
        if isinstance(plan, UtilityPlan):
            if not plan.returns_rows:
                return None
            if plan.utility.kind == "explain":
                return [ColumnDesc("QUERY PLAN", 25)]
            if plan.utility.kind == "fetch":  # a cursor's columns, if it is open now (else NoData, as PostgreSQL)
                name, _ = cursor_sql.fetch(plan.utility.args)
                c = self.cursors.get(name)
                return c.columns if c is not None else None
            result = self._run_utility(plan)  # SHOW: no side effects, and its shape depends on the name
            return describe(result.rows.schema, result.names, result.column_types)
        if not plan.returns_rows:
            return None
        from planner.plan import CountStar, Query, VectorRange, VectorTopK

        ctx = self._context([None] * len(oids))
        if isinstance(plan, (VectorTopK, VectorRange)):
            schema = ctx.schema(plan.table)
            empty = schema.arrow_schema().empty_table()
            empty = empty.append_column(S.DUCK_ROWID, pa.array([], pa.int64())).append_column(
                S.DISTANCE, pa.array([], pa.float64()))
            proj = plan.projection
            rows = ctx.run_query(proj, {"__topk" if isinstance(plan, VectorTopK) else "__range": empty})
            return describe(rows.schema, proj.names, proj.column_types)
        if isinstance(plan, CountStar):
            return [ColumnDesc(plan.name, 20, -1, 8)]
        if isinstance(plan, Query):
            limited = plan.ast.copy()
            if isinstance(limited, exp.Select):
                limited = limited.limit(0)
            ctx.register_tables(plan)
            rows = ctx.run_sql(limited)
            return describe(rows.schema, plan.names, plan.column_types)
        returning = getattr(plan, "returning", None)
        if returning is not None:
            schema = ctx.schema(plan.table)  # type: ignore[attr-defined]
            empty = schema.arrow_schema().empty_table().append_column(S.DUCK_ROWID, pa.array([], pa.int64()))
            rows = ctx.run_query(returning, {schema.name: empty})
            return describe(rows.schema, returning.names, returning.column_types)
        return None

    def run_statement(self, st: parser.Statement, oids: Sequence[int], params: Sequence[Any], *,
                      stream: bool = False) -> S.Result:
        """``stream``: a query DuckDB runs may come back as its first rows, with ``more`` the rest to
        read (a source on a DuckDB connection of its own), so a large result is never whole in memory."""
        self._check_failed(st)
        plan = self.plan_for(st, oids)
        if isinstance(plan, UtilityPlan):
            if plan.utility.kind == "explain":
                return self._u_explain(plan.utility.args, oids, params)
            if plan.utility.kind == "declare":
                return self._u_declare(plan.utility.args, oids, params)
            return self._run_utility(plan)
        if isinstance(plan, CopyFrom):
            raise PgError("08P01", "COPY FROM STDIN needs the COPY sub-protocol")
        if stream and isinstance(plan, Query):
            return self._streamed(plan, params)
        retryable = modify.retryable_errors(plan) if self.txn is None else ()
        if retryable:  # a write outside a transaction block: run again if a concurrent commit came first
            return modify.run_retrying(lambda: X.execute(plan, self._context(params)), retryable)
        return X.execute(plan, self._context(params))

    def _streamed(self, plan: Any, params: Sequence[Any]) -> S.Result:
        source = C.DuckSource(plan, self._context(params), self.con.cursor(), self._streams)
        first = source.read(C.READ_ROWS)
        rows = first if first is not None else source.schema.empty_table()
        if source.exhausted:
            return S.Result(rows, "", plan.names, plan.column_types)
        return S.Result(rows, "", plan.names, plan.column_types, more=source)

    def open_copy(self, plan: CopyFrom) -> X.CopyLoad:
        if self.failed:
            raise _aborted()
        return X.CopyLoad(plan, self._context(()))

    def finish_copy(self, load: X.CopyLoad) -> int:
        if self.failed:
            raise _aborted()
        return load.finish(self._context(()))

    # -- utility statements -------------------------------------------------------------------------

    def _run_utility(self, plan: UtilityPlan) -> S.Result:
        u = plan.utility
        handler = getattr(self, f"_u_{u.kind}")
        return handler(u.args)

    def _notice(self, sqlstate: str, message: str, severity: str = "WARNING") -> None:
        self.notices.append(PgError(sqlstate, message, severity=severity))

    def _u_begin(self, args: dict) -> S.Result:
        if self.txn is not None and not self.implicit:
            self._notice("25001", "there is already a transaction in progress")
        elif self.txn is not None and self.implicit:
            self.implicit = False  # BEGIN inside a multi-statement query makes the block explicit
        else:
            self.txn = Transaction()
        return S.Result(None, "BEGIN")

    def _u_commit(self, args: dict) -> S.Result:
        if self.txn is None:
            self._notice("25P01", "there is no transaction in progress")
            return S.Result(None, "COMMIT")
        txn, failed = self.txn, self.failed
        self.txn, self.failed, self.implicit = None, False, False
        self.settings.end_transaction()
        if failed:
            self._end_cursors(txn, committed=False)
            return S.Result(None, "ROLLBACK")
        if txn.ops:
            try:
                self.engine.commit(txn.storage_ops(), wait_indexes=txn.index_builds, cancelled=self.cancelled)
            except Exception:
                self._end_cursors(txn, committed=False)
                raise
        self._end_cursors(txn, committed=True)
        return S.Result(None, "COMMIT")

    def _u_rollback(self, args: dict) -> S.Result:
        if self.txn is None:
            self._notice("25P01", "there is no transaction in progress")
        self._end_cursors(self.txn, committed=False)
        self.txn, self.failed, self.implicit = None, False, False
        self.settings.end_transaction()
        return S.Result(None, "ROLLBACK")

    def _savepoint(self, args: dict, statement: str) -> tuple[Transaction, int | None, str]:
        """The open transaction block, the position of the newest savepoint called ``args["name"]``."""
        if self.txn is None or self.implicit:
            raise PgError("25P01", f"{statement} can only be used in transaction blocks")
        name = parser.unquote_identifier(args["name"])
        found = [i for i, (n, _) in enumerate(self.txn.savepoints) if n == name]
        return self.txn, (found[-1] if found else None), name

    # -- cursors ----------------------------------------------------------------------------------

    def _u_declare(self, args: dict, oids: Sequence[int], params: Sequence[Any]) -> S.Result:
        d, st = self._declared(args)
        if d.name in self.cursors:
            raise PgError("42P03", f'cursor "{d.name}" already exists')
        if not d.hold and self.txn is None:
            raise PgError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        plan = self.plan_for(st, oids)
        ctx = self._context(params)
        names, types = getattr(plan, "names", None), getattr(plan, "column_types", None)
        iterator = _unlimited_vector_order(plan, ctx.catalog)
        if iterator is not None:
            source: Any = C.IteratorSource(V.VectorIterator(iterator, ctx))
            names, types = iterator.projection.names, iterator.projection.column_types
        elif isinstance(plan, Query):
            source = C.DuckSource(plan, ctx, self.con.cursor(), self._streams)
        else:
            result = X.execute(plan, ctx)
            if result.rows is None:
                raise PgError("42601", "DECLARE CURSOR must be a query that returns rows")
            source = C.TableSource(result.rows)
            names, types = result.names, result.column_types
        columns = describe(source.schema, names, types)
        self.cursors[d.name] = C.Cursor(d.name, source, columns, names, types, scroll=bool(d.scroll), hold=d.hold,
                                        binary=d.binary, txn=self.txn)
        return S.Result(None, "DECLARE CURSOR")

    def _u_fetch(self, args: dict) -> S.Result:
        name, motion = cursor_sql.fetch(args)
        c = self.cursors.get(name)
        if c is None:
            c = self._portal_cursor(name)
        if c is None:
            raise PgError("34000", f'cursor "{name}" does not exist')
        command = args["command"].upper()
        rows, n = c.move(motion, fetch=command == "FETCH")
        return S.Result(rows, f"{command} {n}", c.names, c.column_types, binary=c.binary)

    def _u_close(self, args: dict) -> S.Result:
        name = cursor_sql.close(args)
        if name is None:
            for c in self.cursors.values():
                c.close()
            self.cursors.clear()
            return S.Result(None, "CLOSE CURSOR ALL")
        c = self.cursors.pop(name, None)
        if c is None:
            raise PgError("34000", f'cursor "{name}" does not exist')
        c.close()
        return S.Result(None, "CLOSE CURSOR")

    def _portal_cursor(self, name: str) -> C.Cursor | None:
        """A protocol portal (Bind with a name, as asyncpg's cursors make) moved by SQL FETCH / MOVE: read
        forward from where its Executes left it (its position is not kept, so ABSOLUTE is refused too)."""
        execution = self.find_portal(name) if self.find_portal is not None else None
        if execution is None or execution.columns is None:
            return None
        source = C.ExecutionSource(execution)
        return C.Cursor(name, source, execution.columns, execution.names, execution.column_types, scroll=False,
                        hold=False, binary=False, txn=self.txn)

    def cursor_columns(self, name: str) -> tuple[list[ColumnDesc], bool]:
        """Describe of the portal a DECLAREd cursor is: (its columns, whether it is BINARY)."""
        c = self.cursors.get(name)
        if c is None:
            raise PgError("34000", f'portal "{name}" does not exist')
        return c.columns, c.binary

    def _u_savepoint(self, args: dict) -> S.Result:
        txn, _, name = self._savepoint(args, "SAVEPOINT")
        txn.savepoints.append((name, txn.save_state()))
        return S.Result(None, "SAVEPOINT")

    def _u_release(self, args: dict) -> S.Result:
        txn, at, name = self._savepoint(args, "RELEASE SAVEPOINT")
        if at is None:
            raise PgError("3B001", f'savepoint "{name}" does not exist')
        del txn.savepoints[at:]  # it and every savepoint set after it
        return S.Result(None, "RELEASE")

    def _u_rollback_to(self, args: dict) -> S.Result:
        txn, at, name = self._savepoint(args, "ROLLBACK TO SAVEPOINT")
        if at is None:
            raise PgError("3B001", f'savepoint "{name}" does not exist')
        del txn.savepoints[at + 1:]  # the savepoint itself stays, as in PostgreSQL
        txn.restore_state(txn.savepoints[at][1])
        self.failed = False
        return S.Result(None, "ROLLBACK")

    def _u_set(self, args: dict) -> S.Result:
        value = ", ".join(parser.unquote_value(v.strip()) for v in _split_values(args["value"]))
        local = args.get("scope", "").upper() == "LOCAL"
        if local and self.txn is None:
            self._notice("25P01", "SET LOCAL can only be used in transaction blocks")
            return S.Result(None, "SET")
        if value.upper() == "DEFAULT":
            self.settings.reset(args["name"])
        else:
            self.settings.set(args["name"], value, local=local)
        return S.Result(None, "SET")

    def _u_set_time_zone(self, args: dict) -> S.Result:
        local = args.get("scope", "").upper() == "LOCAL"
        self.settings.set("TimeZone", parser.unquote_value(args["value"]), local=local)
        return S.Result(None, "SET")

    def _u_set_names(self, args: dict) -> S.Result:
        self.settings.set("client_encoding", parser.unquote_value(args["value"]))
        return S.Result(None, "SET")

    def _u_set_transaction(self, args: dict) -> S.Result:
        modes = args.get("modes", "").lower()
        if "serializable" in modes or "repeatable read" in modes:
            self._notice("0A000", "sqlvec runs every transaction at READ COMMITTED", "NOTICE")
        return S.Result(None, "SET")

    def _u_reset(self, args: dict) -> S.Result:
        name = args["name"]
        self.settings.reset("TimeZone" if name.lower().replace(" ", "") == "timezone" else name)
        return S.Result(None, "RESET")

    def _u_show(self, args: dict) -> S.Result:
        name = args["name"]
        if name.lower() == "sqlvec.plans_made":  # diagnostic: how often the planner has run in this server
            return S.Result(pa.table({"sqlvec.plans_made": [str(self.engine.plans_made)]}), "SHOW")
        if name.lower() == "sqlvec.last_search":  # how this session's last vector search ran
            return S.Result(pa.table({"sqlvec.last_search": [V.describe_search(self.last_search)]}), "SHOW")
        if name.lower() == "sqlvec.indexes":
            return S.Result(index_status_table(self.engine.store), "SHOW")
        if name.upper() == "ALL":
            rows = self.settings.all()
            t = pa.table({"name": [r[0] for r in rows], "setting": [r[1] for r in rows],
                          "description": [r[2] for r in rows]})
            return S.Result(t, "SHOW")
        if name.lower().replace(" ", "") == "timezone":
            name = "TimeZone"
        if " " in name:  # TRANSACTION ISOLATION LEVEL
            name = "transaction_isolation"
        label, value = self.settings.show(name)
        return S.Result(pa.table({label.lower(): [value]}), "SHOW")

    def _u_deallocate(self, args: dict) -> S.Result:
        name = args["name"]
        if name.upper() == "ALL":
            self.deallocations.append("*")
            return S.Result(None, "DEALLOCATE ALL")
        self.deallocations.append(parser.unquote_identifier(name))
        return S.Result(None, "DEALLOCATE")

    def _u_explain(self, args: dict, oids: Sequence[int] = (), params: Sequence[Any] = ()) -> S.Result:
        """EXPLAIN [ANALYZE] of a query: how sqlvec runs it (vector search per segment: which index or
        exact; anything else: the DuckDB SQL), with the parameters bound as they would be. ANALYZE runs
        it and adds rows, search and time."""
        import time

        st = self._explained(args)
        plan = self.plan_for(st, oids)
        if len(params) < len(plan.param_oids):
            raise PgError("42P02", f"there is no parameter ${len(params) + 1}")
        lines = X.explain(plan, self._context(params))
        options = (args.get("options") or "").lower()
        if args.get("analyze") or "analyze" in options:
            started = time.perf_counter()
            result = self.run_statement(st, oids, params)
            elapsed = (time.perf_counter() - started) * 1000
            rows = result.rows.num_rows if result.rows is not None else 0
            lines.append(f"Actual rows: {rows}")
            if isinstance(plan, (VectorTopK, VectorRange)):
                lines.append(f"Searched: {V.describe_search(self.last_search)}")
            lines.append(f"Execution Time: {elapsed:.3f} ms")
        return S.Result(pa.table({"QUERY PLAN": lines}), "EXPLAIN")

    def _u_checkpoint(self, args: dict) -> S.Result:
        """Seal every growing segment into a segment file (indexed in the background) and cut the WAL."""
        self.engine.store.checkpoint()
        return S.Result(None, "CHECKPOINT")

    def _u_maintenance(self, args: dict) -> S.Result:
        """VACUUM [FULL] [table, ...]: persist deletes, seal growing segments and compact (storage/
        compaction.py) every sealed segment with a deleted row, so their disk space goes back to the
        system; without tables, every table. It returns when the segments' vector indexes are built.
        ANALYZE: nothing to do (counts are exact), accepted so that scripts and tools written for
        PostgreSQL run unchanged."""
        command = args["command"].upper()
        tag = "ANALYZE" if command.startswith("ANALY") else "VACUUM"
        names = _maintenance_tables(args.get("rest") or "")
        catalog = self.engine.store.catalog
        for name in names:
            if name not in catalog:
                raise PgError("42P01", f'relation "{name}" does not exist')
        if tag == "VACUUM":
            if self.txn is not None and not self.implicit:
                raise PgError("25001", "VACUUM cannot run inside a transaction block")
            store = self.engine.store
            store.checkpoint()
            for name in names or [None]:
                store.compact(name, deleted_ratio=0.0)
            for name in names or list(store.catalog):  # and returns with every segment indexed
                if store.catalog.get(name) is not None and store.catalog[name].indexes:
                    store.wait_for_indexes(name, timeout=None)
        return S.Result(None, tag)

    def _u_discard(self, args: dict) -> S.Result:
        return S.Result(None, f"DISCARD {args['what'].upper()}")

    def _u_create_extension(self, args: dict) -> S.Result:
        name = parser.unquote_identifier(args["name"])
        if name not in _EXTENSIONS:
            raise PgError("0A000", f'extension "{name}" is not available',
                          hint="sqlvec provides the vector extension built in.")
        return S.Result(None, "CREATE EXTENSION")

    def _u_drop_extension(self, args: dict) -> S.Result:
        name = parser.unquote_identifier(args["name"])
        if name == "vector":
            raise PgError("2BP01", 'cannot drop extension vector because sqlvec is built on it')
        if not args.get("ie"):
            raise PgError("42704", f'extension "{name}" does not exist')
        return S.Result(None, "DROP EXTENSION")


def index_status_table(store: Store) -> pa.Table:
    """SHOW sqlvec.indexes: each vector index and how far its background builds are."""
    rows = store.index_status()
    cols: dict[str, tuple[pa.DataType, Any]] = {
        "table": (pa.string(), lambda r: r.table),
        "index": (pa.string(), lambda r: r.index),
        "method": (pa.string(), lambda r: r.method),
        "opclass": (pa.string(), lambda r: r.opclass),
        "params": (pa.string(), lambda r: ", ".join(f"{k}={v}" for k, v in sorted(r.params.items()))),
        "segments": (pa.int64(), lambda r: r.segments),
        "segments_indexed": (pa.int64(), lambda r: r.segments_indexed),
        "rows_indexed": (pa.int64(), lambda r: r.rows_indexed),
        "growing_rows": (pa.int64(), lambda r: r.growing_rows),
        "growing_rows_indexed": (pa.int64(), lambda r: r.growing_rows_indexed),
        "bytes": (pa.int64(), lambda r: r.bytes),
        "building": (pa.bool_(), lambda r: r.building),
        "error": (pa.string(), lambda r: r.error),
    }
    return pa.table({name: pa.array([get(r) for r in rows], type_) for name, (type_, get) in cols.items()})


def _aborted() -> PgError:
    return PgError("25P02", "current transaction is aborted, commands ignored until end of transaction block")


def _split_values(text: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


_MAINTENANCE_WORDS = {"full", "freeze", "verbose", "analyze", "analyse", "skip_locked"}


def _maintenance_tables(rest: str) -> list[str]:
    """The table names of VACUUM / ANALYZE's remaining text: options in parentheses and the FULL /
    FREEZE / VERBOSE / ANALYZE words skipped, a column list after a name ignored."""
    text = re.sub(r"^\s*\([^)]*\)", "", rest.strip().rstrip(";"))
    names = []
    for item in re.sub(r"\([^)]*\)", "", text).split(","):
        words = [w for w in item.split() if w.lower() not in _MAINTENANCE_WORDS]
        if words:
            name = words[-1]
            if name.lower().startswith(("public.", "pg_catalog.")):  # sqlvec's one schema, qualified
                name = name.split(".", 1)[1]
            names.append(name[1:-1].replace('""', '"') if name.startswith('"') else name.lower())
    return names


def _unlimited_vector_order(plan: Plan, catalog: Any) -> VectorTopK | None:
    """``SELECT ... ORDER BY vector <op> q`` without a LIMIT, as the VectorTopK a LIMIT would make of it
    (the cursor then iterates every row in that order); else None."""
    from planner.rules.recognise_vector_topk import recognise_vector_topk

    if not isinstance(plan, Query) or not isinstance(plan.ast, exp.Select):
        return None
    if plan.ast.args.get("limit") is not None or plan.ast.args.get("order") is None:
        return None
    limited = dataclasses.replace(plan, ast=plan.ast.copy().limit(1))
    limited.param_oids = plan.param_oids
    found = recognise_vector_topk(limited, catalog)
    return found if isinstance(found, VectorTopK) else None
