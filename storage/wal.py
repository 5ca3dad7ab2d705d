"""Write-ahead log: append-only files of checksummed records, and their recovery.

Files live in ``<data>/wal/`` and are named by the LSN of their first record, zero-padded to 20 digits:
``00000000000000000001.wal``. LSNs are consecutive (+1 per record) within and across files. A new file is
started once the current one holds ``segment_bytes`` or more, so files behind a checkpoint can be deleted
whole. There is no file header; a file is a sequence of records.

Record layout (all integers little-endian)::

    offset  width  field
         0      4  magic     b"SVWL"
         4      4  crc32     zlib.crc32 (IEEE 802.3) of header bytes 8..31 followed by the payload, uint32
         8      8  length    payload length in bytes, uint64
        16      8  lsn       uint64
        24      2  kind      uint16; 1 = commit (payload format in records.py)
        26      2  version   uint16; 1
        28      4  reserved  zero
        32 length  payload

One commit is one record, so a commit is replayed all or nothing: its checksum covers every op in it.

Recovery (``recover``) reads every file in LSN order. A record that is cut short, has a bad magic or a bad
checksum ends the good part of its file. If it is in the last file and no valid record follows it there,
it is a torn tail of a write that was never acknowledged: the file is copied to
``<name>.torn-<unix-time-ns>``, truncated at the last good record and fsynced. Anything else (damage followed
by a valid record, damage in a file that is not the last, an LSN out of sequence) is damage in the middle:
``CorruptionError`` with the file and offset, and nothing is repaired.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import staging
from .durable import fsync_dir, sync_fd
from .errors import CorruptionError

MAGIC = b"SVWL"
HEADER = struct.Struct("<4sIQQHHI")
assert HEADER.size == 32
KIND_COMMIT = 1
VERSION = 1
SUFFIX = ".wal"

# Bytes-like chunks that make up one payload; written and checksummed without joining them.
Payload = Sequence[bytes | bytearray | memoryview]


def wal_file_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SUFFIX}"


def list_wal_files(wal_dir: Path) -> list[tuple[int, Path]]:
    """(first LSN, path) of every WAL file, in LSN order."""
    out = []
    for p in wal_dir.iterdir():
        if p.suffix == SUFFIX and p.stem.isdigit() and len(p.stem) == 20:
            out.append((int(p.stem), p))
    out.sort()
    return out


def encode_header(lsn: int, kind: int, payload: Payload) -> bytes:
    length = sum(memoryview(p).nbytes for p in payload)
    tail = HEADER.pack(MAGIC, 0, length, lsn, kind, VERSION, 0)[8:]
    crc = zlib.crc32(tail)
    for p in payload:
        crc = zlib.crc32(p, crc)
    return MAGIC + struct.pack("<I", crc) + tail


@dataclass
class WalRecord:
    lsn: int
    kind: int
    payload: memoryview
    path: Path
    offset: int


@dataclass
class RepairedFile:
    path: Path
    offset: int  # where the file was truncated
    reason: str
    copy: Path  # the damaged original, kept


@dataclass
class WalRecovery:
    records: list[WalRecord] = field(default_factory=list)
    repaired: list[RepairedFile] = field(default_factory=list)
    last_lsn: int | None = None


def _parse(data: bytes, off: int) -> tuple[tuple[int, int, int] | None, str]:
    """(lsn, kind, end) of a valid record at ``off``, or None and why not."""
    if len(data) - off < HEADER.size:
        return None, "truncated record header"
    magic, crc, length, lsn, kind, _version, _ = HEADER.unpack_from(data, off)
    if magic != MAGIC:
        return None, "bad record magic"
    end = off + HEADER.size + length
    if end > len(data):
        return None, "record shorter than its length field"
    view = memoryview(data)
    got = zlib.crc32(view[off + HEADER.size:end], zlib.crc32(view[off + 8:off + HEADER.size]))
    if got != crc:
        return None, "record checksum mismatch"
    return (lsn, kind, end), ""


def _valid_record_after(data: bytes, off: int, after_lsn: int) -> int | None:
    """Offset of a valid record (LSN beyond ``after_lsn``) that starts after ``off``, if any."""
    pos = off + 1
    while True:
        i = data.find(MAGIC, pos)
        if i < 0:
            return None
        parsed, _ = _parse(data, i)
        if parsed is not None and parsed[0] > after_lsn:
            return i
        pos = i + 1


def recover(wal_dir: Path, *, fsync: bool = True) -> WalRecovery:
    """Read all records, repairing a torn tail of the last file; see the module docstring."""
    result = WalRecovery()
    files = list_wal_files(wal_dir)
    expected: int | None = None
    for i, (first_lsn, path) in enumerate(files):
        is_last = i == len(files) - 1
        if expected is not None and first_lsn != expected:
            raise CorruptionError(path, 0, f"file starts at LSN {first_lsn}, expected {expected}")
        expected = first_lsn
        data = path.read_bytes()
        view = memoryview(data)
        off = 0
        bad: str | None = None
        while off < len(data):
            parsed, why = _parse(data, off)
            if parsed is None:
                bad = why
                break
            lsn, kind, end = parsed
            if lsn != expected:
                raise CorruptionError(path, off, f"record has LSN {lsn}, expected {expected}")
            if kind != KIND_COMMIT:
                raise CorruptionError(path, off, f"unknown record kind {kind}")
            result.records.append(WalRecord(lsn, kind, view[off + HEADER.size:end], path, off))
            expected = lsn + 1
            off = end
        if bad is None:
            continue
        if not is_last:
            raise CorruptionError(path, off, f"{bad}, and later WAL files follow")
        later = _valid_record_after(data, off, expected - 1)
        if later is not None:
            raise CorruptionError(path, off, f"{bad}, followed by a valid record at offset {later}")
        result.repaired.append(_truncate_torn_tail(path, off, bad, fsync=fsync))
    # With only empty files, the next record gets the LSN the last file is named after.
    result.last_lsn = expected - 1 if expected is not None else None
    return result


def _truncate_torn_tail(path: Path, offset: int, reason: str, *, fsync: bool) -> RepairedFile:
    copy = path.with_name(f"{path.name}.torn-{time.time_ns()}")
    shutil.copyfile(path, copy)
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        if fsync:
            sync_fd(f.fileno())
    if fsync:
        fsync_dir(path.parent)
    return RepairedFile(path, offset, reason, copy)


class WalWriter:
    """Appends records to the last WAL file, rotating to a new file at ``segment_bytes``.

    Not thread-safe: the store's group-commit leader is its only caller at any time.
    """

    def __init__(self, wal_dir: Path, next_lsn: int, *, segment_bytes: int, fsync: bool):
        self.dir = wal_dir
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.files = list_wal_files(wal_dir)
        self._dir_dirty = False
        self._closed_bytes = sum(p.stat().st_size for _, p in self.files[:-1])
        if self.files:
            path = self.files[-1][1]
            self._size = path.stat().st_size
        else:
            path = self._create(next_lsn)
        self._file = open(path, "ab", buffering=1 << 20)  # noqa: SIM115 - open until close()

    def _create(self, first_lsn: int) -> Path:
        path = self.dir / wal_file_name(first_lsn)
        path.touch(exist_ok=False)
        self.files.append((first_lsn, path))
        self._size = 0
        self._dir_dirty = True
        return path

    @property
    def total_bytes(self) -> int:
        return self._closed_bytes + self._size

    def append(self, records: Iterable[tuple[int, int, Payload]]) -> None:
        """Write records (lsn, kind, payload chunks) after the last one; durable only after ``sync``."""
        for lsn, kind, payload in records:
            if self._size >= self.segment_bytes:
                self.rotate(lsn)
            header = encode_header(lsn, kind, payload)
            self._file.write(header)
            for p in payload:
                self._file.write(p)
            self._size += len(header) + sum(memoryview(p).nbytes for p in payload)

    def sync(self) -> None:
        self._file.flush()
        if self.fsync:
            sync_fd(self._file.fileno())
            if self._dir_dirty:
                fsync_dir(self.dir)
        self._dir_dirty = False

    def rotate(self, next_lsn: int) -> None:
        """Start a new file whose first record will have ``next_lsn`` (no-op if the current one is empty)."""
        if self._size == 0:
            return
        self.sync()
        self._file.close()
        self._closed_bytes += self._size
        self._file = open(self._create(next_lsn), "ab", buffering=1 << 20)  # noqa: SIM115

    def remove_before(self, cutoff_lsn: int) -> list[Path]:
        """Delete whole files all of whose records have LSN < ``cutoff_lsn``; never the current file."""
        removed = []
        while len(self.files) > 1 and self.files[1][0] <= cutoff_lsn:
            _, path = self.files.pop(0)
            self._closed_bytes -= path.stat().st_size
            path.unlink()
            removed.append(path)
        if removed:  # the staged rows their records named go with them
            removed += staging.remove_before(self.dir, self.files[0][0])
        if removed and self.fsync:
            fsync_dir(self.dir)
        return removed

    def close(self, *, sync: bool = True) -> None:
        if self._file.closed:
            return
        if sync:
            try:
                self.sync()
            finally:
                self._file.close()
            return
        with contextlib.suppress(OSError):  # the store already failed; closing must not fail again
            self._file.close()
