"""The same behaviours through real drivers over a real socket: psycopg 3, asyncpg and psql.

The server is a WireServer on 127.0.0.1 (port 0) in a background thread, over the fake engine of
fake_session.py. Values go both ways: the fake echoes decoded parameters back as a row, so a
value the client encodes is decoded by wire, re-encoded by wire, and decoded by the client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
import psycopg
import psycopg.errors
import pytest
from psycopg.adapt import Dumper
from psycopg.pq import Format

from tests.wire.conftest import PASSWORD, RunningServer
from tests.wire.fake_session import ROW_COLUMNS, expected_row
from wire import pgtypes as T

UTC = dt.UTC
_tables = itertools.count()


@pytest.fixture(autouse=True)
def engine_contract(fake_server: RunningServer) -> Iterator[None]:
    yield
    # the engine was called from worker threads only, one call at a time per session
    assert fake_server.factory.off_worker_calls == [] and fake_server.factory.overlapping_calls == 0


def table_name() -> str:
    return f"copied_{next(_tables)}_{os.getpid()}"


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def vec_text(values: list[float]) -> str:
    return "[" + ",".join(format(v, "g") if v != int(v) else str(int(v)) for v in values) + "]"


def expected_psycopg(i: int, *, binary: bool) -> tuple[Any, ...]:
    row = expected_row(i)
    out = []
    for col in ROW_COLUMNS:
        v = row[col.name]
        if v is not None and col.name == "emb":
            v = (struct.pack("!hh", 3, 0) + struct.pack("!3f", *v)) if binary else \
                "[" + ",".join(f"{x:g}" for x in np.float32(v).tolist()) + "]"
        elif v is not None and col.name == "doc":
            v = json.loads(v)
        elif v is not None and col.name == "ratio" and not binary:
            v = float(str(np.float32(v)))  # float4 text is the shortest float32 digits, read as a double
        out.append(v)
    return tuple(out)


# --------------------------------------------------------------------------- psycopg


def test_psycopg_text_results(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT 12").fetchall()
        assert rows == [expected_psycopg(i, binary=False) for i in range(1, 13)]
        assert [d.name for d in conn.execute("SELECT 1").description] == [c.name for c in ROW_COLUMNS]


def test_psycopg_binary_results(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        rows = cur.execute("SELECT 12").fetchall()
        assert rows == [expected_psycopg(i, binary=True) for i in range(1, 13)]


def test_psycopg_many_rows_are_streamed(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        rows = conn.execute("VECTORS 30000 4").fetchall()
        assert len(rows) == 30000
        assert rows[29999] == (29999, "[" + ",".join(f"{np.float32(v / 7)!s}" for v in range(119996, 120000)) + "]")


class VectorBinaryDumper(Dumper):
    """pgvector's binary format, as pgvector-python writes it."""

    format = Format.BINARY
    oid = T.VECTOR

    def dump(self, obj: Any) -> bytes:
        arr = np.asarray(obj, dtype=">f4")
        return struct.pack("!hh", len(arr), 0) + arr.tobytes()


