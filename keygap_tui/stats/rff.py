"""Random Fourier feature sums: the Gaussian-kernel statistics in O(N D d) instead of O(N^2 d).

phi(z) = sqrt(2/D) cos(z W + b), W ~ N(0, 1/sigma^2), b ~ U(0, 2 pi) (Rahimi & Recht 2007), so that
phi(a).phi(b) estimates exp(-|a-b|^2 / (2 sigma^2)). With multiple scales, one block of D features per
scale, weighted so the dot product estimates the mean kernel. All sums of every permutation follow from
the per-split feature sums A'Phi, so a permutation test costs one small GEMM per row block.

How far RFF is from the exact statistic is measured on the data at hand, not assumed: the RFF MMD^2 is a
sum of one term per feature, and the features are independent draws, so the spread of those terms gives
the standard error of the approximation (FeatureSums.error_se). mmd compares it with the statistic's own
null standard deviation and, under method='auto', adds features or computes exactly until the error is
below RFF_TARGET_RATIO of it (docs/STATISTICS.md, "Random Fourier features").

The features are drawn from np.random.default_rng([seed, 1]), a stream separate from the permutation
draw, so exact and RFF runs with one seed test the same permutations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .kernel_sums import Kernel, PairSums, _NumpyOps, _TorchOps

RFF_ROWS = 4096


@dataclass(frozen=True)
class FeatureSums:
    """Per column of the weights: the sums; and, for column 0, the MMD^2 contribution of every feature."""

    sums: PairSums
    contributions: dict[str, np.ndarray]  # estimator -> [scales, D] per-feature terms of column 0

    def error_se(self, estimator: str) -> float:
        """Standard error of the RFF statistic around the exact one, given the data (features iid per scale)."""
        terms = self.contributions[estimator]
        features = terms.shape[1]
        return float(math.sqrt(sum(features * float(np.var(block, ddof=1)) for block in terms)))


def rff_pair_sums(x, y, membership, kernel: Kernel, *, features: int, seed: int, device,
                  precision: str = "float32") -> FeatureSums:
    """Feature sums for complementary sides: membership bool [n+m, P+1], side b = the rest."""
    return _feature_sums(x, y, membership.astype(np.float32), None, kernel, features, seed, device, precision)


def rff_weighted_sums(x, y, weights_a, weights_b, kernel: Kernel, *, features: int, seed: int, device,
                      precision: str = "float32") -> PairSums:
    """Feature sums for bootstrap multiplicities of each side ([n+m, R] each)."""
    return _feature_sums(x, y, weights_a, weights_b, kernel, features, seed, device, precision).sums


def _feature_sums(x, y, weights_a, weights_b, kernel, features, seed, device, precision) -> FeatureSums:
    """One pass over the rows: phi of a row block, then its weighted sums for every column at once.

    On the CPU in numpy (faster than torch's CPU kernels here, as for the exact engine), on a GPU in torch."""
    ops = _NumpyOps() if device.type == "cpu" else _TorchOps(device)
    dtype = np.float64 if precision == "float64" else np.float32
    dim = x.shape[1]
    n_rows = x.shape[0] + y.shape[0]
    rng = np.random.default_rng([seed, 1])
    sigma = math.sqrt(kernel.bandwidth)
    weights = [rng.standard_normal((dim, features), dtype=np.float32) / np.float32(s * sigma) for s in kernel.scales]
    w = ops.put(np.concatenate(weights, axis=1).astype(dtype))
    phase = ops.put(rng.uniform(0.0, 2.0 * math.pi, features * len(kernel.scales)).astype(dtype))
    amplitude = math.sqrt(2.0 / features / len(kernel.scales))
    mean = ((x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / n_rows).astype(dtype)

    complement = weights_b is None
    columns = weights_a if complement else np.concatenate([weights_a, weights_b], axis=1)
    a_t = ops.put(np.ascontiguousarray(columns.T, dtype=dtype))  # [C, N]
    width = features * len(kernel.scales)
    n_cols = columns.shape[1]
    sum_c = ops.put(np.zeros((n_cols, width)))
    total = ops.put(np.zeros(width))
    self_c = ops.put(np.zeros(n_cols))
    self_obs = ops.put(np.zeros(width))  # per-feature self terms of column 0 and of all rows
    self_all = ops.put(np.zeros(width))
    phi_buf = ops.empty(RFF_ROWS * width, dtype)
    sums_buf = ops.empty(n_cols * width, dtype)
    offset = 0
    for source in (x, y):
        for s in range(0, source.shape[0], RFF_ROWS):
            block = ops.put(np.ascontiguousarray(source[s : s + RFF_ROWS], dtype=dtype) - mean)  # shift-invariant
            rows = slice(offset + s, offset + s + block.shape[0])
            phi = phi_buf[: block.shape[0] * width].reshape(block.shape[0], width)
            ops.matmul(block, w, phi)
            ops.add_(phi, phase)
            ops.inplace("cos", phi)
            ops.mul(phi, amplitude, phi)
            block_sums = sums_buf.reshape(n_cols, width)
            ops.matmul(a_t[:, rows], phi, block_sums)
            sum_c += ops.to64(block_sums)
            total += ops.column_sums64(phi)
            ops.mul(phi, phi, phi)  # phi^2 from here on
            self_sq = ops.row_sums64(phi)
            weights_sq = ops.to64(a_t[:, rows])
            ops.mul(weights_sq, weights_sq, weights_sq)
            self_c += weights_sq @ self_sq
            self_obs += ops.to64(a_t[0, rows] @ phi)
            self_all += ops.column_sums64(phi)
        offset += source.shape[0]
    get = ops.get
    sum_c, total, self_c, self_obs, self_all = get(sum_c), get(total), get(self_c), get(self_obs), get(self_all)
    self_total = float(self_all.sum())

    if complement:
        sum_a, self_a = sum_c, self_c
        sum_b, self_b = total[None, :] - sum_a, self_total - self_a
        n_a = columns.sum(axis=0, dtype=np.float64)
        n_b = n_rows - n_a
        sq_a, sq_b = n_a, n_b
    else:
        half = n_cols // 2
        sum_a, sum_b = sum_c[:half], sum_c[half:]
        self_a, self_b = self_c[:half], self_c[half:]
        n_a = weights_a.sum(axis=0, dtype=np.float64)
        n_b = weights_b.sum(axis=0, dtype=np.float64)
        sq_a = np.square(weights_a, dtype=np.float64).sum(axis=0)
        sq_b = np.square(weights_b, dtype=np.float64).sum(axis=0)
    within_a = np.einsum("ij,ij->i", sum_a, sum_a) - self_a
    within_b = np.einsum("ij,ij->i", sum_b, sum_b) - self_b
    between = np.einsum("ij,ij->i", sum_a, sum_b)
    sums = PairSums(within_a, within_b, between, self_a, self_b, n_a, n_b, sq_a, sq_b)
    contributions: dict[str, np.ndarray] = {}
    if complement:
        sa, sb = sum_a[0], sum_b[0]
        wa, wb = self_obs, self_all - self_obs
        na, nb = float(n_a[0]), float(n_b[0])
        scales = len(kernel.scales)
        with np.errstate(divide="ignore", invalid="ignore"):
            unbiased = (sa * sa - wa) / (na * (na - 1)) + (sb * sb - wb) / (nb * (nb - 1)) - 2 * sa * sb / (na * nb)
        biased = (sa / na - sb / nb) ** 2
        contributions = {"unbiased": unbiased.reshape(scales, features), "biased": biased.reshape(scales, features)}
    return FeatureSums(sums, contributions)
