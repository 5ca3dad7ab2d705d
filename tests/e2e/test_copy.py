"""COPY FROM STDIN and TO STDOUT in text, CSV and binary through psycopg, asyncpg and psql, with
PostgreSQL's answers: every test here is ``pg_compatible`` (SQLVEC_TEST_PG=pgserver runs them
against PostgreSQL 16 + pgvector), so the bytes, the errors and their CONTEXT lines are proven."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import uuid
from decimal import Decimal

import asyncpg
import numpy as np
import psycopg
import pytest
from pgvector.psycopg.vector import register_vector_info
from psycopg.types import TypeInfo

pytestmark = pytest.mark.pg_compatible

COLUMNS = "id, tag, n, e"


@pytest.fixture()
def items(conn, table_name):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, tag text, n float8, e vector(3))")
    return table_name


def rows(conn, t):
    return conn.execute(f"SELECT id, tag, n, e::text FROM {t} ORDER BY id").fetchall()


def copy_in(conn, sql, data):
    with conn.cursor() as cur:
        with cur.copy(sql) as cp:
            cp.write(data)
        return cur.rowcount


def copy_out(conn, sql) -> bytes:
    with conn.cursor() as cur, cur.copy(sql) as cp:
        return b"".join(bytes(chunk) for chunk in cp)


def with_vector(conn):
    """pgvector's psycopg adapters for this connection. register_vector itself looks the types up in
    pg_type; the OID from a result description serves on both servers until sqlvec has pg_type."""
    oid = conn.execute("SELECT NULL::vector").description[0].type_code
    register_vector_info(conn, TypeInfo("vector", oid, 0))
    return conn


SAMPLE = [(1, "a;b", 1.5, "[1,2,3]"), (2, None, None, None), (3, 'x\ny "q"', -0.25, "[0,0,1]")]


def test_csv_from_with_header_null_delimiter_and_quoted_fields(conn, items):
    data = ('id;tag;n;e\n'
            '1;"a;b";1.5;"[1,2,3]"\n'
            '2;NA;NA;NA\n'
            '3;"x\ny ""q""";-0.25;[0,0,1]\n')
    assert copy_in(conn, f"COPY {items} ({COLUMNS}) FROM STDIN (FORMAT csv, HEADER true, NULL 'NA', DELIMITER ';')",
                   data) == 3
    assert rows(conn, items) == SAMPLE


def test_csv_legacy_spelling_force_null_and_force_not_null(conn, items):
    copy_in(conn, f"COPY {items} ({COLUMNS}) FROM STDIN WITH CSV FORCE NOT NULL tag", '1,,,"[1,1,1]"\n')
    copy_in(conn, f"COPY {items} ({COLUMNS}) FROM STDIN (FORMAT csv, FORCE_NULL (tag, n))", '2,"",,"[2,2,2]"\n')
    assert rows(conn, items) == [(1, "", None, "[1,1,1]"), (2, None, None, "[2,2,2]")]


def test_csv_header_match_checks_the_column_names(conn, items):
    sql = f"COPY {items} (id, tag) FROM STDIN (FORMAT csv, HEADER match)"
    assert copy_in(conn, sql, "id,tag\n1,x\n") == 1
    with pytest.raises(psycopg.errors.BadCopyFileFormat) as e:
        copy_in(conn, sql, "id,label\n2,y\n")
    assert e.value.diag.message_primary == 'column name mismatch in header line field 2: got "label", expected "tag"'
    assert rows(conn, items) == [(1, "x", None, None)]


def test_text_from_with_header_and_a_custom_null(conn, items):
    data = "id|tag|n|e\n1|a\\|b|1.5|[1,2,3]\n2|-|-|-\n3|x\\ny \"q\"|-0.25|[0,0,1]\n"
    assert copy_in(conn, f"COPY {items} ({COLUMNS}) FROM STDIN (DELIMITER '|', NULL '-', HEADER)", data) == 3
    assert rows(conn, items)[1:] == SAMPLE[1:]
    assert rows(conn, items)[0] == (1, "a|b", 1.5, "[1,2,3]")


