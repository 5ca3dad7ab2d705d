"""The primary-key index's growing part: large inserts as sorted runs, small ones in a dict, exact undo."""

from __future__ import annotations

import numpy as np
import pytest
from storage_testing import rows, table_schema

from storage import CreateTable, DuplicateKeyError, Insert, Store, pkindex


def test_large_inserts_as_runs_find_duplicates_and_undo_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(pkindex, "GROWING_RUN_ROWS", 50)
    monkeypatch.setattr(pkindex, "MAX_GROWING_RUNS", 2)
    store = Store.open(tmp_path, seal_rows=10_000, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(0, 100)))])      # a run
    store.commit([Insert("t", rows(schema, range(100, 110)))])    # the dict
    pk = store._state.pk[store.catalog["t"].oid]
    assert len(pk._growing_runs) == 1 and len(pk._growing) == 10
    # a commit whose second op fails undoes its first, a large insert already applied: its run goes, and
    # the row ids it had are handed out again to other keys without a false duplicate
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, range(200, 300))), Insert("t", rows(schema, [105]))])
    assert len(pk._growing_runs) == 1
    store.commit([Insert("t", rows(schema, range(300, 400)))])    # a second run, the same row ids
    store.commit([Insert("t", rows(schema, range(400, 500)))])    # runs are full: the dict
    assert len(pk._growing_runs) == 2 and len(pk._growing) == 110
    for dup in (5, 105, 350, 450):
        with pytest.raises(DuplicateKeyError):
            store.commit([Insert("t", rows(schema, [dup]))])
    store.commit([Insert("t", rows(schema, [250]))])  # undone before: free
    want = sorted(list(range(110)) + list(range(300, 500)) + [250])
    keys = pk.codec.encode(store.snapshot().scan("t", ["id"]))
    assert (pk.lookup(keys) >= 0).all()
    assert sorted(store.snapshot().scan("t", ["id"]).column("id").to_pylist()) == want
    assert (pk.lookup(np.array([200, 299, 1000], np.int64)) == -1).all()
    store.checkpoint()  # sealed: the growing part empties, the sealed runs answer
    assert pk._growing_runs == [] and pk._growing == {}
    with pytest.raises(DuplicateKeyError):
        store.commit([Insert("t", rows(schema, [350]))])
    store.close()
