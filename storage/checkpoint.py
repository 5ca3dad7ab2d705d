"""Moving committed state from the WAL into files: sealing growing segments, writing delete files and
manifests, writing the catalog, removing dropped tables' folders, dropped indexes' files and stray files.

Callers hold the writer lock with every queued commit durable, so the writer's state is exactly the
durable state. The order makes every crash point safe: new files are written and fsynced first, then the
manifest (or catalog) that names them is replaced atomically, and only then are files it no longer names
removed. WAL replay is idempotent (see writer.apply), so replaying records the files already hold is
harmless; the WAL is truncated only behind what the files hold.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from .catalog import save_catalog
from .durable import fsync_dir
from .errors import CorruptionError
from .manifest import MANIFEST, Manifest, SegmentEntry, load_manifest, save_manifest
from .segment import (
    GrowingSegment,
    delete_file_name,
    open_sealed,
    segment_file_name,
    write_arrow_file,
    write_delete_file,
)
from .segment_index import parse_index_file_name
from .table import row_schema, with_sealed
from .writer import WriterState, table_folder

log = logging.getLogger(__name__)


def checkpoint_table(state: WriterState, name: str, lsn: int, *, seal_rows: int, seal_growing: bool,
                     fsync: bool, force_manifest: bool = False) -> None:
    """Persist a table's deletes and, with ``seal_growing``, its growing rows as segments of at most
    ``seal_rows`` rows. Dead growing rows are dropped rather than written. ``force_manifest``: write the
    manifest even if nothing else changed (compaction replaced segments)."""
    table = state.tables[name]
    growing = table.growing
    seal = seal_growing and growing.num_rows > 0
    dirty = [i for i, s in enumerate(table.sealed) if not s.deletes_persisted]
    if not seal and not dirty and not force_manifest:
        return
    folder = table_folder(state.root, table.oid)
    if not folder.exists():
        folder.mkdir(parents=True)
        if fsync:
            fsync_dir(folder.parent)

    sealed = list(table.sealed)
    stale: list[str] = []
    for i in dirty:
        seg = sealed[i]
        new_file = None
        if seg.num_live < seg.num_rows:
            new_file = delete_file_name(seg.segno, lsn)
            write_delete_file(folder / new_file, seg.dead_rowids(), fsync=fsync)
        if seg.delete_file and seg.delete_file != new_file:
            stale.append(seg.delete_file)
        sealed[i] = replace(seg, delete_file=new_file, deletes_persisted=True)

    next_segno = table.next_segno
    new_segments: list[tuple[int, str, int]] = []
    if seal:
        data = growing.table()
        if growing.num_live < growing.num_rows:
            data = data.filter(pa.array(growing.live_mask()))
        data = data.combine_chunks()
        for start in range(0, data.num_rows, seal_rows):
            part = data.slice(start, seal_rows)
            file = segment_file_name(next_segno)
            write_arrow_file(folder / file, part, fsync=fsync)
            new_segments.append((next_segno, file, part.num_rows))
            next_segno += 1
    if fsync:
        fsync_dir(folder)
    sealed += [open_sealed(folder, segno, file, None, n) for segno, file, n in new_segments]
    next_rowid = growing.next_rowid if seal else growing.first_rowid
    entries = tuple(SegmentEntry(s.segno, s.file, s.num_rows, int(s.rowids[0]), int(s.rowids[-1]),
                                 s.delete_file, s.num_rows - s.num_live) for s in sealed)
    save_manifest(folder, Manifest(table.oid, lsn, next_rowid, next_segno, entries), fsync=fsync)
    for file in stale:
        (folder / file).unlink(missing_ok=True)

    if seal:
        growing = GrowingSegment.empty(next_segno, row_schema(table.schema), next_rowid)
        pk = state.pk.get(table.oid)
        if pk is not None:
            fresh = sealed[len(sealed) - len(new_segments):]
            if fresh:
                pk.add_sealed(np.concatenate([pk.codec.encode(s.data) for s in fresh]),
                              np.concatenate([s.rowids for s in fresh]))
            pk.clear_growing()
    state.tables[name] = with_sealed(table, tuple(sealed), growing, next_segno)


Forget = Callable[[Iterable[int], Iterable[tuple[int, int]]], None]


def write_catalog(state: WriterState, lsn: int, *, fsync: bool, forget: Forget | None = None) -> None:
    """Write catalog.json, then remove the folders of tables and the files of indexes it no longer has.

    ``forget(table OIDs, (table OID, index OID) pairs)`` is told first, so that the index builder
    publishes nothing of theirs once their files are being removed.
    """
    save_catalog(state.root, state.catalog_file(lsn), fsync=fsync)
    state.catalog_dirty_lsn = None
    if forget is not None:
        forget(state.dropped, state.dropped_indexes)
    for table_oid, index_oid in sorted(state.dropped_indexes):
        remove_index_files(table_folder(state.root, table_oid), index_oid)
    state.dropped_indexes.clear()
    for oid in sorted(state.dropped):
        shutil.rmtree(table_folder(state.root, oid), ignore_errors=True)
    state.dropped.clear()


def remove_index_files(folder: Path, index_oid: int) -> None:
    """Remove every file of one index in a table folder (built files and builds in progress)."""
    try:
        names = [f for f in folder.iterdir() if f.name.startswith(f"idx-{index_oid}-seg-")]
    except FileNotFoundError:
        return
    for f in names:
        f.unlink(missing_ok=True)


def remove_strays(state: WriterState) -> list[Path]:
    """Remove what crashes left behind: folders of dropped tables; segment, delete and temporary files no
    manifest names; index files of indexes the catalog no longer has or of segments the manifest does not
    name. Call only after catalog.json holds every table of ``state``, before index builds start.

    A folder for an OID the catalog never handed out means the catalog is not the one the folders were
    written with: CorruptionError, rather than deleting data.
    """
    removed = []
    tables_dir = state.root / "tables"
    for folder in sorted(tables_dir.iterdir()):
        if not folder.is_dir() or not folder.name.isdigit():
            continue
        oid = int(folder.name)
        if oid not in state.names:
            if oid >= state.next_oid:
                raise CorruptionError(folder, 0, f"table folder for OID {oid}, which catalog.json never "
                                      f"assigned (next OID {state.next_oid}); is catalog.json lost?")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            continue
        manifest = load_manifest(folder)
        keep = manifest.files() if manifest is not None else {MANIFEST}
        segnos = {s.segno for s in manifest.segments} if manifest is not None else set()
        index_oids = {i.oid for i in state.tables[state.names[oid]].schema.indexes}
        for f in folder.iterdir():
            index_file = parse_index_file_name(f.name)
            if index_file is not None:
                stray = index_file[0] not in index_oids or index_file[1] not in segnos
            else:
                stray = (f.name.startswith("seg-") or f.name.endswith(".tmp")) and f.name not in keep
            if stray:
                f.unlink(missing_ok=True)
                removed.append(f)
    if removed:
        log.info("removed %d stray files from %s", len(removed), tables_dir)
    return removed
