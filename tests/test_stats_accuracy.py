"""Defaults that must not trade accuracy silently: the bandwidth guard against ties and float32 round-off,
the measured error of random Fourier features, exact PCA for JS. Each against an independent float64
computation (scipy distances, LAPACK's SVD of the data)."""

import importlib

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from stats_reference import naive_mmd2
from stats_sim import keylike_scales, paired_items

from keygap_tui.stats import energy_distance, fit_bandwidth, js_divergence, median_bandwidth, mmd
from keygap_tui.stats.bandwidth import MEAN_FALLBACK, MEDIAN, MEDIAN_FLOAT64, _median_sq_distance
from keygap_tui.stats.js import principal_components

mmd_module = importlib.import_module("keygap_tui.stats.mmd")  # the package's `mmd` name is the function


def duplicated_keys(fraction, seed=0, d=16, offset=5.0):
    """Two sides where `fraction` of all rows are one identical key far from the origin (a system-prompt
    token repeated in every item), the rest spread around it."""
    rng = np.random.default_rng(seed)
    repeated = rng.standard_normal(d) * 3 + offset
    x = rng.standard_normal((100, d)) + offset
    y = rng.standard_normal((100, d)) + offset + 0.5
    count = int(round(fraction * 100))
    x[:count] = repeated
    y[:count] = repeated
    return x.astype(np.float32), y.astype(np.float32)


# --- bandwidth ---------------------------------------------------------------------------------------------
def test_over_half_duplicate_pairs_fall_back_to_the_mean_distance():
    x, y = duplicated_keys(0.8)  # 80% duplicate rows: 64% of pooled pairs are exact duplicates
    pooled = np.concatenate([x, y]).astype(np.float64)
    distances = pdist(pooled, "sqeuclidean")
    assert np.median(distances) == 0.0
    pooled32 = np.concatenate([x, y])
    centred32 = pooled32 - pooled32.mean(0, dtype=np.float64).astype(np.float32)  # float32 throughout, as before
    assert _median_sq_distance(centred32) < 1e-5 * distances.mean()  # 0 or round-off: no usable width
    fit = fit_bandwidth((x, y))
    assert fit.rule == MEAN_FALLBACK and fit.sigma_sq == pytest.approx(distances.mean() / 2, rel=1e-9)
    result = mmd(x, y)
    assert result.params["bandwidth_rule"] == MEAN_FALLBACK and result.params["precision"] == "float32"
    assert result.value == pytest.approx(naive_mmd2(x, y, fit.sigma_sq), abs=1e-6)  # float32 sums of kernels <= 1


def test_a_genuinely_tiny_median_is_refit_in_float64_and_the_kernel_runs_in_float64():
    # 80% of rows in a tight cluster far out (64% of pairs), the rest spread: the median is tiny, not zero
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(8) * 4 + 20
    x = np.concatenate([centre + 1e-3 * rng.standard_normal((80, 8)), rng.standard_normal((20, 8)) * 5])
    y = np.concatenate([centre + 1e-3 * rng.standard_normal((80, 8)), rng.standard_normal((20, 8)) * 5 + 1])
    x, y = x.astype(np.float32), y.astype(np.float32)
    expected = np.median(pdist(np.concatenate([x, y]).astype(np.float64), "sqeuclidean")) / 2
    fit = fit_bandwidth((x, y))
    assert fit.rule == MEDIAN_FLOAT64 and fit.sigma_sq == pytest.approx(expected, rel=1e-4)
    result = mmd(x, y)
    assert result.params["precision"] == "float64"
    assert result.value == pytest.approx(naive_mmd2(x, y, fit.sigma_sq), rel=1e-6, abs=1e-9)


