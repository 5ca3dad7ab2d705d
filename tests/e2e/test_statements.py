"""Each statement kind of the foundation through psycopg 3, text and binary results."""

from __future__ import annotations

import datetime
import decimal
import uuid

import numpy as np
import psycopg
import pytest


@pytest.mark.pg_compatible
def test_create_insert_select_roundtrip_of_every_type(conn, table_name):
    t = table_name
    conn.execute(f"""CREATE TABLE {t} (
        id bigserial PRIMARY KEY, a smallint, b integer, c bigint, d real, e double precision,
        f numeric(10,2), g numeric, h boolean, i text, j varchar(20), k jsonb, l json, m date,
        n timestamp, o timestamptz, p uuid, q bytea, r vector(3))""")
    u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    row = (1, 2, 3, 1.5, 2.25, decimal.Decimal("3.14"), decimal.Decimal("12345.6789"), True, "héllo", "v",
           '{"a": 1}', '[1, 2]', datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
           datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), u, b"\x00\x01\xff", "[1,2.5,-3]")
    conn.execute(f"INSERT INTO {t} (a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r) VALUES "
                 "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", row)
    conn.execute(f"INSERT INTO {t} (a) VALUES (NULL)")
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        got = cur.execute(f"SELECT a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r::text FROM {t} ORDER BY id").fetchall()
        assert got[0][:10] == row[:10]
        assert got[0][10] in ({"a": 1}, '{"a": 1}')
        assert got[0][12:17] == row[12:17]
        assert got[0][17] == "[1,2.5,-3]"
        assert all(v is None for v in got[1])
        assert [d.name for d in cur.description][:3] == ["a", "b", "c"]
    assert conn.execute(f"SELECT id FROM {t} ORDER BY id").fetchall() == [(1,), (2,)]


@pytest.mark.pg_compatible
def test_insert_multirow_returning_and_defaults(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "name text NOT NULL DEFAULT 'anon', score double precision, e vector(2))")
    rows = conn.execute(f"INSERT INTO {t} (name, score, e) VALUES ('a', 1.5, '[1,2]'), (DEFAULT, 2, '[3,4]'), "
                        f"('c', NULL, NULL) RETURNING id, name, score * 2 AS double_score").fetchall()
    assert rows == [(1, "a", 3.0), (2, "anon", 4.0), (3, "c", None)]
    cur = conn.execute(f"INSERT INTO {t} (name) VALUES (%s)", ["d"])
    assert cur.statusmessage == "INSERT 0 1"
    with pytest.raises(psycopg.errors.GeneratedAlways):
        conn.execute(f"INSERT INTO {t} (id, name) VALUES (10, 'x')")
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(f"INSERT INTO {t} (name) VALUES (NULL)")


@pytest.mark.pg_compatible
def test_select_where_order_limit_offset_group_by(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, grp text, x double precision)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s)", [(i, "ab"[i % 2], i * 1.5) for i in range(10)])
    assert conn.execute(f"SELECT id FROM {t} WHERE x > %s ORDER BY id DESC LIMIT 3 OFFSET 1", [3]).fetchall() == [
        (8,), (7,), (6,)]
    got = conn.execute(f"SELECT grp, count(*) AS n, sum(x) AS total FROM {t} GROUP BY grp ORDER BY grp").fetchall()
    assert got == [("a", 5, 30.0), ("b", 5, 37.5)]
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (10,)
    assert conn.execute(f"SELECT id + 1 AS next, upper(grp) FROM {t} WHERE id = 3").fetchone() == (4, "B")


@pytest.mark.pg_compatible
def test_delete_where_returning(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    conn.execute(f"INSERT INTO {t} VALUES (1,'a'),(2,'b'),(3,'c')")
    cur = conn.execute(f"DELETE FROM {t} WHERE id >= %s RETURNING v", [2])
    assert sorted(cur.fetchall()) == [("b",), ("c",)]
    assert cur.statusmessage == "DELETE 2"
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)
    conn.execute(f"INSERT INTO {t} VALUES (2, 'again')")  # the key is free again
    assert conn.execute(f"SELECT v FROM {t} WHERE id = 2").fetchone() == ("again",)


