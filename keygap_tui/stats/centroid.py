"""Centroid gap |mu_a - mu_b| and the cosine between the two means ("Mind the Gap", Liang et al. 2022).

The cosine is taken between the raw (uncentred) means, as in that paper: it says whether the two
modalities point the same way from the origin of the key space, which is what a query's dot product sees.
Optional permutation test on the gap, moving whole samples; every permuted mean comes from one GEMM
of the membership matrix with the data.
"""

from __future__ import annotations

import time

import numpy as np

from .inputs import as_groups, as_pair, check_count
from .permutation import permutation_membership, permutation_p_value
from .result import MeasureResult


def centroid_gap(x, y, *, groups_x=None, groups_y=None, seed: int = 0, permutations: int = 0,
                 keep_null: bool = False) -> MeasureResult:
    started = time.perf_counter()
    permutations = check_count("permutations", permutations, 0)
    x, y = as_pair(x, y, min_rows=1)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    mu_a = x.mean(axis=0, dtype=np.float64)
    mu_b = y.mean(axis=0, dtype=np.float64)
    gap = float(np.linalg.norm(mu_a - mu_b))
    norm_a, norm_b = float(np.linalg.norm(mu_a)), float(np.linalg.norm(mu_b))
    cosine = float(mu_a @ mu_b / (norm_a * norm_b)) if norm_a > 0 and norm_b > 0 else float("nan")
    extra = {"cosine": cosine, "mean_norm_a": norm_a, "mean_norm_b": norm_b, "gap_squared": gap * gap}
    p_value = None
    if permutations:
        membership = permutation_membership(
            len(x), len(y), permutations,
            groups_x=None if groups is None else groups[0],
            groups_y=None if groups is None else groups[1],
            seed=seed,
        )[:, 1:]
        total = mu_a * len(x) + mu_b * len(y)
        a = membership.T.astype(np.float32)
        sums_a = (a[:, : len(x)] @ x).astype(np.float64) + (a[:, len(x):] @ y).astype(np.float64)
        n_a = membership.sum(axis=0).astype(np.float64)[:, None]
        null = np.linalg.norm(sums_a / n_a - (total - sums_a) / (len(x) + len(y) - n_a), axis=1)
        p_value = permutation_p_value(gap, null)
        extra.update(null_mean=float(null.mean()), null_std=float(null.std()))
        if keep_null:
            extra["null"] = null.tolist()
    params = {"permutations": permutations, "permutation_unit": "row" if groups is None else "sample",
              "cosine_of": "raw means (uncentred)"}
    return MeasureResult("centroid", gap, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra)