PSYCOPG_VALUES = [
    ("int2", -32768), ("int2", 32767), ("int4", -(2**31)), ("int4", 2**31 - 1), ("int8", -(2**63)), ("int8", 2**63 - 1),
    ("int8", 0), ("float8", math.nan), ("float8", -0.0), ("float8", math.inf), ("float8", -math.inf), ("float8", 1e-5),
    ("float8", 1e15), ("float8", 1.2345678901234567e20), ("float8", 5e-324), ("float8", 0.1), ("float4", 1.5),
    ("bool", True), ("bool", False), ("text", ""), ("text", "héllo\t\"wörld\"\\\n"), ("text", "x" * 100_000),
    ("bytea", b""), ("bytea", bytes(range(256))), ("date", dt.date(2000, 1, 1)), ("date", dt.date(1, 1, 1)),
    ("date", dt.date(9999, 12, 31)), ("date", dt.date(1999, 12, 31)), ("timestamp", dt.datetime(2000, 1, 1)),
    ("timestamp", dt.datetime(1999, 12, 31, 23, 59, 59, 999999)), ("timestamp", dt.datetime(1, 1, 1)),
    ("timestamp", dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ("timestamptz", dt.datetime(2000, 1, 1, tzinfo=UTC)),
    ("timestamptz", dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))),
    ("numeric", Decimal(0)), ("numeric", Decimal("-1.50")), ("numeric", Decimal("1E-20")),
    ("numeric", Decimal("123456789012345678901234567890.123456789")), ("numeric", Decimal("NaN")),
    ("uuid", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")), ("uuid", uuid.UUID(int=0)),
    ("jsonb", psycopg.types.json.Jsonb({"a": [1, 2, None]})), ("json", psycopg.types.json.Json([1, "x"])),
    ("int8[]", [1, None, -(2**40)]), ("text[]", ["a", "b c", None, "NULL", "", '"q"\\']), ("float8[]", [1.5, -0.0]),
    ("bool[]", [True, False]),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_parameters_round_trip(fake_server: RunningServer, binary: bool) -> None:
    placeholder = "%b" if binary else "%t"
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        for type_name, value in PSYCOPG_VALUES:
            (got,) = cur.execute(f"SELECT {placeholder}::{type_name}", [value]).fetchone()
            expected = value.obj if isinstance(value, (psycopg.types.json.Jsonb, psycopg.types.json.Json)) else value
            if type_name == "float4":
                expected = float(np.float32(value))
            assert same(got, expected) or (isinstance(got, Decimal) and got.is_nan()), (type_name, value, got)
        # NULL of every kind
        assert cur.execute(f"SELECT {placeholder}::int4, {placeholder}::text", [None, None]).fetchone() == (None, None)


def test_psycopg_vector_parameters(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        (got,) = conn.execute("SELECT %s::vector", ["[1, 2.5 ,-3e-2]"]).fetchone()
        assert got == "[1,2.5,-0.03]"
        conn.adapters.register_dumper(np.ndarray, VectorBinaryDumper)
        big = np.random.default_rng(1).standard_normal(2000).astype(np.float32)
        cur = conn.cursor(binary=True)
        (got,) = cur.execute("SELECT %b", [big]).fetchone()
        assert got == struct.pack("!hh", 2000, 0) + big.astype(">f4").tobytes()
        (got,) = conn.execute("SELECT %b", [np.array([0.5, -0.0], np.float32)]).fetchone()
        assert got == "[0.5,-0]"
        with pytest.raises(psycopg.errors.DataException, match="NaN not allowed in vector"):
            conn.execute("SELECT %b", [np.array([math.nan], np.float32)])
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("SELECT %s::vector", ["1,2"])


def test_psycopg_prepared_statements(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True, prepare_threshold=0) as conn:
        for i in range(5):
            assert conn.execute("SELECT %s::int8, %s::text", [i, f"v{i}"], prepare=True).fetchone() == (i, f"v{i}")
        assert conn.execute("SELECT 3", prepare=True).fetchall() == [expected_psycopg(i, binary=False) for i in (1, 2, 3)]


def test_psycopg_pipeline_executemany(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        rows = [(i, f"name {i}", dt.date(2000, 1, 1) + dt.timedelta(days=i)) for i in range(200)]
        with conn.pipeline():
            cur = conn.cursor()
            cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", rows)
            results = [conn.cursor().execute("SELECT %s::int4", [i]) for i in range(3)]
        assert [r.fetchone() for r in results] == [(0,), (1,), (2,)]
        session = fake_server.factory.sessions[-1]
        assert session.params_seen[:200] == [list(r) for r in rows]
    assert fake_server.factory.overlapping_calls == 0


def test_psycopg_copy(fake_server: RunningServer) -> None:
    name = table_name()
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"row\t{i}\n\\", f"[{i},0.5,-1e-05]"))
        assert conn.execute(f"TABLE {name}").fetchall()[998:] == [
            (998, "row\t998\n\\", "[998,0.5,-1e-05]"), (999, "row\t999\n\\", "[999,0.5,-1e-05]")]
        bad_dimension = pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2")
        with bad_dimension, conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
            copy.write_row((1, "x", "[1,2]"))
        with pytest.raises(RuntimeError), conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
            copy.write_row((1, "x", "[1,2,3]"))
            raise RuntimeError("client changed its mind")  # psycopg sends CopyFail, then re-raises
        assert "client changed its mind" in fake_server.factory.aborted_copies[-1]
        assert conn.execute("SELECT %s::int4", [1]).fetchone() == (1,)


def test_psycopg_errors_and_transactions(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn()) as conn:  # not autocommit: psycopg sends BEGIN
        with pytest.raises(psycopg.errors.SyntaxError) as exc:
            conn.execute("FAIL")
        assert exc.value.diag.sqlstate == "42601" and exc.value.diag.message_hint == "Try something else."
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("SELECT %s::text", ["ok"]).fetchone() == ("ok",)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.commit()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(psycopg.errors.InternalError_, match="boom"):
            conn.execute("CRASH")
        conn.rollback()
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.autocommit = True
        conn.execute("NOTICE look out")
        assert notices == ["look out"]
        conn.execute("SET application_name = 'renamed'")
        assert conn.info.parameter_status("application_name") == "renamed"


def test_psycopg_cancel_safe(fake_server: RunningServer) -> None:
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        before = fake_server.factory.cancels
        fake_server.factory.sleeping.clear()

        def cancel_when_running() -> None:
            fake_server.factory.sleeping.wait(10)
            conn.cancel_safe()

        threading.Thread(target=cancel_when_running).start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to user request"):
            conn.execute("SLEEP 20")
        assert time.monotonic() - started < 15
        assert fake_server.factory.cancels == before + 1
        assert conn.execute("SELECT %s::int4", [7]).fetchone() == (7,)


def test_psycopg_cancel_from_another_process(subprocess_server: RunningServer) -> None:
    # libpq's classic PQcancel blocks while holding the GIL, so the server must be elsewhere.
    with psycopg.connect(subprocess_server.dsn(), autocommit=True) as conn:
        timer = threading.Timer(0.3, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SLEEP 20")
        assert time.monotonic() - started < 15
        assert conn.execute("SELECT %s::int4", [7]).fetchone() == (7,)
        # a cancel with nothing running is harmless
        conn.cancel()
        assert conn.execute("SELECT %s::int4", [8]).fetchone() == (8,)


def test_psycopg_password(password_server: RunningServer) -> None:
    with psycopg.connect(password_server.dsn()) as conn:
        assert conn.execute("SELECT %s::text", ["in"]).fetchone() == ("in",)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "postgres"'):
        psycopg.connect(password_server.dsn(password="wrong"))


def test_random_bytes_do_not_disturb_other_clients(fake_server: RunningServer) -> None:
    rng = np.random.default_rng(2)
    with psycopg.connect(fake_server.dsn(), autocommit=True) as conn:
        for round_ in range(20):
            with socket.create_connection((fake_server.host, fake_server.port), timeout=5) as bad:
                garbage = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
                if round_ % 2:
                    garbage = struct.pack("!ii", 8 + 2, 196608) + b"\x00\x00" + garbage  # startup, then junk
                bad.sendall(garbage)
                bad.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := bad.recv(65536):
                    answer += chunk
                assert answer == b"" or answer.startswith((b"E", b"R", b"N"))
            assert conn.execute("SELECT %s::int4", [round_]).fetchone() == (round_,)


# --------------------------------------------------------------------------- asyncpg


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# asyncpg sends date.min / date.max as -infinity / infinity, which have no Python value on our side
# (they are refused with 22008), so the extremes here are one day inside.
ASYNCPG_VALUES = [
    ("int2", -32768), ("int4", 2**31 - 1), ("int8", -(2**63)), ("float8", math.inf), ("float8", -0.0),
    ("float8", math.nan), ("float8", 1e-300), ("float4", 3.4028234663852886e38), ("bool", True), ("text", "ünïcode ✓"),
    ("bytea", b"\x00\xff"), ("date", dt.date(1, 1, 2)), ("date", dt.date(2000, 1, 1)), ("date", dt.date(9999, 12, 30)),
    ("timestamp", dt.datetime(1999, 12, 31, 23, 59, 59, 999999)), ("timestamp", dt.datetime(1970, 1, 1)),
    ("timestamptz", dt.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC)), ("numeric", Decimal("-0.000001")),
    ("numeric", Decimal("99999999999999999999.99")), ("numeric", Decimal("1.50")), ("numeric", Decimal(0)),
    ("numeric", Decimal("NaN")), ("uuid", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("jsonb", '{"a": 1}'), ("json", "[1, 2]"), ("text[]", ["a", "b c", None, "", '"q"']),
]


def test_asyncpg_parameters_round_trip(fake_server: RunningServer) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(host=fake_server.host, port=fake_server.port, user="postgres", database="sqlvec")
        try:
            for type_name, value in ASYNCPG_VALUES:
                got = await conn.fetchval(f"SELECT $1::{type_name}", value)
                if type_name == "timestamptz":
                    got = got.astimezone(UTC)
                assert same(got, value) or (isinstance(got, Decimal) and got.is_nan()), (type_name, value, got)
            assert await conn.fetchval("SELECT $1::int4", None) is None
            row = await conn.fetchrow("SELECT $1::int8, $2::text, $3::float8", 5, "x", 0.5)
            assert tuple(row) == (5, "x", 0.5)
        finally:
            await conn.close()

    run(main())


def test_asyncpg_results_and_cursors(fake_server: RunningServer) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(host=fake_server.host, port=fake_server.port, user="postgres", database="sqlvec")
        try:
            rows = await conn.fetch("PLAIN 6")
            for i, row in enumerate(rows, start=1):
                want = {k: v for k, v in expected_row(i).items() if k != "emb"}
                assert dict(row) == want
            async with conn.transaction():
                fake_server.factory.fetch_sizes.clear()
                seen = [r["id"] async for r in conn.cursor("PLAIN 25", prefetch=4)]
                assert seen == list(range(1, 26))
                assert fake_server.factory.fetch_sizes[:7] == [4] * 7  # Execute(4) -> PortalSuspended
                stmt = await conn.prepare("PLAIN 25")
                cursor = await stmt.cursor()
                assert [r["id"] for r in await cursor.fetch(5)] == [1, 2, 3, 4, 5]
                assert [r["id"] for r in await cursor.fetch(3)] == [6, 7, 8]
            await conn.executemany("INSERT INTO t VALUES ($1::int4, $2::text)", [(1, "a"), (2, "b")])
            with pytest.raises(asyncpg.PostgresSyntaxError) as exc:
                await conn.execute("FAIL")
            assert exc.value.sqlstate == "42601"
            assert await conn.fetchval("SELECT $1::text", "still fine") == "still fine"
        finally:
            await conn.close()

    run(main())


def test_asyncpg_password(password_server: RunningServer) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(host=password_server.host, port=password_server.port, user="postgres",
                                     database="sqlvec", password=PASSWORD)
        assert await conn.fetchval("SELECT $1::int4", 3) == 3
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError) as exc:
            await asyncpg.connect(host=password_server.host, port=password_server.port, user="postgres",
                                  database="sqlvec", password="wrong")
        assert exc.value.sqlstate == "28P01"

    run(main())


# --------------------------------------------------------------------------- psql

PSQL = "/usr/bin/psql"


def psql(server: RunningServer, *args: str, password: str | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run([PSQL, "-h", server.host, "-p", str(server.port), "-U", "postgres", "-d", "sqlvec", "-X",
                           "-A", "-t", *args], input=stdin, capture_output=True, text=True, env=env, timeout=30,
                          check=False)


pytestmark_psql = pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")


@pytestmark_psql
def test_psql_queries(fake_server: RunningServer) -> None:
    result = psql(fake_server, "-c", "SELECT 2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("|")[:5] == ["1", "name 1", "-0.75", "f", "[1,0.5,-1]"]
    result = psql(fake_server, "-c", "FAIL")
    assert result.returncode == 1 and 'syntax error at or near "FAIL"' in result.stderr
    result = psql(fake_server, "-c", "NOTICE hello from the engine")
    assert "NOTICE:  hello from the engine" in result.stderr


@pytestmark_psql
def test_psql_copy(fake_server: RunningServer) -> None:
    name = table_name()
    result = psql(fake_server, "-c", f"COPY {name} FROM STDIN", stdin="1\tone\t[1,2,3]\n2\ttwo\t[4,5,6]\n\\.\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "COPY 2"
    result = psql(fake_server, "-c", f"TABLE {name}")
    assert result.stdout.splitlines() == ["1|one|[1,2,3]", "2|two|[4,5,6]"]


@pytestmark_psql
def test_psql_password(password_server: RunningServer) -> None:
    assert psql(password_server, "-c", "SELECT 1", password=PASSWORD).returncode == 0
    wrong = psql(password_server, "-c", "SELECT 1", password="wrong")
    assert wrong.returncode == 2
    assert 'password authentication failed for user "postgres"' in wrong.stderr
