"""COPY ... FROM STDIN in PostgreSQL's binary format, decoded to Arrow column-at-a-time.

Format (https://www.postgresql.org/docs/16/sql-copy.html#id-1.9.3.55.9.4): the signature
``PGCOPY\\n\\377\\r\\n\\0``, an int32 of flags (bit 16: the data has OIDs, which PostgreSQL 12+
rejects; any other bit in the high half is a critical flag this reader does not know), an int32
header-extension length and that many bytes, which are skipped. Then one tuple per row: an
int16 field count, and for each field an int32 length (-1 for NULL) followed by that many bytes
in the column type's binary (``*_recv``) format. An int16 -1 trailer ends the data; it may be
missing, and data after it is an error, as in PostgreSQL (``CopyFrom`` also ignores a lone
byte at the end, and so does this reader).

Where each tuple starts depends on every field length before it, so finding the rows looks
sequential; it is done with numpy instead, no Python code running per row:

1. Fast path. The first tuple is parsed (K length words) and its length L taken as the stride.
   The stream is reshaped into an (n, L) matrix and the count and length words of every row
   compared with the first's at once: the rows up to the first mismatch are tuples of the same
   layout (by induction: a tuple starting where a tuple of that layout ends, with the same
   length words, ends L bytes later). Fixed-width columns without NULLs are all fast path.
2. General path, from where the fast path stopped. Every byte position whose big-endian int16 is
   K is a candidate tuple start. For all candidates at once, K vectorised hops (position += 4 +
   max(length, 0), dropping candidates whose length is below -1 or which run past the end) give
   where each candidate's tuple would end, and from that ``next``: the candidate starting there,
   END (the end of the data, a lone byte, or the trailer) or BAD (anything else, or a tuple that
   cannot be one). The true tuples are the chain of ``next`` from the first, found by pointer
   doubling: with ``T = next^(2^j)`` and ``S`` the chain's first 2^j nodes, ``S + T[S]`` are its
   first 2^(j+1); then ``T = T[T]``. That takes log2(rows) rounds of gathers over the candidates
   (false candidates, e.g. inside float data, cost one gather each and most die at the first
   hop). A chain ending in BAD is diagnosed by parsing that one tuple (and the next) in Python,
   which gives PostgreSQL's error for it.

With the tuple starts known, each column's field positions are a cumulative sum of lengths
(one gather per column), and each column is one Arrow ``take`` of its byte ranges out of the
input buffer into a contiguous buffer of values. Fixed-width types are then numpy views of that
buffer (``>i2 >i4 >i8 >f4 >f8``; dates as int32 days and timestamps as int64 microseconds since
2000-01-01; bool; uuid as 16 bytes or its canonical text), vectors a ``>f4`` view with the
dimension/unused headers checked for every row, text and bytea the taken buffer itself (UTF-8
checked by Arrow's validation, NUL bytes by a scan), jsonb the same after its version byte.
Rare types take a per-value path: numeric (``numeric_from_binary`` for each value, then the
text format's conversion to the column's type), one-dimensional arrays of the storable element
types (decoded per value, returned as PostgreSQL's array text, which the caller converts: the
Arrow type passed for an array column is a string type), and anything else (``decode_binary``
per value). Multidimensional arrays and arrays with lower bounds other than 1 are rejected
(0A000), as sqlvec stores neither.

Errors are PgError as PostgreSQL raises them: 22P04 for the file format (bad signature or
header, wrong field count, truncated data, invalid field size, data after the trailer), and each
type's ``*_recv`` errors for values (08P01 too short, 22P03 too long, 22021 invalid UTF-8, 22000
vector dimensions or NaN, 22008 dates and timestamps outside years 1-9999, as for Bind
parameters). Tuple errors carry ``COPY line N`` (N counts tuples from 1, the trailer included),
value errors ``COPY line N, column c``, in the detail.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from wire import pgtypes as T
from wire.column_encoding import encode_column
from wire.copy_text import _context, _numeric_text, _parts, _Row, convert_fields
from wire.session import PgError

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER_SIZE = len(SIGNATURE) + 8  # signature, flags, extension length
_OIDS_FLAG = 1 << 16

_LB = pa.large_binary()
_LS = pa.large_string()

_FIXED_WIDTH = {
    T.BOOL: 1, T.INT2: 2, T.INT4: 4, T.INT8: 8, T.FLOAT4: 4, T.FLOAT8: 8, T.DATE: 4, T.TIMESTAMP: 8,
    T.TIMESTAMPTZ: 8, T.UUID: 16, **{oid: 4 for oid in T.OID_LIKE},
}
_TEXT_OIDS = T.TEXT_LIKE | {T.JSONB}

# Python's date range (years 1..9999), the range Bind parameters accept (see wire.pgtypes).
_MIN_DAYS = (dt.date(1, 1, 1) - dt.date(2000, 1, 1)).days
_MAX_DAYS = (dt.date(9999, 12, 31) - dt.date(2000, 1, 1)).days
_US_PER_DAY = 86_400_000_000
_MIN_MICROS = _MIN_DAYS * _US_PER_DAY
_MAX_MICROS = (_MAX_DAYS + 1) * _US_PER_DAY - 1
_EPOCH_US = T.PG_EPOCH_UNIX_SECONDS * 1_000_000

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_PAIRS = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1)
_UUID_GROUPS = ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12))

# Element types of array columns whose values this reader turns into array text.
_ARRAY_ELEMENT_ARROW: dict[int, pa.DataType] = {
    T.BOOL: pa.bool_(), T.INT2: pa.int64(), T.INT4: pa.int64(), T.INT8: pa.int64(), T.FLOAT4: pa.float32(),
    T.FLOAT8: pa.float64(), T.DATE: pa.date32(), T.TIMESTAMP: pa.timestamp("us"),
    T.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"), T.BYTEA: pa.binary(), T.NUMERIC: pa.string(), T.UUID: pa.string(),
    **{oid: pa.string() for oid in T.TEXT_LIKE | {T.JSONB}},
}


def _format_error(message: str) -> PgError:
    return PgError("22P04", message)


# --------------------------------------------------------------------------- header and tuples


def _read_header(data: bytes) -> int:
    """Check the signature, flags and extension; the offset of the first tuple."""
    if len(data) < len(SIGNATURE) or bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        raise _format_error("COPY file signature not recognized")
    if len(data) < len(SIGNATURE) + 4:
        raise _format_error("invalid COPY file header (missing flags)")
    (flags,) = struct.unpack_from("!I", data, len(SIGNATURE))
    if flags & _OIDS_FLAG:
        raise _format_error("invalid COPY file header (WITH OIDS)")
    if (flags & ~_OIDS_FLAG) >> 16:
        raise _format_error("unrecognized critical flags in COPY file header")
    if len(data) < _HEADER_SIZE:
        raise _format_error("invalid COPY file header (missing length)")
    (extension,) = struct.unpack_from("!i", data, len(SIGNATURE) + 4)
    if extension < 0:
        raise _format_error("invalid COPY file header (missing length)")
    if len(data) < _HEADER_SIZE + extension:
        raise _format_error("invalid COPY file header (wrong length)")
    return _HEADER_SIZE + extension


def _walk(data: bytes, pos: int, line: int, names: list[str]) -> tuple[str, int, list[int]]:
    """Parse the one tuple at ``pos`` as PostgreSQL does: ("end" | "trailer" | "tuple", end, lengths).
    Raises its error with ``COPY line {line}`` (K steps, for the first tuple and for diagnosis)."""
    size = len(data)
    if size - pos < 2:
        return "end", size, []
    (count,) = struct.unpack_from("!h", data, pos)
    if count == -1:
        return "trailer", pos + 2, []
    if count != len(names):
        raise _context(_format_error(f"row field count is {count}, expected {len(names)}"), line, None, None)
    pos += 2
    lengths = []
    for name in names:
        if size - pos < 4:
            raise _context(_format_error("unexpected EOF in COPY data"), line, name, None)
        (length,) = struct.unpack_from("!i", data, pos)
        if length < -1:
            raise _context(_format_error("invalid field size"), line, name, None)
        pos += 4
        if length > size - pos:
            raise _context(_format_error("unexpected EOF in COPY data"), line, name, None)
        pos += max(length, 0)
        lengths.append(length)
    return "tuple", pos, lengths


def _be_int(buf: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """The big-endian signed ints of ``width`` bytes at each of ``pos`` (all in bounds), as int64."""
    if pos.size == 0:
        return np.zeros(0, np.int64)
    raw = buf[pos[:, None] + np.arange(width)]
    return raw.view(f">i{width}").reshape(-1).astype(np.int64)


def _fast_tuples(buf: np.ndarray, start: int, length: int, count_and_lengths: np.ndarray) -> int:
    """How many tuples from ``start`` have the layout of the first (its header bytes at the
    relative positions ``count_and_lengths``, every ``length`` bytes)."""
    n = (buf.size - start) // length
    if n <= 1:
        return n
    rows = buf[start : start + n * length].reshape(n, length)
    headers = rows[:, count_and_lengths]
    same = (headers == headers[0]).all(axis=1)
    return n if same.all() else int(np.argmin(same))


def _chain(buf: np.ndarray, start: int, k: int) -> tuple[np.ndarray, bool]:
    """Tuple starts from ``start`` (itself a tuple start) by list ranking over candidate starts:
    (starts, ended), ended False when the chain stops at something that is not a tuple."""
    size = buf.size
    region = buf[start:]
    cand = np.flatnonzero((region[:-1] == (k >> 8) & 0xFF) & (region[1:] == k & 0xFF)) + start
    m = cand.size
    end_node, bad_node = m, m + 1
    nxt = np.full(m + 2, bad_node, np.int64)
    nxt[end_node] = end_node
    alive = np.arange(m)
    pos = cand + 2
    for _ in range(k):
        room = pos + 4 <= size
        alive, pos = alive[room], pos[room]
        length = _be_int(buf, pos, 4)
        pos = pos + 4 + np.maximum(length, 0)
        ok = (length >= -1) & (pos <= size)
        alive, pos = alive[ok], pos[ok]
    at_end = pos >= size - 1  # the end, or a lone byte (ignored as in PostgreSQL)
    more = np.flatnonzero(~at_end)
    trailer = np.zeros(pos.size, bool)
    trailer[more] = (buf[pos[more]] == 0xFF) & (buf[pos[more] + 1] == 0xFF)
    nxt[alive[at_end | trailer]] = end_node
    follow = np.flatnonzero(~(at_end | trailer))
    j = np.searchsorted(cand, pos[follow])
    j_clip = np.minimum(j, m - 1)
    hit = cand[j_clip] == pos[follow]
    nxt[alive[follow[hit]]] = j_clip[hit]
    # Pointer doubling from candidate 0 (``start``): chain = the first 2^r nodes after r rounds.
    chain = np.zeros(1, np.int64)
    jump = nxt
    while True:
        further = jump[chain]
        chain = np.concatenate([chain, further])
        if further[-1] >= m:
            break
        jump = jump[jump]
    stop = int(np.argmax(chain >= m))
    return cand[chain[:stop]], bool(chain[stop] == end_node)


def _tuple_starts(data: bytes, buf: np.ndarray, names: list[str], first_line: int = 1
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start of each tuple, its field lengths (n, k), their data offsets (n, k)); raises format errors."""
    k = len(names)
    pos = _read_header(data)
    kind, end, first_lengths = _walk(data, pos, first_line, names)
    empty = np.zeros((0, k), np.int64)
    if kind != "tuple":
        _check_after(data, kind, end, first_line)
        return np.zeros(0, np.int64), empty, empty
    # fast path: the rows laid out as the first
    word_at = np.cumsum([2] + [4 + max(x, 0) for x in first_lengths])[:-1]  # each length word
    header_bytes = np.concatenate([[0, 1], (word_at[:, None] + np.arange(4)).reshape(-1)]).astype(np.int64)
    stride = end - pos
    n_fast = _fast_tuples(buf, pos, stride, header_bytes)
    fast_starts = pos + stride * np.arange(n_fast, dtype=np.int64)
    lengths_fast = np.broadcast_to(np.array(first_lengths, np.int64), (n_fast, k))
    data_fast = fast_starts[:, None] + (word_at + 4)[None, :]
    pos = pos + stride * n_fast
    line = n_fast + first_line
    kind, end, _ = _walk(data, pos, line, names)
    if kind != "tuple":
        _check_after(data, kind, end, line)
        return fast_starts, lengths_fast, data_fast
    # general path for the rest
    starts, ended = _chain(buf, pos, k)
    last_line = line + starts.size - 1
    if not ended:
        _diagnose(data, int(starts[-1]), last_line, names)
    lengths, offsets, ends = _fields(buf, starts, k)
    kind, end, _ = _walk(data, int(ends[-1]), last_line + 1, names)
    _check_after(data, kind, end, last_line + 1)
    return (np.concatenate([fast_starts, starts]), np.concatenate([lengths_fast, lengths]),
            np.concatenate([data_fast, offsets]))


