"""Cost of the statistics on this machine, as ratios to baselines measured in the same process.

Prints a table; appends nothing. Figures worth keeping go to BENCHMARKS.md ("Statistics") by hand.

  /tmp/kgvenv/bin/python benchmarks/bench_stats.py              # n = m = 5000, d = 4096
  /tmp/kgvenv/bin/python benchmarks/bench_stats.py --n 2000 --d 512

Flop count of one exact MMD: the upper triangle of the pooled (2n)^2 Gram matrix at 2 d flops per
entry = (2n)^2 d = 4 n^2 d (kernel exps and the membership reduction are not counted).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from keygap_tui.stats import js_divergence, median_bandwidth, mmd  # noqa: E402


def best_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gemm_gflops(rows: int, d: int, cols: int, reps: int) -> float:
    """float32 numpy GEMM rate of [rows, d] x [d, cols]."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, d), dtype=np.float32)
    b = rng.standard_normal((cols, d), dtype=np.float32)
    out = np.empty((rows, cols), np.float32)
    np.matmul(a, b.T, out=out)
    return 2 * rows * cols * d / best_of(lambda: np.matmul(a, b.T, out=out), reps) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="rows per side")
    parser.add_argument("--d", type=int, default=4096, help="key dimension")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--tokens-per-sample", type=int, default=20, help="rows sharing one sample id")
    parser.add_argument("--reps", type=int, default=2, help="repetitions; the minimum is reported")
    args = parser.parse_args()
    n, d = args.n, args.d

    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32) + np.float32(0.05)
    ids = np.arange(n) // args.tokens_per_sample

    rows = []
    square = gemm_gflops(4096, 4096, 4096, args.reps)
    strip = gemm_gflops(512, d, 8192, 3 * args.reps)
    gemm = max(square, strip)  # the baseline: the better of the two shapes
    rows.append(("float32 GEMM 4096^3 (numpy)", "", f"{square:.0f} GFLOP/s", ""))
    rows.append((f"float32 GEMM 512 x {d} x 8192 (numpy)", "", f"{strip:.0f} GFLOP/s", ""))

    t_bw = best_of(lambda: median_bandwidth((x, y), max_points=2000, seed=0), args.reps)
    sigma_sq = median_bandwidth((x, y), max_points=2000, seed=0)
    rows.append(("median bandwidth (2000 pooled points)", f"{t_bw:.3f} s", "", ""))

    flops = 4.0 * n * n * d
    t_mmd = best_of(lambda: mmd(x, y, bandwidth=sigma_sq, method="exact", device="cpu"), args.reps)
    rate = flops / t_mmd / 1e9
    # the machine is shared: re-measure the baseline right after, keep the better figure (conservative)
    after = gemm_gflops(512, d, 8192, 3 * args.reps)
    if after > gemm:
        gemm = after
        rows.append((f"float32 GEMM 512 x {d} x 8192, re-measured after", "", f"{after:.0f} GFLOP/s", ""))
    rows.append((f"exact MMD^2 n=m={n} d={d}", f"{t_mmd:.2f} s", f"{rate:.0f} GFLOP/s",
                 f"{rate / gemm:.0%} of GEMM"))

    t_multi = best_of(lambda: mmd(x, y, bandwidth=sigma_sq, scales=(0.25, 0.5, 1, 2, 4), method="exact",
                                  device="cpu"), 1)
    rows.append(("  multi-scale (5 kernels)", f"{t_multi:.2f} s", "", f"{t_multi / t_mmd:.2f} x one MMD"))

    B = args.permutations
    t_perm = best_of(lambda: mmd(x, y, bandwidth=sigma_sq, method="exact", permutations=B, groups_x=ids,
                                 groups_y=ids + n, device="cpu"), 1)
    rows.append((f"  + {B} sample-level permutations", f"{t_perm:.2f} s", "", f"{t_perm / t_mmd:.2f} x one MMD"))

    t_rff = best_of(lambda: mmd(x, y, bandwidth=sigma_sq, method="rff", rff_features=1024, device="cpu"), 1)
    rows.append(("RFF MMD^2 (D=1024)", f"{t_rff:.2f} s", "", f"{t_rff / t_mmd:.2f} x exact"))

    t_js = best_of(lambda: js_divergence(x, y, k=10, bins=64, shuffles=20), 1)
    rows.append(("JS (z-score, PCA k=10, 64 bins, 20 shuffles)", f"{t_js:.2f} s", "", f"{t_js / t_mmd:.2f} x one MMD"))

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, numpy {np.__version__}, torch {torch.__version__}")
    width = max(len(r[0]) for r in rows)
    for name, seconds, rate_s, ratio in rows:
        print(f"{name:<{width}}  {seconds:>9}  {rate_s:>14}  {ratio}")


if __name__ == "__main__":
    main()
