"""Analysis benchmarks: default `keygap compare` at d = 4096, t-SNE of 10,000 points, `keygap report`.

Targets from the issue (not asserted in tests): compare (MMD + JS, default n and permutations) on a
d = 4096 slice < 1 s; t-SNE of 10,000 points < 10 s. Baselines run in the same process: one exact MMD
without permutations (for compare) and scikit-learn's TSNE with the same iterations (for openTSNE).

    python benchmarks/bench_analysis.py            # everything (~2-4 min on 2 busy cores)
    python benchmarks/bench_analysis.py --quick    # skip scikit-learn's TSNE and the report
    python benchmarks/bench_analysis.py --only compare
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import timed

from keygap_tui.analysis import DEFAULT_N, DEFAULT_PERMUTATIONS, Side, compare
from keygap_tui.analysis.projection import pca, tsne
from keygap_tui.analysis.threads import limit_threads
from keygap_tui.stats import METRICS
from store.writer import KeyBatch, KeyWriter


def gemm_gflops() -> float:
    """How fast this process multiplies right now: the machine is shared, so state it beside every time."""
    a = np.random.default_rng(0).standard_normal((2000, 4096)).astype(np.float32)
    t, _ = timed(lambda: a @ a.T, repeat=5)
    return 2 * 2000 * 2000 * 4096 / t / 1e9


def low_rank_keys(rng, n, dim, shift):
    """Keys with a few strong directions (as real keys have) plus noise; image keys shifted."""
    basis = np.random.default_rng(99).standard_normal((32, dim)).astype(np.float32) / np.sqrt(32)
    z = rng.standard_normal((n, 32)).astype(np.float32) * 3
    return z @ basis + rng.standard_normal((n, dim)).astype(np.float32) * 0.5 + shift


def build_store(root, dim=4096, samples=80, tokens=40):
    rng = np.random.default_rng(0)
    w = KeyWriter(root, "bench")
    ids = np.repeat(np.array([f"s{i:04d}" for i in range(samples)], dtype=object), tokens)
    n = len(ids)
    for modality, shift in (("image", 0.05), ("text", 0.0)):
        w.add(KeyBatch(model="bench", benchmark="b", layer=1, rope="post", modality=modality, sample_id=ids,
                       position=np.tile(np.arange(tokens), samples), token_id=np.zeros(n, np.int32),
                       segment=np.array([modality] * n, dtype=object),
                       keys=low_rank_keys(rng, n, dim, shift).astype(np.float16), dtype="float16"))
    w.commit([{"model": "bench", "benchmark": "b", "sample_id": s, "status": "done"} for s in sorted(set(ids))])
    w.close()
    return n


def bench_compare(tmp: Path) -> list[tuple[str, str]]:
    root = tmp / "store4096"
    rows_per_side = build_store(root)
    a, b = Side("bench", "b", 1, "image"), Side("bench", "b", 1, "text")
    out = [("slice", f"{rows_per_side:,} image + {rows_per_side:,} text keys, d = 4096, fp16 in the store"),
           ("calibration: float32 GEMM 2000 x 4096 x 2000 in this process (idle machine: 185-208)",
            f"{gemm_gflops():.0f} GFLOP/s")]
    compare(root, a, b, n=200, use_cache=False)  # warm imports (torch, sklearn) outside the timings
    from store.reader import KeyStore

    ks = KeyStore(str(root))
    xa = ks.load("bench", "b", 1, "image", n=DEFAULT_N, seed=0)
    xb = ks.load("bench", "b", 1, "text", n=DEFAULT_N, seed=0)
    def load_both():
        return [ks.load("bench", "b", 1, modality, n=DEFAULT_N, seed=0) for modality in ("image", "text")]

    def mmd_permuted():
        return METRICS["mmd"](xa.x, xb.x, groups_x=xa.sample_id, groups_y=xb.sample_id, seed=0,
                              permutations=DEFAULT_PERMUTATIONS)

    t_load, _ = timed(load_both, repeat=3)
    with limit_threads("auto") as limit:  # the same thread rule compare() applies
        t_base, _ = timed(lambda: METRICS["mmd"](xa.x, xb.x, seed=0), repeat=3)
        t_mmd, _ = timed(mmd_permuted, repeat=3)
        t_js, _ = timed(lambda: METRICS["js"](xa.x, xb.x, groups_x=xa.sample_id, groups_y=xb.sample_id, seed=0,
                                              permutations=DEFAULT_PERMUTATIONS), repeat=3)
    out.append(("BLAS threads chosen by threads='auto' now", "1 (machine busy)" if limit == 1 else "library default"))
    # The machine is shared: run the variants interleaved, several rounds, and keep each one's median.
    variants = {
        f"**compare() default (MMD + JS, n = {DEFAULT_N}, {DEFAULT_PERMUTATIONS} permutations), no cache**": {},
        "same with the libraries' default BLAS threads (threads=None)": {"threads": None},
        "compare() with n = 1000 per side, no cache": {"n": 1000},
        "compare() with n = 2000 per side, no cache": {"n": 2000},
    }
    times = {name: [] for name in variants}
    for _ in range(5):
        for name, kw in variants.items():
            t0 = time.perf_counter()
            compare(root, a, b, use_cache=False, **kw)
            times[name].append(time.perf_counter() - t0)
    t_cmp = statistics.median(next(iter(times.values())))
    compare(root, a, b)  # fill the cache
    t_hit, hit = timed(lambda: compare(root, a, b), repeat=3)
    assert all(r.cached for r in hit)
    out += [
        (f"baseline: one exact MMD, no permutations (n = {DEFAULT_N} per side)", f"{t_base:.3f} s"),
        (f"read 2 x {DEFAULT_N} sampled keys from the store", f"{t_load:.3f} s"),
        (f"MMD + {DEFAULT_PERMUTATIONS} sample-level permutations", f"{t_mmd:.3f} s"),
        (f"JS (k = 10, 64 bins, exact PCA, {DEFAULT_PERMUTATIONS} design-aware permutations)", f"{t_js:.3f} s"),
    ]
    out += [(name, f"median {statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f}, 5 rounds)")
            for name, ts in times.items()]
    out += [
        ("ratio compare default / one MMD", f"{t_cmp / t_base:.1f}"),
        ("compare() answered from the results cache", f"{t_hit * 1000:.1f} ms"),
    ]
    env = dict(os.environ, KEYGAP_STORE=str(root))
    cmd = [sys.executable, "-m", "keygap_tui.cli", "compare", "--model", "bench", "--benchmark", "b", "--layer", "1"]
    t_cli, _ = timed(lambda: subprocess.run(cmd + ["--no-cache"], env=env, check=True, capture_output=True))
    t_cli_hit, _ = timed(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True))
    out += [
        ("`keygap compare` process wall time, no cache (incl. Python start + imports)", f"{t_cli:.2f} s"),
        ("`keygap compare` process wall time, cached", f"{t_cli_hit:.2f} s"),
    ]
    return out


def bench_tsne(with_sklearn: bool) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    x = np.vstack([low_rank_keys(rng, 5000, 4096, 0.3), low_rank_keys(rng, 5000, 4096, 0.0)])
    t0 = time.perf_counter()
    with limit_threads("auto"):  # as project() does
        scores = pca(x, 50, seed=0)
    t_pca = time.perf_counter() - t0
    t0 = time.perf_counter()
    tsne(scores, seed=0)
    t_ours = time.perf_counter() - t0
    out = [
        ("PCA 10,000 x 4096 -> 50 (randomized, iterated_power = 2)", f"{t_pca:.2f} s"),
        ("**openTSNE, our defaults (exact kNN, FFT, 125 + 125 iterations, 1 thread)**", f"**{t_ours:.2f} s**"),
        ("PCA + t-SNE", f"{t_pca + t_ours:.2f} s"),
    ]
    from openTSNE import TSNEEmbedding, affinity, initialization

    for method in ("exact", "annoy"):
        t0 = time.perf_counter()
        affinity.PerplexityBasedNN(scores, perplexity=30, method=method, n_jobs=1, random_state=0)
        out.append((f"openTSNE affinities (perplexity 30), {method} neighbours, 10,000 points",
                    f"{time.perf_counter() - t0:.2f} s"))
    small = scores[:700]
    for gradient in ("bh", "fft"):
        t0 = time.perf_counter()
        emb = TSNEEmbedding(initialization.pca(small, random_state=0),
                            affinity.PerplexityBasedNN(small, perplexity=30, method="exact", n_jobs=1, random_state=0),
                            n_jobs=1, negative_gradient_method=gradient, random_state=0)
        emb.optimize(125, exaggeration=12, momentum=0.5).optimize(125, momentum=0.8)
        out.append((f"700 points (a report panel), {gradient.upper()} gradient, 125 + 125 iterations",
                    f"{time.perf_counter() - t0:.2f} s"))
    t0 = time.perf_counter()
    tsne(scores, seed=0, iterations=(250, 500))
    out.append(("openTSNE, 250 + 500 iterations (its default schedule)", f"{time.perf_counter() - t0:.2f} s"))
    if with_sklearn:
        from sklearn.manifold import TSNE

        t0 = time.perf_counter()
        TSNE(perplexity=30, max_iter=250, init="pca", random_state=0, n_jobs=2).fit_transform(scores)
        t_sk = time.perf_counter() - t0
        out += [
            ("baseline: scikit-learn TSNE, Barnes-Hut, 250 iterations (its minimum)", f"{t_sk:.2f} s"),
            ("ratio scikit-learn / openTSNE (same 250 iterations)", f"{t_sk / t_ours:.1f}"),
        ]
    return out


def bench_report(tmp: Path) -> list[tuple[str, str]]:
    from ingest.run import ingest
    from keygap_tui.analysis import report

    root = tmp / "tiny"
    t0 = time.perf_counter()
    for model in ("tiny:llava", "tiny:qwen2.5-vl"):
        ingest(model, "sample", str(root), progress=False)
    t_ingest = time.perf_counter() - t0
    t0 = time.perf_counter()
    cold = report(root, tmp / "report", png=False)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    report(root, tmp / "report2", png=False)
    t_warm = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.1f}" for k, v in cold.seconds.items() if k != "total")
    return [
        ("ingest tiny:llava + tiny:qwen2.5-vl, sample benchmark (23 items each)", f"{t_ingest:.1f} s"),
        ("`report` defaults, 2 models x 1 benchmark x 3 layers, cold cache", f"{t_cold:.1f} s ({parts})"),
        ("`report` again (metrics and projections from the results cache)", f"{t_warm:.1f} s"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip scikit-learn's TSNE and the report")
    parser.add_argument("--only", choices=("compare", "tsne", "report"), help="run one section")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sections = []
        if args.only in (None, "compare"):
            sections.append(("compare at d = 4096", bench_compare(tmp)))
        if args.only in (None, "tsne"):
            sections.append(("t-SNE of 10,000 points", bench_tsne(not args.quick)))
        if args.only == "report" or (args.only is None and not args.quick):
            sections.append(("report on tiny models", bench_report(tmp)))
    for title, rows in sections:
        print(f"\n### {title}\n\n| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