def test_binary_write_row_with_every_common_type(conn, table_name):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id bigint PRIMARY KEY, s smallint, i int, r real, d float8, b bool, "
                 "t text, raw bytea, day date, at timestamp, u uuid, num numeric, j jsonb, xs int[], e vector(3))")
    with_vector(conn)
    types = ["int8", "int2", "int4", "float4", "float8", "bool", "text", "bytea", "date", "timestamp", "uuid",
             "numeric", "jsonb", "int4[]", "vector"]
    full = (1, 2, 3, 1.5, -2.25, True, "héllo", b"\x00\xff", dt.date(2024, 2, 29),
            dt.datetime(2001, 2, 3, 4, 5, 6, 7), uuid.UUID(int=42), Decimal("12345678901234567890.5"),
            psycopg.types.json.Jsonb({"k": [1, None]}), [1, None, 3], np.array([1, 2, 3], np.float32))
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table_name} FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(types)
            cp.write_row(full)
            cp.write_row((2,) + (None,) * 14)
        assert cur.rowcount == 2
    got = conn.execute(f"SELECT * FROM {table_name} ORDER BY id").fetchall()
    assert got[0][:12] == full[:12]
    assert got[0][12] == {"k": [1, None]} and got[0][13] == [1, None, 3] and list(got[0][14]) == [1, 2, 3]
    assert got[1] == (2,) + (None,) * 14
    # and back out in binary: the same values
    with conn.cursor() as cur, cur.copy(f"COPY {table_name} TO STDOUT (FORMAT binary)") as cp:
        cp.set_types(types)
        out = list(cp.rows())
    assert out[0][:12] == full[:12] and list(out[0][14]) == [1, 2, 3] and out[1] == (2,) + (None,) * 14


def test_copy_to_stdout_text_and_csv_bytes(conn, items):
    conn.cursor().executemany(f"INSERT INTO {items} VALUES (%s, %s, %s, %s)", SAMPLE)
    assert copy_out(conn, f"COPY {items} TO STDOUT") == (
        b'1\ta;b\t1.5\t[1,2,3]\n2\t\\N\t\\N\t\\N\n3\tx\\ny "q"\t-0.25\t[0,0,1]\n')
    assert copy_out(conn, f"COPY {items} (id, tag) TO STDOUT (FORMAT csv, HEADER, FORCE_QUOTE (tag))") == (
        b'id,tag\n1,"a;b"\n2,\n3,"x\ny ""q"""\n')
    assert copy_out(conn, f"COPY {items} TO STDOUT WITH CSV DELIMITER ';' NULL 'NA'") == (
        b'1;"a;b";1.5;[1,2,3]\n2;NA;NA;NA\n3;"x\ny ""q""";-0.25;[0,0,1]\n')
    with conn.cursor() as cur:
        with cur.copy(f"COPY {items} TO STDOUT") as cp:
            assert [row for row in cp.rows()] == [(str(i), t, None if n is None else str(n), e) for i, t, n, e in SAMPLE]


def test_copy_query_to_stdout_in_distance_order(conn, items):
    conn.cursor().executemany(f"INSERT INTO {items} VALUES (%s, %s, %s, %s)", SAMPLE)
    sql = (f"COPY (SELECT id, e <-> '[0,0,0]' AS d FROM {items} WHERE e IS NOT NULL ORDER BY d) "
           "TO STDOUT WITH (FORMAT csv, HEADER)")
    assert copy_out(conn, sql) == b"id,d\n3,1\n1,3.7416573867739413\n"


def test_round_trip_through_every_format(conn, items, table_name):
    conn.cursor().executemany(f"INSERT INTO {items} VALUES (%s, %s, %s, %s)", SAMPLE)
    for fmt in ["text", "csv", "binary"]:
        target = f"{table_name}_{fmt}"
        conn.execute(f"CREATE TABLE {target} (id int PRIMARY KEY, tag text, n float8, e vector(3))")
        data = copy_out(conn, f"COPY {items} TO STDOUT (FORMAT {fmt})")
        assert copy_in(conn, f"COPY {target} FROM STDIN (FORMAT {fmt})", data) == 3
        assert rows(conn, target) == SAMPLE, fmt


