"""The PostgreSQL v3 protocol server: one asyncio task per connection, engine work in threads.

Each connection is a :class:`Connection` with one explicit state (awaiting startup,
authenticating, ready, in COPY, ignoring till Sync) and a dispatch on (state, message type) to
one handler per concern: startup and authentication, simple query, the extended-query messages,
COPY FROM STDIN, cancel. Bytes from the socket go through :class:`wire.codec.FrontendDecoder`;
a framing error is answered with FATAL 08P01 and ends that connection only.

Every call into the engine's :class:`wire.session.Session` runs on a shared thread pool, one at
a time per connection, so the event loop never blocks; row batches are fetched and encoded to
DataRow bytes in the same worker call.

Each hop to the pool costs a thread handoff and GIL ping-pong, which dwarfs the protocol work of a
small query, so the usual shapes take one hop per query: when a Bind (or a Parse) is followed by
messages already received that form ``[Parse] Bind [Describe portal] Execute [Sync]``, and when a
simple Query arrives, one worker call runs every session call those messages make, in the order
the message-at-a-time path makes them, and the event loop then sends the answers. Wherever that
call stops early (an error, COPY, rows left for more batches), the messages not yet answered go
through the message-at-a-time handlers, so what the client sees is the same either way.

Protocol reference: https://www.postgresql.org/docs/16/protocol-flow.html
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import os
import queue
import secrets
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wire import codec, copy_out
from wire.auth import MECHANISM, ScramExchange, ScramVerifier
from wire.codec import (
    AuthenticationResponse,
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FrontendDecoder,
    FunctionCall,
    GSSENCRequest,
    MessageTextError,
    Parse,
    ProtocolError,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)
from wire.column_encoding import encode_data_rows
from wire.copy_receive import CopyReceiver
from wire.pgtypes import TEXT as TEXT_OID
from wire.pgtypes import decode_param, type_size
from wire.session import (
    ColumnDesc,
    CopyInSink,
    CopyOut,
    Execution,
    PgError,
    PreparedStatement,
    Session,
    SessionFactory,
    StartupInfo,
    StatementDesc,
)

logger = logging.getLogger("sqlvec.wire")

# Settings whose values describe what wire itself sends (UTF-8 text, ISO dates in UTC, integer
# timestamps). They are reported at startup when the session's own list lacks them.
PROTOCOL_PARAMETERS: dict[str, str] = {
    "server_version": "16.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
}

DEFAULT_BATCH_ROWS = 10_000
DEFAULT_BATCH_BYTES = 8 << 20  # fewer rows per fetch when rows are wide (text vectors)
_READ_SIZE = 256 << 10
_FLUSH_BYTES = 256 << 10
_COPY_FEED_BYTES = 16 << 20  # a text COPY decoding chunk (wire/copy_text.py), decoded where it lies
_STREAM_LIMIT = 1 << 20
_COPY_READ_SIZE = 1 << 20
_COPY_OUT_BATCH_ROWS = 65_536  # rows COPY TO STDOUT fetches and encodes at a time (one CopyData per row)

T = TypeVar("T")
R = TypeVar("R")


class ConnectionState(enum.Enum):
    AWAITING_STARTUP = "awaiting startup"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    COPY_IN = "in COPY"
    IGNORING_TILL_SYNC = "ignoring till Sync"
    CLOSED = "closed"


@dataclass
class _Deferred:
    """A decoding error met while looking ahead; raised when the message loop reaches it."""

    error: Exception


class _Closed(Exception):
    """The client went away (EOF or Terminate)."""


@dataclass
class _Statement:
    prepared: PreparedStatement
    desc: StatementDesc
    client_oids: tuple[int, ...]

    def param_oids(self) -> list[int]:
        """The parameter types: the client's from Parse where non-zero, else the session's.

        A client may declare more parameters than the statement uses; those count too.
        """
        inferred = list(self.desc.param_oids)
        given = self.client_oids
        count = max(len(inferred), len(given))
        return [given[i] if i < len(given) and given[i] else (inferred[i] if i < len(inferred) else TEXT_OID)
                for i in range(count)]


@dataclass
class _Shape:
    """What an Execution is, read in a worker thread (an engine may run the statement to know)."""

    columns: list[ColumnDesc] | None
    copy_in: CopyInSink | None
    copy_in_columns: int
    copy_in_binary: bool = False
    # A statement without rows is finished in the Bind's worker call, saving Execute a thread hop;
    # an error from running it is kept and reported at Execute, where PostgreSQL reports it.
    prefetched: _Fetched | None = None
    error: PgError | None = None


@dataclass
class _Portal:
    execution: Execution
    shape: _Shape
    formats: list[int]


@dataclass
class _Fetched:
    payload: bytes
    rows: int
    done: bool
    tag: str | None
    notices: list[PgError]
    parameters: dict[str, str]


@dataclass
class _Pipeline:
    """``[Parse] Bind [Describe portal] Execute [Sync]``, all received: one worker call runs them."""

    parse: Parse | None
    bind: Bind
    described: bool  # a Describe of the portal follows the Bind
    execute: Execute
    sync: bool  # a Sync follows the Execute


@dataclass
class _PipelineRun:
    """How far _run_pipeline got. Each stage ran only if the one before it ended normally; the
    event loop answers the stages that ran, in order, and leaves the rest to the handlers."""

    statement: _Statement | None = None  # Parse
    parse_error: Exception | None = None
    replaced: bool = False  # the Bind closed the portal of the same name (so it is gone)
    portal: _Portal | None = None  # Bind
    bind_error: Exception | None = None
    fetched: _Fetched | None = None  # Execute's first batch; None: Execute is left to its handler
    fetch_error: Exception | None = None
    complete: bool = False  # that batch answers the Execute (CommandComplete or PortalSuspended)
    synced: bool = False  # Sync ran
    sync_error: PgError | None = None  # the commit at Sync failed: ErrorResponse before ReadyForQuery
    tail_error: Exception | None = None  # anything else from Sync: it ends the connection, as before
    ready: _Ready | None = None


@dataclass
class _SimpleRun:
    """How far _simple_query_run got: answers to send, and where the message-at-a-time path goes on."""

    out: list[bytes] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    drop_error: Exception | None = None  # closing the unnamed portal failed (nothing else ran)
    finished: bool = False  # every statement answered, executions closed, transaction state read
    index: int = 0  # when not finished: the statement to go on with (COPY, or more batches of rows)
    shape: _Shape | None = None
    fetched: _Fetched | None = None  # its first batch, not sent yet
    ready: _Ready | None = None
    tail_error: Exception | None = None


# status, notices, parameter changes, whether the portals were closed, deallocated statements
_Ready = tuple[str, list[PgError], dict[str, str], bool, list[str]]
_READY_FOR_QUERY = {status: codec.encode_ready_for_query(status) for status in "ITE"}


def _internal_error(exc: BaseException) -> PgError:
    return PgError("XX000", str(exc) or type(exc).__name__)


def _result_formats(codes: Sequence[int], columns: list[ColumnDesc] | None) -> list[int]:
    n = len(columns) if columns is not None else 0
    for code in codes:
        if code not in (0, 1):
            raise PgError("22023", f"unsupported format code: {code}")
    if not codes:
        return [0] * n
    if len(codes) == 1:
        return [codes[0]] * n
    if columns is not None and len(codes) != n:
        raise PgError("08P01", f"bind message has {len(codes)} result formats but query has {n} columns")
    return list(codes)


def _param_formats(codes: Sequence[int], count: int) -> list[int]:
    if len(codes) > 1 and len(codes) != count:
        raise PgError("08P01", f"bind message has {len(codes)} parameter formats but {count} parameters")
    for code in codes:
        if code not in (0, 1):
            raise PgError("22023", f"unsupported format code: {code}")
    return list(codes) if len(codes) > 1 else [codes[0] if codes else 0] * count


def _row_description(columns: list[ColumnDesc], formats: Sequence[int]) -> bytes:
    sizes = [c.type_size if c.type_size != -1 else type_size(c.type_oid) for c in columns]
    return codec.encode_row_description(columns, formats, sizes)


def _portal_description(portal: _Portal) -> bytes:
    """The answer to Describe of a portal: RowDescription, or NoData (no rows, or COPY)."""
    columns = portal.shape.columns if portal.shape.copy_in is None else None
    return _row_description(columns, portal.formats) if columns is not None else codec.NO_DATA


def _bind_arguments(statement: _Statement, msg: Bind, portal_exists: bool) -> tuple[list[int], list[int]]:
    """Bind's checks before the session sees it: -> (parameter type OIDs, parameter formats)."""
    if portal_exists:
        raise PgError("42P03", f'portal "{msg.portal}" already exists')
    oids = statement.param_oids()
    formats = _param_formats(msg.param_formats, len(msg.params))
    if len(msg.params) != len(oids):
        raise PgError("08P01", f'bind message supplies {len(msg.params)} parameters, but prepared '
                               f'statement "{msg.statement}" requires {len(oids)}')
    return oids, formats


