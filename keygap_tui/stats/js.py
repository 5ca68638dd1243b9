"""Jensen-Shannon divergence between two key sets, along their shared principal directions.

Our documented procedure (the paper states none; docs/STATISTICS.md, "Jensen-Shannon"): z-score each
dimension with the pooled mean and std, PCA on the pooled data, project onto the top k components,
histogram each projection on `bins` shared bins spanning the pooled `quantile_range` percentiles (values
outside go to the edge bins), add eps to every bin probability and renormalise, JSD in bits (base 2).
value = mean over components; extra has the max and every component.

PCA is exact by default: the top-k eigenvectors of the smaller of the covariance (d x d) and Gram (N x N)
matrices, by a Lanczos solver above size 128, converged to the float32 precision the keys have. Randomized
SVD is available as pca='randomized' and is never chosen for you: on key-like data it moved the JS value
by several percent (the measured deviations are in docs/STATISTICS.md).

Bias: a histogram JSD is biased upward at finite n (two samples of ONE distribution score > 0). Because
the z-scoring, PCA and bin edges are fitted on the pooled data, they do not depend on which rows are
labelled a or b: relabelling the rows by the design-aware permutation draw (permutation.py: whole samples
for disjoint sides, a swap within each sample for shared ones) therefore reproduces the estimator's null
behaviour. extra["bias_corrected"] = value - mean over the `permutations` draws; the p-value is
(1 + #{permuted >= observed}) / (1 + permutations). Every split's histograms come from one exact
integer-valued product of the split matrix with the one-hot bin codes, and each distinct split is
evaluated once, so a draw that reproduces the observed split ties with it exactly.
"""

from __future__ import annotations

import time

import numpy as np

from .bootstrap import DEFAULT_CI_METHOD, DEFAULT_CI_REPLICATES, check_ci, ci_record, interval, resample_weights
from .errors import StatsInputError
from .inputs import as_groups, as_pair, check_choice, check_count
from .permutation import permutation_p_value, plan_splits
from .result import MeasureResult

#: matrices up to this size are eigendecomposed in full (LAPACK); larger ones by Lanczos (ARPACK) to the float32
#: precision of the matrix, which also stays fast on a loaded machine: a full 512 x 512 eigh took 17 s there
#: with two BLAS threads contending (0.45 s with one), the Lanczos solver 0.7 s. On a 4,000 x 4,000 Gram
#: matrix the float32 Lanczos took 2.2 s against 11.5 s in float64 (one thread), eigenvalues within 9e-7
#: and directions within |cos| > 0.9999992 of the float64 solution.
FULL_EIGH_MAX = 128
RANDOMIZED_POWER_ITERATIONS = 4


