"""Exact kernel sums over the pooled sample, for the observed split and every permutation at once.

Why this shape: a two-sample kernel statistic needs three sums (within a, within b, between) and a
permutation test needs them again for every relabelling. Recomputing the kernel per permutation, or
storing the (n+m)^2 matrix and re-indexing it, was 100x slower when measured. Instead the pooled
kernel matrix K is produced in column rings of its upper triangle only (symmetry halves the work), each
block is reduced at once against an N x (P+1) 0/1 membership matrix A (column 0 = the real split), and
only O(N (P+1)) numbers survive. Memory is bounded by block_rows x block_cols, never (n+m)^2. Visiting
rings in a random row order makes the sums after each ring exact for a growing random prefix
(progressive MMD, docs/STATISTICS.md "How the kernel sums are computed").

Numerics: data are centred on the pooled mean (distance by |a|^2 + |b|^2 - 2ab loses digits far
from the origin), products run in float32 (GEMM-bound at d = 4096) unless the caller asks for float64
(a bandwidth below what float32 resolves, see precision_for), every reduction across blocks is
accumulated in float64. The half squared norms ride along as two extra columns, so the GEMM directly
yields the exponent z_r.z_c - |z_r|^2/2 - |z_c|^2/2 with no broadcast pass.

The columns need not be 0/1: with multiplicities (a bootstrap resample) the same reductions give the
weighted sums, which is how the confidence intervals reuse the engine (exact_sums(weights=...)).

On the CPU everything runs in numpy (see _NumpyOps for why not torch); on a GPU the same steps run in
torch on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: rows per ring when block="auto": wide enough for an efficient GEMM, small enough for cache.
AUTO_BLOCK_ROWS = 512
#: rows per GEMM within a ring: bounds the kernel buffer at block_rows x BLOCK_COLS float32 (16 MiB).
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
    """Per split (column): kernel sums over ordered pairs of distinct rows within a side, over all pairs
    between sides, the sum of w_i^2 k(z_i, z_i) per side, the total weight n and the sum of squared weights
    sq of each side. With 0/1 weights n is the row count and sq = n; with bootstrap multiplicities w the
    within sums are sum_{i != j} w_i w_j k_ij (pairs of distinct original rows)."""

    within_a: np.ndarray
    within_b: np.ndarray
    between: np.ndarray
    diag_a: np.ndarray
    diag_b: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray
    sq_a: np.ndarray
    sq_b: np.ndarray

    @property
    def pairs_a(self) -> np.ndarray:
        """Weighted count of ordered pairs of distinct rows on side a: n (n - 1) for 0/1 weights."""
        return self.n_a.astype(np.float64) ** 2 - self.sq_a

    @property
    def pairs_b(self) -> np.ndarray:
        return self.n_b.astype(np.float64) ** 2 - self.sq_b


def sums_from_reductions(total_upper, a_row_sums, a_upper, membership: np.ndarray, diagonal: float) -> PairSums:
    """Turn strict-upper-triangle reductions into the three sums of every split (side b = the complement).

    total_upper = sum_{i<j} K_ij; a_row_sums[p] = a_p' K_off 1; a_upper[p] = sum_{i<j} a_i a_j K_ij."""
    n_a = membership.sum(axis=0).astype(np.int64)
    n_b = membership.shape[0] - n_a
    within_a = 2.0 * a_upper
    between = a_row_sums - within_a
    within_b = 2.0 * total_upper - 2.0 * a_row_sums + within_a
    return PairSums(within_a, within_b, between, n_a * diagonal, n_b * diagonal, n_a, n_b,
                    n_a.astype(np.float64), n_b.astype(np.float64))


def visit_order(n_rows: int) -> np.ndarray:
    """The fixed random order in which exact_sums visits pooled rows (the sums do not depend on it;
    the progressive prefixes do)."""
    return np.random.default_rng(0).permutation(n_rows)


def prefix_reporter(on_estimate, statistic, estimator):
    """Adapter from the engine's prefix sums to on_estimate(n_a, n_b, value); None when nobody listens."""
    if on_estimate is None:
        return None

    def report(sums: PairSums) -> None:
        n_a, n_b = int(sums.n_a[0]), int(sums.n_b[0])
        if n_a >= 2 and n_b >= 2:
            on_estimate(n_a, n_b, float(statistic(sums, estimator)[0]))

    return report


