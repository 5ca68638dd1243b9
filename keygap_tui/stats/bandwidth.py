"""The median heuristic for the Gaussian kernel width.

sigma^2 = median pooled off-diagonal squared distance / 2, the convention of alibi-detect's
sigma_median. The paper states no bandwidth; this is our documented default. Callers that compare
several pairings (image-vs-text and the controls) should fit it once on the pooled data of one
(model, layer) and pass the float to every comparison, so the values share a kernel."""

from __future__ import annotations

import numpy as np

from .errors import StatsInputError


def median_bandwidth(pooled, *, max_points: int = 2000, seed: int = 0) -> float:
    """sigma^2 for k(x, y) = exp(-|x - y|^2 / (2 sigma^2)).

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
    points = np.asarray(points, dtype=np.float32)
    points = points - points.mean(axis=0, dtype=np.float64).astype(np.float32)  # centring keeps float32 exact enough
    half_sq_norm = 0.5 * np.einsum("ij,ij->i", points, points, dtype=np.float64)
    gram = (points @ points.T).astype(np.float64)
    upper = np.triu_indices(points.shape[0], k=1)
    sq_dist = 2.0 * (half_sq_norm[upper[0]] + half_sq_norm[upper[1]] - gram[upper])
    median = float(np.median(np.maximum(sq_dist, 0.0)))
    if not np.isfinite(median) or median <= 0.0:
        raise StatsInputError(
            "the median pairwise distance is 0 (over half the points are identical); pass bandwidth=<float sigma^2>"
        )
    return median / 2.0


def _take_pooled_rows(parts: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """Rows (sorted indices into the virtual concatenation of parts), gathered part by part."""
    out, offset = [], 0
    for part in parts:
        mine = rows[(rows >= offset) & (rows < offset + part.shape[0])] - offset
        out.append(part[mine])
        offset += part.shape[0]
    return out
