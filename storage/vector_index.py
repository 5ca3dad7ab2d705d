"""Vector indexes over one segment (faiss), behind one search contract.

``create_index(method, metric, dim, params, training_vectors)`` builds one of:

========  =====================================  ==========================  =====================
method    faiss index                            metrics                     distances returned
========  =====================================  ==========================  =====================
flat      IndexIDMap(IndexFlat)                  l2, ip, cosine, l1          exact (float32 BLAS)
hnsw      IndexIDMap(IndexHNSWFlat)              l2, ip, cosine, l1          exact for what it finds
ivfflat   IndexIVFFlat                           l2, ip, cosine              exact for what it finds
ivfpq     IndexIVFPQ (+ exact re-rank)           l2, ip, cosine              approximate codes
ivfsq8    IndexIVFScalarQuantizer SQ8 (+ rerank) l2, ip, cosine              approximate codes
========  =====================================  ==========================  =====================

Every index answers ``search(queries, k, params, allow)`` and ``range_search(queries, lower, upper,
params, allow)`` with the caller's int64 ids and pgvector distances (see storage/flat.py): l2 ``<->``
(faiss gives squared L2: we take the root), ip ``<#>`` (faiss gives the inner product: we negate it),
cosine ``<=>`` (vectors and queries are normalised, faiss gives the inner product: we return 1 - it),
l1 ``<+>``. When the caller passes ``vectors_for_rerank`` (id -> exact float32 vectors), candidates are
re-scored with ``storage.flat.exact_distances`` so the returned distances and order are exact (ties:
lower id first, NaN last, as ``storage.flat.topk``); the quantised indexes then fetch ``k * rerank``
candidates first so that recall does not collapse with the codes' error.

``allow`` is a bool mask indexed by id (ids at or beyond its length are not allowed). It becomes a faiss
``IDSelectorBitmap`` applied inside the index scan, so a disallowed id is never returned. When it admits
few rows (``SearchParams.exact_below``) and exact vectors are supplied, the allowed rows are searched
exactly instead, since graph and list scans lose recall under selective filters.

Range search: flat, hnsw and ivfflat use faiss's range_search with the bound widened by float32 rounding
and then filtered on the pgvector distance (exact when re-scored); ivfpq and ivfsq8 run re-ranked k-NN
with k growing until the k-th distance reaches ``upper``.

Threads: faiss parallelises over queries (and over lists/graph construction) with OpenMP on every core.
Concurrent ``search``/``range_search`` calls are safe; ``add`` must not run concurrently with anything
else on the same index.

On-disk format (``save``/``load``), one file, written as ``<name>.tmp``, fsynced, renamed::

    offset 0          faiss index, faiss's own serialisation (faiss.write_index); readable by
                      faiss.read_index on its own, which ignores the trailer below
    offset F          metadata: UTF-8 JSON object {"format": 1, "method", "metric", "dim",
                      "params": {...dataclass fields...}, "max_sq_norm": float}
    offset size - 12  uint32 little-endian: byte length of the JSON
    offset size - 8   8 bytes magic b"SQLVIDX1"

``load(path, mmap=True)`` maps the vector codes in place (faiss IO_FLAG_MMAP_IFC) instead of copying them
into memory; the HNSW graph and IVF centroids are still read into memory. A mapped index cannot grow in
place (faiss aborts the process on a resize of a mapped array), so the first ``add`` after a mapped load
re-reads the file into memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

from .durable import fsync_dir, fsync_file
from .errors import CorruptionError
from .flat import METRICS, DimensionMismatch, VectorMatrix, exact_distances, topk

METHODS = ("flat", "hnsw", "ivfflat", "ivfpq", "ivfsq8")

_MAGIC = b"SQLVIDX1"
_TRAILER = struct.Struct("<I8s")
assert _TRAILER.size == 12
_FORMAT = 1

# Maps flat codes (IndexFlat, HNSW storage) and inverted lists in place; where this faiss lacks the flag,
# load reads everything into memory.
_MMAP_FLAG = getattr(faiss, "IO_FLAG_MMAP_IFC", 0)

_FAISS_METRIC = {
    "l2": faiss.METRIC_L2,
    "ip": faiss.METRIC_INNER_PRODUCT,
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "l1": faiss.METRIC_L1,
}

# Relative float32 rounding allowance when turning a range bound into a faiss radius: candidates inside
# the widened radius are then filtered exactly, so the widening only costs a few extra candidates.
_EPS32 = float(np.finfo(np.float32).eps)

VectorsForRerank = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class FlatParams:
    """Exact search by brute force (faiss IndexFlat): every query scans every vector.

    Memory: dim * 4 + 8 (id) bytes per vector. No training, no tuning; cost is linear in the rows, so it
    is the right choice for small segments and for highly selective filters.
    """


@dataclass(frozen=True)
class HnswParams:
    """Hierarchical navigable small-world graph (faiss IndexHNSWFlat), pgvector ``USING hnsw``.

    Memory: about dim * 4 (the vector) + m * 2 * 4 (level-0 links) + 8 (id) bytes per vector, plus
    ~m * 4 / ln(m) for the upper levels. Build time grows with ``m`` and ``ef_construction``.

    Tuning: ``m`` (links per node, pgvector default 16): higher gives better recall on hard or
    high-dimensional data at more memory and slower builds (5..48 is the usual range).
    ``ef_construction`` (candidate list while building, default 64, should be >= 2 * m): higher gives a
    better graph and slower builds. With ip (not a metric) the graph navigates worse: on clustered
    data, recall of the 5th..60th neighbours was 0.80 at m=16/64 but 0.975 at m=32/200; prefer cosine
    on normalised data, or raise both for ip. At query time ``SearchParams.ef_search`` (``SET hnsw.ef_search``)
    trades recall for speed and must be >= k for k results; raise it for selective filters, because the
    graph walk still visits disallowed nodes but cannot return them.
    """

    m: int = 16
    ef_construction: int = 64


@dataclass(frozen=True)
class IvfFlatParams:
    """Inverted file of full-precision vectors (faiss IndexIVFFlat), pgvector ``USING ivfflat``.

    Memory: dim * 4 + 8 (id) bytes per vector plus lists * dim * 4 for the centroids. Needs training
    (k-means on ``training_vectors``, or on the first ``add``); ``lists`` is capped at the number of
    training vectors. Vectors added later go to the nearest existing centroid, so recall degrades if the
    data drifts far from the training sample.

    Tuning (pgvector advice): ``lists`` = rows / 1000 up to 1M rows, sqrt(rows) beyond. At query time
    ``SearchParams.probes`` (``SET ivfflat.probes``) lists are scanned: sqrt(lists) is a good start;
    probes = lists is exact search. Selective filters need more probes (fewer allowed rows per list).
    """

    lists: int = 100


@dataclass(frozen=True)
class IvfPqParams:
    """Inverted file of product-quantised codes (faiss IndexIVFPQ), re-ranked with exact vectors.

    Memory: m * nbits / 8 + 8 (id) bytes per vector, plus lists * dim * 4 (centroids),
    2**nbits * dim * 4 (codebooks) and, for l2, lists * m * 2**nbits * 4 of precomputed tables. The
    smallest index here: 32x smaller than flat for m = dim / 4 and nbits = 8 (plus the ids).

    Tuning: ``m`` sub-quantisers (0 = dim // 4 rounded to a divisor of dim; must divide dim): more is more
    accurate and bigger. ``nbits`` per code (8 is the fast path; training needs >= 2**nbits vectors).
    ``lists`` and ``SearchParams.probes`` as for ivfflat; ``SearchParams.rerank`` candidates per result
    are re-scored exactly when the caller supplies the vectors (raise it when recall is short).
    """

    lists: int = 100
    m: int = 0
    nbits: int = 8


@dataclass(frozen=True)
class IvfSq8Params:
    """Inverted file of 8-bit scalar-quantised vectors (faiss IndexIVFScalarQuantizer, SQ8), re-ranked.

    Memory: dim + 8 (id) bytes per vector plus lists * dim * 4 (centroids): 4x smaller than ivfflat with
    little accuracy loss; exact re-ranking (``SearchParams.rerank``) recovers the order. Tuning of
    ``lists`` and ``probes`` as for ivfflat.
    """

    lists: int = 100


@dataclass(frozen=True)
class SearchParams:
    """Per-query settings, as pgvector's ``SET`` variables.

    ``ef_search`` (``hnsw.ef_search``, default 40): HNSW candidate list; recall rises and speed falls as
    it grows; the effective value is max(ef_search, k). ``probes`` (``ivfflat.probes``, default 1):
    inverted lists scanned by the IVF indexes. ``rerank`` (default 4): the quantised indexes (ivfpq,
    ivfsq8) fetch k * rerank candidates and re-score them exactly when ``vectors_for_rerank`` is given;
    raise it when their recall is short (ivfpq with 4 dimensions per sub-quantiser wants ~10).

    ``exact_below`` (default 10,000): when ``allow`` admits at most this many indexed rows and
    ``vectors_for_rerank`` is given, the index is bypassed and the allowed rows are searched exactly
    (storage.flat.topk), at O(allowed rows * dim) per query. A graph or list scan under a selective
    filter visits mostly disallowed rows and loses recall (HNSW at 1% selectivity finds about two thirds
    of the true neighbours even at ef_search = 400), so below the cutoff exact is both faster and right.
    0 turns it off. (Weaviate's ``flatSearchCutoff`` is the same idea, default 40,000.)
    """

    ef_search: int = 40
    probes: int = 1
    rerank: int = 4
    exact_below: int = 10_000


IndexParams = FlatParams | HnswParams | IvfFlatParams | IvfPqParams | IvfSq8Params


# --------------------------------------------------------------------------------------------------
# The interface


class VectorIndex(ABC):
    """One segment's vector index: ids are the caller's non-negative int64 row ids (unique)."""

    method: ClassVar[str]
    params_type: ClassVar[type]
    metrics: ClassVar[tuple[str, ...]] = METRICS
    native_range: ClassVar[bool] = True

    def __init__(self, metric: str, dim: int, params: IndexParams, index: faiss.Index | None = None):
        self.metric = metric
        self.dim = dim
        self.params = params
        self._index = index if index is not None else self._new_faiss_index()
        self._mapped_from: Path | None = None  # file the codes are memory-mapped from
        self._max_sq_norm = 0.0  # largest squared norm added (as stored), for range-search tolerances
        self._id_cache: np.ndarray | None = None  # sorted ids held, built on first need

    # -- subclass hooks ---------------------------------------------------------------------------

    @abstractmethod
    def _new_faiss_index(self) -> faiss.Index: ...

    @abstractmethod
    def _faiss_params(self, params: SearchParams, sel, fetch: int): ...

    def _fetch(self, k: int, params: SearchParams, reranking: bool) -> int:
        """How many candidates to ask faiss for, to return ``k`` results."""
        return k

    def _train(self, vectors: np.ndarray) -> None:  # noqa: B027  (only IVF indexes train)
        """Train on prepared vectors (normalised for cosine)."""

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    # -- public -----------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add rows (growing: may be called again later). Trains an untrained IVF index on ``vectors``."""
        x = self._prepare(vectors, "vectors")
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
        if len(x) == 0:
            return
        if ids.min() < 0:
            raise ValueError("ids must be non-negative")
        self._materialise()
        if not self.is_trained:
            self._train(x)
        self._index.add_with_ids(x, ids)
        self._id_cache = None
        self._max_sq_norm = max(self._max_sq_norm, float(np.einsum("ij,ij->i", x, x).max()))

    def search(self, queries: np.ndarray, k: int, params: SearchParams | None = None,
               allow: np.ndarray | None = None, *, vectors_for_rerank: VectorsForRerank | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest allowed ids per query: (ids (q, k) int64, distances (q, k) float64), nearest
        first, padded with id -1 and distance +inf where fewer than ``k`` are found."""
        params = params or SearchParams()
        q = self._queries(queries)
        ids = np.full((len(q), max(k, 0)), -1, np.int64)
        dist = np.full((len(q), max(k, 0)), np.inf)
        if k <= 0 or len(q) == 0 or self.ntotal == 0:
            return ids, dist
        sel, keep = self._selector(allow)
        if keep is not None and not keep.any():
            return ids, dist
        reranking = vectors_for_rerank is not None
        cand = self._few_allowed(keep, params) if reranking else None
        if cand is not None:
            return self._exact_topk(q, cand, k, vectors_for_rerank)
        fetch = max(k, min(self._fetch(k, params, reranking), self.ntotal))
        fp = self._faiss_params(params, sel, fetch)
        raw, labels = self._index.search(self._normalised(q), fetch, params=fp)
        del keep, sel  # the selector's bitmap had to outlive the faiss call
        if reranking:
            return self._rescore(q, labels, vectors_for_rerank, k)
        raw = self._to_pg(raw, labels, q)
        ids[:] = labels[:, :k]
        dist[:] = raw[:, :k]
        return ids, dist

    def range_search(self, queries: np.ndarray, lower: float | None, upper: float,
                     params: SearchParams | None = None, allow: np.ndarray | None = None, *,
                     vectors_for_rerank: VectorsForRerank | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, the allowed ids with ``lower <= distance < upper`` (no lower bound when None), as
        (ids int64, distances float64) nearest first. NaN distances never match."""
        params = params or SearchParams()
        q = self._queries(queries)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float64))
        if len(q) == 0:
            return []
        if self.ntotal == 0 or not upper > (-np.inf if lower is None else lower):
            return [empty] * len(q)
        allow = _mask(allow)
        if allow is not None and not allow.any():
            return [empty] * len(q)
        if vectors_for_rerank is not None and allow is not None:
            cand = self._few_allowed(allow, params)
            if cand is not None:
                vecs = self._exact_vectors(cand, vectors_for_rerank) if len(cand) else None
                return [_within(cand, exact_distances(vecs, qi, self.metric), lower, upper) if len(cand)
                        else empty for qi in q]
        if self.native_range:
            try:
                return self._range_native(q, lower, upper, params, allow, vectors_for_rerank)
            except RuntimeError:
                if self.metric != "l1":
                    raise
                # Older faiss refuses IndexFlat range_search with METRIC_L1 (faiss issue #5353): k-NN.
        return self._range_by_knn(q, lower, upper, params, allow, vectors_for_rerank)

    def save(self, path: Path, *, fsync: bool = True) -> None:
        """Write the index to ``path`` (format in the module docstring), replacing it atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        meta = json.dumps({
            "format": _FORMAT, "method": self.method, "metric": self.metric, "dim": self.dim,
            "params": dataclasses.asdict(self.params), "max_sq_norm": self._max_sq_norm,
        }).encode()
        with open(tmp, "ab") as f:
            f.write(meta)
            f.write(_TRAILER.pack(len(meta), _MAGIC))
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> VectorIndex:
        """Read an index written by ``save``; ``mmap`` maps the vector codes instead of copying them."""
        path = Path(path)
        size = path.stat().st_size
        if size < _TRAILER.size:
            raise CorruptionError(path, 0, "file too short for a vector index")
        with open(path, "rb") as f:
            f.seek(size - _TRAILER.size)
            length, magic = _TRAILER.unpack(f.read(_TRAILER.size))
            if magic != _MAGIC:
                raise CorruptionError(path, size - 8, "no vector index trailer (bad magic)")
            start = size - _TRAILER.size - length
            if start < 0:
                raise CorruptionError(path, size - _TRAILER.size, f"metadata length {length} exceeds file")
            f.seek(start)
            try:
                meta = json.loads(f.read(length))
                if meta["format"] != _FORMAT:
                    raise ValueError(f"unknown vector index format {meta['format']}")
                kind = _CLASSES[meta["method"]]
                params = kind.params_type(**meta["params"])
                metric, dim = meta["metric"], int(meta["dim"])
            except (ValueError, KeyError, TypeError) as e:
                raise CorruptionError(path, start, f"bad vector index metadata: {e}") from e
        flags = _MMAP_FLAG if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise CorruptionError(path, 0, f"faiss cannot read the index: {e}") from e
        if index.d != dim:
            raise CorruptionError(path, 0, f"faiss index has dimension {index.d}, metadata says {dim}")
        obj = kind(metric, dim, params, index)
        obj._max_sq_norm = float(meta.get("max_sq_norm", 0.0))
        obj._mapped_from = path if flags else None
        return obj

    # -- helpers ----------------------------------------------------------------------------------

    def ids(self) -> np.ndarray:
        """The ids held, ascending (int64)."""
        if self._id_cache is None:
            self._id_cache = np.sort(self._held_ids())
        return self._id_cache

    def _held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _few_allowed(self, mask: np.ndarray | None, params: SearchParams) -> np.ndarray | None:
        """The allowed ids held, ascending, when there are at most ``params.exact_below``; else None."""
        if mask is None or np.count_nonzero(mask) > params.exact_below:
            return None
        held = self.ids()
        held = held[held < len(mask)]
        return held[mask[held]]

    def _exact_topk(self, q: np.ndarray, cand: np.ndarray, k: int, vectors_for_rerank: VectorsForRerank
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN over the ids ``cand`` (ascending) with storage.flat.topk."""
        ids = np.full((len(q), k), -1, np.int64)
        dist = np.full((len(q), k), np.inf)
        if len(cand) == 0:
            return ids, dist
        vm = VectorMatrix(np.ascontiguousarray(self._exact_vectors(cand, vectors_for_rerank), np.float32),
                          np.ones(len(cand), bool))
        for i in range(len(q)):
            pos, d = topk(vm, None, q[i], k, self.metric)
            ids[i, :len(pos)] = cand[pos]
            dist[i, :len(pos)] = d
        return ids, dist

    def _materialise(self) -> None:
        """Replace a memory-mapped faiss index by an in-memory copy, so that it can grow."""
        if self._mapped_from is not None:
            self._index = faiss.read_index(str(self._mapped_from))
            self._mapped_from = None

    def _prepare(self, vectors: np.ndarray, what: str) -> np.ndarray:
        """Validated (n, dim) float32 C-contiguous copy, normalised for cosine."""
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise ValueError(f"{what} must be a 2-D (n, {self.dim}) array, got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise DimensionMismatch(f"expected {self.dim} dimensions, not {x.shape[1]}")
        return self._normalised(np.ascontiguousarray(x, dtype=np.float32))

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2:
            raise ValueError(f"queries must be a 2-D (q, {self.dim}) array, got shape {q.shape}")
        if q.shape[1] != self.dim:
            raise DimensionMismatch(f"expected {self.dim} dimensions, not {q.shape[1]}")
        return np.ascontiguousarray(q, dtype=np.float32)

    def _normalised(self, x: np.ndarray) -> np.ndarray:
        if self.metric != "cosine":
            return x
        x = x.copy()
        faiss.normalize_L2(x)  # leaves zero vectors zero
        return x

    @staticmethod
    def _selector(allow: np.ndarray | None):
        """(faiss selector or None, the mask or None). Keep both alive for the whole faiss call."""
        if allow is None:
            return None, None
        mask = _mask(allow)
        bitmap = np.packbits(mask, bitorder="little")
        return faiss.IDSelectorBitmap(bitmap), mask  # the wrapper holds a reference to bitmap

    def _to_pg(self, raw: np.ndarray, labels: np.ndarray, q: np.ndarray) -> np.ndarray:
        """faiss distances -> pgvector distances (float64); +inf where no result."""
        raw = raw.astype(np.float64)
        if self.metric == "l2":
            raw = np.sqrt(np.maximum(raw, 0.0))
        elif self.metric == "ip":
            raw = -raw
        elif self.metric == "cosine":
            raw = 1.0 - np.clip(raw, -1.0, 1.0)
            zero = ~(np.einsum("ij,ij->i", q, q) > 0)
            raw[zero] = np.nan  # pgvector: cosine distance with a zero vector is NaN
        raw[labels < 0] = np.inf
        return raw

    def _exact_vectors(self, ids: np.ndarray, vectors_for_rerank: VectorsForRerank) -> np.ndarray:
        vecs = np.asarray(vectors_for_rerank(ids))
        if vecs.shape != (len(ids), self.dim):
            raise ValueError(f"vectors_for_rerank returned shape {vecs.shape}, expected {(len(ids), self.dim)}")
        return vecs

    def _rescore(self, q: np.ndarray, labels: np.ndarray, vectors_for_rerank: VectorsForRerank, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances for candidate ids ``labels`` (q, c); best ``k`` per query (NaN last, ties by id)."""
        ids = np.full((len(q), k), -1, np.int64)
        dist = np.full((len(q), k), np.inf)
        found = labels >= 0
        uniq = np.unique(labels[found])
        if len(uniq) == 0:
            return ids, dist
        vecs = self._exact_vectors(uniq, vectors_for_rerank)
        rows = np.searchsorted(uniq, np.where(found, labels, uniq[0]))
        for i in range(len(q)):
            cand = labels[i][found[i]]
            d = exact_distances(vecs[rows[i][found[i]]], q[i], self.metric)
            nan = np.isnan(d)
            order = np.lexsort((cand, np.where(nan, 0.0, d), nan))[:k]
            ids[i, :len(order)] = cand[order]
            dist[i, :len(order)] = d[order]
        return ids, dist

    def _faiss_radius(self, q: np.ndarray, upper: float) -> float:
        """A faiss radius that admits every row with pgvector distance < upper despite float32 rounding."""
        tol = 8 * self.dim * _EPS32
        if self.metric == "l2":
            scale = self._max_sq_norm + float(np.einsum("ij,ij->i", q, q).max())
            return float(upper) ** 2 + tol * scale if upper > 0 else 0.0
        if self.metric == "ip":  # faiss keeps similarity > radius
            scale = np.sqrt(self._max_sq_norm * float(np.einsum("ij,ij->i", q, q).max()))
            return -float(upper) - tol * scale - tol
        if self.metric == "cosine":
            return 1.0 - float(upper) - tol
        return float(upper) * (1 + tol) + tol  # l1

    def _range_native(self, q, lower, upper, params, allow, vectors_for_rerank):
        sel, keep = self._selector(allow)
        fp = self._faiss_params(params, sel, 0)
        lims, raw, labels = self._index.range_search(self._normalised(q), self._faiss_radius(q, upper), params=fp)
        del keep, sel
        if vectors_for_rerank is not None:
            uniq = np.unique(labels)
            vecs = self._exact_vectors(uniq, vectors_for_rerank) if len(uniq) else None
        out = []
        for i in range(len(q)):
            ids = labels[lims[i]:lims[i + 1]]
            if vectors_for_rerank is not None and len(ids):
                d = exact_distances(vecs[np.searchsorted(uniq, ids)], q[i], self.metric)
            else:
                d = self._to_pg(raw[lims[i]:lims[i + 1]].reshape(1, -1), ids.reshape(1, -1), q[i:i + 1])[0]
            out.append(_within(ids, d, lower, upper))
        return out

    def _range_by_knn(self, q, lower, upper, params, allow, vectors_for_rerank):
        """Range search as k-NN with k growing until the k-th distance reaches ``upper``."""
        out: list = [None] * len(q)
        pending = np.arange(len(q))
        k = 64
        while len(pending):
            ids, d = self.search(q[pending], k, params, allow, vectors_for_rerank=vectors_for_rerank)
            last = d[:, -1]
            done = ~(last < upper) | (ids[:, -1] < 0) | (k >= self.ntotal)
            for j in np.flatnonzero(done):
                out[pending[j]] = _within(ids[j], d[j], lower, upper)
            pending = pending[~done]
            k *= 4
        return out


def _mask(allow: np.ndarray | None) -> np.ndarray | None:
    if allow is None:
        return None
    mask = np.asarray(allow)
    if mask.dtype != np.bool_ or mask.ndim != 1:
        raise TypeError(f"allow must be a 1-D bool mask indexed by id, got {mask.dtype} shape {mask.shape}")
    return mask


def _within(ids: np.ndarray, d: np.ndarray, lower: float | None, upper: float):
    keep = (ids >= 0) & (d < upper)
    if lower is not None:
        keep &= d >= lower
    ids, d = ids[keep].astype(np.int64), d[keep].astype(np.float64)
    order = np.lexsort((ids, d))
    return ids[order], d[order]


# --------------------------------------------------------------------------------------------------
# Implementations


def _id_map(inner: faiss.Index) -> faiss.Index:
    """``inner`` behind caller-given ids; the IDMap owns (and frees) ``inner``, as after read_index."""
    index = faiss.IndexIDMap(inner)
    index.own_fields = True
    inner.this.disown()
    return index


class FlatIndex(VectorIndex):
    method = "flat"
    params_type = FlatParams

    def _new_faiss_index(self):
        return _id_map(faiss.IndexFlat(self.dim, _FAISS_METRIC[self.metric]))

    def _faiss_params(self, params, sel, fetch):
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def _fetch(self, k, params, reranking):
        # Exact re-scoring: a margin beyond k so float32 rounding cannot push a true neighbour out.
        return 4 * k + 32 if reranking else k


class HnswIndex(VectorIndex):
    method = "hnsw"
    params_type = HnswParams

    def _new_faiss_index(self):
        p = self.params
        if p.m < 2 or p.ef_construction < 1:
            raise ValueError(f"hnsw needs m >= 2 and ef_construction >= 1, got m={p.m} "
                             f"ef_construction={p.ef_construction}")
        hnsw = faiss.IndexHNSWFlat(self.dim, p.m, _FAISS_METRIC[self.metric])
        hnsw.hnsw.efConstruction = p.ef_construction
        return _id_map(hnsw)

    def _faiss_params(self, params, sel, fetch):
        ef = max(params.ef_search, fetch, 1)
        return faiss.SearchParametersHNSW(sel=sel, efSearch=ef) if sel is not None else \
            faiss.SearchParametersHNSW(efSearch=ef)


class _IvfIndex(VectorIndex):
    metrics = ("l2", "ip", "cosine")

    @abstractmethod
    def _factory(self, lists: int) -> str:
        """The faiss index_factory string for this IVF variant with ``lists`` inverted lists."""

    def _new_faiss_index(self):
        if self.params.lists < 1:
            raise ValueError(f"{self.method} needs lists >= 1, got {self.params.lists}")
        # Untrained placeholder, so ntotal/is_trained work; the real index is made at training time,
        # when the number of training vectors (which caps lists) is known.
        return faiss.index_factory(self.dim, self._factory(self.params.lists), _FAISS_METRIC[self.metric])

    def _train(self, vectors):
        lists = min(self.params.lists, len(vectors))
        self._check_training(len(vectors))
        index = faiss.index_factory(self.dim, self._factory(lists), _FAISS_METRIC[self.metric])
        if hasattr(index, "do_polysemous_training"):
            # index_factory turns polysemous code training on for IVFPQ: it only serves Hamming-distance
            # filtering (polysemous_ht), which we do not use, and costs 15x the rest of training.
            index.do_polysemous_training = False
        # faiss prints a warning to stderr below 39 training vectors per centroid; small segments are
        # expected here (and lists is already capped at the training set).
        index.cp.min_points_per_centroid = 1
        if hasattr(index, "pq"):
            index.pq.cp.min_points_per_centroid = 1
        index.train(vectors)
        self._index = index

    def _check_training(self, n: int) -> None:
        pass

    def train(self, training_vectors: np.ndarray) -> None:
        if self.ntotal:
            raise ValueError(f"{self.method} index already holds vectors; train before adding")
        self._train(self._prepare(training_vectors, "training_vectors"))

    def _held_ids(self):
        inv = self._index.invlists
        parts = [np.zeros(0, np.int64)]
        for lst in range(inv.nlist):
            size = inv.list_size(lst)
            if size:
                parts.append(faiss.rev_swig_ptr(inv.get_ids(lst), size).copy())
        return np.concatenate(parts).astype(np.int64)

    def _faiss_params(self, params, sel, fetch):
        nprobe = max(1, min(params.probes, self._index.nlist))
        return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe) if sel is not None else \
            faiss.SearchParametersIVF(nprobe=nprobe)


class IvfFlatIndex(_IvfIndex):
    method = "ivfflat"
    params_type = IvfFlatParams

    def _factory(self, lists):
        return f"IVF{lists},Flat"


class _QuantisedIvf(_IvfIndex):
    native_range = False  # approximate codes: range search goes through re-ranked k-NN

    def _fetch(self, k, params, reranking):
        return k * max(1, params.rerank) if reranking else k


class IvfPqIndex(_QuantisedIvf):
    method = "ivfpq"
    params_type = IvfPqParams

    def __init__(self, metric, dim, params, index=None):
        m = params.m or _default_pq_m(dim)
        if dim % m:
            raise ValueError(f"ivfpq m={m} must divide the dimension {dim}")
        if not 1 <= params.nbits <= 16:
            raise ValueError(f"ivfpq nbits must be in 1..16, got {params.nbits}")
        self.pq_m = m
        super().__init__(metric, dim, params, index)

    def _factory(self, lists):
        return f"IVF{lists},PQ{self.pq_m}x{self.params.nbits}"

    def _check_training(self, n):
        if n < 2 ** self.params.nbits:
            raise ValueError(f"ivfpq with nbits={self.params.nbits} needs at least {2 ** self.params.nbits} "
                             f"training vectors, got {n}")


class IvfSq8Index(_QuantisedIvf):
    method = "ivfsq8"
    params_type = IvfSq8Params

    def _factory(self, lists):
        return f"IVF{lists},SQ8"


def _default_pq_m(dim: int) -> int:
    target = max(1, dim // 4)
    divisors = [m for m in range(1, dim + 1) if dim % m == 0]
    return min(divisors, key=lambda m: (abs(m - target), m))


_CLASSES: dict[str, type[VectorIndex]] = {
    c.method: c for c in (FlatIndex, HnswIndex, IvfFlatIndex, IvfPqIndex, IvfSq8Index)
}

SUPPORTED_METRICS: dict[str, tuple[str, ...]] = {m: c.metrics for m, c in _CLASSES.items()}


def create_index(method: str, metric: str, dim: int, params: IndexParams | None = None,
                 training_vectors: np.ndarray | None = None) -> VectorIndex:
    """A new, empty index. ``params`` defaults to the method's defaults. IVF indexes are trained on
    ``training_vectors`` now (not added: call ``add``), or on the first ``add`` when None; flat and hnsw
    need no training and ignore them."""
    if method not in _CLASSES:
        raise ValueError(f"unknown index method {method!r}; expected one of {', '.join(METHODS)}")
    kind = _CLASSES[method]
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if metric not in kind.metrics:
        raise ValueError(f"index method {method} does not support the {metric} metric "
                         f"(supported: {', '.join(kind.metrics)})")
    if not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dimension must be a positive integer, got {dim!r}")
    params = kind.params_type() if params is None else params
    if not isinstance(params, kind.params_type):
        raise TypeError(f"{method} index takes {kind.params_type.__name__}, got {type(params).__name__}")
    index = kind(metric, int(dim), params)
    if training_vectors is not None and isinstance(index, _IvfIndex):
        index.train(training_vectors)
    return index
