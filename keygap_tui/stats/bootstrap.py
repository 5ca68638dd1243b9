"""Bootstrap confidence intervals over samples (benchmark items), so that two values can be compared.

The resampling unit is the same block as in the permutation test (permutation.py): a sample's rows move
together, because its tokens are correlated. A sample present on both sides is drawn as a pair (its two
blocks keep their shared effect); samples on one side only are drawn with replacement within their side.
Each replicate is a vector of row multiplicities per side; the measures evaluate their statistic with
those weights through their usual engines (kernel sums, feature sums, histograms, means).

Interval: 'percentile' (the alpha/2 and 1 - alpha/2 quantiles of the replicates) or 'basic' (their
reflection about the estimate, 2 theta - q, which removes the bootstrap's estimate of bias). Which one is
the default, and the coverage each reached in simulation (somewhat below nominal with few samples), is in
docs/STATISTICS.md ("Confidence intervals").
"""

from __future__ import annotations

import numpy as np

from .errors import StatsInputError
from .inputs import check_choice, check_count
from .permutation import Design

CI_METHODS = ("basic", "percentile")
#: at a nominal 90% the basic interval covered 76-90% in every simulated design; the percentile one fell to
#: 47-73% for disjoint sides with a shift small against the noise (docs/STATISTICS.md, "Confidence intervals").
DEFAULT_CI_METHOD = "basic"
DEFAULT_CI_REPLICATES = 200


def check_ci(ci, replicates, method) -> float | None:
    """Validated confidence level (None: no interval)."""
    check_choice("ci_method", method, CI_METHODS)
    check_count("ci_replicates", replicates, 10)
    if ci is None or ci == 0:
        return None
    try:
        level = float(ci)
    except (TypeError, ValueError):
        raise StatsInputError(f"ci={ci!r}; pass a confidence level such as 0.95 (or none)") from None
    if not 0.5 <= level < 1.0:
        raise StatsInputError(f"ci={ci!r}; pass a confidence level between 0.5 and 1, such as 0.95")
    return level


def resample_weights(design: Design, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row multiplicities (float32 [n_rows, replicates]) of side a and of side b for each replicate.

    Drawn from np.random.default_rng([seed, 3]), a stream apart from the permutation draw."""
    rng = np.random.default_rng([seed, 3])
    n_blocks = len(design.observed_on_a)
    counts = np.zeros((replicates, n_blocks), dtype=np.float32)
    if design.shared:
        drawn = rng.multinomial(design.shared, np.full(design.shared, 1.0 / design.shared), size=replicates)
        counts[:, design.pair_a] = drawn
        counts[:, design.pair_b] = drawn
    paired = np.zeros(n_blocks, bool)
    paired[design.pair_a] = True
    paired[design.pair_b] = True
    for side in (True, False):
        alone = np.flatnonzero(~paired & (design.observed_on_a == side))
        if len(alone):
            counts[:, alone] = rng.multinomial(len(alone), np.full(len(alone), 1.0 / len(alone)), size=replicates)
    rows = counts[:, design.block_of_row].T  # [n_rows, replicates]
    on_a = design.observed_on_a[design.block_of_row][:, None]
    return np.ascontiguousarray(rows * on_a), np.ascontiguousarray(rows * ~on_a)


def interval(estimate: float, replicates: np.ndarray, level: float, method: str) -> tuple[float, float]:
    """Two-sided interval from the bootstrap replicates (NaN replicates, e.g. a side left with one row, ignored)."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 10:
        raise StatsInputError("fewer than 10 bootstrap replicates gave a value; load more samples or drop ci")
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    if method == "basic":
        low, high = 2.0 * estimate - high, 2.0 * estimate - low
    return float(low), float(high)


def ci_record(level: float, replicates: int, method: str, design: Design) -> dict:
    """The params entries every measure with an interval stores."""
    return {"ci": level, "ci_replicates": replicates, "ci_method": method,
            "ci_unit": "row" if design.unit == "row" else "sample (pairs drawn together)"}
