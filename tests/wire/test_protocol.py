"""The connection state machine, fed raw bytes (no socket), answers parsed independently.

Each test hands a whole conversation to one Connection (see protocol_helpers.converse) and reads
back every message it sent, so message order and contents are checked exactly.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import pytest

from tests.wire import protocol_helpers as fe
from tests.wire.fake_session import FakeFactory, expected_row
from tests.wire.protocol_helpers import after_startup, converse, kinds
from wire.server import Connection, WireServer


@pytest.fixture()
def factory() -> Iterator[FakeFactory]:
    f = FakeFactory()
    yield f
    # the engine contract: called from worker threads only, one call at a time per session
    assert f.off_worker_calls == [] and f.overlapping_calls == 0


def talk(factory: FakeFactory, *chunks: bytes, **kw: object) -> list[fe.Backend]:
    return after_startup(converse(factory, fe.startup(), *chunks, fe.TERMINATE, **kw))


# --------------------------------------------------------------------------- startup


def test_startup_sequence(factory: FakeFactory) -> None:
    out = converse(factory, fe.startup(application_name="tests"), fe.TERMINATE)
    assert out[0].kind == "R" and out[0].values == [0]
    assert kinds(out) == "R" + "S" * (len(out) - 3) + "KZ"
    params = {k: v for m in out if m.kind == "S" for k, v in m.fields.items()}
    assert params["server_version"] == "16.0 (sqlvec fake)"  # the session's value wins
    for name in ("client_encoding", "DateStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings",
                 "IntervalStyle", "server_encoding"):
        assert name in params
    assert out[-1].values == ["I"]
    (session,) = factory.sessions
    assert session.startup.user == "postgres" and session.startup.database == "sqlvec"
    assert session.startup.options["application_name"] == "tests"
    assert session.closed


@pytest.mark.parametrize("requests", [[fe.ssl_request()], [fe.gssenc_request()], [fe.gssenc_request(), fe.ssl_request()]])
def test_encryption_is_refused_then_startup_continues(factory: FakeFactory, requests: list[bytes]) -> None:
    out = converse(factory, *requests, fe.startup(), fe.TERMINATE, ssl_answers=len(requests))
    assert [m.kind for m in out[: len(requests)]] == ["ssl-N"] * len(requests)
    assert out[-1].kind == "Z"


def test_data_sent_with_the_ssl_request_is_refused(factory: FakeFactory) -> None:
    out = converse(factory, fe.ssl_request() + fe.startup(), ssl_answers=0)
    assert out[0].kind == "E" and out[0].fields["C"] == "08P01" and out[0].fields["S"] == "FATAL"
    assert not factory.sessions


def test_database_default_and_unknown_database(factory: FakeFactory) -> None:
    converse(factory, fe.startup(user="bob", database=""), fe.TERMINATE)
    assert factory.sessions[0].startup.database == "bob"
    out = converse(factory, fe.startup(database="nodb"))
    assert kinds(out) == "RE"
    assert out[1].fields["C"] == "3D000" and out[1].fields["S"] == "FATAL"


def test_missing_user_and_bad_version(factory: FakeFactory) -> None:
    body = struct.pack("!i", 196608) + b"database\x00x\x00\x00"
    out = converse(factory, struct.pack("!i", len(body) + 4) + body)
    assert out[0].fields["C"] == "28000"
    body = struct.pack("!i", 4 << 16) + b"\x00"
    out = converse(factory, struct.pack("!i", len(body) + 4) + body)
    assert out[0].fields["C"] == "0A000" and out[0].fields["S"] == "FATAL"


def test_newer_protocol_minor_is_negotiated_down(factory: FakeFactory) -> None:
    body = struct.pack("!i", (3 << 16) | 2) + b"user\x00u\x00_pq_.opt\x00v\x00\x00"
    out = converse(factory, struct.pack("!i", len(body) + 4) + body, fe.TERMINATE)
    assert out[0].kind == "v"
    newest, count = struct.unpack_from("!ii", out[0].body)
    assert (newest, count) == (0, 1) and out[0].body[8:] == b"_pq_.opt\x00"
    assert out[-1].kind == "Z"


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x01garbage", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256))])
def test_garbage_gets_fatal_08P01(factory: FakeFactory, garbage: bytes) -> None:
    out = converse(factory, garbage)
    assert len(out) == 1 and out[0].fields["C"] == "08P01" and out[0].fields["S"] == "FATAL"


def test_garbage_after_startup(factory: FakeFactory) -> None:
    out = talk(factory, b"\x01\x02\x03\x04\x05\x06")
    assert kinds(out) == "E" and out[0].fields["C"] == "08P01"
    assert factory.sessions[0].closed


def test_oversized_message(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("x" * 2000), max_message_size=1000)
    assert out[0].fields["C"] == "08P01" and out[0].fields["S"] == "FATAL"


def test_unexpected_message_type(factory: FakeFactory) -> None:
    out = talk(factory, fe.msg(b"p", b"password\x00"))
    assert out[0].fields["C"] == "08P01" and out[0].fields["S"] == "FATAL"


def test_startup_timeout_closes_a_session_opened_too_late(factory: FakeFactory) -> None:
    factory.open_delay = 0.3
    out = converse(factory, fe.startup(), eof=False, startup_timeout=0.1)
    assert kinds(out) == "RE" and out[1].fields["C"] == "08006"
    assert factory.sessions and factory.sessions[0].closed


def test_startup_timeout_while_waiting_for_the_client(factory: FakeFactory) -> None:
    out = converse(factory, fe.startup()[:5], eof=False, startup_timeout=0.05)
    assert kinds(out) == "E" and out[0].fields["C"] == "08006"


def test_cancel_request_with_unknown_key_gets_no_reply(factory: FakeFactory) -> None:
    assert converse(factory, fe.cancel_request(1, 2)) == []


# --------------------------------------------------------------------------- simple query


def test_simple_select(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("SELECT 6"))
    assert kinds(out) == "T" + "D" * 6 + "CZ"
    assert [c[0] for c in out[0].values][:5] == ["id", "name", "score", "flag", "emb"]
    assert all(c[4] == 0 for c in out[0].values)  # text
    assert out[1].values[:5] == [b"1", b"name 1", b"-0.75", b"f", b"[1,0.5,-1]"]
    assert out[3].values[1] == expected_row(3)["name"].encode()
    assert out[5].values == [b"5"] + [None] * 12
    assert out[-2].values == ["SELECT 6"] and out[-1].values == ["I"]


def test_statements_run_in_order_and_stop_at_an_error(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("select 1; insert into t values (1); fail; select 2"))
    assert kinds(out) == "TDCCEZ"
    assert out[3].values == ["INSERT 0 1"]
    assert out[4].fields["C"] == "42601" and out[4].fields["P"] == "1" and out[4].fields["H"] == "Try something else."
    assert factory.sessions[0].statements_seen == ["select 1", "insert into t values (1)", "fail", "select 2"]


@pytest.mark.parametrize("sql", ["", ";", "  ;  ; "])
def test_empty_query(factory: FakeFactory, sql: str) -> None:
    assert kinds(talk(factory, fe.query(sql))) == "IZ"


def test_notices_and_parameter_status(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("notice careful; set search_path = x"))
    assert kinds(out) == "NCCSZ"  # ParameterStatus follows the SET's CommandComplete
    assert out[0].fields["M"] == "careful" and out[0].fields["S"] == "NOTICE"
    assert out[3].fields == {"search_path": "x"}


def test_python_exception_becomes_XX000_and_connection_lives(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("crash"), fe.query("select 1"))
    assert kinds(out) == "EZTDCZ"
    assert out[0].fields["C"] == "XX000" and out[0].fields["M"] == "boom"


def test_transaction_status(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("begin"), fe.query("fail"), fe.query("select 1"), fe.query("commit"))
    z = [m.values[0] for m in out if m.kind == "Z"]
    assert z == ["T", "E", "E", "I"]
    assert [m.fields["C"] for m in out if m.kind == "E"] == ["42601", "25P02"]
    assert out[-2].values == ["ROLLBACK"]


def test_invalid_utf8_in_query(factory: FakeFactory) -> None:
    out = talk(factory, fe.msg(b"Q", b"select '\xff'\x00"), fe.query("select 1"))
    assert kinds(out) == "EZTDCZ" and out[0].fields["C"] == "22021"


def test_function_call_is_refused(factory: FakeFactory) -> None:
    out = talk(factory, fe.msg(b"F", struct.pack("!I", 1234) + b"\x00" * 6), fe.query("select 1"))
    assert kinds(out) == "EZTDCZ" and out[0].fields["C"] == "0A000"


def test_rows_stream_in_batches(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("select 50"), batch_rows=7)
    assert kinds(out) == "T" + "D" * 50 + "CZ"
    assert [m.values[0] for m in out if m.kind == "D"] == [str(i).encode() for i in range(1, 51)]
    assert factory.overlapping_calls == 0


# --------------------------------------------------------------------------- extended query


def test_extended_round_trip(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select $1::int4, $2::text", "s1"), fe.describe("S", "s1"),
               fe.bind([struct.pack("!i", 42), b"hi"], statement="s1", param_formats=[1, 0], result_formats=[1, 0]),
               fe.describe("P"), fe.execute(), fe.SYNC)
    assert kinds(out) == "1tT2TDCZ"
    assert out[1].values == [23, 25]
    assert [c[4] for c in out[2].values] == [0, 0]  # statement Describe: formats not known yet
    assert [c[4] for c in out[4].values] == [1, 0]
    assert out[5].values == [struct.pack("!i", 42), b"hi"]
    assert factory.sessions[0].params_seen == [[42, "hi"]]


def test_client_parameter_types_win(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select $1::text, $2", oids=[20, 0]), fe.describe("S"), fe.SYNC)
    assert out[1].values == [20, 25]


def test_statement_without_rows_describes_as_nodata(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("begin"), fe.describe("S"), fe.bind(), fe.describe("P"), fe.execute(), fe.SYNC)
    assert kinds(out) == "1tn2nCZ"
    assert out[-1].values == ["T"]


def test_error_discards_until_sync(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("parsefail"), fe.bind(), fe.describe("P"), fe.execute(), fe.SYNC,
               fe.parse("select 1"), fe.bind(), fe.execute(), fe.SYNC)
    assert kinds(out) == "EZ" + "12TDCZ".replace("T", "")
    assert out[0].fields["C"] == "42601"


def test_execution_error_in_pipeline(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("fail"), fe.bind(), fe.execute(), fe.parse("select 1"), fe.bind(), fe.execute(),
               fe.SYNC)
    assert kinds(out) == "12EZ"


@pytest.mark.parametrize(
    ("messages", "sqlstate"),
    [
        ([fe.parse("select 1", "s"), fe.parse("select 2", "s")], "42P05"),
        ([fe.bind(statement="nope")], "26000"),
        ([fe.execute("nope")], "34000"),
        ([fe.describe("P", "nope")], "34000"),
        ([fe.describe("S", "nope")], "26000"),
        ([fe.parse("select 1"), fe.bind(portal="p"), fe.bind(portal="p")], "42P03"),
        ([fe.parse("select $1::int4"), fe.bind()], "08P01"),
        ([fe.parse("select $1::int4"), fe.bind([b"1"], param_formats=[0, 0])], "08P01"),
        ([fe.parse("select $1::int4"), fe.bind([b"1"], param_formats=[3])], "22023"),
        ([fe.parse("select $1::int4, $2::int4"), fe.bind([b"1", b"2"], result_formats=[1, 1, 1])], "08P01"),
        ([fe.parse("select $1::int4"), fe.bind([b"x"])], "22P02"),
        ([fe.parse("select $1::int4"), fe.bind([b"\x00\x01"], param_formats=[1])], "08P01"),
        ([fe.parse("select $1::int4"), fe.bind([b"\x00\x00\x00\x00\x01"], param_formats=[1])], "22P03"),
    ],
)
def test_extended_errors(factory: FakeFactory, messages: list[bytes], sqlstate: str) -> None:
    out = talk(factory, *messages, fe.execute(), fe.SYNC, fe.query("select 1"))
    errors = [m for m in out if m.kind == "E"]
    assert len(errors) == 1 and errors[0].fields["C"] == sqlstate and errors[0].fields["S"] == "ERROR"
    assert kinds(out).endswith("EZTDCZ")


def test_bind_error_names_the_parameter(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select $1::int4, $2::int4"), fe.bind([b"1", b"x"]), fe.SYNC)
    err = next(m for m in out if m.kind == "E")
    assert err.fields["M"] == 'invalid input syntax for type integer: "x"' and "$2" in err.fields["D"]
    out = talk(factory, fe.parse("select $1::int4"), fe.bind([b"\x00" * 5], param_formats=[1]), fe.SYNC)
    assert next(m for m in out if m.kind == "E").fields["M"] == "incorrect binary data format in bind parameter 1"


def test_unnamed_statement_and_portal_are_replaced(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select 1"), fe.parse("select 2"), fe.bind(), fe.bind(), fe.execute(), fe.SYNC)
    assert kinds(out) == "1122TDDCZ".replace("T", "")
    assert factory.sessions[0].closed_executions >= 1


def test_portal_suspended_and_resumed(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("begin"), fe.parse("select 5"), fe.bind(portal="c", result_formats=[1]),
               fe.execute("c", 2), fe.execute("c", 2), fe.execute("c", 2), fe.execute("c", 2), fe.SYNC)
    body = after_startup(out)[0:]  # after BEGIN's Z
    assert kinds(body) == "12DDsDDsDCCZ"
    ids = [struct.unpack("!q", m.values[0])[0] for m in body if m.kind == "D"]
    assert ids == [1, 2, 3, 4, 5]
    assert [m.values[0] for m in body if m.kind == "C"] == ["SELECT 5", "SELECT 5"]


def test_max_rows_larger_than_batch(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select 30"), fe.bind(), fe.execute("", 20), fe.SYNC, batch_rows=7)
    assert kinds(out) == "12" + "D" * 20 + "sZ"


def test_portals_end_with_the_transaction(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select 3"), fe.bind(portal="p"), fe.SYNC, fe.execute("p"), fe.SYNC)
    assert kinds(out) == "12ZEZ" and out[3].fields["C"] == "34000"
    out = talk(factory, fe.query("begin"), fe.parse("select 3"), fe.bind(portal="p"), fe.SYNC, fe.execute("p"), fe.SYNC)
    assert kinds(out) == "CZ12ZDDDCZ"


def test_close(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("select 1", "s"), fe.bind(portal="p", statement="s"), fe.close("P", "p"),
               fe.close("S", "s"), fe.close("S", "missing"), fe.close("P", "missing"), fe.execute("p"), fe.SYNC,
               fe.bind(statement="s"), fe.SYNC)
    assert kinds(out) == "123333EZEZ"
    assert [m.fields["C"] for m in out if m.kind == "E"] == ["34000", "26000"]


def test_flush_sends_without_sync() -> None:
    factory = FakeFactory()

    async def run() -> None:
        server = WireServer(factory)
        reader = asyncio.StreamReader()
        writer = fe.FakeWriter()
        task = asyncio.create_task(Connection(server, reader, writer).run())  # type: ignore[arg-type]
        reader.feed_data(fe.startup())
        for _ in range(200):
            await asyncio.sleep(0.005)
            if writer.data.endswith(b"Z\x00\x00\x00\x05I"):
                break
        start = len(writer.data)
        reader.feed_data(fe.parse("select 1") + fe.bind() + fe.execute() + fe.FLUSH)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if b"C\x00\x00\x00\x0dSELECT 1\x00" in writer.data[start:]:
                break
        assert kinds(fe.parse_backend(bytes(writer.data[start:]))) == "12DC"
        reader.feed_data(fe.TERMINATE)
        await asyncio.wait_for(task, 5)
        await server.close()

    asyncio.run(run())


# --------------------------------------------------------------------------- COPY


def test_copy_in_simple_query(factory: FakeFactory) -> None:
    rows = b"".join(b"%d\tname %d\t[%d,0,1]\n" % (i, i, i) for i in range(100))
    pieces = [fe.copy_data(rows[i : i + 77]) for i in range(0, len(rows), 77)]
    # the first piece alone, the rest in one packet: CopyData are gathered across packets (up to 1 MB)
    # and fed to the engine together
    out = talk(factory, fe.query("copy items from stdin"), pieces[0], b"".join(pieces[1:]) + fe.copy_data(b"\\.\n"),
               fe.COPY_DONE, fe.query("table items"))
    assert out[0].kind == "G"
    fmt, ncols = struct.unpack_from("!bh", out[0].body)
    assert (fmt, ncols) == (0, 3)
    assert out[1].values == ["COPY 100"] and out[2].kind == "Z"
    assert kinds(out[3:]) == "T" + "D" * 100 + "CZ"
    assert out[4].values == [b"0", b"name 0", b"[0,0,1]"]
    assert factory.copy_feeds == [1]


def test_copy_fail(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("copy items from stdin"), fe.copy_data(b"1\tx\t[1,2,3]\n"), fe.copy_fail("client gave up"),
               fe.query("select 1"))
    assert kinds(out) == "GEZTDCZ"
    assert out[1].fields["C"] == "57014" and out[1].fields["M"] == "COPY from stdin failed: client gave up"
    assert factory.aborted_copies == ["client gave up"]


def test_copy_error_inside_the_engine(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("copy broken from stdin"), fe.copy_data(b"1\n"), fe.copy_data(b"2\n"), fe.COPY_DONE,
               fe.query("select 1"))
    assert kinds(out) == "GEZTDCZ"  # the rest of the COPY is ignored after the error
    assert out[1].fields["C"] == "22P04" and factory.aborted_copies


def test_copy_bad_data_is_reported_at_copy_done(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("copy items from stdin"), fe.copy_data(b"1\tx\t[1,2]\n"), fe.COPY_DONE)
    assert kinds(out) == "GEZ"
    assert out[1].fields["C"] == "22000" and out[1].fields["M"] == "expected 3 dimensions, not 2"
    assert "COPY line 1" in out[1].fields["W"]


def test_unexpected_message_during_copy(factory: FakeFactory) -> None:
    out = talk(factory, fe.query("copy items from stdin"), fe.FLUSH, fe.SYNC, fe.query("select 1"), fe.query("select 1"))
    assert kinds(out) == "GEZTDCZ"
    assert out[1].fields["C"] == "08P01" and out[1].fields["S"] == "ERROR"


def test_copy_in_extended_query(factory: FakeFactory) -> None:
    out = talk(factory, fe.parse("copy items from stdin"), fe.bind(), fe.describe("P"), fe.execute(),
               fe.copy_data(b"7\tseven\t[7,7,7]\n"), fe.COPY_DONE, fe.SYNC)
    assert kinds(out) == "12nGCZ"
    assert out[4].values == ["COPY 1"]


def test_connection_lost_during_copy(factory: FakeFactory) -> None:
    converse(factory, fe.startup(), fe.query("copy items from stdin"), fe.copy_data(b"1\tx\t[1,2,3]\n"))
    assert factory.aborted_copies == ["connection closed during COPY"]
    assert factory.sessions[0].closed


def test_terminate_closes_portals_and_session(factory: FakeFactory) -> None:
    talk(factory, fe.query("begin"), fe.parse("select 3"), fe.bind(portal="a"), fe.bind(portal="b"), fe.SYNC)
    session = factory.sessions[0]
    assert session.closed and session.closed_executions == 3  # BEGIN's, then portals a and b
    assert factory.overlapping_calls == 0