def resolve_block(block) -> int:
    if block == "auto":
        return AUTO_BLOCK_ROWS
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        from .errors import StatsInputError

        raise StatsInputError(f"block={block!r}; pass 'auto' or a positive number of rows per ring")
    return int(block)


def exact_sums(
    x: np.ndarray,
    y: np.ndarray,
    membership: np.ndarray,
    kernel: Kernel,
    *,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
    device,
    block_rows: int = AUTO_BLOCK_ROWS,
    block_cols: int = BLOCK_COLS,
    progress: Callable[[float], None] | None = None,
    on_prefix: Callable[[PairSums], None] | None = None,
    backend: str = "auto",
    precision: str = "float32",
) -> tuple[PairSums, PairSums | None]:
    """Sums of `kernel` over pooled [x; y] for every column of `membership` (bool [n+m, P+1], side b = the
    rest) and, in the same pass, for `weights` = (w_a, w_b) bootstrap multiplicities ([n+m, R] each) when
    given: an interval then costs one wider reduction, not a second kernel evaluation.

    Progressive: the pooled rows are visited in one fixed random order, in rings of block_rows rows;
    ring r adds every pair whose later row lies in it. After each ring the sums are exact for a nested
    random prefix of the pooled rows, and on_prefix receives them (observed split only), so a caller can
    show a value that sharpens as it runs at no extra cost. progress(fraction of pairs done) follows each
    ring; an exception raised by either callback cancels the computation.
    backend: 'auto' (numpy on the CPU, torch elsewhere) or 'torch' (lets CPU tests run the GPU code path).
    precision: 'float32' or 'float64' for the kernel evaluation (sums are float64 either way)."""
    order = visit_order(x.shape[0] + y.shape[0])
    splits = membership.shape[1]
    columns = membership.astype(np.float64)
    if weights is not None:
        w_a, w_b = (np.asarray(w, dtype=np.float64) for w in weights)
        columns = np.concatenate([columns, w_a, w_b, w_a + w_b], axis=1)
    ordered = columns[order]

    report = on_prefix

    def prefix(total_upper, row_sums, upper, rows_done):
        assert report is not None  # prefix is passed on only with an on_prefix to call
        report(sums_from_reductions(total_upper, row_sums, upper, ordered[:rows_done, :1] > 0, kernel.diagonal))

    total_upper, row_sums, upper = _reductions(
        x, y, ordered, order, kernel, device=device, block_rows=block_rows, block_cols=block_cols,
        progress=progress, on_prefix=None if on_prefix is None else prefix, backend=backend, precision=precision,
    )
    split_sums = sums_from_reductions(total_upper, row_sums[:splits], upper[:splits], membership, kernel.diagonal)
    if weights is None:
        return split_sums, None
    return split_sums, _weighted_from_upper(upper[splits:], w_a, w_b, kernel)


def _weighted_from_upper(upper: np.ndarray, weights_a: np.ndarray, weights_b: np.ndarray, kernel: Kernel) -> PairSums:
    """PairSums from the upper sums of the columns [w_a | w_b | w_a + w_b]."""
    replicates = weights_a.shape[1]
    up_a, up_b, up_ab = upper[:replicates], upper[replicates: 2 * replicates], upper[2 * replicates:]
    n_a, n_b = weights_a.sum(axis=0, dtype=np.float64), weights_b.sum(axis=0, dtype=np.float64)
    sq_a = np.square(weights_a, dtype=np.float64).sum(axis=0)
    sq_b = np.square(weights_b, dtype=np.float64).sum(axis=0)
    return PairSums(2.0 * up_a, 2.0 * up_b, up_ab - up_a - up_b, sq_a * kernel.diagonal, sq_b * kernel.diagonal,
                    n_a, n_b, sq_a, sq_b)


