"""The work behind each view, as plain functions a thread worker can run and a test can call.

Every number comes from keygap_tui.analysis (so it equals `keygap compare` and shares its results cache);
these functions only choose what to ask for and reshape answers for the widgets. No Textual here:
``progress(fraction, message)`` and ``should_stop()`` are how the app watches and cancels them.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from keygap_tui.analysis.progress import Steps

from .config import AnalysisSettings
from .plots import ScatterData
from .selection import Selection

if TYPE_CHECKING:
    from keygap_tui.analysis import ComparisonRow

Progress = Callable[[float, str], None] | None
Stop = Callable[[], bool] | None


def warm_up(threads: int, progress: Progress = None, should_stop: Stop = None, cap: bool = True):
    """Import the numerical libraries (and cap their thread pools when ``cap``), once, after the first screen.

    Imports of torch / scikit-learn hold the GIL for long stretches and would stall the event loop in the
    middle of a later t-SNE; done here they overlap with reading the first screen. The cap keeps a core
    free for the event loop (see AnalysisSettings.compute_threads); ``cap`` is False when the environment
    already capped the pools before they loaded (app/threads.py).
    """
    steps = Steps(4, progress, should_stop)
    steps.report("loading statistics (torch)")
    importlib.import_module("keygap_tui.stats")

    steps.advance("loading scikit-learn")
    from keygap_tui.analysis.projection import pca, tsne

    steps.advance("loading openTSNE")
    importlib.import_module("openTSNE")

    steps.advance(f"limiting compute to {threads} thread(s)")
    limiter = None
    if cap:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=threads)
        except ImportError:  # threadpoolctl comes with scikit-learn; without it the pools keep their size
            pass
        import torch

        torch.set_num_threads(threads)
    # One tiny run of each: scikit-learn and openTSNE import submodules on first use (neighbours, FFT).
    tiny = pca(np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32), 2, 0)
    tsne(tiny, 0, perplexity=5.0, iterations=(2, 2))
    steps.advance("ready")
    return limiter


def result_row(row: ComparisonRow) -> dict:
    """One results-table row: the row's one serialisation (what `keygap compare --json` prints, so exports
    match it), plus the short side names and n that the table shows."""
    return row.to_dict() | {"a": row.side_a.what, "b": row.side_b.what, "n": f"{row.result.n_a}+{row.result.n_b}"}


@dataclass
class ScatterResult:
    data: ScatterData
    method: str
    params: dict
    seconds: dict
    rows: list[dict] = field(default_factory=list)  # one per point: for the cursor and for export
    selection: Selection | None = None  # the slice it shows (a plot whose slice left the picker is stale)
    has_text: bool = False  # the store recorded token text (older stores did not)
    head: int | None = None  # one kv head's columns of every key (the Attention tab's drill-down); None = whole keys


def slice_title(sel: Selection, what: str, head: int | None = None) -> str:
    """What a plot shows, in its title: model, benchmark, layer (and kv head), sides and RoPE stage."""
    where = f"L{sel.layer}" if head is None else f"L{sel.layer} kv head {head}"
    return (f"{what} {sel.model} / {sel.benchmark} / {where} / {sel.rope}-RoPE: "
            f"A {sel.spec('a')} vs B {sel.spec('b')}")


def head_sides(sel: Selection, head: int | None) -> list:
    """Sides A and B of ``sel``; with ``head`` only that kv head's columns (analysis.sides.load_side slices
    them, head_dim from the run manifest), so the scatter and its nearest tokens read the same vectors."""
    sides = [sel.side_a(), sel.side_b()]
    return sides if head is None else [s.replace(head=head) for s in sides]


def project_slice(store, sel: Selection, method: str, settings: AnalysisSettings, progress: Progress = None,
                  should_stop: Stop = None, head: int | None = None) -> ScatterResult:
    """Both sides projected jointly (shared axes), coloured by side; every point keeps its sample, position,
    segment, token id and token text (for the cursor and exports). ``head``: one kv head's key columns."""
    from keygap_tui.analysis import project
    from keygap_tui.analysis.sides import open_store
    from keygap_tui.analysis.tokens import token_texts

    ks = open_store(store)
    sides = head_sides(sel, head)
    proj = project(ks, sides, method=method, n=settings.scatter_points or None, seed=settings.seed,
                   progress=progress, should_stop=should_stop)
    texts = token_texts(ks, sel.model)
    labels = [f"A {sel.spec('a')}", f"B {sel.spec('b')}"]
    name = "t-SNE" if method == "tsne" else "PCA"
    data = ScatterData(coords=np.asarray(proj.coords, dtype=np.float32), series=proj.slice_index, labels=labels,
                       title=slice_title(sel, name, head))
    rows = [
        {"model": sel.model, "benchmark": sel.benchmark, "layer": sel.layer, "head": head, "rope": sel.rope,
         "method": method,
         "side": labels[s], "x": float(x), "y": float(y), "sample_id": str(sid), "position": int(pos),
         "segment": str(seg), "token_id": int(tid), "token_text": texts.get(int(tid))}
        for (x, y), s, sid, pos, seg, tid in zip(proj.coords.tolist(), proj.slice_index.tolist(), proj.sample_id,
                                                 proj.position, proj.segment, proj.token_id, strict=True)
    ]
    return ScatterResult(data=data, method=method, params=proj.params, seconds=proj.seconds, rows=rows,
                         selection=sel, has_text=bool(texts), head=head)


