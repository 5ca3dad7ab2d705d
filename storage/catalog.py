"""The catalog file: every table's schema (vector index definitions included), the next OID, and sequence
positions.

``<data>/catalog.json``, UTF-8 JSON, replaced atomically (write ``.tmp``, fsync, rename, fsync dir)::

    {"format": 1,
     "lsn": 42,             # holds every CREATE/DROP TABLE and sequence reservation up to this LSN
     "next_oid": 16402,     # of tables and indexes alike; never reused, even after DROP TABLE / INDEX
     "tables": [<TableSchema.to_json()>, ...],   # "indexes": [<IndexSchema.to_json()>, ...] if any
     "sequences": {"16400": {"id": 64}}}   # table OID -> column -> highest value reserved

It is rewritten after every commit with CREATE/DROP TABLE or CREATE/DROP INDEX and at checkpoints; the
WAL holds the rest. Tables written before indexes existed have no "indexes" key, which reads as none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .durable import atomic_write
from .errors import CorruptionError
from .types import TableSchema

CATALOG = "catalog.json"
FORMAT = 1
FIRST_OID = 16400


@dataclass
class CatalogFile:
    lsn: int = 0
    next_oid: int = FIRST_OID
    tables: list[TableSchema] = field(default_factory=list)
    sequences: dict[tuple[int, str], int] = field(default_factory=dict)


def load_catalog(root: Path) -> CatalogFile:
    path = root / CATALOG
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return CatalogFile()
    try:
        d = json.loads(raw)
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown catalog format {d.get('format')!r}")
        seqs = {(int(oid), col): int(v)
                for oid, cols in d.get("sequences", {}).items() for col, v in cols.items()}
        return CatalogFile(d["lsn"], d["next_oid"], [TableSchema.from_json(t) for t in d["tables"]], seqs)
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptionError(path, 0, f"unreadable catalog: {e}") from e


def save_catalog(root: Path, catalog: CatalogFile, *, fsync: bool) -> None:
    seqs: dict[str, dict[str, int]] = {}
    for (oid, col), value in sorted(catalog.sequences.items()):
        seqs.setdefault(str(oid), {})[col] = value
    d = {"format": FORMAT, "lsn": catalog.lsn, "next_oid": catalog.next_oid,
         "tables": [t.to_json() for t in sorted(catalog.tables, key=lambda t: t.oid)], "sequences": seqs}
    atomic_write(root / CATALOG, json.dumps(d, indent=1).encode(), fsync=fsync)
