"""COPY's options: both of PostgreSQL's spellings read from tokens, then checked as PostgreSQL does.

sqlglot parses ``COPY target FROM STDIN`` / ``COPY target TO STDOUT`` but not every way of
writing the options after it (the parenthesised list without ``WITH``, the pre-9.0 keywords
``CSV HEADER QUOTE AS '"' FORCE NOT NULL a``), so :func:`split` cuts the statement after
STDIN/STDOUT and :func:`read_options` reads the rest:

    [ WITH ] ( option [ value ] [, ...] )      FORMAT, DELIMITER, NULL, HEADER, QUOTE, ESCAPE,
                                               FORCE_QUOTE, FORCE_NOT_NULL, FORCE_NULL, ENCODING, FREEZE
    [ WITH ] [ BINARY ] [ DELIMITER [ AS ] 'c' ] [ NULL [ AS ] 's' ]
             [ CSV [ HEADER ] [ QUOTE [ AS ] 'q' ] [ ESCAPE [ AS ] 'e' ]
               [ FORCE QUOTE { cols | * } ] [ FORCE NOT NULL cols ] ]

:func:`copy_options` then applies ProcessCopyOptions' rules (src/backend/commands/copy.c): one
value per option (42601), each option only in the formats and directions it belongs to, one-byte
delimiter and quote that differ, and the defaults of each format.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.tokens import TokenType

from planner.errors import SqlError

FORMATS = ("text", "csv", "binary")
_STRINGS = (TokenType.STRING, TokenType.BYTE_STRING, TokenType.NATIONAL_STRING)


@dataclass(frozen=True)
class CopyOptions:
    format: str = "text"
    delimiter: str = "\t"
    null: str = "\\N"
    header: bool | str = False  # True, or "match" (COPY FROM only: the names must match)
    quote: str = '"'
    escape: str = '"'
    force_quote: tuple[str, ...] | str = ()  # column names, or "*"
    force_not_null: tuple[str, ...] | str = ()
    force_null: tuple[str, ...] | str = ()


def split(tokens: list) -> int | None:
    """Index of the STDIN / STDOUT token that ends COPY's head (outside parentheses), or None."""
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.token_type == TokenType.L_PAREN:
            depth += 1
        elif tok.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and tok.token_type == TokenType.VAR and tok.text.upper() in ("STDIN", "STDOUT"):
            return i
    return None


def _syntax(tok: object | None) -> SqlError:
    if tok is None:
        return SqlError("42601", "syntax error at end of input")
    return SqlError("42601", f'syntax error at or near "{tok.text}"')  # type: ignore[attr-defined]


