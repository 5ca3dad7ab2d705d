"""Rewrite rules: input statement -> expected plan shape (STYLE.md: a fixture of pairs per rule)."""

from __future__ import annotations

import pytest

from planner.dialect import SqlVecDuckDB
from planner.parse import parse
from planner.plan import CountStar, Query, VectorTopK
from planner.planner import plan
from storage.types import ColumnSchema, ColumnType, TableSchema

CATALOG = {
    "docs": TableSchema("docs", (
        ColumnSchema("id", ColumnType("int8"), True),
        ColumnSchema("lang", ColumnType("text")),
        ColumnSchema("embedding", ColumnType("vector", dim=3)),
    ), ("id",)),
}


def make(sql):
    return plan(parse(sql)[0], CATALOG)


@pytest.mark.parametrize("sql, metric, has_filter, projection", [
    ("SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]' LIMIT 5", "l2", False,
     'SELECT id FROM __topk AS "docs" ORDER BY __distance, __rowid'),
    ("SELECT id, embedding <=> $1 AS d FROM docs WHERE lang = 'en' ORDER BY d LIMIT $2", "cosine", True,
     'SELECT id, __distance AS d FROM __topk AS "docs" ORDER BY __distance, __rowid'),
    ("SELECT * FROM public.docs d ORDER BY d.embedding <#> $1::vector LIMIT 3 OFFSET 1", "ip", False,
     'SELECT "d"."id", "d"."lang", "d"."embedding" FROM __topk AS "d" ORDER BY __distance, __rowid'),
    ("SELECT id FROM docs ORDER BY l1_distance(embedding, '[1,1,1]') LIMIT 1", "l1", False,
     'SELECT id FROM __topk AS "docs" ORDER BY __distance, __rowid'),
])
def test_recognise_vector_topk(sql, metric, has_filter, projection):
    # DuckDB sorts NULLs last in ascending order, so the NULL distances (NULL vectors) come last
    p = make(sql)
    assert isinstance(p, VectorTopK)
    assert (p.metric, p.column, p.dim, p.filter is not None) == (metric, "embedding", 3, has_filter)
    assert p.projection.ast.sql(SqlVecDuckDB) == projection


@pytest.mark.parametrize("sql", [
    "SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]' DESC LIMIT 5",        # descending
    "SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]'",                     # no LIMIT
    "SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]', id LIMIT 5",         # a second key
    "SELECT lang, count(*) FROM docs GROUP BY lang ORDER BY 2 LIMIT 1",         # aggregate
    "SELECT id FROM docs ORDER BY embedding <-> (SELECT embedding FROM docs LIMIT 1) LIMIT 2",
])
def test_vector_topk_leaves_other_queries_alone(sql):
    assert isinstance(make(sql), Query)


@pytest.mark.parametrize("sql, expected", [
    ("SELECT count(*) FROM docs", CountStar("docs", "count")),
    ("SELECT count(*) AS n FROM docs", CountStar("docs", "n")),
])
def test_recognise_count_star(sql, expected):
    assert make(sql) == expected


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM docs WHERE lang = 'en'", "SELECT count(id) FROM docs"])
def test_count_star_needs_the_whole_table(sql):
    assert isinstance(make(sql), Query)


@pytest.mark.parametrize("sql, expected, relations", [
    ("SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(docs)$' "
     "COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
     """SELECT c.relname FROM "__pgc_pg_class" AS c WHERE REGEXP_MATCHES(c.relname, '^(docs)$') """
     "AND __PGF_PG_TABLE_IS_VISIBLE(c.oid)", ("pg_catalog.pg_class",)),
    ("SELECT typname FROM pg_type WHERE oid = to_regtype($1)",  # unqualified: pg_catalog is on the search path
     """SELECT typname FROM "__pgc_pg_type" AS pg_type WHERE oid = __PGF_TO_REGTYPE($1)""", ("pg_catalog.pg_type",)),
    ("SELECT n.nspname FROM pg_namespace n WHERE n.nspname !~ '^pg_' AND 'pg_extension'::pg_catalog.regclass > 0",
     """SELECT n.nspname FROM "__pgc_pg_namespace" AS n WHERE NOT REGEXP_MATCHES(n.nspname, '^pg_') """
     "AND __PGF_TO_REGCLASS('pg_extension') > 0", ("pg_catalog.pg_namespace",)),
    ("SELECT c.oid::pg_catalog.regclass, x::pg_catalog.int2[] FROM pg_class c, pg_catalog.generate_series(1, 2) s",
     """SELECT __PGF_REGCLASS_NAME(c.oid), CAST(x AS BIGINT[]) FROM "__pgc_pg_class" AS c, """
     "GENERATE_SERIES(1, 2) AS s(s)", ("pg_catalog.pg_class",)),
])
def test_translate_pg_catalog(sql, expected, relations):
    p = make(sql)
    assert isinstance(p, Query) and p.catalog_relations == relations
    assert p.ast.sql(SqlVecDuckDB) == expected


def test_a_table_of_the_users_named_like_a_catalog_relation_is_the_users():
    catalog = {**CATALOG, "pg_type": TableSchema("pg_type", (ColumnSchema("a", ColumnType("int4")),))}
    p = plan(parse("SELECT a FROM pg_type")[0], catalog)
    assert isinstance(p, Query) and p.catalog_relations == () and p.tables == ("pg_type",)
