"""SQL cursors: the arguments of DECLARE, FETCH / MOVE and CLOSE (https://www.postgresql.org/docs/16/sql-declare.html,
sql-fetch.html, sql-close.html), read from the text that planner.parse matched.

    DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query
    FETCH [direction] [FROM | IN] name        MOVE [direction] [FROM | IN] name
    CLOSE {name | ALL}

A direction becomes a :class:`Motion`: one of ``forward`` / ``backward`` with a row count (None for
ALL; 0 re-reads the current row), or ``absolute`` / ``relative`` with a signed position. The SQL
engine (sqlvec/cursors.py) moves the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.errors import SqlError

IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'

# planner.parse's patterns for the four statements (their groups are the Utility's args)
PATTERNS = (
    ("declare", rf"^DECLARE\s+(?P<name>{IDENT})\s+(?P<options>(?:[A-Za-z]+\s+)*?)CURSOR"
                r"(?:\s+(?P<hold>WITH|WITHOUT)\s+HOLD)?\s+FOR\s+(?P<query>.+)$"),
    ("fetch", r"^(?P<command>FETCH|MOVE)(?P<rest>\s.*)$"),
    ("close", rf"^CLOSE\s+(?P<name>ALL|{IDENT})$"),
)


@dataclass(frozen=True)
class Motion:
    kind: str  # forward | backward | absolute | relative
    count: int | None  # rows (None = ALL) for forward/backward; the position for absolute/relative

    @property
    def backward(self) -> bool:
        """Whether it can need rows before the current one (a scrollable cursor's, then)."""
        if self.kind == "backward":
            return True
        if self.kind == "forward":
            return self.count == 0  # FORWARD 0 re-reads the current row
        if self.kind == "relative":
            return self.count is not None and self.count <= 0
        return self.count is not None and self.count < 0  # ABSOLUTE -n counts from the end


@dataclass(frozen=True)
class Declare:
    name: str
    binary: bool
    scroll: bool | None  # None: neither SCROLL nor NO SCROLL was written
    hold: bool
    query: str


def _name(text: str) -> str:
    from planner.parse import unquote_identifier  # planner.parse imports this module for PATTERNS

    return unquote_identifier(text)


def close(args: dict) -> str | None:
    """The cursor ``CLOSE`` names; None for ``CLOSE ALL``."""
    return None if args["name"].upper() == "ALL" else _name(args["name"])


def declare(args: dict) -> Declare:
    words = args.get("options", "").upper().split()
    binary = scroll = None
    i = 0
    while i < len(words):
        w = words[i]
        if w == "BINARY" and binary is None:
            binary = True
        elif w in ("INSENSITIVE", "ASENSITIVE"):
            pass  # every sqlvec cursor reads a snapshot: insensitive
        elif w == "SCROLL" and scroll is None:
            scroll = True
        elif w == "NO" and i + 1 < len(words) and words[i + 1] == "SCROLL" and scroll is None:
            scroll = False
            i += 1
        else:
            raise SqlError("42601", f'syntax error at or near "{w}"' if w not in ("BINARY", "SCROLL")
                           else "cannot specify both SCROLL and NO SCROLL" if w == "SCROLL"
                           else f'conflicting or redundant options: "{w}"')
        i += 1
    return Declare(_name(args["name"]), bool(binary), scroll, (args.get("hold") or "").upper() == "WITH",
                   args["query"])


_COUNT = r"[+-]?\d+"
_DIRECTIONS = (
    (re.compile(r"NEXT", re.I), lambda m: Motion("forward", 1)),
    (re.compile(r"PRIOR", re.I), lambda m: Motion("backward", 1)),
    (re.compile(r"FIRST", re.I), lambda m: Motion("absolute", 1)),
    (re.compile(r"LAST", re.I), lambda m: Motion("absolute", -1)),
    (re.compile(rf"ABSOLUTE\s+({_COUNT})", re.I), lambda m: Motion("absolute", int(m.group(1)))),
    (re.compile(rf"RELATIVE\s+({_COUNT})", re.I), lambda m: Motion("relative", int(m.group(1)))),
    (re.compile(r"ALL", re.I), lambda m: Motion("forward", None)),
    (re.compile(r"FORWARD(?:\s+ALL)?", re.I), lambda m: Motion("forward", None if "ALL" in m.group(0).upper()
                                                                  else 1)),
    (re.compile(rf"FORWARD\s+({_COUNT})", re.I), lambda m: _signed("forward", int(m.group(1)))),
    (re.compile(r"BACKWARD(?:\s+ALL)?", re.I), lambda m: Motion("backward", None if "ALL" in m.group(0).upper()
                                                                   else 1)),
    (re.compile(rf"BACKWARD\s+({_COUNT})", re.I), lambda m: _signed("backward", int(m.group(1)))),
    (re.compile(_COUNT), lambda m: _signed("forward", int(m.group(0)))),
)
_TAIL = re.compile(rf"^(?P<direction>.*?)\s*(?:(?<![A-Za-z0-9_])(?:FROM|IN)\s+)?(?P<name>{IDENT})$", re.I | re.S)


def _signed(kind: str, n: int) -> Motion:
    """``FORWARD -3`` is ``BACKWARD 3`` and the other way round, as in PostgreSQL."""
    if n < 0:
        return Motion("backward" if kind == "forward" else "forward", -n)
    return Motion(kind, n)


def fetch(args: dict) -> tuple[str, Motion]:
    """(cursor name, motion) of ``FETCH`` / ``MOVE`` ``args["rest"]``."""
    rest = args["rest"].strip()
    m = _TAIL.match(rest)
    if m is None:
        raise SqlError("42601", f'syntax error at end of input in {args["command"].upper()}')
    direction = m.group("direction").strip()
    if direction.upper() in ("FROM", "IN"):
        direction = ""
    if not direction:
        return _name(m.group("name")), Motion("forward", 1)
    for pattern, make in _DIRECTIONS:
        d = pattern.fullmatch(direction)
        if d is not None:
            return _name(m.group("name")), make(d)
    first = direction.split()[0]
    raise SqlError("42601", f'syntax error at or near "{first}"')
