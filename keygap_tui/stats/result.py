"""The record every measure returns, shaped so the results cache can store it as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Numpy scalars/arrays -> Python, tuples -> lists, non-finite floats -> None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


@dataclass(frozen=True)
class MeasureResult:
    """One two-sample comparison: headline value, optional test, and every parameter that produced it.

    `params` holds resolved values too (the fitted bandwidth, the method that auto chose), so a cached
    result says exactly how it was computed without re-deriving defaults."""

    metric: str
    value: float
    p_value: float | None
    n_a: int
    n_b: int
    params: dict
    seed: int | None
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "value": json_safe(self.value),
            "p_value": json_safe(self.p_value),
            "n_a": int(self.n_a),
            "n_b": int(self.n_b),
            "params": json_safe(self.params),
            "seed": None if self.seed is None else int(self.seed),
            "seconds": float(self.seconds),
            "extra": json_safe(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MeasureResult:
        """Inverse of to_dict, for reading cached results (a None value reads back as NaN)."""
        value = data.get("value")
        return cls(
            metric=str(data["metric"]),
            value=float("nan") if value is None else float(value),
            p_value=None if data.get("p_value") is None else float(data["p_value"]),
            n_a=int(data["n_a"]),
            n_b=int(data["n_b"]),
            params=dict(data.get("params") or {}),
            seed=None if data.get("seed") is None else int(data["seed"]),
            seconds=float(data.get("seconds", 0.0)),
            extra=dict(data.get("extra") or {}),
        )
