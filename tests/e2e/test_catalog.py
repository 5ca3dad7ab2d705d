"""pg_catalog through real clients: psql's backslash commands, pgvector's type registration for psycopg and
asyncpg, and catalog queries as drivers write them. Marked pg_compatible ones run against PostgreSQL +
pgvector too (SQLVEC_TEST_PG=pgserver), so the expectations are PostgreSQL's."""

from __future__ import annotations

import asyncio
import subprocess

import numpy as np
import psycopg
import pytest


def psql(server, *commands: str) -> str:
    args = ["psql", "-X", "-h", server.host, "-p", str(server.port), "-U", "postgres", "sqlvec",
            "-v", "ON_ERROR_STOP=1"]
    for c in commands:
        args += ["-c", c]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture()
def catalog_table(conn, table_name):
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE TABLE {table_name} (id bigint PRIMARY KEY, embedding vector(3), tag text DEFAULT 'x', "
                 "n integer NOT NULL)")
    conn.execute(f"CREATE INDEX {table_name}_hnsw ON {table_name} USING hnsw (embedding vector_cosine_ops)")
    yield table_name
    conn.execute(f"DROP TABLE IF EXISTS {table_name}")


@pytest.mark.pg_compatible
def test_psql_lists_tables_indexes_schemas_extensions_databases(server, catalog_table):
    tables = psql(server, r"\dt")
    assert f" public | {catalog_table} " in tables and "| table | postgres" in tables
    indexes = psql(server, r"\di")
    assert f"{catalog_table}_pkey " in indexes and f"{catalog_table}_hnsw " in indexes
    assert f"| index | postgres | {catalog_table}" in indexes
    assert " public | " in psql(server, r"\dn")
    extensions = psql(server, r"\dx")
    assert " vector " in extensions and "vector data type and ivfflat and hnsw access methods" in extensions
    assert " sqlvec " in psql(server, r"\l")


@pytest.mark.pg_compatible
def test_psql_describes_a_table_with_its_vector_type_and_indexes(server, catalog_table):
    out = psql(server, rf"\d {catalog_table}")
    assert f'Table "public.{catalog_table}"' in out
    lines = {line.split("|")[0].strip(): [p.strip() for p in line.split("|")] for line in out.splitlines() if "|" in line}
    assert lines["id"][1:4] == ["bigint", "", "not null"]
    assert lines["embedding"][1] == "vector(3)"
    assert lines["tag"][1] == "text" and lines["tag"][4].startswith("'x'")
    assert lines["n"][3] == "not null"
    assert f'"{catalog_table}_pkey" PRIMARY KEY, btree (id)' in out
    assert f'"{catalog_table}_hnsw" hnsw (embedding vector_cosine_ops)' in out


def test_a_table_created_in_one_session_is_listed_at_once_in_another(server, conn, table_name):
    with psycopg.connect(server.dsn, autocommit=True) as other:
        other.execute(f"CREATE TABLE {table_name} (id int)")
        assert f" {table_name} " in psql(server, r"\dt")
        other.execute(f"DROP TABLE {table_name}")
    assert f" {table_name} " not in psql(server, r"\dt")


@pytest.mark.pg_compatible
def test_psycopg_register_vector_text_and_binary(server, catalog_table):
    from pgvector.psycopg import register_vector

    with psycopg.connect(server.dsn, autocommit=True) as c:
        register_vector(c)
        c.execute(f"INSERT INTO {catalog_table} (id, embedding, n) VALUES (%s, %s, 1)", (1, np.array([1, 2, 3])))
        for binary in (False, True):
            (got,) = c.execute(f"SELECT embedding FROM {catalog_table}", binary=binary).fetchone()
            assert isinstance(got, np.ndarray) and got.tolist() == [1, 2, 3]
        (d,) = c.execute(f"SELECT embedding <=> %s FROM {catalog_table}", (np.array([2, 4, 6]),)).fetchone()
        assert abs(d) < 1e-6


@pytest.mark.pg_compatible
def test_asyncpg_register_vector(server, catalog_table):
    import asyncpg
    from pgvector.asyncpg import register_vector

    async def run() -> list:
        con = await asyncpg.connect(server.url)
        try:
            await register_vector(con)
            await con.execute(f"INSERT INTO {catalog_table} (id, embedding, n) VALUES ($1, $2, 1)", 5,
                              np.array([1.5, 2, 3], np.float32))
            return await con.fetch(f"SELECT id, embedding FROM {catalog_table} WHERE id = 5")
        finally:
            await con.close()

    (row,) = asyncio.run(run())
    assert row["id"] == 5 and row["embedding"].tolist() == [1.5, 2, 3]