def js_divergence(
    x,
    y,
    *,
    groups_x=None,
    groups_y=None,
    seed: int = 0,
    k: int = 10,
    bins: int = 64,
    quantile_range: tuple[float, float] = (0.5, 99.5),
    eps: float = 1e-10,
    base: float = 2,
    permutations: int = 200,
    pca: str = "exact",
    ci: float | None = None,
    ci_replicates: int = DEFAULT_CI_REPLICATES,
    ci_method: str = DEFAULT_CI_METHOD,
    keep_null: bool = False,
    shuffles: int | None = None,
) -> MeasureResult:
    """k principal components (fewer when dim or rows are fewer); bins per component over the pooled
    quantile_range percentiles; eps added to each bin probability; base of the logarithm (2: bits).
    permutations: design-aware relabellings for the bias correction and the p-value (0 turns both off).
    pca: 'exact' (default) or 'randomized' (faster at large N and d, not exact: see the module docstring).
    ci: a level such as 0.95 adds a bootstrap interval over samples for the bias-corrected value (for the
    raw value when permutations=0), centred on it: the resamples give its spread, not its bias.
    shuffles: the former name of permutations, refused with a message."""
    started = time.perf_counter()
    if shuffles is not None:
        raise StatsInputError(f"js takes permutations={shuffles} now (shuffles was renamed); pass js.permutations")
    k = check_count("k", k, 1)
    bins = check_count("bins", bins, 2)
    permutations = check_count("permutations", permutations, 0)
    check_choice("pca", pca, ("exact", "randomized"))
    level = check_ci(ci, ci_replicates, ci_method)
    low_q, high_q = _quantile_range(quantile_range)
    if not (eps >= 0 and np.isfinite(eps)) or not (base > 1):
        raise StatsInputError(f"eps={eps!r}, base={base!r}; pass eps >= 0 and base > 1 (2 gives bits)")
    x, y = as_pair(x, y, min_rows=2)
    groups = as_groups(groups_x, groups_y, len(x), len(y))

    pooled = np.concatenate([x, y])
    pooled -= pooled.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.sqrt(np.einsum("ij,ij->j", pooled, pooled, dtype=np.float64) / pooled.shape[0])  # no float64 copy
    std[std == 0] = 1.0  # constant dimensions carry no information; keep them at 0
    pooled /= std.astype(np.float32)
    k_used = min(k, pooled.shape[1], pooled.shape[0] - 1)
    components, variance = principal_components(pooled, k_used, pca, seed)
    total_variance = float(np.einsum("ij,ij->", pooled, pooled, dtype=np.float64) / (pooled.shape[0] - 1))
    projections = (pooled @ components.T).astype(np.float64)  # [N, k]
    del pooled
    onehots = [_one_hot(bin_codes(projections[:, j], bins, (low_q, high_q)), bins) for j in range(k_used)]

    splits = plan_splits(len(x), len(y), groups, permutations, seed)
    side_a = splits.distinct.astype(np.float32)
    per_split = _js_of_weights(onehots, side_a, 1.0 - side_a, eps, base)  # [distinct, k]
    per_component = per_split[splits.inverse[0]]
    value, null = splits.observed_and_null(per_split.mean(axis=1))
    extra = {
        "js_max": float(per_component.max()),
        "per_component": per_component.tolist(),
        "explained_variance_ratio": (variance / total_variance).tolist() if total_variance > 0 else None,
        **splits.design.record(),
    }
    p_value = None
    bias = 0.0
    if permutations:
        p_value = permutation_p_value(value, null)
        bias = float(null.mean())
        extra.update(
            bias=bias,
            bias_corrected=value - bias,
            per_component_bias_corrected=(per_component - per_split[splits.inverse[1:]].mean(axis=0)).tolist(),
            null_std=float(null.std()),
        )
        if keep_null:
            extra["null"] = null.tolist()
    params = {
        "k": k_used,
        "k_requested": k,
        "bins": bins,
        "quantile_range": [low_q, high_q],
        "eps": eps,
        "base": base,
        "permutations": permutations,
        "permutation_unit": splits.design.unit,
        "pca": pca,
        "pca_solver": _solver_name(pca, len(x) + len(y), x.shape[1]),
        "randomized_power_iterations": RANDOMIZED_POWER_ITERATIONS if pca == "randomized" else None,
        "standardize": "pooled z-score",
        "fit_on": "pooled",
    }
    ci_bounds = None
    if level is not None:
        w_a, w_b = resample_weights(splits.design, ci_replicates, seed)
        # The resamples give the spread only: duplicated samples make their histograms spikier, so their
        # mean overstates the bias, which the permutation draws estimate instead. Centred on the estimate.
        raw = _js_of_weights(onehots, w_a, w_b, eps, base).mean(axis=1)
        estimate = value - bias
        ci_bounds = interval(estimate, raw - np.nanmean(raw) + estimate, level, ci_method)
        params.update(ci_record(level, ci_replicates, ci_method, splits.design))
        params["ci_of"] = "bias_corrected" if permutations else "value"
    return MeasureResult("js", value, p_value, len(x), len(y), params, seed, time.perf_counter() - started, extra,
                         ci_bounds)


def _one_hot(codes: np.ndarray, bins: int) -> np.ndarray:
    out = np.zeros((len(codes), bins), dtype=np.float32)
    out[np.arange(len(codes)), codes] = 1.0
    return out


def _js_of_weights(onehots, weights_a: np.ndarray, weights_b: np.ndarray, eps: float, base: float) -> np.ndarray:
    """JSD [C, k] of the weighted histograms of every column. The float32 products are exact: every
    partial sum is an integer below 2^24."""
    out = np.empty((weights_a.shape[1], len(onehots)))
    for j, onehot in enumerate(onehots):
        counts_a = (weights_a.T @ onehot).astype(np.float64)
        counts_b = (weights_b.T @ onehot).astype(np.float64)
        out[:, j] = js_rows(counts_a, counts_b, eps=eps, base=base)
    return out


