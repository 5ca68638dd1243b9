"""Slices -> comparisons, control groups, layer sweeps, projections, the results cache and the report.

Never imports textual or duckdb: data comes through store.reader, cached answers through store.results.
Long functions take ``progress(fraction, message)`` and ``should_stop()`` so the TUI can run them in
thread workers. Names load lazily (PEP 562): importing ``keygap_tui.analysis.cli`` to build the console
script's parser must not pull in numpy or pyarrow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "comparisons": ("compare", "controls", "iter_layer_sweep", "layer_sweep", "split_samples", "sweep_plan"),
    "defaults": (
        "DEFAULT_CI", "DEFAULT_METRICS", "DEFAULT_N", "DEFAULT_PERMUTATIONS", "DEFAULT_REPLICATES", "DEFAULT_THREADS",
        "GROUPS",
    ),
    "errors": ("AnalysisError", "Cancelled"),
    "layers": ("model_depth", "relative_depth", "resolve_model_layers"),
    "rows": ("ComparisonRow",),
    "projection": ("Projection", "project", "project_arrays"),
    "report": ("ReportResult", "report"),
    "sides": ("Side", "parse_what"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = tuple(sorted(_WHERE))


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'keygap_tui.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