@pytest.mark.pg_compatible
def test_catalog_queries_as_drivers_write_them(conn, catalog_table):
    (oid,) = conn.execute("SELECT oid FROM pg_catalog.pg_class WHERE relname = %s", (catalog_table,)).fetchone()
    rows = conn.execute("SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull "
                        "FROM pg_catalog.pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 ORDER BY a.attnum",
                        (oid,)).fetchall()
    assert rows == [("id", "bigint", True), ("embedding", "vector(3)", False), ("tag", "text", False),
                    ("n", "integer", True)]
    assert conn.execute("SELECT typname, typarray <> 0 FROM pg_type WHERE oid = to_regtype('vector')").fetchone() \
        == ("vector", True)
    (kind,) = conn.execute(f"SELECT relkind FROM pg_class WHERE oid = '{catalog_table}'::regclass").fetchone()
    assert kind == "r"
    names = [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname OPERATOR(pg_catalog.~) %s ORDER BY 1", (f"^{catalog_table}",))]
    assert names == [catalog_table, f"{catalog_table}_hnsw", f"{catalog_table}_pkey"]
    (primary,) = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s "
                              "AND contype = 'p'", (oid,)).fetchone()
    assert primary == "PRIMARY KEY (id)"
    described = conn.execute("SELECT relname, relkind, oid FROM pg_class LIMIT 1").description
    assert [d.type_code for d in described] == [19, 18, 26]  # name, "char", oid, as drivers decode them


@pytest.mark.pg_compatible
def test_a_catalog_relation_that_does_not_exist(conn):
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM pg_catalog.pg_no_such_relation")


def test_catalog_relations_sqlvec_does_not_have_yet_are_feature_not_supported(conn):
    for relation in ("pg_catalog.pg_trigger", "information_schema.routines"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=relation.replace(".", r"\.")):
            conn.execute(f"SELECT * FROM {relation}")


@pytest.mark.pg_compatible
def test_sqlalchemy_create_all_reflection_orm_query_and_drop_all(server, conn, table_name):
    import sqlalchemy as sa
    from pgvector.sqlalchemy import Vector
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table_name
        id = mapped_column(sa.Integer, primary_key=True)  # not annotated: this module's annotations are strings
        embedding = mapped_column(Vector(3))
        name = mapped_column(sa.String(20), nullable=True)
        __table_args__ = (sa.Index(f"{table_name}_hnsw", "embedding", postgresql_using="hnsw",
                                   postgresql_with={"m": 16}, postgresql_ops={"embedding": "vector_cosine_ops"}),)

    engine = sa.create_engine(server.url.replace("postgresql://", "postgresql+psycopg://"), pool_pre_ping=True)
    try:
        Base.metadata.create_all(engine)
        inspector = sa.inspect(engine)
        assert table_name in inspector.get_table_names()
        columns = {c["name"]: c for c in inspector.get_columns(table_name)}
        assert isinstance(columns["embedding"]["type"], Vector) and columns["embedding"]["type"].dim == 3
        assert isinstance(columns["name"]["type"], sa.String) and columns["name"]["type"].length == 20
        assert columns["id"]["nullable"] is False and columns["name"]["nullable"] is True
        assert inspector.get_pk_constraint(table_name)["constrained_columns"] == ["id"]
        (index,) = inspector.get_indexes(table_name)
        assert index["name"] == f"{table_name}_hnsw" and index["column_names"] == ["embedding"]
        options = index["dialect_options"]
        assert options["postgresql_using"] == "hnsw" and options["postgresql_with"]["m"] == "16"
        assert options["postgresql_ops"] == {"embedding": "vector_cosine_ops"}
        with Session(engine) as session:
            session.add_all([Item(id=i, embedding=[i, 1, 0], name=f"n{i}") for i in range(1, 5)])
            session.commit()
            nearest = session.scalars(sa.select(Item).order_by(Item.embedding.l2_distance([3, 1, 0])).limit(2))
            assert [item.id for item in nearest] == [3, 2]
            closest = session.scalars(sa.select(Item.id).order_by(Item.embedding.cosine_distance([1, 0, 0])).limit(1))
            assert list(closest) == [4]
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
    assert table_name not in sa.inspect(sa.create_engine(server.url.replace("postgresql://", "postgresql+psycopg://"))
                                        ).get_table_names()


