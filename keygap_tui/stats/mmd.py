"""Maximum mean discrepancy between two key sets, with a design-aware permutation test and bootstrap intervals.

Defaults are ours (the paper states none; docs/STATISTICS.md, "MMD"): unbiased U-statistic MMD^2 with a
Gaussian kernel whose sigma^2 is the pooled median heuristic (guarded against ties, bandwidth.py). value
is MMD^2 itself (not its root), so under the null it is centred on 0 and can be slightly negative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from .bandwidth import fit_bandwidth, precision_for
from .bootstrap import DEFAULT_CI_METHOD, DEFAULT_CI_REPLICATES, check_ci, ci_record, interval, resample_weights
from .errors import StatsInputError
from .inputs import as_groups, as_pair, check_choice, check_count, resolve_device
from .kernel_sums import Kernel, PairSums, exact_sums, prefix_reporter, resolve_block
from .permutation import draw_splits, permutation_p_value, plan_splits
from .result import MeasureResult
from .rff import rff_pair_sums, rff_weighted_sums

#: method="auto" uses the exact estimator up to this many pooled rows (n + m), random Fourier features
#: above it when they can reach RFF_TARGET_RATIO more cheaply than the exact sums (see _resolve_rff).
AUTO_EXACT_MAX_POOLED = 20_000
#: the RFF approximation error (its standard error over feature draws, measured on the data) must stay
#: below this fraction of the statistic's null standard deviation when method="auto" picks RFF.
RFF_TARGET_RATIO = 0.3
#: features per scale of the pilot under rff_features="auto"; more are drawn if its error is too large.
RFF_PILOT_FEATURES = 512
#: rff_features="auto" never goes beyond this many features per scale (method="rff" then reports the ratio).
RFF_MAX_FEATURES = 65536
#: RFF with D features per scale costs about RFF_COST_FACTOR * D / N of the exact sums over N pooled rows
#: (measured at d = 128 on 2 cores: D = 4096 took 0.36-0.63 of the exact time at N = 24,000; docs/STATISTICS.md).
RFF_COST_FACTOR = 3.0
#: draws used only to measure the null standard deviation for that check when permutations are fewer.
RFF_CHECK_DRAWS = 50
#: the multi-scale kernel: sigma times each factor, kernels averaged.
MULTI_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def mmd(
    x,
    y,
    *,
    groups_x=None,
    groups_y=None,
    seed: int = 0,
    estimator: str = "unbiased",
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    bandwidth_max_points: int = 2000,
    scales: Sequence[float] | None = None,
    permutations: int = 0,
    method: str = "auto",
    rff_features: int | str = "auto",
    device: str = "auto",
    block: int | str = "auto",
    ci: float | None = None,
    ci_replicates: int = DEFAULT_CI_REPLICATES,
    ci_method: str = DEFAULT_CI_METHOD,
    keep_null: bool = False,
    progress: Callable[[float], None] | None = None,
    on_estimate: Callable[[int, int, float], None] | None = None,
) -> MeasureResult:
    """MMD^2 of x vs y.

    bandwidth: 'median' (pooled median heuristic, see bandwidth.fit_bandwidth) or sigma^2 as a float; pass
    the same float to every pairing you want to compare. scales: None, or factors that multiply sigma (the
    kernel is the mean over them; MULTI_SCALES is the usual choice). permutations: B > 0 adds a test whose
    draws follow the design read from groups_* (permutation.py: whole samples for disjoint sides, a swap
    within each sample for shared ones); p = (1 + #{null >= observed}) / (1 + B); the draw is
    permutation_membership(..., seed=seed). method: 'exact' (blocked, bounded memory), 'rff' (random
    Fourier features, rff_features of them per scale), 'auto' (exact up to AUTO_EXACT_MAX_POOLED pooled
    rows, then RFF with enough features to keep their error below RFF_TARGET_RATIO of the null standard
    deviation, or exact where that would cost more). ci: a level such as 0.95 adds a bootstrap interval
    over samples (ci_replicates resamples, ci_method 'percentile' or 'basic'). progress(fraction) is
    called as the exact computation advances; on_estimate(n_a, n_b, value) receives the exact MMD^2 of a
    growing random subset of the rows (same estimator and kernel) after each block, for a display that
    sharpens while it runs. Raise from either callback to cancel. keep_null=True also returns the B null
    values in extra['null'] (for checks; otherwise only their mean, std and 95% quantile)."""
    started = time.perf_counter()
    check_choice("estimator", estimator, ("unbiased", "biased"))
    check_choice("kernel", kernel, ("gaussian",))
    check_choice("method", method, ("auto", "exact", "rff"))
    permutations = check_count("permutations", permutations, 0)
    if rff_features != "auto":
        rff_features = check_count("rff_features", rff_features, 1)
    level = check_ci(ci, ci_replicates, ci_method)
    x, y = as_pair(x, y, min_rows=2)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    torch_device = resolve_device(device)
    scale_tuple = _scales(scales)
    block_rows = resolve_block(block)

    record: dict = {}
    if isinstance(bandwidth, str):
        check_choice("bandwidth", bandwidth, ("median",))
        fit = fit_bandwidth((x, y), max_points=bandwidth_max_points, seed=seed)
        sigma_sq, record["bandwidth_rule"] = fit.sigma_sq, fit.rule
    else:
        sigma_sq, record["bandwidth_rule"] = _positive_float("bandwidth", bandwidth), "given"
    precision = precision_for(x, y, sigma_sq * min(scale_tuple) ** 2)
    k = Kernel("gaussian", sigma_sq, scale_tuple)
    splits = plan_splits(len(x), len(y), groups, permutations, seed)
    n_pooled = len(x) + len(y)
    resolved_method = method if method != "auto" else ("exact" if n_pooled <= AUTO_EXACT_MAX_POOLED else "rff")

    boot_weights = resample_weights(splits.design, ci_replicates, seed) if level is not None else None
    boot_sums = None
    extra: dict = {}
    features_used = None
    if resolved_method == "rff":
        resolved_method, features_used, stats, rff_record = _rff_statistics(
            x, y, splits, k, estimator, method, rff_features, seed, torch_device, precision, permutations)
        extra.update(rff_record)
    if resolved_method == "exact":
        sums, boot_sums = exact_sums(x, y, splits.distinct, k, weights=boot_weights, device=torch_device,
                                     block_rows=block_rows, progress=progress,
                                     on_prefix=prefix_reporter(on_estimate, mmd_from_sums, estimator),
                                     precision=precision)
        stats = mmd_from_sums(sums, estimator)
    elif progress is not None:
        progress(1.0)
    observed, null = splits.observed_and_null(stats)
    extra["mmd"] = float(np.sqrt(max(observed, 0.0)))
    extra.update(splits.design.record())
    p_value = None
    if permutations:
        p_value = permutation_p_value(observed, null)
        extra.update(null_mean=float(np.nanmean(null)), null_std=float(np.nanstd(null)),
                     null_q95=float(np.nanquantile(null, 0.95)))
        if keep_null:
            extra["null"] = null.tolist()
    ci_bounds = None
    if boot_weights is not None and level is not None:
        if boot_sums is None:  # RFF: the same features, weighted
            assert features_used is not None
            boot_sums = rff_weighted_sums(x, y, *boot_weights, k, features=features_used, seed=seed,
                                          device=torch_device, precision=precision)
        ci_bounds = interval(observed, mmd_from_sums(boot_sums, estimator), level, ci_method)
        record.update(ci_record(level, ci_replicates, ci_method, splits.design))
    params = {
        "estimator": estimator,
        "kernel": kernel,
        "bandwidth": sigma_sq,
        "bandwidth_max_points": bandwidth_max_points,
        "scales": None if scales is None else list(scale_tuple),
        "permutations": permutations,
        "permutation_unit": splits.design.unit,
        "method": resolved_method,
        "method_requested": method,
        "auto_exact_max_pooled": AUTO_EXACT_MAX_POOLED,
        "rff_features": features_used if resolved_method == "rff" else None,
        "rff_features_requested": rff_features,
        "precision": precision,
        "device": str(torch_device),
        "block": block_rows if resolved_method == "exact" else None,
        "centring": "pooled mean",
        **record,
    }
    return MeasureResult("mmd", observed, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra, ci_bounds)


def _rff_statistics(x, y, splits, k: Kernel, estimator: str, method: str, rff_features, seed: int, device,
                    precision: str, permutations: int):
    """RFF statistics of every distinct split, with the error check of rff.py's docstring.

    rff_features='auto': a pilot with RFF_PILOT_FEATURES measures the error ratio; since the error falls as
    1 / sqrt(features), the count that reaches RFF_TARGET_RATIO (with 20% to spare) follows, and is used
    unless (method 'auto') the exact sums would be cheaper. Returns (method used, features per scale,
    statistics per distinct split or None, record for extra)."""
    columns = splits.distinct
    check_columns = 0
    if permutations < RFF_CHECK_DRAWS:  # too few draws of the user's to measure the null spread: add some
        check = draw_splits(splits.design, RFF_CHECK_DRAWS, int(np.random.default_rng([seed, 2]).integers(2**31)))
        columns = np.concatenate([columns, check[:, 1:]], axis=1)
        check_columns = RFF_CHECK_DRAWS
    adaptive = rff_features == "auto"
    features = RFF_PILOT_FEATURES if adaptive else int(rff_features)
    n_pooled = len(x) + len(y)
    while True:
        feature_sums = rff_pair_sums(x, y, columns, k, features=features, seed=seed, device=device,
                                     precision=precision)
        stats = mmd_from_sums(feature_sums.sums, estimator)
        if check_columns:
            null = stats[-check_columns:]
            stats = stats[:-check_columns]
        else:
            null = stats[splits.inverse[1:]]
        null_std = float(np.nanstd(null))
        error_se = feature_sums.error_se(estimator)
        ratio = error_se / null_std if null_std > 0 else math.inf
        record: dict[str, float | str] = {"rff_error_se": error_se, "rff_null_std": null_std, "rff_error_ratio": ratio,
                  "rff_target_ratio": RFF_TARGET_RATIO}
        if not adaptive or ratio <= RFF_TARGET_RATIO or features >= RFF_MAX_FEATURES:
            return "rff", features, stats, record
        needed = int(math.ceil(features * (ratio / RFF_TARGET_RATIO) ** 2 * 1.2 / 256.0)) * 256
        if method == "auto" and (not math.isfinite(ratio) or needed * len(k.scales) * RFF_COST_FACTOR >= n_pooled):
            record["rff_fallback"] = (f"exact: RFF needed ~{needed} features per scale for error ratio "
                                      f"{RFF_TARGET_RATIO} (pilot ratio {ratio:.3g}), which costs more")
            return "exact", None, None, record
        features = min(max(needed, features + 256), RFF_MAX_FEATURES)


def mmd_from_sums(sums: PairSums, estimator: str) -> np.ndarray:
    """MMD^2 for every split. Unbiased: within-side means over i != j; biased: V-statistic (all pairs)."""
    n = sums.n_a.astype(np.float64)
    m = sums.n_b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimator == "unbiased":
            value = sums.within_a / sums.pairs_a + sums.within_b / sums.pairs_b - 2.0 * sums.between / (n * m)
            value[(n < 2) | (m < 2)] = np.nan
        else:
            value = ((sums.within_a + sums.diag_a) / (n * n) + (sums.within_b + sums.diag_b) / (m * m)
                     - 2.0 * sums.between / (n * m))
            value[(n < 1) | (m < 1)] = np.nan
    return value


def _scales(scales) -> tuple[float, ...]:
    if scales is None:
        return (1.0,)
    try:
        values = tuple(float(s) for s in scales)
    except TypeError:
        raise StatsInputError(
            f"scales={scales!r}; pass None or a list of positive factors like {MULTI_SCALES}"
        ) from None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise StatsInputError(f"scales={scales!r}; pass None or a list of positive factors like {MULTI_SCALES}")
    return values


def _positive_float(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise StatsInputError(f"{name}={value!r}; pass 'median' or a positive number") from None
    if not np.isfinite(value) or value <= 0:
        raise StatsInputError(f"{name}={value!r}; pass 'median' or a positive number")
    return value
