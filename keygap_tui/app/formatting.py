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


def display_cells(r: dict) -> tuple[str, ...]:
    """A results row as the table shows it: measure, value, p-value, n, time, cached."""
    return (
        r["metric"], fmt_number(r["value"]), fmt_number(r["p_value"], 3), r["n"],
        f"{r['seconds']:.2f}s" if r.get("seconds") is not None else "-", "yes" if r["cached"] else "no",
    )
