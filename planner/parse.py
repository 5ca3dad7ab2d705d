"""Text -> statements, with PostgreSQL's syntax-error reporting (42601 with a position).

A query string is split into statements on the tokenizer's semicolons (so quotes, comments and
dollar quoting are respected). Session-control statements whose grammar sqlglot does not model
(BEGIN variants, SHOW, RESET, SET TIME ZONE, CREATE EXTENSION, ...) are recognised here as
:class:`Utility` statements; everything else is parsed by sqlglot with the sqlvec dialect.
PostgreSQL parses the whole string before running any of it, and so does this module.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from planner import copy, cursor
from planner.dialect import SqlVec
from planner.errors import SqlError

# sqlglot logs a warning whenever it falls back to exp.Command; the planner reports those itself.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DIALECT = SqlVec()


@dataclass(frozen=True)
class Utility:
    """A session-control statement: ``kind`` plus its parsed arguments."""

    kind: str  # begin, commit, rollback, set, reset, show, create_extension, drop_extension, deallocate, ...
    args: dict = field(default_factory=dict)


@dataclass
class Statement:
    """One statement of a query string: its own text, where it starts, and its parse."""

    text: str
    offset: int  # 0-based offset of ``text`` in the whole query string
    ast: exp.Expr | None = None
    utility: Utility | None = None


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"{_IDENT}(?:\.{_IDENT})*"
_VALUE = r"(?:'(?:[^']|'')*'|[^\s,']+)"

_UTILITY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(p, re.IGNORECASE | re.DOTALL))
    for kind, p in (
        ("begin", r"^(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?(?P<modes>\s.*)?$"),
        ("commit", r"^(?:COMMIT|END)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?$"),
        ("rollback", r"^(?:ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?(?:\s+AND\s+NO\s+CHAIN)?$"),
        ("savepoint", rf"^SAVEPOINT\s+(?P<name>{_IDENT})$"),
        ("release", rf"^RELEASE\s+(?:SAVEPOINT\s+)?(?P<name>{_IDENT})$"),
        ("rollback_to", rf"^ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO\s+(?:SAVEPOINT\s+)?(?P<name>{_IDENT})$"),
        ("show", rf"^SHOW\s+(?P<name>ALL|{_NAME}|TIME\s+ZONE|TRANSACTION\s+ISOLATION\s+LEVEL)$"),
        ("reset", rf"^RESET\s+(?P<name>ALL|{_NAME}|TIME\s+ZONE)$"),
        ("set_time_zone", rf"^SET\s+(?:(?P<scope>SESSION|LOCAL)\s+)?TIME\s+ZONE\s+(?P<value>{_VALUE})$"),
        ("set_transaction", r"^SET\s+(?:SESSION\s+CHARACTERISTICS\s+AS\s+)?TRANSACTION\s+(?P<modes>.*)$"),
        ("set_names", rf"^SET\s+NAMES\s+(?P<value>{_VALUE})$"),
        ("set", rf"^SET\s+(?:(?P<scope>SESSION|LOCAL)\s+)?(?P<name>{_NAME})\s*(?:=|\s+TO\s+)\s*"
                rf"(?P<value>{_VALUE}(?:\s*,\s*{_VALUE})*)$"),
        ("create_extension", rf"^CREATE\s+EXTENSION\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{_IDENT})"
                             r"(?P<rest>\s.*)?$"),
        ("drop_extension", rf"^DROP\s+EXTENSION\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{_IDENT})"
                           r"(?:\s+(?:CASCADE|RESTRICT))?$"),
        ("deallocate", rf"^DEALLOCATE\s+(?:PREPARE\s+)?(?P<name>ALL|{_IDENT})$"),
        ("discard", r"^DISCARD\s+(?P<what>ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)$"),
        ("checkpoint", r"^CHECKPOINT$"),
        ("explain", r"^EXPLAIN\s+(?:\((?P<options>[^)]*)\)\s*|(?P<analyze>ANALY[SZ]E)\s+(?:VERBOSE\s+)?|VERBOSE\s+)?"
                    r"(?P<statement>(?:SELECT|WITH|VALUES|TABLE)\b.*)$"),
        # storage needs neither: deleted rows are masked and compacted by storage, statistics are exact
        ("maintenance", r"^(?P<command>VACUUM|ANALYZE|ANALYSE)\b(?P<rest>.*)$"),
        *cursor.PATTERNS,  # DECLARE ... CURSOR FOR, FETCH / MOVE, CLOSE: read by planner.cursor
        # sqlglot parses one name only; the planner turns this into a DropIndex plan
        ("drop_index", rf"^DROP\s+INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?(?P<ie>IF\s+EXISTS\s+)?"
                       rf"(?P<names>{_NAME}(?:\s*,\s*{_NAME})*)(?:\s+(?P<behaviour>CASCADE|RESTRICT))?$"),
    )
)


def unquote_identifier(name: str) -> str:
    """PostgreSQL identifier rules: quoted keeps case, unquoted folds to lower case."""
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def unquote_value(value: str) -> str:
    if value.startswith("'") and value.endswith("'"):
        return value[1:-1].replace("''", "'")
    return value


def _utility(text: str) -> Utility | None:
    flat = text.strip()
    for kind, pattern in _UTILITY_PATTERNS:
        m = pattern.match(flat)
        if m:
            return Utility(kind, {k: v for k, v in m.groupdict().items() if v is not None})
    return None


_PARAM_OR_QUOTED = re.compile(
    r"""'(?:[^']|'')*'"""                       # string literal
    r'|"(?:[^"]|"")*"'                          # quoted identifier
    r"|--[^\n]*"                               # line comment
    r"|/\*.*?\*/"                             # block comment
    r"|(\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$).*?\1"  # dollar quoting
    r"|\$\d+",                                # a parameter
    re.DOTALL,
)


