"""Crashes at every step of a checkpoint leave a store that reopens to exactly the committed data."""

from __future__ import annotations

import numpy as np
import pytest
from storage_testing import crash, rows, table_schema

from storage import CorruptionError, CreateTable, Delete, DropTable, Insert, Store
from storage import checkpoint as checkpoint_module
from storage.wal import WalWriter


def _ids(store: Store) -> list[int]:
    return sorted(store.snapshot().scan("t", ["id"]).column("id").to_pylist())


def _files(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "tables" / str(store.catalog["t"].oid)).iterdir())


def test_seal_interrupted_before_manifest(tmp_path, monkeypatch):
    store = Store.open(tmp_path, seal_rows=4, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(4)))])  # sealed normally
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_manifest", disk_full)
    store.commit([Insert("t", rows(schema, range(4, 9)))])  # durable; its seal fails (logged)
    assert _ids(store) == list(range(9))
    assert "seg-000002.arrow" in _files(store)  # written, but no manifest names it
    crash(store)
    monkeypatch.undo()
    store = Store.open(tmp_path, seal_rows=4, fsync=False)
    assert _ids(store) == list(range(9)) and store.snapshot().count("t") == 9
    # the stray file was removed, and the retried seal wrote segments 2 and 3
    assert _files(store) == ["manifest.json", "seg-000001.arrow", "seg-000002.arrow", "seg-000003.arrow"]
    store.close()


def test_crash_before_wal_truncation_replays_idempotently(tmp_path, monkeypatch):
    monkeypatch.setattr(WalWriter, "remove_before", lambda self, lsn: [])
    store = Store.open(tmp_path, seal_rows=3, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for i in range(10):
        store.commit([Insert("t", rows(schema, [i]))])
    store.commit([Delete("t", store.lookup_row_ids("t", rows(schema, [1, 8])))])
    store.checkpoint()
    store.commit([Delete("t", store.lookup_row_ids("t", rows(schema, [2])))])
    crash(store)
    store = Store.open(tmp_path, seal_rows=3, fsync=False)  # replays the whole WAL over the files
    assert _ids(store) == [0, 3, 4, 5, 6, 7, 9]
    assert store.snapshot().count("t") == 7
    store.close()


def test_drop_interrupted_before_folder_removal(tmp_path, monkeypatch):
    store = Store.open(tmp_path, seal_rows=2, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(4)))])
    folder = store.root / "tables" / str(store.catalog["t"].oid)
    monkeypatch.setattr(checkpoint_module.shutil, "rmtree", lambda *a, **k: None)
    store.commit([DropTable("t")])
    assert folder.exists()
    crash(store)
    monkeypatch.undo()
    store = Store.open(tmp_path, seal_rows=2, fsync=False)
    assert not folder.exists() and "t" not in store.catalog
    store.close()


def test_deletes_persist_in_delete_files(tmp_path):
    store = Store.open(tmp_path, seal_rows=4, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(8)))])
    store.commit([Delete("t", np.array([1, 5]))])
    store.checkpoint()
    assert _files(store) == ["manifest.json", "seg-000001.arrow", "seg-000001.del-3.arrow",
                             "seg-000002.arrow", "seg-000002.del-3.arrow"]
    store.commit([Delete("t", np.array([2]))])
    store.checkpoint()
    assert _files(store) == ["manifest.json", "seg-000001.arrow", "seg-000001.del-4.arrow",
                             "seg-000002.arrow", "seg-000002.del-3.arrow"]
    store.close()
    # With the WAL gone, everything comes from segment and delete files.
    for wal in (tmp_path / "wal").glob("*.wal"):
        assert wal.stat().st_size == 0
    store = Store.open(tmp_path, seal_rows=4, fsync=False)
    assert _ids(store) == [0, 3, 4, 6, 7]
    segs = store.snapshot().segments("t")
    assert [s.num_live for s in segs] == [2, 3] and segs[0].live.tolist() == [True, False, False, True]
    store.close()


