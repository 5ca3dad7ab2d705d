"""Statement splitting, utility statements, and the literal-VALUES fast path of planner.parse."""

from __future__ import annotations

import pytest
import sqlglot

from planner.dialect import SqlVec
from planner.errors import SqlError
from planner.parse import parse


@pytest.mark.parametrize("sql", [
    "INSERT INTO public.\"My T\" (id, e) VALUES (1, '[1,2]'), (-2.5, NULL), ($1, TRUE), (DEFAULT, 'x''y')",
    "INSERT INTO t VALUES (1, 2) RETURNING id",          # not fast: RETURNING
    "INSERT INTO t VALUES (1, 2 + 3)",                   # not fast: an expression
    "INSERT INTO t SELECT 1",
    "INSERT INTO t (a) VALUES (1)",
    "INSERT INTO t (a, b) VALUES (1e5, FALSE), (-7, $2)",
    "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
])
def test_literal_values_fast_path_builds_what_sqlglot_builds(sql):
    expected = sqlglot.parse_one(sql, dialect=SqlVec)
    assert parse(sql)[0].ast == expected


@pytest.mark.parametrize("sql, texts", [
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT ';'; -- a comment; still\n SELECT $$a;b$$", ["SELECT ';'", "SELECT $$a;b$$"]),
    ("  ;; ", []),
    ("", []),
])
def test_split_on_semicolon_tokens(sql, texts):
    assert [s.text for s in parse(sql)] == texts


@pytest.mark.parametrize("sql, kind", [
    ("BEGIN", "begin"), ("START TRANSACTION ISOLATION LEVEL READ COMMITTED", "begin"), ("END", "commit"),
    ("ABORT", "rollback"), ("SHOW TimeZone", "show"), ("SET LOCAL hnsw.ef_search = 40", "set"),
    ("SET TIME ZONE 'UTC'", "set_time_zone"), ("RESET ALL", "reset"), ("DEALLOCATE ALL", "deallocate"),
    ("CREATE EXTENSION IF NOT EXISTS vector", "create_extension"),
])
def test_utility_statements(sql, kind):
    assert parse(sql)[0].utility.kind == kind


def test_parameters_next_to_commas_tokenize():
    # sqlglot alone reads "$1,$2" as the start of a dollar-quoted string
    assert parse("SELECT $1,$2")[0].ast.sql("postgres").count("$") == 2


@pytest.mark.parametrize("sql, position", [("SELEC 1", 1), ("SELECT * FROM WHERE", 15), ("SELECT 1; xyz", 11)])
def test_syntax_errors_carry_positions(sql, position):
    with pytest.raises(SqlError) as e:
        parse(sql)
    assert e.value.sqlstate == "42601" and e.value.position == position
