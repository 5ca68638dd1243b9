"""JS divergence against scipy's jensenshannon on independently built histograms."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.decomposition import PCA

from keygap_tui.stats import StatsInputError, js_divergence, js_of_histograms


def independent_js(x, y, k, bins, q=(0.5, 99.5), eps=1e-10):
    """The documented procedure rebuilt from sklearn PCA, np.histogram and scipy (squared, base 2)."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    z = (pooled - pooled.mean(0)) / pooled.std(0)
    proj = PCA(n_components=k, svd_solver="full").fit_transform(z)
    values = []
    for j in range(k):
        lo, hi = np.percentile(proj[:, j], q)
        clipped = np.clip(proj[:, j], lo, hi)
        edges = np.linspace(lo, hi, bins + 1)
        ha = np.histogram(clipped[: len(x)], edges)[0] / len(x) + eps
        hb = np.histogram(clipped[len(x):], edges)[0] / len(y) + eps
        values.append(jensenshannon(ha, hb, base=2) ** 2)
    return np.array(values)


def test_histogram_js_matches_scipy_squared_base2():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 50, 32), rng.integers(0, 50, 32)
        expected = jensenshannon(a / a.sum() + 1e-10, b / b.sum() + 1e-10, base=2) ** 2
        assert js_of_histograms(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # natural-log base too
    expected = jensenshannon(a / a.sum() + 1e-10, b / b.sum() + 1e-10) ** 2
    assert js_of_histograms(a, b, base=np.e) == pytest.approx(expected, rel=1e-9)


def test_pipeline_matches_independent_computation():
    rng = np.random.default_rng(1)
    # distinct variances per direction so the principal components are well separated
    scales = np.linspace(3.0, 0.5, 8)
    x = (rng.standard_normal((400, 8)) * scales).astype(np.float32)
    y = (rng.standard_normal((300, 8)) * scales + 0.3).astype(np.float32)
    result = js_divergence(x, y, k=3, bins=16, permutations=0, pca="exact")
    expected = independent_js(x, y, 3, 16)
    np.testing.assert_allclose(result.extra["per_component"], expected, rtol=1e-4, atol=1e-8)
    assert result.value == pytest.approx(expected.mean(), rel=1e-4)
    assert result.extra["js_max"] == pytest.approx(expected.max(), rel=1e-4)
    randomized = js_divergence(x, y, k=3, bins=16, permutations=0, pca="randomized")
    assert randomized.value == pytest.approx(result.value, rel=1e-3)


def test_identical_sets_score_zero():
    x = np.random.default_rng(2).standard_normal((200, 6)).astype(np.float32)
    result = js_divergence(x, x.copy(), permutations=0)
    assert result.value == 0.0 and result.extra["js_max"] == 0.0


def test_disjoint_supports_score_one_bit():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((300, 4)) * 0.1 + 10.0).astype(np.float32)
    y = (rng.standard_normal((300, 4)) * 0.1 - 10.0).astype(np.float32)
    result = js_divergence(x, y, k=1, permutations=0)
    assert result.value == pytest.approx(1.0, abs=1e-6)


def test_bias_correction_and_p_value():
    rng = np.random.default_rng(4)
    same_a = rng.standard_normal((150, 20)).astype(np.float32)
    same_b = rng.standard_normal((150, 20)).astype(np.float32)
    null = js_divergence(same_a, same_b, permutations=40, seed=1)
    assert null.value > 0.01  # the raw histogram estimator is biased upward ...
    assert abs(null.extra["bias_corrected"]) < 0.5 * null.value  # ... the correction removes most of it
    assert null.p_value > 0.05
    shifted = js_divergence(same_a, same_b + 1.0, permutations=40, seed=1)
    assert shifted.extra["bias_corrected"] > 0.04 and shifted.p_value == pytest.approx(1 / 41)
    assert null.params["permutation_unit"] == "row" and null.params["pca"] == "exact"
    assert len(null.extra["per_component"]) == 10 and null.params["quantile_range"] == [0.5, 99.5]


def test_shuffles_move_whole_samples_and_are_seeded():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    y = rng.standard_normal((60, 5)).astype(np.float32)
    ids = np.repeat(np.arange(12), 5)
    a = js_divergence(x, y, groups_x=ids[:60], groups_y=ids[:60] + 100, permutations=10, seed=7, keep_null=True)
    b = js_divergence(x, y, groups_x=ids[:60], groups_y=ids[:60] + 100, permutations=10, seed=7, keep_null=True)
    assert a.extra["null"] == b.extra["null"] and a.params["permutation_unit"] == "sample"


@pytest.mark.parametrize("kwargs", [{"bins": 1}, {"k": 0}, {"quantile_range": (90, 10)}, {"base": 1},
                                    {"pca": "svd"}])
def test_bad_parameters(kwargs):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(StatsInputError):
        js_divergence(x, x + 1, **kwargs)


def test_js_takes_permutations_and_refuses_the_old_name():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((80, 4)).astype(np.float32)
    shifted = js_divergence(x, x + 2.0, permutations=499)
    assert 1 / 500 <= shifted.p_value < 1 / 21 and shifted.params["permutations"] == 499  # the old floor was 1/21
    with pytest.raises(StatsInputError, match=r"js\.permutations"):
        js_divergence(x, x, shuffles=20)
