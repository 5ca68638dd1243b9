"""The stratified permutation correlation against scipy (r) and an exhaustive enumeration of every
within-stratum arrangement (the exact p-value the Monte Carlo one estimates)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from keygap_tui.stats import StatsInputError
from keygap_tui.stats.correlation import stratified_correlation


def test_r_equals_scipy_and_one_stratum_p_equals_the_exact_test():
    rng = np.random.default_rng(1)
    x = rng.normal(size=7)
    y = 0.6 * x + rng.normal(size=7)
    got = stratified_correlation(x, y, permutations=4000, seed=0)
    assert got.r == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
    observed = abs(sps.pearsonr(x, y).statistic)
    exact = np.mean([abs(np.corrcoef(x, y[list(order)])[0, 1]) >= observed - 1e-12
                     for order in itertools.permutations(range(7))])
    assert got.p_value == pytest.approx(exact, abs=0.02)  # Monte Carlo error at 4000 draws: sd <= 0.008
    assert got.arrangements == 5040 and got.strata == 1


def test_stratified_p_equals_the_exhaustive_enumeration():
    rng = np.random.default_rng(4)
    strata = np.repeat([0, 1, 2], 3)
    x = rng.normal(size=9)
    y = 0.8 * x + rng.normal(size=9) + 3 * strata  # a level per stratum that the shuffles must keep
    got = stratified_correlation(x, y, strata, permutations=4000, seed=2)
    observed = abs(np.corrcoef(x, y)[0, 1])
    hits = total = 0
    for p0, p1, p2 in itertools.product(itertools.permutations(range(3)), repeat=3):
        order = np.concatenate([np.array(p) + 3 * s for s, p in enumerate((p0, p1, p2))])
        hits += abs(np.corrcoef(x, y[order])[0, 1]) >= observed - 1e-12
        total += 1
    assert total == got.arrangements == 216
    assert got.p_value == pytest.approx(hits / total, abs=0.02)


def test_a_shared_trend_over_strata_alone_is_not_significant():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(8), 4)
    x = strata + rng.normal(scale=0.3, size=32)  # both grow with depth, unrelated within a layer
    y = strata + rng.normal(scale=0.3, size=32)
    got = stratified_correlation(x, y, strata, permutations=500)
    assert got.r > 0.9 and got.p_value > 0.05


def test_bad_input():
    with pytest.raises(StatsInputError, match="one value per cell"):
        stratified_correlation([1, 2, 3], [1, 2], None)
    with pytest.raises(StatsInputError, match="at least 3 cells"):
        stratified_correlation([1, 2, np.nan], [1, 2, 3])