def _extended_step(
    handler: Callable[[Connection, Any], Awaitable[R]],
) -> Callable[[Connection, Any], Awaitable[R | None]]:
    """An extended-query message: on error send ErrorResponse and discard until Sync (-> None)."""

    @functools.wraps(handler)
    async def run(self: Connection, msg: Any) -> R | None:
        try:
            return await handler(self, msg)
        except PgError as err:
            self.send_error(err)
            self.state = ConnectionState.IGNORING_TILL_SYNC
        except (ProtocolError, _Closed, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            logger.warning("error in %s: %s", type(msg).__name__, exc, exc_info=True)
            self.send_error(_internal_error(exc))
            self.state = ConnectionState.IGNORING_TILL_SYNC
        return None

    return run


class Connection:
    """One client connection: the protocol state machine around one engine session."""

    def __init__(self, server: WireServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.decoder = FrontendDecoder(max_message_size=server.max_message_size)
        self.state = ConnectionState.AWAITING_STARTUP
        self.session: Session | None = None
        self.user = ""
        self.process_id = 0
        self.secret_key = 0
        self.statements: dict[str, _Statement] = {}
        self._lookahead: list[Any] = []  # messages decoded ahead by the pipelined-Bind batching
        self.portals: dict[str, _Portal] = {}
        self.peer = writer.get_extra_info("peername")
        self._out: list[bytes] = []
        self._out_size = 0
        # Only a transport with bytes still queued needs drain(); a FakeWriter (tests) has none.
        self._transport: asyncio.WriteTransport | None = getattr(writer, "transport", None)
        self._busy = False  # a call() is running in a worker, even if its caller was cancelled
        self._idle: asyncio.Future[None] | None = None  # set when _cleanup waits for that call to end
        self._inflight: asyncio.Future[Any] | None = None  # open_session
        self._opening: asyncio.Future[Any] | None = None  # open_session, if cut short by a timeout
        self._copy_sink: CopyInSink | None = None
        self._batch_rows = server.batch_rows

    def _portal_execution(self, name: str) -> Any:
        """The Execution of the protocol portal ``name`` (None if none): read from the worker thread."""
        portal = self.portals.get(name) if name else None
        return portal.execution if portal is not None else None

    @property
    def active_session(self) -> Session:
        """The session, once startup has opened it (every handler after startup)."""
        assert self.session is not None
        return self.session

    # ------------------------------------------------------------------ I/O

    def send(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._out_size += len(data)

    def send_error(self, err: PgError) -> None:
        self.send(codec.encode_error_response(err))

    async def flush(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.writer.write(data)
        transport = self._transport
        # write() sends at once what the socket takes; drain() matters only when bytes are left
        # queued (backpressure) or the transport is closing (it raises the connection's error).
        if transport is None or transport.get_write_buffer_size() or transport.is_closing():
            await self.writer.drain()

    async def receive(self) -> Any:
        """The next whole message; flushes pending output before waiting on the socket."""
        if self._lookahead:
            msg = self._lookahead.pop(0)
            if isinstance(msg, _Deferred):
                raise msg.error
            return msg
        while True:
            msg = self.decoder.next_message()
            if msg is not None:
                return msg
            if self._out:
                await self.flush()
            data = await self.reader.read(_READ_SIZE)
            if not data:
                raise _Closed()
            self.decoder.feed(data)

    def _take_received(self) -> None:
        """Hand the decoder what the transport has received and the stream reader still holds, without
        waiting, so that a pipeline's batch covers every message already here (psycopg writes an
        executemany message by message). Uses StreamReader's buffer, as read() does; where a Python
        version has no such buffer this does nothing."""
        buffer = getattr(self.reader, "_buffer", None)
        if not isinstance(buffer, bytearray) or not buffer:
            return
        data = bytes(buffer)
        buffer.clear()
        self.decoder.feed(data)
        resume = getattr(self.reader, "_maybe_resume_transport", None)
        if resume is not None:
            resume()

    def _buffered(self, count: int) -> list[Any]:
        """The next ``count`` messages as far as they are already received, without waiting.

        They are decoded into the lookahead queue, which receive() serves first, so nothing is
        lost or reordered. A decoding error ends the look (it is raised when receive() gets there).
        """
        ahead = self._lookahead
        while len(ahead) < count and not (ahead and isinstance(ahead[-1], _Deferred)):
            try:
                msg = self.decoder.next_message()
            except Exception as exc:  # noqa: BLE001 - re-raised when receive() reaches it
                msg = _Deferred(exc)
            if msg is None:
                break
            ahead.append(msg)
        return ahead[:count]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a session call on the worker pool; a cancelled caller leaves it running to the end.

        Leaner than ``run_in_executor`` + ``asyncio.shield`` (two futures chained across threads,
        then a third): the worker hands its outcome straight to one loop future. ``_busy`` stays
        set until the worker is done, whatever becomes of the caller, so that _cleanup waits for it
        and the session is never closed under a running call.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._busy = True
        try:
            self.server.run_soon(self._work, loop, waiter, fn, args)
        except BaseException:
            self._busy = False
            raise
        return await waiter

    def _work(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any], fn: Callable[..., Any],
              args: tuple[Any, ...]) -> None:
        """In a worker thread: run the call, hand the outcome to the event loop."""
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the caller
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with suppress(RuntimeError):  # the loop is gone (interpreter shutdown): nobody is waiting
            loop.call_soon_threadsafe(self._worked, waiter, *outcome)

    def _worked(self, waiter: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """On the event loop: the worker call has ended."""
        self._busy = False
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
        if waiter.done():  # the caller was cancelled; what it asked for is moot now
            return
        if error is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(error)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        logger.debug("connection opened from %s", self.peer)
        try:
            if await self._startup():
                await self._serve()
        except _Closed:
            pass
        except ProtocolError as exc:
            logger.info("protocol error from %s: %s", self.peer, exc.message)
            await self._fatal(exc.to_pg_error())
        except PgError as exc:
            logger.info("connection from %s refused: %s", self.peer, exc.message)
            await self._fatal(exc)
        except (ConnectionError, OSError) as exc:
            logger.debug("connection from %s lost: %s", self.peer, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("unexpected error on connection from %s", self.peer, exc_info=True)
            await self._fatal(_internal_error(exc))
        finally:
            await self._cleanup()
            logger.debug("connection from %s closed", self.peer)

    async def _fatal(self, err: PgError) -> None:
        with suppress(ConnectionError, OSError, RuntimeError):
            self.send(codec.encode_error_response(err, severity="FATAL"))
            await self.flush()

    async def _cleanup(self) -> None:
        self.state = ConnectionState.CLOSED
        self.server.unregister(self)
        if self._busy or (self._inflight is not None and not self._inflight.done()):
            # Cancelled in the middle of an engine call: stop it, and wait, so that close()
            # never runs beside it.
            if self.session is not None:
                self.server.cancel_session(self.session)
            with suppress(BaseException):
                if self._busy:
                    self._idle = asyncio.get_running_loop().create_future()
                    await self._idle
                if self._inflight is not None:
                    await asyncio.wait([self._inflight])
        for future in (self._inflight, self._opening):
            if future is not None and future.done() and not future.cancelled():
                future.exception()  # retrieved: it was reported already, or is moot now
        if self.session is None and self._opening is not None and self._opening.done() \
                and not self._opening.cancelled() and self._opening.exception() is None:
            self.session = self._opening.result()  # opened after the startup timed out: close it too
        if self.session is not None:
            portals = [p.execution for p in self.portals.values()]
            self.portals.clear()
            sink, self._copy_sink = self._copy_sink, None
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self.server.executor, _close_session, self.session, sink, portals)
            except Exception:
                logger.warning("error closing session", exc_info=True)
        self.writer.close()
        with suppress(Exception):
            await self.writer.wait_closed()

    # ------------------------------------------------------------------ startup and authentication

    async def _startup(self) -> bool:
        try:
            async with asyncio.timeout(self.server.startup_timeout):
                return await self._negotiate()
        except TimeoutError:
            logger.info("startup from %s timed out", self.peer)
            await self._fatal(PgError("08006", "canceling authentication due to timeout"))
            return False

    async def _negotiate(self) -> bool:
        while True:
            msg = await self.receive()
            if isinstance(msg, (SSLRequest, GSSENCRequest)):
                if self.decoder.buffered:
                    # What followed was sent before our answer: refuse it rather than read it.
                    raise ProtocolError("received unencrypted data after SSL request")
                self.writer.write(b"N")
                await self.writer.drain()
                continue
            if isinstance(msg, CancelRequest):
                await self.server.cancel(msg.process_id, msg.secret_key)
                return False
            break
        assert isinstance(msg, StartupMessage)
        self.decoder.expect_startup = False
        params = msg.parameters
        unrecognized = [name for name in params if name.startswith("_pq_.")]
        if msg.minor > 0 or unrecognized:
            self.send(codec.encode_negotiate_protocol_version(0, unrecognized))
        user = params.get("user", "")
        if not user:
            raise PgError("28000", "no PostgreSQL user name specified in startup packet", severity="FATAL")
        self.user = user
        if self.server.verifier is not None:
            self.state = ConnectionState.AUTHENTICATING
            await self._authenticate(user)
        self.send(codec.AUTHENTICATION_OK)
        startup = StartupInfo(user=user, database=params.get("database") or user, options=dict(params))
        loop = asyncio.get_running_loop()
        self._opening = self._inflight = loop.run_in_executor(self.server.executor, self.server.factory.open_session,
                                                              startup)
        session: Session = await asyncio.shield(self._opening)
        self.session = session
        if hasattr(session, "find_portal"):  # SQL FETCH / MOVE may name a protocol portal (asyncpg's cursors)
            session.find_portal = self._portal_execution
        self._opening = self._inflight = None
        reported = await self.call(session.take_parameter_changes)
        for name, value in {**{k: v for k, v in PROTOCOL_PARAMETERS.items() if k not in reported},
                            **reported}.items():
            self.send(codec.encode_parameter_status(name, value))
        self.process_id, self.secret_key = self.server.register(self)
        self.send(codec.encode_backend_key_data(self.process_id, self.secret_key))
        self.state = ConnectionState.READY
        await self._ready_for_query()
        return True

    async def _authenticate(self, user: str) -> None:
        assert self.server.verifier is not None
        exchange = ScramExchange(self.server.verifier, user)
        self.send(codec.encode_authentication_sasl([MECHANISM]))
        mechanism, first = codec.parse_sasl_initial_response((await self._auth_response()).data)
        self.send(codec.encode_authentication_sasl_continue(exchange.server_first(mechanism, first)))
        try:
            final = exchange.server_final((await self._auth_response()).data)
        except PgError:
            logger.info('password authentication failed for user "%s" from %s', user, self.peer)
            raise
        self.send(codec.encode_authentication_sasl_final(final))

    async def _auth_response(self) -> AuthenticationResponse:
        msg = await self.receive()
        if isinstance(msg, Terminate):
            raise _Closed()
        if not isinstance(msg, AuthenticationResponse):
            raise ProtocolError(f"expected SASL response, got message type {getattr(msg, 'TYPE', b'?')!r}")
        return msg

    # ------------------------------------------------------------------ the message loop

    async def _serve(self) -> None:
        while True:
            try:
                msg = await self.receive()
            except MessageTextError as err:
                self.send_error(err)
                if err.message_type == b"Q":
                    await self._ready_for_query()
                else:
                    self.state = ConnectionState.IGNORING_TILL_SYNC
                continue
            handler = _HANDLERS.get(self.state, {}).get(type(msg))
            if handler is None:
                if self.state is ConnectionState.IGNORING_TILL_SYNC:
                    continue
                raise ProtocolError(
                    f"unexpected message type 0x{getattr(msg, 'TYPE', b'?')[0]:02X} while {self.state.value}"
                )
            await handler(self, msg)

    async def _ready_for_query(self) -> None:
        """Notices, ParameterStatus, end of portals at transaction end, then ReadyForQuery."""
        self._send_ready(await self.call(_transaction_state, self.active_session, list(self.portals.values())))
        await self.flush()

    def _send_ready(self, ready: _Ready) -> None:
        """Apply what _transaction_state found (in whichever worker call ran it), queue ReadyForQuery."""
        status, notices, parameters, closed, deallocated = ready
        if closed:
            self.portals.clear()
        if deallocated:
            if "*" in deallocated:
                self.statements.clear()
            for name in deallocated:
                self.statements.pop(name, None)
        if notices or parameters:
            self._send_updates(notices, parameters)
        self.send(_READY_FOR_QUERY.get(status) or codec.encode_ready_for_query(status))

    def _send_updates(self, notices: list[PgError], parameters: dict[str, str]) -> None:
        for notice in notices:
            self.send(codec.encode_notice_response(notice))
        for name, value in parameters.items():
            self.send(codec.encode_parameter_status(name, value))

    # ------------------------------------------------------------------ rows

    async def _send_rows(
        self, execution: Execution, columns: list[ColumnDesc] | None, formats: list[int], max_rows: int,
        prefetched: _Fetched | None = None,
    ) -> tuple[bool, str | None, dict[str, str]]:
        """Fetch and send DataRows; -> (suspended, command tag and setting changes when complete)."""
        sent = 0
        while True:
            want = self._batch_rows if max_rows <= 0 else min(self._batch_rows, max_rows - sent)
            if prefetched is not None:
                fetched, prefetched = prefetched, None
            else:
                fetched = await self.call(_fetch, self.active_session, execution, want, columns, formats)
            for notice in fetched.notices:
                self.send(codec.encode_notice_response(notice))
            self.send(fetched.payload)
            sent += fetched.rows
            if fetched.done or fetched.rows == 0:
                return False, fetched.tag, fetched.parameters
            if max_rows > 0 and sent >= max_rows:
                return True, None, {}
            if fetched.payload:
                per_row = max(1, len(fetched.payload) // fetched.rows)
                limit = self.server.batch_rows
                self._batch_rows = max(min(64, limit), min(limit, self.server.batch_bytes // per_row))
            if self._out_size >= _FLUSH_BYTES:
                await self.flush()

    # ------------------------------------------------------------------ simple query

    async def _simple_query(self, msg: Query) -> None:
        self.statements.pop("", None)
        previous = self.portals.pop("", None)
        # One worker call runs the whole query when it can (see _simple_query_run); the rest of
        # this method is the message-at-a-time path, for where that call stopped.
        run = await self.call(_simple_query_run, self.active_session, msg.sql,
                              previous.execution if previous is not None else None, self._batch_rows,
                              list(self.portals.values()))
        if run.drop_error is not None:
            raise run.drop_error
        for data in run.out:
            self.send(data)
        if run.finished:
            if run.tail_error is not None:
                raise run.tail_error
            assert run.ready is not None
            self._send_ready(run.ready)
            await self.flush()
            return
        executions = run.executions
        try:
            await self._run_statement(executions[run.index], run.shape, run.fetched)
            for execution in executions[run.index + 1:]:
                await self._run_statement(execution)
        except PgError as err:
            self.send_error(err)
        except (ProtocolError, _Closed, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            logger.warning("error in simple query: %s", exc, exc_info=True)
            self.send_error(_internal_error(exc))
        finally:
            if self.state is not ConnectionState.CLOSED:
                await self.call(_close_executions, executions)
        self.state = ConnectionState.READY
        await self._ready_for_query()

    async def _run_statement(self, execution: Execution, shape: _Shape | None = None,
                             prefetched: _Fetched | None = None) -> None:
        """One statement of a simple query; ``shape`` and its first batch when already fetched."""
        if shape is None:
            shape = await self.call(_shape, execution)
        if shape.copy_in is not None:
            await self._copy_in(shape)
            return
        columns = shape.columns
        formats = _simple_formats(execution, columns)
        if columns is not None:
            self.send(_row_description(columns, formats))
        _, tag, parameters = await self._send_rows(execution, columns, formats, 0, prefetched)
        self.send(codec.encode_command_complete(tag or ""))
        self._send_updates([], parameters)

    # ------------------------------------------------------------------ COPY FROM STDIN

    async def _copy_in(self, shape: _Shape) -> None:
        sink = shape.copy_in
        assert sink is not None
        self.send(codec.encode_copy_in_response(shape.copy_in_columns, binary=shape.copy_in_binary))
        await self.flush()
        self.state = ConnectionState.COPY_IN
        self._copy_sink = sink
        # The sink decodes each piece on the worker while the next one is received: at most one
        # feed is in flight, and its error surfaces when the next message is handled.
        feeding: asyncio.Future[None] | None = None
        # While only CopyData comes, a CopyReceiver holds the transport and reads straight into the pieces.
        receiver: CopyReceiver | None = None
        try:
            while True:
                if receiver is None:
                    receiver = self._copy_receiver()
                if receiver is not None:
                    piece, done = await receiver.next_piece()
                    if done:
                        self.decoder.feed(receiver.release())
                        receiver = None
                    if piece:
                        if feeding is not None:
                            await feeding
                        feeding = asyncio.ensure_future(self.call(sink.feed, piece))
                    if not done:
                        continue
                msg = await self.receive()
                if feeding is not None and not isinstance(msg, CopyFail):
                    await feeding
                    feeding = None
                if isinstance(msg, CopyData):
                    data = await self._gather_copy_data(msg.data)
                    feeding = asyncio.ensure_future(self.call(sink.feed, data))
                elif isinstance(msg, CopyDone):
                    tag = await self.call(sink.finish)
                    self._copy_sink = None
                    self.send(codec.encode_command_complete(tag))
                    return
                elif isinstance(msg, CopyFail):
                    if feeding is not None:
                        with suppress(Exception):
                            await feeding
                        feeding = None
                    self._copy_sink = None
                    await self.call(sink.abort, msg.message)
                    raise PgError("57014", f"COPY from stdin failed: {msg.message}")
                elif isinstance(msg, (Flush, Sync)):
                    continue  # ignored during COPY, as the protocol says
                elif isinstance(msg, Terminate):
                    raise _Closed()
                else:
                    raise PgError("08P01", f"unexpected message type 0x{msg.TYPE[0]:02X} during COPY from stdin")
        except (_Closed, ConnectionError, asyncio.CancelledError):
            raise  # the sink is aborted when the connection is cleaned up
        except Exception:
            if feeding is not None:  # e.g. an unexpected message while a piece was being decoded
                with suppress(Exception):
                    await feeding
            if self._copy_sink is not None:  # the COPY failed before CopyDone / CopyFail
                self._copy_sink = None
                with suppress(Exception):
                    await self.call(sink.abort, "COPY failed")
            raise
        finally:
            if receiver is not None:  # an error or the connection's end during a run: the transport goes back
                self.decoder.feed(receiver.release())
            if feeding is not None:  # not awaited (the connection ended): its outcome goes unread
                feeding.add_done_callback(lambda f: f.cancelled() or f.exception())
            if self.state is ConnectionState.COPY_IN:
                self.state = ConnectionState.READY

    def _copy_receiver(self) -> CopyReceiver | None:
        """A CopyReceiver holding the transport, with what the decoder and the stream reader had buffered;
        None unless the next bytes are CopyData (or none yet) and the transport can be handed over (a
        socket transport under a StreamReaderProtocol, with StreamReader's buffer where read() keeps it,
        as _take_received uses)."""
        transport, buffer = self._transport, getattr(self.reader, "_buffer", None)
        if (transport is None or not isinstance(buffer, bytearray) or self._lookahead or transport.is_closing()
                or self.reader.at_eof() or self.reader.exception() is not None
                or self.decoder.peek_type() not in (None, b"d")):
            return None
        outer = transport.get_protocol()
        if not isinstance(outer, asyncio.StreamReaderProtocol) or not hasattr(transport, "set_protocol"):
            return None
        initial = self.decoder.take_buffered() + bytes(buffer)
        buffer.clear()
        receiver = CopyReceiver(transport, outer, piece_bytes=_COPY_FEED_BYTES,
                                max_message_size=self.server.max_message_size, initial=initial)
        resume = getattr(self.reader, "_maybe_resume_transport", None)
        if resume is not None:  # the stream had paused reading for its full buffer, now empty
            resume()
        return receiver

    async def _gather_copy_data(self, first: bytes) -> bytearray:
        """The payloads of CopyData messages, joined up to _COPY_FEED_BYTES while the stream has only
        CopyData, so that the sink is fed whole decoding chunks: psycopg sends 128 KB messages, and
        a worker call for each cost more in thread handoffs than the decoding of them. The payloads
        are views of the bytes read until one join copies them into the piece, which is the sink's to
        keep. Stops early at any other message or at the end of the connection, which the next
        receive() then reports."""
        pieces: list[bytes | memoryview] = [first]
        size, data = len(first), b""
        while True:
            size += self.decoder.take_copy_data(pieces, _COPY_FEED_BYTES - size, data)
            if size >= _COPY_FEED_BYTES or self.decoder.peek_type() not in (None, b"d"):
                break
            data = await self.reader.read(_COPY_READ_SIZE)  # an incomplete CopyData, or nothing yet
            if not data:
                break
        return bytearray().join(pieces)

    # ------------------------------------------------------------------ extended query

    async def _parse(self, msg: Parse) -> None:
        run = await self._parse_step(msg)
        if run is not None and run.synced:
            await self._answer_sync(run)

    @_extended_step
    async def _parse_step(self, msg: Parse) -> _PipelineRun | None:
        if msg.name and msg.name in self.statements:
            raise PgError("42P05", f'prepared statement "{msg.name}" already exists')
        pipeline = self._pipeline(msg)
        if pipeline is None:
            prepared, desc = await self.call(_prepare, self.active_session, msg.sql, list(msg.param_oids))
            self.statements[msg.name] = _Statement(prepared, desc, msg.param_oids)
            self.send(codec.PARSE_COMPLETE)
            return None
        run = await self._run_pipeline(pipeline, None)
        if run.parse_error is not None:
            raise run.parse_error
        assert run.statement is not None
        self.statements[msg.name] = run.statement
        self.send(codec.PARSE_COMPLETE)
        del self._lookahead[0]  # the Bind, answered here
        return self._answer_bound(pipeline, run)

    def _pipeline(self, first: Parse | Bind) -> _Pipeline | None:
        """``[Parse] Bind [Describe portal] Execute [Sync]`` from ``first`` on, if already received.

        A Parse is taken along only with a Sync after the Execute, so that the Bind of a pipeline
        of many (psycopg's executemany) still reaches the bind_many batching.
        """
        if type(first) is Parse:
            ahead = self._buffered(4)
            if not ahead or type(ahead[0]) is not Bind or ahead[0].statement != first.name:
                return None
            parse: Parse | None = first
            bind: Bind = ahead[0]
            del ahead[0]
        else:
            assert type(first) is Bind
            ahead = self._buffered(3)
            parse, bind = None, first
        portal = bind.portal
        described = bool(ahead) and type(ahead[0]) is Describe and ahead[0].kind == "P" and ahead[0].name == portal
        if described:
            del ahead[0]
        if not ahead or type(ahead[0]) is not Execute or ahead[0].portal != portal:
            return None
        sync = len(ahead) > 1 and type(ahead[1]) is Sync
        if parse is not None and not sync:
            return None
        return _Pipeline(parse, bind, described, ahead[0], sync)

    async def _run_pipeline(self, pipeline: _Pipeline, statement: _Statement | None) -> _PipelineRun:
        bind = pipeline.bind
        portals = self.portals
        previous = portals.get(bind.portal)
        others = [p for name, p in portals.items() if name != bind.portal] if portals else []
        max_rows = pipeline.execute.max_rows
        want = self._batch_rows if max_rows <= 0 else min(self._batch_rows, max_rows)
        return await self.call(_run_pipeline, self.active_session, pipeline, statement,
                               bool(bind.portal) and previous is not None, previous, want, others)

    def _answer_bound(self, pipeline: _Pipeline, run: _PipelineRun) -> _PipelineRun | None:
        """Answer the Bind, Describe and Execute that _run_pipeline ran, as far as it ran them.

        The lookahead still holds what follows the Bind; every message answered here leaves it.
        Errors are raised as the message-at-a-time handler would raise them (ErrorResponse, then
        discard until Sync). Returns the run when the Sync that follows is answered too.
        """
        name = pipeline.bind.portal
        if run.replaced:
            self.portals.pop(name, None)
        if run.bind_error is not None:
            raise run.bind_error
        portal = run.portal
        assert portal is not None
        self.portals[name] = portal
        self.send(codec.BIND_COMPLETE)
        if pipeline.described:
            del self._lookahead[0]
            self.send(_portal_description(portal))
        fetched = run.fetched
        if fetched is None:
            if run.fetch_error is None:
                return None  # COPY, or an error kept for Execute: the Execute handler goes on
            del self._lookahead[0]
            raise run.fetch_error
        if not run.complete:
            portal.shape.prefetched = fetched  # more batches: the Execute handler sends this one first
            return None
        del self._lookahead[0]
        for notice in fetched.notices:
            self.send(codec.encode_notice_response(notice))
        self.send(fetched.payload)
        if fetched.done or fetched.rows == 0:
            self.send(codec.encode_command_complete(fetched.tag or ""))
            if fetched.parameters:
                self._send_updates([], fetched.parameters)
        else:
            self.send(codec.PORTAL_SUSPENDED)
        return run if run.synced else None

    async def _answer_sync(self, run: _PipelineRun) -> None:
        """Answer the Sync that _run_pipeline ran, as _sync would."""
        del self._lookahead[0]
        self.state = ConnectionState.READY
        if run.sync_error is not None:
            self.send_error(run.sync_error)
        if run.tail_error is not None:
            raise run.tail_error
        assert run.ready is not None
        self._send_ready(run.ready)
        await self.flush()

    def _buffered_bind_run(self, first: Bind) -> tuple[list[tuple[Bind, bool]], int]:
        """A pipeline's run of Bind [Describe P] Execute(all rows) on the unnamed portal for the same
        statement, as far as it is already buffered: ((Bind, described) per group, current one first;
        how many lookahead messages the complete groups span). Everything taken from the decoder is
        kept, in order, in the lookahead queue."""
        self._take_received()
        pending: list[Any] = list(self._lookahead)
        self._lookahead.clear()
        taken: list[Any] = []

        def take() -> Any:
            if pending:
                msg = pending.pop(0)
            else:
                try:
                    msg = self.decoder.next_message()
                except Exception as exc:  # noqa: BLE001 - re-raised when receive() reaches it
                    msg = _Deferred(exc)
            if msg is not None:
                taken.append(msg)
            return msg

        groups: list[tuple[Bind, bool]] = []
        span = 0
        bind = first
        while True:
            msg = take()
            described = isinstance(msg, Describe) and msg.kind == "P" and msg.name == ""
            if described:
                msg = take()
            if not (isinstance(msg, Execute) and msg.portal == "" and msg.max_rows == 0):
                break
            groups.append((bind, described))
            span = len(taken)
            msg = take()
            if not (isinstance(msg, Bind) and msg.portal == "" and msg.statement == first.statement
                    and msg.result_formats == first.result_formats and msg.param_formats == first.param_formats):
                break
            bind = msg
        self._lookahead[:0] = taken + pending
        return groups, span

    async def _bind_batch(self, statement: _Statement, groups: list[tuple[Bind, bool]]) -> bool:
        """Run a pipelined run of Binds of one row-less statement in one worker call; False if the
        session declines (then every message goes through the one-at-a-time path)."""
        bind_many = getattr(self.active_session, "bind_many", None)
        if bind_many is None:
            return False
        oids = statement.param_oids()
        formats = _param_formats(groups[0][0].param_formats, len(groups[0][0].params))
        if any(len(b.params) != len(oids) for b, _ in groups):
            return False
        tags = await self.call(_bind_many, bind_many, statement.prepared, [b.params for b, _ in groups],
                               oids, formats)
        if tags is None:
            return False
        previous = self.portals.pop("", None)
        if previous is not None:
            await self.call(previous.execution.close)
        for (_, described), tag in zip(groups, tags, strict=True):
            self.send(codec.BIND_COMPLETE)
            if described:
                self.send(codec.NO_DATA)
            self.send(codec.encode_command_complete(tag))
        return True

    async def _bind(self, msg: Bind) -> None:
        run = await self._bind_step(msg)
        if run is not None and run.synced:
            await self._answer_sync(run)

    @_extended_step
    async def _bind_step(self, msg: Bind) -> _PipelineRun | None:
        statement = self.statements.get(msg.statement)
        if statement is None:
            raise PgError("26000", f'prepared statement "{msg.statement}" does not exist')
        if msg.portal == "" and statement.desc.columns is None:
            groups, span = self._buffered_bind_run(msg)
            if len(groups) > 1 and await self._bind_batch(statement, groups):
                del self._lookahead[:span]
                return None
        pipeline = self._pipeline(msg)
        if pipeline is not None:
            return self._answer_bound(pipeline, await self._run_pipeline(pipeline, statement))
        oids, formats = _bind_arguments(statement, msg, bool(msg.portal) and msg.portal in self.portals)
        previous = self.portals.pop(msg.portal, None)
        execution, shape = await self.call(_bind, self.active_session, statement.prepared, msg.params, oids, formats,
                                           previous.execution if previous is not None else None)
        try:
            result_formats = _result_formats(msg.result_formats, shape.columns)
        except PgError:
            await self.call(execution.close)
            raise
        self.portals[msg.portal] = _Portal(execution, shape, result_formats)
        self.send(codec.BIND_COMPLETE)
        return None

    @_extended_step
    async def _describe(self, msg: Describe) -> None:
        if msg.kind == "S":
            statement = self.statements.get(msg.name)
            if statement is None:
                raise PgError("26000", f'prepared statement "{msg.name}" does not exist')
            self.send(codec.encode_parameter_description(statement.param_oids()))
            columns = statement.desc.columns
            formats = [0] * len(columns) if columns is not None else []
            self.send(_row_description(columns, formats) if columns is not None else codec.NO_DATA)
        else:
            portal = self.portals.get(msg.name)
            if portal is None:  # a cursor DECLAREd by SQL is a portal too (psycopg describes its named cursors)
                describe_cursor = getattr(self.active_session, "cursor_columns", None)
                if describe_cursor is None:
                    raise PgError("34000", f'portal "{msg.name}" does not exist')
                columns, binary = await self.call(describe_cursor, msg.name)
                self.send(_row_description(columns, [1 if binary else 0] * len(columns)))
                return
            self.send(_portal_description(portal))

    @_extended_step
    async def _execute(self, msg: Execute) -> None:
        portal = self.portals.get(msg.portal)
        if portal is None:
            raise PgError("34000", f'portal "{msg.portal}" does not exist')
        if portal.shape.error is not None:
            err, portal.shape.error = portal.shape.error, None
            raise err
        if portal.shape.copy_in is not None:
            await self._copy_in(portal.shape)
            return
        prefetched, portal.shape.prefetched = portal.shape.prefetched, None
        suspended, tag, parameters = await self._send_rows(portal.execution, portal.shape.columns, portal.formats,
                                                           msg.max_rows, prefetched)
        self.send(codec.PORTAL_SUSPENDED if suspended else codec.encode_command_complete(tag or ""))
        self._send_updates([], parameters)

    @_extended_step
    async def _close(self, msg: Close) -> None:
        if msg.kind == "S":
            self.statements.pop(msg.name, None)
        else:
            await self._drop_portal(msg.name)
        self.send(codec.CLOSE_COMPLETE)

    async def _drop_portal(self, name: str) -> None:
        portal = self.portals.pop(name, None)
        if portal is not None:
            await self.call(portal.execution.close)

    async def _sync(self, msg: Sync) -> None:
        self.state = ConnectionState.READY
        try:
            await self.call(self.active_session.sync)
        except PgError as e:
            self.send_error(e)
        await self._ready_for_query()

    async def _flush(self, msg: Flush) -> None:
        await self.flush()

    async def _terminate(self, msg: Terminate) -> None:
        raise _Closed()

    async def _ignore(self, msg: Any) -> None:
        """CopyData/CopyDone/CopyFail outside COPY: the rest of a COPY that already failed."""

    async def _function_call(self, msg: FunctionCall) -> None:
        self.send_error(PgError("0A000", "the fastpath function call protocol is not supported"))
        await self._ready_for_query()


_READY_HANDLERS: dict[type, Callable[[Connection, Any], Awaitable[None]]] = {
    Query: Connection._simple_query,
    Parse: Connection._parse,
    Bind: Connection._bind,
    Describe: Connection._describe,
    Execute: Connection._execute,
    Close: Connection._close,
    Sync: Connection._sync,
    Flush: Connection._flush,
    Terminate: Connection._terminate,
    CopyData: Connection._ignore,
    CopyDone: Connection._ignore,
    CopyFail: Connection._ignore,
    FunctionCall: Connection._function_call,
}
# While discarding after an extended-query error, everything but these is skipped.
_IGNORING_HANDLERS: dict[type, Callable[[Connection, Any], Awaitable[None]]] = {
    Sync: Connection._sync,
    Terminate: Connection._terminate,
}
_HANDLERS: dict[ConnectionState, dict[type, Callable[[Connection, Any], Awaitable[None]]]] = {
    ConnectionState.READY: _READY_HANDLERS,
    ConnectionState.IGNORING_TILL_SYNC: _IGNORING_HANDLERS,
}


# ---------------------------------------------------------------------- worker-thread bodies


def _fetch(
    session: Session, execution: Execution, want: int, columns: list[ColumnDesc] | None, formats: list[int]
) -> _Fetched:
    copy = getattr(execution, "copy_out", None)
    if copy is not None:
        payload, rows = _copy_out(execution, copy)
    elif columns is None:
        execution.fetch(0)
        payload, rows = b"", 0
    else:
        batch = execution.fetch(want)
        rows = batch.num_rows if batch is not None else 0
        payload = encode_data_rows(batch, columns, formats) if rows else b""
    done = execution.done
    tag = execution.command_tag if done or rows == 0 else None
    parameters = session.take_parameter_changes() if done or rows == 0 else {}
    return _Fetched(payload, rows, done, tag, session.take_notices(), parameters)


def _simple_formats(execution: Execution, columns: list[ColumnDesc] | None) -> list[int]:
    """Result formats of the simple query protocol: text, except the rows a BINARY cursor's FETCH returns."""
    if columns is None:
        return []
    return [1 if getattr(execution, "binary", False) else 0] * len(columns)


def _shape(execution: Execution) -> _Shape:
    copy_in = execution.copy_in
    if copy_in is None and getattr(execution, "copy_out", None) is not None:
        return _Shape(None, None, 0)  # COPY TO: no RowDescription; _fetch sends the whole COPY
    return _Shape(None if copy_in is not None else execution.columns, copy_in,
                  execution.copy_in_columns if copy_in is not None else 0,
                  copy_in_binary=copy_in is not None and getattr(execution, "copy_in_binary", False))


def _copy_out(execution: Execution, copy: CopyOut) -> tuple[bytes, int]:
    """COPY ... TO STDOUT, whole: CopyOutResponse, one CopyData message per row (the HEADER line
    its own; the binary signature in front of the first row, or of the trailer when there is
    none, as PostgreSQL sends them), CopyDone."""
    columns = execution.columns or []
    out = [codec.encode_copy_out_response(len(columns), binary=copy.format == "binary")]
    head = copy_out.header(columns, copy)
    if head and copy.format != "binary":
        out.append(codec.encode_copy_data(head))
        head = b""
    rows = 0
    while True:
        batch = execution.fetch(_COPY_OUT_BATCH_ROWS)
        if batch is None or batch.num_rows == 0:
            break
        rows += batch.num_rows
        messages = copy_out.encode_rows(batch, columns, copy)
        if head:
            messages, head = copy_out.with_prefix(messages, head), b""
        out.append(messages)
    tail = head + copy_out.trailer(copy)
    if tail:
        out.append(codec.encode_copy_data(tail))
    out.append(codec.COPY_DONE)
    return b"".join(out), rows


def _bind_many(bind_many: Callable[..., list[str] | None], prepared: PreparedStatement,
               raws: list[Sequence[bytes | None]], oids: list[int], formats: list[int]) -> list[str] | None:
    try:
        params = [[decode_param(data, oid, fmt) for data, oid, fmt in zip(raw, oids, formats, strict=True)]
                  for raw in raws]
    except PgError:
        return None  # the one-at-a-time path reports it with the parameter's position
    return bind_many(prepared, params)


def _prepare(session: Session, sql: str, param_oids: list[int]) -> tuple[PreparedStatement, StatementDesc]:
    prepared = session.prepare(sql, param_oids)
    return prepared, prepared.desc


def _bind(session: Session, prepared: PreparedStatement, raw: Sequence[bytes | None], oids: list[int],
          formats: list[int], previous: Execution | None = None, *, then_sync: bool = False
          ) -> tuple[Execution, _Shape]:
    if previous is not None:  # Bind to an existing unnamed portal replaces it
        previous.close()
    params = []
    for i, (data, oid, fmt) in enumerate(zip(raw, oids, formats, strict=True), start=1):
        try:
            params.append(decode_param(data, oid, fmt))
        except PgError as err:
            if err.sqlstate == "22P03":
                raise PgError("22P03", f"incorrect binary data format in bind parameter {i}",
                              detail=err.detail) from None
            context = f"bind parameter ${i}"
            raise PgError(err.sqlstate, err.message, detail=f"{err.detail} ({context})" if err.detail else context,
                          hint=err.hint) from None
    execution = session.bind(prepared, params, then_sync=True) if then_sync else session.bind(prepared, params)
    try:
        shape = _shape(execution)
        if shape.columns is None and shape.copy_in is None:
            shape.prefetched = _fetch(session, execution, 0, None, [])
        return execution, shape
    except PgError as err:  # the statement ran (an engine may run it to know its columns) and failed
        return execution, _Shape(None, None, 0, error=err)
    except BaseException:
        execution.close()
        raise


def _run_pipeline(session: Session, pipeline: _Pipeline, statement: _Statement | None, portal_exists: bool,
                  previous: _Portal | None, want: int, others: list[_Portal]) -> _PipelineRun:
    """Parse, Bind, Execute's first batch and Sync in one worker call: the same session calls, in
    the same order, as the message-at-a-time handlers make; it stops where they would answer with an
    error, and where Execute needs the event loop (COPY) or more batches. ``previous``: the portal of
    the Bind's name; ``others``: every other open portal (closed at Sync if the transaction ended)."""
    run = _PipelineRun()
    parse = pipeline.parse
    if parse is not None:
        try:
            prepared, desc = _prepare(session, parse.sql, list(parse.param_oids))
        except Exception as exc:  # noqa: BLE001 - answered by the event loop, as Parse's error
            run.parse_error = exc
            return run
        statement = run.statement = _Statement(prepared, desc, parse.param_oids)
    assert statement is not None
    bind = pipeline.bind
    try:
        oids, formats = _bind_arguments(statement, bind, portal_exists)
        run.replaced = previous is not None
        execution, shape = _bind(session, statement.prepared, bind.params, oids, formats,
                                 previous.execution if previous is not None else None, then_sync=pipeline.sync)
        try:
            result_formats = _result_formats(bind.result_formats, shape.columns)
        except PgError:
            execution.close()
            raise
    except Exception as exc:  # noqa: BLE001 - answered by the event loop, as Bind's error
        run.bind_error = exc
        return run
    portal = run.portal = _Portal(execution, shape, result_formats)
    if shape.copy_in is not None or shape.error is not None:
        return run
    if shape.prefetched is not None:  # a statement without rows, run by _bind already
        fetched, shape.prefetched = shape.prefetched, None
    else:
        try:
            fetched = _fetch(session, execution, want, shape.columns, result_formats)
        except Exception as exc:  # noqa: BLE001 - answered by the event loop, as Execute's error
            run.fetch_error = exc
            return run
    run.fetched = fetched
    max_rows = pipeline.execute.max_rows
    run.complete = fetched.done or fetched.rows == 0 or 0 < max_rows <= fetched.rows
    if not (run.complete and pipeline.sync):
        return run
    run.synced = True
    try:
        session.sync()
    except PgError as err:
        run.sync_error = err
    except Exception as exc:  # noqa: BLE001 - raised by the event loop once the rest is sent
        run.tail_error = exc
        return run
    try:
        run.ready = _transaction_state(session, [*others, portal])
    except Exception as exc:  # noqa: BLE001 - as above
        run.tail_error = exc
    return run


def _simple_query_run(session: Session, sql: str, previous: Execution | None, want: int,
                      portals: list[_Portal]) -> _SimpleRun:
    """A simple Query in one worker call: the session calls of the message-at-a-time path, in its
    order, with the answers encoded; it stops before a COPY and before a statement whose rows take
    more than one batch, where the event loop goes on. ``previous``: the unnamed portal, closed first.
    """
    run = _SimpleRun()
    if previous is not None:
        try:
            previous.close()
        except Exception as exc:  # noqa: BLE001 - raised by the event loop
            run.drop_error = exc
            return run
    out = run.out
    try:
        executions = run.executions = list(session.simple_query(sql))
        if not executions:
            out.append(codec.EMPTY_QUERY_RESPONSE)
        for i, execution in enumerate(executions):
            shape = _shape(execution)
            if shape.copy_in is not None:
                run.index, run.shape = i, shape
                return run
            columns = shape.columns
            formats = _simple_formats(execution, columns)
            fetched = _fetch(session, execution, want, columns, formats)
            if not (fetched.done or fetched.rows == 0):
                run.index, run.shape, run.fetched = i, shape, fetched
                return run
            if columns is not None:
                out.append(_row_description(columns, formats))
            for notice in fetched.notices:
                out.append(codec.encode_notice_response(notice))
            if fetched.payload:
                out.append(fetched.payload)
            out.append(codec.encode_command_complete(fetched.tag or ""))
            for name, value in fetched.parameters.items():
                out.append(codec.encode_parameter_status(name, value))
    except PgError as err:
        out.append(codec.encode_error_response(err))
    except Exception as exc:  # noqa: BLE001 - the client gets XX000; the connection lives on
        logger.warning("error in simple query: %s", exc, exc_info=True)
        out.append(codec.encode_error_response(_internal_error(exc)))
    run.finished = True
    try:
        if run.executions:
            _close_executions(run.executions)
        run.ready = _transaction_state(session, portals)
    except Exception as exc:  # noqa: BLE001 - raised by the event loop once the answers are sent
        run.tail_error = exc
    return run


def _transaction_state(session: Session, portals: list[_Portal]) -> _Ready:
    status = session.transaction_status
    closed = False
    if status == "I" and portals:
        # Portals live until the end of their transaction.
        _close_executions([p.execution for p in portals])
        closed = True
    return status, session.take_notices(), session.take_parameter_changes(), closed, session.take_deallocations()


def _close_executions(executions: Sequence[Execution]) -> None:
    for execution in executions:
        try:
            execution.close()
        except Exception:
            logger.warning("error closing an execution", exc_info=True)


def _close_session(session: Session, sink: CopyInSink | None, executions: list[Execution]) -> None:
    if sink is not None:
        try:
            sink.abort("connection closed during COPY")
        except Exception:
            logger.warning("error aborting COPY", exc_info=True)
    _close_executions(executions)
    session.close()


# ---------------------------------------------------------------------- the worker threads


class SessionThreads(Executor):
    """The threads that run session calls: ``run_soon`` for Connection.call, ``submit`` for the rest.

    A query's one hop to a worker is most of its cost beside the engine's, and ThreadPoolExecutor
    adds to each a Future (a Condition), two locks and an idle Semaphore, all Python, and its worker
    still holds the GIL for that bookkeeping after the result is handed over, just when the event
    loop wakes up to take it. ``run_soon`` is one queue put; the worker goes straight back to the
    queue (releasing the GIL) once the call has reported its outcome itself.
    """

    def __init__(self, max_workers: int = 32, thread_name_prefix: str = "sqlvec-session") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        # One entry per thread waiting for a job: list append and pop are atomic, a counter is not.
        self._idle: list[None] = []
        self._threads: list[threading.Thread] = []
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()  # starting threads, shutting down
        self._shutdown = False

    def run_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker; it reports its own outcome (an exception is only logged)."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")
        self._jobs.put((fn, args))
        try:
            self._idle.pop()
        except IndexError:  # every thread is busy: one more, up to the limit (else the job waits)
            with self._lock:
                if len(self._threads) < self._max_workers and not self._shutdown:
                    thread = threading.Thread(target=self._worker, name=f"{self._prefix}_{len(self._threads)}",
                                              daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _worker(self) -> None:
        jobs, idle = self._jobs, self._idle
        first = True  # started for a job already queued: not idle yet
        while True:
            if not first:
                idle.append(None)
            first = False
            job = jobs.get()
            if job is None:  # shutdown: pass it on to the next thread
                jobs.put(None)
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - the thread must live on
                logger.warning("error in a session thread", exc_info=True)
            del job, fn, args  # drop references before blocking on the queue

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.run_soon(run)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._jobs.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()


# ---------------------------------------------------------------------- the server


class WireServer:
    """Accepts connections, authenticates them, and keeps the cancel keys.

    ``password``: None trusts every client (AuthenticationOk at once); a string requires
    SCRAM-SHA-256 with it, for every user name. ``executor``: the thread pool that runs
    session calls (a :class:`SessionThreads` is created when not given). Use :meth:`close` to
    stop listening and end every connection.
    """

    def __init__(
        self,
        factory: SessionFactory,
        *,
        password: str | None = None,
        executor: Executor | None = None,
        max_message_size: int = codec.DEFAULT_MAX_MESSAGE_SIZE,
        startup_timeout: float = 60.0,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self.factory = factory
        self.verifier = ScramVerifier.from_password(password) if password is not None else None
        self.executor: Executor = executor or SessionThreads(max_workers=32, thread_name_prefix="sqlvec-session")
        self._owns_executor = executor is None
        # How Connection.call starts a worker call: a given executor's submit (its Future unused).
        self.run_soon: Callable[..., Any] = (self.executor.run_soon if isinstance(self.executor, SessionThreads)
                                             else self.executor.submit)
        # Cancels must not queue behind the statements they cancel.
        self._cancel_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlvec-cancel")
        self.max_message_size = max_message_size
        self.startup_timeout = startup_timeout
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self._by_pid: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> asyncio.Server:
        # The stream buffer may hold 1 MB before reading pauses (the default 64 KB limit pauses at 128 KB,
        # so a COPY that a CopyReceiver cannot take over would be read in many small pieces).
        self._server = await asyncio.start_server(self._accept, host, port, limit=_STREAM_LIMIT)
        for sock in self._server.sockets:
            logger.info("listening on %s", sock.getsockname())
        return self._server

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await Connection(self, reader, writer).run()
        finally:
            self._tasks.discard(task)

    def register(self, conn: Connection) -> tuple[int, int]:
        while True:
            pid = secrets.randbelow((1 << 31) - 2) + 1
            if pid not in self._by_pid:
                break
        self._by_pid[pid] = conn
        return pid, secrets.randbits(32) - (1 << 31)

    def unregister(self, conn: Connection) -> None:
        if self._by_pid.get(conn.process_id) is conn:
            del self._by_pid[conn.process_id]

    async def cancel(self, process_id: int, secret_key: int) -> None:
        """CancelRequest: cancel the statement of the matching connection, answer nothing."""
        conn = self._by_pid.get(process_id)
        if conn is None or conn.session is None or not secrets.compare_digest(
            conn.secret_key.to_bytes(4, "big", signed=True), secret_key.to_bytes(4, "big", signed=True)
        ):
            logger.info("cancel request for unknown process %d ignored", process_id)
            return
        self.cancel_session(conn.session)

    def cancel_session(self, session: Session) -> None:
        def run() -> None:
            try:
                session.cancel()
            except Exception:
                logger.warning("error cancelling a statement", exc_info=True)

        self._cancel_executor.submit(run)

    async def close(self) -> None:
        """Stop listening, end every connection (their sessions are closed), free the threads."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()
        if self._owns_executor:
            self.executor.shutdown(wait=False)
        self._cancel_executor.shutdown(wait=False)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where uvloop is installed, else asyncio's; ``SQLVEC_UVLOOP=0`` forces asyncio's.

    The event loop's own work (socket reads and writes, waking the connection's task, taking a
    worker's result) is a good part of a small query's cost; uvloop does it in C.
    """
    if os.environ.get("SQLVEC_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on :func:`new_event_loop`'s loop: the way to run a server."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


async def start_server(
    factory: SessionFactory,
    host: str,
    port: int,
    *,
    password: str | None = None,
    executor: Executor | None = None,
    max_message_size: int = codec.DEFAULT_MAX_MESSAGE_SIZE,
    startup_timeout: float = 60.0,
) -> asyncio.Server:
    """Listen on ``host:port`` and serve the PostgreSQL protocol with sessions from ``factory``.

    Returns the listening :class:`asyncio.Server` (port 0 picks a free port: see
    ``server.sockets[0].getsockname()``). For a shutdown that also ends open connections,
    create a :class:`WireServer` and call its ``close()``.
    """
    wire_server = WireServer(factory, password=password, executor=executor, max_message_size=max_message_size,
                             startup_timeout=startup_timeout)
    return await wire_server.start(host, port)
