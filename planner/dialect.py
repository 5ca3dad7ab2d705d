"""The sqlvec SQL dialect: PostgreSQL plus pgvector's operators, and its translation to DuckDB.

Only the differences from sqlglot's Postgres dialect live here (STYLE.md: a dialect adds only its
differences). pgvector's distance operators become one expression class each:

    a <-> b   L2Distance             (pgvector: vector_l2_ops)
    a <#> b   NegativeInnerProduct   (vector_ip_ops; the *negative* inner product)
    a <=> b   CosineDistance         (vector_cosine_ops)
    a <+> b   L1Distance             (vector_l1_ops)

sqlglot's tokenizer has a fixed set of token types, so ``<#>`` and ``<+>`` reuse two token types
that the Postgres grammar never produces; ``<=>`` (MySQL's null-safe equality, absent from
PostgreSQL) is taken over for cosine distance.

``WITHIN`` is sqlvec's range-search shorthand, rewritten while parsing into the comparisons it stands
for (so every later stage, and DuckDB, sees plain SQL)::

    d WITHIN r          ->  d < r
    d WITHIN lo TO hi   ->  d >= lo AND d < hi

It reuses MySQL's ``SOUNDS LIKE`` token type, which the Postgres grammar never produces; ``WITHIN GROUP``
(ordered-set aggregates) is a longer keyword and keeps its meaning.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.dialects.postgres import Postgres
from sqlglot.generators.duckdb import DuckDBGenerator
from sqlglot.generators.postgres import PostgresGenerator
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import TokenType

_INNER_PRODUCT_TOKEN = TokenType.DCOLONDOLLAR
_L1_TOKEN = TokenType.DCOLONPERCENT
_WITHIN_TOKEN = TokenType.SOUNDS_LIKE


class VectorDistance(exp.Expression, exp.Binary):
    """``this <op> expression``: a pgvector distance. ``metric`` names it in plans and indexes."""

    metric: ClassVar[str] = ""
    operator: ClassVar[str] = ""
    duckdb_macro: ClassVar[str] = ""


class L2Distance(VectorDistance):
    metric = "l2"
    operator = "<->"
    duckdb_macro = "l2_distance"


class NegativeInnerProduct(VectorDistance):
    metric = "ip"
    operator = "<#>"
    duckdb_macro = "negative_inner_product"


class CosineDistance(VectorDistance):
    metric = "cosine"
    operator = "<=>"
    duckdb_macro = "cosine_distance"


class L1Distance(VectorDistance):
    metric = "l1"
    operator = "<+>"
    duckdb_macro = "l1_distance"


DISTANCE_OPERATORS: dict[str, type[VectorDistance]] = {
    c.operator: c for c in (L2Distance, NegativeInnerProduct, CosineDistance, L1Distance)
}
DISTANCE_FUNCTIONS: dict[str, str] = {
    "l2_distance": "l2",
    "cosine_distance": "cosine",
    "l1_distance": "l1",
}


def _parse_within(self: PostgresParser, this: exp.Expr) -> exp.Expr:
    """``this WITHIN r`` -> ``this < r``; ``this WITHIN lo TO hi`` -> ``this >= lo AND this < hi``."""
    first = self._parse_bitwise()
    if self._match_text_seq("TO"):
        upper = self._parse_bitwise()
        return exp.Paren(this=exp.and_(exp.GTE(this=this, expression=first),
                                       exp.LT(this=this.copy(), expression=upper)))
    return exp.LT(this=this, expression=first)


class SqlVecParser(PostgresParser):
    EQUALITY = {k: v for k, v in PostgresParser.EQUALITY.items() if k != TokenType.NULLSAFE_EQ}
    RANGE_PARSERS = {**PostgresParser.RANGE_PARSERS, _WITHIN_TOKEN: _parse_within}
    # PostgreSQL has no lambdas: ``f(doc -> 'k')`` is a JSON path inside a call, not ``doc -> 'k'`` as a lambda
    LAMBDAS: dict = {}
    FACTOR = {
        **PostgresParser.FACTOR,
        TokenType.LR_ARROW: L2Distance,
        TokenType.NULLSAFE_EQ: CosineDistance,
        _INNER_PRODUCT_TOKEN: NegativeInnerProduct,
        _L1_TOKEN: L1Distance,
    }


def _operator_sql(op: str):
    return lambda self, e: self.binary(e, op)


def _macro_sql(macro: str):
    return lambda self, e: self.func(macro, e.this, e.expression)


class SqlVecGenerator(PostgresGenerator):
    TRANSFORMS = {
        **PostgresGenerator.TRANSFORMS,
        **{cls: _operator_sql(op) for op, cls in DISTANCE_OPERATORS.items()},
    }


class SqlVec(Postgres):
    class Tokenizer(Postgres.Tokenizer):
        KEYWORDS = {
            **Postgres.Tokenizer.KEYWORDS,
            "<=>": TokenType.NULLSAFE_EQ,
            "<#>": _INNER_PRODUCT_TOKEN,
            "<+>": _L1_TOKEN,
            "WITHIN": _WITHIN_TOKEN,
            # PostgreSQL's oid type, an unsigned 32-bit integer (sqlglot does not know it, and reads `$1::oid[]`
            # as a subscript): DuckDB's UINTEGER, as sqlvec's catalog keeps OIDs. A column named oid stays one.
            "OID": TokenType.UINT,
        }

    Parser = SqlVecParser
    Generator = SqlVecGenerator


def _duckdb_vector_type(self: DuckDBGenerator, e: exp.DataType) -> str:
    dim = e.expressions[0].this.name if e.expressions else ""
    return f"FLOAT[{dim}]"


class SqlVecDuckDBGenerator(DuckDBGenerator):
    """DuckDB SQL for what runs on the relational path: distances call macros (see duckdb_macros)."""

    TRANSFORMS = {
        **DuckDBGenerator.TRANSFORMS,
        **{cls: _macro_sql(cls.duckdb_macro) for cls in DISTANCE_OPERATORS.values()},
        # j -> 'k' / j ->> 'k' as function calls: DuckDB reads ``->`` inside a function's arguments as a lambda
        exp.JSONExtract: lambda self, e: self.func("json_extract", e.this, e.expression),
        exp.JSONExtractScalar: lambda self, e: self.func("json_extract_string", e.this, e.expression),
        exp.JSONBExtract: lambda self, e: _json_path_sql("json_extract")(self, e),  # j #> '{a,b}'
        exp.JSONBContainsTopKey: lambda self, e: self.func("sqlvec_jsonb_has_key", e.this, e.expression),  # ?
        exp.JSONBContainsAnyTopKeys: lambda self, e: self.func("sqlvec_jsonb_has_any", e.this, e.expression),  # ?|
        exp.JSONBContainsAllTopKeys: lambda self, e: self.func("sqlvec_jsonb_has_all", e.this, e.expression),  # ?&
        exp.JSONBExtractScalar: lambda self, e: _json_path_sql("json_extract_string")(self, e),  # j #>> '{a,b}'
    }

    def datatype_sql(self, expression: exp.DataType) -> str:
        if expression.this == exp.DType.VECTOR:
            return _duckdb_vector_type(self, expression)
        return super().datatype_sql(expression)


class SqlVecDuckDB(DuckDB):
    Generator = SqlVecDuckDBGenerator


def _path_macro(name: str, fn: str, most: int = 6) -> str:
    """``name(j, p0, ..., pn)`` for n < ``most``, overloads of one macro: ``fn(j, '/p0/.../pn')``."""
    overloads = []
    for n in range(1, most + 1):
        params = [f"p{i}" for i in range(n)]
        pointer = " || '/' || ".join(params)
        overloads.append(f"(j, {', '.join(params)}) AS {fn}(CAST(j AS JSON), '/' || {pointer})")
    return f"CREATE OR REPLACE MACRO {name}" + ", ".join(overloads)


# DuckDB macros giving pgvector's functions their PostgreSQL meaning over DuckDB lists and arrays.
# Distances are computed in double precision and returned as double, as pgvector returns float8.
DUCKDB_MACROS: tuple[str, ...] = (
    "CREATE OR REPLACE MACRO sqlvec_vec(a) AS CAST(a AS DOUBLE[])",
    "CREATE OR REPLACE MACRO l2_distance(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "ELSE list_distance(sqlvec_vec(a), sqlvec_vec(b)) END",
    "CREATE OR REPLACE MACRO negative_inner_product(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "ELSE list_negative_inner_product(sqlvec_vec(a), sqlvec_vec(b)) END",
    "CREATE OR REPLACE MACRO inner_product(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "ELSE list_inner_product(sqlvec_vec(a), sqlvec_vec(b)) END",
    "CREATE OR REPLACE MACRO cosine_distance(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "ELSE list_cosine_distance(sqlvec_vec(a), sqlvec_vec(b)) END",
    "CREATE OR REPLACE MACRO l1_distance(a, b) AS CASE WHEN a IS NULL OR b IS NULL THEN NULL "
    "WHEN len(sqlvec_vec(a)) <> len(sqlvec_vec(b)) "
    "THEN error('different vector dimensions ' || len(sqlvec_vec(a)) || ' and ' || len(sqlvec_vec(b))) "
    "ELSE list_sum(list_transform(list_zip(sqlvec_vec(a), sqlvec_vec(b)), lambda x: abs(x[1] - x[2]))) END",
    # pgvector's text form of a vector: '[1,2.5,-3]' (DuckDB would print '[1.0, 2.5, -3.0]')
    "CREATE OR REPLACE MACRO sqlvec_vector_text(a) AS '[' || array_to_string(list_transform(CAST(a AS FLOAT[]), "
    "lambda x: regexp_replace(CAST(x AS VARCHAR), '\\.0$', '')), ',') || ']'",
    "CREATE OR REPLACE MACRO vector_dims(a) AS CAST(len(sqlvec_vec(a)) AS INTEGER)",
    "CREATE OR REPLACE MACRO vector_norm(a) AS sqrt(list_sum(list_transform(sqlvec_vec(a), lambda x: x * x)))",
    "CREATE OR REPLACE MACRO l2_norm(a) AS vector_norm(a)",
    "CREATE OR REPLACE MACRO l2_normalize(a) AS CASE WHEN vector_norm(a) = 0 THEN CAST(a AS FLOAT[]) "
    "ELSE CAST(list_transform(sqlvec_vec(a), lambda x: x / vector_norm(a)) AS FLOAT[]) END",
    # PostgreSQL's jsonb functions over JSON text (DuckDB's json extension). jsonb_typeof names
    # PostgreSQL's types; json_type says BIGINT / DOUBLE / UBIGINT for numbers and VARCHAR for strings.
    *(f"CREATE OR REPLACE MACRO {name}(j) AS CASE WHEN j IS NULL THEN NULL "
      "WHEN json_type(CAST(j AS JSON)) = 'OBJECT' THEN 'object' WHEN json_type(CAST(j AS JSON)) = 'ARRAY' THEN 'array' "
      "WHEN json_type(CAST(j AS JSON)) = 'VARCHAR' THEN 'string' WHEN json_type(CAST(j AS JSON)) = 'BOOLEAN' "
      "THEN 'boolean' WHEN json_type(CAST(j AS JSON)) = 'NULL' THEN 'null' ELSE 'number' END"
      for name in ("jsonb_typeof",)),
    *(f"CREATE OR REPLACE MACRO {name}(j) AS CASE WHEN json_type(CAST(j AS JSON)) = 'ARRAY' "
      "THEN CAST(json_array_length(CAST(j AS JSON)) AS INTEGER) WHEN j IS NULL THEN NULL "
      f"ELSE error('cannot get array length of a ' || (CASE WHEN json_type(CAST(j AS JSON)) = 'OBJECT' "
      "THEN 'non-array' ELSE 'scalar' END)) END"
      for name in ("jsonb_array_length",)),
    # j ? 'k': a top-level key of an object, a string element of an array, or the string itself
    "CREATE OR REPLACE MACRO sqlvec_jsonb_has_key(j, k) AS CASE "
    "WHEN j IS NULL OR k IS NULL THEN NULL "
    "WHEN json_type(CAST(j AS JSON)) = 'OBJECT' THEN list_contains(json_keys(CAST(j AS JSON)), k) "
    "WHEN json_type(CAST(j AS JSON)) = 'ARRAY' THEN list_contains(list_transform(from_json(CAST(j AS JSON), "
    "'[\"JSON\"]'), lambda x: CASE WHEN json_type(x) = 'VARCHAR' THEN json_extract_string(x, '$') END), k) "
    "WHEN json_type(CAST(j AS JSON)) = 'VARCHAR' THEN json_extract_string(CAST(j AS JSON), '$') = k "
    "ELSE false END",
    "CREATE OR REPLACE MACRO sqlvec_jsonb_has_any(j, ks) AS "
    "list_bool_or(list_transform(ks, lambda k: sqlvec_jsonb_has_key(j, k)))",
    "CREATE OR REPLACE MACRO sqlvec_jsonb_has_all(j, ks) AS "
    "list_bool_and(list_transform(ks, lambda k: sqlvec_jsonb_has_key(j, k)))",
    # Milvus's JSON array helpers (DuckDB's json_contains already is Milvus's json_contains): all / any of
    # the elements of the JSON array ``xs`` are elements of (contained in) the JSON array ``j``
    "CREATE OR REPLACE MACRO json_contains_all(j, xs) AS json_contains(CAST(j AS JSON), CAST(xs AS JSON))",
    "CREATE OR REPLACE MACRO json_contains_any(j, xs) AS list_bool_or(list_transform("
    "from_json(CAST(xs AS JSON), '[\"JSON\"]'), lambda x: json_contains(CAST(j AS JSON), x)))",
    # jsonb_extract_path(j, 'a', 'b') and _text, for up to 6 path elements: JSON pointers '/a/b'
    # (only the jsonb names: DuckDB's own json_* functions keep theirs)
    _path_macro("jsonb_extract_path", "json_extract"),
    _path_macro("jsonb_extract_path_text", "json_extract_string"),
)


def _json_pointer(path: exp.Expr) -> exp.Expr:
    """A PostgreSQL text-array path (``'{b,c,1}'``) as a JSON pointer (``'/b/c/1'``)."""
    if isinstance(path, exp.Literal) and path.is_string:
        items = [p.strip().strip('"') for p in path.this.strip().strip("{}").split(",") if p.strip()]
        return exp.Literal.string("/" + "/".join(items))
    return exp.DPipe(this=exp.Literal.string("/"), expression=exp.func(
        "array_to_string", exp.func("string_split", exp.func("trim", path, exp.Literal.string("{}")),
                                    exp.Literal.string(",")), exp.Literal.string("/")))


def _json_path_sql(fn: str):
    return lambda self, e: self.func(fn, exp.cast(e.this, exp.DType.JSON), _json_pointer(e.expression))
