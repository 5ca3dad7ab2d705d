"""Rows of a large insert, written beside the WAL while they arrive, so that its commit record is small.

A COPY of a million 128-dimension vectors is over 500 MB of rows. Written into the WAL at commit, those
bytes are a second or more of the commit's time (page cache and fsync), after the client has sent its
last byte. Staged, they are written as the COPY decodes them, and the commit writes a record that names
the file (records.py, op kind 8: first row id, row count, byte size, crc32 and the file name).

Files, in the WAL directory (see store.py for the whole layout)::

    wal/staged-<token>.arrows     rows being staged: an Arrow IPC stream of the table's user columns
    wal/<lsn:020d>.<n>.rows       the same file once op n of commit <lsn> holds it

Commit order (Store._submit, under the writer lock): the stream is ended, fsynced, renamed to its
commit's name and the directory fsynced, then the record is written and fsynced like any other. A crash
before the record is durable leaves a file no record names; ``remove_strays`` deletes those at open,
and any ``staged-*`` file. A ``.rows`` file goes when the WAL file holding its record is removed
(WalWriter.remove_before), so every record recovery reads still has its file.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import threading
import zlib
from pathlib import Path

import pyarrow as pa

from .durable import fsync_dir, sync_fd
from .errors import StorageError

STAGED_PREFIX = "staged-"
ROWS_SUFFIX = ".rows"
_ROWS_NAME = re.compile(r"^(\d{20})\.(\d+)\.rows$")


def rows_file_name(lsn: int, op: int) -> str:
    return f"{lsn:020d}.{op}{ROWS_SUFFIX}"


def rows_file_lsn(name: str) -> int | None:
    """The commit LSN in a ``.rows`` file name, None for any other name."""
    m = _ROWS_NAME.match(name)
    return int(m.group(1)) if m else None


class _Sink:
    """What pyarrow's IPC writer writes to: the file, and the crc32 and size of everything written.
    Arrow hands the body buffers over without copying them."""

    closed = False

    def __init__(self, file: object) -> None:
        self.file = file
        self.crc = 0
        self.size = 0

    def write(self, data: bytes | pa.Buffer) -> int:
        self.crc = zlib.crc32(data, self.crc)
        n = self.file.write(data)  # type: ignore[attr-defined]
        self.size += n
        return n

    def flush(self) -> None:
        pass


class StagedRows:
    """An Arrow IPC stream of rows of one table in ``wal/staged-<token>.arrows``; see the module doc.

    ``append`` tables of exactly ``schema``: a writer thread of its own writes them (and fdatasyncs every
    ``sync_bytes``), so the caller goes on decoding while the bytes go to the file. The store's commit
    seals the file (an Insert op names it with ``staged=``), which waits for the writer. ``discard``
    removes it unless a commit holds it; it is safe to call twice. One COPY appends to it.
    """

    def __init__(self, wal_dir: Path, schema: pa.Schema, *, fsync: bool, sync_bytes: int = 64 << 20) -> None:
        self.schema = schema
        self.fsync = fsync
        self.path = wal_dir / f"{STAGED_PREFIX}{secrets.token_hex(8)}.arrows"
        self.rows = 0
        self.sealed = False
        self._sync_bytes = sync_bytes
        self._file = open(self.path, "xb", buffering=1 << 20)  # noqa: SIM115 - closed by seal/discard
        self._sink = _Sink(self._file)
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self._sink, schema)
        self._queue: queue.SimpleQueue[pa.Table | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="sqlvec-stager", daemon=True)
        self._thread.start()

    @property
    def size(self) -> int:
        return self._sink.size

    @property
    def crc(self) -> int:
        return self._sink.crc

    def _write_loop(self) -> None:
        synced = 0
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed: drain until told to stop
            try:
                assert self._writer is not None
                self._writer.write_table(data)
                if self.fsync and self._sink.size - synced >= self._sync_bytes:
                    self._file.flush()  # under way to the disk now, so the fsync at commit has little left
                    os.fdatasync(self._file.fileno())
                    synced = self._sink.size
            except BaseException as e:  # noqa: BLE001 - raised to the committing thread at seal
                self._error = e

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def append(self, data: pa.Table) -> None:
        if self._writer is None or self.sealed:
            raise StorageError("staged rows are already sealed or discarded")
        if not data.schema.equals(self.schema):
            raise StorageError(f"staged rows need schema {self.schema}, not {data.schema}")
        if self._error is not None:
            raise StorageError(f"writing staged rows to {self.path} failed: {self._error}")
        self._queue.put(data)
        self.rows += data.num_rows

    def seal(self, path: Path) -> None:
        """Wait for the writer, end the stream, make it durable and rename it to ``path`` (same directory)."""
        if self._writer is None or self.sealed:
            raise StorageError("staged rows are already sealed or discarded")
        self._stop()
        if self._error is not None:
            raise StorageError(f"writing staged rows to {self.path} failed: {self._error}")
        self._writer.close()
        self._writer = None
        self._file.flush()
        if self.fsync:
            sync_fd(self._file.fileno())
        self._file.close()
        os.replace(self.path, path)
        if self.fsync:
            fsync_dir(path.parent)
        self.path = path
        self.sealed = True

    def discard(self) -> None:
        """Remove the file, unless a commit has taken it."""
        if self.sealed:
            return
        self._stop()
        self._writer = None
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_rows(path: Path, size: int, crc: int, rows: int) -> pa.Table:
    """The rows of a sealed ``.rows`` file, checked against its record; ValueError when they do not match."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"staged rows file {path.name} is missing") from None
    if len(data) != size:
        raise ValueError(f"staged rows file {path.name} holds {len(data)} bytes, its record says {size}")
    if zlib.crc32(data) != crc:
        raise ValueError(f"staged rows file {path.name} fails its checksum")
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    if table.num_rows != rows:
        raise ValueError(f"staged rows file {path.name} holds {table.num_rows} rows, its record says {rows}")
    return table


def remove_strays(wal_dir: Path, first_lsn: int, last_lsn: int) -> list[Path]:
    """At open, after recovery: remove ``staged-*`` files (inserts that never committed) and ``.rows``
    files no WAL record in [first_lsn, last_lsn] can name (a crash before their record was durable,
    or after their WAL file was removed)."""
    removed = []
    for p in wal_dir.iterdir():
        lsn = rows_file_lsn(p.name)
        if p.name.startswith(STAGED_PREFIX) or (lsn is not None and not first_lsn <= lsn <= last_lsn):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def remove_before(wal_dir: Path, first_lsn: int) -> list[Path]:
    """Remove the ``.rows`` files of commits before ``first_lsn`` (their WAL files are gone)."""
    removed = []
    for p in wal_dir.iterdir():
        lsn = rows_file_lsn(p.name)
        if lsn is not None and lsn < first_lsn:
            p.unlink()
            removed.append(p)
    return removed