@pytest.mark.pg_compatible
def test_drop_table_and_if_exists(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int)")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {t} (id int)")
    conn.execute(f"DROP TABLE {t}")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute(f"SELECT * FROM {t}")
    conn.execute(f"DROP TABLE IF EXISTS {t}")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute(f"DROP TABLE {t}")


def test_create_extension_and_version(conn):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    version = conn.execute("SELECT version()").fetchone()[0]
    assert version.startswith("PostgreSQL 16.")
    assert conn.info.server_version // 10000 == 16
    assert conn.execute("SHOW server_version").fetchone()[0] == version.split()[1]
    assert conn.execute("SELECT current_setting('server_version_num')").fetchone()[0] == str(conn.info.server_version)
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("CREATE EXTENSION postgis")


@pytest.mark.pg_compatible
def test_transactions_commit_rollback_and_isolation(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn) as a, psycopg.connect(server.dsn, autocommit=True) as b:
        a.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
        a.commit()
        a.execute(f"INSERT INTO {t} VALUES (1, 'one')")
        assert a.execute(f"SELECT v FROM {t}").fetchall() == [("one",)]  # own write visible
        assert b.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)  # not to others yet
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        a.commit()
        assert b.execute(f"SELECT v FROM {t}").fetchall() == [("one",)]
        a.execute(f"INSERT INTO {t} VALUES (2, 'two')")
        a.execute(f"DELETE FROM {t} WHERE id = 1")
        a.rollback()
        assert b.execute(f"SELECT id FROM {t}").fetchall() == [(1,)]


@pytest.mark.pg_compatible
def test_failed_transaction_state(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn) as a:
        a.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
        a.commit()
        a.execute(f"INSERT INTO {t} VALUES (1)")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            a.execute(f"SELECT nope FROM {t}")
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            a.execute("SELECT 1")
        a.rollback()
        assert a.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


@pytest.mark.pg_compatible
def test_set_show_reset_and_parameter_status(conn):
    conn.execute("SET application_name = 'sqlvec-test'")
    assert conn.info.parameter_status("application_name") == "sqlvec-test"
    assert conn.execute("SHOW application_name").fetchone() == ("sqlvec-test",)
    conn.execute("SET hnsw.ef_search = 100")
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("100",)
    conn.execute("RESET hnsw.ef_search")
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SHOW no_such_setting")
    assert conn.info.parameter_status("server_encoding") == "UTF8"
    assert conn.info.parameter_status("integer_datetimes") == "on"
    assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)


@pytest.mark.pg_compatible
def test_multi_statement_simple_query(server, table_name):
    t = table_name
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY); INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (2)")
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (2,)
        # an error later in the string rolls back the implicit transaction, as in PostgreSQL
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(f"INSERT INTO {t} VALUES (3); INSERT INTO {t} VALUES (1)")
        assert c.execute(f"SELECT count(*) FROM {t}").fetchone() == (2,)


@pytest.mark.pg_compatible
def test_copy_from_stdin_text(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, name text, e vector(3))")
    with conn.cursor().copy(f"COPY {t} (id, name, e) FROM STDIN") as cp:
        for i in range(1000):
            cp.write_row((i, f"n\t{i}" if i % 2 else None, f"[{i},{i + 1},{i + 2}]"))
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (1000,)
    assert conn.execute(f"SELECT name, e::text FROM {t} WHERE id = 7").fetchone() == ("n\t7", "[7,8,9]")
    assert conn.execute(f"SELECT name FROM {t} WHERE id = 8").fetchone() == (None,)


@pytest.mark.pg_compatible
def test_copy_bad_row_rolls_back_whole_copy(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, e vector(2))")
    with pytest.raises(psycopg.errors.DataException):
        with conn.cursor().copy(f"COPY {t} FROM STDIN") as cp:
            cp.write(b"1\t[1,2]\n2\t[1,2,3]\n")
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


