"""Two-sample measures between key sets: numpy (or torch) in, MeasureResult out.

Every metric has the signature fn(x, y, *, groups_x=None, groups_y=None, seed=0, **params), where x, y
are float [rows, dim] arrays and groups_* are per-row sample ids. The ids say which rows belong together
and which samples sit on both sides; from them every permutation test, shuffle, classifier fold and
bootstrap picks its exchangeable unit (permutation.py). What each choice means and how well it holds is
in docs/STATISTICS.md. No textual, duckdb or pyarrow imports, and from store only its standard-library
JSON normaliser (store.jsonsafe): this package runs anywhere numpy does.
"""

from collections.abc import Callable

from .bandwidth import BandwidthFit, fit_bandwidth, median_bandwidth
from .bootstrap import CI_METHODS, DEFAULT_CI_REPLICATES
from .centroid import centroid_gap
from .classifier import classifier_test
from .energy import energy_distance
from .errors import StatsInputError
from .frechet import frechet_distance
from .js import js_divergence, js_of_histograms
from .mmd import AUTO_EXACT_MAX_POOLED, MULTI_SCALES, mmd
from .norms import norm_summary
from .permutation import MIXED, ROW, SAMPLE, SWAP, Design, exchange_design, permutation_membership, permutation_p_value
from .result import MeasureResult

METRICS: dict[str, Callable[..., MeasureResult]] = {
    "mmd": mmd,
    "js": js_divergence,
    "energy": energy_distance,
    "centroid": centroid_gap,
    "frechet": frechet_distance,
    "c2st": classifier_test,
    "norms": norm_summary,
}

__all__ = [
    "AUTO_EXACT_MAX_POOLED",
    "BandwidthFit",
    "CI_METHODS",
    "DEFAULT_CI_REPLICATES",
    "Design",
    "MIXED",
    "ROW",
    "SAMPLE",
    "SWAP",
    "exchange_design",
    "fit_bandwidth",
    "METRICS",
    "MULTI_SCALES",
    "MeasureResult",
    "StatsInputError",
    "centroid_gap",
    "classifier_test",
    "energy_distance",
    "frechet_distance",
    "js_divergence",
    "js_of_histograms",
    "median_bandwidth",
    "mmd",
    "norm_summary",
    "permutation_membership",
    "permutation_p_value",
]
