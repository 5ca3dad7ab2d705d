"""A fake engine behind wire/session.py, so the protocol can be tested without the real one.

Statements it understands (case-insensitive, one per ``;`` in a simple query):

* ``SELECT <n>``: n rows of :data:`ROW_COLUMNS` (every type wire encodes; NULLs where id % 5 == 0)
* ``PLAIN <n>``: the same without the vector column (for clients that introspect unknown types)
* any statement with ``$1..$n`` (``SELECT $1::int4, $2``): echoes its parameters back as one row,
  each column typed by the parameter's OID (the client's, else a ``::type`` cast, else text)
* ``VECTORS <n> <dim>``: n rows of (id int8, v vector(dim))
* ``NUMBERS <n>``: n rows of (n int4), 1..n: cheap to make, for measuring wire's own cost
* ``BEGIN`` / ``COMMIT`` / ``ROLLBACK``: transaction status I / T / E
* ``SET <name> = <value>``: a ParameterStatus change; ``NOTICE <text>``: a NoticeResponse
* ``INSERT ...``: no rows, ``INSERT 0 1`` (its parameters are recorded)
* ``FAIL``: PgError 42601 at execution; ``PARSEFAIL``: PgError at prepare; ``CRASH``: RuntimeError
* ``SLEEP <seconds>``: blocks until cancelled (57014) or the time is up
* ``COPY <table> FROM STDIN``: COPY into (id int8, name text, emb vector(3)), decoded with
  wire.copy_text; ``TABLE <table>`` returns what was copied; ``COPY broken FROM STDIN`` fails on
  the first chunk
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from wire import pgtypes as T
from wire.copy_text import decode_copy_text
from wire.session import ColumnDesc, PgError, StartupInfo, StatementDesc

ROW_COLUMNS = [
    ColumnDesc("id", T.INT8),
    ColumnDesc("name", T.TEXT),
    ColumnDesc("score", T.FLOAT8),
    ColumnDesc("flag", T.BOOL),
    ColumnDesc("emb", T.VECTOR, typmod=3),
    ColumnDesc("created", T.TIMESTAMPTZ),
    ColumnDesc("day", T.DATE),
    ColumnDesc("amount", T.NUMERIC),
    ColumnDesc("uid", T.UUID),
    ColumnDesc("payload", T.BYTEA),
    ColumnDesc("doc", T.JSONB),
    ColumnDesc("small", T.INT2),
    ColumnDesc("ratio", T.FLOAT4),
]
PLAIN_COLUMNS = [c for c in ROW_COLUMNS if c.name != "emb"]
COPY_NAMES = ["id", "name", "emb"]
COPY_OIDS = [T.INT8, T.TEXT, T.VECTOR]
COPY_TYPES = [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)]
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def expected_row(i: int) -> dict[str, Any]:
    """Row i (1-based) of ``SELECT n`` as Python values (None for NULL)."""
    if i % 5 == 0:
        return {"id": i, **{c.name: None for c in ROW_COLUMNS[1:]}}
    return {
        "id": i,
        "name": f"name {i}" + ("\t\"quoted\" \\ é\n" if i % 3 == 0 else ""),
        "score": i * 0.25 - 1.0 if i % 4 else 1e-5 * i,
        "flag": i % 2 == 0,
        "emb": [float(i), i / 2, -float(i)],
        "created": EPOCH + dt.timedelta(seconds=i * 3601, microseconds=i * 10),
        "day": dt.date(2000, 1, 1) + dt.timedelta(days=i * 40 - 400),
        "amount": Decimal(i * 101) / 100,
        "uid": uuid.UUID(int=i * 0x1000100010001),
        "payload": bytes([i % 256, 0, 255, 92]),
        "doc": f'{{"i": {i}, "tags": ["a", "b"]}}',
        "small": (i * 77) % 32768 - 16000,
        "ratio": float(np.float32(i / 3)),
    }


def rows_batch(start: int, stop: int) -> pa.RecordBatch:
    """Rows start..stop-1 (1-based ids) of ``SELECT n``, built column-wise like an engine would."""
    rows = [expected_row(i) for i in range(start, stop)]

    def col(name: str) -> list[Any]:
        return [r[name] for r in rows]

    emb_valid = [r["emb"] is not None for r in rows]
    emb_values = [v for r in rows for v in (r["emb"] or [0.0, 0.0, 0.0])]
    arrays = [
        pa.array(col("id"), pa.int64()),
        pa.array(col("name"), pa.large_string()),
        pa.array(col("score"), pa.float64()),
        pa.array(col("flag"), pa.bool_()),
        pa.FixedSizeListArray.from_arrays(pa.array(emb_values, pa.float32()), 3,
                                          mask=pa.array([not v for v in emb_valid])),
        pa.array(col("created"), pa.timestamp("us", tz="UTC")),
        pa.array(col("day"), pa.date32()),
        pa.array(col("amount"), pa.decimal128(12, 2)),
        pa.array([None if u is None else str(u) for u in col("uid")], pa.string()),
        pa.array(col("payload"), pa.binary()),
        pa.array(col("doc"), pa.string()),
        pa.array(col("small"), pa.int32()),  # int2 column held as int32: wire must narrow it
        pa.array(col("ratio"), pa.float32()),
    ]
    return pa.record_batch(arrays, names=[c.name for c in ROW_COLUMNS])


@functools.lru_cache(maxsize=64)
def _numbers(n: int) -> pa.Table:
    return pa.table({"n": pa.array(range(1, n + 1), pa.int32())})


_TYPE_NAMES = {
    "int2": T.INT2, "smallint": T.INT2, "int4": T.INT4, "int": T.INT4, "integer": T.INT4, "int8": T.INT8,
    "bigint": T.INT8, "text": T.TEXT, "varchar": T.VARCHAR, "float4": T.FLOAT4, "real": T.FLOAT4,
    "float8": T.FLOAT8, "bool": T.BOOL, "boolean": T.BOOL, "bytea": T.BYTEA, "date": T.DATE,
    "timestamp": T.TIMESTAMP, "timestamptz": T.TIMESTAMPTZ, "numeric": T.NUMERIC, "uuid": T.UUID,
    "json": T.JSON, "jsonb": T.JSONB, "vector": T.VECTOR, "oid": T.OID, "int4[]": 1007, "int8[]": 1016,
    "text[]": 1009, "float8[]": 1022, "bool[]": 1000,
}


def arrow_for(oid: int, values: list[Any]) -> pa.Array:
    """Python values decoded by wire -> the Arrow array an engine would hold them in."""
    if oid == T.NUMERIC:
        def text(d: Decimal) -> str:
            if d.is_nan():
                return "NaN"
            if d.is_infinite():
                return "Infinity" if d > 0 else "-Infinity"
            return format(d, "f")

        return pa.array([None if v is None else text(v) for v in values], pa.string())
    if oid == T.UUID:
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if oid == T.VECTOR:
        return pa.array([None if v is None else v.tolist() for v in values], pa.list_(pa.float32()))
    types = {
        T.BOOL: pa.bool_(), T.BYTEA: pa.binary(), T.INT8: pa.int64(), T.INT2: pa.int16(), T.INT4: pa.int32(),
        T.FLOAT4: pa.float32(), T.FLOAT8: pa.float64(), T.DATE: pa.date32(), T.TIMESTAMP: pa.timestamp("us"),
        T.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"), T.OID: pa.int64(), 1007: pa.list_(pa.int32()),
        1016: pa.list_(pa.int64()), 1009: pa.list_(pa.string()), 1022: pa.list_(pa.float64()),
        1000: pa.list_(pa.bool_()), 1005: pa.list_(pa.int16()), 1021: pa.list_(pa.float32()),
    }
    return pa.array(values, types.get(oid, pa.string()))


def on_worker(factory: FakeFactory) -> None:
    """wire/ must call the engine from its worker threads only, never on the event loop."""
    if factory.trace is not None:  # which engine method was called, in order
        factory.trace.append(sys._getframe(1).f_code.co_name)
    name = threading.current_thread().name
    if not name.startswith(("sqlvec-session", "sqlvec-cancel")):
        factory.off_worker_calls.append(name)
        raise AssertionError(f"engine called on thread {name!r}")


class FakeCopySink:
    def __init__(self, session: FakeSession, table: str) -> None:
        self.session = session
        self.table = table
        self.chunks: list[bytes] = []
        self.aborted: str | None = None

    def feed(self, data: bytes) -> None:
        on_worker(self.session.factory)
        if self.table == "broken":
            raise PgError("22P04", "broken table refuses data")
        self.chunks.append(data)

    def finish(self) -> str:
        on_worker(self.session.factory)
        data = b"".join(self.chunks)
        table = decode_copy_text(data, COPY_NAMES, COPY_OIDS, COPY_TYPES)
        with self.session.factory.lock:
            self.session.factory.copied.setdefault(self.table, []).append(table)
            self.session.factory.copy_feeds.append(len(self.chunks))
        return f"COPY {table.num_rows}"

    def abort(self, reason: str) -> None:
        on_worker(self.session.factory)
        self.aborted = reason
        self.session.factory.aborted_copies.append(reason)


class FakeExecution:
    def __init__(self, session: FakeSession, kind: str, columns: list[ColumnDesc] | None, *,
                 table: pa.Table | None = None, tag: str = "", action: Any = None,
                 copy_in: FakeCopySink | None = None, rows_source: tuple[int, int] | None = None,
                 plain: bool = False) -> None:
        self.session = session
        self.kind = kind
        self._columns = columns
        self.copy_in = copy_in
        self.copy_in_columns = 3 if copy_in is not None else 0
        self._table = table
        self._rows_source = rows_source  # (next id, last id + 1) for SELECT n, produced lazily
        self._plain = plain
        self._tag = tag
        self._action = action
        self._started = False
        self._done = False
        self._fetched = 0
        self.closed = False
        self.fetch_sizes: list[int] = []

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.session
        if s.status == "E" and self.kind not in ("commit", "rollback"):
            raise PgError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
        if self._action is not None:
            try:
                self._action()
            except PgError:
                if s.status == "T":
                    s.status = "E"
                raise

    @property
    def columns(self) -> list[ColumnDesc] | None:
        # Like the real engine, knowing the columns may mean running the statement.
        on_worker(self.session.factory)
        return self._columns

    def fetch(self, max_rows: int) -> pa.RecordBatch | None:
        on_worker(self.session.factory)
        self.fetch_sizes.append(max_rows)
        self.session.factory.fetch_sizes.append(max_rows)
        self._start()
        if self._rows_source is not None:
            start, stop = self._rows_source
            if start >= stop:
                self._done = True
                return None
            end = stop if max_rows == 0 else min(stop, start + max_rows)
            self._rows_source = (end, stop)
            self._fetched += end - start
            self._done = end >= stop
            batch = rows_batch(start, end)
            return batch.drop_columns(["emb"]) if self._plain else batch
        if self._table is None:
            self._done = True
            return None
        remaining = self._table.num_rows - self._fetched
        n = remaining if max_rows == 0 else min(max_rows, remaining)
        batch = self._table.slice(self._fetched, n).combine_chunks().to_batches()
        self._fetched += n
        self._done = self._fetched >= self._table.num_rows
        if not batch:
            return pa.RecordBatch.from_pylist([], schema=self._table.schema)
        return batch[0]

    @property
    def done(self) -> bool:
        on_worker(self.session.factory)
        return self._done

    @property
    def command_tag(self) -> str:
        on_worker(self.session.factory)
        return self._tag or f"SELECT {self._fetched}"

    def close(self) -> None:
        on_worker(self.session.factory)
        self.closed = True
        self.session.closed_executions += 1


class FakeStatement:
    def __init__(self, factory: FakeFactory, sql: str, desc: StatementDesc) -> None:
        self.factory = factory
        self.sql = sql
        self._desc = desc

    @property
    def desc(self) -> StatementDesc:
        on_worker(self.factory)
        return self._desc


class FakeSession:
    def __init__(self, factory: FakeFactory, startup: StartupInfo) -> None:
        self.factory = factory
        self.startup = startup
        self.status = "I"
        self.notices: list[PgError] = []
        self.changes: dict[str, str] = {
            "server_version": "16.0 (sqlvec fake)", "client_encoding": "UTF8", "application_name":
            startup.options.get("application_name", ""), "DateStyle": "ISO, MDY", "TimeZone": "UTC",
            "integer_datetimes": "on", "standard_conforming_strings": "on", "server_encoding": "UTF8",
            "is_superuser": "on", "session_authorization": startup.user,
        }
        self.cancel_event = threading.Event()
        self.closed = False
        self.closed_executions = 0
        self.params_seen: list[list[Any]] = []
        self.statements_seen: list[str] = []
        self.in_call = threading.Lock()

    # --- helpers

    def _execution(self, sql: str, params: Sequence[Any] | None, param_oids: Sequence[int] = ()) -> FakeExecution:
        text = sql.strip().rstrip(";").strip()
        low = text.lower()
        self.statements_seen.append(text)
        if low.startswith("insert"):
            if params is not None:
                self.params_seen.append(list(params))
            return FakeExecution(self, "insert", None, tag="INSERT 0 1", action=lambda: None)
        if params is not None and param_oids:
            self.params_seen.append(list(params))
            columns = [ColumnDesc(f"p{i + 1}", oid) for i, oid in enumerate(param_oids)]
            table = pa.table([arrow_for(oid, [v]) for oid, v in zip(param_oids, params)],
                             names=[c.name for c in columns])
            return FakeExecution(self, "echo", columns, table=table)
        if m := re.fullmatch(r"select\s+(\d+)", low):
            n = int(m.group(1))
            return FakeExecution(self, "select", ROW_COLUMNS, rows_source=(1, n + 1), tag="")
        if m := re.fullmatch(r"plain\s+(\d+)", low):  # SELECT n without the vector column
            n = int(m.group(1))
            return FakeExecution(self, "select", PLAIN_COLUMNS, rows_source=(1, n + 1), tag="", plain=True)
        if m := re.fullmatch(r"numbers\s+(\d+)", low):  # cheap rows, to measure wire's own cost
            n = int(m.group(1))
            return FakeExecution(self, "select", [ColumnDesc("n", T.INT4)], table=_numbers(n))
        if m := re.fullmatch(r"vectors\s+(\d+)\s+(\d+)", low):
            n, dim = int(m.group(1)), int(m.group(2))
            values = np.arange(n * dim, dtype=np.float32) / 7
            table = pa.table({"id": pa.array(np.arange(n), pa.int64()),
                              "v": pa.FixedSizeListArray.from_arrays(pa.array(values), dim)})
            return FakeExecution(self, "select", [ColumnDesc("id", T.INT8), ColumnDesc("v", T.VECTOR, typmod=dim)],
                                 table=table)
        if low in ("begin", "start transaction"):
            return FakeExecution(self, "begin", None, tag="BEGIN", action=lambda: setattr(self, "status", "T"))
        if low in ("commit", "end"):
            tag = "ROLLBACK" if self.status == "E" else "COMMIT"
            return FakeExecution(self, "commit", None, tag=tag, action=lambda: setattr(self, "status", "I"))
        if low == "rollback":
            return FakeExecution(self, "rollback", None, tag="ROLLBACK", action=lambda: setattr(self, "status", "I"))
        if m := re.fullmatch(r"set\s+(\w+)\s*(?:=|to)\s*'?([^']*)'?", text, re.IGNORECASE):
            name, value = m.group(1), m.group(2)
            return FakeExecution(self, "set", None, tag="SET", action=lambda: self.changes.__setitem__(name, value))
        if m := re.fullmatch(r"notice\s+(.*)", text, re.IGNORECASE | re.DOTALL):
            message = m.group(1)
            return FakeExecution(self, "do", None, tag="DO", action=lambda: self.notices.append(
                PgError("00000", message, severity="NOTICE")))
        if low == "fail":
            def fail() -> None:
                raise PgError("42601", 'syntax error at or near "FAIL"', position=1, hint="Try something else.")

            return FakeExecution(self, "fail", None, action=fail)
        if low == "crash":
            def crash() -> None:
                raise RuntimeError("boom")

            return FakeExecution(self, "crash", None, action=crash)
        if m := re.fullmatch(r"sleep\s+([\d.]+)", low):
            seconds = float(m.group(1))

            def sleep() -> None:
                # A cancel that came a little early still counts, so tests don't race the timer.
                self.factory.sleeping.set()
                cancelled = self.cancel_event.wait(seconds)
                self.cancel_event.clear()
                if self.factory.trace is not None:
                    self.factory.trace.append("slept")
                if cancelled:
                    raise PgError("57014", "canceling statement due to user request")

            return FakeExecution(self, "sleep", None, tag="SLEEP", action=sleep)
        if m := re.fullmatch(r"copy\s+(\w+)\s+from\s+stdin", low):
            return FakeExecution(self, "copy", None, copy_in=FakeCopySink(self, m.group(1)))
        if m := re.fullmatch(r"table\s+(\w+)", low):
            tables = self.factory.copied.get(m.group(1), [])
            table = pa.concat_tables(tables) if tables else pa.table(
                [pa.array([], t) for t in COPY_TYPES], names=COPY_NAMES)
            return FakeExecution(self, "select", [ColumnDesc(n, o) for n, o in zip(COPY_NAMES, COPY_OIDS)],
                                 table=table)
        raise PgError("42601", f'syntax error at or near "{text.split()[0] if text.split() else text}"', position=1)

    def _sequential(self) -> None:
        # wire promises never to call one session from two threads at once (cancel excepted).
        on_worker(self.factory)
        if not self.in_call.acquire(blocking=False):
            self.factory.overlapping_calls += 1
        else:
            self.in_call.release()

    # --- the Session protocol

    def prepare(self, sql: str, param_oids: Sequence[int]) -> FakeStatement:
        self._sequential()
        if sql.strip().lower() == "parsefail":
            raise PgError("42601", "syntax error at end of input")
        refs = [int(n) for n in re.findall(r"\$(\d+)", sql)]
        count = max(refs, default=0)
        oids = []
        for i in range(1, count + 1):
            given = param_oids[i - 1] if i <= len(param_oids) else 0
            cast = re.search(rf"\${i}::(\w+(?:\[\])?)", sql)
            oids.append(given or (_TYPE_NAMES.get(cast.group(1).lower(), T.TEXT) if cast else T.TEXT))
        if sql.strip().lower().startswith("insert"):
            columns: list[ColumnDesc] | None = None
        elif count:
            columns = [ColumnDesc(f"p{i + 1}", oid) for i, oid in enumerate(oids)]
        else:
            columns = self._execution(sql, None)._columns
            self.statements_seen.pop()
        return FakeStatement(self.factory, sql, StatementDesc(oids, columns))

    def bind(self, statement: FakeStatement, params: Sequence[Any], *, then_sync: bool = False) -> FakeExecution:
        self._sequential()
        return self._execution(statement.sql, params, statement.desc.param_oids)

    def simple_query(self, sql: str) -> list[FakeExecution]:
        self._sequential()
        parts = [p for p in sql.split(";") if p.strip()]
        return [self._execution(p, None) for p in parts]

    @property
    def transaction_status(self) -> str:
        on_worker(self.factory)
        return self.status

    def take_parameter_changes(self) -> dict[str, str]:
        on_worker(self.factory)
        changes, self.changes = self.changes, {}
        return changes

    def take_notices(self) -> list[PgError]:
        on_worker(self.factory)
        notices, self.notices = self.notices, []
        return notices

    def sync(self) -> None:
        on_worker(self.factory)
        self.syncs = getattr(self, "syncs", 0) + 1

    def take_deallocations(self) -> list[str]:
        on_worker(self.factory)
        return []

    def cancel(self) -> None:
        on_worker(self.factory)
        self.factory.cancels += 1
        self.cancel_event.set()

    def close(self) -> None:
        on_worker(self.factory)
        self.closed = True


class FakeFactory:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: list[FakeSession] = []
        self.copied: dict[str, list[pa.Table]] = {}
        self.copy_feeds: list[int] = []
        self.aborted_copies: list[str] = []
        self.cancels = 0
        self.overlapping_calls = 0
        self.off_worker_calls: list[str] = []
        self.open_delay = 0.0
        self.sleeping = threading.Event()
        self.fetch_sizes: list[int] = []
        self.trace: list[str] | None = None  # a list: every engine call's method name is appended

    def open_session(self, startup: StartupInfo) -> FakeSession:
        on_worker(self)
        time.sleep(self.open_delay)
        if startup.database == "nodb":
            raise PgError("3D000", 'database "nodb" does not exist', severity="FATAL")
        session = FakeSession(self, startup)
        with self.lock:
            self.sessions.append(session)
        return session