def _check_after(data: bytes, kind: str, end: int, line: int) -> None:
    if kind == "trailer" and end < len(data):
        raise _context(_format_error("received copy data after EOF marker"), line, None, None)


def _diagnose(data: bytes, pos: int, line: int, names: list[str]) -> None:
    """The chain stopped after the tuple at ``pos``: parse it and the next for PostgreSQL's error."""
    for step in range(2):
        kind, pos, _ = _walk(data, pos, line + step, names)
        if kind != "tuple":
            break
    raise _format_error("invalid COPY data")  # not reached: the chain ends only at an error


def _fields(buf: np.ndarray, starts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Field lengths (n, k) and data offsets (n, k) of the tuples at ``starts``, and each tuple's end."""
    lengths = np.empty((starts.size, k), np.int64)
    offsets = np.empty((starts.size, k), np.int64)
    pos = starts + 2
    for c in range(k):
        length = _be_int(buf, pos, 4)
        lengths[:, c] = length
        offsets[:, c] = pos + 4
        pos = pos + 4 + np.maximum(length, 0)
    return lengths, offsets, pos


# --------------------------------------------------------------------------- entry point


def decode_copy_binary(data: bytes, names: list[str], oids: list[int], arrow_types: list[pa.DataType], *,
                       first_line: int = 1) -> pa.Table:
    """A whole COPY binary stream (header, tuples, optional trailer) -> a table with ``names`` and
    exactly ``arrow_types``.

    ``oids`` are the columns' PostgreSQL types: they decide how each field's bytes are read (the
    type's ``*_recv`` format); ``arrow_types`` what the values are stored as (an int4 as int32,
    a uuid as string or fixed_size_binary(16), a vector as fixed_size_list<float32, n> or
    list<float32>, an array column as string: its PostgreSQL array text).

    Errors are PgError with PostgreSQL's SQLSTATE and ``COPY line N[, column c]`` in the detail;
    ``first_line`` numbers the first tuple (for :class:`CopyBinaryDecoder`'s chunks).
    """
    k = len(names)
    if not (len(oids) == len(arrow_types) == k):
        raise ValueError("names, oids and arrow_types must have the same length")
    buf = np.frombuffer(data, np.uint8)
    starts, lengths, offsets = _tuple_starts(data, buf, names, first_line)
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, arrow_types)])
    if starts.size == 0:
        return pa.Table.from_arrays([pa.array([], t) for t in arrow_types], schema=schema)
    source = pa.py_buffer(data)
    columns = []
    for c in range(k):
        field_lengths = np.ascontiguousarray(lengths[:, c])
        field_offsets = np.ascontiguousarray(offsets[:, c])
        try:
            columns.append(_decode_column(source, field_offsets, field_lengths, names[c], oids[c], arrow_types[c]))
        except _Row as failure:
            raise _context(failure.error, failure.row + first_line, names[c], None) from None
    return pa.Table.from_arrays(columns, schema=schema)


