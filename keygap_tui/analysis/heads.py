"""Attention heads: a model's head layout from its run manifests, `--heads` specs, one head's key columns.

Stored keys are the kv heads concatenated in order (head_dim values each) and stored queries the query
heads likewise; query head h reads kv head ``kv_head_of_query_head[h]`` (the run manifest records all of
it), so one head of a key is a contiguous column slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.reader import KeyStore

from .errors import AnalysisError
from .layers import model_runs


@dataclass(frozen=True)
class HeadLayout:
    """What `keygap ingest` recorded about a model's attention heads."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float
    softcapping: float | None = None


def head_layout(ks: KeyStore, model: str) -> HeadLayout:
    """The head layout of a model from its run manifests; one line saying what to do when none records it."""
    layouts = set()
    for run in model_runs(ks, model):
        if run.get("head_dim") and run.get("num_kv_heads"):
            layouts.add(HeadLayout(int(run["num_heads"]), int(run["num_kv_heads"]), int(run["head_dim"]),
                                   float(run.get("attention_scaling") or int(run["head_dim"]) ** -0.5),
                                   run.get("attn_logit_softcapping")))
    if not layouts:
        raise AnalysisError(f"no run manifest of {model} records its head layout: re-ingest it with this "
                            "version of `keygap ingest` to measure per head")
    if len(layouts) > 1:
        raise AnalysisError(f"run manifests of {model} disagree on its head layout: re-ingest into one store")
    return layouts.pop()


def parse_heads(spec: str | None, count: int, what: str = "kv heads") -> list[int] | None:
    """``all`` -> every head, ``0,5`` -> those; None (no spec) -> None, i.e. all heads together."""
    if spec is None:
        return None
    text = str(spec).strip().lower()
    if text == "all":
        return list(range(count))
    try:
        heads = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise AnalysisError(f"--heads must be 'all' or head indices like 0,5, got {spec!r}") from None
    bad = [h for h in heads if not 0 <= h < count]
    if not heads or bad:
        raise AnalysisError(f"head(s) {', '.join(map(str, bad or heads))} do not exist: this model has {count} "
                            f"{what} (0..{count - 1})")
    return heads


def head_columns(x: np.ndarray, head: int, head_dim: int) -> np.ndarray:
    """The columns of one head in vectors of concatenated heads."""
    if x.shape[1] % head_dim or not 0 <= head < x.shape[1] // head_dim:
        raise AnalysisError(f"head {head} is not in {x.shape[1]}-dim vectors of {head_dim}-dim heads")
    return x[:, head * head_dim:(head + 1) * head_dim]