def nearest_tokens(store, sel: Selection, settings: AnalysisSettings, anchor: int | None = None, k: int = 20,
                   progress: Progress = None, should_stop: Stop = None, head: int | None = None) -> list[dict]:
    """The ``k`` keys of side B (the text side) nearest, in key space (Euclidean), to the centroid of side A's
    keys (``anchor`` None) or to the key of scatter point ``anchor`` (an index into the projected points:
    side A's rows, then side B's, as project_slice loaded them). Each with its distance and token text.
    ``head``: in that kv head's columns, as the scatter drawn for it."""
    from keygap_tui.analysis.sides import load_side, open_store
    from keygap_tui.analysis.tokens import token_texts

    ks = open_store(store)
    steps = Steps(2, progress, should_stop)
    steps.report("loading keys")
    n = settings.scatter_points or None
    side_a, side_b = head_sides(sel, head)
    a = load_side(ks, side_a, n=n, seed=settings.seed)  # the same draw as the scatter's projection
    b = load_side(ks, side_b, n=n, seed=settings.seed)
    steps.advance("distances")
    if anchor is None:
        target, what = a.x.astype(np.float64).mean(axis=0), f"centroid of A ({sel.spec('a')})"
    else:
        pooled = np.vstack([a.x, b.x])
        target, what = pooled[int(anchor)].astype(np.float64), "the selected point"
    dist = np.sqrt(((b.x.astype(np.float64) - target) ** 2).sum(axis=1))
    if anchor is not None and int(anchor) >= len(a.x):
        dist[int(anchor) - len(a.x)] = np.inf  # not the point itself
    order = np.argsort(dist, kind="stable")[:k]
    texts = token_texts(ks, sel.model)
    steps.advance("done")
    return [
        {"rank": i + 1, "distance": float(dist[j]), "to": what, "model": sel.model, "layer": sel.layer, "head": head,
         "rope": sel.rope,
         "side": f"B {sel.spec('b')}", "sample_id": str(b.sample_id[j]), "position": int(b.position[j]),
         "segment": str(b.segment[j]), "token_id": int(b.token_id[j]), "token_text": texts.get(int(b.token_id[j]))}
        for i, j in enumerate(order) if np.isfinite(dist[j])
    ]


@dataclass
class ControlsResult:
    values: dict[str, dict[int, dict[str, list[float]]]]  # metric -> layer -> group -> values over replicates
    rows: list[dict]
    layers: list[int]
    labels: dict[str, str]  # group -> label from the actual sides (I-T / I-I / T-T, or A-B / A-A / B-B)
    table: list[dict]  # per metric and layer: the three means and the inter/intra ratio (report's Table)
    selection: Selection | None = None


def group_labels(sel: Selection) -> dict[str, str]:
    """Labels of the three groups from the actual sides: I-T, I-I, T-T only when A is image and B text."""
    if sel.a_modality == "image" and sel.b_modality == "text" and sel.a_segment == sel.b_segment == "all":
        return {"image-vs-text": "I-T", "image-vs-image": "I-I", "text-vs-text": "T-T"}
    return {"image-vs-text": "A-B", "image-vs-image": "A-A", "text-vs-text": "B-B"}


def tab_metrics(settings: AnalysisSettings) -> tuple[str, ...]:
    """The key measures the Controls and Layers tabs offer: the configured ones but ``logits`` (a logit
    decomposition has no control groups), analysis's defaults where only ``logits`` is configured."""
    from keygap_tui.analysis.defaults import DEFAULT_METRICS

    return settings.key_metrics or tuple(DEFAULT_METRICS)


