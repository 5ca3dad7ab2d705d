"""sqlvec storage: catalog, write-ahead log, growing and sealed Arrow segments, primary-key index,
deletes, snapshots. Knows nothing of SQL; see store.py for the data directory layout."""

from .errors import (
                     CorruptionError,
                     DuplicateKeyError,
                     NoSuchTableError,
                     NullValueError,
                     RowNotLiveError,
                     StorageError,
                     TableExistsError,
)
from .ops import CreateTable, Delete, DropTable, Insert, Op
from .segment import SegmentView
from .snapshot import Snapshot
from .store import Store

__all__ = [
                     "CorruptionError",
                     "CreateTable",
                     "Delete",
                     "DropTable",
                     "DuplicateKeyError",
                     "Insert",
                     "NoSuchTableError",
                     "NullValueError",
                     "Op",
                     "RowNotLiveError",
                     "SegmentView",
                     "Snapshot",
                     "StorageError",
                     "Store",
                     "TableExistsError",
]
