"""COPY ... FROM STDIN in PostgreSQL's text format, decoded to Arrow column-at-a-time.

Format (https://www.postgresql.org/docs/16/sql-copy.html#id-1.9.3.55.9.2): one row per line
ending in ``\\n`` (``\\r\\n`` accepted), columns separated by the delimiter (tab), ``\\N`` for
NULL, backslash escapes ``\\b \\f \\n \\r \\t \\v``, ``\\ooo`` octal, ``\\xhh`` hex, and a backslash
before any other character (the delimiter, a newline, a backslash) standing for that character.
An optional ``\\.`` line ends the data.

The whole buffer is split with numpy: backslash runs give the escaped positions (a backslash
escapes the next byte when it sits at an even offset in its run), the remaining tabs and
newlines are the separators, and a row with the wrong number of fields is an error before any
value is converted. Escapes are resolved once for the buffer, then every column is a gather of
its fields and one vectorised cast. Values pyarrow's casts refuse (PostgreSQL accepts a few
more spellings: ``' 12'``, ``'1_000'``, ``'yes'``...) take a per-value path, which also finds
the first bad line for the error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from wire import pgtypes as T
from wire.session import PgError

_LB = pa.large_binary()
_ESCAPE_BYTES = {ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("v"): 11}
_SIMPLE_ESCAPES = np.arange(256, dtype=np.uint8)
for _k, _v in _ESCAPE_BYTES.items():
    _SIMPLE_ESCAPES[_k] = _v
_IS_OCTAL = np.zeros(256, bool)
_IS_OCTAL[ord("0") : ord("8")] = True
_NIBBLE = np.full(256, 255, np.int64)
_NIBBLE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_NIBBLE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_TRUE = pa.array(["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"])
_FALSE = pa.array(["f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"])


class _Row(Exception):
    """A conversion failed at row ``row`` (0-based in this buffer)."""

    def __init__(self, row: int, error: PgError) -> None:
        super().__init__(error.message)
        self.row = row
        self.error = error


def _printable(value: str) -> str:
    """PostgreSQL's limit_printout_length: at most 100 bytes of the value (whole characters), then
    "..." when it was longer."""
    raw = value.encode()
    if len(raw) <= 100:
        return value
    return raw[:100].decode("utf-8", "ignore") + "..."


def _context(err: PgError, line: int, column: str | None, value: str | None) -> PgError:
    """``err`` with its CONTEXT, "COPY line N, column c: "value"" (the executor names the table:
    PostgreSQL's "COPY t, line N, ...")."""
    where = f"COPY line {line}"
    if column is not None:
        where += f", column {column}"
    if value is not None:
        where += f': "{_printable(value)}"'
    return PgError(err.sqlstate, err.message, detail=err.detail, hint=err.hint, where=where)


def _strip_end_marker(data: bytes) -> bytes:
    if b"\\" not in data:  # a memchr; searching for "\n\\." is slow where "." is everywhere
        return data
    if data.startswith(b"\\.") and data[2:3] in (b"", b"\n", b"\r"):
        return b""
    pos = data.find(b"\n\\.")
    while pos >= 0:
        if data[pos + 3 : pos + 4] in (b"", b"\n", b"\r"):
            return data[: pos + 1]
        pos = data.find(b"\n\\.", pos + 1)
    return data


def _escape_starts(buf: np.ndarray) -> np.ndarray:
    """Positions of backslashes that begin an escape (the ones at even offsets in their run)."""
    bs = np.flatnonzero(buf == 0x5C)
    if bs.size == 0:
        return bs
    run_start = np.ones(bs.size, bool)
    run_start[1:] = bs[1:] != bs[:-1] + 1
    first = np.maximum.accumulate(np.where(run_start, np.arange(bs.size), 0))
    return bs[(np.arange(bs.size) - first) % 2 == 0]


def _unescape(buf: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resolve every escape -> (new buffer, keep mask over the old one)."""
    padded = np.concatenate([buf, np.zeros(4, np.uint8)])
    c1, c2, c3 = padded[starts + 1], padded[starts + 2], padded[starts + 3]
    value = _SIMPLE_ESCAPES[c1].astype(np.int64)
    consumed = np.full(starts.size, 2, np.int64)
    octal = _IS_OCTAL[c1]
    oct2 = octal & _IS_OCTAL[c2]
    oct3 = oct2 & _IS_OCTAL[c3]
    oct_value = c1.astype(np.int64) - 48
    oct_value = np.where(oct2, oct_value * 8 + c2 - 48, oct_value)
    oct_value = np.where(oct3, oct_value * 8 + c3 - 48, oct_value)
    value = np.where(octal, oct_value & 0xFF, value)
    consumed = np.where(octal, 2 + oct2 + oct3, consumed)
    hex1 = (c1 == ord("x")) & (_NIBBLE[c2] < 16)
    hex2 = hex1 & (_NIBBLE[c3] < 16)
    hex_value = np.where(hex2, _NIBBLE[c2] * 16 + _NIBBLE[c3], _NIBBLE[c2])
    value = np.where(hex1, hex_value, value)
    consumed = np.where(hex1, 3 + hex2, consumed)
    out = buf.copy()
    out[starts] = value.astype(np.uint8)
    keep = np.ones(buf.size + 4, bool)
    for k in (1, 2, 3):
        keep[starts[consumed > k] + k] = False
    keep = keep[: buf.size]
    return out[keep], keep


def _raw_line(buf: np.ndarray, line_starts: np.ndarray, line: int) -> str:
    start = int(line_starts[line])
    end = int(line_starts[line + 1]) - 1 if line + 1 < len(line_starts) else buf.size
    return bytes(buf[start : min(end, start + 104)]).decode("utf-8", "replace")  # _printable cuts to 100


def decode_copy_text(
    data: bytes | bytearray,
    names: list[str],
    oids: list[int],
    arrow_types: list[pa.DataType],
    *,
    delimiter: str = "\t",
    null: str = "\\N",
    first_line: int = 1,
    plain: bool = True,
) -> pa.Table:
    """Rows of COPY text -> a table with ``names`` and exactly ``arrow_types``.

    ``oids`` are the columns' PostgreSQL types (they decide how text is read: an int8 column
    stored as int64, a uuid stored as string, a vector stored as fixed_size_list<float32, n>).
    ``first_line`` numbers the first line of ``data`` in error messages, for callers that
    decode a stream in chunks of whole lines (see :class:`CopyTextDecoder`).

    Errors are PgError: 22P04 wrong number of columns, 22P02 / 22007 / 22003 bad values,
    22000 wrong vector dimension, each with ``COPY line N, column c: "value"`` in the detail.
    ``plain=False`` skips the one-pass path (:func:`_decode_plain`), for a caller that tried it.
    """
    k = len(names)
    if not (len(oids) == len(arrow_types) == k):
        raise ValueError("names, oids and arrow_types must have the same length")
    delim = delimiter.encode("utf-8")
    if len(delim) != 1 or delim in b"\\\r\n":
        raise PgError("22023", "COPY delimiter must be a single one-byte character")
    data = _strip_end_marker(data)
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            raise PgError("22P04", "literal carriage return found in data",
                          hint='Use "\\r" to represent carriage return.')
        data = data.replace(b"\r\n", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    simple = _decode_plain(data, names, oids, arrow_types, delimiter, null, first_line) if plain else None
    if simple is not None:
        return simple
    buf = np.frombuffer(data, np.uint8)
    starts = _escape_starts(buf)
    if starts.size and starts[-1] == buf.size - 2:
        # The final newline is escaped (a backslash at the end of the data): end the line anyway.
        buf = np.concatenate([buf, np.frombuffer(b"\n", np.uint8)])
    is_sep = (buf == delim[0]) | (buf == 10)
    if starts.size:
        is_sep[starts + 1] = False
    sep_pos = np.flatnonzero(is_sep)
    is_nl = buf[sep_pos] == 10
    n_lines = int(is_nl.sum())
    line_of_sep = np.cumsum(is_nl) - is_nl
    fields_per_line = np.bincount(line_of_sep, minlength=n_lines) if n_lines else np.zeros(0, np.int64)
    if n_lines and (fields_per_line != k).any():
        bad = int(np.flatnonzero(fields_per_line != k)[0])
        got = int(fields_per_line[bad])
        line_starts = np.concatenate([[0], sep_pos[is_nl] + 1])
        err = (PgError("22P04", f'missing data for column "{names[got]}"') if got < k
               else PgError("22P04", "extra data after last expected column"))
        raise _context(err, first_line + bad, None, _raw_line(buf, line_starts, bad))
    if n_lines == 0:
        return pa.Table.from_arrays([pa.array([], t) for t in arrow_types], names=names)

    field_end = sep_pos
    field_start = np.concatenate([[0], sep_pos[:-1] + 1])
    null_bytes = null.encode("utf-8")
    raw_len = field_end - field_start
    is_null = raw_len == len(null_bytes)
    for j, byte in enumerate(null_bytes):
        is_null &= buf[np.where(is_null, field_start + j, 0)] == byte
    is_null = is_null.reshape(n_lines, k)

    if starts.size:
        out, keep = _unescape(buf, starts)
        new_pos = np.cumsum(keep) - 1
        field_end = new_pos[sep_pos]
        field_start = np.concatenate([[0], field_end[:-1] + 1])
        buf = out
    offsets = np.empty(2 * field_end.size + 1, np.int64)
    offsets[0:-1:2] = field_start
    offsets[1::2] = field_end
    offsets[-1] = field_end[-1] + 1
    pieces = pa.Array.from_buffers(_LB, 2 * field_end.size, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    field_index = 2 * np.arange(n_lines * k, dtype=np.int64).reshape(n_lines, k)

    fields = [pieces.take(pa.array(field_index[:, c])) for c in range(k)]
    return convert_fields(fields, [is_null[:, c] for c in range(k)], names, oids, arrow_types,
                          lambda row: first_line + row)


def _decode_plain(data: bytes | bytearray, names: list[str], oids: list[int], arrow_types: list[pa.DataType],
                  delimiter: str, null: str, first_line: int) -> pa.Table | None:
    """The common bulk-load shape, read in one pass by Arrow's multi-threaded CSV parser: no
    backslash (so no escapes and no ``\\N``), no NUL, no NULL marker, one ``vector(n)`` column
    (n >= 2) and scalars.

    The buffer is read as CSV split on commas, the separator of vector elements: a line
    ``s1<TAB>[e0,e1,...,e(n-1)]<TAB>s2`` is exactly ``n`` comma fields, ``s1<TAB>[e0``, then
    ``e1`` ... ``e(n-2)`` read as float32 by the parser, then ``e(n-1)]<TAB>s2``. The first and
    last fields are split on the delimiter here. That is exact when every line has ``n`` comma
    fields, the first holds exactly as many delimiters as there are columns before the vector
    and ends in ``[`` and a number, and the last begins with a number and ``]`` and holds as
    many delimiters as there are columns after it: the line then splits on the delimiter into
    its columns with a vector of exactly ``n`` numbers (no scalar can hold a comma, or the
    counts would not add up). None when any of it does not hold (a comma or bracket in a
    scalar, spaces in a vector, a wrong dimension, NaN): the general path then decodes the
    buffer and reports errors with their lines.

    In two stages: :func:`_plain_parse` (the parser, which needs nothing of the lines before, so it
    can run ahead on the next chunk) and :func:`_plain_finish`."""
    parsed = _plain_parse(data, arrow_types, delimiter, null)
    return None if parsed is None else _plain_finish(parsed, names, oids, arrow_types, delimiter, first_line)


def _plain_parse(data: bytes | bytearray, arrow_types: list[pa.DataType], delimiter: str, null: str
                 ) -> pa.Table | None:
    """The comma-split CSV read of :func:`_decode_plain`; None where the plain path does not apply."""
    vectors = [c for c, t in enumerate(arrow_types) if pa.types.is_fixed_size_list(t)]
    if (len(vectors) != 1 or not pa.types.is_float32(arrow_types[vectors[0]].value_type)
            or arrow_types[vectors[0]].list_size < 2
            or delimiter in ",[]" or not data or b"\\" in data or b"\x00" in data):
        return None
    if null and "\\" not in null and null.encode("utf-8") in data:
        return None
    dim = arrow_types[vectors[0]].list_size
    cols = [f"e{i}" for i in range(dim)]
    types = {c: pa.float32() for c in cols}
    types[cols[0]] = types[cols[-1]] = pa.string()
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data), read_options=pa_csv.ReadOptions(column_names=cols),
            parse_options=pa_csv.ParseOptions(delimiter=",", quote_char=False, escape_char=False,
                                              double_quote=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # a line with another number of comma fields, or an element Arrow does not read
    return table


def _plain_finish(table: pa.Table, names: list[str], oids: list[int], arrow_types: list[pa.DataType],
                  delimiter: str, first_line: int) -> pa.Table | None:
    """The rows of a :func:`_plain_parse` table: the edge fields split, the vector built, the scalars
    converted; None where a check fails (the general path then reports the line)."""
    v = next(c for c, t in enumerate(arrow_types) if pa.types.is_fixed_size_list(t))
    k, dim = len(names), arrow_types[v].list_size
    n = table.num_rows
    head = _split_edge(table.column(0), delimiter, v + 1, "[", first=False)
    tail = _split_edge(table.column(dim - 1), delimiter, k - v, "]", first=True)
    if head is None or tail is None:
        return None
    matrix = np.empty((n, dim), np.float32)
    matrix[:, 0], matrix[:, -1] = head[-1], tail[0]
    row = 0
    if dim > 2:
        for batch in table.to_batches():  # the parser's inner columns -> rows, a block at a time
            matrix[row: row + batch.num_rows, 1:-1] = np.vstack([c.to_numpy() for c in batch.columns[1:-1]]).T
            row += batch.num_rows
    if not np.isfinite(matrix).all():
        return None  # NaN / infinity: the general path reports it
    scalars = head[:-1] + tail[1:]
    rest = [c for c in range(k) if c != v]
    converted = convert_fields(scalars, [np.zeros(n, bool)] * len(rest),
                               [names[c] for c in rest], [oids[c] for c in rest], [arrow_types[c] for c in rest],
                               lambda r: first_line + r)
    vector = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim).cast(arrow_types[v])
    columns = [converted.column(names[c]) if c != v else vector for c in range(k)]
    return pa.Table.from_arrays(columns, schema=pa.schema([pa.field(m, t) for m, t in zip(names, arrow_types)]))


def _split_edge(column: pa.ChunkedArray, delimiter: str, parts: int, bracket: str, *, first: bool
                ) -> list[Any] | None:
    """The first (``first=False``: ``s<TAB>...<TAB>[e0``) or last (``first=True``: ``e(n-1)]<TAB>s...``)
    comma field of every line, split on the delimiter into ``parts`` pieces: the scalar fields (as
    large_binary, for :func:`convert_fields`), and the vector's edge element (the last piece or the
    first) as float32 numpy. None unless every line has exactly ``parts`` pieces and the element
    carries its bracket and reads as a number.

    The pieces are cut with numpy from the column's own buffers: the delimiters' positions, checked
    to fall ``parts - 1`` in each line, bound the pieces, which are gathered out of the column."""
    text = column.combine_chunks()
    n = len(text)
    if n == 0 or text.null_count:
        return None
    offsets = np.frombuffer(text.buffers()[1], np.int32, n + 1, text.offset * 4).astype(np.int64)
    data_buffer = text.buffers()[2]
    data = np.frombuffer(data_buffer, np.uint8)
    at = np.flatnonzero(data[offsets[0]: offsets[-1]] == ord(delimiter)) + offsets[0]
    if at.size != n * (parts - 1):
        return None
    at = at.reshape(n, parts - 1)
    if parts > 1 and ((at[:, 0] < offsets[:-1]).any() or (at[:, -1] >= offsets[1:]).any()):
        return None  # sorted, as many as lines times parts - 1, and each line's within it: parts - 1 each
    starts = np.column_stack([offsets[:-1], at + 1])
    ends = np.column_stack([at, offsets[1:]])
    edge = 0 if first else parts - 1
    begin, end = starts[:, edge], ends[:, edge]
    mark = end - 1 if first else begin
    if ((end - begin) < 2).any() or (data[mark] != ord(bracket)).any():
        return None
    number = _gather(data_buffer, begin if first else begin + 1, end - 1 if first else end, pa.large_string())
    try:
        values = number.cast(pa.float32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    fields = [_gather(data_buffer, starts[:, c], ends[:, c], _LB) for c in range(parts)]
    fields[edge] = values
    return fields


def _gather(data: pa.Buffer, starts: np.ndarray, ends: np.ndarray, kind: pa.DataType) -> pa.Array:
    """The byte ranges ``[starts[i], ends[i])`` of ``data`` (in order, not overlapping) as one array of
    ``kind``: they are the even elements of an array whose odd ones are the gaps between them."""
    bounds = np.empty(2 * starts.size + 1, np.int64)
    bounds[0:-1:2], bounds[1::2], bounds[-1] = starts, ends, ends[-1]
    spaced = pa.Array.from_buffers(kind, 2 * starts.size, [None, pa.py_buffer(bounds), data])
    return spaced.take(pa.array(np.arange(0, 2 * starts.size, 2)))


def convert_fields(fields: list[pa.Array], nulls: list[np.ndarray], names: list[str], oids: list[int],
                   arrow_types: list[pa.DataType], line_of_row: Callable[[int], int]) -> pa.Table:
    """Each column's unescaped field bytes (large_binary, one per row; ``nulls`` marks NULL rows) ->
    the table of ``arrow_types``, read with the text input rules of each column's type (``oids``).
    A bad value raises PgError with ``COPY line N, column c: "value"``, N = ``line_of_row(row)``.
    The CSV decoder shares this: only the splitting into fields differs between the formats."""
    columns = []
    for c, raw in enumerate(fields):
        mask = pa.array(nulls[c]) if nulls[c].any() else None
        try:
            columns.append(_convert(raw, mask, nulls[c], oids[c], arrow_types[c]))
        except _Row as failure:
            value = raw[failure.row].as_py()
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else None
            raise _context(failure.error, line_of_row(failure.row), names[c], text) from None
    return pa.Table.from_arrays(columns, schema=pa.schema([pa.field(n, t) for n, t in zip(names, arrow_types)]))


# --------------------------------------------------------------------------- conversions


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _to_text(raw: pa.Array, nulls: np.ndarray) -> pa.Array:
    """Fields as large_string, NULL where ``nulls``; invalid UTF-8 or NUL -> 22021 at its row."""
    try:
        text = raw.view(pa.large_string())
        text.validate(full=True)
    except pa.ArrowInvalid:
        for row, value in enumerate(raw.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _Row(row, PgError(
                    "22021", f'invalid byte sequence for encoding "UTF8": 0x{value[exc.start:exc.start + 1].hex()}'
                )) from None
        raise
    has_nul = pc.match_substring(text, "\x00").fill_null(False).to_numpy(zero_copy_only=False) & ~nulls
    if has_nul.any():
        raise _Row(_first(has_nul), PgError("22021", 'invalid byte sequence for encoding "UTF8": 0x00'))
    if nulls.any():
        text = pc.if_else(pa.array(nulls), pa.scalar(None, pa.large_string()), text)
    return text


def _per_value(text: pa.Array, parse: Callable[[str], Any], target: pa.DataType) -> pa.Array:
    """The slow path: parse each value with PostgreSQL's rules (first error names its row)."""
    values: list[Any] = []
    for row, v in enumerate(text.to_pylist()):
        if v is None:
            values.append(None)
            continue
        try:
            values.append(parse(v))
        except PgError as err:
            raise _Row(row, err) from None
    return pa.array(values, target)


