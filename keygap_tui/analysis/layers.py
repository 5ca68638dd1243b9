"""Which layers a question means: a model's depth from its run manifests, layer specs, relative depth.

Named layers (early, middle, late = 1, L // 2, L - 1) and percentages use each model's own depth L, so
models of different depths are compared at the same relative depth (README, "Choices the paper left
open").
"""

from __future__ import annotations

from collections.abc import Sequence

from store.reader import KeyStore
from store.schema import model_label, resolve_layers

from .errors import AnalysisError


def model_runs(ks: KeyStore, model: str) -> list[dict]:
    """The run manifests of one model (by id or store label)."""
    label = model_label(model)
    out = []
    for run in ks.runs():
        ids = {str(run.get(k)) for k in ("model", "model_id", "model_label") if run.get(k)}
        if label in {model_label(i) for i in ids}:
            out.append(run)
    return out


def model_depth(ks: KeyStore, model: str) -> int | None:
    """Decoder depth of a model from its run manifests ("num_layers"), or None when none records it."""
    label = model_label(model)
    depths = {int(run["num_layers"]) for run in model_runs(ks, model) if run.get("num_layers")}
    if len(depths) > 1:
        raise AnalysisError(
            f"run manifests of {label} disagree on its depth ({sorted(depths)}): re-ingest into one store"
        )
    return depths.pop() if depths else None


def resolve_model_layers(
    ks: KeyStore, model: str, benchmark: str, spec: str | Sequence[object], rope: str = "post"
) -> list[int]:
    """Layers of ``spec`` (early/middle/late/all/ints/percent of depth) that the store holds for a model.

    Named layers use the model's depth L from its run manifest (1, L // 2, L - 1), so models of different
    depths are compared at the same relative depth; "all" means every stored layer. Without a recorded
    depth, names map onto the stored layers (first, middle, last).
    """
    label = model_label(model)
    stored = ks.layers(label, benchmark)
    if not stored:
        raise AnalysisError(
            f"no keys for {label} on {benchmark}: run `keygap ingest --model {model} --benchmark {benchmark}`"
        )
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else map(str, spec)) if str(p).strip()]
    if parts == ["all"]:
        return stored
    depth = model_depth(ks, label)
    out: set[int] = set()
    for part in parts:
        if part.endswith("%"):
            try:
                frac = float(part[:-1]) / 100.0
            except ValueError:
                raise AnalysisError(f"bad relative depth {part!r}: use e.g. 50%") from None
            if not 0.0 <= frac <= 1.0:
                raise AnalysisError(f"relative depth {part} is outside 0%..100%")
            if depth is None:
                out.add(stored[int(round(frac * (len(stored) - 1)))])
            else:
                out.add(int(round(frac * (depth - 1))))
        elif depth is None:
            named = {"early": stored[0], "middle": stored[len(stored) // 2], "late": stored[-1]}
            if part in named:
                out.add(named[part])
            elif part == "all":
                out.update(stored)
            else:
                try:
                    out.add(int(part))
                except ValueError:
                    raise AnalysisError(
                        f"unknown layer {part!r}: use early, middle, late, all, N% or integers"
                    ) from None
        else:
            try:
                out.update(resolve_layers(part, depth))
            except ValueError as exc:
                raise AnalysisError(str(exc)) from None
    missing = sorted(out - set(stored))
    if missing:
        raise AnalysisError(
            f"layer(s) {', '.join(map(str, missing))} of {label} on {benchmark} are not in the store "
            f"(stored: {', '.join(map(str, stored))}); ingest them with --layers"
        )
    return sorted(out)


def relative_depth(layer: int, depth: int | None) -> float | None:
    """layer / (L - 1): 0 at the first decoder layer, 1 at the last; None without a known depth."""
    return None if not depth or depth < 2 else layer / (depth - 1)
