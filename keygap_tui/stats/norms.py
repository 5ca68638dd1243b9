"""Key-norm distributions per side. Attention-sink tokens can carry norms > 100x the median
(arXiv 2503.03321); such rows dominate Euclidean measures, so their count is reported beside the
quantiles and the headline is a robust ratio of medians. A side whose median norm is 0 (over half its
keys are zero vectors: a broken capture, or padding) has no ratio: that is an error, never an inf."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .errors import StatsInputError
from .inputs import as_pair
from .result import MeasureResult

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def norm_summary(x, y, *, groups_x=None, groups_y=None, seed: int = 0, quantiles: Sequence[float] = QUANTILES,
                 outlier_factor: float = 10.0) -> MeasureResult:
    """value = median |x_i| / median |y_i|; extra: quantiles, mean, and rows above outlier_factor x the
    pooled median."""
    started = time.perf_counter()
    x, y = as_pair(x, y, min_rows=1)
    norm_a = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    norm_b = np.sqrt(np.einsum("ij,ij->i", y, y, dtype=np.float64))
    pooled_median = float(np.median(np.concatenate([norm_a, norm_b])))
    threshold = outlier_factor * pooled_median
    extra: dict = {"quantiles": [float(q) for q in quantiles], "pooled_median": pooled_median}
    for side, norms in (("a", norm_a), ("b", norm_b)):
        extra[f"quantiles_{side}"] = np.quantile(norms, quantiles).tolist()
        extra[f"mean_{side}"] = float(norms.mean())
        extra[f"median_{side}"] = float(np.median(norms))
        extra[f"outliers_{side}"] = int(np.count_nonzero(norms > threshold))
    if extra["median_b"] <= 0:
        raise StatsInputError(
            f"the median key norm of side b is 0 ({int(np.count_nonzero(norm_b == 0))} of {len(norm_b)} keys are "
            "zero vectors), so the ratio of medians is undefined; check how these keys were captured"
        )
    value = extra["median_a"] / extra["median_b"]
    params = {"quantiles": [float(q) for q in quantiles], "outlier_factor": float(outlier_factor),
              "outlier_reference": "pooled median norm"}
    return MeasureResult("norms", float(value), None, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra)
