"""Logit decomposition: how much of the image-vs-text logit gap that text queries see is the key-space gap.

For a query q (query head h, reading kv head g(h)) and the keys of its own sample that it can see (the
causal mask: key position <= query position), the mean logit gap between key groups A (image) and B (text),
scaled like the model, is

    gap(q)       = s * (mean_{k in A, visible} q.k  -  mean_{k in B, visible} q.k)
                 = s * q.(mu_A(q) - mu_B(q))            (a mean of dot products is the dot of the mean)
    centroid(q)  = s * q.(mu_A - mu_B)                   (mu over every key of the slice: the key-space gap)
    remainder(q) = gap(q) - centroid(q)                 (what the keys near this query add to it)

with s the model's attention scaling. Softcapping (tanh) is not applied: it is not linear, so the split
would not be exact; models that softcap say so in the result's params. The logit gap is the attention
deficit in log space (under softmax, the image/text attention ratio per key is exp(gap)), so
``share_explained`` = mean centroid / mean gap is the share of the deficit that the centroid gap accounts for.

Numpy in, numbers out (no store, no duckdb, no textual); everything in float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import StatsInputError
from .result import MeasureResult

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class HeadGeometry:
    """How query heads read kv heads: query head h reads kv head ``kv_of_query[h]``; ``scaling`` multiplies q.k."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float

    @property
    def kv_of_query(self) -> np.ndarray:
        return np.arange(self.num_heads) // (self.num_heads // self.num_kv_heads)


@dataclass(frozen=True)
class LabelledVectors:
    """Vectors with the sample and position of each row (queries: heads * head_dim; keys: kv heads * head_dim)."""

    x: np.ndarray
    sample_id: np.ndarray
    position: np.ndarray


@dataclass(frozen=True)
class LogitTerms:
    """Per (query, query head) terms, [n_queries, n_heads] each; ``used`` marks queries that see keys of both groups."""

    gap: np.ndarray
    centroid: np.ndarray
    remainder: np.ndarray
    used: np.ndarray
    heads: np.ndarray


def logit_terms(queries: LabelledVectors, keys_a: LabelledVectors, keys_b: LabelledVectors, geometry: HeadGeometry,
                heads=None) -> LogitTerms:
    """gap, centroid and remainder of every query that sees at least one key of each group, for the query heads
    ``heads`` (all by default). Queries that see no key of one group (a system-prompt token before the image)
    are left out (``used`` False)."""
    hd, kv = geometry.head_dim, geometry.num_kv_heads
    heads = np.arange(geometry.num_heads) if heads is None else np.asarray(list(heads), dtype=np.int64)
    if len(heads) and (heads.min() < 0 or heads.max() >= geometry.num_heads):
        raise StatsInputError(f"query heads must lie in 0..{geometry.num_heads - 1}, got {heads.tolist()}")
    q = _vectors(queries, geometry.num_heads * hd, "queries")
    a = _vectors(keys_a, kv * hd, "keys of side a")
    b = _vectors(keys_b, kv * hd, "keys of side b")
    if len(a) == 0 or len(b) == 0:
        raise StatsInputError("the logit decomposition needs keys on both sides")
    centroid_diff = a.mean(axis=0) - b.mean(axis=0)  # [kv * hd]
    mean_a, seen_a = _visible_means(queries, keys_a, a)
    mean_b, seen_b = _visible_means(queries, keys_b, b)
    used = seen_a & seen_b
    q_heads = q.reshape(len(q), geometry.num_heads, hd)[:, heads]  # [n, h, hd]
    kv_of = geometry.kv_of_query[heads]
    local = (mean_a - mean_b).reshape(len(q), kv, hd)[:, kv_of]  # [n, h, hd]
    gap = geometry.scaling * np.einsum("nhd,nhd->nh", q_heads, local)
    centroid = geometry.scaling * np.einsum("nhd,hd->nh", q_heads, centroid_diff.reshape(kv, hd)[kv_of])
    gap, centroid = gap[used], centroid[used]
    return LogitTerms(gap, centroid, gap - centroid, used, heads)


def logit_decomposition(queries: LabelledVectors, keys_a: LabelledVectors, keys_b: LabelledVectors,
                        geometry: HeadGeometry, *, heads=None, softcapping: float | None = None,
                        seed: int | None = None) -> MeasureResult:
    """The summary of ``logit_terms`` as a MeasureResult: value = mean logit gap over (query, head)."""
    started = time.perf_counter()
    terms = logit_terms(queries, keys_a, keys_b, geometry, heads)
    if not terms.gap.size:
        raise StatsInputError("no query sees keys of both sides: use later query tokens or other sides")
    gap, centroid, remainder = terms.gap, terms.centroid, terms.remainder
    mean_gap = float(gap.mean())
    variance = float(gap.var())
    extra = {
        "n_queries": int(terms.used.sum()),
        "n_queries_left_out": int((~terms.used).sum()),
        "centroid": float(centroid.mean()),
        "remainder": float(remainder.mean()),
        "share_explained": float(centroid.mean() / mean_gap) if mean_gap != 0 else float("nan"),
        "variance_explained": float(1.0 - remainder.var() / variance) if variance > 0 else float("nan"),
        "gap_quantiles": dict(zip(map(str, QUANTILES), np.quantile(gap, QUANTILES).tolist())),
        "per_head": {"head": terms.heads.tolist(), "gap": gap.mean(axis=0).tolist(),
                     "centroid": centroid.mean(axis=0).tolist()},
    }
    params = {"scaling": float(geometry.scaling), "softcapping_applied": False,
              "model_softcapping": softcapping, "heads": terms.heads.tolist(),
              "visible_keys": "same sample, key position <= query position",
              "centroids": "mean of every key of each side", "share_explained": "mean centroid / mean gap"}
    return MeasureResult("logits", mean_gap, None, len(keys_a.x), len(keys_b.x), params, seed,
                         time.perf_counter() - started, extra)


def _vectors(v: LabelledVectors, dim: int, what: str) -> np.ndarray:
    x = np.asarray(v.x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise StatsInputError(f"{what} must be [rows, {dim}] by the head layout, got shape {x.shape}")
    if len(v.sample_id) != len(x) or len(v.position) != len(x):
        raise StatsInputError(f"{what}: one sample id and one position per row are needed")
    return x


def _visible_means(queries: LabelledVectors, keys: LabelledVectors, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n_q, dim] mean of the keys each query sees (same sample, position <= its own) and whether it sees any."""
    out = np.zeros((len(queries.x), x.shape[1]))
    seen = np.zeros(len(queries.x), dtype=bool)
    key_sample = np.asarray(keys.sample_id).astype(str)
    key_pos = np.asarray(keys.position, dtype=np.int64)
    query_sample = np.asarray(queries.sample_id).astype(str)
    query_pos = np.asarray(queries.position, dtype=np.int64)
    for sample in np.unique(query_sample):
        rows = np.flatnonzero(query_sample == sample)
        cols = np.flatnonzero(key_sample == sample)
        mask = (key_pos[cols][None, :] <= query_pos[rows][:, None]).astype(np.float64)  # [q, k]
        counts = mask.sum(axis=1)
        seen[rows] = counts > 0
        out[rows] = (mask @ x[cols]) / np.maximum(counts, 1)[:, None]
    return out, seen
