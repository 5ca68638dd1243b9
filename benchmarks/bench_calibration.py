"""Calibration, power and accuracy of keygap's tests on simulated key sets with item structure.

Prints Markdown tables for docs/STATISTICS.md. Every table is a simulation with fixed seeds, so a run
reproduces its numbers exactly (timings aside). Parts (default: all):

  python benchmarks/bench_calibration.py null        # null rejection per design, item effect, token counts
  python benchmarks/bench_calibration.py power       # power of the paired test against the disjoint design
  python benchmarks/bench_calibration.py coverage    # bootstrap interval coverage (basic vs percentile)
  python benchmarks/bench_calibration.py coverage-weak   # the same where the shift is small against the noise
  python benchmarks/bench_calibration.py c2st        # classifier test: default p-value vs row-level Mann-Whitney
  python benchmarks/bench_calibration.py js          # JS bias correction in the paired design
  python benchmarks/bench_calibration.py rff         # RFF error against the exact null sd at the auto switch
  python benchmarks/bench_calibration.py pca         # randomized vs exact PCA for JS on key-like data
  python benchmarks/bench_calibration.py --replicates 100 null   # a quicker, coarser run

Data (tests/stats_sim.py): items with a shared item effect (sd `tau` in units of the token noise), blocks of
6 tokens per side (or 1-11 drawn per block with --unequal), d = 4 unless stated. alpha = 0.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.stats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from stats_sim import keylike_scales, paired_items

from keygap_tui.stats import (
    centroid_gap,
    classifier_test,
    energy_distance,
    js_divergence,
    mmd,
)

ALPHA = 0.05
MEASURES = {
    "mmd": (mmd, {}),
    "energy": (energy_distance, {}),
    "centroid": (centroid_gap, {}),
    "js": (js_divergence, {"k": 2, "bins": 8}),
}


def band(replicates: int, alpha: float = ALPHA) -> str:
    low, high = scipy.stats.binom.interval(0.99, replicates, alpha)
    return f"{low / replicates:.3f}-{high / replicates:.3f}"


def rejection(fn, kwargs, replicates, *, seed_tag, design, item_effect, unequal, shift=0.0, items=16, d=4,
              permutations=99, relabel_b=False):
    hits = 0
    for r in range(replicates):
        rng = np.random.default_rng([r, seed_tag])
        x, y, ga, gb = paired_items(rng, items, d, tokens=(6, 6), unequal=unequal, item_effect=item_effect,
                                    shift=shift, design=design)
        if relabel_b:  # the old scheme: ids made disjoint, so whole samples move between the sides
            gb = np.char.add(gb, "-b")
        hits += fn(x, y, groups_x=ga, groups_y=gb, permutations=permutations, seed=r, **kwargs).p_value <= ALPHA
    return hits / replicates


def part_null(replicates: int) -> None:
    print(f"\n### Null rejection at alpha = 0.05 ({replicates} replicates each; 99% binomial band "
          f"{band(replicates)})\n")
    print("| design (unit) | item effect | tokens per block | " + " | ".join(MEASURES) + " |")
    print("|---|---|---|" + "---|" * len(MEASURES))
    configs = [("shared", tau, unequal) for tau in (0.0, 1.0, 3.0) for unequal in (False, True)]
    configs += [("disjoint", tau, True) for tau in (0.0, 1.0, 3.0)] + [("mixed", tau, True) for tau in (1.0, 3.0)]
    units = {"shared": "within-sample swap", "disjoint": "sample", "mixed": "swap + sample"}
    for index, (design, tau, unequal) in enumerate(configs):
        rates = [rejection(fn, kw, replicates, seed_tag=index, design=design, item_effect=tau, unequal=unequal)
                 for fn, kw in MEASURES.values()]
        print(f"| {design} ({units[design]}) | {tau:g} | {'1-11' if unequal else '6'} | "
              + " | ".join(f"{v:.3f}" for v in rates) + " |")
    for tau in (0.0, 1.0, 3.0):
        rate = rejection(mmd, {}, replicates, seed_tag=50, design="shared", item_effect=tau, unequal=True,
                         relabel_b=True)
        print(f"| shared, old whole-sample permutation | {tau:g} | 1-11 | {rate:.3f} | | | |")


def part_power(replicates: int) -> None:
    print(f"\n### Power at alpha = 0.05: paired (same items) against disjoint (different items) ({replicates} "
          "replicates; 16 items per side, 6 tokens per block)\n")
    print("| shift | item effect | mmd shared | mmd disjoint | centroid shared | centroid disjoint |")
    print("|---|---|---|---|---|---|")
    for shift in (0.25, 0.5):
        for tau in (0.0, 1.0, 3.0):
            cells = []
            for name in ("mmd", "centroid"):
                fn, kw = MEASURES[name]
                for design in ("shared", "disjoint"):
                    cells.append(rejection(fn, kw, replicates, seed_tag=70, design=design, item_effect=tau,
                                           unequal=False, shift=shift))
            print(f"| {shift:g} | {tau:g} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")


def _closed_form_mmd(d, v, s2, shift):
    return 2 * (1 + 2 * v / s2) ** (-d / 2) * (1 - np.exp(-shift**2 / (2 * (s2 + 2 * v))))


COVERAGE_ROWS = {
    # (design, item effect, items per side, d, shift, kernel width sigma^2, tokens per block, unequal blocks)
    "coverage": [("shared", 1.0, 20, 3, 0.6, 6.0, 5, True), ("shared", 1.0, 60, 3, 0.6, 6.0, 5, True),
                 ("shared", 1.0, 150, 3, 0.6, 6.0, 5, True), ("disjoint", 1.0, 20, 3, 0.6, 6.0, 5, True),
                 ("disjoint", 1.0, 60, 3, 0.6, 6.0, 5, True), ("disjoint", 1.0, 150, 3, 0.6, 6.0, 5, True),
                 ("shared", 0.0, 60, 3, 0.6, 6.0, 5, True)],
    # a shift that is small against the noise of the means: where a distance's bias is large
    "coverage-weak": [("shared", 1.0, 30, 4, 0.5, 8.0, 6, True), ("disjoint", 1.0, 30, 4, 0.5, 8.0, 6, True),
                      ("disjoint", 1.0, 90, 4, 0.5, 8.0, 6, True)],
}


def part_coverage(replicates: int, rows: str = "coverage") -> None:
    print(f"\n### Coverage of 90% bootstrap intervals ({replicates} replicates, 200 resamples each; truth in "
          "closed form with a fixed kernel width)\n")
    print("| design | item effect | items per side | d | shift | centroid basic | centroid percentile | mmd basic | "
          "mmd percentile |")
    print("|---|---|---|---|---|---|---|---|---|")
    for design, tau, items, d, shift, s2, tokens, unequal in COVERAGE_ROWS[rows]:
        v = 1 + tau**2
        truth = {"centroid": shift, "mmd": _closed_form_mmd(d, v, s2, shift)}
        covered = {(m, how): 0 for m in truth for how in ("basic", "percentile")}
        for r in range(replicates):
            rng = np.random.default_rng([r, 17])
            x, y, ga, gb = paired_items(rng, items, d, tokens=(tokens, tokens), unequal=unequal, item_effect=tau,
                                        shift=shift, design=design)
            for name, fn, kwargs in (("centroid", centroid_gap, {}), ("mmd", mmd, {"bandwidth": s2})):
                for how in ("basic", "percentile"):
                    low, high = fn(x, y, groups_x=ga, groups_y=gb, ci=0.9, ci_method=how, seed=r, **kwargs).ci
                    covered[(name, how)] += low <= truth[name] <= high
        cells = " | ".join(f"{covered[k] / replicates:.3f}" for k in covered)
        print(f"| {design} | {tau:g} | {items} | {d} | {shift:g} | {cells} |")


def part_c2st(replicates: int) -> None:
    from keygap_tui.stats.classifier import _fold_splits, _held_out_scores

    print(f"\n### Classifier test under the null with correlated tokens ({replicates} replicates; 12 items per "
          f"side, 6 tokens each, item effect 2, disjoint; 99% binomial band {band(replicates)})\n")
    default_hits = rows_hits = 0
    for r in range(replicates):
        rng = np.random.default_rng([r, 23])
        x, y, ga, gb = paired_items(rng, 12, 3, tokens=(6, 6), item_effect=2.0, design="disjoint")
        result = classifier_test(x, y, groups_x=ga, groups_y=gb, folds=3, permutations=99, seed=r)
        default_hits += result.p_value <= ALPHA
        labels = np.r_[np.ones(len(x), np.int8), np.zeros(len(y), np.int8)]
        splits = _fold_splits(labels, (ga, gb), 3, r)
        scores = _held_out_scores(np.concatenate([x, y]), labels, splits, 1.0, 1000, r)
        p_rows = scipy.stats.mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater").pvalue
        rows_hits += p_rows <= ALPHA
    print("| p-value | rejection rate |\n|---|---|")
    print("| default: held-out AUC, labels redrawn within folds by the design (99 draws) | "
          f"{default_hits / replicates:.3f} |")
    print(f"| former default: Mann-Whitney on held-out rows as if independent | {rows_hits / replicates:.3f} |")


def part_js(replicates: int) -> None:
    print(f"\n### JS bias correction under the null, paired design ({replicates} replicates; 20 items, 6 tokens, "
          "item effect 2, k = 2, 8 bins, 99 permutations)\n")
    out = {}
    for label, suffix in (("design-aware (swap)", None), ("old: whole samples", "-b")):
        values = []
        for r in range(replicates):
            rng = np.random.default_rng([r, 5])
            x, y, ga, gb = paired_items(rng, 20, 3, tokens=(6, 6), item_effect=2.0)
            gb = gb if suffix is None else np.char.add(gb, suffix)
            values.append(js_divergence(x, y, groups_x=ga, groups_y=gb, k=2, bins=8, permutations=99,
                                        seed=r).extra["bias_corrected"])
        values = np.array(values)
        out[label] = (values.mean(), values.std(ddof=1) / np.sqrt(len(values)))
    print("| relabelling | mean bias-corrected JS (bits) | standard error |\n|---|---|---|")
    for label, (mean, se) in out.items():
        print(f"| {label} | {mean:+.4f} | {se:.4f} |")


def part_rff(_replicates: int) -> None:
    print("\n### RFF error against the exact estimator (N = 24,000 pooled keys, d = 128, key-like spectrum, "
          "750 items per side x 16 tokens, 50 permutations)\n")
    print("| data | exact MMD^2 | exact null sd | features D | RMS error over 4 feature draws (in null sd) | "
          "estimated SE (in null sd) | RFF s / exact s |")
    print("|---|---|---|---|---|---|---|")
    d = 128
    for label, shift, tau in (("null, iid tokens", 0.0, 0.0), ("null, item effect 1", 0.0, 1.0),
                              ("shift 0.5, iid tokens", 0.5, 0.0)):
        rng = np.random.default_rng(0)
        x, y, ga, gb = paired_items(rng, 750, d, tokens=(16, 16), item_effect=tau, shift=shift, design="disjoint",
                                    scales=keylike_scales(d), offset=2.0)
        started = time.perf_counter()
        exact = mmd(x, y, groups_x=ga, groups_y=gb, method="exact", permutations=50)
        exact_seconds = time.perf_counter() - started
        null_sd = exact.extra["null_std"]
        for features in (512, 1024, 4096):
            errors, estimates = [], []
            started = time.perf_counter()
            for s in range(4):
                approx = mmd(x, y, groups_x=ga, groups_y=gb, method="rff", rff_features=features, permutations=50,
                             seed=s, bandwidth=exact.params["bandwidth"])
                errors.append(approx.value - exact.value)
                estimates.append(approx.extra["rff_error_se"])
            seconds = (time.perf_counter() - started) / 4
            rms = float(np.sqrt(np.mean(np.square(errors))))
            print(f"| {label} | {exact.value:.3g} | {null_sd:.3g} | {features} | {rms / null_sd:.2f} | "
                  f"{np.mean(estimates) / null_sd:.2f} | {seconds / exact_seconds:.2f} |")


def part_pca(_replicates: int) -> None:
    print("\n### JS with randomized PCA (4 power iterations) against exact PCA (key-like spectrum, 60 items per "
          "side x 16 tokens, item effect 1, shift 0.5)\n")
    print("| d | exact JS (bits) | randomized JS | relative change | randomized s / exact s |")
    print("|---|---|---|---|---|")
    for d in (1024, 2048, 4096):
        rng = np.random.default_rng(d)
        x, y, ga, gb = paired_items(rng, 60, d, tokens=(16, 16), item_effect=1.0, shift=0.5, scales=keylike_scales(d),
                                    offset=1.0)
        started = time.perf_counter()
        exact = js_divergence(x, y, groups_x=ga, groups_y=gb, permutations=50)
        exact_seconds = time.perf_counter() - started
        started = time.perf_counter()
        fast = js_divergence(x, y, groups_x=ga, groups_y=gb, permutations=50, pca="randomized")
        fast_seconds = time.perf_counter() - started
        print(f"| {d} | {exact.value:.5f} | {fast.value:.5f} | {abs(fast.value - exact.value) / exact.value:.1%} | "
              f"{fast_seconds / exact_seconds:.2f} |")


PARTS = {"null": part_null, "power": part_power, "coverage": part_coverage,
         "coverage-weak": lambda replicates: part_coverage(replicates, "coverage-weak"), "c2st": part_c2st,
         "js": part_js, "rff": part_rff, "pca": part_pca}
DEFAULT_REPLICATES = {"null": 500, "power": 300, "coverage": 300, "coverage-weak": 300, "c2st": 300, "js": 200,
                      "rff": 0, "pca": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--replicates", type=int, default=None, help="replicates per cell (default per part)")
    args = parser.parse_args()
    started = time.perf_counter()
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    for part in args.parts or list(PARTS):
        PARTS[part](args.replicates or DEFAULT_REPLICATES[part])
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
