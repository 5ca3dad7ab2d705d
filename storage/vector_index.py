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
scann     ScaNN tree + anisotropic 4-bit codes,  l2, ip, cosine              approximate codes
          or IndexIVFPQFastScan 4-bit (+ rerank)
========  =====================================  ==========================  =====================

``scann`` has two backends behind the one method name (see ``ScannParams``): the ``scann`` package
(Google's ScaNN: k-means tree leaves, anisotropic vector quantisation with 16 centres per block of
``dims_per_block`` dimensions, scored with SIMD in-register lookup tables) when it is importable, else
faiss's 4-bit PQ fast-scan IVF (``IVF{leaves},PQ{dim/dims_per_block}x4fsr``), the same technique without
the anisotropic loss (Milvus's own SCANN index is built that way). ``SQLVEC_SCANN_BACKEND=faiss|scann``
forces one (default: scann where importable). Both fetch ``SearchParams.reorder`` candidates by the codes
and re-score them exactly. The scann package is an optional dependency (no Arm64 wheels), imported lazily.

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

ScaNN's numpy API has no allow-list: the scann backend over-fetches by the inverse of the allowed
fraction and filters, widening the fetch (and then the leaves searched) until the wanted number of
allowed candidates is found or every leaf has been scanned; the exact bypass below ``exact_below``
applies as for the others.

Range search: flat and ivfflat use faiss's range_search with the bound widened by float32 rounding and
then filtered on the pgvector distance (exact when re-scored); hnsw (whose faiss range search is bounded
by one walk of ef_search candidates), ivfpq, ivfsq8 and scann run (re-ranked) k-NN with k growing until
the k-th distance reaches ``upper``, and leave a range holding more than ``RANGE_EXACT_FRACTION`` of the
allowed rows (hnsw: 1 / (2 m)) to the caller's exact scan (answer None) when the caller supplies the
vectors.

Threads: faiss parallelises over queries (and over lists/graph construction) with OpenMP on every core;
ScaNN searches a batch of queries on its own thread pool. Both release the GIL. Concurrent
``search``/``range_search`` calls are safe (the scann backend's deferred build, below, runs under a
lock); ``add`` must not run concurrently with anything else on the same index.

The scann backend builds lazily: ``add`` collects rows, and the first ``search``/``range_search``/``save``
after it builds the searcher from everything collected (training on up to ``training_sample`` of the
rows, so the usual single ``add`` of a whole sealed segment trains on that segment). Rows added after a
build are appended to the built searcher at the next search or save (ScaNN's ``upsert``: nearest leaf,
existing codebooks, like faiss IVF ``add``); a scann without ``upsert`` (before 1.3) refuses them.

On-disk format (``save``/``load``), one file, written as ``<name>.tmp``, fsynced, renamed::

    offset 0          faiss index, faiss's own serialisation (faiss.write_index); readable by
                      faiss.read_index on its own, which ignores the trailer below
    offset F          metadata: UTF-8 JSON object {"format": 1, "method", "metric", "dim",
                      "params": {...dataclass fields...}, "max_sq_norm": float}; scann files add
                      "backend": "faiss" | "scann"
    offset size - 12  uint32 little-endian: byte length of the JSON
    offset size - 8   8 bytes magic b"SQLVIDX1"

An index built by the scann package has an empty faiss IndexFlat of its dimension at offset 0 (so the
file is still a readable faiss index) and, between it and the JSON, an uncompressed POSIX tar archive
(metadata "scann_assets": [offset, length], "scann_version", "leaves") holding the files of
``ScannSearcher.serialize(dir, relative_path=True)`` (scann_assets.pbtxt, scann_config.pb, the
partitioner, the codebooks, the hashed dataset, the leaf of each row) plus ``sqlvec_ids.npy`` (int64: the
caller's id of each searcher row). ``load`` unpacks it into a temporary directory and restores the
searcher with ``scann_ops_pybind.load_searcher`` (no re-training; ScaNN reads everything into memory, so
``mmap`` does not apply). Where scann is not installed such a file raises ``ScannUnavailable`` (a
ValueError naming the package); rebuild the index with ``SQLVEC_SCANN_BACKEND=faiss``.

``load(path, mmap=True)`` maps the vector codes in place (faiss IO_FLAG_MMAP_IFC) instead of copying them
into memory; the HNSW graph and IVF centroids are still read into memory. A mapped index cannot grow in
place (faiss aborts the process on a resize of a mapped array), so the first ``add`` after a mapped load
re-reads the file into memory.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import io
import json
import math
import os
import struct
import tarfile
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import faiss
import numpy as np

from .durable import fsync_dir, fsync_file
from .errors import CorruptionError
from .flat import METRICS, DimensionMismatch, VectorMatrix, exact_distances, topk

METHODS = ("flat", "hnsw", "ivfflat", "ivfpq", "ivfsq8", "scann")

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
class ScannParams:
    """ScaNN: rows partitioned into ``leaves`` by k-means, coded with 4 bits per block of
    ``dims_per_block`` dimensions (16 centres per block), candidates re-scored exactly.

    Backends (the module docstring says how one is chosen): the ``scann`` package (anisotropic vector
    quantisation of the residual to the leaf centre for ip/cosine; plain 4-bit codes of the vector for
    l2, which ScaNN does not code by residual) or faiss's IndexIVFPQFastScan (residual 4-bit PQ codes for
    every metric, the same SIMD lookup-table scan). Neither wins everywhere: on 100k x 128 clustered
    data at the default settings, recall@10 was 0.96 (l2), 1.00 (ip), 0.996 (cosine) on the scann
    package and 0.995, 0.955, 0.987 on faiss, at 0.1-0.2 ms per query either way.

    Memory: dim / dims_per_block / 2 bytes of codes + 8 (id) bytes per vector (dim / 4 + 8 with the
    default 2; 16x smaller than flat), plus leaves * dim * 4 for the centres. The scann backend also
    keeps a 4-byte leaf number per row.

    ``leaves`` (``WITH (leaves = ...)``, 0 = auto): partitions, round(sqrt(rows)) as ScaNN recommends
    (316 for 100k rows, 1,000 for 1M), capped at the rows trained on. More leaves make each search scan
    fewer rows, at more centres to compare the query with. ``dims_per_block`` (default 2, ScaNN's
    default; must divide dim): dimensions coded together in 4 bits; 1 is twice as big and more accurate,
    4 half as big and coarser. ``anisotropic_threshold`` (default 0.2, ScaNN's
    ``anisotropic_quantization_threshold``; scann backend, ip and cosine only, ignored for l2 and by the
    faiss backend): how much the codebook training weighs the error parallel to each vector (which
    moves inner products) over the error orthogonal to it. It is taken relative to the median vector
    norm of the training sample, so that 0.2 is ScaNN's advice for normalised data and holds for
    unnormalised ip data too (0 turns the weighting off). ``training_sample`` (default 100,000): rows
    sampled for k-means and codebook training; more is slower to build and barely better.

    At query time ``SearchParams.leaves_to_search`` (``SET scann.leaves_to_search``) leaves are scanned
    and ``SearchParams.reorder`` (``SET scann.reorder``) candidates re-scored exactly (with the caller's
    vectors); raise the first when partitioning loses neighbours (recall short however deep the
    reorder), the second when the codes do. The faiss backend trains on ``training_vectors`` (or the
    first ``add``); the scann backend always trains on the rows it indexes (see the module docstring).
    """

    leaves: int = 0
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    training_sample: int = 100_000


@dataclass(frozen=True)
class SearchParams:
    """Per-query settings, as pgvector's ``SET`` variables.

    ``ef_search`` (``hnsw.ef_search``, default 40): HNSW candidate list; recall rises and speed falls as
    it grows; the effective value is max(ef_search, k). ``probes`` (``ivfflat.probes``, default 1):
    inverted lists scanned by the IVF indexes. ``rerank`` (default 4): the quantised indexes (ivfpq,
    ivfsq8) fetch k * rerank candidates and re-score them exactly when ``vectors_for_rerank`` is given;
    raise it when their recall is short (ivfpq with 4 dimensions per sub-quantiser wants ~10).

    ``leaves_to_search`` (``scann.leaves_to_search``, default 0 = auto: ceil(sqrt(leaves)), e.g. 18 of
    316 leaves) and ``reorder`` (``scann.reorder``, default 0 = auto: max(k * rerank, 100), ScaNN's usual
    100 for k = 10) serve the scann index only: leaves scanned per query, and candidates taken by the
    4-bit codes and re-scored exactly when ``vectors_for_rerank`` is given (ScaNN's
    ``pre_reorder_num_neighbors``). 2 dimensions per 4-bit block lose more than ivfpq's 8-bit codes, so
    k * 4 candidates are too few (recall@10 0.8-0.98 on 100k x 128 clustered data); 100 gave 0.955-1.0
    and 200 gave 0.99-1.0 at about 50 us more per query. A reorder below k is raised to k. Without
    ``vectors_for_rerank`` the index returns its k best by the codes, with the codes' distances.

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
    leaves_to_search: int = 0
    reorder: int = 0


IndexParams = FlatParams | HnswParams | IvfFlatParams | IvfPqParams | IvfSq8Params | ScannParams


# --------------------------------------------------------------------------------------------------
# The interface


# A range search holding more than this share of a segment's allowed rows is answered by an exact scan
# (the caller's), as k-NN with k near the row count costs more than a scan of every row. HNSW gives up
# sooner (HnswIndex._range_exact_beyond).
RANGE_EXACT_FRACTION = 0.125


class VectorIndex(ABC):
    """One segment's vector index: ids are the caller's non-negative int64 row ids (unique)."""

    method: ClassVar[str]
    params_type: ClassVar[type]
    metrics: ClassVar[tuple[str, ...]] = METRICS
    native_range: ClassVar[bool] = True
    # Keeps the full float32 vectors (hnsw, ivfflat): faiss's l2 and ip distances are then pgvector's up
    # to float32 rounding, and search skips the exact re-scoring for them (a fifth of a query's time).
    # Cosine (NaN for zero vectors) and l1 are still re-scored.
    stores_vectors: ClassVar[bool] = False

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

    def _faiss_distances_are_pgvectors(self) -> bool:
        """Whether faiss's distances are pgvector's up to float32 rounding, so search need not re-score."""
        return self.stores_vectors and self.metric in ("l2", "ip")

    def expect_max_sq_norm(self, max_sq_norm: float) -> None:  # noqa: B027  (only hnsw/ip uses it)
        """The largest squared norm the vectors about to be added have (a hint before chunked adds)."""

    def _read_meta(self, meta: dict) -> None:  # noqa: B027
        """Restore what ``_write_payload`` put in the metadata."""

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
        x, ids = self._rows(vectors, ids)
        if len(x) == 0:
            return
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
        keep = _mask(allow)
        if keep is not None and not keep.any():
            return ids, dist
        reranking = vectors_for_rerank is not None
        cand = self._few_allowed(keep, params) if reranking else None
        if cand is not None:
            return self._exact_topk(q, cand, k, vectors_for_rerank)
        fetch = max(k, min(self._fetch(k, params, reranking), self.ntotal))
        raw, labels = self._candidates(q, fetch, params, keep)
        if reranking and not self._faiss_distances_are_pgvectors():
            return self._rescore(q, labels, vectors_for_rerank, k)
        raw = self._to_pg(raw, labels, q)
        ids[:] = labels[:, :k]
        dist[:] = raw[:, :k]
        return ids, dist

    def range_search(self, queries: np.ndarray, lower: float | None, upper: float,
                     params: SearchParams | None = None, allow: np.ndarray | None = None, *,
                     vectors_for_rerank: VectorsForRerank | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per query, the allowed ids with ``lower <= distance < upper`` (no lower bound when None), as
        (ids int64, distances float64) nearest first. NaN distances never match.

        With ``vectors_for_rerank`` given, a query's answer may be None instead: its range holds more than
        ``RANGE_EXACT_FRACTION`` of the allowed rows, where widening the index search costs more than the
        caller's exact scan of them (the caller has the vectors)."""
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
        self._before_save()
        faiss.write_index(self._index, str(tmp))
        meta = {
            "format": _FORMAT, "method": self.method, "metric": self.metric, "dim": self.dim,
            "params": dataclasses.asdict(self.params), "max_sq_norm": self._max_sq_norm,
        }
        with open(tmp, "ab") as f:
            meta.update(self._write_payload(f))
            meta = json.dumps(meta).encode()
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
                if meta.get("backend") == "scann":
                    kind = ScannPackageIndex
                params = kind.params_type(**meta["params"])
                metric, dim = meta["metric"], int(meta["dim"])
            except (ValueError, KeyError, TypeError) as e:
                raise CorruptionError(path, start, f"bad vector index metadata: {e}") from e
        if kind is ScannPackageIndex:
            return ScannPackageIndex._load_package(path, metric, dim, params, meta, start)
        flags = _MMAP_FLAG if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise CorruptionError(path, 0, f"faiss cannot read the index: {e}") from e
        stored_dim = dim + 1 if meta.get("mips_bound") is not None else dim  # hnsw/ip: one extra coordinate
        if index.d != stored_dim:
            raise CorruptionError(path, 0, f"faiss index has dimension {index.d}, metadata says {stored_dim}")
        obj = kind(metric, dim, params, index)
        obj._max_sq_norm = float(meta.get("max_sq_norm", 0.0))
        obj._read_meta(meta)
        obj._mapped_from = path if flags else None
        return obj

    # -- helpers ----------------------------------------------------------------------------------

    def _candidates(self, q: np.ndarray, fetch: int, params: SearchParams, keep: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's ``fetch`` best allowed candidates per query: (distances (q, fetch) as faiss gives
        them: squared L2 or inner product, caller ids (q, fetch), -1 where none)."""
        sel, keep = self._selector(keep)
        fp = self._faiss_params(params, sel, fetch)
        raw, labels = self._index.search(self._normalised(q), fetch, params=fp)
        del keep, sel  # the selector's bitmap had to outlive the faiss call
        return raw, labels

    def _rows(self, vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validated rows for ``add``: (prepared float32 vectors, int64 ids)."""
        x = self._prepare(vectors, "vectors")
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
        if len(ids) and ids.min() < 0:
            raise ValueError("ids must be non-negative")
        return x, ids

    def _before_save(self) -> None:  # noqa: B027  (only the scann package backend has work to do)
        """Bring the index up to date before it is written."""

    def _write_payload(self, f) -> dict:
        """Write data that follows the faiss index in the file (at ``f``'s position); returns metadata."""
        return {}

    def ids(self) -> np.ndarray:
        """The ids held, ascending (int64)."""
        if self._id_cache is None:
            self._id_cache = np.sort(self._held_ids())
        return self._id_cache

    def _held_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _widened(self, params: SearchParams, k: int) -> SearchParams:
        """``params`` for a range search's k-NN round of ``k`` (64, 256, ...): IVF probes and ScaNN leaves
        scaled by k / 64 (a ball of 4x the rows spans about 4x the lists)."""
        factor = k // 64
        if factor <= 1:
            return params
        return dataclasses.replace(params, probes=params.probes * factor,
                                   leaves_to_search=self._leaves_to_search(params) * factor)

    def _range_exact_beyond(self, eligible: int) -> int:
        """The k past which a range search of ``eligible`` allowed rows is left to an exact scan."""
        return max(64, int(eligible * RANGE_EXACT_FRACTION))

    def _leaves_to_search(self, params: SearchParams) -> int:
        """The ScaNN leaves a search scans under ``params`` (0 = auto, for the indexes without leaves)."""
        return params.leaves_to_search

    def searches_exactly(self, allowed: int, params: SearchParams) -> bool:
        """Whether a search whose filter admits ``allowed`` rows scans them exactly instead of the index:
        at most ``params.exact_below`` of them (0 turns the bypass off)."""
        return allowed <= params.exact_below

    def _few_allowed(self, mask: np.ndarray | None, params: SearchParams) -> np.ndarray | None:
        """The allowed ids held, ascending, when ``searches_exactly`` says so; else None."""
        if mask is None or not self.searches_exactly(int(np.count_nonzero(mask)), params):
            return None
        held = self.ids()
        if len(held) and held[-1] == len(held) - 1:  # ids 0..n-1, as a segment's index holds them
            return np.flatnonzero(mask[:len(held)])
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
        """Range search as k-NN with k growing (4x a round, from 64) until the k-th distance reaches
        ``upper`` or every allowed row has been returned; None for a query once k passes
        ``RANGE_EXACT_FRACTION`` of the allowed rows and the caller can search exactly. A short answer
        (fewer than k under a filter) all inside the bound widens too: the walk or the probed lists ran
        out, not the rows.
        Each round scans as much of the index per wanted row as the settings do for 64 (``_widened``)."""
        out: list = [None] * len(q)
        eligible = self.ntotal if allow is None else min(self.ntotal, int(np.count_nonzero(allow)))
        give_up = self._range_exact_beyond(eligible) if vectors_for_rerank is not None else None
        pending = np.arange(len(q))
        k = 64
        while len(pending):
            ids, d = self.search(q[pending], k, self._widened(params, k), allow,
                                 vectors_for_rerank=vectors_for_rerank)
            # done once a row at or past the bound came back (a short answer may still end inside it)
            farthest = np.where(ids >= 0, d, -np.inf).max(axis=1)
            done = ~(farthest < upper) | (k >= eligible)
            for j in np.flatnonzero(done):
                out[pending[j]] = _within(ids[j], d[j], lower, upper)
            pending = pending[~done]
            k *= 4
            if give_up is not None and k > give_up:
                break  # the rest stay None: exact is cheaper
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
    stores_vectors = True
    method = "hnsw"
    params_type = HnswParams
    # faiss's HNSW range search keeps what one walk of ef_search candidates visits, so a range of more
    # rows than that comes back partial (20k x 16, ef_search 160: recall 0.80 of a 500-row range, 0.05 of
    # 8,000); widening k-NN until the k-th distance passes the bound found 0.999-1.0 of each.
    native_range = False

    # Inner product is not a metric, and a graph built on it navigates badly: on clustered 16-d data
    # (20k rows, m = 32, ef_construction = 200) recall@10 stayed at 0.68-0.75 for ef_search 200-2000.
    # So an ip index is an L2 graph over vectors with one coordinate more, sqrt(B - |x|^2) for a bound
    # B >= every |x|^2, and queries get a 0 there: |x' - q'|^2 = B + |q|^2 - 2 x.q, which orders rows as
    # -x.q does (recall@10 1.0 on the same data). A vector past B rebuilds the graph with a larger B.
    # Index files written before this (a plain inner-product graph, no "mips_bound") still load as such.
    _MIPS_HEADROOM = 1.5  # B for the first rows of a growing index: 1.5 x their largest |x|^2

    def __init__(self, metric, dim, params, index=None):
        self._mips_bound: float | None = None  # B above; None: not an L2-reduced ip graph
        super().__init__(metric, dim, params, index)
        if metric == "ip" and index is None:
            self._mips_bound = 0.0  # set by the first add

    def _new_faiss_index(self):
        p = self.params
        if p.m < 2 or p.ef_construction < 1:
            raise ValueError(f"hnsw needs m >= 2 and ef_construction >= 1, got m={p.m} "
                             f"ef_construction={p.ef_construction}")
        if self.metric == "ip":
            hnsw = faiss.IndexHNSWFlat(self.dim + 1, p.m, faiss.METRIC_L2)
        else:
            hnsw = faiss.IndexHNSWFlat(self.dim, p.m, _FAISS_METRIC[self.metric])
        hnsw.hnsw.efConstruction = p.ef_construction
        return _id_map(hnsw)

    def searches_exactly(self, allowed, params):
        # A filtered walk still expands disallowed nodes: about ef_search x 2m distances (level 0 has
        # 2m links a node). Past the allowed rows' count, scanning those is cheaper (200k x 64, 10%
        # admitted: exact 3.2 ms a query against 5.5 ms through the graph at ef_search 160 -> 1,597).
        if params.exact_below <= 0:
            return False
        return allowed <= max(params.exact_below, 2 * self.params.m * max(params.ef_search, 1))

    def _read_meta(self, meta):
        bound = meta.get("mips_bound")
        self._mips_bound = None if bound is None else float(bound)

    def _write_payload(self, f):
        return {} if self._mips_bound is None else {"mips_bound": self._mips_bound}

    def _faiss_distances_are_pgvectors(self):
        # B + |q|^2 - 2 x.q in float32 loses digits of x.q: re-score exactly where vectors are given
        return self._mips_bound is None and super()._faiss_distances_are_pgvectors()

    def expect_max_sq_norm(self, max_sq_norm):
        if self._mips_bound is not None and self.ntotal == 0:
            self._mips_bound = max(self._mips_bound, float(max_sq_norm))

    def add(self, vectors, ids):
        if self._mips_bound is None:
            return super().add(vectors, ids)
        x, ids = self._rows(vectors, ids)
        if len(x) == 0:
            return
        self._materialise()
        sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        top = float(sq.max())
        if top > self._mips_bound:
            if self.ntotal == 0:
                self._mips_bound = top * self._MIPS_HEADROOM
            else:
                self._rebuild_mips(top * self._MIPS_HEADROOM)
        self._index.add_with_ids(self._augment(x, sq), ids)
        self._id_cache = None
        self._max_sq_norm = max(self._max_sq_norm, top)

    def _augment(self, x: np.ndarray, sq: np.ndarray) -> np.ndarray:
        extra = np.sqrt(np.maximum(self._mips_bound - sq, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([x, extra[:, None]]), dtype=np.float32)

    def _rebuild_mips(self, bound: float) -> None:
        """The graph again with bound ``bound``: the stored vectors without their extra coordinate."""
        inner = faiss.downcast_index(self._index.index)
        held = inner.reconstruct_n(0, inner.ntotal)[:, : self.dim]
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        self._index = self._new_faiss_index()
        self._mips_bound = bound
        if len(held):
            self._index.add_with_ids(self._augment(held, np.einsum("ij,ij->i", held, held, dtype=np.float64)), ids)

    def _candidates(self, q, fetch, params, keep):
        if self._mips_bound is None:
            return super()._candidates(q, fetch, params, keep)
        return super()._candidates(np.hstack([q, np.zeros((len(q), 1), np.float32)]), fetch, params, keep)

    def _to_pg(self, raw, labels, q):
        if self._mips_bound is None:
            return super()._to_pg(raw, labels, q)
        qq = np.einsum("ij,ij->i", q, q, dtype=np.float64)[:, None]
        out = (raw.astype(np.float64) - self._mips_bound - qq) / 2.0  # -x.q
        out[labels < 0] = np.inf
        return out

    def _range_exact_beyond(self, eligible):
        # a walk with ef = 2k computes about 2k * m distances: past the row count, a scan is cheaper
        # (20k x 64: a 1,000-row range took 5.1 ms through the graph at k = 1,024, 1.1 ms exactly)
        return max(64, eligible // (2 * self.params.m))

    def _widened(self, params, k):
        # ef = k finds about 0.92 of the k nearest (64-d); ef = 2k keeps a range's recall where the
        # first round's is (the caller's ef_search)
        return dataclasses.replace(params, ef_search=max(params.ef_search, 2 * k))

    def _faiss_params(self, params, sel, fetch):
        ef = max(params.ef_search, fetch, 1)
        return faiss.SearchParametersHNSW(sel=sel, efSearch=ef) if sel is not None else \
            faiss.SearchParametersHNSW(efSearch=ef)


class _IvfIndex(VectorIndex):
    metrics = ("l2", "ip", "cosine")

    @abstractmethod
    def _factory(self, lists: int) -> str:
        """The faiss index_factory string for this IVF variant with ``lists`` inverted lists."""

    def _lists(self, n_train: int | None) -> int:
        """Inverted lists when training on ``n_train`` vectors (None: for the untrained placeholder)."""
        if self.params.lists < 1:
            raise ValueError(f"{self.method} needs lists >= 1, got {self.params.lists}")
        return self.params.lists if n_train is None else min(self.params.lists, n_train)

    def _new_faiss_index(self):
        # Untrained placeholder, so ntotal/is_trained work; the real index is made at training time,
        # when the number of training vectors (which caps lists) is known.
        return faiss.index_factory(self.dim, self._factory(self._lists(None)), _FAISS_METRIC[self.metric])

    def _training_set(self, vectors: np.ndarray) -> np.ndarray:
        """The vectors k-means and the codebooks are trained on."""
        return vectors

    def _train(self, vectors):
        lists = self._lists(len(vectors))
        self._check_training(len(vectors))
        vectors = self._training_set(vectors)
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
    stores_vectors = True
    method = "ivfflat"
    params_type = IvfFlatParams
    # faiss's IVF range search scans ivfflat.probes lists, whatever the range's size: a range of many rows
    # spans more lists (12k x 8, 50 lists, 10 probed: 0.81 of a 600-row range). k-NN widening scales probes.
    native_range = False

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


# --------------------------------------------------------------------------------------------------
# scann: two backends, one method

SCANN_BACKEND_ENV = "SQLVEC_SCANN_BACKEND"
_SCANN_CODE_CENTRES = 16  # 4-bit codes: k-means needs at least this many training rows
_AUTO_REORDER = 100  # ScaNN's usual pre-reorder depth for k = 10


class ScannUnavailable(ValueError):
    """A scann index file was written by the ``scann`` package, which this process cannot import."""


@functools.cache
def _scann_module() -> ModuleType | None:
    """``scann.scann_ops.py.scann_ops_pybind`` (numpy API, no TensorFlow), or None where not importable."""
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except (ImportError, OSError):  # not installed, or a wheel for another platform / Python
        return None
    return scann_ops_pybind


def scann_available() -> bool:
    """Whether the ``scann`` package can be imported here (it is optional: no Arm64 wheels)."""
    return _scann_module() is not None


def scann_backend(metric: str | None = None) -> str:
    """The backend a new ``scann`` index gets: ``$SQLVEC_SCANN_BACKEND`` (``faiss`` or ``scann``) when set,
    else ``faiss`` for l2 (the package codes l2 vectors without the residual to their leaf: recall@10 0.6
    against faiss's 0.99 at the same settings on clustered 16-d data, 0.959 against 0.995 on 100k x 128),
    else ``scann`` where the package is importable (better for ip and cosine), else ``faiss``."""
    choice = os.environ.get(SCANN_BACKEND_ENV, "").strip().lower()
    if choice not in ("", "faiss", "scann"):
        raise ValueError(f"{SCANN_BACKEND_ENV} must be 'faiss' or 'scann', not {choice!r}")
    if choice == "faiss" or (choice == "" and metric == "l2"):
        return "faiss"
    if scann_available():
        return "scann"
    if choice == "scann":
        raise ValueError(f"{SCANN_BACKEND_ENV}=scann but the scann package is not importable "
                         "(pip install scann; it has no Arm64 wheels)")
    return "faiss"


def _check_scann_params(params: ScannParams, dim: int) -> None:
    if params.leaves < 0:
        raise ValueError(f"scann leaves must be >= 0 (0 = auto), got {params.leaves}")
    b = params.dims_per_block
    if b < 1 or dim % b:
        fits = [d for d in range(1, min(dim, 16) + 1) if dim % d == 0]
        raise ValueError(f"scann dims_per_block={b} must divide the dimension {dim} "
                         f"(e.g. {', '.join(map(str, fits))})")
    if not params.anisotropic_threshold >= 0:  # also refuses NaN
        raise ValueError(f"scann anisotropic_threshold must be >= 0, got {params.anisotropic_threshold}")
    if params.training_sample < 1:
        raise ValueError(f"scann training_sample must be >= 1, got {params.training_sample}")


def _scann_leaves(params: ScannParams, rows: int) -> int:
    """Partitions for ``rows`` rows: ``params.leaves``, or round(sqrt(rows)); at most the rows trained on."""
    leaves = params.leaves or round(math.sqrt(rows))
    return max(1, min(leaves, rows, params.training_sample))


def _scann_leaves_to_search(params: SearchParams, leaves: int) -> int:
    if params.leaves_to_search < 0:
        raise ValueError(f"scann.leaves_to_search must be >= 0 (0 = auto), got {params.leaves_to_search}")
    return max(1, min(params.leaves_to_search or math.ceil(math.sqrt(leaves)), leaves))


def _scann_fetch(k: int, params: SearchParams, reranking: bool) -> int:
    """Candidates to take by the codes: ``reorder`` (auto max(k * rerank, 100)) when re-scoring, else k."""
    if params.reorder < 0:
        raise ValueError(f"scann.reorder must be >= 0 (0 = auto), got {params.reorder}")
    if not reranking:
        return k
    return max(k, params.reorder or max(k * max(1, params.rerank), _AUTO_REORDER))


def _sample_rows(x: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` rows of ``x``, a fixed-seed uniform sample (in row order) when there are more."""
    if len(x) <= n:
        return x
    pick = np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))
    return x[pick]


class ScannFaissIndex(_IvfIndex):
    """``scann`` on faiss: IndexIVFPQFastScan with 4-bit residual codes, dim / dims_per_block of them.

    The codes are of the residual to the leaf centre (faiss's ``fsr``): for l2 on clustered data, 40
    candidates held 0.98 of the true top 10 against 0.74 with plain fast-scan codes of the same size.
    The anisotropic threshold does not apply.
    """

    method = "scann"
    params_type = ScannParams
    backend: ClassVar[str] = "faiss"
    native_range = False  # approximate codes: range search goes through re-ranked k-NN

    def __init__(self, metric, dim, params, index=None):
        _check_scann_params(params, dim)
        super().__init__(metric, dim, params, index)

    def _factory(self, lists):
        return f"IVF{lists},PQ{self.dim // self.params.dims_per_block}x4fsr"

    def _lists(self, n_train):
        return 1 if n_train is None else _scann_leaves(self.params, n_train)

    def _training_set(self, vectors):
        x = _sample_rows(vectors, self.params.training_sample)
        if len(x) < _SCANN_CODE_CENTRES:  # 16 centres per block: repeat a tiny training set
            x = np.resize(x, (_SCANN_CODE_CENTRES, self.dim))
        return x

    def _fetch(self, k, params, reranking):
        return _scann_fetch(k, params, reranking)

    def _leaves_to_search(self, params):
        return _scann_leaves_to_search(params, self._index.nlist)

    def _faiss_params(self, params, sel, fetch):
        nprobe = _scann_leaves_to_search(params, self._index.nlist)
        return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe) if sel is not None else \
            faiss.SearchParametersIVF(nprobe=nprobe)

    def _write_payload(self, f):
        return {"backend": self.backend}


class ScannPackageIndex(VectorIndex):
    """``scann`` on the scann package: a k-means tree of ``leaves`` over anisotropic 4-bit AH codes (lut16).

    ip and cosine (normalised) use ScaNN's dot-product searcher, which codes the residual to the leaf
    centre with the anisotropic loss; l2 uses its squared-L2 searcher (codes of the vector itself;
    ScaNN has no residual codes for l2). Fewer than 16 rows get an exact brute-force searcher, since
    4-bit codebooks need 16 training rows. Rows are kept in ScaNN's order; ``_pos_ids[i]`` is the
    caller's id of searcher row i. ScaNN's own exact reordering (which would keep a float32 copy of
    every vector) is not configured: candidates are re-scored from the caller's vectors.
    """

    method = "scann"
    params_type = ScannParams
    backend: ClassVar[str] = "scann"
    metrics = ("l2", "ip", "cosine")
    native_range = False

    def __init__(self, metric, dim, params, index=None):
        _check_scann_params(params, dim)
        super().__init__(metric, dim, params, index)
        self._searcher = None  # scann_ops_pybind.ScannSearcher once built
        self._pos_ids = np.zeros(0, np.int64)
        self._max_id = -1  # largest id in _pos_ids
        self._leaves = 0  # leaves of the built tree; 0: no tree (one leaf, or brute force)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # rows added since the last build
        self._lock = threading.Lock()

    def _new_faiss_index(self):
        # Written at offset 0 of the file, so that it stays a readable faiss index; holds nothing.
        return faiss.IndexFlat(self.dim, _FAISS_METRIC[self.metric])

    def _faiss_params(self, params, sel, fetch):
        raise AssertionError("the scann package backend does not search through faiss")

    def _fetch(self, k, params, reranking):
        return _scann_fetch(k, params, reranking)

    @property
    def ntotal(self) -> int:
        return len(self._pos_ids) + sum(len(ids) for _, ids in self._pending)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Collect rows; they are indexed (built or appended) at the next search or save."""
        ids_in = ids
        x, ids = self._rows(vectors, ids)
        if len(x) == 0:
            return
        _scann_or_raise(None)
        # Kept until the next search or save: copy what still shares the caller's buffers.
        x = x.copy() if np.may_share_memory(x, vectors) else x
        ids = ids.copy() if np.may_share_memory(ids, ids_in) else ids
        with self._lock:
            self._pending.append((x, ids))
        self._id_cache = None
        self._max_sq_norm = max(self._max_sq_norm, float(np.einsum("ij,ij->i", x, x).max()))

    def _held_ids(self):
        return np.concatenate([self._pos_ids, *(ids for _, ids in self._pending)])

    def _before_save(self):
        self._ready()

    def _ready(self):
        """The searcher with every added row in it (None while empty): builds or appends pending rows."""
        if self._pending:
            with self._lock:
                if self._pending:
                    x = np.concatenate([v for v, _ in self._pending])
                    ids = np.concatenate([i for _, i in self._pending])
                    if self._searcher is None:
                        self._build(x, ids)
                    else:
                        self._append(x, ids)
                    self._pending = []
        return self._searcher

    def _build(self, x: np.ndarray, ids: np.ndarray) -> None:
        scann = _scann_or_raise(None)
        measure = "squared_l2" if self.metric == "l2" else "dot_product"
        p = self.params
        builder = scann.builder(x, 10, measure)
        leaves = 0
        if len(x) < _SCANN_CODE_CENTRES:
            builder = builder.score_brute_force()
        else:
            sample = _sample_rows(x, p.training_sample)
            n_train = len(sample)
            leaves = _scann_leaves(p, len(x))
            if leaves > 1:
                builder = builder.tree(num_leaves=leaves, num_leaves_to_search=math.ceil(math.sqrt(leaves)),
                                       training_sample_size=n_train)
            else:
                leaves = 0
            threshold = float("nan")
            if measure == "dot_product" and p.anisotropic_threshold > 0:
                norm = float(np.median(np.linalg.norm(sample[:10_000], axis=1)))
                threshold = p.anisotropic_threshold * norm if norm > 0 else float("nan")
            builder = builder.score_ah(p.dims_per_block, anisotropic_quantization_threshold=threshold,
                                       training_sample_size=n_train)
        searcher = builder.build()
        if searcher.size() != len(x):
            raise RuntimeError(f"scann built a searcher of {searcher.size()} rows from {len(x)}")
        self._searcher, self._pos_ids, self._leaves = searcher, ids, leaves
        self._max_id = int(ids.max())

    def _append(self, x: np.ndarray, ids: np.ndarray) -> None:
        raw = self._searcher.searcher
        if not hasattr(raw, "upsert"):
            raise ValueError(f"this scann ({_scann_version()}) cannot add rows to a built index (it has no "
                             "upsert); rebuild the index with every row, or upgrade scann to 1.3 or later")
        before = raw.size()
        raw.upsert([None] * len(x), x, min(len(x), 1024))
        if raw.size() != before + len(x):
            raise RuntimeError(f"scann upsert of {len(x)} rows left {raw.size()} rows, expected {before + len(x)}")
        self._pos_ids = np.concatenate([self._pos_ids, ids])
        self._max_id = max(self._max_id, int(ids.max()))

    def _scann_search(self, searcher, q: np.ndarray, f: int, leaves_to_search: int
                      ) -> tuple[np.ndarray, np.ndarray]:
        """ScaNN's ``f`` best per query: (distances float32 (q, f), caller ids (q, f), -1 where none)."""
        leaves = leaves_to_search if self._leaves else -1
        if len(q) >= 16:
            batch = max(1, math.ceil(len(q) / (os.cpu_count() or 1)))
            pos, raw = searcher.search_batched_parallel(q, f, f, leaves, batch_size=batch)
        else:
            pos, raw = searcher.search_batched(q, f, f, leaves)
        raw = np.asarray(raw, np.float32)
        found = ~np.isnan(raw)  # ScaNN pads short answers with row 0 at distance NaN
        labels = np.where(found, self._pos_ids[np.asarray(pos, np.int64)], -1)
        return np.where(found, raw, 0.0).astype(np.float32), labels

    def _leaves_to_search(self, params):
        return _scann_leaves_to_search(params, max(self._leaves, 1))

    def _candidates(self, q, fetch, params, keep):
        searcher = self._ready()
        qn = self._normalised(q)
        leaves = _scann_leaves_to_search(params, max(self._leaves, 1))
        if keep is None:
            return self._scann_search(searcher, qn, fetch, leaves)
        # No allow-list in ScaNN's numpy API: over-fetch by 1 / (allowed fraction) and filter; widen the
        # fetch while the leaves searched still had more rows, then the leaves, until ``want`` allowed
        # candidates are found or every leaf has been scanned.
        rows = len(self._pos_ids)
        # Allowed ids up to the largest held: at least the allowed rows held (equal when the ids are a
        # segment's positions), and O(ids) bit counting instead of a gather of the mask at every row.
        n_allowed = int(np.count_nonzero(keep[:self._max_id + 1]))
        raw_out = np.zeros((len(q), fetch), np.float32)
        ids_out = np.full((len(q), fetch), -1, np.int64)
        if n_allowed == 0:
            return raw_out, ids_out
        want = min(fetch, n_allowed)
        f = min(rows, max(fetch, math.ceil(want * rows / n_allowed * 1.25) + 16))
        most = max(self._leaves, 1)
        todo = np.arange(len(q))
        while len(todo):
            raw, labels = self._scann_search(searcher, qn[todo], f, leaves)
            found = labels >= 0
            ok = found & keep[np.clip(labels, 0, len(keep) - 1)] & (labels < len(keep))
            drained = found.sum(axis=1) < f  # the leaves searched held fewer than f rows
            done = (ok.sum(axis=1) >= want) | (drained & (leaves >= most))
            if done.any():
                order = np.argsort(~ok[done], axis=1, kind="stable")[:, :fetch]  # allowed first, by rank
                got = np.take_along_axis(ok[done], order, 1)
                ids_out[todo[done], :order.shape[1]] = np.where(got, np.take_along_axis(labels[done], order, 1), -1)
                raw_out[todo[done], :order.shape[1]] = np.take_along_axis(raw[done], order, 1)
            if (drained & ~done).any():
                leaves = min(most, leaves * 2)
            if (~drained & ~done).any():
                f = min(rows, f * 4)
            todo = todo[~done]
        return raw_out, ids_out

    def _write_payload(self, f):
        meta = {"backend": self.backend, "scann_assets": None, "leaves": self._leaves}
        if self._searcher is None:
            return meta
        start = f.tell()
        with tempfile.TemporaryDirectory(prefix="sqlvec-scann-") as tmp:
            self._searcher.serialize(tmp, relative_path=True)
            np.save(os.path.join(tmp, _SCANN_IDS_FILE), self._pos_ids)
            with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(tmp)):
                    tar.add(os.path.join(tmp, name), arcname=name, recursive=False)
        meta.update(scann_assets=[start, f.tell() - start], scann_version=_scann_version())
        return meta

    @classmethod
    def _load_package(cls, path: Path, metric: str, dim: int, params: ScannParams, meta: dict, end: int
                      ) -> ScannPackageIndex:
        """Restore an index whose metadata (ending at ``end``) says the scann package built it."""
        scann = _scann_or_raise(path)
        obj = cls(metric, dim, params)
        obj._max_sq_norm = float(meta.get("max_sq_norm", 0.0))
        assets = meta.get("scann_assets")
        if assets is None:
            return obj
        try:
            start, length = int(assets[0]), int(assets[1])
            if not 0 <= start <= start + length <= end:
                raise ValueError(f"scann assets [{start}, +{length}) outside the file")
            obj._leaves = int(meta.get("leaves", 0))
            with open(path, "rb") as f:
                f.seek(start)
                archive = f.read(length)
            with tempfile.TemporaryDirectory(prefix="sqlvec-scann-") as tmp:
                with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
                    for member in tar.getmembers():
                        name = member.name
                        # Plain files in one directory; no pickles (load_searcher would unpickle docids).
                        if not member.isfile() or name != os.path.basename(name) or name.startswith(".") \
                                or name.endswith(".pkl"):
                            raise ValueError(f"unexpected scann archive member {name!r}")
                        with open(os.path.join(tmp, name), "wb") as out:
                            out.write(tar.extractfile(member).read())
                if not os.path.exists(os.path.join(tmp, "scann_assets.pbtxt")):
                    raise ValueError("scann archive lacks scann_assets.pbtxt")
                ids = np.load(os.path.join(tmp, _SCANN_IDS_FILE), allow_pickle=False)
                searcher = scann.load_searcher(tmp)
        except (ValueError, KeyError, TypeError, IndexError, OSError, RuntimeError, tarfile.TarError) as e:
            raise CorruptionError(path, 0, f"cannot restore the scann searcher: {e}") from e
        if ids.dtype != np.int64 or ids.ndim != 1 or searcher.size() != len(ids):
            raise CorruptionError(path, 0, f"scann searcher holds {searcher.size()} rows but the file has "
                                           f"{ids.shape} {ids.dtype} ids")
        obj._searcher, obj._pos_ids = searcher, ids
        obj._max_id = int(ids.max()) if len(ids) else -1
        return obj


_SCANN_IDS_FILE = "sqlvec_ids.npy"


def _scann_or_raise(path: Path | None) -> ModuleType:
    scann = _scann_module()
    if scann is None:
        where = f"index file {path} was built by" if path is not None else "this index needs"
        raise ScannUnavailable(f"{where} the scann package, which is not installed here (pip install scann; "
                               f"it has no Arm64 wheels); rebuild the index with {SCANN_BACKEND_ENV}=faiss")
    return scann


def _scann_version() -> str:
    try:
        return importlib.metadata.version("scann")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_CLASSES: dict[str, type[VectorIndex]] = {
    c.method: c for c in (FlatIndex, HnswIndex, IvfFlatIndex, IvfPqIndex, IvfSq8Index, ScannFaissIndex)
}

SUPPORTED_METRICS: dict[str, tuple[str, ...]] = {m: c.metrics for m, c in _CLASSES.items()}


def default_params(method: str) -> IndexParams:
    """The method's settings dataclass with its defaults (ValueError for an unknown method)."""
    if method not in _CLASSES:
        raise ValueError(f"unknown index method {method!r}; expected one of {', '.join(METHODS)}")
    return _CLASSES[method].params_type()


def create_index(method: str, metric: str, dim: int, params: IndexParams | None = None,
                 training_vectors: np.ndarray | None = None) -> VectorIndex:
    """A new, empty index. ``params`` defaults to the method's defaults. IVF indexes (and scann on faiss)
    are trained on ``training_vectors`` now (not added: call ``add``), or on the first ``add`` when None;
    flat, hnsw and scann on the scann package (which trains on the rows it indexes) ignore them. The
    scann backend is chosen here (``scann_backend()``)."""
    if method not in _CLASSES:
        raise ValueError(f"unknown index method {method!r}; expected one of {', '.join(METHODS)}")
    kind = _CLASSES[method]
    if method == "scann" and scann_backend(metric) == "scann":
        kind = ScannPackageIndex
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