def test_prepared_statement_planned_once(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, e vector(2))")
    conn.execute(f"INSERT INTO {t} VALUES (1, '[0,0]'), (2, '[1,1]'), (3, '[5,5]')")
    q = f"SELECT id FROM {t} ORDER BY e <-> %s LIMIT 1"
    assert conn.execute(q, ["[0.9,0.9]"], prepare=True).fetchone() == (2,)
    before = int(conn.execute("SHOW sqlvec.plans_made").fetchone()[0])
    for _ in range(8):
        assert conn.execute(q, ["[0.9,0.9]"], prepare=True).fetchone() == (2,)
        assert conn.execute(q, ["[0.9,0.9]"]).fetchone() == (2,)  # unprepared: same text, cached plan
    after = int(conn.execute("SHOW sqlvec.plans_made").fetchone()[0])
    assert after == before  # neither the query nor SHOW was planned again
    conn.execute("SET hnsw.ef_search = 5")  # a later SET is still seen by the cached plan
    assert conn.execute(q, ["[4,4]"], prepare=True).fetchone() == (3,)


@pytest.mark.pg_compatible
def test_binary_vector_parameters_and_results(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, e vector(3))")
    conn.execute(f"INSERT INTO {t} VALUES (1, '[1,2,3]')")
    cur = conn.cursor(binary=True)
    raw = cur.execute(f"SELECT e FROM {t}").fetchone()[0]
    # without pgvector's adapter psycopg hands over the raw bytes: pgvector's binary layout
    dim, unused = int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:4], "big")
    assert (dim, unused) == (3, 0)
    assert np.frombuffer(raw[4:], ">f4").tolist() == [1.0, 2.0, 3.0]


@pytest.mark.pg_compatible
def test_pipeline_executemany_is_one_implicit_transaction(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} VALUES (%s)", [(i,) for i in range(100)])
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (100,)
    # a failure in the middle of the pipeline rolls back every row before it up to the Sync
    with pytest.raises(psycopg.errors.UniqueViolation):
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {t} VALUES (%s)", [(i,) for i in range(100, 150)] + [(5,)])
    assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (100,)


@pytest.mark.pg_compatible
def test_deallocate_all_frees_prepared_statement_names(conn):
    for _ in range(3):
        assert conn.execute("SELECT %s::int + 1", [1], prepare=True).fetchone() == (2,)
    conn.execute("DEALLOCATE ALL")
    for _ in range(3):  # psycopg prepares again under the same name
        assert conn.execute("SELECT %s::int + 1", [2], prepare=True).fetchone() == (3,)


@pytest.mark.pg_compatible
def test_executemany_with_identity_defaults_and_returning(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                 "name text DEFAULT 'x', e vector(2))")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} (name, e) VALUES (%s, %s)", [(f"n{i}", f"[{i},{i}]") for i in range(300)])
        cur.executemany(f"INSERT INTO {t} (e) VALUES (%s)", [("[0,1]",)] * 3)
        cur.executemany(f"INSERT INTO {t} (name) VALUES (%s) RETURNING id", [("r1",), ("r2",)], returning=True)
        returned = []
        while True:
            returned.append(cur.fetchone()[0])
            if not cur.nextset():
                break
    assert returned == [304, 305]
    assert conn.execute(f"SELECT count(*), min(id), max(id) FROM {t}").fetchone() == (305, 1, 305)
    assert conn.execute(f"SELECT name, e::text FROM {t} WHERE id = 300").fetchone() == ("n299", "[299,299]")
    assert conn.execute(f"SELECT count(*) FROM {t} WHERE name = 'x'").fetchone() == (3,)


@pytest.mark.pg_compatible
def test_numeric_without_precision_keeps_its_text_and_computes(conn, table_name):
    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, m numeric)")
    conn.execute(f"INSERT INTO {t} VALUES (1, 1.50), (2, 12345678901234567890.123), (3, 9.5)")
    cur = conn.cursor()
    cur.execute(f"SELECT m::text FROM {t} ORDER BY id")
    assert [r[0] for r in cur.fetchall()] == ["1.50", "12345678901234567890.123", "9.5"]
    assert conn.execute(f"SELECT id FROM {t} ORDER BY m").fetchall() == [(1,), (3,), (2,)]
    assert conn.execute(f"SELECT id FROM {t} WHERE m > 2 ORDER BY id").fetchall() == [(2,), (3,)]
    assert float(conn.execute(f"SELECT sum(m) FROM {t} WHERE m < 10").fetchone()[0]) == 11.0
