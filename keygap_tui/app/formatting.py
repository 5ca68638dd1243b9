"""How numbers read in tables: short, stable, and the same in every view. Stdlib only, so the first
screen does not wait for numpy."""

from __future__ import annotations

import math


def fmt_number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "nan"
    return str(value)
