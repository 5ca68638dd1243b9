"""The one timer of the benchmark scripts: the median wall time of repeated calls.

Benchmarks report ratios against a baseline timed in the same process right before or after; the median
of a few repeats keeps one stall of the shared machine from deciding a figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """(median seconds over ``repeat`` calls of ``fn``, what the last call returned)."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