def test_a_tiny_given_bandwidth_runs_in_float64():
    x, y = duplicated_keys(0.8)
    tiny = 1e-7
    result = mmd(x, y, bandwidth=tiny, permutations=20, groups_x=np.arange(100) // 5, groups_y=np.arange(100) // 5)
    assert result.params["precision"] == "float64" and result.params["bandwidth_rule"] == "given"
    assert result.value == pytest.approx(naive_mmd2(x, y, tiny), rel=1e-6)


def test_ordinary_data_keeps_the_plain_median_and_float32():
    x, y = duplicated_keys(0.0)
    fit = fit_bandwidth((x, y))
    pooled = np.concatenate([x, y]).astype(np.float64)
    assert fit.rule == MEDIAN and fit.sigma_sq == pytest.approx(np.median(pdist(pooled, "sqeuclidean")) / 2, rel=1e-5)
    assert median_bandwidth((x, y)) == fit.sigma_sq
    assert mmd(x, y).params["precision"] == "float32"


def test_energy_with_duplicates_matches_float64():
    from stats_reference import naive_energy

    x, y = duplicated_keys(0.8)
    assert energy_distance(x, y).value == pytest.approx(naive_energy(x, y), rel=1e-4)


# --- random Fourier features -------------------------------------------------------------------------------
def test_rff_error_estimate_matches_the_error_over_feature_draws():
    rng = np.random.default_rng(2)
    x, y, ga, gb = paired_items(rng, 60, 8, tokens=(10, 10), item_effect=0.5, shift=0.3)
    exact = mmd(x, y, groups_x=ga, groups_y=gb, method="exact", bandwidth=8.0)
    errors, estimates = [], []
    for seed in range(16):
        approx = mmd(x, y, groups_x=ga, groups_y=gb, method="rff", rff_features=256, bandwidth=8.0, seed=seed)
        errors.append(approx.value - exact.value)
        estimates.append(approx.extra["rff_error_se"])
    rms = np.sqrt(np.mean(np.square(errors)))
    assert 0.5 < rms / np.mean(estimates) < 2.0  # the per-feature standard error predicts the real error


def test_auto_rff_meets_the_target_ratio_or_computes_exactly(monkeypatch):
    monkeypatch.setattr(mmd_module, "AUTO_EXACT_MAX_POOLED", 100)
    rng = np.random.default_rng(1)
    x, y, ga, gb = paired_items(rng, 150, 8, tokens=(10, 10), item_effect=0.5)  # the null: same distribution
    exact = mmd(x, y, groups_x=ga, groups_y=gb, method="exact", permutations=100)
    auto = mmd(x, y, groups_x=ga, groups_y=gb, permutations=100)
    assert auto.params["method"] == "rff" and auto.extra["rff_error_ratio"] <= mmd_module.RFF_TARGET_RATIO
    assert abs(auto.value - exact.value) < 3 * mmd_module.RFF_TARGET_RATIO * exact.extra["null_std"]
    assert auto.extra["rff_null_std"] == pytest.approx(exact.extra["null_std"], rel=0.3)
    x, y, ga, gb = paired_items(rng, 150, 8, tokens=(10, 10), item_effect=0.5, shift=1.0)  # a clear effect
    shifted = mmd(x, y, groups_x=ga, groups_y=gb, permutations=100)
    assert shifted.params["method"] == "exact" and "exact" in shifted.extra["rff_fallback"]
    assert shifted.value == mmd(x, y, groups_x=ga, groups_y=gb, method="exact", permutations=100).value
    assert shifted.params["auto_exact_max_pooled"] == 100


def test_explicit_rff_feature_count_is_used_and_its_error_reported():
    rng = np.random.default_rng(3)
    x, y, ga, gb = paired_items(rng, 30, 4, tokens=(6, 6), shift=1.0)
    result = mmd(x, y, groups_x=ga, groups_y=gb, method="rff", rff_features=300, permutations=30)
    assert result.params["method"] == "rff" and result.params["rff_features"] == 300
    assert result.extra["rff_error_ratio"] > 0 and result.p_value == pytest.approx(1 / 31)


# --- PCA for JS ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rows", "dim"), [(150, 600), (600, 530), (200, 60)])  # Gram, covariance (Lanczos), LAPACK
def test_exact_pca_matches_full_svd(rows, dim):
    rng = np.random.default_rng(rows)
    z = (rng.standard_normal((rows, dim)) * keylike_scales(dim)).astype(np.float32)
    z -= z.mean(0)
    components, variance = principal_components(z, 6, "exact", seed=0)
    _, singular, vt = np.linalg.svd(z.astype(np.float64), full_matrices=False)  # LAPACK SVD of the data itself
    np.testing.assert_allclose(variance, singular[:6] ** 2 / (rows - 1), rtol=1e-5)
    cosines = np.abs(np.sum(components.astype(np.float64) * vt[:6], axis=1))
    assert np.all(cosines > 1 - 1e-5)


def test_js_is_exact_by_default_even_in_high_dimension():
    rng = np.random.default_rng(4)
    x, y, ga, gb = paired_items(rng, 12, 1100, tokens=(8, 8), shift=0.5, scales=keylike_scales(1100))
    result = js_divergence(x, y, groups_x=ga, groups_y=gb, permutations=10)
    assert result.params["pca"] == "exact" and result.params["pca_solver"] == "gram eigsh (ARPACK, tol 0)"
    explicit = js_divergence(x, y, groups_x=ga, groups_y=gb, permutations=10, pca="randomized")
    assert explicit.params["pca"] == "randomized" and explicit.params["randomized_power_iterations"] == 4
