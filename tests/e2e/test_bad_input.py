"""Bad input gets the right SQLSTATE, changes nothing, and the server keeps serving."""

from __future__ import annotations

import os
import socket
import struct

import psycopg
import pytest


@pytest.fixture()
def items(conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, e vector(3))")
    conn.execute(f"INSERT INTO {table_name} VALUES (1, '[1,2,3]')")
    return table_name


@pytest.mark.pg_compatible
@pytest.mark.parametrize("sql, sqlstate", [
    ("INSERT INTO {t} VALUES (2, '[1,2]')", "22000"),            # wrong dimension
    ("INSERT INTO {t} VALUES (2, '[1,NaN,3]')", "22000"),        # NaN
    ("INSERT INTO {t} VALUES (2, '[1,Infinity,3]')", "22000"),   # Inf
    ("INSERT INTO {t} VALUES (2, '1,2,3')", "22P02"),           # malformed vector
    ("SELECT * FROM no_such_table", "42P01"),
    ("SELECT no_such_column FROM {t}", "42703"),
    ("INSERT INTO {t} VALUES ('abc', '[1,2,3]')", "22P02"),      # type mismatch
    ("INSERT INTO {t} VALUES (1, '[4,5,6]')", "23505"),          # duplicate key
    ("SELEC 1", "42601"),
    ("INSERT INTO {t} VALUES (99999999999, '[1,2,3]')", "22003"),
])
def test_error_sqlstate_and_nothing_changes(conn, items, sql, sqlstate):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql.format(t=items))
    assert e.value.sqlstate == sqlstate, e.value
    assert conn.execute(f"SELECT id, e::text FROM {items}").fetchall() == [(1, "[1,2,3]")]


def test_messages_name_what_is_wrong(conn, items):
    with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2"):
        conn.execute(f"INSERT INTO {items} VALUES (2, '[1,2]')")
    with pytest.raises(psycopg.errors.UniqueViolation) as e:
        conn.execute(f"INSERT INTO {items} VALUES (1, '[1,2,3]')")
    assert e.value.diag.message_detail == "Key (id)=(1) already exists."
    with pytest.raises(psycopg.errors.SyntaxError) as e:
        conn.execute("SELECT * FROM WHERE")
    assert e.value.diag.statement_position is not None


def test_random_bytes_on_a_socket_do_not_disturb_others(server, items):
    rng = os.urandom
    with psycopg.connect(server.dsn, autocommit=True) as good:
        for i in range(20):
            s = socket.create_connection((server.host, server.port))
            payload = rng(64 + i * 37)
            if i % 3 == 0:  # a valid startup, then garbage
                params = b"user\x00postgres\x00database\x00sqlvec\x00\x00"
                s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params + payload)
            elif i % 3 == 1:  # an absurd length
                s.sendall(struct.pack("!i", 0x7FFFFFF0) + payload)
            else:
                s.sendall(payload)
            s.settimeout(2)
            try:
                s.recv(4096)
            except OSError:
                pass
            s.close()
            assert good.execute(f"SELECT count(*) FROM {items}").fetchone() == (1,)


def test_cancel_request(server):
    # a cross join large enough to take a while in DuckDB
    with psycopg.connect(server.dsn, autocommit=True) as c:
        import threading

        timer = threading.Timer(0.5, c.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT count(*) FROM range(100000) a, range(100000) b, range(1000) c")
        timer.cancel()
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.pg_compatible
@pytest.mark.parametrize("sql, near, position", [
    ("SELEC 1", "SELEC", 1),
    ("SELECT * FROM WHERE", "WHERE", 15),
])
def test_syntax_error_position(conn, sql, near, position):
    with pytest.raises(psycopg.errors.SyntaxError) as e:
        conn.execute(sql)
    assert e.value.diag.message_primary == f'syntax error at or near "{near}"'
    assert int(e.value.diag.statement_position) == position


def test_garbled_sql_gets_errors_and_the_server_keeps_serving(conn, items):
    import random

    rng = random.Random(7)
    fragments = ["SELECT", "FROM", items, "WHERE", "e", "<->", "'[1,2,3]'", "ORDER BY", "LIMIT", "(", ")", ",",
                 "$1", "::vector", "'", '"', "1e999", "-", "NULL", "INSERT INTO", "VALUES", ";", "DROP", "\\x00",
                 "jsonb", "->>", "'{\"a\":1}'", "9" * 400, "é", "BEGIN", "COMMIT", "COPY", "CREATE TABLE"]
    for _ in range(300):
        sql = " ".join(rng.choice(fragments) for _ in range(rng.randint(1, 12))).replace("\\x00", "")
        if "DROP" in sql or "COMMIT" in sql or "BEGIN" in sql or "COPY" in sql:
            continue
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            assert e.sqlstate and e.sqlstate != "XX000", (sql, e.sqlstate, str(e))
    assert conn.execute(f"SELECT id, e::text FROM {items}").fetchall() == [(1, "[1,2,3]")]


@pytest.mark.pg_compatible
def test_huge_values(conn, items):
    with pytest.raises(psycopg.errors.DataException, match="infinite value not allowed in vector"):
        conn.execute(f"INSERT INTO {items} VALUES (2, '[1e39,1,1]')")  # beyond float32
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"INSERT INTO {items} VALUES ({'9' * 400}, '[1,2,3]')")
    assert e.value.sqlstate in ("22003", "42804")
    big = "[" + ",".join(["1"] * 16001) + "]"
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT %s::vector", [big])
    assert e.value.sqlstate == "54000"
    assert conn.execute(f"SELECT count(*) FROM {items}").fetchone() == (1,)


@pytest.mark.parametrize("sql", ["COPY {t} FROM '/etc/passwd'", "COPY {t} TO '/tmp/out.txt'",
                                 "COPY {t} FROM PROGRAM 'cat /etc/passwd'"])
def test_copy_with_server_files_is_refused(conn, items, sql):
    """sqlvec reads and writes no files for clients (a PostgreSQL superuser may; sqlvec has no such
    role): 42501, and psql's \\copy, which streams through STDIN/STDOUT, is the way."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        conn.execute(sql.format(t=items))
    assert "STDIN" in str(e.value) or "STDOUT" in str(e.value)
    assert conn.execute(f"SELECT id, e::text FROM {items}").fetchall() == [(1, "[1,2,3]")]
