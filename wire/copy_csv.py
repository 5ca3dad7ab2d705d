"""COPY ... FROM STDIN in CSV format, decoded to Arrow column-at-a-time.

Format (https://www.postgresql.org/docs/16/sql-copy.html#id-1.9.3.55.9.3): one record per line,
fields separated by DELIMITER (``,``), a field may be quoted with QUOTE (``"``) and then holds
delimiters, newlines and ESCAPE-d quotes (``""`` by default); an unquoted field equal to NULL (the
empty string by default) is NULL and a quoted one never is, except for FORCE_NULL columns;
FORCE_NOT_NULL columns read the NULL string as that string. HEADER skips the first line, HEADER
MATCH checks its names against the columns. A ``\\.`` line ends the data.

Arrow's multi-threaded CSV reader splits the fields (it keeps quoted and unquoted empty fields
apart, as PostgreSQL does). What it does not report is where each record starts, so the record
boundaries are found once more with numpy: a newline ends a record when an even number of quote
characters precede it. That gives every row its line number for errors (a quoted newline makes a
record span lines, as PostgreSQL counts them) and finds the empty lines Arrow would read as a row
of NULLs. The fields then go through the text format's per-type conversions
(:func:`wire.copy_text.convert_fields`): a value reads the same in both formats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from wire.copy_text import _context, _strip_end_marker, convert_fields
from wire.session import PgError

_LB = pa.large_binary()


def _record_starts(buf: np.ndarray, quote: int, escape: int) -> tuple[np.ndarray, int | None]:
    """Offsets where each record begins (a final newline is assumed present), and the offset of a
    record whose quoted field never closes (None when every quote is closed)."""
    quotes = np.flatnonzero(buf == quote)
    if escape != quote and quotes.size:  # an escaped quote inside a quoted field does not toggle
        before = quotes[quotes > 0] - 1
        escaped = np.zeros(quotes.size, bool)
        escaped[quotes > 0] = buf[before] == escape
        quotes = quotes[~escaped]
    newlines = np.flatnonzero(buf == 10)
    inside = np.searchsorted(quotes, newlines) % 2 == 1
    ends = newlines[~inside]
    unterminated = None
    if quotes.size % 2 == 1:
        unterminated = int(ends[-1]) + 1 if ends.size else 0
    return np.concatenate([[0], ends[:-1] + 1]).astype(np.int64), unterminated


def _unterminated(data: bytes, start: int) -> PgError:
    """PostgreSQL's error for a quote still open at the end of the data: the line it reached (the
    record's first line plus the newlines read looking for the closing quote) and those lines."""
    rest = data[start:]
    line = data.count(b"\n", 0, start) + 1 + rest.count(b"\n")
    return _context(PgError("22P04", "unterminated CSV quoted field"), line, None,
                    rest.decode("utf-8", "replace"))


