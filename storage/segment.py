"""Segments: the growing segment (in memory) and sealed segments (immutable files, memory-mapped).

Every segment holds the table's user columns plus ``_rowid`` (int64, ascending) and a live mask. Masks are
copy-on-write: a delete makes a new array, so a snapshot holding the old one never sees it change.

Files, inside a table's folder (see store.py for the whole layout):

``seg-<segno:06d>.arrow``
    Arrow IPC *file* format, uncompressed, one record batch: the user columns in table order, then
    ``_rowid``. Uncompressed so ``pa.memory_map`` + ``pa.ipc.open_file(...).read_all()`` is zero-copy. Never
    changed after it is written (written as ``.tmp``, fsynced, renamed).
``seg-<segno:06d>.del-<lsn>.arrow``
    Arrow IPC file with one int64 column ``_rowid``: every deleted row of that segment as of ``lsn``.
    A newer delete file replaces an older one through the manifest; the old file is then removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from .durable import fsync_file
from .errors import CorruptionError

ROWID = "_rowid"
ROWID_FIELD = pa.field(ROWID, pa.int64(), nullable=False)

# Growing-segment batch merging: trailing batches under SMALL_ROWS are merged once there are
# MAX_SMALL_BATCHES of them; larger ones merge pairwise while the result stays under MERGE_LIMIT rows.
SMALL_ROWS = 1024
MAX_SMALL_BATCHES = 16
MERGE_LIMIT = 65536


def segment_file_name(segno: int) -> str:
    return f"seg-{segno:06d}.arrow"


def delete_file_name(segno: int, lsn: int) -> str:
    return f"seg-{segno:06d}.del-{lsn}.arrow"


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class SegmentView:
    """What a snapshot shows of one segment.

    ``segment_id`` names immutable data and may be used as a cache key (a growing segment's id changes
    with every append). ``live`` is None when every row is live. ``segno`` is the segment's number in its
    table; a growing segment's is the number it will be sealed as (the same while it grows; its rows keep
    their positions), which is what ``Snapshot.segment_index`` keys indexes by.
    """

    segment_id: str
    data: pa.Table  # user columns + "_rowid"
    live: np.ndarray | None
    num_live: int
    sealed: bool
    segno: int = 0

    @property
    def num_rows(self) -> int:
        return self.data.num_rows


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    concat = getattr(pa, "concat_batches", None)
    if concat is not None:
        return concat(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _merge_tail(batches: list[pa.RecordBatch]) -> None:
    small = 0
    while small < len(batches) and batches[-1 - small].num_rows < SMALL_ROWS:
        small += 1
    if small >= MAX_SMALL_BATCHES:
        batches[-small:] = [_concat(batches[-small:])]
    while (len(batches) >= 2 and batches[-1].num_rows >= SMALL_ROWS
           and batches[-2].num_rows <= batches[-1].num_rows
           and batches[-2].num_rows + batches[-1].num_rows <= MERGE_LIMIT):
        batches[-2:] = [_concat(batches[-2:])]


@dataclass(frozen=True, eq=False)
class GrowingSegment:
    """The table's newest rows, in memory, row ids ``first_rowid ..< first_rowid + num_rows``.

    Immutable value: appends and deletes return a new one. ``live_buf`` may be longer than ``num_rows``
    and shared with older versions: appends only write past every older version's end, deletes copy it.
    """

    gen: int  # the segment number it will be sealed as
    schema: pa.Schema  # user columns + "_rowid"
    first_rowid: int
    batches: tuple[pa.RecordBatch, ...]
    num_rows: int
    live_buf: np.ndarray
    num_live: int

    @classmethod
    def empty(cls, gen: int, schema: pa.Schema, first_rowid: int) -> GrowingSegment:
        return cls(gen, schema, first_rowid, (), 0, np.zeros(0, dtype=bool), 0)

    @property
    def next_rowid(self) -> int:
        return self.first_rowid + self.num_rows

    def append(self, data: pa.Table) -> GrowingSegment:
        """Add rows whose row ids continue this segment's."""
        n = data.num_rows
        batches = list(self.batches)
        batches.extend(b for b in data.to_batches() if b.num_rows)
        _merge_tail(batches)
        end = self.num_rows + n
        buf = self.live_buf
        if end > len(buf):
            grown = np.zeros(max(end, 2 * len(buf), 1024), dtype=bool)
            grown[:self.num_rows] = buf[:self.num_rows]
            buf = grown
        buf[self.num_rows:end] = True
        return replace(self, batches=tuple(batches), num_rows=end, live_buf=buf, num_live=self.num_live + n)

    def with_deletes(self, row_ids: np.ndarray) -> tuple[GrowingSegment, int]:
        """Mark rows dead (sorted unique ids within this segment); returns the new segment and the count."""
        pos = row_ids - self.first_rowid
        buf = self.live_buf.copy()
        died = int(np.count_nonzero(buf[pos]))
        buf[pos] = False
        return replace(self, live_buf=buf, num_live=self.num_live - died), died

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)

    def live_mask(self) -> np.ndarray:
        return _readonly(self.live_buf[:self.num_rows])

    def view(self, oid: int) -> SegmentView:
        live = None if self.num_live == self.num_rows else self.live_mask()
        return SegmentView(f"{oid}.g{self.gen}.{self.num_rows}", self.table(), live, self.num_live, False,
                           self.gen)


