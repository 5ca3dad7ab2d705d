"""sqlvec storage: catalog, write-ahead log, growing and sealed Arrow segments, primary-key index,
deletes, vector indexes, snapshots. Knows nothing of SQL; see store.py for the data directory layout."""

from .errors import (
    CorruptionError,
    DuplicateKeyError,
    IndexExistsError,
    NoSuchIndexError,
    NoSuchTableError,
    NullValueError,
    RowNotLiveError,
    StorageError,
    TableExistsError,
)
from .index_builds import IndexStatus
from .ops import CreateIndex, CreateTable, Delete, DropIndex, DropTable, Insert, Op
from .segment import SegmentView
from .segment_index import SegmentIndex
from .snapshot import Snapshot
from .store import Store
from .types import IndexSchema

__all__ = [
    "CorruptionError",
    "CreateIndex",
    "CreateTable",
    "Delete",
    "DropIndex",
    "DropTable",
    "DuplicateKeyError",
    "IndexExistsError",
    "IndexSchema",
    "IndexStatus",
    "Insert",
    "NoSuchIndexError",
    "NoSuchTableError",
    "NullValueError",
    "Op",
    "RowNotLiveError",
    "SegmentIndex",
    "SegmentView",
    "Snapshot",
    "StorageError",
    "Store",
    "TableExistsError",
]
