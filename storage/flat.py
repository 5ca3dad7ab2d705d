"""Exact (flat) vector search over one segment's vectors, for every pgvector metric.

Distances follow pgvector: l2 ``<->`` sqrt(sum((a-b)^2)); ip ``<#>`` -(a.b); cosine ``<=>``
1 - a.b/(|a||b|) (NaN when a norm is zero); l1 ``<+>`` sum|a-b|. Candidates are ranked with
float32 BLAS kernels, then the best few are re-scored in float64 from the stored values, so the
returned distances and order are exact. Ties keep the lower position first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

METRICS = ("l2", "ip", "cosine", "l1")


class DimensionMismatch(ValueError):
    """A stored vector and the query vector differ in dimension (pgvector raises an error too)."""


@dataclass
class VectorMatrix:
    """A segment's vector column as a dense (n, dim) float32 matrix, plus which rows are NULL."""

    matrix: np.ndarray
    valid: np.ndarray  # bool (n,): False where the vector is NULL
    _sq_norms: np.ndarray | None = None

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array, dim: int) -> VectorMatrix:
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        n = len(arr)
        if pa.types.is_fixed_size_list(arr.type):
            values = arr.values.to_numpy(zero_copy_only=False)
            start = arr.offset * dim
            matrix = values[start:start + n * dim].reshape(n, dim)
        else:  # variable-length list (vector without a declared dimension)
            matrix = np.zeros((n, dim), np.float32)
            lengths = np.asarray(arr.value_lengths().fill_null(dim))
            if (lengths != dim).any():
                bad = int(lengths[lengths != dim][0])
                raise DimensionMismatch(f"different vector dimensions {bad} and {dim}")
            ok = np.asarray(arr.is_valid())
            if ok.any():
                flat = arr.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False)
                matrix[ok] = flat.reshape(-1, dim)
        valid = np.asarray(arr.is_valid())
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        return cls(matrix, valid)

    @property
    def sq_norms(self) -> np.ndarray:
        if self._sq_norms is None:
            self._sq_norms = np.einsum("ij,ij->i", self.matrix, self.matrix)
        return self._sq_norms


def exact_distances(rows: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances from each row of ``rows`` to ``q``."""
    x = rows.astype(np.float64, copy=False)
    q64 = q.astype(np.float64)
    if metric == "l2":
        d = x - q64
        return np.sqrt(np.einsum("ij,ij->i", d, d))
    if metric == "ip":
        return -(x @ q64)
    if metric == "cosine":
        dots = x @ q64
        norms = np.sqrt(np.einsum("ij,ij->i", x, x)) * np.sqrt(q64 @ q64)
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = dots / norms
        sim = np.clip(sim, -1.0, 1.0)
        return 1.0 - sim
    if metric == "l1":
        return np.abs(x - q64).sum(axis=1)
    raise ValueError(f"unknown metric {metric}")


_EXACT_CHUNK = 1 << 16  # rows gathered and scored in float64 at a time: memory stays ~ CHUNK x dim x 16 bytes


def _exact_in_chunks(matrix: np.ndarray, rows: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """``exact_distances(matrix[rows], q)`` a chunk of rows at a time."""
    if len(rows) <= _EXACT_CHUNK:
        return exact_distances(matrix[rows], q, metric)
    out = np.empty(len(rows), np.float64)
    for start in range(0, len(rows), _EXACT_CHUNK):
        part = rows[start: start + _EXACT_CHUNK]
        out[start: start + len(part)] = exact_distances(matrix[part], q, metric)
    return out


def _approximate(vm: VectorMatrix, positions: np.ndarray | None, q: np.ndarray, metric: str) -> np.ndarray:
    """float32 scores whose order matches the exact distances up to rounding."""
    m = vm.matrix if positions is None else vm.matrix[positions]
    q32 = q.astype(np.float32)
    if metric == "l1":
        return np.abs(m - q32).sum(axis=1)
    dots = m @ q32
    if metric == "ip":
        return -dots
    norms = vm.sq_norms if positions is None else vm.sq_norms[positions]
    if metric == "l2":
        return norms - 2 * dots + q32 @ q32
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - dots / (np.sqrt(norms) * np.sqrt(q32 @ q32))


def approximate_distances(vm: VectorMatrix, positions: np.ndarray | None, q: np.ndarray, metric: str, *,
                          squared_l2: bool = False) -> np.ndarray:
    """float32 distances of the rows at ``positions`` (None: all) on pgvector's scale, from BLAS kernels:
    within float32 rounding of the exact ones (a range filter widens its bound by a tolerance and then
    re-checks the candidates with ``exact_distances``). ``squared_l2``: l2 as |x|^2 - 2x.q + |q|^2,
    whose rounding error is bounded by the norms (the root's is not, near zero)."""
    d = _approximate(vm, positions, q, metric)
    return np.sqrt(np.maximum(d, 0)) if metric == "l2" and not squared_l2 else d


def topk(vm: VectorMatrix, allowed: np.ndarray | None, q: np.ndarray, k: int, metric: str
         ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest allowed, non-NULL rows: (positions, float64 distances), nearest first.

    ``allowed`` is a bool mask over the segment's rows (None: all). NaN distances (cosine with a
    zero vector) sort after every number, as PostgreSQL orders NaN above all floats.
    """
    mask = vm.valid if allowed is None else (vm.valid & allowed)
    if mask.all():
        positions = None
        count = len(mask)
    else:
        positions = np.flatnonzero(mask)
        count = len(positions)
    if count == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    # Re-score a margin beyond k so that float32 rounding cannot push a true neighbour out.
    m = min(count, max(4 * k + 32, k))
    if m < count:
        approx = _approximate(vm, positions, q, metric)
        approx = np.where(np.isnan(approx), np.inf, approx)
        cand = np.argpartition(approx, m - 1)[:m]
        boundary = approx[cand].max()
        cand = np.flatnonzero(approx <= boundary)  # keep every tie at the boundary
        rows = cand if positions is None else positions[cand]
    else:  # every row is a candidate (a cursor ordering the whole table): no approximate pass
        rows = np.arange(count) if positions is None else positions
    exact = _exact_in_chunks(vm.matrix, rows, q, metric)
    nan = np.isnan(exact)
    order = np.lexsort((rows, np.where(nan, 0.0, exact), nan))[:k]
    return rows[order].astype(np.int64), exact[order]
