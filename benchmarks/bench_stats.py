"""Cost of the statistics on this machine, as ratios to baselines measured in the same process.

Prints a table; appends nothing. Figures worth keeping go to BENCHMARKS.md ("Statistics") by hand.

  /tmp/kgvenv/bin/python benchmarks/bench_stats.py              # n = m = 5000, d = 4096
  /tmp/kgvenv/bin/python benchmarks/bench_stats.py --n 2000 --d 512

Flop count of one exact MMD: the upper triangle of the pooled (2n)^2 Gram matrix at 2 d flops per
entry = (2n)^2 d = 4 n^2 d (kernel exps, the diagonal squares and the membership reduction are extra
work, not counted). Baseline: the same flop count as plain numpy float32 GEMMs of the shape the
engine uses (8192 x d times d x 512), timed right before each MMD run, so that both see the same load
on a shared machine; the ratio of the pair is reported per repetition and as their median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import numpy as np
from timing import timed

from keygap_tui.stats import js_divergence, median_bandwidth, mmd

GEMM_ROWS, GEMM_COLS = 8192, 512


def gemm_baseline(d: int, flops: float):
    """A closure running plain GEMMs worth `flops`, and the flops it really runs."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_ROWS, d), dtype=np.float32)
    b = rng.standard_normal((GEMM_COLS, d), dtype=np.float32)
    out = np.empty((GEMM_ROWS, GEMM_COLS), np.float32)
    per_call = 2.0 * GEMM_ROWS * GEMM_COLS * d
    calls = max(1, round(flops / per_call))

    def run():
        for _ in range(calls):
            np.matmul(a, b.T, out=out)

    run()  # warm up
    return run, calls * per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="rows per side")
    parser.add_argument("--d", type=int, default=4096, help="key dimension")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--tokens-per-sample", type=int, default=20, help="rows sharing one sample id")
    parser.add_argument("--reps", type=int, default=3, help="paired repetitions")
    args = parser.parse_args()
    n, d, B = args.n, args.d, args.permutations

    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32) + np.float32(0.05)
    ids = np.arange(n) // args.tokens_per_sample
    flops = 4.0 * n * n * d
    baseline, baseline_flops = gemm_baseline(d, flops)

    t_bw, _ = timed(lambda: median_bandwidth((x, y), max_points=2000, seed=0))
    sigma_sq = median_bandwidth((x, y), max_points=2000, seed=0)

    def one():
        return mmd(x, y, bandwidth=sigma_sq, method="exact", device="cpu")

    def permuted():
        return mmd(x, y, bandwidth=sigma_sq, method="exact", device="cpu", permutations=B, groups_x=ids,
                   groups_y=ids + n)

    rows = [("median bandwidth (2000 pooled points)", f"{t_bw:.2f} s", "")]
    efficiency, perm_ratio = [], []
    for rep in range(args.reps):
        t_gemm, _ = timed(baseline)
        t_one, _ = timed(one)
        t_perm, _ = timed(permuted)
        gemm_rate = baseline_flops / t_gemm / 1e9
        mmd_rate = flops / t_one / 1e9
        efficiency.append(mmd_rate / gemm_rate)
        perm_ratio.append(t_perm / t_one)
        rows.append((f"rep {rep + 1}: GEMM baseline {gemm_rate:.0f} GFLOP/s ({t_gemm:.2f} s)", "", ""))
        rows.append((f"rep {rep + 1}: exact MMD^2 n=m={n} d={d}", f"{t_one:.2f} s",
                     f"{mmd_rate:.0f} GFLOP/s = {efficiency[-1]:.0%} of GEMM"))
        rows.append((f"rep {rep + 1}: + {B} sample-level permutations", f"{t_perm:.2f} s",
                     f"{perm_ratio[-1]:.2f} x one MMD"))
    rows.append(("median: exact MMD rate / GEMM rate", "", f"{statistics.median(efficiency):.0%}"))
    rows.append((f"median: {B} permutations / one MMD", "", f"{statistics.median(perm_ratio):.2f} x"))

    t_one, _ = timed(one)
    t_multi, _ = timed(lambda: mmd(x, y, bandwidth=sigma_sq, scales=(0.25, 0.5, 1, 2, 4), method="exact",
                                device="cpu"))
    rows.append(("multi-scale MMD (5 kernels) / one MMD", f"{t_multi:.2f} s", f"{t_multi / t_one:.2f} x"))
    t_rff, _ = timed(lambda: mmd(x, y, bandwidth=sigma_sq, method="rff", rff_features=1024, device="cpu"))
    rows.append(("RFF MMD^2 (D=1024) / exact", f"{t_rff:.2f} s", f"{t_rff / t_one:.2f} x"))
    t_js, _ = timed(lambda: js_divergence(x, y, k=10, bins=64, permutations=B, groups_x=ids, groups_y=ids + n))
    rows.append((f"JS (z-score, exact PCA k=10, 64 bins, {B} permutations) / one MMD", f"{t_js:.2f} s",
                 f"{t_js / t_one:.2f} x"))
    t_ci, _ = timed(lambda: mmd(x, y, bandwidth=sigma_sq, method="exact", device="cpu", permutations=B,
                                groups_x=ids, groups_y=ids + n, ci=0.95))
    rows.append((f"MMD + {B} permutations + 95% bootstrap interval (200 resamples) / one MMD", f"{t_ci:.2f} s",
                 f"{t_ci / t_one:.2f} x"))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, load average {load:.1f}")
    width = max(len(r[0]) for r in rows)
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8}  {note}")


if __name__ == "__main__":
    main()