class _Reader:
    def __init__(self, tokens: list) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> object | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def word(self) -> str | None:
        """The next token as an upper-case word (keywords included), or None for punctuation/strings."""
        tok = self.peek()
        if tok is None or tok.token_type in (*_STRINGS, TokenType.L_PAREN, TokenType.R_PAREN,  # type: ignore[attr-defined]
                                             TokenType.COMMA, TokenType.STAR, TokenType.IDENTIFIER):
            return None
        return tok.text.upper()  # type: ignore[attr-defined]

    def take(self) -> object:
        tok = self.peek()
        if tok is None:
            raise _syntax(None)
        self.i += 1
        return tok

    def accept(self, *words: str) -> bool:
        if self.word() in words:
            self.i += 1
            return True
        return False

    def accept_type(self, token_type: TokenType) -> bool:
        tok = self.peek()
        if tok is not None and tok.token_type == token_type:  # type: ignore[attr-defined]
            self.i += 1
            return True
        return False

    def string(self) -> str:
        tok = self.take()
        if tok.token_type not in _STRINGS:  # type: ignore[attr-defined]
            raise _syntax(tok)
        return tok.text  # type: ignore[attr-defined]

    def columns(self) -> tuple[str, ...] | str:
        if self.accept_type(TokenType.STAR):
            return "*"
        if not self.accept_type(TokenType.L_PAREN):
            names = [self.name()]
            while self.accept_type(TokenType.COMMA):
                names.append(self.name())
            return tuple(names)
        names = [self.name()]
        while self.accept_type(TokenType.COMMA):
            names.append(self.name())
        if not self.accept_type(TokenType.R_PAREN):
            raise _syntax(self.peek())
        return tuple(names)

    def name(self) -> str:
        tok = self.take()
        if tok.token_type == TokenType.IDENTIFIER:  # type: ignore[attr-defined]
            return tok.text  # type: ignore[attr-defined]
        if tok.token_type in (*_STRINGS, TokenType.L_PAREN, TokenType.R_PAREN, TokenType.COMMA):  # type: ignore[attr-defined]
            raise _syntax(tok)
        return tok.text.lower()  # type: ignore[attr-defined]

    def value(self) -> object:
        """An option's argument in the parenthesised form: a string, word, number, * or (columns)."""
        tok = self.peek()
        if tok is None or tok.token_type in (TokenType.COMMA, TokenType.R_PAREN):  # type: ignore[attr-defined]
            return True
        if tok.token_type in (TokenType.STAR, TokenType.L_PAREN):  # type: ignore[attr-defined]
            return self.columns()
        self.i += 1
        if tok.token_type in _STRINGS:  # type: ignore[attr-defined]
            return tok.text  # type: ignore[attr-defined]
        return tok.text.lower() if tok.token_type != TokenType.IDENTIFIER else tok.text  # type: ignore[attr-defined]


def read_options(tokens: list) -> list[tuple[str, object, int]]:
    """(option, value, position) in the order written, options lower-case, position the 1-based
    offset of the option's first word in the query string (PostgreSQL points its option errors
    there); raises 42601 on bad syntax."""
    r = _Reader(tokens)
    out: list[tuple[str, object, int]] = []
    r.accept("WITH")
    if r.accept_type(TokenType.L_PAREN):
        while True:
            word = r.word()
            if word is None:
                raise _syntax(r.peek())
            at = r.take().start + 1
            out.append((word.lower(), r.value(), at))
            if r.accept_type(TokenType.R_PAREN):
                break
            if not r.accept_type(TokenType.COMMA):
                raise _syntax(r.peek())
    else:
        while r.peek() is not None:
            at = r.peek().start + 1
            if r.accept("BINARY"):
                out.append(("format", "binary", at))
            elif r.accept("CSV"):
                out.append(("format", "csv", at))
            elif r.accept("HEADER"):
                out.append(("header", True, at))
            elif r.accept("DELIMITER", "NULL", "QUOTE", "ESCAPE", "ENCODING"):
                option = r.tokens[r.i - 1].text.lower()
                r.accept("AS")
                out.append((option, r.string(), at))
            elif r.accept("FREEZE"):
                out.append(("freeze", True, at))
            elif r.accept("FORCE"):
                if r.accept("QUOTE"):
                    out.append(("force_quote", r.columns(), at))
                elif r.accept("NOT"):
                    if not r.accept("NULL"):
                        raise _syntax(r.peek())
                    out.append(("force_not_null", r.columns(), at))
                elif r.accept("NULL"):
                    out.append(("force_null", r.columns(), at))
                else:
                    raise _syntax(r.peek())
            else:
                raise _syntax(r.peek())
    if r.peek() is not None:
        raise _syntax(r.peek())
    return out


def _boolean(option: str, value: object, *, allow_match: bool = False) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "on", "1"):
        return True
    if text in ("false", "off", "0"):
        return False
    if text == "match":
        if allow_match:
            return "match"
        raise SqlError("0A000", f'cannot use "match" with {option.upper()} in COPY TO')
    raise SqlError("42601", f"{option} requires a Boolean value" if not allow_match
                   else f"{option} requires a Boolean value or \"match\"")


def _single_byte(kind: str, value: str) -> None:
    if len(value.encode("utf-8")) != 1:
        raise SqlError("0A000", f"COPY {kind} must be a single one-byte character")


