"""Random Fourier feature sums: the Gaussian-kernel statistics in O(N D d) instead of O(N^2 d).

phi(z) = sqrt(2/D) cos(z W + b), W ~ N(0, 1/sigma^2), b ~ U(0, 2 pi) (Rahimi & Recht 2007), so that
phi(a).phi(b) estimates exp(-|a-b|^2 / (2 sigma^2)). With multiple scales, one block of D features per
scale, weighted so the dot product estimates the mean kernel. All sums of every permutation follow from
the per-split feature sums A'Phi, so a permutation test costs one small GEMM per row block.

The features are drawn from np.random.default_rng([seed, 1]), a stream separate from
the permutation draw, so exact and RFF runs with one seed test the same permutations.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_sums import Kernel, PairSums

RFF_ROWS = 4096


def rff_pair_sums(
    x: np.ndarray,
    y: np.ndarray,
    membership: np.ndarray,
    kernel: Kernel,
    *,
    features: int,
    seed: int,
    device,
) -> PairSums:
    import torch  # imported here so that loading the stats package stays torch-free on the CPU path

    dim = x.shape[1]
    n_rows = x.shape[0] + y.shape[0]
    rng = np.random.default_rng([seed, 1])
    sigma = math.sqrt(kernel.bandwidth)
    weights = []
    for s in kernel.scales:
        weights.append(rng.standard_normal((dim, features), dtype=np.float32) / np.float32(s * sigma))
    w = torch.from_numpy(np.concatenate(weights, axis=1)).to(device)
    phase = torch.from_numpy(rng.uniform(0.0, 2.0 * math.pi, w.shape[1]).astype(np.float32)).to(device)
    amplitude = math.sqrt(2.0 / features / len(kernel.scales))
    mean = torch.from_numpy(
        ((x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / n_rows).astype(np.float32)
    ).to(device)

    splits = membership.shape[1]
    a_t = torch.from_numpy(np.ascontiguousarray(membership.T, dtype=np.float32)).to(device)
    sum_a = torch.zeros((splits, w.shape[1]), dtype=torch.float64, device=device)
    total = torch.zeros(w.shape[1], dtype=torch.float64, device=device)
    self_a = torch.zeros(splits, dtype=torch.float64, device=device)
    self_total = torch.zeros((), dtype=torch.float64, device=device)
    offset = 0
    for source in (x, y):
        for s in range(0, source.shape[0], RFF_ROWS):
            block = torch.from_numpy(source[s : s + RFF_ROWS]).to(device) - mean  # shift-invariant kernel
            phi = torch.addmm(phase, block, w).cos_().mul_(amplitude)
            rows = slice(offset + s, offset + s + block.shape[0])
            a_block = a_t[:, rows]
            sum_a += (a_block @ phi).double()
            total += phi.sum(dim=0, dtype=torch.float64)
            self_sq = phi.double().square().sum(dim=1)
            self_a += a_block.double() @ self_sq
            self_total += self_sq.sum()
        offset += source.shape[0]

    sum_b = total[None, :] - sum_a
    self_b = self_total - self_a
    within_a = (sum_a.square().sum(dim=1) - self_a).cpu().numpy()
    within_b = (sum_b.square().sum(dim=1) - self_b).cpu().numpy()
    between = (sum_a * sum_b).sum(dim=1).cpu().numpy()
    n_a = membership.sum(axis=0).astype(np.int64)
    return PairSums(within_a, within_b, between, self_a.cpu().numpy(), self_b.cpu().numpy(), n_a, n_rows - n_a)