@pytest.mark.pg_compatible
def test_psql_lists_roles_types_and_functions_and_describes_a_catalog_relation(server, catalog_table):
    roles = psql(server, r"\du")
    assert " postgres " in roles and "Superuser" in roles
    assert " public | vector " in psql(server, r"\dT")
    functions = psql(server, r"\df")
    for line in (" public | cosine_distance | double precision | vector, vector",
                 " public | vector_dims     | integer          | vector"):
        assert " ".join(line.split()) in " ".join(functions.split())
    described = psql(server, r"\dS pg_catalog.pg_am")
    assert 'Table "pg_catalog.pg_am"' in described and " amname " in described


@pytest.mark.pg_compatible
def test_information_schema_tables_columns_and_keys(conn, catalog_table):
    tables = conn.execute("SELECT table_schema, table_type FROM information_schema.tables WHERE table_name = %s",
                          (catalog_table,)).fetchall()
    assert tables == [("public", "BASE TABLE")]
    columns = conn.execute(
        "SELECT column_name, data_type, udt_name, is_nullable, column_default, ordinal_position "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (catalog_table,)).fetchall()
    assert columns == [("id", "bigint", "int8", "NO", None, 1), ("embedding", "USER-DEFINED", "vector", "YES", None, 2),
                       ("tag", "text", "text", "YES", "'x'::text", 3), ("n", "integer", "int4", "NO", None, 4)]
    keys = conn.execute(
        "SELECT tc.constraint_type, k.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name "
        "AND k.table_name = tc.table_name WHERE tc.table_name = %s", (catalog_table,)).fetchall()
    assert keys == [("PRIMARY KEY", "id")]
    assert "public" in [r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata")]


@pytest.mark.pg_compatible
def test_session_and_catalog_functions_tools_call(conn, catalog_table):
    assert conn.execute("SELECT current_database(), current_user, session_user, current_schema()").fetchone() == (
        "sqlvec", "postgres", "postgres", "public")
    assert conn.execute("SELECT current_schemas(false)").fetchone() == (["public"],)
    assert int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]) >= 160000
    assert conn.execute("SELECT pg_catalog.version()").fetchone()[0].startswith("PostgreSQL 16")
    (oid,) = conn.execute("SELECT oid FROM pg_class WHERE relname = %s", (catalog_table,)).fetchone()
    assert conn.execute(f"SELECT '{catalog_table}'::regclass::oid, '{catalog_table}'::regclass::text").fetchone() \
        == (oid, catalog_table)
    assert conn.execute(f"SELECT has_table_privilege('{catalog_table}', 'SELECT'), quote_ident('Items'), "
                        "quote_ident('items'), pg_get_userbyid(10)").fetchone() == (True, '"Items"', "items", "postgres")
    assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone() == ("vector",)


def test_set_config_is_accepted_for_jit_only_and_refused_for_settings_sqlvec_has(conn):
    assert conn.execute("SELECT set_config('jit', 'off', false)").fetchone() == ("off",)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="use SET"):
        conn.execute("SELECT set_config('hnsw.ef_search', '10', false)")
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("40",)


