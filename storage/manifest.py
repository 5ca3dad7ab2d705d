"""A table's manifest: which sealed segment files and delete files make up the table.

``<data>/tables/<oid>/manifest.json``, UTF-8 JSON, replaced atomically (write ``.tmp``, fsync, rename,
fsync the folder)::

    {"format": 1,
     "table_oid": 16400,
     "checkpoint_lsn": 42,      # the table's files hold every change to it up to this LSN
     "next_rowid": 1000,        # row ids below this are in segments (or were dead when sealed)
     "next_segment": 3,         # number of the next segment to seal
     "segments": [{"segno": 1, "file": "seg-000001.arrow", "num_rows": 500,
                   "first_rowid": 0, "last_rowid": 499,
                   "delete_file": "seg-000001.del-40.arrow",   # or null
                   "num_deleted": 3}]}

Segments are listed in row-id order and their row-id ranges do not overlap. Segment, delete and temporary
files in the folder that the manifest does not name are leftovers of an interrupted seal and are removed
when the store opens. Vector index files (``idx-<index oid>-seg-<segno>.vidx``, segment_index.py) are not
listed: they are derived data, kept while the catalog has their index and the manifest their segment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .durable import atomic_write
from .errors import CorruptionError

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class SegmentEntry:
    segno: int
    file: str
    num_rows: int
    first_rowid: int
    last_rowid: int
    delete_file: str | None
    num_deleted: int


@dataclass(frozen=True)
class Manifest:
    table_oid: int
    checkpoint_lsn: int
    next_rowid: int
    next_segment: int
    segments: tuple[SegmentEntry, ...]

    def files(self) -> set[str]:
        names = {MANIFEST}
        for s in self.segments:
            names.add(s.file)
            if s.delete_file:
                names.add(s.delete_file)
        return names


def load_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        d = json.loads(raw)
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown manifest format {d.get('format')!r}")
        return Manifest(d["table_oid"], d["checkpoint_lsn"], d["next_rowid"], d["next_segment"],
                        tuple(SegmentEntry(**s) for s in d["segments"]))
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptionError(path, 0, f"unreadable manifest: {e}") from e


def save_manifest(folder: Path, manifest: Manifest, *, fsync: bool) -> None:
    d = {"format": FORMAT, **asdict(manifest)}
    atomic_write(folder / MANIFEST, json.dumps(d, indent=1).encode(), fsync=fsync)
