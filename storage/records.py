"""The payload of a WAL commit record: the resolved ops of one commit, in order.

Resolved means storage has already decided everything: table OIDs, row ids, sequence reservations, so
replaying a record needs no decisions and gives the same state. Layout (integers little-endian)::

    payload:
        offset  width  field
             0      4  op count, uint32
             4      4  reserved, zero
             8      .  ops, back to back
    op:
             0      1  kind, uint8: 1 create table, 2 drop table, 3 insert, 4 delete, 5 sequence,
                           6 create index, 7 drop index, 8 staged insert
             1      7  reserved, zero
             8      8  table OID, uint64
            16      8  body length in bytes, uint64
            24 length  body
    bodies:
        create table  UTF-8 JSON of TableSchema.to_json(), OID included
        drop table    UTF-8 table name
        insert        Arrow IPC stream (schema, record batches, end-of-stream marker): the table's user
                      columns in order, then "_rowid" int64 holding the assigned row ids
        delete        row ids, int64, sorted and unique
        sequence      int64 value reserved up to, then the UTF-8 column name
        create index  UTF-8 JSON of IndexSchema.to_json(), index OID included (the op's OID is the table's)
        drop index    uint64 index OID, then the UTF-8 index name (the op's OID is the table's)
        staged insert int64 first row id, uint64 row count, uint64 file size, uint32 crc32 of the file,
                      4 bytes zero, then the UTF-8 name of a file in the WAL directory holding the rows
                      as an Arrow IPC stream of the user columns (staging.py); row ids are consecutive
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .segment import ROWID
from .staging import StagedRows, read_rows
from .table import add_row_ids
from .types import IndexSchema, TableSchema

PAYLOAD_HEADER = struct.Struct("<I4x")
OP_HEADER = struct.Struct("<B7xQQ")
SEQUENCE_VALUE = struct.Struct("<q")
INDEX_OID = struct.Struct("<Q")
STAGED = struct.Struct("<qQQI4x")
assert PAYLOAD_HEADER.size == 8
assert OP_HEADER.size == 24
assert SEQUENCE_VALUE.size == 8
assert INDEX_OID.size == 8
assert STAGED.size == 32

KIND_CREATE, KIND_DROP, KIND_INSERT, KIND_DELETE, KIND_SEQUENCE = 1, 2, 3, 4, 5
KIND_CREATE_INDEX, KIND_DROP_INDEX, KIND_INSERT_STAGED = 6, 7, 8


@dataclass(frozen=True)
class CreateRecord:
    schema: TableSchema

    @property
    def oid(self) -> int:
        return self.schema.oid


@dataclass(frozen=True)
class DropRecord:
    oid: int
    name: str


@dataclass(frozen=True, eq=False)
class InsertRecord:
    oid: int
    data: pa.Table  # user columns + "_rowid"
    keys: np.ndarray | None = field(default=None, repr=False)  # encoded primary keys, if known; not logged
    # the same rows (user columns) in a file, once sealed logged by name instead of by value (staging.py)
    staged: StagedRows | None = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class DeleteRecord:
    oid: int
    row_ids: np.ndarray  # int64, sorted, unique


@dataclass(frozen=True)
class SequenceRecord:
    oid: int
    column: str
    reserved: int  # values up to and including this one may have been handed out


@dataclass(frozen=True)
class CreateIndexRecord:
    oid: int  # the table's
    index: IndexSchema  # OID assigned


@dataclass(frozen=True)
class DropIndexRecord:
    oid: int  # the table's
    index_oid: int
    name: str


Record = (CreateRecord | DropRecord | InsertRecord | DeleteRecord | SequenceRecord | CreateIndexRecord
          | DropIndexRecord)
# Records that change the catalog (catalog.json holds them up to its LSN; replay skips those).
CATALOG_RECORDS = (CreateRecord, DropRecord, CreateIndexRecord, DropIndexRecord)


class _Chunks:
    """A write-only file for pyarrow that keeps what it is given: Arrow hands the IPC writer's
    body buffers over as the table's own pa.Buffer objects, so the stream is a list of chunks that
    share the table's memory rather than a copy of it."""

    closed = False

    def __init__(self) -> None:
        self.chunks: list[bytes | pa.Buffer] = []
        self.size = 0

    def write(self, data: bytes | pa.Buffer) -> int:
        n = memoryview(data).nbytes
        self.chunks.append(data)
        self.size += n
        return n

    def flush(self) -> None:
        pass


def _ipc_stream(data: pa.Table) -> _Chunks:
    """``data`` as an Arrow IPC stream, without copying its buffers: a contiguous stream of a large
    COPY is hundreds of MB of fresh memory, and faulting it in took over a second at 1M x 128."""
    out = _Chunks()
    with pa.ipc.new_stream(out, data.schema) as writer:
        writer.write_table(data)
    return out


