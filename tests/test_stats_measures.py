"""Energy, Frechet, centroid, norms and classifier tests against independent computations; API checks."""

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from scipy.spatial.distance import cdist

from keygap_tui.stats import (
    METRICS,
    MeasureResult,
    StatsInputError,
    centroid_gap,
    classifier_test,
    energy_distance,
    frechet_distance,
    norm_summary,
    permutation_membership,
)


def pair(n, m, d, shift, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32),
            (rng.standard_normal((m, d)) + shift).astype(np.float32))


# --- energy ------------------------------------------------------------------------------------------------
def test_energy_matches_scipy_in_one_dimension():
    x, y = pair(200, 150, 1, 0.4, seed=0)
    result = energy_distance(x, y, block=64)
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|): our value is its square
    assert result.value == pytest.approx(scipy.stats.energy_distance(x[:, 0], y[:, 0]) ** 2, rel=1e-5)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_energy_matches_naive_in_many_dimensions(estimator):
    x, y = pair(90, 70, 12, 0.3, seed=1)
    dxy = cdist(x, y).mean()
    dxx, dyy = cdist(x, x), cdist(y, y)
    n, m = len(x), len(y)
    if estimator == "biased":
        expected = 2 * dxy - dxx.mean() - dyy.mean()
    else:
        expected = 2 * dxy - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))
    assert energy_distance(x, y, estimator=estimator, block=16).value == pytest.approx(expected, rel=1e-5)


def test_energy_permutation_matches_loop():
    x, y = pair(30, 25, 3, 0.2, seed=2)
    result = energy_distance(x, y, permutations=40, seed=3, keep_null=True)
    pooled = np.concatenate([x, y]).astype(np.float64)
    null = [2 * cdist(pooled[a], pooled[~a]).mean() - cdist(pooled[a], pooled[a]).mean()
            - cdist(pooled[~a], pooled[~a]).mean()
            for a in permutation_membership(30, 25, 40, seed=3)[:, 1:].T]
    np.testing.assert_allclose(result.extra["null"], null, rtol=1e-5)


