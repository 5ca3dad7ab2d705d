"""Messages that arrive together are answered in fewer worker calls, and exactly as when they arrive apart.

wire runs ``[Parse] Bind [Describe] Execute [Sync]`` and a simple Query in one worker call when the
messages are already received. Each conversation here is played twice, one message per read and all
of it in one read, and must give the same answers and the same engine calls in the same order.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.wire import protocol_helpers as fe
from tests.wire.fake_session import FakeFactory
from tests.wire.protocol_helpers import after_startup, converse, kinds
from wire.server import Connection, SessionThreads, WireServer, new_event_loop, run


class CountingExecutor(ThreadPoolExecutor):
    """The session pool, counting the worker calls (hops) made to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="sqlvec-session")
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


def play(messages: list[bytes], *, joined: bool, **options: Any) -> tuple[list[fe.Backend], list[str], int]:
    """-> (answers after startup, engine calls after startup, worker calls in all)."""
    factory = FakeFactory()
    factory.trace = []
    executor = CountingExecutor()
    chunks = [b"".join(messages) + fe.TERMINATE] if joined else [*messages, fe.TERMINATE]
    try:
        out = converse(factory, fe.startup(), *chunks, executor=executor, **options)
    finally:
        executor.shutdown()
    assert factory.off_worker_calls == [] and factory.overlapping_calls == 0
    trace = factory.trace[factory.trace.index("take_parameter_changes") + 1:]
    # CopyData that arrive together are fed to the engine together, by design
    trace = [name for i, name in enumerate(trace) if not (name == "feed" and i and trace[i - 1] == "feed")]
    return after_startup(out), trace, executor.calls


def int4(v: int) -> bytes:
    return struct.pack("!i", v)


ROWS = b"".join(b"%d\tname %d\t[%d,0,1]\n" % (i, i, i) for i in range(30))

