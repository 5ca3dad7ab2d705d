"""Other clients: asyncpg, SCRAM authentication, psql."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import start_server


def test_asyncpg_vector_query_with_parameter(server, conn, table_name):
    import asyncpg

    t = table_name
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, e vector(2))")
    conn.execute(f"INSERT INTO {t} VALUES (1, '[0,0]'), (2, '[3,4]'), (3, '[1,1]')")

    async def main():
        c = await asyncpg.connect(host=server.host, port=server.port, user="postgres", database="sqlvec")
        try:
            rows = await c.fetch(f"SELECT id, e <-> $1::text::vector AS d FROM {t} ORDER BY d LIMIT 2", "[0,0]")
            assert [(r["id"], r["d"]) for r in rows] == [(1, 0.0), (3, 2 ** 0.5)]
            n = await c.fetchval(f"SELECT count(*) FROM {t} WHERE id > $1", 1)
            assert n == 2
            async with c.transaction():
                stmt = await c.prepare(f"SELECT id FROM {t} ORDER BY id")
                got = [r["id"] async for r in stmt.cursor(prefetch=1)]
            assert got == [1, 2, 3]
        finally:
            await c.close()

    asyncio.run(main())


def test_scram_password(tmp_path: Path):
    import asyncpg

    server = start_server(tmp_path / "data", password="s3cret")
    try:
        with psycopg.connect(server.dsn) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        bad = server.dsn.replace("s3cret", "wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(bad)

        async def main():
            c = await asyncpg.connect(host=server.host, port=server.port, user="postgres", password="s3cret",
                                      database="sqlvec")
            assert await c.fetchval("SELECT 2") == 2
            await c.close()
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(host=server.host, port=server.port, user="postgres", password="nope",
                                      database="sqlvec")

        asyncio.run(main())
    finally:
        server.stop()


def test_psql_quick_start(server):
    out = subprocess.run(
        ["psql", "-X", "-h", server.host, "-p", str(server.port), "-U", "postgres", "sqlvec", "-v", "ON_ERROR_STOP=1",
         "-c", "SELECT 1 AS one"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert " one \n-----\n   1\n(1 row)" in out.stdout
