"""Vector indexes built in the background: one file per sealed segment, loaded (not rebuilt) on reopen,
growing indexes, searching through snapshots, drops, damaged files, waiting and status.

Every wait has a timeout (an upper bound, never an expectation of speed). Builds use one OpenMP thread:
the test machines are small and shared, and OpenMP threads spinning at barriers for a descheduled peer
make multi-threaded faiss calls there slower, not faster.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from storage_testing import clustered_vectors, vector_rows, vector_schema

from storage import (
    CreateIndex,
    CreateTable,
    Delete,
    DropIndex,
    DropTable,
    IndexSchema,
    Insert,
    NoSuchIndexError,
    NoSuchTableError,
    SegmentIndex,
    Store,
    index_builds,
)
from storage.flat import VectorMatrix, topk
from storage.vector_index import ScannUnavailable, SearchParams, VectorIndex, scann_backend

WAIT = 30.0  # seconds: generous upper bound for any wait below
DIM = 16


@pytest.fixture
def vstore(open_store):
    """vstore(**kwargs) -> a Store for index tests (one build thread, fsync off)."""

    def _open(**kwargs) -> Store:
        kwargs.setdefault("index_build_threads", 1)
        return open_store(**kwargs)

    return _open


@pytest.fixture
def gate(monkeypatch):
    """Makes segment builds wait until ``gate.open.set()``; ``gate.started`` is set when one is waiting."""

    class Gate:
        open = threading.Event()
        started = threading.Event()
        calls = 0

    real = index_builds.build_segment_index

    def gated(*args, **kwargs):
        Gate.calls += 1
        Gate.started.set()
        assert Gate.open.wait(WAIT), "test left a gated build waiting"
        return real(*args, **kwargs)

    monkeypatch.setattr(index_builds, "build_segment_index", gated)
    yield Gate
    Gate.open.set()


def hnsw(name: str = "emb", metric: str = "l2", **params) -> IndexSchema:
    return IndexSchema(name, "embedding", "hnsw", metric, f"vector_{metric}_ops", tuple(params.items()))


def index_files(store: Store, table: str = "docs") -> list[str]:
    folder = store.root / "tables" / str(store.catalog[table].oid)
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("idx-"))


def fill(store: Store, n: int, *, first: int = 0, seed: int = 0, null_every: int = 0,
         batch: int = 1000) -> np.ndarray:
    vectors = clustered_vectors(n, DIM, seed=seed)
    for start in range(0, n, batch):
        store.commit([Insert("docs", vector_rows(first + start, vectors[start:start + batch],
                                                 null_every=null_every))])
    return vectors


def test_builds_a_file_per_sealed_segment(vstore):
    store = vstore(seal_rows=500)
    store.commit([CreateTable(vector_schema(dim=DIM))])
    fill(store, 1200)  # segments 1, 2 sealed; 200 rows growing
    store.commit([CreateIndex("docs", hnsw(m=8))])
    assert store.wait_for_indexes("docs", "emb", timeout=WAIT)
    oid = store.catalog["docs"].index("emb").oid
    assert index_files(store) == [f"idx-{oid}-seg-000001.vidx", f"idx-{oid}-seg-000002.vidx"]
    (status,) = store.index_status()
    assert (status.table, status.index, status.column, status.method, status.metric, status.opclass) == \
        ("docs", "emb", "embedding", "hnsw", "l2", "vector_l2_ops")
    assert status.params == {"m": 8}
    assert (status.segments, status.segments_indexed, status.rows_indexed) == (2, 2, 1000)
    assert (status.growing_rows, status.growing_rows_indexed) == (200, 0)
    assert not status.building and status.error is None and status.build_seconds > 0
    # A segment sealed later is indexed too.
    fill(store, 300, first=1200, seed=1)  # 500 growing rows: sealed as segment 3
    assert store.wait_for_indexes("docs", timeout=WAIT)
    assert len(index_files(store)) == 3 and store.index_builds == 3
    snap = store.snapshot()
    for seg in snap.segments("docs"):
        si = snap.segment_index("docs", "emb", seg)
        assert isinstance(si, SegmentIndex) and si.covered == seg.num_rows
        assert (si.method, si.metric) == ("hnsw", "l2")
    assert [s.sealed for s in snap.segments("docs")] == [True] * 3


def test_reopen_loads_index_files_and_never_rebuilds(vstore, tmp_path):
    store = vstore(seal_rows=500)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    vectors = fill(store, 1500)
    assert store.wait_for_indexes("docs", timeout=WAIT) and store.index_builds == 3
    store.close()
    folder = tmp_path / "data" / "tables" / "16400"
    stats = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("idx-*")}
    assert len(stats) == 3

    store = vstore(seal_rows=500)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    assert store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    q = vectors[7]
    for seg in snap.segments("docs"):
        si = snap.segment_index("docs", "emb", seg)
        ids, dist = si.search(q[None], 3, SearchParams(ef_search=32))
        assert ids.shape == (1, 3) and (ids >= 0).all() and np.all(np.diff(dist[0]) >= 0)
    assert snap.segment_index("docs", "emb", snap.segments("docs")[0]).search(q[None], 1)[0][0, 0] == 7
    assert store.index_builds == 0  # nothing was built again
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("idx-*")} == stats
    (status,) = store.index_status()
    assert status.segments_indexed == 3 and status.build_seconds == 0.0


def _exact_top(vectors: np.ndarray, q: np.ndarray, k: int, metric: str) -> np.ndarray:
    vm = VectorMatrix(vectors, np.ones(len(vectors), bool))
    return topk(vm, None, q, k, metric)[0]


def _search_sealed(snap, index: str, q: np.ndarray, k: int, params: SearchParams) -> np.ndarray:
    """Global top-k ids over every (sealed, indexed) segment, merged by distance."""
    ids, dists = [], []
    for seg in snap.segments("docs"):
        si = snap.segment_index("docs", index, seg)
        assert si is not None
        pos, d = si.search(q[None], k, params, seg.live)
        found = pos[0] >= 0
        ids.append(seg.data.column("id").to_numpy()[pos[0][found]])
        dists.append(d[0][found])
    ids, dists = np.concatenate(ids), np.concatenate(dists)
    return ids[np.argsort(dists, kind="stable")[:k]]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_hnsw_recall_against_exact_search(vstore, metric):
    store = vstore(seal_rows=2000)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw(metric=metric))])
    vectors = fill(store, 6000, batch=2000)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    snap = store.snapshot()
    queries = clustered_vectors(40, DIM, seed=99)
    hits = 0
    for q in queries:
        got = _search_sealed(snap, "emb", q, 10, SearchParams(ef_search=64))
        hits += len(set(got) & set(_exact_top(vectors, q, 10, metric)))
    recall = hits / (10 * len(queries))
    assert recall >= 0.9, recall


def test_ivfflat_recall_and_range_search(vstore):
    store = vstore(seal_rows=2000)
    store.commit([CreateTable(vector_schema(dim=DIM)),
                  CreateIndex("docs", IndexSchema("ivf", "embedding", "ivfflat", "l2", "vector_l2_ops",
                                                  (("lists", 16),)))])
    vectors = fill(store, 4000, batch=2000)
    assert store.wait_for_indexes("docs", "ivf", timeout=WAIT)
    snap = store.snapshot()
    seg = snap.segments("docs")[0]
    si = snap.segment_index("docs", "ivf", seg)
    assert (si.method, si.covered) == ("ivfflat", 2000)
    queries = clustered_vectors(20, DIM, seed=5)
    hits = sum(len(set(_search_sealed(snap, "ivf", q, 10, SearchParams(probes=16)))
                   & set(_exact_top(vectors, q, 10, "l2"))) for q in queries)
    assert hits / 200 >= 0.9
    (ids, dist), = si.range_search(vectors[3][None], None, 2.0, SearchParams(probes=16))
    assert 3 in ids and (dist < 2.0).all()
    exact = np.sqrt(((vectors[:2000] - vectors[3]) ** 2).sum(1))
    assert set(ids) == set(np.flatnonzero(exact < 2.0))


def test_null_vectors_are_not_indexed_and_allow_masks_hide_deleted_rows(vstore):
    store = vstore(seal_rows=1000)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    vectors = fill(store, 1000, null_every=3)
    rowids = store.lookup_row_ids("docs", vector_rows(0, vectors[:12]).select(["id"]))
    store.commit([Delete("docs", rowids[[1, 2]])])
    assert store.wait_for_indexes("docs", timeout=WAIT)
    snap = store.snapshot()
    (seg,) = snap.segments("docs")
    si = snap.segment_index("docs", "emb", seg)
    assert si.covered == seg.num_rows == 1000
    ids, _ = si.search(vectors[:12], 1000, SearchParams(ef_search=1000))
    found = ids[ids >= 0]
    assert not np.any(found % 3 == 0)  # rows 0, 3, 6, ... have NULL vectors
    assert len(np.unique(ids[0][ids[0] >= 0])) == 1000 - 334
    ids, _ = si.search(vectors[1][None], 5, SearchParams(ef_search=64), seg.live)
    assert 1 not in ids and 2 not in ids and ids[0, 0] != 1
    ids, _ = si.search(vectors[4][None], 1, SearchParams(ef_search=64), seg.live)
    assert ids[0, 0] == 4
    short = np.zeros(10, bool)
    short[4] = True
    ids, dist = si.search(vectors[500][None], 3, SearchParams(ef_search=64), short,
                          vectors_for_rerank=lambda positions: vectors[positions])
    assert ids[0].tolist() == [4, -1, -1]  # positions past the mask are not allowed
    assert dist[0, 0] == pytest.approx(np.linalg.norm(vectors[500] - vectors[4]), rel=1e-6)


def test_small_or_empty_segments_get_flat_indexes(vstore):
    store = vstore(seal_rows=100)
    store.commit([CreateTable(vector_schema(dim=DIM)),
                  CreateIndex("docs", IndexSchema("pq", "embedding", "ivfpq", "l2", "vector_l2_ops",
                                                  (("lists", 4), ("m", 4))))])
    vectors = fill(store, 100)  # ivfpq needs 256 training vectors: too few
    store.commit([Insert("docs", vector_rows(100, clustered_vectors(100, DIM), null_every=1))])  # all NULL
    assert store.wait_for_indexes("docs", timeout=WAIT)
    snap = store.snapshot()
    full, empty = snap.segments("docs")
    si = snap.segment_index("docs", "pq", full)
    assert si.method == "flat" and si.search(vectors[9][None], 1)[0][0, 0] == 9
    si = snap.segment_index("docs", "pq", empty)
    assert si.covered == 100 and si.search(vectors[9][None], 2)[0].tolist() == [[-1, -1]]
    assert store.index_status()[0].error is None


@pytest.mark.parametrize("method", ["hnsw", "ivfflat"])
def test_growing_index_starts_at_threshold_and_follows_appends(vstore, method):
    store = vstore(seal_rows=100_000, growing_index_rows=1000)
    params = (("lists", 8),) if method == "ivfflat" else ()
    store.commit([CreateTable(vector_schema(dim=DIM)),
                  CreateIndex("docs", IndexSchema("emb", "embedding", method, "l2", "vector_l2_ops", params))])
    vectors = fill(store, 600, batch=300)
    assert store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    assert snap.segment_index("docs", "emb", snap.segments("docs")[0]) is None
    assert store.index_status()[0].growing_rows_indexed == 0

    vectors = np.vstack([vectors, fill(store, 900, first=600, seed=1, batch=300)])
    assert store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    (seg,) = snap.segments("docs")
    si = snap.segment_index("docs", "emb", seg)
    assert si is not None and si.covered == seg.num_rows == 1500
    (status,) = store.index_status()
    assert (status.growing_rows, status.growing_rows_indexed, status.segments) == (1500, 1500, 0)
    params_ = SearchParams(ef_search=64, probes=8)
    ids, _ = si.search(vectors[[10, 1400]], 1, params_)
    assert ids[:, 0].tolist() == [10, 1400]

    more = fill(store, 700, first=1500, seed=2, batch=350)
    # An older snapshot keeps its own extent even after the index grew past it.
    assert store.wait_for_index_builder(timeout=WAIT)
    ids, _ = si.search(more[:5], 3, params_)
    assert (ids < 1500).all()
    ids, _ = si.search(more[:5], 3, params_, np.ones(5000, bool))
    assert (ids < 1500).all()
    snap = store.snapshot()
    (seg,) = snap.segments("docs")
    si2 = snap.segment_index("docs", "emb", seg)
    assert si2.covered == 2200
    ids, _ = si2.search(more[[0, 699]], 1, params_)
    assert ids[:, 0].tolist() == [1500, 2199]


def test_growing_index_is_dropped_when_the_segment_is_sealed(vstore):
    store = vstore(seal_rows=100_000, growing_index_rows=200)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    fill(store, 300)
    assert store.wait_for_index_builder(timeout=WAIT)
    old = store.snapshot()
    old_growing = old.segments("docs")[0]
    assert old.segment_index("docs", "emb", old_growing).covered == 300
    store.checkpoint()
    assert store.wait_for_indexes("docs", timeout=WAIT) and store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    (seg,) = snap.segments("docs")
    assert seg.sealed and snap.segment_index("docs", "emb", seg).covered == 300
    assert old.segment_index("docs", "emb", old_growing) is None  # discarded, so searched exactly
    (status,) = store.index_status()
    assert (status.growing_rows, status.growing_rows_indexed, status.segments_indexed) == (0, 0, 1)


def test_concurrent_searches_while_the_builder_adds(vstore):
    store = vstore(seal_rows=100_000, growing_index_rows=300)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw(m=8))])
    fill(store, 400)
    assert store.wait_for_index_builder(timeout=WAIT)
    queries = clustered_vectors(4, DIM, seed=3)
    stop = threading.Event()
    errors: list[BaseException] = []
    searched = [0] * 3

    def searcher(t: int) -> None:
        try:
            while searched[t] < 20 or not stop.is_set():
                snap = store.snapshot()
                seg = snap.segments("docs")[-1]
                si = snap.segment_index("docs", "emb", seg)
                ids, dist = si.search(queries, 10, SearchParams(ef_search=32), seg.live if t else None)
                # Rows the index gained after this snapshot are filtered out inside the graph walk, which
                # may then find fewer than k: padded with -1 / inf, never a row past ``covered``.
                found = ids >= 0
                assert (ids[found] < si.covered).all() and np.isinf(dist[~found]).all()
                assert found[:, 0].all() and np.all(dist[:, 1:] >= dist[:, :-1]), (ids, dist)
                for ids_, d in si.range_search(queries[:1], None, 3.0, SearchParams(ef_search=32)):
                    assert (ids_ < si.covered).all() and (d < 3.0).all()
                searched[t] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=searcher, args=(t,), daemon=True) for t in range(3)]
    for th in threads:
        th.start()
    fill(store, 3000, first=400, seed=4, batch=150)
    assert store.wait_for_index_builder(timeout=WAIT)
    stop.set()
    for th in threads:
        th.join(WAIT)
        assert not th.is_alive()
    assert not errors, errors[0]
    assert min(searched) >= 20
    snap = store.snapshot()
    assert snap.segment_index("docs", "emb", snap.segments("docs")[0]).covered == 3400


def test_drop_index_and_drop_table_remove_files(vstore, tmp_path):
    store = vstore(seal_rows=300)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw("a")),
                  CreateIndex("docs", hnsw("b", metric="cosine"))])
    fill(store, 600)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    a, b = (store.catalog["docs"].index(n).oid for n in "ab")
    assert len(index_files(store)) == 4
    before = store.snapshot()
    seg = before.segments("docs")[0]
    held = before.segment_index("docs", "a", seg)
    store.commit([DropIndex("a")])
    assert index_files(store) == [f"idx-{b}-seg-000001.vidx", f"idx-{b}-seg-000002.vidx"]
    assert held.search(clustered_vectors(1, DIM), 1)[0][0, 0] >= 0  # an index already handed out stays usable
    assert store.snapshot().segment_index("docs", "a", seg) is None
    assert [s.index for s in store.index_status()] == ["b"]
    folder = tmp_path / "data" / "tables" / str(store.catalog["docs"].oid)
    store.commit([DropTable("docs")])
    assert not folder.exists() and store.index_status() == []
    store.close()
    store = vstore(seal_rows=300)
    assert store.catalog == {}


@pytest.mark.parametrize("damage", ["truncated", "garbled trailer", "scann missing"])
def test_unloadable_index_file_is_removed_and_rebuilt(vstore, tmp_path, caplog, monkeypatch, damage):
    store = vstore(seal_rows=500)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    vectors = fill(store, 1000)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    files = index_files(store)
    store.close()
    folder = tmp_path / "data" / "tables" / "16400"
    damaged = folder / files[1]
    raw = damaged.read_bytes()
    if damage == "truncated":
        damaged.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbled trailer":
        damaged.write_bytes(raw[:-20] + b"\xff" * 20)
    else:  # written by the scann package, which this process lacks
        real_load = VectorIndex.load.__func__
        refused = []

        def load(cls, path, mmap=True):
            if Path(path) == damaged and not refused:
                refused.append(path)
                raise ScannUnavailable("the scann package is not installed")
            return real_load(cls, path, mmap)

        monkeypatch.setattr(VectorIndex, "load", classmethod(load))

    store = vstore(seal_rows=500)
    assert store.wait_for_index_builder(timeout=WAIT) and store.index_builds == 0
    snap = store.snapshot()
    seg1, seg2 = snap.segments("docs")
    assert snap.segment_index("docs", "emb", seg1) is not None
    assert snap.segment_index("docs", "emb", seg2) is None  # damaged: removed, queued for a rebuild
    assert "removing it to rebuild it" in caplog.text
    assert store.wait_for_indexes("docs", timeout=WAIT)
    si = snap.segment_index("docs", "emb", seg2)
    assert si is not None and si.search(vectors[600][None], 1)[0][0, 0] == 100
    assert store.index_builds == 1 and index_files(store) == files


def test_growing_ivfflat_trains_on_the_newest_sealed_segment(vstore):
    store = vstore(seal_rows=600, growing_index_rows=100)
    store.commit([CreateTable(vector_schema(dim=DIM)),
                  CreateIndex("docs", IndexSchema("ivf", "embedding", "ivfflat", "l2", "vector_l2_ops",
                                                  (("lists", 300),)))])
    fill(store, 600)
    vectors = fill(store, 150, first=600, seed=8)
    assert store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    sealed, growing = snap.segments("docs")
    si = snap.segment_index("docs", "ivf", growing)
    assert (si.method, si.metric, si.covered) == ("ivfflat", "l2", 150)
    # 300 lists: trained on the sealed segment's 600 vectors (the 150 growing ones would cap it at 150)
    assert si._index._index.nlist == 300
    ids, _ = si.search(vectors[[0, 77, 149]], 1, SearchParams(probes=300))
    assert ids[:, 0].tolist() == [0, 77, 149]
    assert snap.segment_index("docs", "ivf", sealed).covered == 600


def test_scann_method_builds_and_searches(vstore):
    store = vstore(seal_rows=2000)
    store.commit([CreateTable(vector_schema(dim=DIM)),
                  CreateIndex("docs", IndexSchema("sc", "embedding", "scann", "l2", "vector_l2_ops",
                                                  (("leaves", 8),)))])
    vectors = fill(store, 2000)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    assert store.index_status()[0].error is None
    snap = store.snapshot()
    (seg,) = snap.segments("docs")
    si = snap.segment_index("docs", "sc", seg)
    assert si.method == "scann" and si.covered == 2000, scann_backend()
    queries = vectors[:20]
    ids, _ = si.search(queries, 10, SearchParams(), vectors_for_rerank=lambda p: vectors[p])
    hits = sum(len(set(ids[i]) & set(_exact_top(vectors, q, 10, "l2"))) for i, q in enumerate(queries))
    assert hits / 200 >= 0.9


def test_a_segment_of_another_table_has_no_index_here(vstore):
    store = vstore(seal_rows=100)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateTable(vector_schema("other", dim=DIM)),
                  CreateIndex("docs", hnsw())])
    fill(store, 100)
    store.commit([Insert("other", vector_rows(0, clustered_vectors(100, DIM)))])
    assert store.wait_for_indexes("docs", timeout=WAIT)
    snap = store.snapshot()
    assert snap.segment_index("docs", "emb", snap.segments("docs")[0]) is not None
    assert snap.segment_index("docs", "emb", snap.segments("other")[0]) is None


def test_wait_for_indexes_times_out_while_a_build_is_slow(vstore, gate):
    store = vstore(seal_rows=200)
    store.commit([CreateTable(vector_schema(dim=DIM))])
    fill(store, 400)
    store.commit([CreateIndex("docs", hnsw())])
    assert gate.started.wait(WAIT)
    assert not store.wait_for_indexes("docs", "emb", timeout=0.05)
    (status,) = store.index_status()
    assert status.building and status.segments_indexed == 0
    gate.open.set()
    assert store.wait_for_indexes("docs", "emb", timeout=WAIT)
    (status,) = store.index_status()
    assert not status.building and status.segments_indexed == 2


def test_drop_during_a_build_publishes_nothing_and_wakes_waiters(vstore, gate):
    store = vstore(seal_rows=200)
    store.commit([CreateTable(vector_schema(dim=DIM))])
    fill(store, 400)
    store.commit([CreateIndex("docs", hnsw())])
    assert gate.started.wait(WAIT)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait_for_indexes("docs", "emb", timeout=WAIT)))
    waiter.start()
    store.commit([DropIndex("emb")])
    waiter.join(WAIT)
    assert result == [True]  # returned because the index is gone, while its build still waits
    gate.open.set()
    assert store.wait_for_index_builder(timeout=WAIT)
    assert index_files(store) == [] and gate.calls == 1
    folder = store.root / "tables" / "16400"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_failed_build_is_recorded_and_not_retried(vstore, monkeypatch, caplog):
    calls: list[int] = []

    def broken(index, dim, data, *, seed, should_stop):
        calls.append(seed)
        raise RuntimeError("out of disk, say")

    monkeypatch.setattr(index_builds, "build_segment_index", broken)
    store = vstore(seal_rows=200)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    fill(store, 400)
    assert store.wait_for_indexes("docs", timeout=WAIT)  # failed counts as done
    assert store.wait_for_index_builder(timeout=WAIT)
    (status,) = store.index_status()
    assert status.error == "RuntimeError: out of disk, say" and status.segments_indexed == 0
    assert "out of disk" in caplog.text
    fill(store, 200, first=400)  # a new segment is tried once; the failed ones are not tried again
    assert store.wait_for_indexes("docs", timeout=WAIT) and store.wait_for_index_builder(timeout=WAIT)
    assert sorted(calls) == [1, 2, 3] and index_files(store) == []


def test_stray_index_files_are_removed_at_open(vstore, tmp_path):
    store = vstore(seal_rows=500)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    fill(store, 500)
    assert store.wait_for_indexes("docs", timeout=WAIT)
    oid = store.catalog["docs"].index("emb").oid
    store.close()
    folder = tmp_path / "data" / "tables" / "16400"
    strays = [f"idx-{oid + 50}-seg-000001.vidx", f"idx-{oid}-seg-000007.vidx",
              f"idx-{oid}-seg-000001.vidx.0123abcd.tmp", f"idx-{oid}-seg-000001.vidx.0123abcd.tmp.tmp"]
    for name in strays:
        (folder / name).write_bytes(b"junk")
    store = vstore(seal_rows=500, build_indexes=False)
    assert sorted(p.name for p in folder.iterdir()) == \
        [f"idx-{oid}-seg-000001.vidx", "manifest.json", "seg-000001.arrow"]
    snap = store.snapshot()
    assert snap.segment_index("docs", "emb", snap.segments("docs")[0]) is not None


def test_without_builds_nothing_is_built_and_waits_return_false(vstore):
    store = vstore(seal_rows=100, build_indexes=False, growing_index_rows=10)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    fill(store, 250)
    assert not store.wait_for_indexes("docs", timeout=WAIT)  # at once: nothing will build them
    assert not store.wait_for_index_builder(timeout=WAIT)
    snap = store.snapshot()
    assert all(snap.segment_index("docs", "emb", s) is None for s in snap.segments("docs"))
    (status,) = store.index_status()
    assert (status.segments, status.segments_indexed, status.growing_rows_indexed) == (3, 0, 0)
    assert index_files(store) == []


def test_lookups_of_unknown_names(vstore):
    store = vstore(seal_rows=100)
    store.commit([CreateTable(vector_schema(dim=DIM))])
    fill(store, 100)
    assert store.wait_for_indexes("docs", timeout=WAIT)  # no indexes: nothing to wait for
    with pytest.raises(NoSuchTableError):
        store.wait_for_indexes("nope")
    with pytest.raises(NoSuchIndexError):
        store.wait_for_indexes("docs", "nope")
    snap = store.snapshot()
    seg = snap.segments("docs")[0]
    assert snap.segment_index("docs", "nope", seg) is None
    with pytest.raises(NoSuchTableError):
        snap.segment_index("nope", "emb", seg)


def test_close_stops_the_builder(vstore, gate, tmp_path):
    store = vstore(seal_rows=200)
    store.commit([CreateTable(vector_schema(dim=DIM)), CreateIndex("docs", hnsw())])
    fill(store, 400)
    assert gate.started.wait(WAIT)
    closer = threading.Thread(target=store.close)
    closer.start()
    gate.open.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    folder: Path = tmp_path / "data" / "tables" / "16400"
    # The build that was running published nothing (the store was closing); reopening builds both.
    assert not [p for p in folder.iterdir() if p.name.startswith("idx-")]
    store = vstore(seal_rows=200)
    assert store.wait_for_indexes("docs", timeout=WAIT) and store.index_builds == 2