CONVERSATIONS: dict[str, tuple[list[bytes], dict[str, Any]]] = {
    "simple select": ([fe.query("select 6")], {}),
    "simple statements stop at an error": ([fe.query("select 1; insert into t values (1); fail; select 2")], {}),
    "empty queries": ([fe.query(""), fe.query(";"), fe.query("  ;  ; ")], {}),
    "notice and set": ([fe.query("notice careful; set search_path = x")], {}),
    "crash": ([fe.query("crash"), fe.query("select 1")], {}),
    "transaction status": ([fe.query("begin"), fe.query("fail"), fe.query("select 1"), fe.query("commit")], {}),
    "invalid utf8": ([fe.msg(b"Q", b"select '\xff'\x00"), fe.query("select 1")], {}),
    "rows in batches": ([fe.query("select 50")], {"batch_rows": 7}),
    "batches in the middle": ([fe.query("select 3; select 50; select 2; fail; select 1")], {"batch_rows": 7}),
    "extended round trip": ([fe.parse("select $1::int4, $2::text", "s1"), fe.describe("S", "s1"),
                             fe.bind([int4(42), b"hi"], statement="s1", param_formats=[1, 0], result_formats=[1, 0]),
                             fe.describe("P"), fe.execute(), fe.SYNC], {}),
    "unnamed parse bind describe execute": ([fe.parse("select 4"), fe.bind(), fe.describe("P"), fe.execute(),
                                             fe.SYNC] * 3, {}),
    "parse bind execute of rowless": ([fe.parse("begin"), fe.describe("S"), fe.bind(), fe.describe("P"),
                                       fe.execute(), fe.SYNC, fe.parse("commit"), fe.bind(), fe.execute(), fe.SYNC],
                                      {}),
    "parse error discards": ([fe.parse("parsefail"), fe.bind(), fe.describe("P"), fe.execute(), fe.SYNC,
                              fe.parse("select 1"), fe.bind(), fe.execute(), fe.SYNC], {}),
    "execution error in pipeline": ([fe.parse("fail"), fe.bind(), fe.execute(), fe.parse("select 1"), fe.bind(),
                                     fe.execute(), fe.SYNC], {}),
    "execution error before sync": ([fe.parse("fail"), fe.bind(), fe.describe("P"), fe.execute(), fe.SYNC,
                                     fe.parse("crash"), fe.bind(), fe.execute(), fe.SYNC, fe.query("select 1")], {}),
    "prepared statement reused": ([fe.parse("select $1::int4", "s"), fe.SYNC,
                                   *[m for v in (b"1", b"x", b"3")
                                     for m in (fe.bind([v], statement="s"), fe.describe("P"), fe.execute(), fe.SYNC)]],
                                  {}),
    "bind error names the parameter": ([fe.parse("select $1::int4, $2::int4"), fe.bind([b"1", b"x"]), fe.execute(),
                                        fe.SYNC], {}),
    "unnamed statement and portal replaced": ([fe.parse("select 1"), fe.parse("select 2"), fe.bind(), fe.bind(),
                                               fe.execute(), fe.SYNC], {}),
    "portal suspended and resumed": ([fe.query("begin"), fe.parse("select 5"), fe.bind(portal="c", result_formats=[1]),
                                      fe.execute("c", 2), fe.execute("c", 2), fe.execute("c", 2), fe.execute("c", 2),
                                      fe.SYNC], {}),
    "unnamed portal suspended at sync": ([fe.parse("select 5"), fe.bind(), fe.execute("", 2), fe.SYNC,
                                          fe.query("begin"), fe.bind(), fe.execute("", 2), fe.SYNC, fe.execute("", 2),
                                          fe.execute(), fe.SYNC], {}),
    "max rows larger than batch": ([fe.parse("select 30"), fe.bind(), fe.execute("", 20), fe.SYNC], {"batch_rows": 7}),
    "many batches": ([fe.parse("select 30"), fe.bind(), fe.describe("P"), fe.execute(), fe.SYNC], {"batch_rows": 7}),
    "portals end with the transaction": ([fe.parse("select 3"), fe.bind(portal="p"), fe.SYNC, fe.execute("p"),
                                          fe.SYNC, fe.query("begin"), fe.bind(portal="p"), fe.SYNC, fe.execute("p"),
                                          fe.SYNC], {}),
    "named portal executed at once": ([fe.parse("select 3"), fe.bind(portal="p"), fe.describe("P", "p"),
                                       fe.execute("p"), fe.SYNC, fe.execute("p"), fe.SYNC], {}),
    "existing named portal": ([fe.query("begin"), fe.parse("select 3"), fe.bind(portal="p"), fe.execute("p"),
                               fe.SYNC, fe.bind(portal="p"), fe.execute("p"), fe.SYNC], {}),
    "close": ([fe.parse("select 1", "s"), fe.bind(portal="p", statement="s"), fe.close("P", "p"), fe.close("S", "s"),
               fe.close("S", "missing"), fe.close("P", "missing"), fe.execute("p"), fe.SYNC, fe.bind(statement="s"),
               fe.SYNC], {}),
    "flush without sync": ([fe.parse("select 1"), fe.bind(), fe.execute(), fe.FLUSH, fe.bind(), fe.describe("P"),
                            fe.execute(), fe.SYNC], {}),
    "pipeline of inserts": ([fe.parse("insert into t values ($1::int4)"),
                             *[m for i in range(4) for m in (fe.bind([b"%d" % i]), fe.execute())], fe.SYNC], {}),
    "set and notice in extended": ([fe.parse("set application_name = 'x'"), fe.bind(), fe.execute(), fe.SYNC,
                                    fe.parse("notice hello"), fe.bind(), fe.execute(), fe.SYNC], {}),
    "bind of another statement": ([fe.parse("select 1", "a"), fe.bind(statement="b"), fe.execute(), fe.SYNC], {}),
    "describe statement between parse and bind": ([fe.parse("select 2"), fe.describe("S"), fe.bind(), fe.execute(),
                                                   fe.SYNC], {}),
    "failed transaction block": ([fe.query("begin"), fe.parse("fail"), fe.bind(), fe.execute(), fe.SYNC,
                                  fe.parse("select 1"), fe.bind(), fe.execute(), fe.SYNC, fe.query("rollback")], {}),
    "executed twice": ([fe.query("begin"), fe.parse("select 2"), fe.bind(), fe.execute(), fe.execute(), fe.SYNC], {}),
    "copy in simple query": ([fe.query("copy items from stdin"), fe.copy_data(ROWS[:50]), fe.copy_data(ROWS[50:]),
                              fe.copy_data(b"\\.\n"), fe.COPY_DONE, fe.query("table items")], {}),
    "copy in the middle": ([fe.query("select 1; copy items from stdin; select 2"), fe.copy_data(ROWS),
                            fe.COPY_DONE, fe.query("table items")], {}),
    "copy fail": ([fe.query("copy items from stdin"), fe.copy_data(b"1\tx\t[1,2,3]\n"), fe.copy_fail("gave up"),
                   fe.query("select 1")], {}),
    "copy error in the engine": ([fe.query("copy broken from stdin"), fe.copy_data(b"1\n"), fe.copy_data(b"2\n"),
                                  fe.COPY_DONE, fe.query("select 1")], {}),
    "unexpected message during copy": ([fe.query("copy items from stdin"), fe.FLUSH, fe.SYNC, fe.query("select 1"),
                                        fe.query("select 1")], {}),
    "copy in extended query": ([fe.parse("copy items from stdin"), fe.bind(), fe.describe("P"), fe.execute(),
                                fe.copy_data(b"7\tseven\t[7,7,7]\n"), fe.COPY_DONE, fe.SYNC, fe.query("table items")],
                               {}),
    "function call": ([fe.msg(b"F", struct.pack("!I", 1234) + b"\x00" * 6), fe.query("select 1")], {}),
}