# --- Frechet -----------------------------------------------------------------------------------------------
def frechet_sqrtm(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    ca, cb = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    return np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(ca + cb - 2 * covmean)


@pytest.mark.parametrize(("n", "m"), [(300, 200), (6, 200)])  # full-rank and rank-deficient covariance
def test_frechet_matches_sqrtm_formula(n, m):
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((10, 10))
    x = (rng.standard_normal((n, 10)) @ mix).astype(np.float32)
    y = (rng.standard_normal((m, 10)) @ mix * 1.3 + 0.5).astype(np.float32)
    expected = frechet_sqrtm(x, y)
    assert frechet_distance(x, y).value == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert frechet_distance(y, x).value == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_frechet_text_norm_rescaling():
    x, y = pair(100, 80, 5, 1.0, seed=4)
    scale = np.linalg.norm(y.astype(np.float64), axis=1).mean()
    result = frechet_distance(x, y, rescale_by_text_norm=True)
    assert result.value == pytest.approx(frechet_sqrtm(x / scale, y / scale), rel=1e-6)
    # scaling both sets by a constant leaves the rescaled value unchanged
    assert frechet_distance(7 * x, 7 * y, rescale_by_text_norm=True).value == pytest.approx(result.value, rel=1e-5)
    assert result.extra["scale_factor"] == pytest.approx(1 / scale)


# --- centroid and norms ------------------------------------------------------------------------------------
def test_centroid_gap_and_cosine():
    x, y = pair(50, 40, 6, 0.5, seed=5)
    mu_a, mu_b = x.astype(np.float64).mean(0), y.astype(np.float64).mean(0)
    result = centroid_gap(x, y)
    assert result.value == pytest.approx(np.linalg.norm(mu_a - mu_b), rel=1e-9)
    assert result.extra["cosine"] == pytest.approx(mu_a @ mu_b / np.linalg.norm(mu_a) / np.linalg.norm(mu_b))


def test_centroid_permutation_matches_loop():
    x, y = pair(40, 30, 4, 0.3, seed=6)
    gx, gy = np.arange(40) // 4, np.arange(30) // 3 + 100
    result = centroid_gap(x, y, groups_x=gx, groups_y=gy, permutations=30, seed=2, keep_null=True)
    pooled = np.concatenate([x, y]).astype(np.float64)
    null = [np.linalg.norm(pooled[a].mean(0) - pooled[~a].mean(0))
            for a in permutation_membership(40, 30, 30, groups_x=gx, groups_y=gy, seed=2)[:, 1:].T]
    np.testing.assert_allclose(result.extra["null"], null, rtol=1e-5)


def test_norm_summary():
    x, y = pair(100, 80, 8, 0.0, seed=7)
    x[0] *= 1000.0  # an attention-sink-like outlier
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    result = norm_summary(x, y)
    assert result.value == pytest.approx(np.median(nx) / np.median(ny), rel=1e-6)
    assert result.extra["quantiles_b"] == pytest.approx(np.quantile(ny, result.params["quantiles"]).tolist(), rel=1e-6)
    assert result.extra["outliers_a"] == 1 and result.extra["outliers_b"] == 0


# --- classifier --------------------------------------------------------------------------------------------
def test_classifier_separates_shifted_sets_and_not_identical_ones():
    x, y = pair(120, 80, 6, 1.5, seed=8)
    gx, gy = np.arange(120) // 6, np.arange(80) // 4 + 1000
    shifted = classifier_test(x, y, groups_x=gx, groups_y=gy)
    assert shifted.value > 0.85 and shifted.extra["auc"] > 0.9 and shifted.p_value == pytest.approx(1 / 201)
    assert "within folds" in shifted.params["p_method"] and shifted.params["permutation_unit"] == "sample"
    x0, y0 = pair(120, 80, 6, 0.0, seed=9)
    null = classifier_test(x0, y0, groups_x=gx, groups_y=gy, refit_permutations=9, seed=1)
    assert 0.3 < null.value < 0.7 and null.p_value > 0.05
    assert null.params["fold_unit"] == "sample" and "refit" in null.params["p_method"]


def test_classifier_folds_keep_samples_together():
    from keygap_tui.stats.classifier import _fold_splits

    labels = np.r_[np.ones(30, np.int8), np.zeros(30, np.int8)]
    ids = np.r_[np.arange(30) // 3, np.arange(30) // 3]  # every sample on both sides
    for train, test in _fold_splits(labels, (ids[:30], ids[30:]), 5, seed=0):
        assert not set(ids[train]) & set(ids[test])


def test_balanced_accuracy_is_chance_for_a_constant_guess():
    from keygap_tui.stats.classifier import _balanced_accuracy

    labels = np.r_[np.ones(90, np.int8), np.zeros(10, np.int8)]
    assert _balanced_accuracy(labels, np.ones(100)) == 0.5


# --- API ---------------------------------------------------------------------------------------------------
def test_every_metric_has_the_shared_signature_and_json_safe_result():
    x, y = pair(40, 40, 4, 0.5, seed=10)
    ids = np.arange(40) // 4
    assert set(METRICS) == {"mmd", "js", "energy", "centroid", "frechet", "c2st", "norms"}
    for name, fn in METRICS.items():
        params = inspect.signature(fn).parameters
        for keyword in ("groups_x", "groups_y", "seed"):
            assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        result = fn(x, y, groups_x=ids, groups_y=ids + 50, seed=3)
        assert isinstance(result, MeasureResult) and result.metric == name
        assert result.n_a == 40 and result.n_b == 40 and result.seed == 3 and result.seconds >= 0
        text = json.dumps(result.to_dict(), allow_nan=False)
        again = MeasureResult.from_dict(json.loads(text))
        assert again.value == pytest.approx(result.value) and again.params == json.loads(text)["params"]


def test_bad_shapes_are_one_line_errors_for_every_metric():
    for fn in METRICS.values():
        with pytest.raises(StatsInputError) as info:
            fn(np.zeros((5, 3)), np.zeros((5, 4)))
        assert "\n" not in str(info.value)


def test_stats_imports_no_ui_database_or_store():
    # from store only the standard-library JSON normaliser, which every JSON keygap writes goes through
    code = ("import sys, keygap_tui.stats; bad = [m for m in ('textual', 'duckdb', 'pyarrow') if m in sys.modules]"
            " + [m for m in sys.modules if m.startswith('store.') and m != 'store.jsonsafe']; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_classifier_without_groups_uses_stratified_rows():
    x, y = pair(60, 40, 4, 2.0, seed=11)
    result = classifier_test(x, y, folds=4, permutations=99)
    assert result.params["fold_unit"] == "row" and result.value > 0.9
    assert result.params["permutation_unit"] == "row" and result.p_value == pytest.approx(1 / 100)


def test_metrics_never_modify_their_inputs():
    x, y = pair(30, 30, 4, 0.5, seed=12)
    x_before, y_before = x.copy(), y.copy()
    for fn in METRICS.values():
        fn(x, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


# --- validity and honesty of the defaults -------------------------------------------------------------------
@pytest.mark.slow
def test_classifier_default_p_value_is_calibrated_with_correlated_tokens():
    import scipy.stats
    from stats_sim import paired_items

    replicates, rejections = 100, 0
    for r in range(replicates):
        rng = np.random.default_rng([r, 23])
        x, y, ga, gb = paired_items(rng, 12, 3, tokens=(6, 6), item_effect=2.0, design="disjoint")
        rejections += classifier_test(x, y, groups_x=ga, groups_y=gb, folds=3, permutations=39, seed=r).p_value <= 0.05
    low, high = scipy.stats.binom.interval(0.999, replicates, 0.05)
    assert low <= rejections <= high, rejections / replicates


def test_norms_refuse_an_all_zero_side_instead_of_returning_inf():
    x, y = pair(20, 20, 4, 0.0, seed=13)
    with pytest.raises(StatsInputError, match="median key norm of side b is 0"):
        norm_summary(x, np.zeros_like(y))
    result = norm_summary(np.zeros_like(x), y)
    assert result.value == 0.0 and np.isfinite(result.value)


def test_centroid_cosine_of_a_zero_mean_is_said_not_nan():
    x, y = pair(20, 20, 4, 0.0, seed=14)
    result = centroid_gap(np.zeros_like(x), y)
    assert result.extra["cosine"] is None and "zero vector" in result.extra["cosine_undefined"]
