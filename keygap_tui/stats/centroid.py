"""Centroid gap |mu_a - mu_b| and the cosine between the two means ("Mind the Gap", Liang et al. 2022).

The cosine is taken between the raw (uncentred) means, as in that paper: it says whether the two
modalities point the same way from the origin of the key space, which is what a query's dot product sees.
Optional design-aware permutation test on the gap (permutation.py) and bootstrap interval over samples
(bootstrap.py). The observed gap and every permuted or resampled one come from the same float64 product
of a weight matrix with the centred data, so a draw that reproduces the observed split ties with it.
"""

from __future__ import annotations

import time

import numpy as np

from .bootstrap import DEFAULT_CI_METHOD, DEFAULT_CI_REPLICATES, check_ci, ci_record, interval, resample_weights
from .inputs import as_groups, as_pair, check_count
from .permutation import permutation_p_value, plan_splits
from .result import MeasureResult


def centroid_gap(x, y, *, groups_x=None, groups_y=None, seed: int = 0, permutations: int = 0,
                 ci: float | None = None, ci_replicates: int = DEFAULT_CI_REPLICATES,
                 ci_method: str = DEFAULT_CI_METHOD, keep_null: bool = False) -> MeasureResult:
    """permutations, ci, ci_replicates, ci_method: as for mmd."""
    started = time.perf_counter()
    permutations = check_count("permutations", permutations, 0)
    level = check_ci(ci, ci_replicates, ci_method)
    x, y = as_pair(x, y, min_rows=1)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    mu_a = x.mean(axis=0, dtype=np.float64)
    mu_b = y.mean(axis=0, dtype=np.float64)
    norm_a, norm_b = float(np.linalg.norm(mu_a)), float(np.linalg.norm(mu_b))
    pooled_mean = (mu_a * len(x) + mu_b * len(y)) / (len(x) + len(y))
    splits = plan_splits(len(x), len(y), groups, permutations, seed)
    weights = splits.distinct.astype(np.float64)
    observed, null = splits.observed_and_null(_gaps(x, y, pooled_mean, weights, 1.0 - weights))
    extra: dict = {"mean_norm_a": norm_a, "mean_norm_b": norm_b, "gap_squared": observed * observed,
                   **splits.design.record()}
    if norm_a > 0 and norm_b > 0:
        extra["cosine"] = float(mu_a @ mu_b / (norm_a * norm_b))
    else:
        extra["cosine"] = None
        extra["cosine_undefined"] = "a side's mean key is the zero vector"
    p_value = None
    if permutations:
        p_value = permutation_p_value(observed, null)
        extra.update(null_mean=float(null.mean()), null_std=float(null.std()))
        if keep_null:
            extra["null"] = null.tolist()
    params = {"permutations": permutations, "permutation_unit": splits.design.unit,
              "cosine_of": "raw means (uncentred)"}
    ci_bounds = None
    if level is not None:
        w_a, w_b = resample_weights(splits.design, ci_replicates, seed)
        ci_bounds = interval(observed, _gaps(x, y, pooled_mean, w_a, w_b), level, ci_method)
        params.update(ci_record(level, ci_replicates, ci_method, splits.design))
    return MeasureResult("centroid", observed, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra, ci_bounds)


def _gaps(x, y, pooled_mean, weights_a, weights_b) -> np.ndarray:
    """|mean_a - mean_b| for every column of the row weights ([n_a + n_b, C] each), in float64."""
    sums_a = _weighted_sums(x, y, pooled_mean, weights_a)
    sums_b = _weighted_sums(x, y, pooled_mean, weights_b)
    count_a = weights_a.sum(axis=0)[:, None]
    count_b = weights_b.sum(axis=0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.norm(sums_a / count_a - sums_b / count_b, axis=1)


def _weighted_sums(x, y, pooled_mean, weights) -> np.ndarray:
    """[C, d] = weights' (pooled rows - pooled mean), in float64 (centring keeps the difference exact)."""
    out = np.zeros((weights.shape[1], x.shape[1]))
    offset = 0
    for source in (x, y):
        for s in range(0, len(source), 4096):
            block = source[s : s + 4096].astype(np.float64) - pooled_mean
            out += weights[offset + s : offset + s + len(block)].T.astype(np.float64) @ block
        offset += len(source)
    return out
