"""Strict JSON for what we write: JSON has no NaN/Infinity, and an undefined number is better null than
a file other tools refuse to parse."""

from __future__ import annotations

import math


def finite(value):
    """Copy of ``value`` (dicts, lists, tuples, floats) with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
