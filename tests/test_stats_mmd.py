"""MMD and its permutation test against independent float64 computations (scipy cdist, explicit loops)."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from stats_reference import naive_mmd2

from keygap_tui.stats import MULTI_SCALES, StatsInputError, median_bandwidth, mmd, permutation_membership


def gaussian_pair(n, m, d, shift, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (rng.standard_normal((m, d)) + shift).astype(np.float32)
    return x, y


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("scales", [None, MULTI_SCALES])
def test_exact_mmd_matches_naive_float64(estimator, scales):
    # far from the origin on purpose: centring must keep float32 distances accurate
    x, y = gaussian_pair(120, 90, 24, 0.4, seed=1)
    x += 50.0
    y += 50.0
    result = mmd(x, y, estimator=estimator, scales=scales, method="exact", block=32, device="cpu")
    expected = naive_mmd2(x, y, result.params["bandwidth"], estimator, scales or (1.0,))
    assert result.value == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert result.params["estimator"] == estimator and result.params["method"] == "exact"


def test_blocked_equals_unblocked():
    x, y = gaussian_pair(150, 110, 8, 0.2, seed=2)
    one_block = mmd(x, y, bandwidth=3.0, block=1024, permutations=30, seed=5, keep_null=True)
    many_blocks = mmd(x, y, bandwidth=3.0, block=17, permutations=30, seed=5, keep_null=True)
    assert many_blocks.value == pytest.approx(one_block.value, rel=1e-5, abs=1e-8)
    np.testing.assert_allclose(many_blocks.extra["null"], one_block.extra["null"], rtol=1e-4, atol=1e-7)
    assert many_blocks.p_value == one_block.p_value


def test_median_bandwidth_is_half_the_median_squared_distance():
    x, y = gaussian_pair(70, 50, 6, 1.0, seed=3)
    pooled = np.concatenate([x, y]).astype(np.float64)
    expected = np.median(pdist(pooled, "sqeuclidean")) / 2.0
    assert median_bandwidth(pooled) == pytest.approx(expected, rel=1e-6)
    assert median_bandwidth((x, y)) == pytest.approx(expected, rel=1e-6)
    # subset path: the seeded subset of the pooled rows, identical whether pooled is passed joined or split
    rows = np.sort(np.random.default_rng(4).choice(len(pooled), 40, replace=False))
    subset_expected = np.median(pdist(pooled[rows], "sqeuclidean")) / 2.0
    assert median_bandwidth(pooled, max_points=40, seed=4) == pytest.approx(subset_expected, rel=1e-6)
    assert median_bandwidth((x, y), max_points=40, seed=4) == pytest.approx(subset_expected, rel=1e-6)


def test_shifted_gaussians_are_detected():
    x, y = gaussian_pair(80, 80, 10, 0.6, seed=6)
    result = mmd(x, y, permutations=200, seed=0)
    assert result.value > 0
    assert result.p_value < 0.05
    assert result.p_value == pytest.approx(1 / 201)


def test_null_p_values_spread_over_unit_interval():
    p_values = []
    for seed in range(20):
        x, y = gaussian_pair(40, 40, 5, 0.0, seed=100 + seed)
        p_values.append(mmd(x, y, permutations=99, seed=seed).p_value)
    p_values = np.array(p_values)
    assert np.all((p_values > 0) & (p_values <= 1))
    assert p_values.min() < 0.25 and p_values.max() > 0.75
    assert np.count_nonzero(p_values < 0.05) <= 3


def test_streamed_permutation_matches_explicit_loop():
    x, y = gaussian_pair(45, 35, 7, 0.15, seed=7)
    groups_x = np.repeat([f"s{i}" for i in range(9)], 5)
    groups_y = np.repeat([f"t{i}" for i in range(7)], 5)
    result = mmd(x, y, groups_x=groups_x, groups_y=groups_y, permutations=60, seed=11, keep_null=True,
                 bandwidth=4.0)
    membership = permutation_membership(len(x), len(y), 60, groups_x=groups_x, groups_y=groups_y, seed=11)
    pooled = np.concatenate([x, y])
    observed = naive_mmd2(x, y, 4.0)
    null = np.array([naive_mmd2(pooled[a], pooled[~a], 4.0) for a in membership[:, 1:].T])
    assert result.value == pytest.approx(observed, rel=1e-5)
    np.testing.assert_allclose(result.extra["null"], null, rtol=1e-4, atol=1e-7)
    assert np.min(np.abs(null - observed)) > 1e-5  # no near-tie that float32 could flip
    assert result.p_value == (1 + np.count_nonzero(null >= observed)) / 61
    assert 0.05 < result.p_value < 1.0


def test_permutations_move_whole_samples():
    membership = permutation_membership(6, 4, 50, groups_x=["a", "a", "b", "b", "c", "c"],
                                        groups_y=[1, 1, 2, 2], seed=0)
    assert membership[:6, 0].all() and not membership[6:, 0].any()
    for column in membership.T:
        for rows in ([0, 1], [2, 3], [4, 5], [6, 7], [8, 9]):
            assert len(set(column[rows])) == 1  # a sample's rows always move together
        assert column[[0, 2, 4, 6, 8]].sum() == 3  # three samples on side a in every draw


def test_sample_level_permutation_is_calibrated_when_tokens_are_correlated():
    # each sample shares a strong random offset: same distribution on both sides, but tokens are not
    # independent. Token-level permutation then rejects almost always; sample-level must not.
    token_p, sample_p = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        offsets = rng.standard_normal((16, 4)) * 2.0
        keys = (np.repeat(offsets, 12, axis=0) + 0.2 * rng.standard_normal((192, 4))).astype(np.float32)
        ids = np.repeat(np.arange(16), 12)
        x, y = keys[:96], keys[96:]
        token_p.append(mmd(x, y, permutations=99, seed=seed).p_value)
        sample_p.append(mmd(x, y, groups_x=ids[:96], groups_y=ids[96:], permutations=99, seed=seed).p_value)
    assert np.median(token_p) < 0.05
    assert np.median(sample_p) > 0.1


def test_random_fourier_features_approximate_exact():
    x, y = gaussian_pair(300, 300, 8, 0.5, seed=8)
    exact = mmd(x, y, method="exact", bandwidth=8.0)
    approx = mmd(x, y, method="rff", rff_features=4096, bandwidth=8.0, seed=3)
    assert approx.params["method"] == "rff" and approx.params["rff_features"] == 4096
    assert approx.value == pytest.approx(exact.value, abs=0.2 * exact.value)
    multi = mmd(x, y, method="rff", rff_features=4096, bandwidth=8.0, scales=MULTI_SCALES, seed=3)
    multi_exact = mmd(x, y, method="exact", bandwidth=8.0, scales=MULTI_SCALES)
    assert multi.value == pytest.approx(multi_exact.value, abs=0.2 * multi_exact.value)
    # same seed -> same permutation draw for both methods; a clear shift is detected by both
    assert mmd(x, y, method="rff", permutations=50, bandwidth=8.0).p_value == pytest.approx(1 / 51)


def test_auto_method_and_params_are_recorded():
    x, y = gaussian_pair(30, 20, 4, 0.0, seed=9)
    result = mmd(x, y, permutations=10, groups_x=np.arange(30) // 3, groups_y=np.arange(20) // 2 + 100)
    p = result.params
    assert p["method"] == "exact" and p["method_requested"] == "auto"
    assert p["bandwidth_rule"] == "median" and p["bandwidth"] > 0 and p["precision"] == "float32"
    assert p["permutation_unit"] == "sample" and p["device"] == "cpu"
    assert result.n_a == 30 and result.n_b == 20 and result.seed == 0


def test_progress_reports_and_can_cancel():
    x, y = gaussian_pair(100, 100, 4, 0.0, seed=10)
    seen = []
    mmd(x, y, block=16, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)

    class Cancelled(Exception):
        pass

    def cancel(_fraction):
        raise Cancelled

    with pytest.raises(Cancelled):
        mmd(x, y, block=16, progress=cancel)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.zeros((5, 3)), "y": np.zeros((5, 4))}, "dimension"),
        ({"x": np.zeros(5), "y": np.zeros((5, 4))}, "2-D"),
        ({"x": np.full((5, 3), np.nan), "y": np.zeros((5, 3))}, "NaN"),
        ({"x": np.zeros((1, 3)), "y": np.zeros((5, 3))}, "at least 2"),
        ({"estimator": "fast"}, "estimator"),
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"bandwidth": "mean"}, "bandwidth"),
        ({"scales": [1, -2]}, "scales"),
        ({"device": "tpu"}, "device"),
        ({"permutations": -3}, "permutations"),
        ({"groups_x": np.arange(5)}, "together"),
        ({"groups_x": np.arange(4), "groups_y": np.arange(5)}, "one sample id per row"),
        ({"groups_x": np.zeros(5), "groups_y": np.zeros(5), "permutations": 5}, "at least 2 samples"),
    ],
)
def test_bad_input_gives_one_line_error(kwargs, message):
    rng = np.random.default_rng(0)
    args = {"x": rng.standard_normal((5, 3)), "y": rng.standard_normal((5, 3))}
    args.update(kwargs)
    with pytest.raises(StatsInputError, match=message) as info:
        mmd(args.pop("x"), args.pop("y"), **args)
    assert "\n" not in str(info.value)


def test_identical_points_need_an_explicit_bandwidth():
    with pytest.raises(StatsInputError, match="bandwidth"):
        mmd(np.ones((10, 3)), np.ones((10, 3)))


@pytest.mark.parametrize(("kind", "scales"), [("gaussian", (1.0,)), ("gaussian", MULTI_SCALES), ("distance", (1.0,))])
def test_torch_code_path_matches_numpy_path(kind, scales):
    # the GPU runs the torch implementation; run it on the CPU here so both paths stay identical
    import torch

    from keygap_tui.stats.kernel_sums import Kernel, exact_sums

    x, y = gaussian_pair(70, 50, 9, 0.3, seed=12)
    membership = permutation_membership(70, 50, 15, seed=2)
    kernel = Kernel(kind, 5.0, scales)
    cpu = torch.device("cpu")
    weights = (membership[:, 1:4] * 2.0, (~membership[:, 1:4]) * 1.0)  # bootstrap-like multiplicities too
    a, wa = exact_sums(x, y, membership, kernel, weights=weights, device=cpu, block_rows=16)
    b, wb = exact_sums(x, y, membership, kernel, weights=weights, device=cpu, block_rows=16, backend="torch")
    np.testing.assert_allclose(wb.between, wa.between, rtol=1e-5)
    for field in ("within_a", "within_b", "between", "diag_a", "n_a", "n_b"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-5)


def test_progressive_estimates_are_exact_for_nested_random_prefixes():
    from keygap_tui.stats.kernel_sums import visit_order

    x, y = gaussian_pair(60, 40, 5, 0.5, seed=13)
    seen = []
    result = mmd(x, y, bandwidth=2.0, block=16, on_estimate=lambda n_a, n_b, v: seen.append((n_a, n_b, v)))
    pooled = np.concatenate([x, y])
    is_a = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    order = visit_order(100)
    assert seen[-1][:2] == (60, 40) and seen[-1][2] == pytest.approx(result.value, rel=1e-9)
    for n_a, n_b, value in seen:
        prefix = order[: n_a + n_b]  # nested: each estimate uses the first rows of one fixed random order
        sub_a, sub_b = pooled[prefix][is_a[prefix]], pooled[prefix][~is_a[prefix]]
        assert (len(sub_a), len(sub_b)) == (n_a, n_b)
        assert value == pytest.approx(naive_mmd2(sub_a, sub_b, 2.0), rel=1e-5, abs=1e-7)


def test_auto_switches_to_random_features_above_the_threshold(monkeypatch):
    import importlib

    mmd_module = importlib.import_module("keygap_tui.stats.mmd")  # the package's `mmd` name is the function

    x, y = gaussian_pair(40, 40, 4, 0.0, seed=14)
    monkeypatch.setattr(mmd_module, "AUTO_EXACT_MAX_POOLED", 79)
    result = mmd(x, y, bandwidth=2.0)
    assert result.params["method"] == "rff" and result.params["auto_exact_max_pooled"] == 79
    assert result.params["block"] is None and result.params["rff_features"] == mmd_module.RFF_PILOT_FEATURES
    assert result.extra["rff_error_ratio"] <= mmd_module.RFF_TARGET_RATIO  # the null: the pilot is accurate enough
    monkeypatch.setattr(mmd_module, "AUTO_EXACT_MAX_POOLED", 80)
    assert mmd(x, y, bandwidth=2.0).params["method"] == "exact"
