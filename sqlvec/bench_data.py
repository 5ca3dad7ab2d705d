"""The data of ``sqlvec bench``: vectors to load, query vectors, and their exact top-k ground truth.

The synthetic workload is deterministic for a given ``--rows``, ``--dim``, ``--seed`` and ``--spread``:
Gaussian clusters (about sqrt(N) centres drawn from N(0, I), cluster sizes log-normally uneven), each point
its centre plus anisotropic Gaussian noise, whose standard deviations decay along a random orthonormal
basis (``spread * (1 + j) ** -0.3``, rescaled so the noise has total norm ``spread * sqrt(dim)``), so the
data has a lower intrinsic dimension than ``dim``, as real embeddings do. Query vectors are fresh draws
from the same distribution. At the default spread of 1.5, HNSW (m = 16, ef_construction = 64) finds
0.94 of the true top 10 at ef_search = 40 and 0.98 at 80 on 20,000 x 64, and 0.91 and 0.95 on
100,000 x 128 (checked with faiss's HNSW), so the sweep crosses the interesting recall range instead of
sitting at 1.0. A larger spread makes the clusters overlap more and the search harder.

A real embedding set can be used instead (``--dataset path.npy``: a 2-D float array, rows are vectors;
queries are its last ``--queries`` rows, held out of the loaded data, unless ``--dataset-queries`` names
another file). None is shipped: the project's machines are offline.

The vectors are sent as pgvector text with 6 significant digits; the ground truth is computed on the
values as the server parses them back (float32), with numpy: chunked matrix products for candidates, then
the exact float64 distances of the candidates decide the top k.

Every row also has a ``bucket``: an integer in 0..99, drawn uniformly from its own seeded stream, loaded
as the table's third column, so ``bucket < 1`` keeps about 1% of the rows and ``bucket < 10`` about 10%.
The ``filtered`` phase's ground truth is the exact top k among the matching rows only
(``filtered_ground_truth``). The ``range`` phase's (``range_ground_truth``) is, per query, every row
within a radius chosen so that about ``target`` rows lie inside it: halfway between the ``target``-th and
the next exact distance (float64 over the stored float32 values), so a server's float32 rounding of a
distance does not move a row across the boundary unless two distances are that close.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

METRICS: dict[str, tuple[str, str]] = {  # --metric -> (operator, operator class)
    "l2": ("<->", "vector_l2_ops"),
    "cosine": ("<=>", "vector_cosine_ops"),
    "ip": ("<#>", "vector_ip_ops"),
}

SPECTRUM_DECAY = 0.3
BUCKETS = 100  # the bucket column's values: 0..99


@dataclass
class Workload:
    """Everything a run needs, identical for every system measured."""

    vectors: np.ndarray  # (rows, dim) float32, as the servers store them
    texts: list[str]  # pgvector text form of each row
    queries: np.ndarray  # (queries, dim) float32, as the servers parse them
    query_texts: list[str]
    truth: np.ndarray  # (queries, k) int64 row ids (row id = position in ``vectors``)
    metric: str
    source: str  # "synthetic clusters ..." or the dataset path
    buckets: np.ndarray  # (rows,) int64 in 0..BUCKETS-1: the scalar column of the filtered phase
    filter_truth: dict[int, np.ndarray] = field(default_factory=dict)  # cut -> top k among bucket < cut
    range_radii: np.ndarray | None = None  # per query, the range phase's radius
    range_truth: list[np.ndarray] | None = None  # per query, the row ids within its radius

    def add_filter_truth(self, cuts: tuple[int, ...], k: int) -> None:
        """The filtered phase's ground truth for each ``bucket < cut``."""
        for cut in cuts:
            self.filter_truth[cut] = filtered_ground_truth(self.vectors, self.queries, self.metric,
                                                           self.buckets < cut, k)

    def add_range_truth(self, target: int) -> None:
        """The range phase's radii and ground truth, about ``target`` rows per query."""
        self.range_radii, self.range_truth = range_ground_truth(self.vectors, self.queries, self.metric, target)

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def describe(self) -> dict:
        return {"rows": self.rows, "dim": self.dim, "metric": self.metric, "queries": len(self.query_texts),
                "data": self.source}