@pytest.mark.pg_compatible
def test_alembic_autogenerate_upgrade_downgrade_and_no_second_diff(server, conn, table_name, tmp_path):
    import importlib
    import sys

    from alembic import command
    from alembic.config import Config

    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    (tmp_path / "models_for_alembic.py").write_text(f"""
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector

metadata = sa.MetaData()
items = sa.Table("{table_name}", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("embedding", Vector(3)), sa.Column("name", sa.String(20)),
                 sa.Index("{table_name}_hnsw", "embedding", postgresql_using="hnsw", postgresql_with={{"m": 16}},
                          postgresql_ops={{"embedding": "vector_cosine_ops"}}))
""")
    cfg = Config(str(tmp_path / "alembic.ini"))
    cfg.set_main_option("script_location", str(tmp_path / "migrations"))
    cfg.set_main_option("sqlalchemy.url", server.url.replace("postgresql://", "postgresql+psycopg://"))
    command.init(cfg, str(tmp_path / "migrations"))
    env = tmp_path / "migrations" / "env.py"
    env.write_text(env.read_text().replace("target_metadata = None", (
        "from models_for_alembic import metadata as target_metadata\n"
        "def include_name(name, type_, parent_names):\n"
        "    return type_ != 'table' or name in target_metadata.tables\n")).replace(
        "target_metadata=target_metadata,", "target_metadata=target_metadata, include_name=include_name,").replace(
        "fileConfig(config.config_file_name)", "pass  # the test run's logging stays as it is"))
    mako = tmp_path / "migrations" / "script.py.mako"  # pgvector's documented step: migrations import its types
    mako.write_text(mako.read_text().replace("import sqlalchemy as sa", "import sqlalchemy as sa\nimport pgvector"))
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        first = command.revision(cfg, message="init", autogenerate=True)
        text = open(first.path).read()
        assert f"op.create_table('{table_name}'" in text and "VECTOR(dim=3)" in text
        assert "postgresql_using='hnsw'" in text and "vector_cosine_ops" in text
        command.upgrade(cfg, "head")
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (table_name,)).fetchone() == (1,)
        second = command.revision(cfg, message="again", autogenerate=True)
        body = open(second.path).read().split("def upgrade()")[1].split("def downgrade()")[0]
        assert "op." not in body, body  # nothing differs from what the first migration made
        command.downgrade(cfg, "base")
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (table_name,)).fetchone() == (0,)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("models_for_alembic", None)
        conn.execute("DROP TABLE IF EXISTS alembic_version")
        conn.execute(f"DROP TABLE IF EXISTS {table_name}")


@pytest.mark.pg_compatible
def test_a_named_primary_key_constraint(server, conn, table_name):
    conn.execute(f"CREATE TABLE {table_name} (v varchar(32) NOT NULL, CONSTRAINT {table_name}_pkc PRIMARY KEY (v))")
    try:
        assert f'"{table_name}_pkc" PRIMARY KEY, btree (v)' in psql(server, rf"\d {table_name}")
        conn.execute(f"INSERT INTO {table_name} VALUES ('a')")
        with pytest.raises(psycopg.errors.UniqueViolation, match=f"{table_name}_pkc"):
            conn.execute(f"INSERT INTO {table_name} VALUES ('a')")
    finally:
        conn.execute(f"DROP TABLE {table_name}")


@pytest.mark.pg_compatible
def test_a_quoted_user_column_is_the_column_and_user_is_current_user(conn, table_name):
    conn.execute(f'CREATE TABLE {table_name} ("user" text)')
    try:
        conn.execute(f"INSERT INTO {table_name} VALUES ('alice')")
        assert conn.execute(f'SELECT "user", user FROM {table_name}').fetchone() == ("alice", "postgres")
    finally:
        conn.execute(f"DROP TABLE {table_name}")


@pytest.mark.pg_compatible
def test_asyncpg_introspects_array_types_through_the_catalog(server):
    import asyncpg

    async def run() -> list:
        con = await asyncpg.connect(server.url)
        try:
            return list(await con.fetchrow("SELECT '{1,2}'::int[] AS a, '{1.5,2}'::float8[] AS b, '{t,f}'::bool[] AS c, "
                                           "'{x,y}'::varchar[] AS d"))
        finally:
            await con.close()

    assert asyncio.run(run()) == [[1, 2], [1.5, 2.0], [True, False], ["x", "y"]]


@pytest.mark.pg_compatible
def test_psycopg2_and_pg8000_with_pgvector_register_vector(server, catalog_table):
    import pg8000.native
    import psycopg2
    from pgvector.pg8000 import register_vector as register_pg8000
    from pgvector.psycopg2 import register_vector as register_psycopg2

    c2 = psycopg2.connect(server.dsn)
    try:
        c2.autocommit = True
        register_psycopg2(c2)  # looks vector and _vector up in pg_type
        cur = c2.cursor()
        cur.execute(f"INSERT INTO {catalog_table} (id, embedding, n) VALUES (%s, %s, 1)", (7, np.array([1, 2, 3])))
        cur.execute(f"SELECT embedding FROM {catalog_table} WHERE id = 7")
        assert cur.fetchone()[0].tolist() == [1, 2, 3]
    finally:
        c2.close()
    c8 = pg8000.native.Connection("postgres", host=server.host, port=server.port, database="sqlvec",
                                  password=server.password)
    try:
        register_pg8000(c8)
        ((got, nearest),) = c8.run(f"SELECT embedding, id FROM {catalog_table} ORDER BY embedding <-> :v LIMIT 1",
                                   v=np.array([1, 2, 3.5]))
        assert got.tolist() == [1, 2, 3] and nearest == 7
    finally:
        c8.close()