def report_layers(cat, sel: Selection) -> list[int]:
    """The layers of `keygap report`'s Figure 2 by default: early, middle, late of the model's depth."""
    from .selection import named_layer

    stored = cat.layers(sel.model, sel.benchmark)
    return sorted({named_layer(stored, cat.depth.get(sel.model), name)[0] for name in ("early", "middle", "late")})


def control_groups(store, sel: Selection, layers: list[int], settings: AnalysisSettings, progress: Progress = None,
                   should_stop: Stop = None) -> ControlsResult:
    """Figure 2 for one model and benchmark, per layer: the three groups, R replicates each, their means
    and the inter/intra ratio (the matrix's numbers, app/matrix.py).

    Side A plays "image" and side B "text" (their segment filters too), so the controls can also ask e.g.
    whether question tokens alone sit apart from image tokens.
    """
    from keygap_tui.analysis import controls

    from .matrix import Matrix

    metrics = tab_metrics(settings)
    steps = Steps(len(layers), progress, should_stop)
    rows: list[dict] = []
    m = Matrix(metrics)
    for layer in layers:
        steps.report(f"controls at layer {layer}")
        got = [result_row(r) for r in controls(
            store, sel.model, sel.benchmark, layer, metrics, settings.n, settings.seed,
            replicates=settings.replicates, rope=sel.rope, image=sel.spec("a"), text=sel.spec("b"),
            progress=steps.child(), should_stop=should_stop,
        )]
        rows += got
        m.add_controls(m.row_for(sel.model, sel.benchmark, layer, sel.rope, sel.spec("a"), sel.spec("b")), got)
        steps.advance(f"layer {layer} done")
    values: dict[str, dict[int, dict[str, list[float]]]] = {}
    for r in rows:
        values.setdefault(r["metric"], {}).setdefault(r["layer"], {}).setdefault(r["group"], []).append(r["value"])
    labels = group_labels(sel)
    from .matrix import control_means

    table = []
    for metric in metrics:
        for row in m.ordered():
            means = control_means(row, metric, raw=True)  # the raw values the boxes show
            table.append({"metric": metric, "layer": row.layer, labels["image-vs-text"]: means["image-vs-text"],
                          labels["image-vs-image"]: means["image-vs-image"],
                          labels["text-vs-text"]: means["text-vs-text"],
                          "ratio": means["ratio"]})
    return ControlsResult(values=values, rows=rows, layers=list(layers), labels=labels, table=table, selection=sel)


@dataclass
class SweepResult:
    metric: str
    series: dict[str, list[tuple[float, float]]]  # model -> [(relative depth, value)]
    rows: list[dict]


#: how often a running sweep hands its rows so far to the screen (each redraw re-plots every point)
SWEEP_EMIT_EVERY_S = 0.3


