"""Jensen-Shannon divergence between two key sets, along their shared principal directions.

Our documented procedure (the paper states none; README.md, "Choices the paper left open"): z-score
each dimension with the pooled mean and std, PCA on the pooled data, project onto the top k components,
histogram each projection on `bins` shared bins spanning the pooled `quantile_range` percentiles (values
outside go to the edge bins), add eps to every bin probability and renormalise, JSD in bits (base 2).
value = mean over components; extra has the max and every component.

Bias: a histogram JSD is biased upward at finite n (two samples of ONE distribution score > 0). Because
the z-scoring, PCA and bin edges are fitted on the pooled data, they do not depend on which rows are
labelled a or b: relabelling whole samples at random (`shuffles` draws, the same sample-level draw as
the permutation tests) therefore reproduces the estimator's null behaviour exactly, at the cost of a
few histograms. extra["bias_corrected"] = value - mean over shuffles; with shuffles > 0 the p-value is
(1 + #{shuffled >= observed}) / (1 + shuffles).
"""

from __future__ import annotations

import time

import numpy as np

from .errors import StatsInputError
from .inputs import as_groups, as_pair, check_choice, check_count
from .permutation import permutation_membership, permutation_p_value
from .result import MeasureResult

#: pca="auto" uses an exact covariance eigendecomposition up to this dimension, randomized SVD above.
AUTO_EXACT_PCA_MAX_DIM = 1024
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
    shuffles: int = 20,
    pca: str = "auto",
    keep_null: bool = False,
) -> MeasureResult:
    """k principal components (fewer when dim or rows are fewer); bins per component over the pooled
    quantile_range percentiles; eps added to each bin probability; base of the logarithm (2: bits).
    shuffles: sample-level relabellings for the bias correction and p-value (0 turns both off).
    pca: 'exact' covariance eigh, 'randomized' SVD, or 'auto' (exact up to AUTO_EXACT_PCA_MAX_DIM)."""
    started = time.perf_counter()
    k = check_count("k", k, 1)
    bins = check_count("bins", bins, 2)
    shuffles = check_count("shuffles", shuffles, 0)
    check_choice("pca", pca, ("auto", "exact", "randomized"))
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
    resolved_pca = pca if pca != "auto" else ("exact" if pooled.shape[1] <= AUTO_EXACT_PCA_MAX_DIM else "randomized")
    components, variance = principal_components(pooled, k_used, resolved_pca, seed)
    total_variance = float(np.einsum("ij,ij->", pooled, pooled, dtype=np.float64) / (pooled.shape[0] - 1))
    projections = (pooled @ components.T).astype(np.float64)  # [N, k]
    del pooled

    membership = permutation_membership(
        len(x), len(y), shuffles,
        groups_x=None if groups is None else groups[0],
        groups_y=None if groups is None else groups[1],
        seed=seed,
    )
    js = np.empty((membership.shape[1], k_used))
    for j in range(k_used):
        codes = bin_codes(projections[:, j], bins, (low_q, high_q))
        total = np.bincount(codes, minlength=bins)
        for split in range(membership.shape[1]):
            counts_a = np.bincount(codes[membership[:, split]], minlength=bins)
            js[split, j] = js_of_histograms(counts_a, total - counts_a, eps=eps, base=base)

    per_component = js[0]
    value = float(per_component.mean())
    extra = {
        "js_max": float(per_component.max()),
        "per_component": per_component.tolist(),
        "explained_variance_ratio": (variance / total_variance).tolist() if total_variance > 0 else None,
    }
    p_value = None
    if shuffles:
        null = js[1:].mean(axis=1)
        p_value = permutation_p_value(value, null)
        extra.update(
            bias=float(null.mean()),
            bias_corrected=value - float(null.mean()),
            per_component_bias_corrected=(per_component - js[1:].mean(axis=0)).tolist(),
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
        "shuffles": shuffles,
        "shuffle_unit": "row" if groups is None else "sample",
        "pca": resolved_pca,
        "randomized_power_iterations": RANDOMIZED_POWER_ITERATIONS if resolved_pca == "randomized" else None,
        "standardize": "pooled z-score",
        "fit_on": "pooled",
    }
    return MeasureResult("js", value, p_value, len(x), len(y), params, seed, time.perf_counter() - started, extra)


def principal_components(z: np.ndarray, k: int, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k directions [k, d] of centred z and their variances, largest first, sign fixed so the
    largest-magnitude loading is positive (the JSD does not depend on the sign; the record does)."""
    if method == "exact":
        cov = (z.T @ z).astype(np.float64) / (z.shape[0] - 1)
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1][:k]
        components, variance = eigvec[:, order].T, eigval[order]
    else:
        from sklearn.utils.extmath import randomized_svd

        _, singular, vt = randomized_svd(z, k, n_iter=RANDOMIZED_POWER_ITERATIONS, random_state=seed)
        components, variance = vt.astype(np.float64), singular.astype(np.float64) ** 2 / (z.shape[0] - 1)
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return (components * signs[:, None]).astype(np.float32), variance


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
    p = np.asarray(counts_a, dtype=np.float64)
    q = np.asarray(counts_b, dtype=np.float64)
    p = p / p.sum() + eps
    q = q / q.sum() + eps
    p /= p.sum()
    q /= q.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(max(0.5 * (kl_p + kl_q), 0.0) / np.log(base))


def _quantile_range(quantile_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in quantile_range)
    except (TypeError, ValueError):
        raise StatsInputError(f"quantile_range={quantile_range!r}; pass two percentiles like (0.5, 99.5)") from None
    if not 0 <= low < high <= 100:
        raise StatsInputError(f"quantile_range={quantile_range!r}; pass 0 <= low < high <= 100")
    return low, high
