"""COPY ... TO STDOUT: result batches -> the bytes of PostgreSQL's text, CSV and binary formats.

Each column is encoded once with the DataRow encoders of :mod:`wire.column_encoding` (text output
for text and CSV, binary for binary), so a value reads the same whether it was selected or copied.
Then, column-at-a-time with Arrow string kernels:

- text (CopyAttributeOutText): backslash, the delimiter, and ``\\b \\f \\n \\r \\t \\v`` are
  backslash-escaped; NULL is the NULL string (``\\N``);
- CSV (CopyAttributeOutCSV): a value is quoted when it holds the delimiter, the quote, a CR or LF,
  is the NULL string itself, or its column is in FORCE_QUOTE; inside quotes the quote (and a
  distinct ESCAPE) is preceded by ESCAPE; NULL is the NULL string, unquoted;
- binary: the signature header, one tuple per row (the DataRow body: field count, then length
  and bytes of each field, -1 for NULL), and the -1 trailer.

Each row is joined by one element-wise join whose output buffer already is the payload, so no
Python code runs per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wire.column_encoding import encode_column, encode_data_rows
from wire.session import ColumnDesc, CopyOut

_LB = pa.large_binary()
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
BINARY_HEADER = BINARY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # flags 0, no extension
BINARY_TRAILER = b"\xff\xff"
_TEXT_ESCAPES = ((b"\\", b"\\\\"), (b"\b", b"\\b"), (b"\f", b"\\f"), (b"\n", b"\\n"), (b"\r", b"\\r"),
                 (b"\t", b"\\t"), (b"\v", b"\\v"))


def _lb(value: bytes) -> pa.Scalar:
    return pa.scalar(value, _LB)


def _payload(lines: pa.Array) -> bytes:
    """The bytes of a large_binary array without NULLs: its values, back to back."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset: lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    return data.to_pybytes()[int(offsets[0]): int(offsets[-1])] if data is not None else b""


def _contains(values: pa.Array, needle: bytes) -> bool:
    """Whether any value may hold the one byte ``needle``: one numpy scan of the character data
    (the whole buffer of a slice: a false positive only costs an unneeded replace)."""
    data = values.buffers()[2]
    return data is not None and bool((np.frombuffer(data, np.uint8) == needle[0]).any())


def _text_field(values: pa.Array, copy: CopyOut) -> pa.Array:
    escapes = list(_TEXT_ESCAPES)
    delim = copy.delimiter.encode()
    if delim not in (b"\t",):
        escapes.append((delim, b"\\" + delim))
    for raw, escaped in escapes:
        if _contains(values, raw):
            values = pc.replace_substring(values, raw, escaped)
    return values.fill_null(copy.null.encode())


def _csv_field(values: pa.Array, name: str, copy: CopyOut, *, only: bool = False) -> pa.Array:
    """``only``: the row's one column, where a lone ``\\.`` would read as the end of data."""
    quote, escape, delim = copy.quote.encode(), copy.escape.encode(), copy.delimiter.encode()
    null = copy.null.encode()
    if copy.force_quote == "*" or name in copy.force_quote:
        needs = pc.invert(values.is_null())
    else:
        needs = pc.equal(values, _lb(null))
        if only:
            needs = pc.or_(needs, pc.equal(values, _lb(b"\\.")))
        for ch in {delim, quote, b"\n", b"\r"} | ({escape} if escape != quote else set()):
            if _contains(values, ch):
                needs = pc.or_(needs, pc.match_substring(values.cast(pa.large_string()), ch.decode()))
        needs = needs.fill_null(False)
    if not pc.any(needs).as_py():
        return values.fill_null(null)
    inner = values
    if escape != quote and _contains(inner, escape):
        inner = pc.replace_substring(inner, escape, escape + escape)
    if _contains(inner, quote):
        inner = pc.replace_substring(inner, quote, escape + quote)
    quoted = pc.binary_join_element_wise(_lb(quote), inner, _lb(quote), _lb(b""))
    return pc.if_else(needs, quoted, values).fill_null(null)


def _join_lines(fields: list[pa.Array], delimiter: bytes) -> pa.Array:
    """One line per row, newline included."""
    if len(fields) == 1:
        joined = fields[0]
    else:
        joined = pc.binary_join_element_wise(*fields, _lb(delimiter))
    return pc.binary_join_element_wise(joined, _lb(b"\n"), _lb(b""))


def _frame(lines: pa.Array) -> bytes:
    """Each value as one CopyData message ('d', int32 length, the value), as PostgreSQL sends a
    row per message (psycopg's ``rows()`` parses a message as a row): the 5-byte headers are a
    numpy matrix, joined to the values by one element-wise join."""
    n = len(lines)
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset: lines.offset + n + 1]
    head = np.empty((n, 5), np.uint8)
    head[:, 0] = ord("d")
    head[:, 1:] = (np.diff(offsets) + 4).astype(">i4").view(np.uint8).reshape(n, 4)
    heads = pa.Array.from_buffers(_LB, n, [None, pa.py_buffer(np.arange(0, 5 * n + 1, 5, dtype=np.int64)),
                                           pa.py_buffer(head)])
    return _payload(pc.binary_join_element_wise(heads, lines, _lb(b"")))


def with_prefix(messages: bytes, prefix: bytes) -> bytes:
    """``prefix`` put in front of the first CopyData message's payload (the binary signature
    travels with the first row, as PostgreSQL sends it)."""
    length = int.from_bytes(messages[1:5], "big") + len(prefix)
    return b"d" + length.to_bytes(4, "big") + prefix + messages[5:]


def header(columns: Sequence[ColumnDesc], copy: CopyOut) -> bytes:
    """What comes before the first row: the binary signature, or the HEADER line of names (a
    payload; the caller frames it, or puts it in front of the first row with :func:`with_prefix`)."""
    if copy.format == "binary":
        return BINARY_HEADER
    if not copy.header:
        return b""
    names = pa.array([c.name.encode() for c in columns], _LB)
    if copy.format == "csv":
        plain = CopyOut(**{**copy.__dict__, "force_quote": ()})
        fields = [_csv_field(names.slice(i, 1), "", plain) for i in range(len(columns))]
    else:
        fields = [_text_field(names.slice(i, 1), copy) for i in range(len(columns))]
    return _payload(_join_lines(fields, copy.delimiter.encode()))


def trailer(copy: CopyOut) -> bytes:
    return BINARY_TRAILER if copy.format == "binary" else b""


def encode_rows(batch: pa.RecordBatch, columns: Sequence[ColumnDesc], copy: CopyOut) -> bytes:
    """Every row of ``batch`` in ``copy.format``, one CopyData message per row (header and
    trailer not included)."""
    if batch.num_rows == 0:
        return b""
    if copy.format == "binary":  # a binary tuple is a DataRow body: DataRow messages retagged 'd'
        return encode_data_rows(batch, columns, [1] * len(columns), type_byte=b"d")
    fields = []
    for i, col in enumerate(columns):
        values = encode_column(batch.column(i), col.type_oid, 0)
        fields.append(_csv_field(values, col.name, copy, only=len(columns) == 1) if copy.format == "csv"
                      else _text_field(values, copy))
    return _frame(_join_lines(fields, copy.delimiter.encode()))
