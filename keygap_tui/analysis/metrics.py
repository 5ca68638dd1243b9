"""Calling the statistics: metric names, the keyword arguments of one call, and the parameters recorded.

Every analysis calls a measure through ``run_metric``, so every stored number carries the same record:
the measure's own parameters, the arguments we passed, our sampling choices and the BLAS threads used.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from keygap_tui.stats.errors import StatsInputError
from keygap_tui.stats.result import MeasureResult
from store.jsonsafe import json_safe

from .errors import AnalysisError
from .threads import limit_threads

MetricParams = Mapping[str, Mapping[str, Any]]


def _metrics() -> dict[str, Callable[..., MeasureResult]]:
    """The registry, imported when a number must be computed (a cached answer never needs it)."""
    from keygap_tui.stats import METRICS

    return METRICS


def metric_names(metrics: Iterable[str]) -> tuple[str, ...]:
    """Normalised, de-duplicated names; checked against the registry only when something is computed."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in metrics if m and m.strip()))
    if not names:
        raise AnalysisError("no metric given: e.g. --metrics mmd,js")
    return names


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    names = metric_names(metrics)
    known = _metrics()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise AnalysisError(f"unknown metric {', '.join(unknown)}: choose from {', '.join(sorted(known))}")
    return names


#: keyword arguments metric_kwargs sets itself (the user may override them, but rarely does)
_OUR_KWARGS = {"permutations", "bandwidth", "ci"}
#: arguments every measure takes from the analysis itself, never from --param
_NOT_PARAMS = {"x", "y", "groups_x", "groups_y", "seed", "progress"}


def check_params(metric_params: MetricParams | None) -> None:
    """Refuse a --param whose metric or parameter name does not exist (a typo would otherwise be ignored
    or end in a traceback deep inside the measure)."""
    known = _metrics()
    for metric, params in (metric_params or {}).items():
        if metric not in known:
            raise AnalysisError(f"--param {metric}.{next(iter(params), 'NAME')}=...: unknown metric {metric!r}; "
                                f"choose from {', '.join(sorted(known))}")
        try:
            accepted = inspect.signature(known[metric]).parameters
        except (TypeError, ValueError):
            continue
        names = sorted(n for n, p in accepted.items() if n not in _NOT_PARAMS and p.kind is p.KEYWORD_ONLY)
        for name in params:
            if name == "seed":
                raise AnalysisError(f"--param {metric}.seed: the seed is --seed, shared by every measure")
            if name not in names:
                raise AnalysisError(f"--param {metric}.{name}: {metric} has no parameter {name!r}; "
                                    f"its parameters: {', '.join(names)}")


def requested_params(metric: str, permutations: int, metric_params: MetricParams | None,
                     ci: float | None = None) -> dict:
    """What the caller asked of one metric: the cache-key part that does not need the metric's code."""
    asked = {"permutations": int(permutations), **({"ci": float(ci)} if ci else {})}
    return json_safe(asked | dict((metric_params or {}).get(metric, {})))


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def metric_kwargs(
    metric: str, permutations: int, metric_params: MetricParams | None, bandwidth: float | None = None,
    ci: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments of one metric call: permutations, the interval level (and a shared bandwidth)
    where the metric takes them, then the user's parameters, which win."""
    fn = _metrics()[metric]
    kwargs: dict[str, Any] = {}
    if _accepts(fn, "permutations"):
        kwargs["permutations"] = int(permutations)
    if ci and _accepts(fn, "ci"):
        kwargs["ci"] = float(ci)
    if bandwidth is not None and _accepts(fn, "bandwidth"):
        kwargs["bandwidth"] = float(bandwidth)
    kwargs.update(dict((metric_params or {}).get(metric, {})))
    return kwargs


def run_metric(
    metric: str,
    xa: np.ndarray,
    xb: np.ndarray,
    groups_a: np.ndarray,
    groups_b: np.ndarray,
    *,
    seed: int,
    kwargs: Mapping[str, Any],
    threads: int | str | None,
    recorded: Mapping[str, Any],
) -> MeasureResult:
    """One measure, returned as it will read back from the results cache (through MeasureResult's own
    to_dict / from_dict), so a fresh answer and a cached one are equal field for field.

    ``params`` = the measure's own record, then the call's ``kwargs`` where the measure did not record
    them, then ``recorded`` (our sampling choices) and the BLAS threads used."""
    t0 = time.perf_counter()
    with limit_threads(threads) as limit:
        try:
            result = _metrics()[metric](xa, xb, groups_x=groups_a, groups_y=groups_b, seed=seed, **kwargs)
        except (TypeError, ValueError) as exc:
            # a measure's own checks (StatsInputError) already say what to pass; a raw TypeError or
            # ValueError with --param values given comes from a value of the wrong kind
            user = {k: v for k, v in kwargs.items() if k not in _OUR_KWARGS}
            if not user or isinstance(exc, (StatsInputError, AnalysisError)):
                raise
            shown = " ".join(f"{metric}.{k}={v!r}" for k, v in user.items())
            raise AnalysisError(f"{metric} cannot use --param {shown}: {str(exc).strip().splitlines()[0]}; "
                                "see the measure's parameters in docs/ANALYSIS.md") from None
    data = result.to_dict()
    params = dict(data["params"])
    for name, value in json_safe(dict(kwargs)).items():
        params.setdefault(name, value)
    params.update(json_safe(dict(recorded)))
    params["blas_threads"] = "library default" if limit is None else limit
    data["params"] = params
    data["seconds"] = data["seconds"] or time.perf_counter() - t0
    return MeasureResult.from_dict(data)


def sampling_record(n: int | None, seed: int) -> dict[str, Any]:
    """Our sampling choices, stored next to every number they shaped."""
    return {
        "n_per_side": "all" if n is None else int(n),
        "sampling": "uniform random keys per side (reader, seeded)",
        "seed": int(seed),
    }