def _reductions(x, y, columns, order, kernel: Kernel, *, device, block_rows, block_cols, progress, on_prefix,
                backend, precision):
    """(sum_{i<j} K_ij, c' K_off 1, sum_{i<j} c_i c_j K_ij) for every column c of `columns` (rows in `order`)."""
    use_numpy = device.type == "cpu" and backend == "auto"
    ops = _NumpyOps() if use_numpy else _TorchOps(device)
    dtype = np.float64 if precision == "float64" else np.float32
    n_rows = x.shape[0] + y.shape[0]
    dim = x.shape[1]
    ring = min(block_rows, n_rows)
    chunk = max(ring, block_cols // ring * ring)  # a multiple of the ring: a ring's square never straddles chunks
    data = _augmented_pooled(x, y, kernel, ops, order, dtype)  # [N, d+2] = [z, |z|^2/2, 1]
    splits = columns.shape[1]
    a64 = ops.put(columns.astype(np.float64))  # [N, C]
    # right factor of the membership GEMM: column 0 all ones (column sums), columns 1.. the splits
    ones_and_a = ops.put(np.concatenate([np.ones((n_rows, 1), dtype), columns.astype(dtype)], axis=1))
    strictly_upper = ops.put(np.triu(np.ones((ring, ring), dtype), k=1))

    ring_buf = ops.empty(ring * (dim + 2), dtype)
    kernel_buf = ops.empty(chunk * ring, dtype)
    multi = len(kernel.scales) > 1
    scratch = ops.empty(chunk * ring, dtype) if multi else None
    accum = ops.empty(chunk * ring, dtype) if multi else None
    reduce_buf = ops.empty((splits + 1) * ring, dtype)
    reduce64 = ops.empty((splits + 1) * ring, np.float64)
    product64 = ops.empty(splits * ring, np.float64)

    total_upper = ops.put(np.zeros(1))
    a_row_sums = ops.put(np.zeros(splits))
    a_upper = ops.put(np.zeros(splits))
    work_total = n_rows * (n_rows - 1) / 2.0

    for c0 in range(0, n_rows, ring):
        c1 = min(n_rows, c0 + ring)
        cols = c1 - c0
        ring_cols = ring_buf[: cols * (dim + 2)].reshape(cols, dim + 2)
        ops.copy(ring_cols, data[c0:c1])
        ring_cols[:, dim + 1] = -ring_cols[:, dim]
        ring_cols[:, dim] = -1.0  # data_r . ring_c = z_r.z_c - |z_r|^2/2 - |z_c|^2/2 = -|z_r - z_c|^2 / 2
        a_cols = a64[c0:c1]
        reduced = reduce_buf[: (splits + 1) * cols].reshape(cols, splits + 1)
        reduced64 = reduce64[: (splits + 1) * cols].reshape(cols, splits + 1)
        product = product64[: splits * cols].reshape(cols, splits)
        for r0 in range(0, c1, chunk):
            r1 = min(c1, r0 + chunk)
            rows = r1 - r0
            exponent = kernel_buf[: rows * cols].reshape(rows, cols)
            ops.matmul(data[r0:r1], ring_cols.T, exponent)
            ops.clamp_nonpositive(exponent)  # round-off can make a tiny distance negative
            k = _apply_kernel(exponent, kernel, scratch, accum, rows * cols, ops)
            if r1 > c0:  # the ring's own square: keep pairs with row < column only
                square = k[c0 - r0 : c1 - r0]
                ops.mul(square, strictly_upper[:cols, :cols], square)
            # K' [1 | A]: sums over <= chunk rows in the kernel's precision. This orientation, not [1 | A]' K:
            # OpenBLAS took 7-17x longer for the same product with few output rows and a long inner dimension.
            ops.matmul(k.T, ones_and_a[r0:r1], reduced)
            ops.copy(reduced64, reduced)  # from here on every sum is float64
            col_sums, a_times_k = reduced64[:, 0], reduced64[:, 1:]
            total_upper += col_sums.sum()
            a_row_sums += a_times_k.sum(0)
            a_row_sums += col_sums @ a_cols
            ops.mul(a_times_k, a_cols, product)
            a_upper += product.sum(0)
        if on_prefix is not None:
            on_prefix(float(ops.get(total_upper)[0]), ops.get(a_row_sums[:1]), ops.get(a_upper[:1]), c1)
        if progress is not None:
            progress(c1 * (c1 - 1) / 2.0 / work_total if work_total else 1.0)

    return float(ops.get(total_upper)[0]), ops.get(a_row_sums), ops.get(a_upper)


def _augmented_pooled(x: np.ndarray, y: np.ndarray, kernel: Kernel, ops, order: np.ndarray, dtype=np.float32):
    """[N, d+2] in dtype, rows in `order`: centred (and, for the Gaussian, divided by sigma) keys, |z|^2/2, 1."""
    dim = x.shape[1]
    n_a = x.shape[0]
    n_rows = n_a + y.shape[0]
    mean = ((x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / n_rows).astype(dtype)
    scale = dtype(1.0 / math.sqrt(kernel.bandwidth) if kernel.kind == "gaussian" else 1.0)
    data = np.empty((n_rows, dim + 2), dtype=dtype)
    data[:, dim + 1] = 1.0
    chunk = 1024
    for s in range(0, n_rows, chunk):
        source_rows = order[s : s + chunk]
        from_x = source_rows < n_a
        z = data[s : s + len(source_rows), :dim]
        z[from_x] = x[source_rows[from_x]]  # a copy: the caller's arrays are never modified
        z[~from_x] = y[source_rows[~from_x] - n_a]
        z -= mean
        if scale != 1.0:
            z *= scale
        data[s : s + len(source_rows), dim] = 0.5 * np.einsum("ij,ij->i", z, z, dtype=np.float64)
    return ops.put(data)


class _NumpyOps:
    """CPU: OpenBLAS GEMM and single-threaded numpy passes into preallocated buffers. Measured here, torch's
    CPU element-wise ops ran 5-10x slower than numpy's on this shared 2-core machine (OpenMP threads
    stall when cores are busy), and its GEMM 1.3-2x slower at d = 4096."""

    put = staticmethod(lambda array: array)
    get = staticmethod(lambda array: np.asarray(array))

    @staticmethod
    def empty(size, dtype):
        return np.empty(size, dtype=dtype)

    @staticmethod
    def copy(out, src):
        np.copyto(out, src)

    @staticmethod
    def matmul(a, b, out):
        np.matmul(a, b, out=out)

    @staticmethod
    def clamp_nonpositive(a):
        np.minimum(a, 0.0, out=a)

    @staticmethod
    def mul(a, b, out):
        np.multiply(a, b, out=out)

    @staticmethod
    def add_(a, b):
        np.add(a, b, out=a)

    @staticmethod
    def inplace(name, a):
        """exp, sqrt or cos of a, written into a."""
        return getattr(np, name)(a, out=a)

    @staticmethod
    def to64(a):
        return a.astype(np.float64)

    @staticmethod
    def column_sums64(a):
        return a.sum(axis=0, dtype=np.float64)

    @staticmethod
    def row_sums64(a):
        return a.sum(axis=1, dtype=np.float64)


class _TorchOps:
    """GPU: the same steps in torch on the device; results come back once at the end."""

    def __init__(self, device):
        import torch  # only here: the CPU path never pays for importing torch

        self.device = device
        self._dtypes = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

    def put(self, array):
        return _torch().from_numpy(np.ascontiguousarray(array)).to(self.device)

    @staticmethod
    def get(tensor):
        return tensor.cpu().numpy()

    def empty(self, size, dtype):
        return _torch().empty(size, dtype=self._dtypes[np.dtype(dtype)], device=self.device)

    @staticmethod
    def copy(out, src):
        out.copy_(src)

    @staticmethod
    def matmul(a, b, out):
        _torch().matmul(a, b, out=out)

    @staticmethod
    def clamp_nonpositive(a):
        a.clamp_(max=0.0)

    @staticmethod
    def mul(a, b, out):
        _torch().mul(a, b, out=out)

    @staticmethod
    def add_(a, b):
        a.add_(b)

    @staticmethod
    def inplace(name, a):
        return getattr(a, f"{name}_")()

    @staticmethod
    def to64(a):
        return a.double()

    @staticmethod
    def column_sums64(a):
        return a.sum(dim=0, dtype=_torch().float64)

    @staticmethod
    def row_sums64(a):
        return a.sum(dim=1, dtype=_torch().float64)


def _apply_kernel(neg_half_sq, kernel: Kernel, scratch, accum, size: int, ops):
    """In place where possible: neg_half_sq holds -|a-b|^2 / 2 (divided by sigma^2 for the Gaussian)."""
    if kernel.kind == "distance":
        ops.mul(neg_half_sq, -2.0, neg_half_sq)
        return ops.inplace("sqrt", neg_half_sq)
    if len(kernel.scales) == 1:
        if kernel.scales[0] != 1.0:
            ops.mul(neg_half_sq, 1.0 / kernel.scales[0] ** 2, neg_half_sq)
        return ops.inplace("exp", neg_half_sq)
    shape = neg_half_sq.shape
    total = accum[:size].reshape(shape)
    tmp = scratch[:size].reshape(shape)
    ops.mul(neg_half_sq, 1.0 / kernel.scales[0] ** 2, total)
    ops.inplace("exp", total)
    for s in kernel.scales[1:]:
        ops.mul(neg_half_sq, 1.0 / s**2, tmp)
        ops.add_(total, ops.inplace("exp", tmp))
    ops.mul(total, 1.0 / len(kernel.scales), total)
    return total


def _torch():
    import torch

    return torch
