"""Staged inserts (staging.py): rows written beside the WAL as they arrive, a commit record that names
the file, recovery from that file, and the removal of every file no durable commit names."""

from __future__ import annotations

import pyarrow as pa
import pytest
from storage_testing import crash, rows, table_schema

from storage import CorruptionError, CreateTable, DuplicateKeyError, Insert, Store
from storage.staging import StagedRows


def _open(path) -> Store:
    store = Store.open(path, seal_rows=1000, fsync=False)
    if "t" not in store.catalog:
        store.commit([CreateTable(table_schema())])
    return store


def _staged(store: Store, *chunks: range) -> tuple[StagedRows, pa.Table]:
    staged = store.stage("t")
    parts = [rows(store.catalog["t"], ids).cast(staged.schema) for ids in chunks]
    for part in parts:
        staged.append(part)
    return staged, pa.concat_tables(parts)


def _wal_files(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "wal").iterdir())


def _ids(store: Store) -> list[int]:
    return sorted(store.snapshot().scan("t", ["id"]).column("id").to_pylist())


def test_staged_insert_is_logged_by_name_and_replayed_from_its_file(tmp_path):
    store = _open(tmp_path)
    staged, data = _staged(store, range(0, 300), range(300, 700))
    wal_before = store._wal.total_bytes
    lsn = store.commit([Insert("t", data, staged)])
    staged.discard()  # the commit holds it: nothing happens
    assert staged.sealed and staged.path.name == f"{lsn:020d}.0.rows" and staged.path.exists()
    assert store._wal.total_bytes - wal_before < 200  # a file name, not 700 rows
    assert _ids(store) == list(range(700))
    crash(store)

    store = _open(tmp_path)  # replayed from the .rows file
    got = store.snapshot().scan("t", ["id", "embedding", "body"])
    assert got.sort_by("id").equals(data.select(["id", "embedding", "body"]))
    store.commit([Insert("t", rows(store.catalog["t"], range(700, 710)))])  # row ids go on after the file's
    assert _ids(store) == list(range(710))
    store.checkpoint()  # sealed: the WAL file holding the record goes, and the .rows file with it
    assert [n for n in _wal_files(store) if n.endswith(".rows")] == []
    store.close()
    store = _open(tmp_path)
    assert _ids(store) == list(range(710))
    store.close()


def test_files_no_durable_commit_names_are_removed_at_open(tmp_path):
    store = _open(tmp_path)
    staged, _ = _staged(store, range(50))  # a COPY still running at the crash
    assert staged.path.name.startswith("staged-")
    (store.root / "wal" / f"{10**6:020d}.0.rows").write_bytes(b"a crash before its record was durable")
    crash(store)
    store = _open(tmp_path)
    assert [n for n in _wal_files(store) if not n.endswith(".wal")] == []
    assert _ids(store) == []
    store.close()


def test_failed_commit_leaves_the_staged_file_to_discard(tmp_path):
    store = _open(tmp_path)
    store.commit([Insert("t", rows(store.catalog["t"], [5]))])
    staged, data = _staged(store, range(10))  # id 5 again
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", data, staged)])
    assert not staged.sealed and staged.path.exists()
    staged.discard()
    assert not staged.path.exists()
    assert _ids(store) == [5]
    store.close()


def test_staged_file_that_does_not_hold_the_rows_is_not_logged(tmp_path):
    store = _open(tmp_path)
    staged, _ = _staged(store, range(10))
    other = rows(store.catalog["t"], range(20, 25)).cast(staged.schema)
    wal_before = store._wal.total_bytes
    store.commit([Insert("t", other, staged)])  # 5 rows against a file of 10: the rows are logged
    assert not staged.sealed and store._wal.total_bytes - wal_before > other.nbytes
    staged.discard()
    crash(store)
    store = _open(tmp_path)
    assert _ids(store) == list(range(20, 25))
    store.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_damaged_rows_file_is_corruption_not_lost_rows(tmp_path, damage):
    store = _open(tmp_path)
    staged, data = _staged(store, range(100))
    store.commit([Insert("t", data, staged)])
    crash(store)
    path = staged.path
    if damage == "remove":
        path.unlink()
    else:
        raw = bytearray(path.read_bytes())
        if damage == "flip":
            raw[len(raw) // 2] ^= 0xFF
        else:
            del raw[-8:]
        path.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="staged rows file"):
        Store.open(tmp_path, seal_rows=1000, fsync=False)