def sweep_layers(
    store, sel: Selection, metric: str, settings: AnalysisSettings, progress: Progress = None, should_stop: Stop = None,
    emit: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """A vs B at every stored layer of every model that has this benchmark, on relative depth.

    ``emit`` gets the rows done so far as the sweep goes (at most every SWEEP_EMIT_EVERY_S), so the table and
    the plot fill while it runs and a cancelled sweep leaves what it finished on screen."""
    from keygap_tui.analysis import iter_layer_sweep
    from keygap_tui.analysis.progress import Cancelled

    rows: list[dict] = []
    shown = time.monotonic()
    try:
        for r in iter_layer_sweep(
            store, ["all"], sel.benchmark, "all", sel.spec("a"), sel.spec("b"), [metric], settings.n, settings.seed,
            rope=sel.rope, permutations=settings.permutations, ci=settings.ci or None, progress=progress,
            should_stop=should_stop,
        ):
            rows.append(result_row(r))
            if emit is not None and time.monotonic() - shown >= SWEEP_EMIT_EVERY_S:
                emit(sweep_result(metric, list(rows)))
                shown = time.monotonic()
    except Cancelled:
        if emit is not None and rows:
            emit(sweep_result(metric, rows))  # Escape keeps what is done
        raise
    return sweep_result(metric, rows)


def sweep_result(metric: str, rows: list[dict]) -> SweepResult:
    """The Layers tab's plot series (model -> [(relative depth, value)]) and table of sweep rows."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        depth = r["depth"]
        if depth is None:  # no recorded depth: fall back to the layer index scaled by the stored range
            depth = float(r["layer"])
        series.setdefault(r["model"], []).append((depth, r["value"]))
    if any(r["depth"] is None for r in rows):
        for model, pts in series.items():
            top = max(x for x, _ in pts) or 1.0
            series[model] = [(x / top, y) for x, y in pts]
    return SweepResult(metric=metric, series=series, rows=rows)


@dataclass
class SqlResult:
    columns: list[str]
    cells: list[tuple[str, ...]]  # formatted, at most ``limit`` rows
    table: object  # the full pyarrow table, for export
    total: int
    seconds: float | None


def sql_catalog(store):
    """The SQL tab's catalog of ``store``: the limits of `keygap sql` by default, the memory limit included
    (DuckDB's own default, 80 % of the machine, would starve the app), the timeout in sql_query."""
    from store.catalog import SqlCatalog
    from store.sql import default_memory_limit

    return SqlCatalog(store, memory_limit=default_memory_limit())


def sql_query(catalog, query: str, limit: int = 1000, on_cursor: Callable | None = None) -> SqlResult:
    """Run read-only SQL on a fresh connection of ``catalog`` (a store.catalog.SqlCatalog), so nothing a
    statement does outlives it; ``on_cursor`` receives the connection so Esc can interrupt it."""
    from store.sql import DEFAULT_TIMEOUT_S, format_cell, run_query

    con = catalog.connect()
    if on_cursor is not None:
        on_cursor(con)
    t0 = time.perf_counter()
    try:
        table = run_query(con, query, timeout=DEFAULT_TIMEOUT_S)
    finally:
        con.close()
    head = table.slice(0, limit).to_pylist()
    cells = [tuple(format_cell(v, 40) for v in row.values()) for row in head]
    return SqlResult(table.column_names, cells, table, table.num_rows, time.perf_counter() - t0)


@dataclass(frozen=True)
class MatrixPlan:
    """One matrix row to compute: a slice of one model and layer, sides as picker specs."""

    model: str
    benchmark: str
    layer: int
    rope: str
    a: str
    b: str


def matrix_plan(cat, sel: Selection, scope: str) -> list[MatrixPlan]:
    """The rows a matrix key asks for. ``scope``: "slice" (the picker's slice), "layers" (every stored layer
    of every model that has the benchmark and both sides' modalities), "segments" (side A against each
    segment of side B's modality, at the current layer)."""
    if scope == "slice":
        return [MatrixPlan(sel.model, sel.benchmark, sel.layer, sel.rope, sel.spec("a"), sel.spec("b"))]
    if scope == "segments":
        segs = [s for s in cat.segment_options(sel.model, sel.benchmark, sel.b_modality) if s != "all"]
        return [MatrixPlan(sel.model, sel.benchmark, sel.layer, sel.rope, sel.spec("a"), f"{sel.b_modality}:{s}")
                for s in segs]
    plan = []
    for model in cat.models():
        if sel.benchmark not in cat.benchmarks(model):
            continue
        mods = cat.modality_options(model, sel.benchmark)
        if sel.a_modality not in mods or sel.b_modality not in mods:
            continue
        if sel.rope not in cat.ropes.get((model, sel.benchmark), []):
            continue
        a, b = sel.spec("a"), sel.spec("b")
        if model != sel.model:  # a segment filter of this model may not exist in another: keep modalities only
            segs_a = cat.segment_options(model, sel.benchmark, sel.a_modality)
            segs_b = cat.segment_options(model, sel.benchmark, sel.b_modality)
            a = a if sel.a_segment in segs_a else sel.a_modality
            b = b if sel.b_segment in segs_b else sel.b_modality
        plan += [MatrixPlan(model, sel.benchmark, layer, sel.rope, a, b) for layer in cat.layers(model, sel.benchmark)]
    return plan


def ci_kwargs(settings: AnalysisSettings) -> dict:
    """The bootstrap interval level for compare: settings.ci (0.95 by default), None for 0 (no interval;
    compare's own default would give one)."""
    return {"ci": settings.ci or None}


def matrix_rows(store, plan: list[MatrixPlan], settings: AnalysisSettings,
                emit: Callable[[str, MatrixPlan, list[dict]], None],
                progress: Progress = None, should_stop: Stop = None, with_controls: bool = True,
                measures: bool = True, logits: bool | None = None) -> int:
    """Compute each planned row (measures, the logit decomposition where asked, then the control groups) and
    hand every part to ``emit`` as soon as it is done, so the matrix fills progressively and a cancel keeps
    what was finished. ``logits`` None: when ``settings.metrics`` holds it. Returns the rows completed."""
    from keygap_tui.analysis import Side, compare, controls, parse_what

    metrics = settings.key_metrics if measures else ()
    logits = settings.logits if logits is None else logits
    with_controls = with_controls and bool(metrics)
    parts = (1 if metrics else 0) + (1 if logits else 0) + (1 if with_controls else 0)
    steps = Steps(len(plan) * max(parts, 1), progress, should_stop)
    done = 0
    for p in plan:
        side_a = Side(p.model, p.benchmark, p.layer, *parse_what(p.a), rope=p.rope)
        side_b = Side(p.model, p.benchmark, p.layer, *parse_what(p.b), rope=p.rope)
        steps.report(f"{p.model} L{p.layer}: {p.a} vs {p.b}")
        if metrics:
            rows = compare(store, side_a, side_b, metrics, settings.n, settings.seed,
                           permutations=settings.permutations, progress=steps.child(), should_stop=should_stop,
                           **ci_kwargs(settings))
            emit("measures", p, [result_row(r) for r in rows])
            steps.advance(f"{p.model} L{p.layer} measured")
        if logits:
            emit("logits", p, [logit_row(store, side_a, side_b, settings, steps.child(), should_stop)])
            steps.advance(f"{p.model} L{p.layer} logits")
        if with_controls:
            got = controls(store, p.model, p.benchmark, p.layer, metrics, settings.n, settings.seed,
                           replicates=settings.replicates, rope=p.rope, image=p.a, text=p.b,
                           progress=steps.child(), should_stop=should_stop)
            emit("controls", p, [result_row(r) for r in got])
            steps.advance(f"{p.model} L{p.layer} controls")
        done += 1
    return done


def logit_row(store, side_a, side_b, settings: AnalysisSettings, progress: Progress = None,
              should_stop: Stop = None) -> dict:
    """The logit decomposition of one slice over all query heads, as `keygap compare --metrics logits` asks
    for it (analysis.logits.logit_gap: same ``n`` and seed, same results cache). A slice that cannot have
    one (no queries stored, no query that sees both sides) gives {"error": its one line, "cell": short text}
    so the matrix cell and the status say why and the other rows go on."""
    from keygap_tui.analysis.errors import Cancelled
    from keygap_tui.analysis.logits import logit_gap
    from keygap_tui.stats import StatsInputError
    from store.errors import KeygapError

    try:
        (row,) = logit_gap(store, side_a, side_b, settings.n, settings.seed, progress=progress,
                           should_stop=should_stop)
    except Cancelled:
        raise
    except (KeygapError, StatsInputError) as exc:
        message = " ".join(str(exc).split())
        return {"metric": "logits", "error": message,
                "cell": "no queries" if "--queries" in message else "n/a"}
    return result_row(row)


def sql_schema(catalog):
    """The catalog's views, columns and functions, for the SQL tab's sidebar and completion."""
    from .sql_complete import read_schema

    con = catalog.connect()
    try:
        return read_schema(con)
    finally:
        con.close()
@dataclass
class AttentionView:
    """What the Attention tab shows for one model and benchmark (keygap_tui.analysis.attention)."""

    model: str
    benchmark: str
    allocation: object  # analysis.attention.Allocation
    matrix: object  # analysis.attention.HeadMatrix
    correlation: object | None  # stats.correlation.Correlation, None when too few cells
    selection: Selection | None = None  # the slice it was computed for (sides, RoPE): the drill-down's scatter


def attention_view(store, sel: Selection, settings: AnalysisSettings, progress: Progress = None,
                   should_stop: Stop = None) -> AttentionView:
    """Allocation over layers, the layer x kv head matrix and the gap/deficit correlation of the selection's
    model and benchmark (``settings.n`` keys per side for each layer's per-head gaps)."""
    from keygap_tui.analysis.attention import allocation, gap_deficit_correlation, head_matrix
    from keygap_tui.analysis.sides import open_store
    from keygap_tui.stats import StatsInputError

    steps = Steps(3, progress, should_stop)
    ks = open_store(store)
    steps.report("reading attention rows")
    alloc = allocation(ks, sel.model, sel.benchmark)
    steps.advance("key gaps per head")
    matrix = head_matrix(ks, sel.model, sel.benchmark, rope=sel.rope, image=sel.spec("a"), text=sel.spec("b"),
                         n=settings.n, seed=settings.seed)
    steps.advance("correlation")
    try:
        corr = gap_deficit_correlation(matrix, permutations=999, seed=settings.seed)
    except StatsInputError:
        corr = None
    steps.advance("done")
    return AttentionView(sel.model, sel.benchmark, alloc, matrix, corr, sel)
