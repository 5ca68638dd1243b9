"""Correlation between two per-cell quantities (e.g. the key gap and the image attention deficit of every
(layer, head)), with a permutation p-value that shuffles only within strata (e.g. within each layer).

Why within strata: both quantities can drift with depth (FastV: image attention collapses after the first
layers; the key gap grows), so a correlation pooled over layers would mostly measure that shared trend. Shuffling
y among the cells of one stratum keeps each stratum's level and asks only whether, inside a stratum, cells
with a larger x have a larger y. Numpy in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StatsInputError
from .permutation import permutation_p_value


@dataclass(frozen=True)
class Correlation:
    """Pearson r of x and y, its two-sided permutation p-value and what it was computed over."""

    r: float
    p_value: float | None
    n: int
    strata: int
    permutations: int
    arrangements: float  # distinct within-stratum arrangements: the p-value cannot go below 1 / this


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((xc * xc).sum() * (yc * yc).sum()))
    return float((xc * yc).sum() / denominator) if denominator > 0 else float("nan")


def stratified_correlation(x, y, strata=None, *, permutations: int = 999, seed: int = 0) -> Correlation:
    """Pearson r over all cells; p = share of within-stratum shuffles of y with |r| at least the observed."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    strata = np.zeros(len(x), np.int64) if strata is None else np.asarray(strata).reshape(-1)
    if not len(x) == len(y) == len(strata):
        raise StatsInputError(f"x, y and strata need one value per cell, got {len(x)}, {len(y)}, {len(strata)}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, strata = x[keep], y[keep], strata[keep]
    if len(x) < 3:
        raise StatsInputError(f"a correlation needs at least 3 cells with both values, got {len(x)}")
    observed = pearson(x, y)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    arrangements = float(np.prod([float(np.prod(np.arange(1, len(g) + 1, dtype=np.float64))) for g in groups]))
    p_value = None
    if permutations > 0 and arrangements > 1 and np.isfinite(observed):
        rng = np.random.default_rng(seed)
        null = np.empty(permutations)
        shuffled = y.copy()
        for i in range(permutations):
            for g in groups:
                shuffled[g] = y[rng.permutation(g)]
            null[i] = abs(pearson(x, shuffled))
        p_value = permutation_p_value(abs(observed) - 1e-12, null)
    return Correlation(observed, p_value, len(x), len(groups), int(permutations), arrangements)
