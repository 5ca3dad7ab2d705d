"""The small interface that wire/ is given by the engine.

wire/ speaks the PostgreSQL v3 protocol and nothing else: it never sees SQL structure or plans.
It asks a :class:`SessionFactory` for a :class:`Session` after startup and authentication, then
hands it statement texts and decoded parameter values, and streams back what comes out.

Values crossing this boundary:

* Parameters (wire -> session) are decoded by the parameter's type OID (text or binary format):
  int, float, bool, str, bytes, datetime.date, datetime.datetime (naive for timestamp, aware
  for timestamptz), uuid.UUID, decimal.Decimal, ``numpy.ndarray[float32]`` for vector, str for
  json/jsonb and for unknown / text types; ``None`` for NULL.
* Rows (session -> wire) are Arrow record batches; each column is encoded by the OID in its
  :class:`ColumnDesc`, text or binary per the client's requested result format.

All session methods may block (they run engine work); wire calls them from a worker thread,
never on the event loop, and never concurrently for one session (``cancel`` excepted). That
includes reading ``PreparedStatement.desc`` and ``Execution.columns`` / ``copy_in`` /
``copy_in_columns``, so an engine may run a statement to learn its columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


class PgError(Exception):
    """An error (or notice) reported to the client as ErrorResponse / NoticeResponse.

    ``sqlstate`` is the five-character code (https://www.postgresql.org/docs/16/errcodes-appendix.html);
    ``position`` is the 1-based character offset into the statement text, when known; ``where``
    is the CONTEXT field (W).
    """

    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        routine: str | None = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.severity = severity
        self.detail = detail
        self.hint = hint
        self.position = position
        self.routine = routine
        self.where = where  # CONTEXT: where it happened ("COPY t, line 3, column id: ...")

    def __repr__(self) -> str:
        return f"PgError({self.sqlstate!r}, {self.message!r})"


@dataclass(frozen=True)
class ColumnDesc:
    """One field of a RowDescription."""

    name: str
    type_oid: int
    typmod: int = -1
    type_size: int = -1
    table_oid: int = 0
    column_number: int = 0


@dataclass
class StatementDesc:
    """What ParameterDescription and RowDescription say about a prepared statement.

    ``param_oids`` has one entry per ``$n`` (n = 1..len); the session infers types from context
    and falls back to text (25) where it cannot, never 0. ``columns`` is None for a statement
    that returns no rows (NoData).
    """

    param_oids: list[int]
    columns: list[ColumnDesc] | None


@dataclass(frozen=True)
class CopyOut:
    """How ``COPY ... TO STDOUT`` writes its rows (wire.copy_out): PostgreSQL's COPY options."""

    format: str = "text"  # text, csv, binary
    delimiter: str = "\t"
    null: str = "\\N"
    header: bool = False
    quote: str = '"'
    escape: str = '"'
    force_quote: tuple[str, ...] | str = ()  # column names, or "*" for all


class CopyInSink(Protocol):
    """Receives the data of ``COPY ... FROM STDIN``."""

    def feed(self, data: bytes | bytearray) -> None:
        """CopyData payload: one message's, or several already received, joined (not aligned to rows).
        A bytearray is the sink's to keep (and to cut in place): the server does not touch it again."""

    def finish(self) -> str:
        """CopyDone received: load everything, return the command tag (``COPY n``)."""

    def abort(self, reason: str) -> None:
        """CopyFail received (or the connection dropped): discard everything."""


class Execution(Protocol):
    """One statement being executed (a portal, or one statement of a simple query).

    Created lazily: ``columns`` and ``copy_in`` are known at once, work starts on first ``fetch``.
    """

    columns: list[ColumnDesc] | None  # None: no rows (NoData)
    copy_in: CopyInSink | None  # set for COPY FROM STDIN: wire sends CopyInResponse and feeds it
    copy_in_columns: int  # number of columns, for CopyInResponse
    copy_in_binary: bool  # COPY FROM STDIN (FORMAT binary): CopyInResponse says format 1
    copy_out: CopyOut | None  # set for COPY TO STDOUT: ``columns`` and ``fetch`` give the rows to copy

    def fetch(self, max_rows: int) -> pa.RecordBatch | None:
        """Up to ``max_rows`` more rows (0 = all remaining). None or an empty batch when exhausted.

        wire fetches in batches (``max_rows`` <= 10 000, fewer for wide rows, never more than a
        client's Execute asked for) until ``done``; statements without rows get one ``fetch(0)``.
        The batch's columns must match ``columns``, in order.
        """

    @property
    def done(self) -> bool:
        """True once every row has been fetched (or the statement returns no rows and has run)."""

    @property
    def command_tag(self) -> str:
        """The CommandComplete tag (``SELECT 3``, ``INSERT 0 1``, ``BEGIN``); valid once ``done``."""

    def close(self) -> None:
        """Release resources (Close of a portal, end of transaction, connection loss)."""


class PreparedStatement(Protocol):
    desc: StatementDesc


class Session(Protocol):
    """One client connection's state in the engine."""

    def prepare(self, sql: str, param_oids: Sequence[int]) -> PreparedStatement:
        """Parse: ``param_oids`` are the types the client gave (0 = infer). Raises PgError."""

    def bind(self, statement: PreparedStatement, params: Sequence[Any], *, then_sync: bool = False) -> Execution:
        """Bind: a portal over decoded parameter values. Raises PgError. ``then_sync``: the client sent
        this portal's Execute and then Sync with nothing between, so outside a transaction block the
        statement is a transaction of its own (the session may commit it as it runs)."""

    def bind_many(self, statement: PreparedStatement, params: Sequence[Sequence[Any]]) -> list[str] | None:
        """Optional. A pipeline's run of Bind/Execute of one row-less statement (psycopg's
        executemany) in one call: run it once per parameter set and return each command tag, or
        None to decline (nothing done; wire then binds and executes one by one, so errors are
        reported at the right message). Must leave no effect when it returns None."""

    def simple_query(self, sql: str) -> Sequence[Execution]:
        """Simple Query: one Execution per statement, run in order by wire (fetched in batches).

        An empty list means the empty query (EmptyQueryResponse). The session may run statement
        n only when wire fetches it, so an error in statement 2 leaves statement 1's effects.
        """

    @property
    def transaction_status(self) -> str:
        """'I' idle, 'T' in a transaction block, 'E' in a failed transaction block.

        Read for every ReadyForQuery; when it is 'I' there, wire closes every open portal (their
        transaction has ended), as PostgreSQL does.
        """

    def take_parameter_changes(self) -> dict[str, str]:
        """Reportable settings changed since the last call (ParameterStatus after SET).

        The first call, right after ``open_session``, returns every reportable setting
        (server_version, client_encoding, application_name, ...), sent before BackendKeyData.
        Settings that describe wire's own output (``wire.server.PROTOCOL_PARAMETERS``: UTF8,
        DateStyle ISO, TimeZone UTC, integer_datetimes...) are added when missing from that list.
        """

    def take_notices(self) -> list[PgError]:
        """Notices raised since the last call (severity NOTICE/WARNING), sent before the result."""

    def sync(self) -> None:
        """Sync received: end the implicit transaction of the extended-query messages before it.

        As in PostgreSQL, statements run by Execute outside a transaction block form one implicit
        transaction that commits at Sync (or rolls back if one of them failed). Raises PgError if
        the commit fails; wire then sends ErrorResponse before ReadyForQuery.
        """

    def take_deallocations(self) -> list[str]:
        """Names of prepared statements that SQL ``DEALLOCATE name`` dropped since the last call;
        ``["*"]`` for ``DEALLOCATE ALL``. wire forgets them (a later Parse may reuse the names)."""

    def cursor_columns(self, name: str) -> tuple[list[ColumnDesc], bool]:
        """Optional. Describe of a portal wire does not know: a cursor SQL DECLAREd (psycopg describes its named
        cursors so). Its columns, and whether it is BINARY; PgError 34000 if there is none."""

    def cancel(self) -> None:
        """CancelRequest: abort the running statement with 57014. Called from another thread."""

    def close(self) -> None:
        """The connection ended: roll back and release everything."""


@dataclass
class StartupInfo:
    user: str
    database: str
    options: dict[str, str] = field(default_factory=dict)  # every startup parameter as sent


class SessionFactory(Protocol):
    def open_session(self, startup: StartupInfo) -> Session:
        """After authentication succeeded. Raises PgError (e.g. 3D000 unknown database)."""