def copy_options(pairs: list[tuple[str, object, int]], *, is_from: bool) -> CopyOptions:
    """The options of one COPY, checked and defaulted (ProcessCopyOptions)."""
    seen: dict[str, object] = {}
    where: dict[str, int] = {}
    for option, value, at in pairs:
        if option in seen:
            raise SqlError("42601", "conflicting or redundant options", position=at)
        if option not in ("format", "delimiter", "null", "header", "quote", "escape", "force_quote",
                          "force_not_null", "force_null", "encoding", "freeze", "default", "on_error"):
            raise SqlError("42601", f'option "{option}" not recognized', position=at)
        if option in ("default", "on_error"):
            raise SqlError("0A000", f"COPY option {option.upper()} is not supported", position=at)
        seen[option], where[option] = value, at
    fmt = str(seen.get("format", "text")).lower()
    if fmt not in FORMATS:
        raise SqlError("22023", f'COPY format "{fmt}" not recognized', position=where["format"])
    csv = fmt == "csv"
    for option in ("delimiter", "null", "quote", "escape", "encoding"):
        if option in seen and not isinstance(seen[option], str):
            raise SqlError("42601", f"{option} requires a string value" if seen[option] is not True
                           else f"{option} requires a parameter")
    if "encoding" in seen and str(seen["encoding"]).replace("-", "").lower() not in ("utf8", "unicode"):
        raise SqlError("0A000", f'COPY encoding "{seen["encoding"]}" is not supported: sqlvec speaks UTF8 only')
    if "freeze" in seen:
        _boolean("freeze", seen["freeze"])
    header = _boolean("header", seen["header"], allow_match=is_from) if "header" in seen else False
    if fmt == "binary":
        for option in ("delimiter", "null", "header"):
            if option in seen:
                raise SqlError("42601", f"cannot specify {option.upper()} in BINARY mode")
    delimiter = str(seen.get("delimiter", "," if csv else "\t"))
    null = str(seen.get("null", "" if csv else "\\N"))
    quote = str(seen.get("quote", '"'))
    escape = str(seen.get("escape", quote))
    _single_byte("delimiter", delimiter)
    if delimiter in "\r\n":
        raise SqlError("22023", "COPY delimiter cannot be newline or carriage return")
    if "\r" in null or "\n" in null:
        raise SqlError("22023", "COPY null representation cannot use newline or carriage return")
    if not csv and delimiter in "\\.abcdefghijklmnopqrstuvwxyz0123456789":
        raise SqlError("22023", f'COPY delimiter cannot be "{delimiter}"')
    for option, kind in (("quote", "quote"), ("escape", "escape")):
        if option in seen and not csv:
            raise SqlError("0A000", f"COPY {kind} available only in CSV mode")
    if csv:
        _single_byte("quote", quote)
        _single_byte("escape", escape)
        if delimiter == quote:
            raise SqlError("22023", "COPY delimiter and quote must be different")
    for option, label in (("force_quote", "force quote"), ("force_not_null", "force not null"),
                          ("force_null", "force null")):
        if option not in seen:
            continue
        if not csv:
            raise SqlError("0A000", f"COPY {label} available only in CSV mode")
        if (option == "force_quote") == is_from:
            raise SqlError("0A000", f"COPY {label} only available using COPY {'TO' if is_from else 'FROM'}")
        if seen[option] is True:
            raise SqlError("42601", f"argument to option \"{option}\" must be a list of column names")
    if (delimiter in null) and fmt != "binary":
        raise SqlError("22023", "COPY delimiter must not appear in the NULL specification")
    if csv and quote in null:
        raise SqlError("22023", "CSV quote character must not appear in the NULL specification")
    return CopyOptions(fmt, delimiter, null, header, quote, escape,
                       _columns(seen.get("force_quote")), _columns(seen.get("force_not_null")),
                       _columns(seen.get("force_null")))


def _columns(value: object) -> tuple[str, ...] | str:
    if value is None:
        return ()
    if value == "*":
        return "*"
    if isinstance(value, tuple):
        return value
    return (str(value),)
