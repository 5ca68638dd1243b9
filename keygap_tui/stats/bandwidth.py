"""The median heuristic for the Gaussian kernel width, guarded against ties and float32 round-off.

sigma^2 = median pooled off-diagonal squared distance / 2, the convention of alibi-detect's
sigma_median. The paper states no bandwidth; this is our documented default. Callers that compare
several pairings (image-vs-text and the controls) should fit it once on the pooled data of one
(model, layer) and pass the float to every comparison, so the values share a kernel.

Why a guard: keys repeat exactly (the system prompt is identical in every item under causal attention),
and when over half of the pooled pairs are duplicates the median distance is 0. In float32 the
distances of duplicates come out as round-off of the size eps * |z|^2 rather than 0, so an unguarded
median returns a tiny sigma^2 (3.8e-8 was seen on data of scale 1) that makes the kernel an indicator
of round-off. The fit therefore compares the median against the scale of the data (the mean pairwise
squared distance): below DEGENERATE_RATIO of it, the distances are recomputed in float64; if the
float64 median is still 0 the mean pairwise squared distance / 2 is used instead. BandwidthFit.rule
says which (docs/STATISTICS.md, "Bandwidth").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StatsInputError

#: a float32 median below this fraction of the mean pairwise squared distance is re-checked in float64.
DEGENERATE_RATIO = 1e-3
#: a float64 median at or below this fraction of the mean is round-off of duplicate rows, i.e. 0.
FLOAT64_ZERO_RATIO = 1e-9
#: the kernel engine runs in float64 when the largest centred squared norm exceeds this many sigma^2:
#: the float32 exponent then errs by more than ~1e-3 on pairs of such rows (eps32 * |z|^2, |z| in sigmas).
FLOAT32_MAX_NORM_RATIO = 1e4

MEDIAN = "median"
MEDIAN_FLOAT64 = "median (float64: the float32 median was below the data's round-off scale)"
MEAN_FALLBACK = "mean (the median pooled distance is 0: over half the pooled pairs are duplicates)"


@dataclass(frozen=True)
class BandwidthFit:
    """sigma^2 and how it was obtained; median_sq / mean_sq are over the rows the fit used."""

    sigma_sq: float
    rule: str
    median_sq: float
    mean_sq: float
    points: int


def median_bandwidth(pooled, *, max_points: int = 2000, seed: int = 0) -> float:
    """sigma^2 for k(x, y) = exp(-|x - y|^2 / (2 sigma^2)); see fit_bandwidth for the rules."""
    return fit_bandwidth(pooled, max_points=max_points, seed=seed).sigma_sq


def fit_bandwidth(pooled, *, max_points: int = 2000, seed: int = 0) -> BandwidthFit:
    """The guarded median heuristic.

    pooled: a [rows, dim] array, or a tuple (x, y) meaning their concatenation (no copy is made).
    Exact over all pairs while the pooled rows <= max_points; otherwise over a subset of max_points
    rows drawn without replacement by np.random.default_rng(seed)."""
    parts = [np.asarray(p) for p in pooled] if isinstance(pooled, (tuple, list)) else [np.asarray(pooled)]
    if any(p.ndim != 2 for p in parts) or len({p.shape[1] for p in parts}) != 1:
        raise StatsInputError("median bandwidth needs [rows, dim] arrays of one dimension")
    total = sum(p.shape[0] for p in parts)
    if total < 2:
        raise StatsInputError(f"median bandwidth needs at least 2 pooled rows, got {total}")
    if max_points < 2:
        raise StatsInputError(f"max_points={max_points}; pass at least 2")
    if total > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))
        points = np.concatenate(_take_pooled_rows(parts, rows))
    else:
        points = np.concatenate(parts) if len(parts) > 1 else parts[0]
    centred64 = np.asarray(points, dtype=np.float64)
    centred64 = centred64 - centred64.mean(axis=0)
    count = centred64.shape[0]
    # mean over pairs i != j of |z_i - z_j|^2 = 2 n / (n - 1) * mean |z_i|^2 for centred z
    mean_sq = float(2.0 * np.einsum("ij,ij->", centred64, centred64) / (count - 1))
    if not np.isfinite(mean_sq) or mean_sq <= 0.0:
        raise StatsInputError(
            "all pooled points are identical, so no bandwidth fits them; pass bandwidth=<float sigma^2>"
        )
    median = _median_sq_distance(centred64.astype(np.float32))
    rule = MEDIAN
    if median < DEGENERATE_RATIO * mean_sq:
        median = _median_sq_distance(centred64)
        rule = MEDIAN_FLOAT64
        if median <= FLOAT64_ZERO_RATIO * mean_sq:  # float64 round-off of duplicates, not a distance
            return BandwidthFit(mean_sq / 2.0, MEAN_FALLBACK, 0.0, mean_sq, count)
    return BandwidthFit(median / 2.0, rule, median, mean_sq, count)


def precision_for(x: np.ndarray, y: np.ndarray, sigma_sq: float) -> str:
    """'float64' when float32 cannot resolve exp(-|a-b|^2 / (2 sigma^2)) for the largest rows, else 'float32'."""
    mean = (x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / (len(x) + len(y))
    largest = max(_max_sq_norm(x, mean), _max_sq_norm(y, mean))
    return "float64" if largest > FLOAT32_MAX_NORM_RATIO * sigma_sq else "float32"


def _max_sq_norm(rows: np.ndarray, mean: np.ndarray) -> float:
    best = 0.0
    for s in range(0, len(rows), 4096):
        block = rows[s : s + 4096].astype(np.float64) - mean
        best = max(best, float(np.einsum("ij,ij->i", block, block).max()))
    return best


def _median_sq_distance(centred: np.ndarray) -> float:
    """Median over pairs i < j of |z_i - z_j|^2 in the precision of `centred` (Gram form, float64 median)."""
    half_sq_norm = 0.5 * np.einsum("ij,ij->i", centred, centred, dtype=np.float64)
    gram = (centred @ centred.T).astype(np.float64)
    upper = np.triu_indices(centred.shape[0], k=1)
    sq_dist = 2.0 * (half_sq_norm[upper[0]] + half_sq_norm[upper[1]] - gram[upper])
    median = float(np.median(np.maximum(sq_dist, 0.0)))
    return median if np.isfinite(median) else 0.0


def _take_pooled_rows(parts: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """Rows (sorted indices into the virtual concatenation of parts), gathered part by part."""
    out, offset = [], 0
    for part in parts:
        mine = rows[(rows >= offset) & (rows < offset + part.shape[0])] - offset
        out.append(part[mine])
        offset += part.shape[0]
    return out
