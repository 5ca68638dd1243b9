"""The report's attention part (`keygap ingest --attention` stores): FastV's allocation figure per model,
the layer x kv head table (key gap beside image attention) and the correlation between the two.

Written only for the (model, benchmark) pairs whose store holds attention rows; the others get a note.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from keygap_tui.stats.result import json_safe
from store.errors import StoreError
from store.reader import KeyStore

from .attention import (
    DEFAULT_CORRELATION_PERMUTATIONS,
    DEFAULT_HEAD_N,
    Allocation,
    HeadMatrix,
    allocation,
    gap_deficit_correlation,
    head_matrix,
)
from .errors import AnalysisError
from .plots import lines_text

CORRELATION_OVER = ("(layer, kv head) cells of one model; p-value: the deficits shuffled among the heads of each "
                    "layer, because key gap and attention both drift with depth and a pooled shuffle would "
                    "count that shared trend as evidence")


def write_attention(out: Path, ks: KeyStore, pairs: list[tuple[str, str]], *, rope: str, image: str, text: str,
                    n: int | None = DEFAULT_HEAD_N, seed: int = 0,
                    permutations: int = DEFAULT_CORRELATION_PERMUTATIONS) -> tuple[list[Path], list[str], dict]:
    """Write attention_figure.txt/.csv and heads_table.csv/.md; returns (files, notes, params)."""
    allocations: list[Allocation] = []
    matrices: list[HeadMatrix] = []
    notes: list[str] = []
    for model, bench in pairs:
        try:
            allocations.append(allocation(ks, model, bench, "last"))
            matrices.append(head_matrix(ks, model, bench, rope=rope, image=image, text=text, n=n, seed=seed))
        except (StoreError, AnalysisError) as exc:
            notes.append(f"no attention part for {model} on {bench}: {exc}")
    if not allocations:
        return [], notes, {}
    files = _write_figure(out, allocations)
    correlations = {}
    for m in matrices:
        try:
            corr = gap_deficit_correlation(m, permutations, seed)
        except ValueError as exc:
            notes.append(f"no gap/deficit correlation for {m.model} on {m.benchmark}: {exc}")
            continue
        correlations[f"{m.model}/{m.benchmark}"] = {
            "pearson_r": corr.r, "p_value": corr.p_value, "cells": corr.n, "layers": corr.strata,
            "permutations": corr.permutations, "distinct_arrangements": corr.arrangements,
        }
    files += _write_heads(out, matrices, correlations)
    params = {"attention_query": "last prompt token", "head_key_gap": matrices[0].params if matrices else {},
              "correlation": {"of": "key gap vs image attention deficit (token share - mass)",
                              "over": CORRELATION_OVER, "results": correlations}}
    for key, c in correlations.items():
        p = "-" if c["p_value"] is None else f"{c['p_value']:.3g}"
        notes.append(f"{key}: key gap vs image attention deficit over {c['cells']} (layer, head) cells: r = "
                     f"{c['pearson_r']:.3f}, p = {p} (heads shuffled within layers, {c['permutations']} draws)")
    return files, notes, params


def _write_figure(out: Path, allocations: list[Allocation]) -> list[Path]:
    txt, csv_path = out / "attention_figure.txt", out / "attention_figure.csv"
    blocks = []
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "benchmark", "query", "layer", "bucket", "attention", "token_share"])
        for a in allocations:
            for i, layer in enumerate(a.layers):
                for j, bucket in enumerate(a.buckets):
                    w.writerow([a.model, a.benchmark, a.query, layer, bucket, f"{a.mass[i, j]:.6g}",
                                f"{a.share[i, j]:.6g}"])
            series = [(b, a.mass[:, j].tolist()) for j, b in enumerate(a.buckets) if b in ("image", "text", "sink")]
            if "image" in a.buckets:
                series.append(("image tokens", a.share[:, a.buckets.index("image")].tolist()))
            blocks.append(lines_text(f"{a.model} | {a.benchmark}: attention of the last prompt token", a.layers,
                                     series, ylabel="share"))
    txt.write_text("Attention allocation (FastV): mean attention mass on image / text / sink (position 0) keys per "
                   "layer, and the image tokens' share of the keys\n\n" + "\n".join(blocks))
    return [txt, csv_path]


def _write_heads(out: Path, matrices: list[HeadMatrix], correlations: dict) -> list[Path]:
    csv_path, md = out / "heads_table.csv", out / "heads_table.md"
    cols = ["model", "benchmark", "layer", "kv_head", "key_gap", "image_attention", "image_tokens", "deficit"]
    rows = []
    for m in matrices:
        deficit = m.deficit
        for i, layer in enumerate(m.layers):
            for g in m.heads:
                rows.append([m.model, m.benchmark, layer, g, m.key_gap[i, g], m.image_mass[i, g], m.image_share[i, g],
                             deficit[i, g]])
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in r] for r in rows])
    lines = ["# Per-head table: key gap and image attention", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |" for r in rows]
    lines += ["", "key_gap = centroid gap |mu_image - mu_text| in the kv head's columns; image_attention = image "
              "mass of the last prompt token, mean over samples and the query heads reading that kv head; "
              "deficit = image_tokens - image_attention.", "",
              f"Correlation of key_gap and deficit over {CORRELATION_OVER}:", "",
              "```json", json.dumps(json_safe(correlations), indent=1), "```", ""]
    md.write_text("\n".join(lines))
    return [csv_path, md]
