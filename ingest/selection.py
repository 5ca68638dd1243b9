"""Which tokens of a sample keep their keys: the token policy.

Full density is ~0.85 TB for LLaVA-1.5-7B on MMBench-CN dev (docs/STORAGE.md, "Why not every token"), so by default K
image and K text tokens per sample are drawn, the same positions in every layer of the sample.
The draw depends only on (seed, sample id), never on batch composition, resume or sharding, so
every way of running the same command stores the same rows. The last prompt token (the one whose
query produces the answer) is always kept.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .labels import SampleTokens


@dataclass(frozen=True)
class TokenPolicy:
    """``image``/``text`` = tokens drawn per sample (None = all of them); ``segments`` limits text."""

    image: int | None = 16
    text: int | None = 16
    segments: frozenset | None = None

    @property
    def keeps_all(self) -> bool:
        return self.image is None and self.text is None

    def describe(self) -> str:
        if self.keeps_all:
            return "all"
        return f"{self.image}:{self.text}"


def parse_tokens(spec: str | None, segments=None) -> TokenPolicy:
    """"16:16" (image:text per sample), "32" (both), or "all"."""
    segs = _parse_segments(segments)
    text = "16:16" if spec is None else str(spec).strip().lower()
    if text == "all":
        return TokenPolicy(None, None, segs)
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v < 0 for v in values):
        raise ValueError(f"--tokens {spec!r} is not understood: give IMAGE:TEXT counts per sample "
                         "(e.g. 16:16), one count for both, or 'all'")
    image, txt = (values[0], values[0]) if len(values) == 1 else values
    return TokenPolicy(image, txt, segs)


def _parse_segments(segments) -> frozenset | None:
    if segments is None:
        return None
    if isinstance(segments, str):
        segments = [s.strip() for s in segments.split(",")]
    out = frozenset(s for s in segments if s)
    if not out:
        raise ValueError("--segments is empty: give a comma-separated list such as question,options")
    from .prompts import SEGMENTS

    text_segments = [s for s in SEGMENTS if s not in ("image", "special")]
    unknown = sorted(out - set(text_segments))
    if unknown:
        raise ValueError(f"--segments: unknown text segment {', '.join(map(repr, unknown))}; "
                         f"choose from {','.join(text_segments)}")
    return out


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A generator fixed by (seed, sample id) alone."""
    digest = hashlib.blake2b(str(sample_id).encode(), digest_size=8).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest, "little")])


def select_positions(tokens: SampleTokens, policy: TokenPolicy, *, seed: int, sample_id: str,
                     store_image: bool = True) -> np.ndarray:
    """Sorted positions whose keys are kept (int64).

    ``store_image=False`` drops image tokens (CircularEval copies, whose image keys equal the
    original item's under causal attention).
    """
    n = len(tokens)
    if n == 0:
        return np.zeros(0, np.int64)
    is_image = tokens.modality == "image"
    is_text = tokens.modality == "text"
    if policy.segments is not None:
        is_text &= np.isin(tokens.segment.astype(str), sorted(policy.segments))
    last = n - 1
    if policy.keeps_all:
        keep = is_text | (tokens.modality != "text")  # every token but text outside --segments
        keep[last] = True
        if not store_image:
            keep &= ~is_image
        return np.flatnonzero(keep).astype(np.int64)
    rng = sample_rng(seed, sample_id)
    image_pos = np.flatnonzero(is_image)
    text_pos = np.flatnonzero(is_text)
    chosen = [np.array([last])]
    img = _draw(rng, image_pos, policy.image)  # drawn even if dropped, so the text draw is the same
    if store_image:
        chosen.append(img)
    text_pool = text_pos[text_pos != last]
    k_text = None if policy.text is None else max(policy.text - (1 if is_text[last] else 0), 0)  # last is kept
    chosen.append(_draw(rng, text_pool, k_text))
    out = np.unique(np.concatenate(chosen))
    if not store_image:
        out = out[~is_image[out]]
    return out.astype(np.int64)


def _draw(rng: np.random.Generator, pool: np.ndarray, k: int | None) -> np.ndarray:
    if k is None or k >= len(pool):
        return pool
    return np.sort(rng.choice(pool, size=k, replace=False))


#: which tokens' queries are captured (`--queries`): the last prompt token only; it plus the text tokens the
#: key draw kept; it plus every text token (of --segments)
QUERY_POLICIES = ("last", "text", "all-text")


def parse_queries(spec: str | None) -> str | None:
    """None (no queries) or one of QUERY_POLICIES."""
    if spec is None:
        return None
    text = str(spec).strip().lower()
    if text not in QUERY_POLICIES:
        raise ValueError(f"--queries {spec!r}: use last (the last prompt token), text (it plus the text tokens "
                         "whose keys are drawn) or all-text (it plus every text token of --segments)")
    return text


def select_queries(tokens: SampleTokens, query_policy: str, key_positions: np.ndarray,
                   segments: frozenset | None) -> np.ndarray:
    """Sorted positions whose queries are captured; the last prompt token (the one that produces the
    answer) is always among them, and is always the last entry."""
    last = len(tokens) - 1
    if last < 0:
        return np.zeros(0, np.int64)
    if query_policy == "last":
        return np.array([last], np.int64)
    is_text = tokens.modality == "text"
    if segments is not None:
        is_text &= np.isin(tokens.segment.astype(str), sorted(segments))
    if query_policy == "text":
        pool = np.asarray(key_positions, np.int64)
        pool = pool[is_text[pool]]
    elif query_policy == "all-text":
        pool = np.flatnonzero(is_text)
    else:
        raise ValueError(f"unknown query policy {query_policy!r}: use one of {', '.join(QUERY_POLICIES)}")
    return np.unique(np.concatenate([pool, [last]])).astype(np.int64)
