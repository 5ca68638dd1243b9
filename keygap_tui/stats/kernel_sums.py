"""Exact kernel sums over the pooled sample, for the observed split and every permutation at once.

Why this shape: a two-sample kernel statistic needs three sums (within a, within b, between) and a
permutation test needs them again for every relabelling. Recomputing the kernel per permutation, or
storing the (n+m)^2 matrix and re-indexing it, is 100x slower (FIELD-NOTES sect 5). Instead the pooled
kernel matrix K is produced in row strips of the upper triangle only (symmetry halves the work), each
strip is reduced at once against an N x (P+1) 0/1 membership matrix A (column 0 = the real split), and
only O(N (P+1)) numbers survive. Memory is bounded by block_rows x block_cols, never (n+m)^2.

Numerics: data are centred on the pooled mean (distance by |a|^2 + |b|^2 - 2ab loses digits far
from the origin), products run in float32 (GEMM-bound at d = 4096), every reduction across blocks is
accumulated in float64. The half squared norm is appended as one extra column so the GEMM directly
yields z_r.z_c - |z_c|^2/2; one broadcast subtraction finishes the exponent.

On the CPU the GEMMs go through numpy (OpenBLAS beat torch's CPU GEMM by 1.3-2x at d = 4096 here) and
the element-wise passes through torch (multi-threaded, in place, on the same memory); on a GPU all of it
runs in torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

#: rows per strip used when block="auto": wide enough for an efficient GEMM, small enough for cache.
AUTO_BLOCK_ROWS = 512
#: columns per chunk of a strip: bounds the kernel buffer at block_rows x BLOCK_COLS float32 (16 MiB).
BLOCK_COLS = 8192


@dataclass(frozen=True)
class Kernel:
    """'gaussian': mean over s in scales of exp(-|a-b|^2 / (2 s^2 sigma^2)), sigma^2 = bandwidth.
    'distance': |a - b| (the energy-distance kernel, used with the opposite sign)."""

    kind: str
    bandwidth: float = 1.0
    scales: tuple[float, ...] = (1.0,)

    @property
    def diagonal(self) -> float:
        return 1.0 if self.kind == "gaussian" else 0.0


@dataclass(frozen=True)
class PairSums:
    """Per split (column of the membership matrix): kernel sums over ordered pairs i != j within a side,
    over all pairs between sides, the sum of k(z_i, z_i) per side, and the row counts."""

    within_a: np.ndarray
    within_b: np.ndarray
    between: np.ndarray
    diag_a: np.ndarray
    diag_b: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray


def sums_from_reductions(total_upper, a_row_sums, a_upper, membership: np.ndarray, diagonal: float) -> PairSums:
    """Turn strict-upper-triangle reductions into the three sums of every split.

    total_upper = sum_{i<j} K_ij; a_row_sums[p] = a_p' K_off 1; a_upper[p] = sum_{i<j} a_i a_j K_ij."""
    n_a = membership.sum(axis=0).astype(np.int64)
    n_b = membership.shape[0] - n_a
    within_a = 2.0 * a_upper
    between = a_row_sums - within_a
    within_b = 2.0 * total_upper - 2.0 * a_row_sums + within_a
    return PairSums(within_a, within_b, between, n_a * diagonal, n_b * diagonal, n_a, n_b)


def resolve_block(block, dim: int) -> int:
    if block == "auto":
        return AUTO_BLOCK_ROWS
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        from .errors import StatsInputError

        raise StatsInputError(f"block={block!r}; pass 'auto' or a positive number of rows per strip")
    return int(block)