def _space_parameters(sql: str) -> str:
    """Put a space after each ``$n``: sqlglot's tokenizer reads ``$1,$2`` as a dollar-quoted string."""
    if not re.search(r"\$\d", sql):
        return sql
    return _PARAM_OR_QUOTED.sub(lambda m: m.group(0) + " " if m.group(0)[1:].isdigit() else m.group(0), sql)


def _tokens(sql: str) -> tuple[str, list]:
    sql = _space_parameters(sql)
    try:
        return sql, _DIALECT.tokenize(sql)
    except TokenError as e:
        raise SqlError("42601", f"syntax error: {e}") from None


def _pieces(tokens: list) -> list[list]:
    """Token runs between semicolons, empty ones dropped."""
    pieces: list[list] = []
    current: list = []
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if current:
                pieces.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        pieces.append(current)
    return pieces


def split(sql: str) -> list[tuple[str, int]]:
    """(statement text, offset) for each non-empty statement of ``sql``."""
    sql, tokens = _tokens(sql)
    return [(sql[p[0].start:p[-1].end + 1], p[0].start) for p in _pieces(tokens)]


def parse(sql: str) -> list[Statement]:
    """All statements of ``sql`` (empty for the empty query). Raises SqlError 42601.

    The text is tokenized once; each statement's tokens go straight to the parser.
    """
    sql, tokens = _tokens(sql)
    statements = []
    for piece in _pieces(tokens):
        offset = piece[0].start
        text = sql[offset:piece[-1].end + 1]
        utility = _utility(text)
        if utility is not None:
            statements.append(Statement(text, offset, utility=utility))
            continue
        if piece[0].token_type == TokenType.VAR:  # not a statement keyword: PostgreSQL points at it
            raise SqlError("42601", f'syntax error at or near "{piece[0].text}"', position=offset + 1)
        fast = _literal_values_insert(piece, sql)
        if fast is not None:
            statements.append(Statement(text, offset, ast=fast))
            continue
        cut = copy.split(piece) if piece[0].token_type == TokenType.COPY else None
        try:
            parsed = _DIALECT.parser().parse(piece if cut is None else piece[:cut + 1], sql)
        except ParseError as e:
            raise _syntax_error(sql, 0, e) from None
        ast = parsed[0] if parsed else None
        if cut is not None and isinstance(ast, exp.Copy):  # the options: planner.copy reads both spellings
            ast.meta["copy_options"] = copy.read_options(piece[cut + 1:])
        if ast is None or isinstance(ast, exp.Command) or _misparsed(ast, text):
            first = text.split(None, 1)[0]
            raise SqlError("42601", f'syntax error at or near "{first}"', position=offset + 1)
        statements.append(Statement(text, offset, ast=ast))
    return statements