def test_wal_size_triggers_checkpoint(tmp_path):
    store = Store.open(tmp_path, seal_rows=1000, fsync=False, wal_segment_bytes=2048,
                       checkpoint_wal_bytes=8192)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for i in range(200):
        store.commit([Insert("t", rows(schema, [i]))])
    assert len(list((tmp_path / "wal").glob("*.wal"))) <= 6
    segs = store.snapshot().segments("t")
    assert sum(s.sealed for s in segs) >= 1 and store.snapshot().count("t") == 200
    store.close()
    store = Store.open(tmp_path, seal_rows=1000, fsync=False)
    assert _ids(store) == list(range(200))
    store.close()


@pytest.mark.parametrize("seal_rows", [1, 3, 1000])
def test_large_insert_splits_into_segments(tmp_path, seal_rows):
    store = Store.open(tmp_path, seal_rows=seal_rows, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(10)))])
    segs = store.snapshot().segments("t")
    assert all(s.num_rows <= seal_rows for s in segs if s.sealed)
    assert sum(s.num_rows for s in segs) == 10
    store.close()
    store = Store.open(tmp_path, seal_rows=seal_rows, fsync=False)
    assert _ids(store) == list(range(10))
    store.close()


def test_lost_catalog_is_refused_not_wiped(tmp_path):
    store = Store.open(tmp_path, seal_rows=2, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(4)))])
    store.checkpoint()
    store.close()
    (tmp_path / "catalog.json").unlink()
    for wal in (tmp_path / "wal").glob("*.wal"):
        wal.unlink()
    with pytest.raises(CorruptionError, match="catalog.json lost"):
        Store.open(tmp_path, seal_rows=2, fsync=False)
    assert (tmp_path / "tables" / "16400" / "seg-000001.arrow").exists()


def test_background_checkpoint_seals_after_the_commit_returns(tmp_path, monkeypatch):
    """With background_checkpoints the commit that fills the growing segment returns before the seal; the
    rows are readable from the growing segment meanwhile, and a crash before the seal loses nothing."""
    import threading

    store = Store.open(tmp_path, seal_rows=4, fsync=False, background_checkpoints=True)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    release, abandon = threading.Event(), threading.Event()
    real = checkpoint_module.checkpoint_table

    def held(*args, **kwargs):
        while not release.wait(0.01):
            if abandon.is_set():
                raise RuntimeError("held checkpoint abandoned")  # logged by the checkpointer; files untouched
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "checkpoint_table", held)
    from storage import store as store_module
    monkeypatch.setattr(store_module, "checkpoint_table", held)
    store.commit([Insert("t", rows(schema, range(6)))])  # returns though the seal is held
    assert _ids(store) == list(range(6)) and store.snapshot().count("t") == 6
    folder = store.root / "tables" / str(store.catalog["t"].oid)
    assert not folder.exists() or _files(store) == []  # nothing sealed yet
    release.set()
    store.wait_checkpoints()
    assert _files(store) == ["manifest.json", "seg-000001.arrow", "seg-000002.arrow"]
    assert _ids(store) == list(range(6))
    store.close()

    # a crash with the seal not yet run (the checkpointer stays held until the wait times out): the WAL
    # has it all
    release.clear()
    store = Store.open(tmp_path, seal_rows=4, fsync=False, background_checkpoints=True)
    store.commit([Insert("t", rows(schema, range(6, 10)))])
    crash(store)
    # A killed process's checkpointer dies with it; this one lives on in the test process, so it is
    # stopped before the real checkpoint is back (or it would seal under the reopened store).
    abandon.set()
    with store._writer_lock:
        store._failed = RuntimeError("crashed")
    monkeypatch.undo()
    store = Store.open(tmp_path, seal_rows=4, fsync=False)
    assert _ids(store) == list(range(10)) and store.snapshot().count("t") == 10
    store.close()
