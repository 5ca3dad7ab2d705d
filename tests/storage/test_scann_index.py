"""storage.vector_index's ``scann`` method on both backends (the scann package and faiss fast-scan IVF).

Clustered random data (5,000 x 32, fixed seed), as test_vector_index.py. The scann-package cases are
skipped where the package cannot be imported (it has no Arm64 wheels).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import faiss
import numpy as np
import pytest
from storage_testing import ROOT  # noqa: F401  (puts the repository on sys.path)

from storage import vector_index
from storage.errors import CorruptionError
from storage.flat import exact_distances, topk
from storage.vector_index import (
    SCANN_BACKEND_ENV,
    SUPPORTED_METRICS,
    ScannFaissIndex,
    ScannPackageIndex,
    ScannParams,
    ScannUnavailable,
    SearchParams,
    VectorIndex,
    create_index,
    scann_available,
    scann_backend,
)

DIM, N, NQ, K = 32, 5000, 50, 10
METRICS = ("l2", "ip", "cosine")
BACKENDS = [
    "faiss",
    pytest.param("scann", marks=pytest.mark.skipif(not scann_available(), reason="scann is not importable")),
]
CLASS = {"faiss": ScannFaissIndex, "scann": ScannPackageIndex}
INDEX_PATH = SearchParams(exact_below=0)  # defaults, never bypassing the index


# the same clustered data and re-rank callback as the other vector-index tests
from test_vector_index import VM, Q, X, _data, fetch  # noqa: E402, F401


@contextlib.contextmanager
def backend_env(backend: str):
    old = os.environ.get(SCANN_BACKEND_ENV)
    os.environ[SCANN_BACKEND_ENV] = backend
    try:
        yield
    finally:
        if old is None:
            del os.environ[SCANN_BACKEND_ENV]
        else:
            os.environ[SCANN_BACKEND_ENV] = old


def new_index(backend: str, metric: str = "l2", params: ScannParams | None = None,
              training: np.ndarray | None = None) -> VectorIndex:
    with backend_env(backend):
        index = create_index("scann", metric, DIM, params, training)
    assert type(index) is CLASS[backend]
    return index


@cache
def built(backend: str, metric: str) -> VectorIndex:
    index = new_index(backend, metric, ScannParams(), X)
    index.add(X, np.arange(N))
    return index


def exact_topk(metric: str, allow: np.ndarray | None = None, k: int = K) -> list[np.ndarray]:
    return [topk(VM, allow, Q[i], k, metric)[0] for i in range(NQ)]


def recall(got: np.ndarray, exact: list[np.ndarray]) -> float:
    return float(np.mean([len(set(e) & set(g[g >= 0])) / len(e) for g, e in zip(got, exact) if len(e)]))


def mask(selectivity: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random(N) < selectivity


def test_metrics_and_backend_choice(monkeypatch):
    assert SUPPORTED_METRICS["scann"] == METRICS
    monkeypatch.setenv(SCANN_BACKEND_ENV, "faiss")
    assert scann_backend() == "faiss"
    monkeypatch.setenv(SCANN_BACKEND_ENV, "annoy")
    with pytest.raises(ValueError, match="must be 'faiss' or 'scann'"):
        scann_backend()
    monkeypatch.delenv(SCANN_BACKEND_ENV)
    assert scann_backend() == ("scann" if scann_available() else "faiss")
    monkeypatch.setattr(vector_index, "_scann_module", lambda: None)  # as on Arm64
    assert scann_backend() == "faiss"
    assert type(create_index("scann", "l2", DIM)) is ScannFaissIndex
    monkeypatch.setenv(SCANN_BACKEND_ENV, "scann")
    with pytest.raises(ValueError, match="scann package is not importable"):
        create_index("scann", "l2", DIM)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_recall_and_exact_distances(backend, metric):
    index = built(backend, metric)
    assert (index.ntotal, index.metric, index.dim, index.method) == (N, metric, DIM, "scann")
    ids, dist = index.search(Q, K, INDEX_PATH, vectors_for_rerank=fetch)
    assert ids.shape == dist.shape == (NQ, K) and ids.dtype == np.int64 and dist.dtype == np.float64
    assert recall(ids, exact_topk(metric)) >= 0.9
    for i in range(NQ):  # re-scored: exact pgvector distances, nearest first
        np.testing.assert_allclose(dist[i], exact_distances(X[ids[i]], Q[i], metric), rtol=1e-5)
        assert (np.diff(dist[i]) >= 0).all()
    # Shallow settings find fewer; every leaf and a deep reorder find (nearly) all.
    shallow, _ = index.search(Q, K, SearchParams(leaves_to_search=1, reorder=K, exact_below=0),
                              vectors_for_rerank=fetch)
    deep, _ = index.search(Q, K, SearchParams(leaves_to_search=10_000, reorder=500, exact_below=0),
                           vectors_for_rerank=fetch)
    assert recall(shallow, exact_topk(metric)) < recall(deep, exact_topk(metric))
    assert recall(deep, exact_topk(metric)) >= 0.99


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_code_distances_without_rerank(backend, metric):
    """Without exact vectors the codes' distances come back: approximate, in pgvector's sign and scale."""
    index = built(backend, metric)
    ids, dist = index.search(Q, K, INDEX_PATH)
    assert (ids >= 0).all() and np.isfinite(dist).all()
    exact = np.stack([exact_distances(X[ids[i]], Q[i], metric) for i in range(NQ)])
    rel = np.median(np.abs(dist - exact)) / np.median(np.abs(exact))
    assert rel < 0.8, rel
    top50 = exact_topk(metric, k=50)
    # 4 bits per 2 dimensions are coarse: the codes' top 10 are not the true top 10, but mostly in the top 50
    assert np.mean([len(set(ids[i]) & set(top50[i])) / K for i in range(NQ)]) > 0.6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("selectivity", [0.01, 0.1, 0.5])
def test_filtered_search(backend, selectivity):
    index = built(backend, "l2")
    allow = mask(selectivity)
    exact = exact_topk("l2", allow)
    for kwargs in ({"vectors_for_rerank": fetch}, {}):  # a disallowed id never comes back
        ids, _ = index.search(Q, K, SearchParams(leaves_to_search=16, exact_below=0), allow, **kwargs)
        assert allow[ids[ids >= 0]].all()
        if kwargs and selectivity >= 0.1:
            assert recall(ids, exact) >= 0.9
    # Default settings: selective filters go exact (exact_below), so the answer is exact.
    ids, _ = index.search(Q, K, SearchParams(), allow, vectors_for_rerank=fetch)
    assert all((ids[i] == exact[i]).all() for i in range(NQ))
    short = np.zeros(100, bool)
    short[::2] = True  # ids >= 100 are not allowed
    ids, _ = index.search(Q[:5], K, INDEX_PATH, short)
    assert ((ids == -1) | ((ids < 100) & (ids % 2 == 0))).all()
    ids, dist = index.search(Q[:5], K, INDEX_PATH, np.zeros(N, bool))
    assert (ids == -1).all() and np.isinf(dist).all()


@pytest.mark.skipif(not scann_available(), reason="scann is not importable")
def test_scann_package_filter_widens_past_the_leaves_searched():
    """ScaNN has no allow-list: with one leaf searched and few allowed rows in it, the fetch and then the
    leaves widen until k allowed rows are found (faiss's IVF scan stops at the lists probed)."""
    index = built("scann", "l2")
    allow = mask(0.2)
    sp = SearchParams(leaves_to_search=1, reorder=50, exact_below=0)
    ids, _ = index.search(Q, 50, sp, allow, vectors_for_rerank=fetch)
    assert (ids >= 0).all() and allow[ids].all()
    assert recall(ids, exact_topk("l2", allow, k=50)) >= 0.8
    few = np.zeros(N, bool)
    few[np.arange(0, N, 500)] = True  # 10 allowed rows anywhere: all of them come back
    ids, _ = index.search(Q, K, sp, few)
    assert all(set(row) == set(np.flatnonzero(few)) for row in ids)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_range_search(backend, metric):
    index = built(backend, metric)
    found = total = found_all = 0
    every_leaf = SearchParams(leaves_to_search=10_000, exact_below=0)
    for i in range(0, NQ, 5):  # a band of each query's own 5th..60th neighbours
        d_all = exact_distances(X, Q[i], metric)
        lower, upper = (float(v) for v in np.sort(d_all)[[4, 59]])
        truth = set(np.flatnonzero((d_all >= lower) & (d_all < upper)))
        for sp in (INDEX_PATH, every_leaf):
            [(ids, d)] = index.range_search(Q[i], lower, upper, sp, vectors_for_rerank=fetch)
            assert ids.dtype == np.int64 and d.dtype == np.float64
            assert ((d >= lower) & (d < upper)).all() and (np.diff(d) >= 0).all()
            np.testing.assert_allclose(d, exact_distances(X[ids], Q[i], metric), rtol=1e-5)
            if sp is every_leaf:
                found_all += len(set(ids) & truth)
            else:
                found += len(set(ids) & truth)
        total += len(truth)
    assert total >= 10 * 55
    assert found / total >= 0.9 and found_all / total >= 0.99, (found / total, found_all / total)
    allow = mask(0.5)
    got = index.range_search(Q[:5], None, upper, INDEX_PATH, allow, vectors_for_rerank=fetch)
    assert all(allow[ids].all() and (d < upper).all() for ids, d in got)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip_then_grow(tmp_path, backend, mmap):
    index = built(backend, "cosine")
    path = tmp_path / "scann.index"
    index.save(path)
    loaded = VectorIndex.load(path, mmap=mmap)
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: faiss maps the codes from the file; ScaNN reads its assets into memory
        assert (str(path) in maps.read_text()) == (mmap and backend == "faiss")
    assert type(loaded) is type(index)
    assert (loaded.method, loaded.metric, loaded.dim, loaded.params, loaded.ntotal) == \
        ("scann", "cosine", DIM, ScannParams(), N)
    for sp in (INDEX_PATH, SearchParams(leaves_to_search=3, reorder=30, exact_below=0)):
        for kwargs in ({}, {"vectors_for_rerank": fetch}):
            a = index.search(Q, K, sp, **kwargs)
            b = loaded.search(Q, K, sp, **kwargs)
            assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert (loaded.ids() == np.arange(N)).all()
    # The file still starts with a faiss index: the real one, or an empty placeholder before ScaNN's assets.
    assert faiss.read_index(str(path)).ntotal == (N if backend == "faiss" else 0)
    new, _ = _data(99, 100, 0)
    loaded.add(new, np.arange(N, N + 100))
    assert loaded.ntotal == N + 100
    allx = np.concatenate([X, new])
    ids, _ = loaded.search(new, 1, INDEX_PATH, vectors_for_rerank=lambda i: allx[i])
    assert (ids[:, 0] == np.arange(N, N + 100)).mean() >= 0.95
    assert index.ntotal == N  # the original is untouched
    loaded.save(path)  # over the file it was loaded (maybe mapped) from
    again = VectorIndex.load(path)
    assert again.ntotal == N + 100 and (again.ids() == np.arange(N + 100)).all()


@pytest.mark.skipif(not scann_available(), reason="scann is not importable")
def test_scann_file_without_the_package(tmp_path, monkeypatch):
    path = tmp_path / "scann.index"
    built("scann", "l2").save(path)
    monkeypatch.setattr(vector_index, "_scann_module", lambda: None)
    with pytest.raises(ScannUnavailable, match="built by the scann package, which is not installed") as e:
        VectorIndex.load(path)
    assert isinstance(e.value, ValueError) and "SQLVEC_SCANN_BACKEND=faiss" in str(e.value)


@pytest.mark.skipif(not scann_available(), reason="scann is not importable")
def test_scann_file_with_damaged_assets(tmp_path):
    path = tmp_path / "scann.index"
    built("scann", "l2").save(path)
    data = bytearray(path.read_bytes())
    start = data.find(b"scann_assets.pbtxt")  # the name in the assets list's tar header
    data[start:start + 18] = b"../../../etc/passw"  # a bad checksum, and a name outside the directory
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="cannot restore the scann searcher"):
        VectorIndex.load(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_growing_lazy_build_and_tiny(tmp_path, backend):
    index = new_index(backend, "l2", ScannParams(leaves=20))  # faiss: trained by the first add
    ids, dist = index.search(Q[:3], K, SearchParams())
    assert (ids == -1).all() and np.isinf(dist).all()
    assert all(len(r[0]) == 0 for r in index.range_search(Q[:3], None, 100.0))
    index.add(X[:4000], np.arange(4000))
    index.search(Q[:1], K)  # the scann package backend builds here
    index.add(X[4000:], np.arange(4000, N))  # ... and appends these at the next search
    assert index.ntotal == N and (index.ids() == np.arange(N)).all()
    ids, _ = index.search(X[4000:4100], 1, INDEX_PATH, vectors_for_rerank=fetch)
    assert (ids[:, 0] == np.arange(4000, 4100)).mean() >= 0.95
    # Fewer rows than 4-bit codes have centres (16): still answers, every row found.
    tiny = new_index(backend, "ip")
    tiny.add(X[:10], np.arange(10) * 7)
    every_leaf = SearchParams(leaves_to_search=10_000, exact_below=0)
    ids, dist = tiny.search(Q[:2], 12, every_leaf, vectors_for_rerank=lambda i: X[i // 7])
    assert (ids[:, 10:] == -1).all() and all(set(r[:10]) == set(np.arange(10) * 7) for r in ids)
    np.testing.assert_allclose(dist[0, :10], exact_distances(X[ids[0, :10] // 7], Q[0], "ip"), rtol=1e-5)
    tiny.save(tmp_path / "tiny.index")
    assert (VectorIndex.load(tmp_path / "tiny.index").search(Q[:2], 12, every_leaf)[0] ==
            tiny.search(Q[:2], 12, every_leaf)[0]).all()
    empty = new_index(backend, "cosine")
    empty.save(tmp_path / "empty.index")
    assert VectorIndex.load(tmp_path / "empty.index").ntotal == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims_per_block", [1, 4])
def test_dims_per_block(backend, dims_per_block):
    index = new_index(backend, "cosine", ScannParams(leaves=30, dims_per_block=dims_per_block))
    index.add(X, np.arange(N))
    ids, _ = index.search(Q, K, SearchParams(reorder=200, exact_below=0), vectors_for_rerank=fetch)
    assert recall(ids, exact_topk("cosine")) >= 0.9  # 4 dimensions per 4 bits: a deeper reorder


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_searches_share_one_lazy_build(backend):
    index = new_index(backend, "ip", ScannParams(leaves=30), X)
    index.add(X, np.arange(N))
    builds = []
    if backend == "scann":
        build = index._build
        index._build = lambda x, ids: (builds.append(len(x)), build(x, ids))
    sp = SearchParams(reorder=40, exact_below=0)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: index.search(Q[i:i + 1], K, sp, vectors_for_rerank=fetch), range(NQ)))
    assert builds == ([N] if backend == "scann" else [])
    ids, dist = index.search(Q, K, sp, vectors_for_rerank=fetch)
    assert all((r[0][0] == ids[i]).all() and (r[1][0] == dist[i]).all() for i, r in enumerate(results))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_params(backend):
    with backend_env(backend):
        with pytest.raises(ValueError, match="scann does not support the l1 metric"):
            create_index("scann", "l1", DIM)
        with pytest.raises(ValueError, match="leaves must be >= 0"):
            create_index("scann", "l2", DIM, ScannParams(leaves=-1))
        with pytest.raises(ValueError, match=r"dims_per_block=5 must divide the dimension 32 \(e.g. 1, 2, 4, 8, 16"):
            create_index("scann", "l2", DIM, ScannParams(dims_per_block=5))
        with pytest.raises(ValueError, match="dims_per_block=0 must divide"):
            create_index("scann", "l2", DIM, ScannParams(dims_per_block=0))
        with pytest.raises(ValueError, match="anisotropic_threshold must be >= 0"):
            create_index("scann", "ip", DIM, ScannParams(anisotropic_threshold=-0.1))
        with pytest.raises(ValueError, match="training_sample must be >= 1"):
            create_index("scann", "ip", DIM, ScannParams(training_sample=0))
        with pytest.raises(TypeError, match="ScannParams"):
            create_index("scann", "l2", DIM, vector_index.IvfFlatParams())
    index = built(backend, "l2")
    with pytest.raises(ValueError, match="leaves_to_search must be >= 0"):
        index.search(Q[:1], K, SearchParams(leaves_to_search=-1, exact_below=0))
    with pytest.raises(ValueError, match="reorder must be >= 0"):
        index.search(Q[:1], K, SearchParams(reorder=-1, exact_below=0), vectors_for_rerank=fetch)
    with pytest.raises(ValueError, match="expected 32 dimensions, not 31"):
        index.search(Q[:, :31], K)