def test_empty_table_and_empty_input(conn, items):
    assert copy_out(conn, f"COPY {items} TO STDOUT") == b""
    assert copy_out(conn, f"COPY {items} TO STDOUT (FORMAT csv, HEADER)") == b"id,tag,n,e\n"
    assert copy_out(conn, f"COPY {items} TO STDOUT (FORMAT binary)") == (
        b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff")
    for fmt in ["text", "csv"]:
        assert copy_in(conn, f"COPY {items} FROM STDIN (FORMAT {fmt})", "") == 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY {items} TO STDOUT") as cp:
            assert list(cp) == []
        assert cur.rowcount == 0


BAD_ROWS = [
    ("text", "1\ta\t1\t[1,2,3]\n2\tb\tx\t[1,2,3]\n", "22P02", 'invalid input syntax for type double precision: "x"',
     'line 2, column n: "x"'),
    ("csv", '1,a,1,"[1,2,3]"\n2,b,2,"[1,2]"\n', "22000", "expected 3 dimensions, not 2", 'line 2, column e: "[1,2]"'),
    ("csv", '1,a,1,"[1,2,3]"\n\n', "22P04", 'missing data for column "tag"', 'line 2: ""'),
    ("csv", '1,a,1,"[1,2,3]"\n2,"b,2\n', "22P04", "unterminated CSV quoted field", 'line 3: "2,"b,2\n"'),
    ("text", "1\ta\t1\t[1,2,3]\t9\n", "22P04", "extra data after last expected column", 'line 1: "1\ta\t1\t[1,2,3]\t9"'),
    ("text", "1\t" + "x" * 200 + "\t1\t[1,2,3]\t9\n", "22P04", "extra data after last expected column",
     'line 1: "1\t' + "x" * 98 + '..."'),  # at most 100 bytes of a line, as PostgreSQL prints it
]


@pytest.mark.parametrize(("fmt", "data", "sqlstate", "message", "where"), BAD_ROWS)
def test_a_bad_row_names_its_line_and_nothing_is_copied(conn, items, fmt, data, sqlstate, message, where):
    conn.execute(f"INSERT INTO {items} VALUES (100, 'kept', 0, '[0,0,0]')")
    with pytest.raises(psycopg.Error) as e:
        copy_in(conn, f"COPY {items} FROM STDIN (FORMAT {fmt})", data)
    assert (e.value.sqlstate, e.value.diag.message_primary) == (sqlstate, message)
    assert e.value.diag.context == f"COPY {items}, {where}"
    assert rows(conn, items) == [(100, "kept", 0.0, "[0,0,0]")]


def test_a_duplicate_key_rolls_the_whole_copy_back(conn, items):
    conn.execute(f"INSERT INTO {items} VALUES (2, 'kept', 0, '[0,0,0]')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_in(conn, f"COPY {items} FROM STDIN (FORMAT csv)", "1,a,1,\n2,b,2,\n3,c,3,\n")
    assert rows(conn, items) == [(2, "kept", 0.0, "[0,0,0]")]


def test_binary_input_errors(conn, items):
    signature = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    one_field = signature + b"\x00\x01" + b"\x00\x00\x00\x04\x00\x00\x00\x01" + b"\xff\xff"
    with pytest.raises(psycopg.errors.BadCopyFileFormat) as e:
        copy_in(conn, f"COPY {items} FROM STDIN (FORMAT binary)", one_field)
    assert e.value.diag.message_primary == "row field count is 1, expected 4"
    assert e.value.diag.context == f"COPY {items}, line 1"
    with pytest.raises(psycopg.errors.BadCopyFileFormat) as e:
        copy_in(conn, f"COPY {items} FROM STDIN (FORMAT binary)", b"1\tx\t\\N\t\\N\n")
    assert e.value.diag.message_primary == "COPY file signature not recognized"
    assert rows(conn, items) == []


OPTION_ERRORS = [
    ("COPY {t} FROM STDIN (FORMAT xml)", "22023", 'COPY format "xml" not recognized'),
    ("COPY {t} FROM STDIN (FORMAT csv, FORMAT csv)", "42601", "conflicting or redundant options"),
    ("COPY {t} FROM STDIN (DELIMITER ';;')", "0A000", "COPY delimiter must be a single one-byte character"),
    ("COPY {t} FROM STDIN (QUOTE '''')", "0A000", "COPY quote available only in CSV mode"),
    ("COPY {t} FROM STDIN (FORMAT binary, NULL 'x')", "42601", "cannot specify NULL in BINARY mode"),
    ("COPY {t} FROM STDIN (FORMAT csv, FORCE_QUOTE (id))", "0A000", "COPY force quote only available using COPY TO"),
    ("COPY {t} TO STDOUT (FORMAT csv, FORCE_NULL (id))", "0A000", "COPY force null only available using COPY FROM"),
    ("COPY {t} (id) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (tag))", "42P10",
     'FORCE_NOT_NULL column "tag" not referenced by COPY'),
    ("COPY {t} FROM STDIN (FORMAT csv, FORCE_NOT_NULL (nope))", "42703", 'column "nope" of relation "{t}" does not exist'),
    ("COPY {t} (id, id) FROM STDIN", "42701", 'column "id" specified more than once'),
    ("COPY {t} (nope) FROM STDIN", "42703", 'column "nope" of relation "{t}" does not exist'),
    ("COPY {t} TO STDOUT (HEADER match)", "0A000", "cannot use \"match\" with HEADER in COPY TO"),
    ("COPY {t} FROM STDIN (BOGUS 1)", "42601", 'option "bogus" not recognized'),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message"), OPTION_ERRORS)
def test_option_errors(conn, items, sql, sqlstate, message):
    with pytest.raises(psycopg.Error) as e:
        with conn.cursor() as cur, cur.copy(sql.format(t=items)) as cp:
            cp.write("")
    assert (e.value.sqlstate, e.value.diag.message_primary) == (sqlstate, message.format(t=items))
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_asyncpg_copy_records_and_copy_out(server, conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, tag text, n float8, at timestamp)")
    records = [(i, f"t{i}" if i % 3 else None, i / 4, dt.datetime(2020, 1, 1) + dt.timedelta(seconds=i))
               for i in range(500)]

    async def main():
        c = await asyncpg.connect(server.url)
        try:
            status = await c.copy_records_to_table(table_name, records=records, columns=["id", "tag", "n", "at"])
            back = await c.fetch(f"SELECT id, tag, n, at FROM {table_name} ORDER BY id")
            sink = bytearray()

            async def collect(chunk):
                sink.extend(chunk)

            out = await c.copy_from_query(f"SELECT id, tag FROM {table_name} WHERE id < 4 ORDER BY id",
                                          output=collect, format="csv")
            return status, [tuple(r) for r in back], bytes(sink), out
        finally:
            await c.close()

    status, back, csv, out = asyncio.run(main())
    assert status == "COPY 500" and back == records
    assert csv == b"0,\n1,t1\n2,t2\n3,\n" and out == "COPY 4"


def test_psql_backslash_copy(server, conn, items, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,tag,n,e\n1,"a;b",1.5,"[1,2,3]"\n2,,,\n')
    env = {"PGPASSWORD": server.password or "", "PATH": "/usr/bin:/bin"}
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.url]
    run = subprocess.run(cmd + ["-c", f"\\copy {items} from '{source}' with (format csv, header)"],
                         capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    target = tmp_path / "out.csv"
    run = subprocess.run(cmd + ["-c", f"\\copy (SELECT id, tag, e FROM {items} ORDER BY id) to '{target}' csv header"],
                         capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert target.read_text() == 'id,tag,e\n1,a;b,"[1,2,3]"\n2,,\n'


@pytest.mark.parametrize(("sql", "position"), [
    ("COPY {t} FROM STDIN (FORMAT xml)", 22),
    ("COPY {t} FROM STDIN (FORMAT csv, FORMAT csv)", 34),
    ("COPY {t} FROM STDIN (BOGUS 1)", 22),
    ("COPY {t} FROM STDIN WITH CSV CSV", 30),
])
def test_option_errors_point_at_the_option(conn, items, sql, position):
    sql = sql.format(t=items)
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql)
    assert e.value.diag.statement_position == str(position + len(items) - 3)


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_copy_larger_than_a_decode_chunk(conn, table_name, fmt):
    """Over 16 MB: decoded chunk by chunk as it arrives, rows built per chunk, one insert at the end."""
    n, dim = 40_000, 128 if fmt == "binary" else 96
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector({dim}), tag text DEFAULT 'd')")
    if fmt == "text":
        data = "".join(f"{i}\t[{','.join(repr(float(v)) for v in row)}]\n" for i, row in enumerate(x)).encode()
        sql = f"COPY {table_name} (id, e) FROM STDIN"
    else:
        import struct
        rec = np.zeros(n, np.dtype([("k", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("dim", ">i2"),
                                    ("u", ">i2"), ("e", ">f4", (dim,))]))
        rec["k"], rec["l1"], rec["l2"], rec["dim"] = 2, 4, 4 + 4 * dim, dim
        rec["id"], rec["e"] = np.arange(n), x
        data = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rec.tobytes() + struct.pack(">h", -1)
        sql = f"COPY {table_name} (id, e) FROM STDIN (FORMAT binary)"
    assert len(data) > 16 << 20
    with conn.cursor() as cur, cur.copy(sql) as cp:
        for start in range(0, len(data), 1 << 20):
            cp.write(data[start: start + (1 << 20)])
    assert conn.execute(f"SELECT count(*), sum(id), min(tag), max(tag) FROM {table_name}").fetchone() == (
        n, n * (n - 1) // 2, "d", "d")
    for i in (0, 17_777, n - 1):
        got = conn.execute(f"SELECT e::text FROM {table_name} WHERE id = %s", (i,)).fetchone()[0]
        assert np.array_equal(np.array(got[1:-1].split(","), np.float32), x[i])