class CopyBinaryDecoder:
    """Decodes a COPY binary stream as it arrives, in chunks of whole tuples, where the tuples have one
    layout (every field of a fixed size, as in a bulk load of numbers and vectors): each chunk is the
    header again and the run of tuples that repeat the first one's field lengths, decoded as a stream
    of its own. Anything else (tuples of varying sizes, the trailer) waits for ``finish``, so that the
    checks and errors of :func:`decode_copy_binary` apply unchanged; line numbers count from the start.
    """

    def __init__(self, names: list[str], oids: list[int], arrow_types: list[pa.DataType], *,
                 chunk_bytes: int = 16 << 20) -> None:
        self.names, self.oids, self.arrow_types = names, oids, arrow_types
        self.chunk_bytes = chunk_bytes
        self._pieces: list[bytes] = []
        self._size = 0
        self._header: bytes | None = None  # the stream's header, once read (each chunk is decoded after it)
        self._line = 1
        self._at_end = False  # the tuples vary in layout: everything waits for finish

    def feed(self, data: bytes) -> list[pa.Table]:
        self._pieces.append(bytes(data))
        self._size += len(data)
        if self._size < self.chunk_bytes or self._at_end:
            return []
        if self._header is None:
            first = b"".join(self._pieces)
            pos = _read_header(first)
            self._header, self._pieces = first[:pos], [first[pos:]]
        # one copy: the header, then the tuples, decoded in place up to the last whole one
        whole = b"".join([self._header, *self._pieces])
        start = len(self._header)
        kind, end, lengths = _walk(whole, start, self._line, self.names)
        if kind != "tuple":
            self._at_end = True
            return []
        stride = end - start
        word_at = np.cumsum([2] + [4 + max(x, 0) for x in lengths])[:-1]
        header_bytes = np.concatenate([[0, 1], (word_at[:, None] + np.arange(4)).reshape(-1)]).astype(np.int64)
        n = _fast_tuples(np.frombuffer(whole, np.uint8), start, stride, header_bytes)
        if n * stride < self.chunk_bytes // 2:  # tuples of several layouts: all decoded at the end
            self._at_end = True
            return []
        cut = start + n * stride
        table = decode_copy_binary(memoryview(whole)[:cut], self.names, self.oids, self.arrow_types,
                                   first_line=self._line)
        self._line += n
        rest = whole[cut:]
        self._pieces, self._size = ([rest] if rest else []), len(rest)
        return [table]

    def finish(self) -> list[pa.Table]:
        """The rest of the stream with its trailer (or all of it, if no chunk was cut)."""
        whole = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        if self._header is not None:
            whole = self._header + whole
        return [decode_copy_binary(whole, self.names, self.oids, self.arrow_types, first_line=self._line)]