def decode_copy_csv(
    data: bytes,
    names: list[str],
    oids: list[int],
    arrow_types: list[pa.DataType],
    *,
    delimiter: str = ",",
    null: str = "",
    header: bool | str = False,
    quote: str = '"',
    escape: str = '"',
    force_not_null: Sequence[str] | str = (),
    force_null: Sequence[str] | str = (),
) -> pa.Table:
    """Rows of COPY CSV -> a table with ``names`` and exactly ``arrow_types`` (see decode_copy_text).

    Errors are PgError: 22P04 wrong number of columns, unterminated CSV quoted field, a header that
    does not match; 22P02 / 22007 / 22003 / 22000 bad values; each with ``COPY line N`` as its CONTEXT.
    """
    k = len(names)
    data = original = _strip_end_marker(data)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, np.uint8)
    starts, unterminated = _record_starts(buf, ord(quote), ord(escape))
    if unterminated is not None:
        raise _unterminated(original, unterminated)
    newlines = np.flatnonzero(buf == 10)
    line_of_record = np.searchsorted(newlines, starts) + 1  # 1-based physical line of each record start
    if not buf.size:
        starts = starts[:0]
    if header and starts.size:
        first = data[: int(starts[1]) if starts.size > 1 else len(data)]
        if header == "match":
            _match_header(first, names, delimiter, quote, escape)
        body = data[len(first):]
        starts, line_of_record = starts[1:] - len(first), line_of_record[1:]
    else:
        body = data
    n = int(starts.size)
    if n == 0:
        return pa.Table.from_arrays([pa.array([], t) for t in arrow_types], names=names)
    ends = np.concatenate([starts[1:], [len(body)]])
    lengths = ends - starts
    body_buf = np.frombuffer(body, np.uint8)
    blank = (lengths == 1) | ((lengths == 2) & (body_buf[np.minimum(starts, len(body) - 1)] == 13))
    if k > 1 and blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise _context(PgError("22P04", f'missing data for column "{names[1]}"'), int(line_of_record[row]), None, "")

    invalid: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    internal = [f"c{i}" for i in range(k)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(body),
            read_options=pa_csv.ReadOptions(column_names=internal, block_size=16 << 20),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, quote_char=quote, double_quote=escape == quote,
                escape_char=escape if escape != quote else False, newlines_in_values=quote.encode() in body,
                ignore_empty_lines=False, invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: _LB for c in internal}, null_values=[null], strings_can_be_null=True,
                quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:  # a quote left open at the end, or a malformed field
        raise PgError("22P04", f"invalid CSV data: {exc}") from None
    if invalid:
        row = invalid[0]
        pos = body.find(row.text.encode("utf-8", "surrogateescape"))
        line = int(line_of_record[np.searchsorted(starts, pos, side="right") - 1]) if pos >= 0 else None
        err = (PgError("22P04", f'missing data for column "{names[row.actual_columns]}"')
               if row.actual_columns < row.expected_columns
               else PgError("22P04", "extra data after last expected column"))
        raise _context(err, line if line is not None else 0, None, row.text[:100])
    if table.num_rows != n:
        raise PgError("22P04", f"CSV data has {table.num_rows} records where {n} lines were found",
                      hint="Check the QUOTE and ESCAPE options.")
    not_null = set(names) if force_not_null == "*" else set(force_not_null)
    force = set(names) if force_null == "*" else set(force_null)
    fields, nulls = [], []
    for name, c in zip(names, internal):
        col = table.column(c).combine_chunks()
        if name in not_null:
            col = col.fill_null(null.encode())
        elif name in force:
            col = pc.if_else(pc.equal(col, pa.scalar(null.encode(), _LB)), pa.scalar(None, _LB), col)
        is_null = col.is_null().to_numpy(zero_copy_only=False)
        if col.null_count:
            col = col.fill_null(b"")
        fields.append(col)
        nulls.append(is_null)
    return convert_fields(fields, nulls, names, oids, arrow_types, lambda r: int(line_of_record[r]))


def _match_header(line: bytes, names: list[str], delimiter: str, quote: str, escape: str) -> None:
    table = pa_csv.read_csv(
        pa.py_buffer(line),
        read_options=pa_csv.ReadOptions(autogenerate_column_names=True),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=quote, double_quote=escape == quote,
                                          escape_char=escape if escape != quote else False),
        convert_options=pa_csv.ConvertOptions(strings_can_be_null=False, column_types={}),
    )
    got = [str(table.column(i)[0].as_py()) if table.num_rows else "" for i in range(table.num_columns)]
    check_header(got, names)


def check_header(got: list[str], names: list[str]) -> None:
    """HEADER MATCH: the header line's fields must be the COPY's column names, in order."""
    if len(got) != len(names):
        raise _context(PgError("22P04", f"wrong number of fields in header line: got {len(got)}, expected "
                                        f"{len(names)}"), 1, None, None)
    for i, (g, want) in enumerate(zip(got, names), start=1):
        if g != want:
            raise _context(PgError("22P04", f'column name mismatch in header line field {i}: got "{g}", '
                                            f'expected "{want}"'), 1, None, None)
