"""Compaction: sealed segments rewritten without their deleted rows, small neighbours merged into one.

Which segments (``plan_groups``): a sealed segment is a candidate when at least ``deleted_ratio`` of its
rows are deleted, or when its live rows are under ``small_fraction`` of ``seal_rows`` (CHECKPOINT and
WAL-size checkpoints seal small growing segments). Runs of adjacent candidates are cut into groups of at
most ``seal_rows`` live rows; a group is rewritten when it merges two or more segments or drops deleted
rows. Groups are runs of neighbours because segments hold ascending, non-overlapping row-id ranges; the
merged segment keeps every row's id (ids become sparse inside it, which sealed segments allow), so the
primary-key index, the writer's live-row set, open transactions and WAL records naming row ids all stay
valid.

How (Store.compact, one group at a time): the new segment's number is reserved under the writer lock;
then, outside every lock, the live rows of the group as of the newest durable version are written as a
new segment file and its vector indexes are built, so readers and writers go on meanwhile. Back under the
writer lock, rows deleted since that version are deleted in the new segment too, the group is replaced
by it in the writer's state and the manifest is written (with delete files for every segment whose
deletes were only in the WAL), then the new version is published. Only then are the old segment, delete
and index files removed: snapshots taken before keep reading them through their memory maps.

A crash before the manifest is replaced leaves the new files as strays (removed at open); after it, the
old ones (likewise). WAL replay applies deletes by row id, which finds rows in the merged segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .segment import SealedSegment


@dataclass(frozen=True)
class CompactionResult:
    """One rewritten group: the segments it replaced and what the new one holds."""

    table: str
    replaced: tuple[int, ...]  # segment numbers
    segno: int | None  # the new segment (None: every row of the group was deleted)
    rows_before: int  # rows stored in the replaced segments, deleted ones included
    rows_after: int
    bytes_freed: int


def is_candidate(seg: SealedSegment, seal_rows: int, deleted_ratio: float, small_fraction: float) -> bool:
    dead = seg.num_rows - seg.num_live
    if dead and dead >= deleted_ratio * seg.num_rows:
        return True
    return seg.num_live < small_fraction * seal_rows


def plan_groups(sealed: Sequence[SealedSegment], seal_rows: int, *, deleted_ratio: float,
                small_fraction: float = 0.5) -> list[tuple[int, int]]:
    """[start, end) positions in ``sealed`` of each group worth rewriting, in order."""
    groups: list[tuple[int, int]] = []
    i, n = 0, len(sealed)
    while i < n:
        if not is_candidate(sealed[i], seal_rows, deleted_ratio, small_fraction):
            i += 1
            continue
        start, live = i, 0
        while i < n and is_candidate(sealed[i], seal_rows, deleted_ratio, small_fraction) \
                and (i == start or live + sealed[i].num_live <= seal_rows):
            live += sealed[i].num_live
            i += 1
        worth = i - start > 1 or sealed[start].num_live < sealed[start].num_rows
        if worth:
            groups.append((start, i))
    return groups


def live_rows(group: Sequence[SealedSegment]) -> pa.Table:
    """The live rows of ``group`` (user columns and ``_rowid``), in row-id order, as one chunk."""
    parts = []
    for seg in group:
        part = seg.data
        if seg.live is not None:
            part = part.filter(pa.array(seg.live, pa.bool_()))
        parts.append(part)
    return pa.concat_tables(parts).combine_chunks()


def deleted_since(then: Sequence[SealedSegment], now: Sequence[SealedSegment]) -> np.ndarray:
    """Row ids live in ``then`` and deleted in ``now`` (the same segments, later masks), sorted."""
    out = []
    for old, new in zip(then, now, strict=True):
        if new.live is None or new.live is old.live:
            continue
        was = np.ones(old.num_rows, bool) if old.live is None else old.live
        out.append(old.rowids[was & ~new.live])
    return np.concatenate(out) if out else np.zeros(0, np.int64)