for _sqlstate_case, _messages in enumerate([
    [fe.bind(statement="nope")],
    [fe.execute("nope")],
    [fe.parse("select 1"), fe.bind(portal="p"), fe.bind(portal="p")],
    [fe.parse("select $1::int4"), fe.bind()],
    [fe.parse("select $1::int4"), fe.bind([b"1"], param_formats=[0, 0])],
    [fe.parse("select $1::int4"), fe.bind([b"1"], param_formats=[3])],
    [fe.parse("select $1::int4, $2::int4"), fe.bind([b"1", b"2"], result_formats=[1, 1, 1])],
    [fe.parse("select $1::int4"), fe.bind([b"x"])],
    [fe.parse("select $1::int4"), fe.bind([b"\x00\x00\x00\x00\x01"], param_formats=[1])],
]):
    CONVERSATIONS[f"extended error {_sqlstate_case}"] = (
        [*_messages, fe.describe("P"), fe.execute(), fe.SYNC, fe.query("select 1")], {})


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_same_answers_and_engine_calls_when_messages_arrive_together(name: str) -> None:
    messages, options = CONVERSATIONS[name]
    apart, apart_trace, apart_hops = play(messages, joined=False, **options)
    together, together_trace, together_hops = play(messages, joined=True, **options)
    assert [(m.kind, m.body) for m in together] == [(m.kind, m.body) for m in apart]
    assert together_trace == apart_trace
    assert together_hops <= apart_hops


@pytest.mark.parametrize(
    ("messages", "answers"),
    [
        ([fe.query("select 2")], "TDDCZ"),
        ([fe.query("select 1; set x = 1; notice hi")], "TDCCSNCZ"),
        ([fe.query("")], "IZ"),
        ([fe.query("fail")], "EZ"),
        ([fe.parse("select $1::int4"), fe.bind([b"7"]), fe.describe("P"), fe.execute(), fe.SYNC], "12TDCZ"),
        ([fe.bind(statement="s"), fe.describe("P"), fe.execute(), fe.SYNC], "2TDDCZ"),
        ([fe.bind(statement="s", result_formats=[1]), fe.execute(), fe.SYNC], "2DDCZ"),
        ([fe.bind(statement="s"), fe.execute("", 1), fe.SYNC], "2DsZ"),
        ([fe.parse("insert into t values (1)"), fe.bind(), fe.execute(), fe.SYNC], "12CZ"),
        ([fe.parse("begin"), fe.bind(), fe.execute(), fe.SYNC], "12CZ"),
    ],
)
def test_one_worker_call_per_query(messages: list[bytes], answers: str) -> None:
    """What psycopg, asyncpg and JDBC send for one query costs one hop to the worker pool."""
    setup = fe.parse("select 2", "s") + fe.SYNC
    with_query, _, hops_with = play([setup, b"".join(messages)], joined=False)
    _, _, hops_without = play([setup], joined=False)
    assert kinds(with_query[2:]) == answers
    assert hops_with - hops_without == 1


@pytest.mark.parametrize("messages", [
    [fe.query("sleep 20")],
    [fe.parse("sleep 20"), fe.bind(), fe.execute(), fe.SYNC],
])
def test_shutdown_waits_for_the_running_call_before_closing_the_session(messages: list[bytes]) -> None:
    factory = FakeFactory()
    factory.trace = []

    async def run() -> None:
        server = WireServer(factory)
        reader = asyncio.StreamReader()
        writer = fe.FakeWriter()
        task = asyncio.create_task(Connection(server, reader, writer).run())  # type: ignore[arg-type]
        reader.feed_data(fe.startup() + b"".join(messages))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, factory.sleeping.wait, 10)
        task.cancel()  # as WireServer.close() does, in the middle of the engine call
        await asyncio.wait_for(asyncio.wait([task]), 10)
        await server.close()

    asyncio.run(run())
    (session,) = factory.sessions
    assert factory.cancels == 1 and session.closed
    # the worker call ran to its end (the statement cancelled, the rest of the call done), then close()
    assert "slept" in factory.trace and factory.trace[-1] == "close"
    assert factory.trace[-4:-1] == ["take_notices", "take_parameter_changes", "take_deallocations"] or \
        factory.trace[-2] == "slept"
    assert factory.overlapping_calls == 0 and factory.off_worker_calls == []


def test_session_threads() -> None:
    threads = SessionThreads(max_workers=2, thread_name_prefix="sqlvec-session-test")
    try:
        assert threads.submit(lambda x: x * 2, 21).result(5) == 42
        with pytest.raises(ZeroDivisionError):
            threads.submit(lambda: 1 / 0).result(5)
        gate = threading.Event()
        names: list[str] = []
        futures = [threads.submit(lambda: (gate.wait(5), names.append(threading.current_thread().name)))
                   for _ in range(5)]
        gate.set()
        for future in futures:
            future.result(5)
        assert set(names) <= {"sqlvec-session-test_0", "sqlvec-session-test_1"}  # never more than max_workers
    finally:
        threads.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        threads.submit(print)


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLVEC_UVLOOP", "0")
    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()

    async def answer() -> int:
        return 42

    monkeypatch.delenv("SQLVEC_UVLOOP")
    assert run(answer()) == 42  # on uvloop where it is installed