@dataclass(frozen=True, eq=False)
class SealedSegment:
    """An immutable segment file, memory-mapped, with its current live mask."""

    segno: int
    file: str
    data: pa.Table
    rowids: np.ndarray  # zero-copy view of data["_rowid"], ascending
    live: np.ndarray | None
    num_live: int
    delete_file: str | None  # the delete file the manifest names
    deletes_persisted: bool  # whether ``live`` is what delete_file says

    @property
    def num_rows(self) -> int:
        return self.data.num_rows

    @property
    def first_rowid(self) -> int:
        return int(self.rowids[0])

    def dead_rowids(self) -> np.ndarray:
        if self.live is None:
            return np.zeros(0, dtype=np.int64)
        return self.rowids[~self.live]

    def with_deletes(self, row_ids: np.ndarray) -> tuple[SealedSegment, int]:
        """Mark rows dead (sorted unique ids); ids this segment does not hold are ignored."""
        pos = np.searchsorted(self.rowids, row_ids)
        inside = pos < len(self.rowids)
        pos = pos[inside]
        pos = pos[self.rowids[pos] == row_ids[inside]]
        live = np.ones(self.num_rows, dtype=bool) if self.live is None else self.live.copy()
        died = int(np.count_nonzero(live[pos]))
        if not died:
            return self, 0
        live[pos] = False
        return replace(self, live=_readonly(live), num_live=self.num_live - died,
                       deletes_persisted=False), died

    def view(self, oid: int) -> SegmentView:
        live = None if self.num_live == self.num_rows else self.live
        return SegmentView(f"{oid}.s{self.segno}", self.data, live, self.num_live, True, self.segno)


def write_arrow_file(path: Path, data: pa.Table, *, fsync: bool) -> None:
    """Write ``data`` as an uncompressed Arrow IPC file, atomically (tmp + fsync + rename).

    The caller fsyncs the directory.
    """
    tmp = path.with_name(path.name + ".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
        writer.write_table(data, max_chunksize=max(data.num_rows, 1))
    if fsync:
        fsync_file(tmp)
    os.replace(tmp, path)


def read_arrow_file(path: Path) -> pa.Table:
    """Memory-map an Arrow IPC file (zero-copy)."""
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        raise CorruptionError(path, 0, f"cannot read Arrow IPC file: {e}") from e


def open_sealed(folder: Path, segno: int, file: str, delete_file: str | None,
                num_rows: int) -> SealedSegment:
    path = folder / file
    data = read_arrow_file(path)
    if data.num_rows != num_rows or ROWID not in data.column_names:
        raise CorruptionError(path, 0, f"segment has {data.num_rows} rows, the manifest says {num_rows}")
    col = data.column(ROWID)
    rowids = (col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()).to_numpy()
    seg = SealedSegment(segno, file, data, rowids, None, num_rows, delete_file, True)
    if delete_file is not None:
        dead = read_arrow_file(folder / delete_file).column(ROWID).to_numpy()
        seg, _ = seg.with_deletes(np.unique(dead))
        seg = replace(seg, deletes_persisted=True)
    return seg


def write_delete_file(path: Path, dead_rowids: np.ndarray, *, fsync: bool) -> None:
    data = pa.table([pa.array(dead_rowids, pa.int64())], schema=pa.schema([ROWID_FIELD]))
    write_arrow_file(path, data, fsync=fsync)