def clustered(n: int, dim: int, seed: int, spread: float, n_centres: int, stream: int) -> np.ndarray:
    """``n`` points of the seeded cluster distribution; ``stream`` selects independent draws (data, queries)."""
    shape_rng = np.random.default_rng([seed, 0])  # the distribution itself: centres, basis, sizes
    centres = shape_rng.standard_normal((n_centres, dim))
    basis, _ = np.linalg.qr(shape_rng.standard_normal((dim, dim)))
    scale = (1.0 + np.arange(dim)) ** -SPECTRUM_DECAY
    scale *= spread * np.sqrt(dim) / np.linalg.norm(scale)
    weights = shape_rng.lognormal(0.0, 1.0, n_centres)
    weights /= weights.sum()
    rng = np.random.default_rng([seed, stream])
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # bounded float64 temporaries
        end = min(n, start + 65536)
        which = rng.choice(n_centres, end - start, p=weights)
        noise = rng.standard_normal((end - start, dim)) * scale
        out[start:end] = centres[which] + noise @ basis.T
    return out


def synthetic(rows: int, dim: int, n_queries: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Data and queries of the seeded clustered distribution."""
    n_centres = centres_for(rows)
    return clustered(rows, dim, seed, spread, n_centres, 1), clustered(n_queries, dim, seed, spread, n_centres, 2)


def centres_for(rows: int) -> int:
    return max(1, round(np.sqrt(max(rows, 1))))


def from_files(path: str, rows: int, n_queries: int, queries_path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Data (first ``rows`` rows) and queries from ``.npy`` files (see the module docstring)."""
    data = np.load(path, mmap_mode="r")
    if data.ndim != 2:
        raise SystemExit(f"--dataset {path}: expected a 2-D array (rows x dim), got shape {data.shape}")
    if queries_path:
        queries = np.asarray(np.load(queries_path, mmap_mode="r"), dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != data.shape[1]:
            raise SystemExit(f"--dataset-queries {queries_path}: shape {queries.shape} does not match {data.shape}")
        queries = queries[:n_queries]
        base = data
    else:
        if data.shape[0] <= n_queries:
            raise SystemExit(f"--dataset {path}: {data.shape[0]} rows, not more than --queries {n_queries}")
        queries = np.asarray(data[-n_queries:], dtype=np.float32)
        base = data[:-n_queries]
    if rows > base.shape[0]:
        print(f"note: --dataset has {base.shape[0]} rows to load, fewer than --rows {rows}", file=sys.stderr)
    return np.asarray(base[:rows], dtype=np.float32), queries


def to_text(vectors: np.ndarray) -> list[str]:
    """pgvector's text form, 6 significant digits per component."""
    fmt = "[" + ",".join(["%.6g"] * vectors.shape[1]) + "]"
    return [fmt % tuple(v) for v in vectors.tolist()]


def parse_text(texts: list[str], dim: int) -> np.ndarray:
    """The float32 values a server stores for these texts."""
    flat = np.array(",".join(t[1:-1] for t in texts).split(","), dtype=np.float64)
    return flat.astype(np.float32).reshape(len(texts), dim)


def ground_truth(base: np.ndarray, queries: np.ndarray, metric: str, k: int = 10) -> np.ndarray:
    """Row ids of the exact top ``k`` of each query (ascending distance), shape (queries, k)."""
    n, nq = base.shape[0], queries.shape[0]
    k = min(k, n)
    extra = min(n, k + 16)  # candidates per chunk from float32 products, re-scored in float64
    x, q = base, queries
    if metric == "cosine":
        x = _normalised(base)
        q = _normalised(queries)
    sq_norms = (x.astype(np.float64) ** 2).sum(1).astype(np.float32) if metric == "l2" else None
    chunk = max(1024, min(n, 16_000_000 // max(nq, 1)))
    cand_ids: list[np.ndarray] = []
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        scores = q @ x[start:end].T  # higher = closer for ip and cosine
        if sq_norms is not None:  # l2: |x|^2 - 2 q.x, lower = closer
            scores = sq_norms[start:end] - 2.0 * scores
        else:
            scores = -scores
        scores = np.nan_to_num(scores, nan=np.inf)
        take = min(extra, end - start)
        part = np.argpartition(scores, take - 1, axis=1)[:, :take] if take < end - start else \
            np.broadcast_to(np.arange(end - start), (nq, end - start))
        cand_ids.append(part + start)
    cand = np.concatenate(cand_ids, axis=1)
    xc = x[cand].astype(np.float64)  # (nq, c, dim)
    q64 = q.astype(np.float64)[:, None, :]
    if metric == "l2":
        dist = ((xc - q64) ** 2).sum(2)
    else:
        dist = -(xc * q64).sum(2)
    dist = np.nan_to_num(dist, nan=np.inf)
    order = np.lexsort((cand, dist), axis=1)[:, :k]  # ties: lower row id first
    return np.take_along_axis(cand, order, axis=1)


def _normalised(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (v / norms).astype(np.float32)  # zero vectors become NaN: no cosine distance, ranked last


def build(rows: int, dim: int, n_queries: int, seed: int, spread: float, metric: str, dataset: str | None,
          dataset_queries: str | None, k: int = 10) -> Workload:
    """The workload of one ``sqlvec bench`` run."""
    if dataset:
        data, queries = from_files(dataset, rows, n_queries, dataset_queries)
        source = dataset
    else:
        data, queries = synthetic(rows, dim, n_queries, seed, spread)
        source = f"synthetic: {centres_for(rows)} gaussian clusters, spread {spread}, seed {seed}"
    texts = to_text(data)
    query_texts = to_text(queries)
    stored = parse_text(texts, data.shape[1])
    stored_queries = parse_text(query_texts, queries.shape[1])
    truth = ground_truth(stored, stored_queries, metric, k)
    buckets = np.random.default_rng([seed, 3]).integers(0, BUCKETS, stored.shape[0])
    return Workload(stored, texts, stored_queries, query_texts, truth, metric, source, buckets)


def filtered_ground_truth(base: np.ndarray, queries: np.ndarray, metric: str, mask: np.ndarray,
                          k: int = 10) -> np.ndarray:
    """Row ids of the exact top ``k`` among the rows where ``mask`` holds, shape (queries, min(k, matches))."""
    ids = np.flatnonzero(mask)
    if ids.size == 0:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    return ids[ground_truth(base[ids], queries, metric, k)]  # ids ascend, so ties still go to the lower row id


def distances(base: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """The operator's exact distances (float64), shape (queries, rows): l2 as ``<->`` (Euclidean), cosine as
    ``<=>`` (1 - cosine similarity), ip as ``<#>`` (negative inner product). NaN (zero vectors) becomes inf."""
    x, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        sq = (x**2).sum(1)[None, :] - 2.0 * (q @ x.T) + (q**2).sum(1)[:, None]
        d = np.sqrt(np.maximum(sq, 0.0))
    elif metric == "cosine":
        with np.errstate(invalid="ignore", divide="ignore"):
            d = 1.0 - (q @ x.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(x, axis=1))
    else:
        d = -(q @ x.T)
    return np.nan_to_num(d, nan=np.inf)


def range_ground_truth(base: np.ndarray, queries: np.ndarray, metric: str, target: int = 50
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per query a radius with about ``target`` rows inside it (see the module docstring) and the row ids
    whose distance is below it. Full distance rows, computed a chunk of queries at a time."""
    n, nq = base.shape[0], queries.shape[0]
    radii = np.empty(nq, dtype=np.float64)
    inside: list[np.ndarray] = []
    chunk = max(1, 8_000_000 // max(n, 1))
    for start in range(0, nq, chunk):
        d = distances(base, queries[start:start + chunk], metric)
        if n > target:
            part = np.partition(d, (target - 1, target), axis=1)
            r = (part[:, target - 1] + part[:, target]) / 2
        else:  # every row: a radius just past the farthest one
            far = d.max(axis=1)
            r = far + np.maximum(1e-6, np.abs(far) * 1e-6)
        for j, row in enumerate(d):
            radii[start + j] = r[j]
            inside.append(np.flatnonzero(row < r[j]))
    return radii, inside