_LITERAL_ITEMS = {
    TokenType.NUMBER: lambda t: exp.Literal.number(t.text),
    TokenType.STRING: lambda t: exp.Literal.string(t.text),
    TokenType.NULL: lambda t: exp.Null(),
    TokenType.TRUE: lambda t: exp.Boolean(this=True),
    TokenType.FALSE: lambda t: exp.Boolean(this=False),
    TokenType.DEFAULT: lambda t: exp.Var(this="DEFAULT"),
}


def _literal_values_insert(tokens: list, sql: str) -> exp.Insert | None:
    """``INSERT INTO t [(cols)] VALUES (...), ...`` whose items are all literals or ``$n``: the VALUES
    list is built straight from the tokens (sqlglot's parser costs ~30 ms per 1000 rows); the rest of
    the statement is parsed as usual. None for anything else (RETURNING, ON CONFLICT, expressions)."""
    if len(tokens) < 6 or tokens[0].token_type != TokenType.INSERT:
        return None
    at = next((i for i, t in enumerate(tokens) if t.token_type == TokenType.VALUES), None)
    if at is None or at + 1 >= len(tokens):
        return None
    rows: list[exp.Expr] = []
    i, n = at + 1, len(tokens)
    while True:
        if i >= n or tokens[i].token_type != TokenType.L_PAREN:
            return None
        i += 1
        items: list[exp.Expr] = []
        while True:
            if i >= n:
                return None
            tok = tokens[i]
            kind = tok.token_type
            if kind in _LITERAL_ITEMS:
                items.append(_LITERAL_ITEMS[kind](tok))
                i += 1
            elif kind == TokenType.DASH and i + 1 < n and tokens[i + 1].token_type == TokenType.NUMBER:
                items.append(exp.Neg(this=exp.Literal.number(tokens[i + 1].text)))
                i += 2
            elif kind == TokenType.PARAMETER and i + 1 < n and tokens[i + 1].token_type == TokenType.NUMBER:
                items.append(exp.Parameter(this=exp.Literal.number(tokens[i + 1].text)))
                i += 2
            else:
                return None
            if i >= n:
                return None
            if tokens[i].token_type == TokenType.COMMA:
                i += 1
                continue
            if tokens[i].token_type == TokenType.R_PAREN:
                i += 1
                break
            return None
        rows.append(exp.Tuple(expressions=items))
        if i == n:
            break
        if tokens[i].token_type != TokenType.COMMA:
            return None
        i += 1
    try:
        head = _DIALECT.parser().parse(tokens[:at], sql)[0]
    except ParseError:
        return None
    if not isinstance(head, exp.Insert) or head.expression is not None:
        return None
    head.set("expression", exp.Values(expressions=rows))
    return head


def _misparsed(ast: exp.Expr, text: str) -> bool:
    """sqlglot reads a lone unknown word as a column; PostgreSQL calls that a syntax error."""
    return isinstance(ast, (exp.Column, exp.Alias, exp.Identifier, exp.Literal))


def _syntax_error(text: str, offset: int, e: ParseError) -> SqlError:
    err = e.errors[0] if e.errors else {}
    line, col = err.get("line"), err.get("col")
    highlight = (err.get("highlight") or "").strip()
    position = None
    if line and col:
        lines = text.split("\n")
        start = sum(len(lines[i]) + 1 for i in range(min(line - 1, len(lines))))
        position = offset + start + (col - len(highlight) if highlight else col) + 1
    near = f'"{highlight}"' if highlight else "end of input"
    return SqlError("42601", f"syntax error at or near {near}", position=position,
                    detail=err.get("description"))