def exact_pair_sums(
    x: np.ndarray,
    y: np.ndarray,
    membership: np.ndarray,
    kernel: Kernel,
    *,
    device: torch.device,
    block_rows: int = AUTO_BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
    progress: Callable[[float], None] | None = None,
) -> PairSums:
    """Sums of `kernel` over pooled [x; y] for every column of `membership` (bool [n+m, P+1]).

    `progress(fraction)` is called after each strip; an exception raised by it cancels the computation."""
    n_rows = x.shape[0] + y.shape[0]
    dim = x.shape[1]
    block_cols = max(block_cols, block_rows)
    on_cpu = device.type == "cpu"
    data = _augmented_pooled(x, y, kernel, device)
    splits = membership.shape[1]
    a_t = torch.from_numpy(np.ascontiguousarray(membership.T, dtype=np.float32)).to(device)  # [P+1, N]
    # left factor of the membership GEMM: row 0 all ones (column sums), rows 1.. the splits
    left_t = torch.cat([torch.ones(1, n_rows, dtype=torch.float32, device=device), a_t])

    kernel_buf = torch.empty(block_rows * block_cols, dtype=torch.float32, device=device)
    scratch = torch.empty_like(kernel_buf) if len(kernel.scales) > 1 else None
    accum = torch.empty_like(kernel_buf) if len(kernel.scales) > 1 else None
    reduce_buf = torch.empty((splits + 1) * block_cols, dtype=torch.float32, device=device)

    total_upper = torch.zeros((), dtype=torch.float64, device=device)
    a_row_sums = torch.zeros(splits, dtype=torch.float64, device=device)
    a_upper = torch.zeros(splits, dtype=torch.float64, device=device)
    work_total = n_rows * (n_rows + 1) / 2.0
    work_done = 0.0

    for r0 in range(0, n_rows, block_rows):
        r1 = min(n_rows, r0 + block_rows)
        rows = r1 - r0
        strip_rows = data[r0:r1].clone()
        half_sq_rows = strip_rows[:, dim].clone()
        strip_rows[:, dim] = -1.0
        left_rows = left_t[:, r0:r1].contiguous()  # [P+2, rows]
        for c0 in range(r0, n_rows, block_cols):
            c1 = min(n_rows, c0 + block_cols)
            cols = c1 - c0
            gram = kernel_buf[: rows * cols].view(rows, cols)
            _gemm(strip_rows, data[c0:c1].T, gram, on_cpu)
            gram.sub_(half_sq_rows[:, None]).clamp_(max=0.0)  # -|a-b|^2/2 in kernel units
            k = _apply_kernel(gram, kernel, scratch, accum, rows * cols)
            if c0 == r0:  # the diagonal square: keep strictly upper pairs only
                k[:, :rows].triu_(diagonal=1)
            reduced = reduce_buf[: (splits + 1) * cols].view(splits + 1, cols)
            _gemm(left_rows, k, reduced, on_cpu)
            col_sums, a_times_k = reduced[0], reduced[1:]
            a_cols = a_t[:, c0:c1]
            total_upper += col_sums.sum(dtype=torch.float64)
            a_row_sums += a_times_k.sum(dim=1, dtype=torch.float64)
            a_row_sums += (a_cols * col_sums).sum(dim=1, dtype=torch.float64)
            a_upper += (a_times_k * a_cols).sum(dim=1, dtype=torch.float64)
        work_done += rows * (n_rows - r0) - rows * (rows - 1) / 2.0
        if progress is not None:
            progress(min(1.0, work_done / work_total))

    return sums_from_reductions(
        float(total_upper.item()),
        a_row_sums.cpu().numpy(),
        a_upper.cpu().numpy(),
        membership,
        kernel.diagonal,
    )


def _augmented_pooled(x: np.ndarray, y: np.ndarray, kernel: Kernel, device: torch.device) -> torch.Tensor:
    """[N, d+1] float32: centred (and, for the Gaussian, divided by sigma) rows plus |z|^2/2."""
    dim = x.shape[1]
    n_a = x.shape[0]
    mean = (x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / (n_a + y.shape[0])
    scale = 1.0 / math.sqrt(kernel.bandwidth) if kernel.kind == "gaussian" else 1.0
    mean_t = torch.from_numpy(mean.astype(np.float32)).to(device)
    data = torch.empty((n_a + y.shape[0], dim + 1), dtype=torch.float32, device=device)
    chunk = 8192
    for source, offset in ((x, 0), (y, n_a)):
        for s in range(0, source.shape[0], chunk):
            part = torch.from_numpy(source[s : s + chunk]).to(device)
            part = (part - mean_t) * scale
            rows = slice(offset + s, offset + s + part.shape[0])
            data[rows, :dim] = part
            data[rows, dim] = (0.5 * part.double().square().sum(dim=1)).float()
    return data


def _gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, on_cpu: bool) -> None:
    if on_cpu:
        np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    else:
        torch.matmul(a, b, out=out)


def _apply_kernel(neg_half_sq, kernel: Kernel, scratch, accum, size: int) -> torch.Tensor:
    """In place where possible: neg_half_sq holds -|a-b|^2 / 2 (divided by sigma^2 for the Gaussian)."""
    if kernel.kind == "distance":
        return neg_half_sq.mul_(-2.0).sqrt_()
    if len(kernel.scales) == 1:
        if kernel.scales[0] != 1.0:
            neg_half_sq.mul_(1.0 / kernel.scales[0] ** 2)
        return neg_half_sq.exp_()
    shape = neg_half_sq.shape
    total = accum[:size].view(shape).zero_()
    tmp = scratch[:size].view(shape)
    for s in kernel.scales:
        torch.mul(neg_half_sq, 1.0 / s**2, out=tmp)
        total.add_(tmp.exp_())
    return total.mul_(1.0 / len(kernel.scales))
