"""The logit decomposition against a naive float64 loop over every (query, head, visible key) dot product."""
from __future__ import annotations

import numpy as np
import pytest

from keygap_tui.stats import StatsInputError
from keygap_tui.stats.logits import HeadGeometry, LabelledVectors, logit_decomposition, logit_terms


def _naive(queries, keys_a, keys_b, geometry, heads):
    """Every logit one by one: mean over visible A keys minus mean over visible B keys, times the scaling."""
    group = geometry.num_heads // geometry.num_kv_heads
    hd = geometry.head_dim
    mu = [np.mean([np.asarray(k, np.float64) for k in side.x], axis=0) for side in (keys_a, keys_b)]
    gaps, cents = [], []
    for qx, qs, qp in zip(queries.x, queries.sample_id, queries.position):
        seen = [[(kx, kp) for kx, ks, kp in zip(side.x, side.sample_id, side.position) if ks == qs and kp <= qp]
                for side in (keys_a, keys_b)]
        if not seen[0] or not seen[1]:
            continue
        row_gap, row_cent = [], []
        for h in heads:
            g = h // group
            qh = [float(v) for v in qx[h * hd:(h + 1) * hd]]
            means = []
            for side in seen:
                logits = [sum(a * float(b) for a, b in zip(qh, kx[g * hd:(g + 1) * hd])) * geometry.scaling
                          for kx, _ in side]
                means.append(sum(logits) / len(logits))
            row_gap.append(means[0] - means[1])
            diff = mu[0][g * hd:(g + 1) * hd] - mu[1][g * hd:(g + 1) * hd]
            row_cent.append(sum(a * float(b) for a, b in zip(qh, diff)) * geometry.scaling)
        gaps.append(row_gap)
        cents.append(row_cent)
    return np.array(gaps), np.array(cents)


def _data(seed=0, heads=4, kv=2, hd=8):
    rng = np.random.default_rng(seed)
    geometry = HeadGeometry(heads, kv, hd, hd ** -0.5)

    def vectors(n, dim, offset, lo, hi):
        sample = rng.choice(["s0", "s1", "s2"], size=n)
        return LabelledVectors((rng.normal(size=(n, dim)) + offset).astype(np.float32), sample.astype(object),
                               rng.integers(lo, hi, size=n).astype(np.int32))

    keys_a = vectors(40, kv * hd, 0.7, 3, 30)  # image keys from position 3 on
    keys_b = vectors(50, kv * hd, -0.2, 0, 60)
    queries = vectors(30, heads * hd, 0.1, 0, 60)
    return queries, keys_a, keys_b, geometry


@pytest.mark.parametrize("heads", [None, [1], [0, 3]])
def test_terms_equal_a_naive_float64_loop(heads):
    queries, keys_a, keys_b, geometry = _data()
    terms = logit_terms(queries, keys_a, keys_b, geometry, heads)
    gap, cent = _naive(queries, keys_a, keys_b, geometry, range(4) if heads is None else heads)
    assert terms.gap.shape == gap.shape and 0 < len(gap) < len(queries.x)  # some queries see no image key
    assert np.abs(terms.gap - gap).max() <= 1e-12
    assert np.abs(terms.centroid - cent).max() <= 1e-12
    assert np.abs(terms.remainder - (gap - cent)).max() <= 1e-12


def test_summary_numbers():
    queries, keys_a, keys_b, geometry = _data(seed=3)
    r = logit_decomposition(queries, keys_a, keys_b, geometry)
    gap, cent = _naive(queries, keys_a, keys_b, geometry, range(4))
    assert r.metric == "logits" and r.value == pytest.approx(gap.mean(), abs=1e-12)
    assert r.extra["centroid"] == pytest.approx(cent.mean(), abs=1e-12)
    assert r.extra["remainder"] == pytest.approx((gap - cent).mean(), abs=1e-12)
    assert r.extra["share_explained"] == pytest.approx(cent.mean() / gap.mean(), rel=1e-10)
    assert r.extra["variance_explained"] == pytest.approx(1 - (gap - cent).var() / gap.var(), rel=1e-10)
    assert r.extra["n_queries"] == len(gap)
    assert r.extra["per_head"]["gap"] == pytest.approx(gap.mean(axis=0).tolist(), abs=1e-12)
    assert r.extra["gap_quantiles"]["0.5"] == pytest.approx(np.median(gap), abs=1e-12)


def test_bad_inputs_say_what_is_wrong():
    queries, keys_a, keys_b, geometry = _data()
    with pytest.raises(StatsInputError, match=r"queries must be \[rows, 32\]"):
        logit_terms(LabelledVectors(queries.x[:, :16], queries.sample_id, queries.position), keys_a, keys_b, geometry)
    with pytest.raises(StatsInputError, match=r"query heads must lie in 0..3"):
        logit_terms(queries, keys_a, keys_b, geometry, [4])
    early = LabelledVectors(queries.x, queries.sample_id, np.zeros(len(queries.x), np.int32))
    with pytest.raises(StatsInputError, match="no query sees keys of both sides"):
        logit_decomposition(early, keys_a, keys_b, geometry)