def encode(records: list[Record]) -> list[bytes | pa.Buffer]:
    """The payload as a list of chunks (Arrow buffers are not copied into one bytes object)."""
    chunks: list[bytes | pa.Buffer] = [PAYLOAD_HEADER.pack(len(records))]
    for rec in records:
        body: bytes | pa.Buffer
        if isinstance(rec, InsertRecord) and rec.staged is not None and rec.staged.sealed:
            first = int(rec.data.column(ROWID)[0].as_py()) if rec.data.num_rows else 0
            body = STAGED.pack(first, rec.staged.rows, rec.staged.size, rec.staged.crc) + rec.staged.path.name.encode()
            chunks += [OP_HEADER.pack(KIND_INSERT_STAGED, rec.oid, len(body)), body]
            continue
        if isinstance(rec, InsertRecord):
            stream = _ipc_stream(rec.data)
            chunks.append(OP_HEADER.pack(KIND_INSERT, rec.oid, stream.size))
            chunks += stream.chunks
            continue
        if isinstance(rec, CreateRecord):
            kind, body = KIND_CREATE, json.dumps(rec.schema.to_json(), separators=(",", ":")).encode()
        elif isinstance(rec, DropRecord):
            kind, body = KIND_DROP, rec.name.encode()
        elif isinstance(rec, DeleteRecord):
            kind, body = KIND_DELETE, np.ascontiguousarray(rec.row_ids, dtype="<i8").tobytes()
        elif isinstance(rec, SequenceRecord):
            kind, body = KIND_SEQUENCE, SEQUENCE_VALUE.pack(rec.reserved) + rec.column.encode()
        elif isinstance(rec, CreateIndexRecord):
            kind, body = KIND_CREATE_INDEX, json.dumps(rec.index.to_json(), separators=(",", ":")).encode()
        elif isinstance(rec, DropIndexRecord):
            kind, body = KIND_DROP_INDEX, INDEX_OID.pack(rec.index_oid) + rec.name.encode()
        else:
            raise TypeError(f"not a WAL record: {rec!r}")
        chunks.append(OP_HEADER.pack(kind, rec.oid, memoryview(body).nbytes))
        chunks.append(body)
    return chunks


def decode(payload: memoryview, wal_dir: Path | None = None) -> list[Record]:
    """Inverse of ``encode``; raises ValueError on a malformed payload, or a staged insert whose file in
    ``wal_dir`` is missing or does not match its record. Insert data references ``payload``."""
    (count,) = PAYLOAD_HEADER.unpack_from(payload, 0)
    off = PAYLOAD_HEADER.size
    out: list[Record] = []
    for _ in range(count):
        if off + OP_HEADER.size > len(payload):
            raise ValueError(f"op header at {off} runs past the payload")
        kind, oid, length = OP_HEADER.unpack_from(payload, off)
        off += OP_HEADER.size
        body = payload[off:off + length]
        if len(body) != length:
            raise ValueError(f"op body at {off} runs past the payload")
        off += length
        if kind == KIND_CREATE:
            out.append(CreateRecord(TableSchema.from_json(json.loads(bytes(body)))))
        elif kind == KIND_DROP:
            out.append(DropRecord(oid, bytes(body).decode()))
        elif kind == KIND_INSERT:
            out.append(InsertRecord(oid, pa.ipc.open_stream(pa.py_buffer(body)).read_all()))
        elif kind == KIND_INSERT_STAGED:
            if wal_dir is None or len(body) <= STAGED.size:
                raise ValueError("a staged insert needs its WAL directory and a file name")
            first, rows, size, crc = STAGED.unpack_from(body, 0)
            data = read_rows(wal_dir / bytes(body[STAGED.size:]).decode(), size, crc, rows)
            out.append(InsertRecord(oid, add_row_ids(data, first)))
        elif kind == KIND_DELETE:
            out.append(DeleteRecord(oid, np.frombuffer(body, dtype="<i8").astype(np.int64, copy=False)))
        elif kind == KIND_SEQUENCE:
            (value,) = SEQUENCE_VALUE.unpack_from(body, 0)
            out.append(SequenceRecord(oid, bytes(body[SEQUENCE_VALUE.size:]).decode(), value))
        elif kind == KIND_CREATE_INDEX:
            out.append(CreateIndexRecord(oid, IndexSchema.from_json(json.loads(bytes(body)))))
        elif kind == KIND_DROP_INDEX:
            (index_oid,) = INDEX_OID.unpack_from(body, 0)
            out.append(DropIndexRecord(oid, index_oid, bytes(body[INDEX_OID.size:]).decode()))
        else:
            raise ValueError(f"unknown op kind {kind} at {off - length - OP_HEADER.size}")
    if off != len(payload):
        raise ValueError(f"{len(payload) - off} bytes after the last op")
    return out
