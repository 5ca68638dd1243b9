"""The record of one measured number: a MeasureResult plus where it was measured, and its one serialisation.

``ComparisonRow.to_dict`` is the only mapping from a row to plain data, and ``from_dict`` the only way
back. `keygap compare --json` prints it, the results cache stores it (store.results keeps its JSON
columns as text) and the TUI shows and exports it, so a number reads the same everywhere and a cached
answer equals a fresh one field for field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keygap_tui.stats.result import MeasureResult
from store.jsonsafe import json_safe

from .sides import Side


@dataclass
class ComparisonRow:
    """One measure on one pair of sides; what compare / controls / layer_sweep return.

    ``kind`` names the analysis (compare, controls, ...), ``group`` the pair within it (e.g.
    image-vs-text), ``replicate`` the control-group split (-1 when not a replicate). ``depth`` =
    layer / (num_layers - 1) lets models of different depths share an axis; it is derived from the run
    manifests, so it is not stored. ``cached`` says the row was read from the results cache (``seconds``
    are then the original computation's)."""

    result: MeasureResult
    side_a: Side
    side_b: Side
    kind: str = "compare"
    group: str = ""
    replicate: int = -1
    cached: bool = False
    depth: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON data: the result's fields, then the row's own (model, benchmark, layer, rope
        and head repeat side_a's for tables and SQL; head is null for whole keys)."""
        return self.result.to_dict() | json_safe(
            {
                "kind": self.kind,
                "group": self.group,
                "replicate": self.replicate,
                "model": self.side_a.model,
                "benchmark": self.side_a.benchmark,
                "layer": self.side_a.layer,
                "rope": self.side_a.rope,
                "head": self.side_a.head,
                "depth": self.depth,
                "side_a": self.side_a.to_dict(),
                "side_b": self.side_b.to_dict(),
                "cached": self.cached,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, cached: bool | None = None) -> ComparisonRow:
        """Inverse of to_dict; also reads a results-cache row. ``cached`` overrides the stored flag."""
        return cls(
            result=MeasureResult.from_dict(dict(data)),
            side_a=Side.from_dict(data["side_a"]),
            side_b=Side.from_dict(data["side_b"]),
            kind=str(data.get("kind") or "compare"),
            group=str(data.get("group") or ""),
            replicate=-1 if data.get("replicate") is None else int(data["replicate"]),
            cached=bool(data.get("cached")) if cached is None else cached,
            depth=None if data.get("depth") is None else float(data["depth"]),
        )
