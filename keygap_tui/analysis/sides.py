"""A side of a comparison: which keys (model, benchmark, layer, modality, optional segments, RoPE stage).

Sides are small frozen values so they can be hashed into results-cache keys and shown in tables. Loading
goes through store.reader (pyarrow only); the identity of the files a side reads comes from
store.results, so a re-ingested partition changes every cache key that depended on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from store.reader import KeyStore
from store.results import ResultsCache
from store.schema import MODALITIES, ROPE_KINDS, model_label

from .errors import AnalysisError
from .heads import head_columns, head_layout


@dataclass(frozen=True)
class Side:
    """One set of keys. ``segments`` None means every segment of the modality (e.g. all text tokens);
    ``head`` None means all kv heads concatenated, an index one kv head's columns (`--heads`)."""

    model: str
    benchmark: str
    layer: int
    modality: str
    segments: tuple[str, ...] | None = None
    rope: str = "post"
    head: int | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise AnalysisError(f"unknown modality {self.modality!r}: use one of {', '.join(MODALITIES)}")
        if self.rope not in ROPE_KINDS:
            raise AnalysisError(f"unknown RoPE stage {self.rope!r}: use post (what attention uses) or pre")
        object.__setattr__(self, "model", model_label(self.model))
        object.__setattr__(self, "layer", int(self.layer))
        if self.head is not None:
            object.__setattr__(self, "head", int(self.head))
        if self.segments is not None:
            segs = tuple(sorted({str(s) for s in self.segments}))
            object.__setattr__(self, "segments", segs or None)

    @property
    def what(self) -> str:
        """Modality plus segment filter, e.g. ``text[options,question]``."""
        return self.modality + (f"[{','.join(self.segments)}]" if self.segments else "")

    def label(self) -> str:
        head = "" if self.head is None else f"/head{self.head}"
        return f"{self.model}/{self.benchmark}/L{self.layer}/{self.rope}/{self.what}{head}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``head`` only when set, so questions about whole keys keep their cache keys."""
        d = asdict(self)
        d["segments"] = list(self.segments) if self.segments else None
        if self.head is None:
            del d["head"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Side:
        """Inverse of to_dict (unknown keys are ignored, so older records still read)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def replace(self, **changes: Any) -> Side:
        return Side(**{**asdict(self), **changes})


def parse_what(spec: str) -> tuple[str, tuple[str, ...] | None]:
    """``image`` -> (image, None); ``text:question,options`` -> (text, (options, question))."""
    spec = (spec or "").strip()
    modality, _, segs = spec.partition(":")
    modality = modality.strip()
    if modality not in MODALITIES:
        raise AnalysisError(
            f"unknown side {spec!r}: use a modality ({', '.join(MODALITIES)}), optionally with segments, "
            "e.g. text:question,options"
        )
    segments = tuple(s.strip() for s in segs.split(",") if s.strip()) or None
    return modality, segments


def open_store(store: str | os.PathLike | KeyStore) -> KeyStore:
    return store if isinstance(store, KeyStore) else KeyStore(store)


def depends(ks: KeyStore, sides: Iterable[Side]) -> dict[str, str]:
    """Fingerprints of the partitions the sides read (the data part of a results-cache key)."""
    return ResultsCache.fingerprints(ks.inventory, [(s.model, s.benchmark, s.layer, s.rope, s.modality) for s in sides])


def load_side(ks: KeyStore, side: Side, *, n: int | None, seed: int, samples=None):
    """Keys of one side as a KeySlice (x float32 [n, d], sample_id, ...); with ``side.head`` only that kv
    head's columns (head_dim from the run manifest).

    The reader raises a one-line StoreError naming what exists when the partition is missing.
    """
    sl = ks.load(
        side.model,
        side.benchmark,
        side.layer,
        side.modality,
        rope=side.rope,
        segments=list(side.segments) if side.segments else None,
        samples=samples,
        n=n,
        seed=seed,
    )
    if len(sl.x) < 2:
        extra = f" in segments {','.join(side.segments)}" if side.segments else ""
        raise AnalysisError(
            f"only {len(sl.x)} {side.modality} keys{extra} for {side.label()}: a comparison needs at least 2 "
            "per side; ingest more samples or widen the segment filter"
        )
    if side.head is not None:
        sl = replace(sl, x=np.ascontiguousarray(head_columns(sl.x, side.head, head_layout(ks, side.model).head_dim)))
    return sl
