"""Slices -> comparisons, control groups, layer sweeps, projections, the results cache and the report.

Never imports textual or duckdb: data comes through store.reader, cached answers through store.results.
Long functions take ``progress(fraction, message)`` and ``should_stop()`` so the TUI can run them in
thread workers. Heavy modules (sklearn, openTSNE, plotext) load lazily, inside the functions that use them.
"""

from .compare import (
    DEFAULT_METRICS,
    DEFAULT_N,
    DEFAULT_PERMUTATIONS,
    DEFAULT_REPLICATES,
    GROUPS,
    ComparisonRow,
    compare,
    controls,
    layer_sweep,
    model_depth,
    resolve_model_layers,
    split_samples,
)
from .errors import AnalysisError, Cancelled
from .projection import Projection, project, project_arrays
from .report import ReportResult, report
from .sides import Side, parse_what

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_N",
    "DEFAULT_PERMUTATIONS",
    "DEFAULT_REPLICATES",
    "GROUPS",
    "AnalysisError",
    "Cancelled",
    "ComparisonRow",
    "Projection",
    "ReportResult",
    "Side",
    "compare",
    "controls",
    "layer_sweep",
    "model_depth",
    "parse_what",
    "project",
    "project_arrays",
    "report",
    "resolve_model_layers",
    "split_samples",
]