def principal_components(z: np.ndarray, k: int, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k directions [k, d] of centred z and their variances, largest first, sign fixed so the
    largest-magnitude loading is positive (the JSD does not depend on the sign; the record does)."""
    rows = z.shape[0]
    if method == "exact":
        if z.shape[1] <= rows:  # covariance d x d
            eigval, eigvec = _top_eigh(z.T @ z, k, seed)
            components, variance = eigvec.T, eigval / (rows - 1)
        else:  # Gram N x N: z' u / |z' u| are the same directions
            eigval, eigvec = _top_eigh(z @ z.T, k, seed)
            directions = (z.T @ eigvec.astype(np.float32)).astype(np.float64)  # [d, k]
            components = (directions / np.linalg.norm(directions, axis=0)).T
            variance = eigval / (rows - 1)
    else:
        from sklearn.utils.extmath import randomized_svd

        _, singular, vt = randomized_svd(z, k, n_iter=RANDOMIZED_POWER_ITERATIONS, random_state=seed)
        components, variance = vt.astype(np.float64), singular.astype(np.float64) ** 2 / (rows - 1)
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return (components * signs[:, None]).astype(np.float32), variance


def _top_eigh(matrix: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of a symmetric PSD float32 matrix (a float32 product of the keys, so float32
    is its precision), largest first, converged to that precision; float64 results."""
    size = matrix.shape[0]
    if size <= FULL_EIGH_MAX or k >= size - 1:
        eigval, eigvec = np.linalg.eigh(matrix.astype(np.float64))
    else:
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        start = np.asarray(np.random.default_rng([seed, 4]).standard_normal(size), dtype=matrix.dtype)
        try:
            eigval, eigvec = eigsh(matrix, k=k, which="LA", tol=0, v0=start)
        except ArpackNoConvergence:  # clustered eigenvalues: the full solver is slower but always converges
            import scipy.linalg

            eigval, eigvec = scipy.linalg.eigh(matrix, subset_by_index=[size - k, size - 1], driver="evr")
    order = np.argsort(eigval)[::-1][:k]
    return np.clip(eigval[order].astype(np.float64), 0.0, None), eigvec[:, order].astype(np.float64)


def _solver_name(pca: str, rows: int, dim: int) -> str:
    if pca == "randomized":
        return "sklearn randomized_svd"
    size = min(rows, dim)
    matrix = "covariance" if dim <= rows else "gram"
    return f"{matrix} {'eigh (LAPACK)' if size <= FULL_EIGH_MAX else 'eigsh (ARPACK, tol 0)'}"


def bin_codes(values: np.ndarray, bins: int, quantile_range: tuple[float, float]) -> np.ndarray:
    """Bin index of every value on `bins` equal bins between the two pooled percentiles; outside values
    land in the edge bins. Same assignment as np.histogram on values clipped to the range."""
    low, high = np.percentile(values, quantile_range)
    if not high > low:  # (near-)constant projection: one bin holds everything, JSD 0
        return np.zeros(len(values), dtype=np.int64)
    edges = np.linspace(low, high, bins + 1)
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)


def js_of_histograms(counts_a, counts_b, *, eps: float = 1e-10, base: float = 2) -> float:
    """JSD (not its square root) of two histograms: eps is added to each bin probability, then both are
    renormalised. scipy.spatial.distance.jensenshannon returns the square root of this."""
    return float(js_rows(np.asarray(counts_a, dtype=np.float64)[None, :],
                         np.asarray(counts_b, dtype=np.float64)[None, :], eps=eps, base=base)[0])


def js_rows(counts_a: np.ndarray, counts_b: np.ndarray, *, eps: float = 1e-10, base: float = 2) -> np.ndarray:
    """js_of_histograms of every row of two [C, bins] count arrays; symmetric in a and b bit for bit."""
    p = counts_a / counts_a.sum(axis=1, keepdims=True) + eps
    q = counts_b / counts_b.sum(axis=1, keepdims=True) + eps
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=1)
    return np.maximum(0.5 * (kl_p + kl_q), 0.0) / np.log(base)


def _quantile_range(quantile_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in quantile_range)
    except (TypeError, ValueError):
        raise StatsInputError(f"quantile_range={quantile_range!r}; pass two percentiles like (0.5, 99.5)") from None
    if not 0 <= low < high <= 100:
        raise StatsInputError(f"quantile_range={quantile_range!r}; pass 0 <= low < high <= 100")
    return low, high