# --------------------------------------------------------------------------- columns


def _slices(source: pa.Buffer, begin: np.ndarray, end: np.ndarray) -> pa.Array:
    """``source[begin[i]:end[i]]`` for every i (ascending, non-overlapping ranges) as one
    large_binary array with its own contiguous data: an Arrow take of every other piece."""
    n = begin.size
    bounds = np.empty(2 * n, np.int64)
    bounds[0::2] = begin
    bounds[1::2] = end
    pieces = pa.Array.from_buffers(_LB, 2 * n - 1, [None, pa.py_buffer(bounds), source])
    return pieces.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))


def _with_validity(typ: pa.DataType, offsets: np.ndarray, data: np.ndarray | pa.Buffer, nulls: np.ndarray) -> pa.Array:
    n = offsets.size - 1
    validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
    body = data if isinstance(data, pa.Buffer) else pa.py_buffer(np.ascontiguousarray(data))
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(np.ascontiguousarray(offsets, np.int64)), body],
                                 int(nulls.sum()))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _first_failing(n: int, ok: Callable[[int, int], bool]) -> int:
    """The first row in [0, n) where ``ok(lo, hi)`` (rows lo..hi-1 are fine) fails; binary search."""
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if not ok(lo, mid):
            hi = mid
        else:
            lo = mid
    return lo


