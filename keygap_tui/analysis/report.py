"""`keygap report`: the paper's Figure 1, Figure 2 and Table, headless, from what the store holds.

Every number comes from compare() / controls() / project() with the same defaults as `keygap compare`,
through the same results cache, so the report's Image-vs-Text values equal what `keygap compare` prints for
the same slice and seed. Artefacts (all in ``out``):

- figure1_tsne.txt / .csv (/ .png): joint t-SNE of image and text keys, models x benchmarks x layers.
- figure2_boxplots.txt / .csv (/ .png): MMD and JS of Image-vs-Text against the control groups
  Image-vs-Image and Text-vs-Text, pooled over layers, benchmarks and replicates, per model.
- table.csv / table.json / table.md: per model / benchmark / layer the Image-vs-Text values and p-values,
  the control means and the inter/intra ratio = mean(Image-vs-Text) / mean(Image-vs-Image, Text-vs-Text)
  over the control replicates (same sizes and bandwidth; null where the intra mean is <= 0, which the
  unbiased MMD can be when two halves are alike).
- attention_figure.txt / .csv and heads_table.csv / .md, where the store holds attention rows (`keygap
  ingest --attention`): FastV's allocation over layers, the layer x kv head key gap beside image attention,
  and their correlation with a within-layer permutation p-value (report_attention.py).
- report.json / report.md: every parameter used, the store, and how long each part took.
PNG files need the optional extra "png" (matplotlib); without it they are skipped and the report says so.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from store.jsonsafe import json_safe
from store.reader import KeyStore
from store.schema import model_label, utc_now

from .comparisons import compare, controls
from .defaults import DEFAULT_CI, DEFAULT_METRICS, DEFAULT_N, DEFAULT_PERMUTATIONS, DEFAULT_REPLICATES, GROUPS
from .errors import AnalysisError
from .layers import model_depth, relative_depth, resolve_model_layers
from .plots import box_grid_png, box_text, have_matplotlib, scatter_grid_png, scatter_text
from .progress import ProgressFn, Steps, StopFn
from .projection import DEFAULT_ITERATIONS, DEFAULT_PERPLEXITY, DEFAULT_PROJECTION_N, project
from .report_attention import write_attention
from .rows import ComparisonRow
from .sides import Side, open_store, parse_what


def _json(value: object, indent: int | None = 1) -> str:
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)

DEFAULT_LAYERS = "early,middle,late"


@dataclass
class ReportResult:
    out: Path
    files: list[Path]
    table: list[dict]
    seconds: dict
    params: dict
    notes: list[str] = field(default_factory=list)


@dataclass
class _Cell:
    model: str
    benchmark: str
    layer: int
    depth: int | None
    layer_name: str


def plan_cells(ks: KeyStore, models, benchmarks, layers: str) -> list[_Cell]:
    """Which (model, benchmark, layer) cells the report covers; errors name what the store holds."""
    stored_models = ks.models()
    if not stored_models:
        raise AnalysisError("the store holds no keys yet: run `keygap ingest` first")
    models = stored_models if not models or list(models) == ["all"] else [model_label(m) for m in models]
    cells = []
    for model in models:
        if model not in stored_models:
            raise AnalysisError(f"model {model} is not in the store (models: {', '.join(stored_models)})")
        have = ks.benchmarks(model)
        wanted = have if not benchmarks or list(benchmarks) == ["all"] else list(benchmarks)
        for bench in wanted:
            if bench not in have:
                if benchmarks and list(benchmarks) != ["all"] and len(models) == 1:
                    raise AnalysisError(f"{model} has no keys for benchmark {bench} (benchmarks: {', '.join(have)})")
                continue
            depth = model_depth(ks, model)
            names = [p.strip() for p in layers.split(",") if p.strip()]
            for layer in resolve_model_layers(ks, model, bench, layers):
                # Name a layer by the first spec part that maps to it (for panel titles).
                label = next(
                    (p for p in names if layer in resolve_model_layers(ks, model, bench, p)), f"L{layer}"
                )
                cells.append(_Cell(model, bench, layer, depth, label))
    if not cells:
        raise AnalysisError("no (model, benchmark) pair of the selection has keys in the store")
    return cells


def report(
    store: str | os.PathLike | KeyStore,
    out: str | os.PathLike,
    models: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    layers: str = DEFAULT_LAYERS,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    permutations: int = DEFAULT_PERMUTATIONS,
    ci: float | None = DEFAULT_CI,
    replicates: int = DEFAULT_REPLICATES,
    image: str = "image",
    text: str = "text",
    rope: str = "post",
    projection_n: int | None = DEFAULT_PROJECTION_N,
    projection_method: str = "tsne",
    iterations: tuple[int, int] = DEFAULT_ITERATIONS,
    perplexity: float = DEFAULT_PERPLEXITY,
    png: bool | None = None,
    metric_params: dict | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ReportResult:
    """Write Figure 1, Figure 2 and the Table for the selection into ``out``; returns what was written.

    ``png=None`` writes PNG files when matplotlib is installed; True requires it; False skips them.
    """
    ks = open_store(store)
    started = time.perf_counter()
    if png and not have_matplotlib():
        raise AnalysisError("PNG figures need matplotlib: pip install 'keygap[png]' (or drop --png)")
    want_png = have_matplotlib() if png is None else bool(png)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalysisError(f"cannot create the report folder {out}: {exc.strerror}") from None
    metrics = tuple(metrics)
    img_mod, img_segs = parse_what(image)
    txt_mod, txt_segs = parse_what(text)
    cells = plan_cells(ks, models, benchmarks, layers)
    pruned = 0
    if use_cache:
        from store.results import ResultsCache

        pruned = ResultsCache(ks.location).prune_stale()  # answers about re-ingested slices would only pile up
    steps = Steps(3 * len(cells) + 1, progress, should_stop)
    seconds = {"compare": 0.0, "controls": 0.0, "projection": 0.0, "write": 0.0}
    main_rows: list[ComparisonRow] = []
    control_rows: list[ComparisonRow] = []
    projections = []
    for cell in cells:
        side_i = Side(cell.model, cell.benchmark, cell.layer, img_mod, img_segs, rope)
        side_t = Side(cell.model, cell.benchmark, cell.layer, txt_mod, txt_segs, rope)
        where = f"{cell.model} / {cell.benchmark} / layer {cell.layer}"
        t0 = time.perf_counter()
        steps.report(f"compare {where}")
        rows = compare(
            ks, side_i, side_t, metrics, n, seed, permutations=permutations, ci=ci, metric_params=metric_params,
            use_cache=use_cache, progress=steps.child(), should_stop=should_stop,
        )
        seconds["compare"] += time.perf_counter() - t0
        steps.advance()
        t0 = time.perf_counter()
        steps.report(f"controls {where}")
        crow = controls(
            ks, cell.model, cell.benchmark, cell.layer, metrics, n, seed, replicates=replicates, rope=rope,
            image=image, text=text, metric_params=metric_params, use_cache=use_cache, progress=steps.child(),
            should_stop=should_stop,
        )
        seconds["controls"] += time.perf_counter() - t0
        steps.advance()
        t0 = time.perf_counter()
        steps.report(f"projection {where}")
        proj = project(
            ks, [side_i, side_t], projection_method, projection_n, seed, iterations=iterations,
            perplexity=perplexity, use_cache=use_cache, progress=steps.child(), should_stop=should_stop,
        )
        seconds["projection"] += time.perf_counter() - t0
        steps.advance()
        depth = relative_depth(cell.layer, cell.depth)
        for row in rows + crow:
            row.depth = depth
        main_rows += rows
        control_rows += crow
        projections.append((cell, proj))

    t0 = time.perf_counter()
    steps.report("writing artefacts")
    files: list[Path] = []
    notes: list[str] = []
    table = build_table(cells, main_rows, control_rows, metrics)
    files += write_table(out, table, metrics)
    files += write_figure1(out, projections, want_png)
    files += write_figure2(out, cells, control_rows, metrics, want_png)
    pairs = sorted({(c.model, c.benchmark) for c in cells})
    attention_files, attention_notes, attention_params = write_attention(out, ks, pairs, rope=rope, image=image,
                                                                         text=text, seed=seed)
    files += attention_files
    if not want_png:
        notes.append("PNG figures skipped: install the optional extra 'png' (matplotlib) to get them")
    notes += attention_notes
    seconds["write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    cached = sum(r.cached for r in main_rows + control_rows)
    notes.append(f"{cached} of {len(main_rows) + len(control_rows)} metric values came from the results cache")
    if pruned:
        notes.append(f"{pruned} stale cached answers (their slices were re-ingested) were deleted")
    cached_proj = sum(p.cached for _, p in projections)
    notes.append(f"{cached_proj} of {len(projections)} projections came from the results cache")
    layers_resolved: dict[str, list[int]] = {}
    for c in cells:
        layers_resolved.setdefault(f"{c.model}/{c.benchmark}", []).append(c.layer)
    params: dict[str, Any] = {
        "store": str(ks.uri),
        "models": sorted({c.model for c in cells}),
        "benchmarks": sorted({c.benchmark for c in cells}),
        "layers": layers,
        "layers_resolved": layers_resolved,
        "metrics": list(metrics),
        "n_per_side": "all" if n is None else n,
        "seed": seed,
        "permutations": permutations,
        "ci": ci or None,
        "permutation_unit": "read from the sample ids per comparison: within-sample swap when both sides hold "
        "the same samples (compare), whole samples when they are disjoint (controls); see each result's params",
        "control_replicates": replicates,
        "control_split": "disjoint random halves of samples; image(A) vs image(B), text(A) vs text(B), "
        "image(A) vs text(B)",
        "bandwidth": "median heuristic (sigma^2 = median pooled squared distance / 2); compare: per pair; "
        "controls: one per model/benchmark/layer on pooled image+text keys",
        "image_side": image,
        "text_side": text,
        "rope": rope,
        "layer_names": "early = 1, middle = L // 2, late = L - 1 of the decoder depth L (run manifest)",
        "projection": {
            "method": projection_method,
            "n_per_slice": "all" if projection_n is None else projection_n,
            **(projections[0][1].params if projections else {}),
        },
        "metric_params_requested": metric_params or {},
        "metric_params": _metric_params(main_rows, control_rows),
        "attention": attention_params,
    }
    files += write_summary(out, params, seconds, notes, files, table, metrics)
    steps.advance("report written")
    return ReportResult(out=out, files=files, table=table, seconds=seconds, params=params, notes=notes)


def _metric_params(main_rows, control_rows) -> dict:
    """The parameters each metric recorded (first row of each), e.g. the JS bins and MMD estimator."""
    out: dict = {}
    for row in main_rows + control_rows:
        key = f"{row.result.metric} ({row.kind})"
        if key not in out:
            out[key] = {k: v for k, v in row.result.params.items() if k not in ("bandwidth", "sigma2")}
    return out


# --- table ----------------------------------------------------------------------------------------------
def _mean(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _at(row: ComparisonRow) -> tuple[str, str, int]:
    return row.side_a.model, row.side_a.benchmark, row.side_a.layer


def build_table(cells, main_rows, control_rows, metrics) -> list[dict]:
    table = []
    for cell in cells:
        here = (cell.model, cell.benchmark, cell.layer)
        mains = [r.result for r in main_rows if _at(r) == here]
        ctrls = [r for r in control_rows if _at(r) == here]
        row = {
            "model": cell.model,
            "benchmark": cell.benchmark,
            "layer": cell.layer,
            "layer_name": cell.layer_name,
            "depth": relative_depth(cell.layer, cell.depth),
        }
        for metric in metrics:
            main = next((r for r in mains if r.metric == metric), None)
            row[f"{metric}"] = None if main is None else main.value
            row[f"{metric}_bc"] = None if main is None else main.extra.get("bias_corrected")
            row[f"{metric}_p"] = None if main is None else main.p_value
            row[f"{metric}_ci_low"] = None if main is None or main.ci is None else main.ci[0]
            row[f"{metric}_ci_high"] = None if main is None or main.ci is None else main.ci[1]
            row[f"{metric}_n"] = None if main is None else f"{main.n_a}/{main.n_b}"
            groups = {
                g: _mean(r.result.value for r in ctrls if r.result.metric == metric and r.group == g)
                for g in GROUPS
            }
            row[f"{metric}_ivi"] = groups["image-vs-image"]
            row[f"{metric}_tvt"] = groups["text-vs-text"]
            row[f"{metric}_ivt_ctrl"] = groups["image-vs-text"]
            intra = _mean([groups["image-vs-image"], groups["text-vs-text"]])
            ivt = groups["image-vs-text"]
            row[f"{metric}_ratio"] = None if ivt is None or intra is None or intra <= 0 else ivt / intra
        table.append(row)
    return table


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table_columns(metrics) -> list[str]:
    cols = ["model", "benchmark", "layer", "layer_name", "depth"]
    for m in metrics:
        cols += [m, f"{m}_bc", f"{m}_p", f"{m}_ci_low", f"{m}_ci_high", f"{m}_n", f"{m}_ivi", f"{m}_tvt",
                 f"{m}_ivt_ctrl", f"{m}_ratio"]
    return cols


def markdown_table(table: list[dict], metrics) -> str:
    cols = table_columns(metrics)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: Path, table: list[dict], metrics) -> list[Path]:
    cols = table_columns(metrics)
    paths = [out / "table.csv", out / "table.json", out / "table.md"]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in table:
            w.writerow({c: "" if row.get(c) is None else row.get(c) for c in cols})
    paths[1].write_text(_json(table))
    legend = (
        "\n`<m>` = Image-vs-Text on the full slices (as `keygap compare`), `<m>_bc` its bias-corrected value "
        "where the metric gives one (JS: minus its mean over the permutation draws), `<m>_p` its p-value "
        "(design-aware permutations, --permutations of them; docs/STATISTICS.md), `<m>_ci_low`, `<m>_ci_high` "
        "its bootstrap interval over samples (of the bias-corrected value for JS; level in report.md), "
        "`<m>_n` keys per side; `_ivi`, `_tvt`, `_ivt_ctrl` = means over control replicates (disjoint sample "
        "halves); `_ratio` = ivt_ctrl / mean(ivi, tvt), '-' where undefined.\n"
    )
    paths[2].write_text("# Table: image vs text keys\n\n" + markdown_table(table, metrics) + legend)
    return paths


# --- figures ----------------------------------------------------------------------------------------------
def write_figure1(out: Path, projections, want_png: bool) -> list[Path]:
    txt, csv_path = out / "figure1_tsne.txt", out / "figure1_tsne.csv"
    blocks = []
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "benchmark", "layer", "slice", "sample_id", "x", "y"])
        for cell, proj in projections:
            labels = proj.labels
            for i, (x, y) in enumerate(proj.coords):
                w.writerow([cell.model, cell.benchmark, cell.layer, labels[proj.slice_index[i]], proj.sample_id[i],
                            f"{x:.5g}", f"{y:.5g}"])
            groups = [(labels[k], proj.coords[proj.slice_index == k]) for k in range(len(labels))]
            title = f"{cell.model} | {cell.benchmark} | {cell.layer_name} (layer {cell.layer})"
            blocks.append(scatter_text(title, groups))
    method = projections[0][1].params.get("method", "tsne") if projections else "tsne"
    header = f"Figure 1: joint {method} projection of image and text keys (one panel per model/benchmark/layer)\n\n"
    txt.write_text(header + "\n".join(blocks))
    paths = [txt, csv_path]
    if want_png and projections:
        models = sorted({c.model for c, _ in projections})
        cols_keys = sorted({(c.benchmark, c.layer_name, c.layer) for c, _ in projections}, key=lambda k: (k[0], k[2]))
        panels = []
        for cell, proj in projections:
            labels = proj.labels
            panels.append(
                {
                    "row": models.index(cell.model),
                    "col": cols_keys.index((cell.benchmark, cell.layer_name, cell.layer)),
                    "title": f"{cell.model}\n{cell.benchmark} {cell.layer_name} (L{cell.layer})",
                    "groups": [(labels[k], proj.coords[proj.slice_index == k]) for k in range(len(labels))],
                }
            )
        legend = projections[0][1].labels
        paths.append(scatter_grid_png(out / "figure1_tsne.png", panels, len(models), len(cols_keys), legend))
    return paths


def write_figure2(out: Path, cells, control_rows: list[ComparisonRow], metrics, want_png: bool) -> list[Path]:
    txt, csv_path = out / "figure2_boxplots.txt", out / "figure2_boxplots.csv"
    order = ("image-vs-text", "image-vs-image", "text-vs-text")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "benchmark", "layer", "metric", "group", "replicate", "value"])
        for r in control_rows:
            w.writerow([r.side_a.model, r.side_a.benchmark, r.side_a.layer, r.result.metric, r.group, r.replicate,
                        r.result.value])
    blocks, panels = [], []
    for model in sorted({c.model for c in cells}):
        for metric in metrics:
            boxes = [
                (g, [r.result.value for r in control_rows
                     if r.side_a.model == model and r.result.metric == metric and r.group == g])
                for g in order
            ]
            title = f"{model} | {metric} over layers and benchmarks"
            blocks.append(box_text(title, boxes))
            panels.append({"title": title, "boxes": boxes})
    txt.write_text(
        "Figure 2: control groups (disjoint sample halves): Image-vs-Text against Image-vs-Image and "
        "Text-vs-Text\n\n" + "\n".join(blocks)
    )
    paths = [txt, csv_path]
    if want_png and panels:
        paths.append(box_grid_png(out / "figure2_boxplots.png", panels))
    return paths


def write_summary(out: Path, params, seconds, notes, files, table, metrics) -> list[Path]:
    now = utc_now()
    js, md = out / "report.json", out / "report.md"
    names = [p.name for p in files] + [js.name, md.name]
    js.write_text(_json({"created": now, "parameters": params, "seconds": seconds, "notes": notes, "files": names}))
    lines = [
        "# keygap report",
        "",
        f"Created {now} from store `{params['store']}`.",
        "",
        "## Parameters",
        "",
    ]
    for k, v in params.items():
        lines.append(f"- **{k}**: `{_json(v, indent=None)}`")
    lines += ["", "## Time per part (seconds)", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in seconds.items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Table", "", markdown_table(table, metrics), "## Files", ""] + [f"- {n}" for n in names]
    md.write_text("\n".join(lines) + "\n")
    return [js, md]