def _convert(raw: pa.Array, mask: pa.Array | None, nulls: np.ndarray, oid: int, target: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(target) or (
        oid == T.VECTOR and (pa.types.is_list(target) or pa.types.is_large_list(target))
    ):
        return _convert_vector(_to_text(raw, nulls), nulls, target)
    if pa.types.is_binary(target) or pa.types.is_large_binary(target):
        return _convert_bytea(raw, nulls, target)
    if pa.types.is_fixed_size_binary(target):
        return _convert_uuid_bytes(_to_text(raw, nulls), nulls, target)
    text = _to_text(raw, nulls)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return _convert_string(text, nulls, oid).cast(target)
    if pa.types.is_boolean(target):
        return _convert_bool(text, nulls)
    if pa.types.is_integer(target):
        bits = target.bit_width
        label = {16: "smallint", 32: "integer"}.get(bits, "bigint")
        return _fast_or_slow(text, target, lambda s: T.parse_int(s, bits, label))
    if pa.types.is_floating(target):
        return _convert_float(text, nulls, target, single=oid == T.FLOAT4 or pa.types.is_float32(target))
    if pa.types.is_decimal(target):
        return _convert_decimal(text, target)
    if pa.types.is_date(target):
        return _fast_or_slow(text, target, T.parse_date)
    if pa.types.is_timestamp(target):
        return _convert_timestamp(text, target)
    return _per_value(text, lambda s: T.decode_text(s, oid), target)


def _fast_or_slow(text: pa.Array, target: pa.DataType, parse: Callable[[str], Any]) -> pa.Array:
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _per_value(text, parse, target)


def _convert_string(text: pa.Array, nulls: np.ndarray, oid: int) -> pa.Array:
    if oid == T.UUID:
        ok = pc.match_substring_regex(text, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        if pc.all(ok).as_py() in (True, None):
            return text
        return _per_value(text, lambda s: str(T.parse_uuid(s)), pa.large_string())
    if oid == T.NUMERIC:
        ok = pc.match_substring_regex(text, r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$|^NaN$")
        if pc.all(ok).as_py() in (True, None):
            return text
        return _per_value(text, lambda s: _numeric_text(T.parse_numeric(s)), pa.large_string())
    return text


def _numeric_text(d: Decimal) -> str:
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    return format(d, "f")


def _convert_bool(text: pa.Array, nulls: np.ndarray) -> pa.Array:
    words = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    is_true = pc.is_in(words, value_set=_TRUE.cast(pa.large_string()))
    is_false = pc.is_in(words, value_set=_FALSE.cast(pa.large_string()))
    bad = ~(is_true.to_numpy(zero_copy_only=False) | is_false.to_numpy(zero_copy_only=False)) & ~nulls
    if bad.any():
        row = _first(bad)
        raise _Row(row, PgError("22P02", f'invalid input syntax for type boolean: "{text[row].as_py()}"'))
    return pc.if_else(pa.array(nulls), pa.scalar(None, pa.bool_()), is_true) if nulls.any() else is_true


def _convert_float(text: pa.Array, nulls: np.ndarray, target: pa.DataType, single: bool) -> pa.Array:
    def parse(s: str) -> float:
        return T.parse_float(s, single=single)

    try:
        values = text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _per_value(text, parse, target)
    v = values.fill_null(1).to_numpy(zero_copy_only=False)
    # Overflow to infinity or underflow to zero is an error in PostgreSQL; a spelled-out
    # Infinity or a zero is not.
    overflow = np.isinf(v) & ~pc.match_substring(text, "inf", ignore_case=True).fill_null(True).to_numpy(
        zero_copy_only=False)
    underflow = (v == 0) & pc.match_substring_regex(text, r"^[^eE]*[1-9]").fill_null(False).to_numpy(
        zero_copy_only=False)
    bad = overflow | underflow
    if bad.any():
        row = _first(bad)
        try:
            parse(text[row].as_py())
        except PgError as err:
            raise _Row(row, err) from None
    return values


def _convert_decimal(text: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    precision, scale = target.precision, target.scale
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)
    ctx = Context(prec=precision + 20)

    def parse(s: str) -> Decimal:
        d = T.parse_numeric(s)
        if not d.is_finite():
            raise PgError("22003", "cannot hold an infinite or NaN value in a numeric with a declared precision")
        d = d.quantize(quantum, rounding=ROUND_HALF_UP, context=ctx)
        if abs(d) >= limit:
            raise PgError("22003", "numeric field overflow",
                          detail=f"A field with precision {precision}, scale {scale} must round to an "
                                 f"absolute value less than 10^{precision - scale}.")
        return d

    return _per_value(text, parse, target)


def _convert_timestamp(text: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if target.tz is not None:
        try:  # no offsets given: the session time zone, UTC
            naive = text.cast(pa.timestamp(target.unit))
            return naive.view(pa.int64()).view(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    with_tz = target.tz is not None
    return _per_value(text, lambda s: T.parse_timestamp(s, with_tz=with_tz), target)


def _convert_bytea(raw: pa.Array, nulls: np.ndarray, target: pa.DataType) -> pa.Array:
    text = _to_text(raw, nulls)
    filled = text.fill_null("\\x")
    is_hex = pc.starts_with(filled, "\\x").to_numpy(zero_copy_only=False)
    if is_hex.all():
        body = _as_large_binary(pc.utf8_slice_codeunits(filled, 2))
        offsets, data = _parts(body)
        lengths = np.diff(offsets)
        nib = _NIBBLE[data]
        if not (lengths % 2).any() and (nib < 16).all():
            decoded = ((nib[0::2] << 4) | nib[1::2]).astype(np.uint8)
            validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
            result = pa.Array.from_buffers(_LB, len(body), [validity, pa.py_buffer(offsets // 2),
                                                            pa.py_buffer(decoded)], int(nulls.sum()))
            return result.cast(target)
    return _per_value(text, T.parse_bytea, target)


def _as_large_binary(arr: pa.Array) -> pa.Array:
    return arr.view(_LB) if pa.types.is_large_string(arr.type) else arr.cast(_LB)


def _parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 [n+1] from 0, data uint8) of a large_binary array."""
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    start = int(offsets[0])
    return offsets - start, data[start : int(offsets[-1])]


def _convert_uuid_bytes(text: pa.Array, nulls: np.ndarray, target: pa.DataType) -> pa.Array:
    hexed = pc.replace_substring_regex(pc.utf8_lower(text.fill_null("0" * 32)), r"[-{}]", "")
    bad = ~pc.match_substring_regex(hexed, r"^[0-9a-f]{32}$").to_numpy(zero_copy_only=False)
    if bad.any():
        row = _first(bad)
        raise _Row(row, PgError("22P02", f'invalid input syntax for type uuid: "{text[row].as_py()}"'))
    _, data = _parts(_as_large_binary(hexed))
    nib = _NIBBLE[data].reshape(len(text), 32)
    raw = ((nib[:, 0::2] << 4) | nib[:, 1::2]).astype(np.uint8)
    validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
    return pa.Array.from_buffers(target, len(text), [validity, pa.py_buffer(raw.reshape(-1))], int(nulls.sum()))


def _character_data(strings: pa.Array) -> np.ndarray:
    """The bytes of ``strings``' values, without copying (a slice of the array's data buffer)."""
    data = strings.buffers()[2]
    if data is None or len(strings) == 0:
        return np.zeros(0, np.uint8)
    large = pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type)
    offsets = np.frombuffer(strings.buffers()[1], np.int64 if large else np.int32)
    first, last = offsets[strings.offset], offsets[strings.offset + len(strings)]
    return np.frombuffer(data, np.uint8)[first:last]


def _has_whitespace(strings: pa.Array) -> bool:
    """Any ASCII whitespace in any of ``strings`` (one pass over the character data)."""
    data = _character_data(strings).tobytes()
    return any(ch in data for ch in _WHITESPACE)  # each a memchr-speed scan


_WHITESPACE = (b" ", b"\t", b"\n", b"\r", b"\v", b"\f")


def _split_vectors(text: pa.Array, t: pa.Array, present: np.ndarray, target: pa.DataType
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elements of each '[..]' by string kernels, checking every rule: (floats, row of each, dims)."""
    fixed = target.list_size if pa.types.is_fixed_size_list(target) else None
    inner = pc.utf8_slice_codeunits(t, 1, -1)
    empty = pc.equal(pc.utf8_trim_whitespace(inner), "").to_numpy(zero_copy_only=False)
    if empty.any():
        raise _Row(int(present[_first(empty)]), PgError("22000", "vector must have at least 1 dimension"))
    parts = pc.split_pattern(inner, ",")
    dims = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    if fixed is not None and (dims != fixed).any():
        i = _first(dims != fixed)
        raise _Row(int(present[i]), PgError("22000", f"expected {fixed} dimensions, not {int(dims[i])}"))
    if (dims > T.VECTOR_MAX_DIM).any():
        i = _first(dims > T.VECTOR_MAX_DIM)
        raise _Row(int(present[i]), PgError("54000", f"vector cannot have more than {T.VECTOR_MAX_DIM} dimensions"))
    elements = pc.list_flatten(parts)
    if _has_whitespace(inner):
        elements = pc.utf8_trim_whitespace(elements)
    row_of_element = np.repeat(np.arange(len(present)), dims)
    try:
        values = elements.cast(pa.float32())
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(elements, T._VECTOR_ELEMENT.replace(r"\s*", ""), ignore_case=True)
        bad = ~ok.to_numpy(zero_copy_only=False)
        row = int(present[row_of_element[_first(bad)]]) if bad.any() else int(present[0])
        raise _Row(row, PgError("22P02", f'invalid input syntax for type vector: "{text[row].as_py()}"')) from None
    return values.to_numpy(zero_copy_only=False), row_of_element, dims


def _fixed_vectors_as_csv(t: pa.Array, dim: int) -> np.ndarray | None:
    """Fast path for '[..]' texts of a fixed dimension: the bracketed lists, one per line, read by
    Arrow's multi-threaded CSV parser as ``dim`` float32 columns. None when anything is unusual
    (whitespace, a wrong count, a bad number): the string-kernel path then checks and reports."""
    if len(t) == 0 or _has_whitespace(t):
        return None
    body = _character_data(t).tobytes()
    if body.count(b"[") != len(t) or body.count(b"]") != len(t):
        return None
    body = body.translate(_BRACKETS_TO_LINES, b"[")
    names = [f"c{i}" for i in range(dim)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(body),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(quote_char=False),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.float32() for n in names},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != len(t) or any(c.null_count for c in table.columns):
        return None
    return np.column_stack([c.to_numpy() for c in table.columns]).reshape(-1)


_BRACKETS_TO_LINES = bytes.maketrans(b"]", b"\n")


def parse_vector_array(text: pa.Array, target: pa.DataType) -> pa.Array:
    """pgvector's text form for a whole array of strings (NULLs allowed) -> ``target``
    (``fixed_size_list<float32, n>`` or ``list<float32>``). Raises PgError as pgvector would."""
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = text.cast(pa.string())
    nulls = text.is_null().to_numpy(zero_copy_only=False)
    try:
        return _convert_vector(text, nulls, target)
    except _Row as e:
        raise e.error from None


def _convert_vector(text: pa.Array, nulls: np.ndarray, target: pa.DataType) -> pa.Array:
    """pgvector's text form, vectorised: trim, check brackets, split on commas, cast float32."""
    n = len(text)
    present = np.flatnonzero(~nulls)
    t = text if len(present) == n else text.take(pa.array(present))
    if _has_whitespace(t):  # trimming copies every string: only when there is something to trim
        t = pc.utf8_trim_whitespace(t)
    syntax_ok = (pc.starts_with(t, "[").to_numpy(zero_copy_only=False)
                 & pc.ends_with(t, "]").to_numpy(zero_copy_only=False))
    if not syntax_ok.all():
        row = int(present[_first(~syntax_ok)])
        value = text[row].as_py()
        detail = 'Vector contents must start with "[".' if not value.lstrip().startswith("[") else None
        raise _Row(row, PgError("22P02", f'invalid input syntax for type vector: "{value}"', detail=detail))
    fixed = target.list_size if pa.types.is_fixed_size_list(target) else None
    flat = _fixed_vectors_as_csv(t, fixed) if fixed is not None else None
    if flat is None:
        flat, row_of_element, dims = _split_vectors(text, t, present, target)
    else:
        dims = np.full(len(present), fixed, np.int64)
        row_of_element = None
    finite = np.isfinite(flat)
    if not finite.all():
        i = _first(~finite)
        message = "NaN not allowed in vector" if np.isnan(flat[i]) else "infinite value not allowed in vector"
        row = row_of_element[i] if row_of_element is not None else i // dims[0]
        raise _Row(int(present[row]), PgError("22000", message))
    mask = pa.array(nulls) if nulls.any() else None
    if fixed is not None:
        matrix = np.zeros((n, fixed), np.float32)
        matrix[present] = flat.reshape(len(present), fixed)
        values = pa.array(matrix.reshape(-1), target.value_type)
        return pa.FixedSizeListArray.from_arrays(values, fixed, mask=mask).cast(target)
    counts = np.zeros(n, np.int64)
    counts[present] = dims
    offsets = np.concatenate([[0], np.cumsum(counts)])
    list_type = pa.large_list if pa.types.is_large_list(target) else pa.list_
    offset_type = pa.int64() if pa.types.is_large_list(target) else pa.int32()
    result = (pa.LargeListArray if pa.types.is_large_list(target) else pa.ListArray).from_arrays(
        pa.array(offsets, offset_type), pa.array(flat, pa.float32()), mask=mask
    )
    return result.cast(list_type(target.value_type))


# --------------------------------------------------------------------------- streaming helper


def complete_lines_end(buffer: bytes | bytearray) -> int:
    """Length of the longest prefix of ``buffer`` made of whole COPY text lines (0 if none).

    A newline preceded by an odd run of backslashes is data, not a line end.
    """
    end = len(buffer)
    while True:
        pos = buffer.rfind(b"\n", 0, end)
        if pos < 0:
            return 0
        run = 0
        while pos - run - 1 >= 0 and buffer[pos - run - 1] == 0x5C:
            run += 1
        if run % 2 == 0:
            return pos + 1
        end = pos


class _Ahead:
    """``fn(*args)`` run in a thread of its own; ``result()`` waits for it and returns (or raises) its outcome."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._outcome: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="sqlvec-copy-parse", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._outcome = (True, fn(*args))
        except BaseException as e:  # noqa: BLE001 - raised by result()
            self._outcome = (False, e)

    def result(self) -> Any:
        self._thread.join()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


class CopyTextDecoder:
    """Decodes a COPY text stream in chunks of whole lines, so memory stays bounded.

    For a :class:`wire.session.CopyInSink`: ``feed`` each payload, collect the tables it
    returns, and call ``finish`` on CopyDone. Line numbers in errors count from the start.

    A chunk fed whole as a bytearray (see :meth:`_feed_in_place`) is parsed ahead: Arrow's CSV read
    of it runs in a thread while the chunk before it is finished (edges, vectors, scalars, and the
    caller's work on its table), so that the parser's two cores are not left waiting on that part.
    Its table comes back from the next ``feed`` or from ``finish``, in order.
    """

    def __init__(self, names: list[str], oids: list[int], arrow_types: list[pa.DataType], *,
                 delimiter: str = "\t", null: str = "\\N", chunk_bytes: int = 16 << 20,
                 first_line: int = 1) -> None:
        self.names, self.oids, self.arrow_types = names, oids, arrow_types
        self.delimiter, self.null = delimiter, null
        self.chunk_bytes = chunk_bytes
        self._pieces: list[bytes] = []
        self._size = 0
        self._line = first_line
        self._ended = False
        self._ahead: tuple[bytearray, _Ahead | None] | None = None  # a chunk of whole lines, maybe being parsed

    def _decode(self, data: bytes | bytearray, *, plain: bool = True) -> pa.Table:
        table = decode_copy_text(data, self.names, self.oids, self.arrow_types, delimiter=self.delimiter,
                                 null=self.null, first_line=self._line, plain=plain)
        self._line += table.num_rows
        return table

    def _take_ahead(self) -> list[pa.Table]:
        """The table of the chunk parsed ahead, if any, finished now that the lines before it are counted."""
        if self._ahead is None:
            return []
        data, job = self._ahead
        self._ahead = None
        if job is None:
            return [self._decode(data)]
        parsed = job.result()
        table = None if parsed is None else _plain_finish(parsed, self.names, self.oids, self.arrow_types,
                                                          self.delimiter, self._line)
        if table is None:
            return [self._decode(data, plain=False)]
        self._line += table.num_rows
        return [table]

    def feed(self, data: bytes | bytearray) -> list[pa.Table]:
        """Take the next piece; the tables of the whole lines decoded so far (none until a chunk is
        full). A bytearray piece is the decoder's to keep."""
        if self._ended or not data:
            return []
        if (isinstance(data, bytearray) and len(data) >= self.chunk_bytes and b"\\" not in data
                and not any(b"\\" in p for p in self._pieces)):
            tables = self._feed_in_place(data)
            if tables is not None:
                return tables
        self._pieces.append(bytes(data))
        self._size += len(data)
        if self._size < self.chunk_bytes:
            return []
        last = self._pieces[-1]
        cut = complete_lines_end(last)  # whole lines up to the last one that ends in this piece
        if cut == 0:
            return []
        if last[: cut - 1].strip(b"\\") == b"":  # the backslashes before it may go on in the piece before
            whole = b"".join(self._pieces)
            cut = complete_lines_end(whole)
            chunk, rest = whole[:cut], whole[cut:]
        else:
            chunk, rest = b"".join(self._pieces[:-1] + [last[:cut]]), last[cut:]
        self._pieces, self._size = ([rest], len(rest)) if rest else ([], 0)
        stripped = _strip_end_marker(chunk)
        if len(stripped) != len(chunk):
            self._ended = True
            self._pieces, self._size = [], 0
        tables = self._take_ahead()
        return [*tables, self._decode(stripped)]

    def _feed_in_place(self, data: bytearray) -> list[pa.Table] | None:
        """A whole chunk with no backslash (so no escaped newline and no end marker) decoded where it
        lies rather than copied into one: the line that the pending pieces begin and ``data``'s first
        line ends is decoded on its own, then ``data`` without it and without its partial last line
        (both cut off in place, which costs no copy) is parsed ahead. None when ``data`` has no
        newline at all."""
        first = data.find(b"\n") + 1
        if first == 0:
            return None
        junction = None
        if self._pieces:
            junction = b"".join([*self._pieces, data[:first]])
            del data[:first]
        cut = data.rfind(b"\n") + 1
        rest = bytes(data[cut:])
        del data[cut:]
        self._pieces, self._size = ([rest], len(rest)) if rest else ([], 0)
        ahead = None
        if data:  # carriage returns are for decode_copy_text to check and strip
            job = None if b"\r" in data else _Ahead(_plain_parse, data, self.arrow_types, self.delimiter, self.null)
            ahead = (data, job)
        tables = self._take_ahead()
        if junction is not None:
            tables.append(self._decode(junction))
        self._ahead = ahead
        return tables

    def finish(self) -> list[pa.Table]:
        tables = self._take_ahead()
        rest = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        if self._ended or not rest:
            return tables
        return [*tables, self._decode(rest)]
