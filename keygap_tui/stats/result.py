"""The record every measure returns, shaped so the results cache can store it as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.jsonsafe import json_safe  # the one JSON normaliser (standard library only)


@dataclass(frozen=True)
class MeasureResult:
    """One two-sample comparison: headline value, optional test, and every parameter that produced it.

    `params` holds resolved values too (the fitted bandwidth, the method that auto chose), so a cached
    result says exactly how it was computed without re-deriving defaults. `ci` is the bootstrap
    confidence interval (low, high) at level params["ci"], when one was asked for (ci_low / ci_high in
    to_dict, so tables and SQL get two plain columns)."""

    metric: str
    value: float
    p_value: float | None
    n_a: int
    n_b: int
    params: dict
    seed: int | None
    seconds: float
    extra: dict = field(default_factory=dict)
    ci: tuple[float, float] | None = None

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
            "ci_low": None if self.ci is None else json_safe(self.ci[0]),
            "ci_high": None if self.ci is None else json_safe(self.ci[1]),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MeasureResult:
        """Inverse of to_dict, for reading cached results (a None value reads back as NaN)."""
        value = data.get("value")
        low, high = data.get("ci_low"), data.get("ci_high")
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
            ci=None if low is None and high is None else (_float_or_nan(low), _float_or_nan(high)),
        )


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