def _check_width(lengths: np.ndarray, width: int) -> None:
    """Fixed-width ``*_recv``: too short is 08P01 (pq_getmsg*), too long 22P03 (COPY's check)."""
    wrong = (lengths != width) & (lengths != -1)
    if wrong.any():
        row = _first(wrong)
        raise _Row(row, T.insufficient_data() if lengths[row] < width else T.bad_binary())


def _decode_column(source: pa.Buffer, offsets: np.ndarray, lengths: np.ndarray, name: str, oid: int,
                   target: pa.DataType) -> pa.Array:
    nulls = lengths == -1
    sizes = np.maximum(lengths, 0)
    if oid == T.VECTOR:
        return _vector(_slices(source, offsets, offsets + sizes), lengths, nulls, target)
    width = _FIXED_WIDTH.get(oid)
    if width is not None:
        _check_width(lengths, width)
        _, data = _parts(_slices(source, offsets, offsets + sizes))
        return _fixed(data, nulls, oid, width, target)
    if oid == T.BYTEA:
        offs, data = _parts(_slices(source, offsets, offsets + sizes))
        return _cast(_with_validity(_LB, offs, data, nulls), target)
    if oid in _TEXT_OIDS:
        begin = offsets
        if oid == T.JSONB:
            short = lengths == 0
            if short.any():
                raise _Row(_first(short), T.insufficient_data())
            version = np.frombuffer(source, np.uint8)[np.where(nulls, 0, offsets)]
            wrong = (version != 1) & ~nulls
            if wrong.any():
                row = _first(wrong)
                raise _Row(row, PgError("22P03", f"unsupported jsonb version number {int(version[row])}"))
            begin = np.where(nulls, offsets, offsets + 1)
        text = _text(_slices(source, begin, offsets + sizes), nulls)
        if pa.types.is_string(target) or pa.types.is_large_string(target):
            return text.cast(target)
        return _by_text_rules(text, nulls, name, oid, target)
    raw = _slices(source, offsets, offsets + sizes)
    if oid == T.NUMERIC:
        return _numeric(raw, nulls, name, target)
    element = T.ARRAY_ELEMENT.get(oid)
    if element is not None and (pa.types.is_string(target) or pa.types.is_large_string(target)):
        return _array_text(raw, nulls, oid, element, target)
    return _per_value(raw, nulls, oid, target)


