"""wire/copy_text.py: COPY text format -> Arrow, vectorised, with PostgreSQL's errors."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from wire import pgtypes as T
from wire.copy_text import CopyTextDecoder, _decode_plain, complete_lines_end, decode_copy_text
from wire.session import PgError

UTC = dt.UTC


def one(data: bytes, oid: int, typ: pa.DataType, **kw: str) -> list[object]:
    return decode_copy_text(data, ["c"], [oid], [typ], **kw).column(0).to_pylist()


def test_every_type_and_escape() -> None:
    names = ["id", "name", "emb", "ok", "f", "d", "ts", "tz", "b", "u", "n", "small", "r", "j"]
    oids = [T.INT8, T.TEXT, T.VECTOR, T.BOOL, T.FLOAT8, T.DATE, T.TIMESTAMP, T.TIMESTAMPTZ, T.BYTEA, T.UUID,
            T.NUMERIC, T.INT2, T.FLOAT4, T.JSONB]
    types = [pa.int64(), pa.string(), pa.list_(pa.float32(), 3), pa.bool_(), pa.float64(), pa.date32(),
             pa.timestamp("us"), pa.timestamp("us", tz="UTC"), pa.binary(), pa.string(), pa.decimal128(10, 2),
             pa.int16(), pa.float32(), pa.string()]
    data = (
        b"1\thello\t[1,2,3]\tt\t1.5\t2024-01-15\t2024-01-15 10:00:00.5\t2024-01-15 10:00:00+00\t\\\\x0a0b\t"
        b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\t1.555\t-32768\t1.1\t{\"a\": [1, 2]}\n"
        b"2\ttab\\there\\nnl \\\\ back \\101\\x41\\\t\\b\t[ 4 , 5.5,6e-1 ]\tyes\tInfinity\t0001-01-01\t2000-01-01\t"
        b"2000-01-01 05:00:00+05\t\\N\t\\N\t-0.5\t32767\t-0\t\\N\n"
        b"\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"
        b"\\.\n"
    )
    table = decode_copy_text(data, names, oids, types)
    assert table.schema == pa.schema([pa.field(n, t) for n, t in zip(names, types)])
    rows = table.to_pylist()
    assert rows[0] == {
        "id": 1, "name": "hello", "emb": [1.0, 2.0, 3.0], "ok": True, "f": 1.5, "d": dt.date(2024, 1, 15),
        "ts": dt.datetime(2024, 1, 15, 10, 0, 0, 500000), "tz": dt.datetime(2024, 1, 15, 10, tzinfo=UTC),
        "b": b"\n\x0b", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "n": Decimal("1.56"), "small": -32768,
        "r": pytest.approx(1.1), "j": '{"a": [1, 2]}',
    }
    assert rows[1]["name"] == "tab\there\nnl \\ back AA\t\b"
    assert rows[1]["emb"] == pytest.approx([4.0, 5.5, 0.6])
    assert rows[1]["ok"] is True and rows[1]["f"] == float("inf") and rows[1]["d"] == dt.date(1, 1, 1)
    assert rows[1]["tz"] == dt.datetime(2000, 1, 1, tzinfo=UTC)
    assert rows[1]["n"] == Decimal("-0.50") and rows[1]["small"] == 32767
    assert all(v is None for v in rows[2].values())
    assert len(rows) == 3


def test_crlf_empty_lines_and_no_final_newline() -> None:
    assert one(b"a\r\nb\r\n", T.TEXT, pa.string()) == ["a", "b"]
    assert one(b"\n\n", T.TEXT, pa.string()) == ["", ""]
    assert one(b"x\ny", T.TEXT, pa.string()) == ["x", "y"]
    assert one(b"", T.TEXT, pa.string()) == []
    assert one(b"\\.\n", T.TEXT, pa.string()) == []
    assert one(b"a\n\\.\nignored\n", T.TEXT, pa.string()) == ["a"]


def test_escaped_newline_and_delimiter_are_data() -> None:
    table = decode_copy_text(b"a\\\nb\tc\\\td\n", ["x", "y"], [T.TEXT, T.TEXT], [pa.string(), pa.string()])
    assert table.to_pylist() == [{"x": "a\nb", "y": "c\td"}]


def test_backslash_runs() -> None:
    # \\\\ is two backslashes; \\\\\t is two backslashes then the delimiter
    table = decode_copy_text(b"\\\\\\\\\t\\\\\\t\n", ["x", "y"], [T.TEXT, T.TEXT], [pa.string(), pa.string()])
    assert table.to_pylist() == [{"x": "\\\\", "y": "\\\t"}]
    assert one(b"\\x\\xg\\101\\12z\\q\n", T.TEXT, pa.string()) == ["xxgA\nzq"]
    # escapes that make bytes which are not UTF-8 are refused, as PostgreSQL checks the encoding
    with pytest.raises(PgError) as exc:
        one(b"\\377\n", T.BYTEA, pa.binary())
    assert exc.value.sqlstate == "22021"


def test_custom_delimiter_and_null() -> None:
    table = decode_copy_text(b"1|NULL|a\\|b\n", ["a", "b", "c"], [T.INT4, T.TEXT, T.TEXT],
                             [pa.int32(), pa.string(), pa.string()], delimiter="|", null="NULL")
    assert table.to_pylist() == [{"a": 1, "b": None, "c": "a|b"}]
    # the null marker is matched before de-escaping: \\N is a backslash and N
    assert one(b"\\\\N\n\\N\n", T.TEXT, pa.string()) == ["\\N", None]


def test_postgresql_spellings_take_the_slow_path() -> None:
    assert one(b" 12\n+3\n1_000\n0x10\n", T.INT4, pa.int32()) == [12, 3, 1000, 16]
    assert one(b"t\nFALSE\n yes\noff\n1\n", T.BOOL, pa.bool_()) == [True, False, True, False, True]
    assert one(b" 1.5\n-Infinity\nnan\n", T.FLOAT8, pa.float64())[:2] == [1.5, float("-inf")]
    assert one(b"20240115\n2024-1-5\n", T.DATE, pa.date32()) == [dt.date(2024, 1, 15), dt.date(2024, 1, 5)]
    assert one(b"2024-01-15 10:00:00+02\n", T.TIMESTAMP, pa.timestamp("us")) == [dt.datetime(2024, 1, 15, 10)]
    assert one(b"2024-01-15 10:00:00\n", T.TIMESTAMPTZ, pa.timestamp("us", tz="UTC")) == [
        dt.datetime(2024, 1, 15, 10, tzinfo=UTC)]
    assert one(b"2024-01-15 10:00:00+02\n2024-01-15 10:00:00\n", T.TIMESTAMPTZ, pa.timestamp("ms", tz="UTC")) == [
        dt.datetime(2024, 1, 15, 8, tzinfo=UTC), dt.datetime(2024, 1, 15, 10, tzinfo=UTC)]
    assert one(b"1e3\n+2.50\n", T.NUMERIC, pa.string()) == ["1000", "2.50"]
    assert one(b"abc\\\\001\n", T.BYTEA, pa.binary()) == [b"abc\x01"]
    u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert one(b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}\n\\N\n", T.UUID, pa.binary(16)) == [u.bytes, None]
    assert one(b"{1,2,NULL}\n", 1007, pa.list_(pa.int32())) == [[1, 2, None]]


def test_vectors() -> None:
    assert one(b"[1,2]\n[3]\n\\N\n", T.VECTOR, pa.list_(pa.float32())) == [[1.0, 2.0], [3.0], None]
    assert one(b"[1,2]\n", T.VECTOR, pa.large_list(pa.float32())) == [[1.0, 2.0]]
    rng = np.random.default_rng(5)
    values = rng.standard_normal((50, 16)).astype(np.float32)
    lines = b"".join(("[" + ",".join(repr(float(v)) for v in row) + "]\n").encode() for row in values)
    got = decode_copy_text(lines, ["v"], [T.VECTOR], [pa.list_(pa.float32(), 16)]).column(0)
    assert got.type == pa.list_(pa.float32(), 16)
    assert np.array_equal(np.array(got.to_pylist(), np.float32), values)


ERRORS = [
    (b"1\tx\t[1,2]\n", "22000", "expected 3 dimensions, not 2", 'COPY line 1, column emb: "[1,2]"'),
    (b"1\tx\t[1,2,3]\n2\tx\t[1,2,nan]\n", "22000", "NaN not allowed in vector", "COPY line 2, column emb"),
    (b"1\tx\t[1,2,inf]\n", "22000", "infinite value not allowed in vector", None),
    (b"1\tx\t[1,2,a]\n", "22P02", 'invalid input syntax for type vector: "[1,2,a]"', None),
    (b"1\tx\t1,2,3\n", "22P02", 'invalid input syntax for type vector: "1,2,3"', 'Vector contents must start with "["'),
    (b"1\tx\t[]\n", "22000", "vector must have at least 1 dimension", None),
    (b"1\tx\n", "22P04", 'missing data for column "emb"', 'COPY line 1: "1\tx"'),
    (b"1\tx\t[1,2,3]\n2\tx\t[1,2,3]\textra\n", "22P04", "extra data after last expected column", "COPY line 2"),
    (b"abc\tx\t[1,2,3]\n", "22P02", 'invalid input syntax for type bigint: "abc"', "COPY line 1, column id"),
    (b"99999999999999999999\tx\t[1,2,3]\n", "22003", 'value "99999999999999999999" is out of range for type bigint', None),
    (b"1\t\xff\t[1,2,3]\n", "22021", 'invalid byte sequence for encoding "UTF8": 0xff', None),
    (b"1\ta\\0b\t[1,2,3]\n", "22021", 'invalid byte sequence for encoding "UTF8": 0x00', None),
    (b"1\tx\t[1,2,3]\rmore\n", "22P04", "literal carriage return found in data", None),
]


@pytest.mark.parametrize(("data", "sqlstate", "message", "detail"), ERRORS, ids=[e[2][:30] for e in ERRORS])
def test_errors(data: bytes, sqlstate: str, message: str, detail: str | None) -> None:
    with pytest.raises(PgError) as exc:
        decode_copy_text(data, ["id", "name", "emb"], [T.INT8, T.TEXT, T.VECTOR],
                         [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)])
    assert exc.value.sqlstate == sqlstate
    assert exc.value.message == message
    if detail is not None:
        assert detail in f"{exc.value.detail} {exc.value.where}"


@pytest.mark.parametrize(
    ("data", "oid", "typ", "sqlstate"),
    [
        (b"maybe\n", T.BOOL, pa.bool_(), "22P02"), (b"1e999\n", T.FLOAT8, pa.float64(), "22003"),
        (b"1e-999\n", T.FLOAT8, pa.float64(), "22003"), (b"1e39\n", T.FLOAT4, pa.float32(), "22003"),
        (b"2024-02-30\n", T.DATE, pa.date32(), "22008"), (b"noon\n", T.TIMESTAMP, pa.timestamp("us"), "22007"),
        (b"123456789\n", T.NUMERIC, pa.decimal128(10, 2), "22003"), (b"zz\n", T.UUID, pa.string(), "22P02"),
        (b"zz\n", T.UUID, pa.binary(16), "22P02"), (b"\\\\xzz\n", T.BYTEA, pa.binary(), "22023"),
        (b"40000\n", T.INT2, pa.int16(), "22003"), (b"1.5x\n", T.NUMERIC, pa.string(), "22P02"),
    ],
)
def test_value_errors(data: bytes, oid: int, typ: pa.DataType, sqlstate: str) -> None:
    with pytest.raises(PgError) as exc:
        one(data, oid, typ)
    assert exc.value.sqlstate == sqlstate
    assert "COPY line 1, column c" in (exc.value.where or "")


def test_line_numbers_count_from_first_line() -> None:
    with pytest.raises(PgError) as exc:
        decode_copy_text(b"1\n2\nx\n", ["c"], [T.INT4], [pa.int32()], first_line=101)
    assert "COPY line 103" in (exc.value.where or "")


def test_complete_lines_end() -> None:
    assert complete_lines_end(b"a\nb") == 2
    assert complete_lines_end(b"a\\\nb") == 0  # escaped newline is data
    assert complete_lines_end(b"a\\\\\nb") == 4  # an escaped backslash, then a real newline
    assert complete_lines_end(b"abc") == 0


def test_chunked_decoder_matches_one_shot() -> None:
    lines = b"".join(b"%d\tname %d\\twith tab\t[%d,1,2]\n" % (i, i, i) for i in range(2000))
    names, oids, types = ["id", "name", "emb"], [T.INT8, T.TEXT, T.VECTOR], [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)]
    whole = decode_copy_text(lines, names, oids, types)
    decoder = CopyTextDecoder(names, oids, types, chunk_bytes=1000)
    tables = []
    for start in range(0, len(lines), 333):  # pieces cut anywhere, as CopyData may be
        tables += decoder.feed(lines[start : start + 333])
    tables += decoder.finish()
    assert len(tables) > 5
    assert pa.concat_tables(tables).equals(whole)
    bad = CopyTextDecoder(["c"], [T.INT4], [pa.int32()], chunk_bytes=4)
    bad.feed(b"1\n2\n")
    with pytest.raises(PgError) as exc:
        bad.feed(b"3\nx\n")
        bad.finish()
    assert "COPY line 4" in (exc.value.where or "")


@pytest.mark.parametrize("backslash", [False, True])
def test_bytearray_pieces_are_cut_in_place_and_match_one_shot(backslash: bool) -> None:
    """A bytearray piece of a whole chunk is decoded where it lies (its partial lines cut off in place,
    the line that spans pieces decoded on its own); one with a backslash takes the joining path."""
    text = b"x\\ty" if backslash else b"xy"
    lines = b"".join(b"%d\t%s %d\t[%d,1.5,2]\n" % (i, text, i, i) for i in range(3000))
    names, oids, types = ["id", "name", "emb"], [T.INT8, T.TEXT, T.VECTOR], [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)]
    whole = decode_copy_text(lines, names, oids, types)
    decoder = CopyTextDecoder(names, oids, types, chunk_bytes=5000)
    cuts = [0, 17, 6000, 6001, 13000, 30000, 30010, 52000, len(lines)]
    pieces = [bytearray(lines[a:b]) for a, b in zip(cuts, cuts[1:])]  # large ones begin and end mid-line
    tables = [t for piece in pieces for t in decoder.feed(piece)] + decoder.finish()
    assert pa.concat_tables(tables).equals(whole)
    trimmed = [len(p) for p in pieces] != [b - a for a, b in zip(cuts, cuts[1:])]
    assert trimmed is not backslash
    crlf = CopyTextDecoder(names, oids, types, chunk_bytes=5000)  # not parsed ahead: \r\n is checked and stripped
    pieces = [bytearray(lines[a:b].replace(b"\n", b"\r\n")) for a, b in zip(cuts, cuts[1:])]
    tables = [t for piece in pieces for t in crlf.feed(piece)] + crlf.finish()
    assert pa.concat_tables(tables).equals(whole)


@pytest.mark.parametrize("bad", [b"%d\t[1,x]\n", b"x%d\t[1,2]\n"])  # the parser refuses it / the id does not read
@pytest.mark.parametrize("bad_line", [2, 140, 141, 900])
def test_bytearray_pieces_report_the_line_of_an_error(bad_line: int, bad: bytes) -> None:
    lines = [b"%d\t[1,2]\n" % i for i in range(1, 1001)]
    lines[bad_line - 1] = bad % bad_line
    data = b"".join(lines)
    decoder = CopyTextDecoder(["id", "emb"], [T.INT8, T.VECTOR], [pa.int64(), pa.list_(pa.float32(), 2)],
                              chunk_bytes=1000)
    first = sum(len(x) for x in lines[:140]) - 3  # the piece boundary falls inside line 141
    with pytest.raises(PgError) as exc:
        for piece in (data[:first], data[first:]):
            decoder.feed(bytearray(piece))
        decoder.finish()
    assert f"COPY line {bad_line}" in (exc.value.where or "")


def test_large_copy_is_fast_enough_to_be_vectorised() -> None:
    n = 200_000
    data = b"".join(b"%d\tname %d\t[%d.5,1,2]\n" % (i, i, i) for i in range(n))
    table = decode_copy_text(data, ["id", "name", "emb"], [T.INT8, T.TEXT, T.VECTOR],
                             [pa.int64(), pa.string(), pa.list_(pa.float32(), 3)])
    assert table.num_rows == n and table.column(0)[n - 1].as_py() == n - 1
    assert table.column(2)[7].as_py() == [7.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("data", "sqlstate"),
    [
        (b"[1,2,3]\n[4,5]\n", "22000"),          # wrong dimension on line 2
        (b"[1,NaN,3]\n", "22000"),
        (b"[1,2,3][4,5,6]\n", "22000"),
        (b"[]\n", "22000"),
        (b"[1,x,3]\n", "22P02"),
        (b"[1,2,3,4]\n", "22000"),
    ],
)
def test_fixed_dimension_vectors_fast_path_falls_back_for_errors(data: bytes, sqlstate: str) -> None:
    with pytest.raises(PgError) as e:
        decode_copy_text(data, ["e"], [16385], [pa.list_(pa.float32(), 3)])
    assert e.value.sqlstate == sqlstate


def test_fixed_dimension_vectors_fast_path_matches_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    lines = ["\\N" if i % 50 == 0 else "[" + ",".join(repr(float(v)) for v in row) + "]" for i, row in enumerate(x)]
    out = decode_copy_text(("\n".join(lines) + "\n").encode(), ["e"], [16385], [pa.list_(pa.float32(), 16)])
    got = out.column(0).to_pylist()
    for i, row in enumerate(x):
        assert got[i] is None if i % 50 == 0 else np.array_equal(np.array(got[i], np.float32), row)
    spaced = decode_copy_text(b"[ 1, 2 ,3 ]\n", ["e"], [16385], [pa.list_(pa.float32(), 3)])
    assert spaced.column(0).to_pylist() == [[1.0, 2.0, 3.0]]


def test_chunked_decoder_backslash_runs_across_pieces() -> None:
    # escaped backslashes, escaped newlines and tabs, fed a byte at a time: a backslash run before
    # a newline may begin in an earlier piece than the one the newline is in
    lines = b"".join(b"%d\t\\\\\\\\\\\nx\\\\\t[%d,2]\n" % (i, i) for i in range(300))
    names, oids, types = ["id", "s", "emb"], [T.INT8, T.TEXT, T.VECTOR], [pa.int64(), pa.string(), pa.list_(pa.float32(), 2)]
    whole = decode_copy_text(lines, names, oids, types)
    assert whole.column(1)[0].as_py() == "\\\\\nx\\"
    decoder = CopyTextDecoder(names, oids, types, chunk_bytes=50)
    tables = []
    for i in range(len(lines)):
        tables += decoder.feed(lines[i : i + 1])
    tables += decoder.finish()
    assert len(tables) > 20
    assert pa.concat_tables(tables).equals(whole)


_PLAIN = (["id", "n", "emb"], [T.INT4, T.TEXT, T.VECTOR], [pa.int32(), pa.string(), pa.list_(pa.float32(), 3)])


def test_plain_buffer_path_matches_the_general_path() -> None:
    # no backslash: the whole-buffer CSV path; the same rows with one escape take the general path
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 3)).astype(np.float32)
    rows = [f"{i}\tname {i}\t[{','.join(repr(float(v)) for v in r)}]" for i, r in enumerate(x)]
    data = ("\n".join(rows) + "\n").encode()
    assert _decode_plain(data, *_PLAIN, "\t", "\\N", 1) is not None  # the path under test is taken
    plain = decode_copy_text(data, *_PLAIN)
    general = decode_copy_text(("\n".join(rows) + "\n9999\tlast\\ttab\t[1,2,3]\n").encode(), *_PLAIN)
    assert plain.equals(general.slice(0, 3000))
    assert np.array_equal(np.array(plain.column(2).to_pylist(), np.float32), x)
    vector_first = decode_copy_text(b"[1,2,3]\t7\n[4,5,6e2]\t8\n", ["emb", "id"], [T.VECTOR, T.INT8],
                                    [pa.list_(pa.float32(), 3), pa.int64()])
    assert vector_first.to_pylist() == [{"emb": [1, 2, 3], "id": 7}, {"emb": [4, 5, 600], "id": 8}]
    # the vector between scalars, and a vector of two elements (only the edge fields, no middle ones)
    middle = (["a", "emb", "b", "c"], [T.INT8, T.VECTOR, T.TEXT, T.INT4],
              [pa.int64(), pa.list_(pa.float32(), 2), pa.string(), pa.int32()])
    data = b"1\t[1.5,-2]\tx]y[\t3\n2\t[0,1e-3]\t\t4\n"
    assert _decode_plain(data, *middle, "\t", "\\N", 1) is not None
    assert decode_copy_text(data, *middle).to_pylist() == [
        {"a": 1, "emb": [1.5, -2.0], "b": "x]y[", "c": 3},
        {"a": 2, "emb": [0.0, np.float32(1e-3).item()], "b": "", "c": 4}]
    # a comma in a scalar after the vector, the vector a number short: the counts add up, the edges do not
    for line in (b"1\t[1]\tx,y\t3\n", b"1\t[1,2]\tx,y\t3\n", b"1\t[1\t2]\tx\t3\n", b"1\t1,2]\tx\t3\n"):
        assert _decode_plain(line, *middle, "\t", "\\N", 1) is None
    with pytest.raises(PgError) as e:
        decode_copy_text(b"1\t[1]\tx,y\t3\n", *middle)
    assert e.value.sqlstate == "22000"
    # as many delimiters as lines need in all, but one line short and the next one over: not plain
    uneven = b"1\t[1,2]\tx\t3\n2\t[3,4]\ty\tz\t4\n"
    assert _decode_plain(uneven.replace(b"\tx\t3\n", b"\tx3\n"), *middle, "\t", "\\N", 1) is None
    with pytest.raises(PgError) as e:
        decode_copy_text(uneven.replace(b"\tx\t3\n", b"\tx3\n"), *middle)
    assert e.value.sqlstate in ("22P04", "22P02")


@pytest.mark.parametrize(
    ("data", "sqlstate", "column"),
    [
        (b"1\ta\t[1,2,3]\n2,5\tb\t[1,2]\n", "22P02", "id"),    # a comma in a scalar, a short vector
        (b"1\ta,b\t[1,2]\n", "22000", "emb"),                  # a comma in text does not lend a dimension
        (b"1\ta\t[1,[2,3]\n", "22P02", "emb"),
        (b"1\ta\t[1,2,3]]\n", "22P02", "emb"),
        (b"1\ta\t1,2,3]\n", "22P02", "emb"),
        (b"1\ta\t[1,2,3]\n\n", "22P04", None),                 # an empty line
        (b"1\ta\t[1,,3]\n", "22P02", "emb"),
        (b"1\ta\t[1,inf,3]\n", "22000", "emb"),
        (b"1\ta\t[1,2,3]\t4\n", "22P04", None),
        (b"1\ta\n", "22P04", None),
    ],
)
def test_plain_buffer_path_errors(data: bytes, sqlstate: str, column: str | None) -> None:
    with pytest.raises(PgError) as e:
        decode_copy_text(data, *_PLAIN)
    assert e.value.sqlstate == sqlstate
    where = e.value.where or ""
    assert where.startswith("COPY line ")
    if column is not None:
        assert f"column {column}:" in where


def test_plain_buffer_path_text_with_commas_and_custom_null() -> None:
    out = decode_copy_text(b"1\ta, [b]\t[1,2,3]\n2\tNULL\t[4,5,6]\n", *_PLAIN, null="NULL")
    assert out.to_pylist() == [{"id": 1, "n": "a, [b]", "emb": [1, 2, 3]}, {"id": 2, "n": None, "emb": [4, 5, 6]}]
    spaced = decode_copy_text(b"1\ta\t[1, 2, 3]\n", *_PLAIN)
    assert spaced.column(2).to_pylist() == [[1, 2, 3]]
