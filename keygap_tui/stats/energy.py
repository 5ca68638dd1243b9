"""Energy distance (Szekely & Rizzo): 2 E|X-Y| - E|X-X'| - E|Y-Y'|, with a sample-level permutation test.

Convention: value is that squared-form statistic. scipy.stats.energy_distance (1-D only) returns its
square root, sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) = sqrt(2) * the L2 distance between the two CDFs, so
value == scipy_value ** 2 for the default V-statistic ('biased', all pairs incl. i == j, as scipy and
dcor compute it). 'unbiased' averages the within-side distances over i != j instead.
It is the MMD of the distance-induced kernel, so it runs on the same blocked kernel-sum engine, with the
same design-aware permutation test (permutation.py) and bootstrap interval over samples (bootstrap.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .bootstrap import DEFAULT_CI_METHOD, DEFAULT_CI_REPLICATES, check_ci, ci_record, interval, resample_weights
from .inputs import as_groups, as_pair, check_choice, check_count, resolve_device
from .kernel_sums import Kernel, PairSums, exact_sums, prefix_reporter, resolve_block
from .permutation import permutation_p_value, plan_splits
from .result import MeasureResult


def energy_distance(
    x,
    y,
    *,
    groups_x=None,
    groups_y=None,
    seed: int = 0,
    estimator: str = "biased",
    permutations: int = 0,
    device: str = "auto",
    block: int | str = "auto",
    ci: float | None = None,
    ci_replicates: int = DEFAULT_CI_REPLICATES,
    ci_method: str = DEFAULT_CI_METHOD,
    keep_null: bool = False,
    progress: Callable[[float], None] | None = None,
    on_estimate: Callable[[int, int, float], None] | None = None,
) -> MeasureResult:
    """progress / on_estimate: as for mmd (the exact statistic of a growing random subset after each block).
    permutations, ci, ci_replicates, ci_method: as for mmd."""
    started = time.perf_counter()
    check_choice("estimator", estimator, ("biased", "unbiased"))
    permutations = check_count("permutations", permutations, 0)
    level = check_ci(ci, ci_replicates, ci_method)
    x, y = as_pair(x, y, min_rows=2)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    torch_device = resolve_device(device)
    splits = plan_splits(len(x), len(y), groups, permutations, seed)
    block_rows = resolve_block(block)
    kernel = Kernel("distance")
    boot_weights = resample_weights(splits.design, ci_replicates, seed) if level is not None else None
    sums, boot = exact_sums(x, y, splits.distinct, kernel, weights=boot_weights, device=torch_device,
                            block_rows=block_rows, progress=progress,
                            on_prefix=prefix_reporter(on_estimate, energy_from_sums, estimator))
    observed, null = splits.observed_and_null(energy_from_sums(sums, estimator))
    extra = {"sqrt": float(np.sqrt(max(observed, 0.0))), **splits.design.record()}
    p_value = None
    if permutations:
        p_value = permutation_p_value(observed, null)
        extra.update(null_mean=float(np.nanmean(null)), null_std=float(np.nanstd(null)))
        if keep_null:
            extra["null"] = null.tolist()
    params = {
        "estimator": estimator,
        "permutations": permutations,
        "permutation_unit": splits.design.unit,
        "device": str(torch_device),
        "block": block_rows,
        "convention": "2E|X-Y| - E|X-X'| - E|Y-Y'| (scipy.stats.energy_distance returns its square root)",
    }
    ci_bounds = None
    if boot is not None and level is not None:
        ci_bounds = interval(observed, energy_from_sums(boot, estimator), level, ci_method)
        params.update(ci_record(level, ci_replicates, ci_method, splits.design))
    return MeasureResult("energy", observed, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra, ci_bounds)


def energy_from_sums(sums: PairSums, estimator: str) -> np.ndarray:
    n = sums.n_a.astype(np.float64)
    m = sums.n_b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimator == "unbiased":
            within = sums.within_a / sums.pairs_a + sums.within_b / sums.pairs_b
        else:
            within = sums.within_a / (n * n) + sums.within_b / (m * m)
        return 2.0 * sums.between / (n * m) - within