def _cast(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` as ``target``; a value the cast refuses is an error at its row."""
    if arr.type == target:
        return arr
    try:
        return arr.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        def ok(lo: int, hi: int) -> bool:
            try:
                arr.slice(lo, hi - lo).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return False
            return True

        raise _Row(_first_failing(len(arr), ok), PgError("22003" if "overflow" in str(exc).lower() else "42804",
                                                         f"cannot store a value of type {arr.type} as {target}",
                                                         detail=str(exc))) from None


def _fixed(data: np.ndarray, nulls: np.ndarray, oid: int, width: int, target: pa.DataType) -> pa.Array:
    n = nulls.size
    present = ~nulls
    has_nulls = bool(nulls.any())
    mask = nulls if has_nulls else None

    def spread(values: np.ndarray) -> np.ndarray:
        if not has_nulls:
            return values
        full = np.zeros(n, values.dtype)
        full[present] = values
        return full

    if oid == T.UUID:
        matrix = np.zeros((n, 16), np.uint8)
        matrix[present] = data.reshape(-1, 16)
        if pa.types.is_fixed_size_binary(target):
            validity = pa.array(present).buffers()[1] if has_nulls else None
            return pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(matrix)],
                                         int(nulls.sum())).cast(target)
        hexed = _HEX_PAIRS[matrix].reshape(n, 32)
        text = np.full((n, 36), ord("-"), np.uint8)
        for src, dst, w in _UUID_GROUPS:
            text[:, dst : dst + w] = hexed[:, src : src + w]
        arr = _with_validity(_LS, np.arange(n + 1, dtype=np.int64) * 36, text.reshape(-1), nulls)
        return _cast(arr, target)
    if oid == T.BOOL:
        return _cast(pa.array(spread(data != 0), pa.bool_(), mask=mask), target)
    if oid in (T.FLOAT4, T.FLOAT8):
        values = spread(data.view(">f4" if oid == T.FLOAT4 else ">f8").astype(np.float32 if oid == T.FLOAT4
                                                                              else np.float64))
        if pa.types.is_floating(target) and target.bit_width in (32, 64):
            values = values.astype(np.float32 if target.bit_width == 32 else np.float64)
            return pa.array(values, target, mask=mask)
        return _cast(pa.array(values, mask=mask), target)
    if oid == T.DATE:
        days = spread(data.view(">i4").astype(np.int64))
        _check_range(days, nulls, _MIN_DAYS, _MAX_DAYS, "date out of range", "days from 2000-01-01")
        arr = pa.array((days + T.PG_EPOCH_UNIX_DAYS).astype(np.int32), pa.int32(), mask=mask).view(pa.date32())
        return _cast(arr, target)
    if oid in (T.TIMESTAMP, T.TIMESTAMPTZ):
        micros = spread(data.view(">i8").astype(np.int64))
        _check_range(micros, nulls, _MIN_MICROS, _MAX_MICROS, "timestamp out of range",
                     "microseconds from 2000-01-01")
        unix = micros + _EPOCH_US
        if pa.types.is_timestamp(target):
            return _timestamp(unix, nulls, mask, target)
        return _cast(pa.array(unix, pa.int64(), mask=mask).view(pa.timestamp("us", "UTC" if oid == T.TIMESTAMPTZ
                                                                                 else None)), target)
    # integers; the OID types are unsigned
    values = spread(data.view(">u4" if oid in T.OID_LIKE else f">i{width}").astype(np.int64))
    if pa.types.is_integer(target):
        bits = target.bit_width
        lo, hi = (0, (1 << bits) - 1) if pa.types.is_unsigned_integer(target) else (-(1 << (bits - 1)),
                                                                                   (1 << (bits - 1)) - 1)
        out = ((values < lo) | (values > hi)) & present
        if out.any():
            label = {16: "smallint", 32: "integer"}.get(bits, "bigint")
            raise _Row(_first(out), PgError("22003", f"{label} out of range"))
        return pa.array(values.astype(target.to_pandas_dtype()), target, mask=mask)
    return _cast(pa.array(values, pa.int64(), mask=mask), target)


def _check_range(values: np.ndarray, nulls: np.ndarray, lo: int, hi: int, message: str, unit: str) -> None:
    out = ((values < lo) | (values > hi)) & ~nulls
    if out.any():
        row = _first(out)
        raise _Row(row, PgError("22008", message, detail=f"{int(values[row])} {unit}"))


def _timestamp(unix_us: np.ndarray, nulls: np.ndarray, mask: np.ndarray | None, target: pa.DataType) -> pa.Array:
    unit = target.unit
    if unit == "us":
        values = unix_us
    elif unit == "ns":
        limit = np.iinfo(np.int64).max // 1000
        out = (np.abs(unix_us) > limit) & ~nulls
        if out.any():
            row = _first(out)
            raise _Row(row, PgError("22008", "timestamp out of range",
                                    detail=f"{int(unix_us[row] - _EPOCH_US)} microseconds from 2000-01-01"))
        values = unix_us * 1000
    else:
        values = np.floor_divide(unix_us, 1000 if unit == "ms" else 1_000_000)
    return pa.array(values, pa.int64(), mask=mask).view(target)


def _text(raw: pa.Array, nulls: np.ndarray) -> pa.Array:
    """Field bytes as large_string (NULL where ``nulls``): invalid UTF-8 or NUL -> 22021 at its row."""
    offsets, data = _parts(raw)
    text = _with_validity(_LS, offsets, data, nulls)
    zero = np.flatnonzero(data == 0)
    bad_row = zero_row = len(text)
    if zero.size:
        zero_row = int(np.searchsorted(offsets, zero[0], side="right") - 1)
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        def ok(lo: int, hi: int) -> bool:
            try:
                text.slice(lo, hi - lo).validate(full=True)
            except pa.ArrowInvalid:
                return False
            return True

        bad_row = _first_failing(len(text), ok)
    if bad_row == zero_row == len(text):
        return text
    row = min(bad_row, zero_row)
    value = bytes(data[offsets[row] : offsets[row + 1]])
    nul = value.find(b"\x00")
    try:
        value.decode("utf-8")
        at = nul
    except UnicodeDecodeError as exc:
        at = exc.start if nul < 0 else min(nul, exc.start)
    raise _Row(row, PgError("22021", f'invalid byte sequence for encoding "UTF8": 0x{value[at:at + 1].hex()}'))


def _by_text_rules(text: pa.Array, nulls: np.ndarray, name: str, oid: int, target: pa.DataType) -> pa.Array:
    """Values whose bytes are text (a text-like OID, numeric's and arrays' text forms) -> ``target``
    by the text format's conversions, which raise with their own COPY context."""
    raw = text.view(_LB) if pa.types.is_large_string(text.type) else text.cast(_LS).view(_LB)
    table = convert_fields([raw], [nulls], [name], [oid], [target], lambda row: row + 1)
    return table.column(0).combine_chunks()


def _vector(raw: pa.Array, lengths: np.ndarray, nulls: np.ndarray, target: pa.DataType) -> pa.Array:
    """pgvector's vector_recv for every value: int16 dim, int16 unused, dim big-endian float4."""
    n = nulls.size
    short = (lengths < 4) & ~nulls
    if short.any():
        raise _Row(_first(short), T.insufficient_data())
    offsets, data = _parts(raw)
    present = np.flatnonzero(~nulls)
    head = offsets[present]
    dims = np.zeros(n, np.int64)
    unused = np.zeros(n, np.int64)
    if present.size:
        words = data[head[:, None] + np.arange(4)].view(">i2").astype(np.int64)
        dims[present], unused[present] = words[:, 0], words[:, 1]
    fixed = target.list_size if pa.types.is_fixed_size_list(target) else None
    has = ~nulls
    checks: list[tuple[np.ndarray, Callable[[int], PgError]]] = [
        (has & (dims < 1), lambda r: PgError("22000", "vector must have at least 1 dimension")),
        (has & (dims > T.VECTOR_MAX_DIM),
         lambda r: PgError("54000", f"vector cannot have more than {T.VECTOR_MAX_DIM} dimensions")),
    ]
    if fixed is not None:
        checks.append((has & (dims != fixed), lambda r: PgError("22000", f"expected {fixed} dimensions, not "
                                                                         f"{int(dims[r])}")))
    checks += [
        (has & (unused != 0), lambda r: PgError("22000", f"expected unused to be 0, not {int(unused[r])}")),
        (has & (lengths < 4 + 4 * dims), lambda r: T.insufficient_data()),
        (has & (lengths > 4 + 4 * dims), lambda r: T.bad_binary()),
    ]
    _raise_first(checks)
    # Every value is now 4 + 4 * dim bytes: the data is a run of float4 words, one header word per value.
    words = data.view(">f4")
    if fixed is not None:
        flat = words.reshape(present.size, fixed + 1)[:, 1:].astype(np.float32)
        bad_rows = ~np.isfinite(flat).all(axis=1)
        if bad_rows.any():
            row = int(present[_first(bad_rows)])
            raise _Row(row, _nonfinite(flat[_first(bad_rows)]))
        if present.size != n:
            full = np.zeros((n, fixed), np.float32)
            full[present] = flat
            flat = full
        mask = pa.array(nulls) if nulls.any() else None
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), fixed, mask=mask)
        return _cast(values, target)
    keep = np.ones(words.size, bool)
    keep[head // 4] = False
    flat = words[keep].astype(np.float32)
    counts = np.where(nulls, 0, dims)
    list_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=list_offsets[1:])
    finite = np.isfinite(flat)
    if not finite.all():
        element = _first(~finite)
        row = int(np.searchsorted(list_offsets, element, side="right") - 1)
        raise _Row(row, _nonfinite(flat[element : element + 1]))
    mask = pa.array(nulls) if nulls.any() else None
    large = pa.types.is_large_list(target)
    cls = pa.LargeListArray if large else pa.ListArray
    values = cls.from_arrays(pa.array(list_offsets, pa.int64() if large else pa.int32()), pa.array(flat, pa.float32()),
                             mask=mask)
    return _cast(values, target)


def _nonfinite(values: np.ndarray) -> PgError:
    if np.isnan(values).any():
        return PgError("22000", "NaN not allowed in vector")
    return PgError("22000", "infinite value not allowed in vector")


def _raise_first(checks: list[tuple[np.ndarray, Callable[[int], PgError]]]) -> None:
    """The first row failing any check, with the first check it fails (the order recv checks in)."""
    rows = [int(np.argmax(mask)) for mask, _ in checks if mask.any()]
    if not rows:
        return
    row = min(rows)
    for mask, error in checks:
        if mask[row]:
            raise _Row(row, error(row))


# --------------------------------------------------------------------------- per-value types


def _numeric(raw: pa.Array, nulls: np.ndarray, name: str, target: pa.DataType) -> pa.Array:
    """numeric_recv per value (numeric is rare in bulk loads), then the text format's conversion to
    the column's type (canonical text, or a decimal128 with rounding and overflow checks)."""
    texts: list[str | None] = []
    for row, value in enumerate(raw.to_pylist()):
        if nulls[row]:
            texts.append(None)
            continue
        try:
            texts.append(_numeric_text(T.numeric_from_binary(value)))
        except PgError as err:
            raise _Row(row, err) from None
    return _by_text_rules(pa.array(texts, _LS), nulls, name, T.NUMERIC, target)


def _array_text(raw: pa.Array, nulls: np.ndarray, oid: int, element: int, target: pa.DataType) -> pa.Array:
    """array_recv per value (array columns are rare in bulk loads) -> PostgreSQL's array text, made
    by the text encoder for the whole column. One dimension, lower bound 1, as sqlvec stores."""
    element_type = _ARRAY_ELEMENT_ARROW.get(element)
    if element_type is None:
        raise _Row(0, PgError("0A000", f"COPY BINARY of {T.type_name(oid)} columns is not supported"))
    lists: list[list[Any] | None] = []
    for row, value in enumerate(raw.to_pylist()):
        if nulls[row]:
            lists.append(None)
            continue
        try:
            items = T.decode_binary(value, oid)
        except PgError as err:
            raise _Row(row, err) from None
        ndim = struct.unpack_from("!i", value)[0]
        if ndim > 1:
            raise _Row(row, PgError("0A000", "multidimensional arrays are not supported",
                                    hint="sqlvec stores one-dimensional arrays."))
        if ndim == 1 and struct.unpack_from("!i", value, 16)[0] != 1:
            raise _Row(row, PgError("0A000", "array bounds are not supported",
                                    detail="The lower bound of the array is not 1."))
        if element in (T.NUMERIC, T.UUID):
            items = [None if v is None else _numeric_text(v) if element == T.NUMERIC else str(v) for v in items]
        lists.append(items)
    arr = pa.array(lists, pa.list_(element_type))
    text = encode_column(arr, oid, 0).view(_LS)
    return text.cast(target)


def _per_value(raw: pa.Array, nulls: np.ndarray, oid: int, target: pa.DataType) -> pa.Array:
    """Anything else: decode_binary per value (types with no vectorised reader are rare)."""
    values: list[Any] = []
    for row, value in enumerate(raw.to_pylist()):
        if nulls[row]:
            values.append(None)
            continue
        try:
            values.append(T.decode_binary(value, oid))
        except PgError as err:
            raise _Row(row, err) from None
    try:
        return pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _Row(0, PgError("42804", f"cannot store {T.type_name(oid)} values as {target}",
                              detail=str(exc))) from None
