"""Bootstrap confidence intervals over samples: what is resampled, that the weighted statistics equal the
statistic of the resampled data (scipy, float64), and that the intervals cover the true value."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from stats_reference import naive_energy
from stats_sim import paired_items

from keygap_tui.stats import (
    MeasureResult,
    StatsInputError,
    centroid_gap,
    energy_distance,
    exchange_design,
    js_divergence,
    mmd,
)
from keygap_tui.stats.bootstrap import resample_weights
from keygap_tui.stats.kernel_sums import Kernel, exact_sums
from keygap_tui.stats.mmd import mmd_from_sums


def mixed_sides(seed=0):
    """Samples 0-5 on both sides, 6-8 on side a only, 9-10 on side b only; unequal blocks."""
    rng = np.random.default_rng(seed)
    ids_a = np.repeat([str(i) for i in range(9)], rng.integers(1, 5, 9))
    ids_b = np.repeat([str(i) for i in list(range(6)) + [9, 10]], rng.integers(1, 5, 8))
    x = rng.standard_normal((len(ids_a), 3)).astype(np.float32)
    y = (rng.standard_normal((len(ids_b), 3)) + 0.4).astype(np.float32)
    return x, y, ids_a, ids_b


def test_resampling_draws_whole_samples_and_keeps_pairs_together():
    x, y, ids_a, ids_b = mixed_sides()
    design = exchange_design(len(x), len(y), (ids_a, ids_b))
    w_a, w_b = resample_weights(design, 300, seed=1)
    assert not w_a[len(x):].any() and not w_b[: len(x)].any()
    for r in range(300):
        mult_a = {s: set(w_a[: len(x), r][ids_a == s]) for s in set(ids_a)}
        mult_b = {s: set(w_b[len(x):, r][ids_b == s]) for s in set(ids_b)}
        assert all(len(m) == 1 for m in list(mult_a.values()) + list(mult_b.values()))  # a block moves whole
        for s in map(str, range(6)):
            assert mult_a[s] == mult_b[s]  # a shared sample is drawn as a pair
        assert sum(next(iter(mult_a[s])) for s in map(str, range(6))) == 6  # 6 pairs drawn
        assert sum(next(iter(mult_a[s])) for s in "678") == 3  # 3 side-a-only samples drawn
        assert sum(next(iter(mult_b[s])) for s in ("9", "10")) == 2


def test_weighted_sums_equal_the_statistics_of_the_resampled_rows():
    x, y, ids_a, ids_b = mixed_sides(seed=2)
    design = exchange_design(len(x), len(y), (ids_a, ids_b))
    w_a, w_b = resample_weights(design, 5, seed=3)
    pooled = np.concatenate([x, y]).astype(np.float64)
    observed = design.observed_on_a[design.block_of_row][:, None]
    splits, sums = exact_sums(x, y, observed, Kernel("gaussian", 2.0), weights=(w_a, w_b), device=_cpu(), block_rows=7)
    assert mmd_from_sums(splits, "unbiased")[0] == pytest.approx(mmd(x, y, bandwidth=2.0).value, rel=1e-6)
    values = mmd_from_sums(sums, "unbiased")
    _, energy_sums = exact_sums(x, y, observed, Kernel("distance"), weights=(w_a, w_b), device=_cpu(), block_rows=7)
    for r in range(5):
        wa, wb = w_a[:, r].astype(np.float64), w_b[:, r].astype(np.float64)
        kernel = np.exp(-cdist(pooled, pooled, "sqeuclidean") / 4.0)
        np.fill_diagonal(kernel, 0.0)  # pairs of distinct original rows: a row never pairs with its own copy
        within_a = wa @ kernel @ wa / (wa.sum() ** 2 - (wa**2).sum())
        within_b = wb @ kernel @ wb / (wb.sum() ** 2 - (wb**2).sum())
        between = wa @ np.exp(-cdist(pooled, pooled, "sqeuclidean") / 4.0) @ wb / (wa.sum() * wb.sum())
        expected = within_a + within_b - 2 * between
        assert values[r] == pytest.approx(expected, rel=1e-5)
        # energy (V-statistic) on the resampled rows, rows repeated by their multiplicity
        rows_a = np.repeat(pooled, wa.astype(int), axis=0)
        rows_b = np.repeat(pooled, wb.astype(int), axis=0)
        n, m = len(rows_a), len(rows_b)
        energy = 2 * energy_sums.between[r] / (n * m) - energy_sums.within_a[r] / n**2 - energy_sums.within_b[r] / m**2
        assert energy == pytest.approx(naive_energy(rows_a, rows_b), rel=1e-5)


def _cpu():
    from keygap_tui.stats.inputs import CPU

    return CPU


@pytest.mark.parametrize(("fn", "kwargs"), [(mmd, {}), (energy_distance, {}), (centroid_gap, {}),
                                        (js_divergence, {"k": 2, "bins": 8, "permutations": 40})])
def test_every_interval_is_recorded_and_round_trips(fn, kwargs):
    rng = np.random.default_rng(4)
    x, y, ga, gb = paired_items(rng, 20, 3, tokens=(5, 5), shift=1.0)
    result = fn(x, y, groups_x=ga, groups_y=gb, ci=0.95, ci_replicates=100, seed=1, **kwargs)
    low, high = result.ci
    estimate = result.extra["bias_corrected"] if fn is js_divergence else result.value
    assert low < estimate < high
    assert result.params["ci"] == 0.95 and result.params["ci_method"] == "basic"
    assert result.params["ci_replicates"] == 100
    again = MeasureResult.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False)))
    assert again.ci == pytest.approx(result.ci)
    assert fn(x, y, groups_x=ga, groups_y=gb, **kwargs).ci is None


@pytest.mark.parametrize(("bad", "message"), [({"ci": 1.5}, "between 0.5 and 1"), ({"ci": "high"}, "confidence level"),
                                          ({"ci": 0.9, "ci_method": "bca"}, "ci_method"),
                                          ({"ci": 0.9, "ci_replicates": 3}, "ci_replicates")])
def test_bad_interval_requests_are_one_line_errors(bad, message):
    x = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(StatsInputError, match=message):
        centroid_gap(x, x + 1, **bad)


@pytest.mark.slow
def test_basic_intervals_cover_the_true_value():
    # shared items with an item effect; the truth is known in closed form: the gap is the shift, and
    # MMD^2 between N(0, v I) and N(shift e_1, v I) with a Gaussian kernel of width s2 is
    # 2 (1 + 2v/s2)^(-d/2) (1 - exp(-shift^2 / (2 (s2 + 2v))))
    d, tau, shift, s2 = 3, 1.0, 0.6, 6.0
    v = 1 + tau**2
    truth = {"centroid": shift, "mmd": 2 * (1 + 2 * v / s2) ** (-d / 2) * (1 - np.exp(-shift**2 / (2 * (s2 + 2 * v))))}
    covered = {"centroid": 0, "mmd": 0}
    replicates = 150
    for r in range(replicates):
        rng = np.random.default_rng([r, 17])
        x, y, ga, gb = paired_items(rng, 40, d, tokens=(5, 5), unequal=True, item_effect=tau, shift=shift)
        for name, fn, kwargs in (("centroid", centroid_gap, {}), ("mmd", mmd, {"bandwidth": s2})):
            low, high = fn(x, y, groups_x=ga, groups_y=gb, ci=0.9, ci_replicates=200, seed=r, **kwargs).ci
            covered[name] += low <= truth[name] <= high
    for name, count in covered.items():
        assert 0.8 <= count / replicates <= 0.97, (name, count / replicates)  # nominal 0.9; docs/STATISTICS.md
