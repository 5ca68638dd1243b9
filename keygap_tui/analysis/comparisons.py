"""Two-sample comparisons over store slices: one pair, the control groups, and sweeps over layers and models.

Every answer goes through the results cache (answers.py): asking again returns the stored numbers at once
(``cached=True``), even after a restart, and re-ingesting a slice makes the old answers unreachable. The
defaults (defaults.py) are ours, not the paper's; docs/ANALYSIS.md says why each was chosen. Control
groups split the SAMPLES into disjoint random halves A and B: image(A) vs image(B), text(A) vs text(B),
image(A) vs text(B), with one MMD bandwidth per (model, benchmark, layer) fitted on pooled image + text
keys and shared by all three groups.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from store.reader import KeySlice, KeyStore

from .answers import answer
from .defaults import (
    DEFAULT_CI,
    DEFAULT_METRICS,
    DEFAULT_N,
    DEFAULT_PERMUTATIONS,
    DEFAULT_REPLICATES,
    DEFAULT_THREADS,
    GROUPS,
)
from .errors import AnalysisError
from .heads import head_layout, parse_heads
from .layers import model_depth, relative_depth, resolve_model_layers
from .metrics import (
    MetricParams,
    check_metrics,
    metric_kwargs,
    metric_names,
    requested_params,
    run_metric,
    sampling_record,
)
from .progress import ProgressFn, Steps, StopFn
from .rows import ComparisonRow
from .sides import Side, load_side, open_store, parse_what
from .threads import limit_threads

StoreArg = str | os.PathLike[str] | KeyStore


def _n_arg(n: int | None) -> int | None:
    if n is None:
        return None
    n = int(n)
    if n < 2:
        raise AnalysisError(f"n must be at least 2 keys per side (or 'all'), got {n}")
    return n


def _check_dims(xa: np.ndarray, xb: np.ndarray, side_a: Side, side_b: Side) -> None:
    if xa.shape[1] != xb.shape[1]:
        raise AnalysisError(
            f"{side_a.label()} has {xa.shape[1]}-dim keys but {side_b.label()} has {xb.shape[1]}: "
            "compare sides of the same model (for different models, sweep layers and align by relative depth)"
        )


# --- one pair ----------------------------------------------------------------------------------------------
def compare(
    store: StoreArg,
    side_a: Side,
    side_b: Side,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    ci: float | None = DEFAULT_CI,
    metric_params: MetricParams | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """Compare two sides with each metric; one ComparisonRow per metric, in the order asked.

    ``n`` keys per side are drawn uniformly (reader sample with ``seed``); ``n=None`` reads all.
    ``permutations`` goes to every metric that takes it (sample ids are the groups; the measure reads the
    design from them, docs/STATISTICS.md). ``ci``: the level of a bootstrap interval over samples for every
    metric that gives one (None or 0: none).
    ``metric_params`` = {metric: {param: value}} overrides a metric's defaults (e.g. mmd bandwidth).
    Rows answered from the cache carry ``cached=True`` and the original ``seconds``.
    ``threads``: BLAS threads for the computation ("auto": one on a busy machine, see threads.py).
    """
    ks = open_store(store)
    names = metric_names(metrics)
    n = _n_arg(n)
    steps = Steps(len(names) + 1, progress, should_stop)
    steps.report(f"compare {side_a.what} vs {side_b.what}")

    def question(metric: str) -> dict[str, Any]:
        return {
            "kind": "compare", "side_a": side_a.to_dict(), "side_b": side_b.to_dict(), "metric": metric,
            "n": n, "seed": int(seed), "requested": requested_params(metric, permutations, metric_params, ci),
        }

    def compute(missing: list[str]) -> Iterator[tuple[str, list[ComparisonRow]]]:
        check_metrics(missing)
        kwargs_of = {m: metric_kwargs(m, permutations, metric_params, ci=ci) for m in missing}
        steps.report("loading keys")
        a = load_side(ks, side_a, n=n, seed=seed)
        b = load_side(ks, side_b, n=n, seed=seed)
        _check_dims(a.x, b.x, side_a, side_b)
        steps.advance("loaded")
        for metric in missing:
            steps.report(f"{metric} on {len(a.x)} + {len(b.x)} keys")
            result = run_metric(
                metric, a.x, b.x, a.sample_id, b.sample_id, seed=seed, kwargs=kwargs_of[metric], threads=threads,
                recorded=sampling_record(n, seed),
            )
            yield metric, [ComparisonRow(result, side_a, side_b, group=f"{side_a.what}-vs-{side_b.what}")]
            steps.advance(f"{metric} done")

    rows = answer(ks, [side_a, side_b], names, question, compute, use_cache=use_cache, steps=steps)
    depth = relative_depth(side_a.layer, model_depth(ks, side_a.model)) if side_a.model == side_b.model else None
    for row in rows:
        row.depth = depth
    return rows


# --- control groups ------------------------------------------------------------------------------------
def split_samples(sample_ids: Iterable[str], seed: int, replicate: int) -> tuple[set[str], set[str]]:
    """Disjoint random halves of the distinct sample ids; reproducible from (seed, replicate)."""
    uniq = np.array(sorted({str(s) for s in sample_ids}), dtype=object)
    rng = np.random.default_rng([int(seed), int(replicate)])
    perm = rng.permutation(len(uniq))
    half = len(uniq) // 2
    return set(uniq[perm[:half]]), set(uniq[perm[half:]])


def _take(
    x: np.ndarray, ids: np.ndarray, members: set[str], n: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the samples in ``members``, at most ``n`` of them drawn without replacement."""
    idx = np.flatnonzero(np.isin(ids.astype(str), np.array(sorted(members), dtype=str)))
    if n is not None and len(idx) > n:
        idx = np.sort(rng.choice(idx, size=n, replace=False))
    return x[idx], ids[idx]


def _as_side_spec(spec: str | tuple[str, tuple[str, ...] | None]) -> tuple[str, tuple[str, ...] | None]:
    return parse_what(spec) if isinstance(spec, str) else spec


def controls(
    store: StoreArg,
    model: str,
    benchmark: str,
    layer: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    *,
    replicates: int = DEFAULT_REPLICATES,
    permutations: int = 0,
    rope: str = "post",
    image: str | tuple[str, tuple[str, ...] | None] = "image",
    text: str | tuple[str, tuple[str, ...] | None] = "text",
    metric_params: MetricParams | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    head: int | None = None,
) -> list[ComparisonRow]:
    """The three control groups, ``replicates`` times; rows carry ``group`` and ``replicate``.

    Samples are split into disjoint halves A/B (a new seeded split per replicate); each group compares
    at most ``n`` keys per side. One MMD bandwidth (median heuristic on pooled image + text keys) is shared
    by all groups and replicates of this (model, benchmark, layer), so the three are comparable.
    ``image``/``text`` are modality specs (e.g. "text:question,options" to drop the system prompt).
    ``permutations`` defaults to 0: controls are for the distribution of values, not p-values.
    ``head``: one kv head's columns of every key (None: all heads).
    """
    ks = open_store(store)
    names = metric_names(metrics)
    n = _n_arg(n)
    if replicates < 1:
        raise AnalysisError(f"replicates must be at least 1, got {replicates}")
    side_i = Side(model, benchmark, layer, *_as_side_spec(image), rope=rope, head=head)
    side_t = Side(model, benchmark, layer, *_as_side_spec(text), rope=rope, head=head)
    steps = Steps(1 + len(names) * replicates, progress, should_stop)
    steps.report(f"controls {side_i.model} L{layer}")

    def question(metric: str) -> dict[str, Any]:
        return {
            "kind": "controls", "image": side_i.to_dict(), "text": side_t.to_dict(), "metric": metric, "n": n,
            "seed": int(seed), "replicates": int(replicates),
            "requested": requested_params(metric, permutations, metric_params),
        }

    def compute(missing: list[str]) -> Iterator[tuple[str, list[ComparisonRow]]]:
        check_metrics(missing)
        from keygap_tui.stats import median_bandwidth

        steps.report("loading keys")
        pool_n = None if n is None else 2 * n
        img = load_side(ks, side_i, n=pool_n, seed=seed)
        txt = load_side(ks, side_t, n=pool_n, seed=seed)
        _check_dims(img.x, txt.x, side_i, side_t)
        ids = set(map(str, img.sample_id)) | set(map(str, txt.sample_id))
        if len(ids) < 4:
            raise AnalysisError(
                f"control groups need at least 4 samples with keys, {side_i.model} on {benchmark} has {len(ids)}: "
                "ingest more samples"
            )
        with limit_threads(threads):
            bandwidth = float(median_bandwidth(np.vstack([img.x, txt.x]), seed=seed))
        steps.advance(f"bandwidth sigma^2 = {bandwidth:.4g}")
        recorded = sampling_record(n, seed) | {
            "split": "disjoint random halves of samples",
            "replicates": int(replicates),
            "bandwidth_shared": "median of pooled image+text keys, one per model/benchmark/layer",
        }
        for metric in missing:
            kwargs = metric_kwargs(metric, permutations, metric_params, bandwidth=bandwidth)
            rows = []
            for r in range(replicates):
                for group, (xa, ga, sa), (xb, gb, sb) in _control_pairs(img, txt, side_i, side_t, seed, r, n):
                    if len(xa) < 2 or len(xb) < 2:
                        raise AnalysisError(
                            f"a half split left {len(xa)} / {len(xb)} keys for {group} of {sa.label()}: "
                            "ingest more samples or raise n"
                        )
                    steps.check()
                    result = run_metric(
                        metric, xa, xb, ga, gb, seed=seed + r, kwargs=kwargs, threads=threads, recorded=recorded
                    )
                    rows.append(ComparisonRow(result, sa, sb, kind="controls", group=group, replicate=r))
                steps.advance(f"{metric} replicate {r + 1}/{replicates}")
            yield metric, rows

    return answer(ks, [side_i, side_t], names, question, compute, use_cache=use_cache, steps=steps)


def _control_pairs(
    img: KeySlice, txt: KeySlice, side_i: Side, side_t: Side, seed: int, replicate: int, n: int | None
) -> list[tuple[str, tuple[np.ndarray, np.ndarray, Side], tuple[np.ndarray, np.ndarray, Side]]]:
    """The three groups of one replicate, in GROUPS order: (group, (keys, sample ids, side) of A, of B)."""
    half_a, half_b = split_samples(set(map(str, img.sample_id)) | set(map(str, txt.sample_id)), seed, replicate)
    rng = np.random.default_rng([int(seed), int(replicate), 1])
    ia, ga_i = _take(img.x, img.sample_id, half_a, n, rng)
    ib, gb_i = _take(img.x, img.sample_id, half_b, n, rng)
    ta, ga_t = _take(txt.x, txt.sample_id, half_a, n, rng)
    tb, gb_t = _take(txt.x, txt.sample_id, half_b, n, rng)
    pairs = {
        "image-vs-image": ((ia, ga_i, side_i), (ib, gb_i, side_i)),
        "text-vs-text": ((ta, ga_t, side_t), (tb, gb_t, side_t)),
        "image-vs-text": ((ia, ga_i, side_i), (tb, gb_t, side_t)),
    }
    return [(group, *pairs[group]) for group in GROUPS]


# --- sweeps ----------------------------------------------------------------------------------------------
def sweep_plan(
    store: StoreArg, models: Sequence[str], benchmark: str, layers: str | Sequence[object] = "all", rope: str = "post",
    heads: str | None = None,
) -> list[tuple[str, int, int | None, int | None]]:
    """The (model, layer, model depth, kv head or None) cells of a sweep, in the order they are computed.

    ``models`` may be ["all"] for every model in the store with keys for ``benchmark``; ``layers`` as in
    resolve_model_layers, resolved per model so "middle" is each model's own middle layer."""
    ks = open_store(store)
    if list(models) == ["all"]:
        models = [m for m in ks.models() if benchmark in ks.benchmarks(m)]
        if not models:
            raise AnalysisError(f"no model in the store has keys for benchmark {benchmark}")
    plan: list[tuple[str, int, int | None, int | None]] = []
    for model in models:
        depth = model_depth(ks, model)
        chosen: list[int | None] = [None]
        if heads is not None:
            chosen = list(parse_heads(heads, head_layout(ks, model).num_kv_heads) or [])
        for layer in resolve_model_layers(ks, model, benchmark, layers, rope):
            plan += [(model, layer, depth, head) for head in chosen]
    return plan


def iter_layer_sweep(
    store: StoreArg,
    models: Sequence[str],
    benchmark: str,
    layers: str | Sequence[object] = "all",
    a: str = "image",
    b: str = "text",
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    rope: str = "post",
    permutations: int = DEFAULT_PERMUTATIONS,
    ci: float | None = DEFAULT_CI,
    with_controls: bool = False,
    replicates: int = DEFAULT_REPLICATES,
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    heads: str | None = None,
) -> Iterator[ComparisonRow]:
    """compare() (and optionally controls()) for every model x layer (x kv head) x pair of sides, yielding each
    cell's rows as soon as that cell is done; rows carry ``depth`` = layer / (L - 1).

    ``pairs``: side specs to compare in every cell (default [(a, b)]), e.g. [("image", "text:question"),
    ("image", "text:options")] sweeps segments too. ``heads`` ('all' or '0,5'): one row set per kv head of
    each model (head_dim from its run manifest); None compares whole keys. Stopping (``should_stop``, or
    leaving the loop) keeps what was yielded, and every finished cell is in the results cache, so asking
    again resumes at once.
    """
    ks = open_store(store)
    plan = sweep_plan(ks, models, benchmark, layers, rope, heads)
    pairs = list(pairs) if pairs else [(a, b)]
    parsed = [(parse_what(pa_), parse_what(pb_), pa_, pb_) for pa_, pb_ in pairs]
    steps = Steps(len(plan) * len(pairs), progress, should_stop)
    for model, layer, depth, head in plan:
        for (ma, sa), (mb, sb), spec_a, spec_b in parsed:
            sub = steps.sub(2 if with_controls else 1)
            got = compare(
                ks, Side(model, benchmark, layer, ma, sa, rope, head),
                Side(model, benchmark, layer, mb, sb, rope, head), metrics, n, seed, permutations=permutations, ci=ci,
                metric_params=metric_params, use_cache=use_cache, threads=threads,
                progress=sub.child(), should_stop=should_stop,
            )
            if with_controls:
                sub.done = 1
                got += controls(
                    ks, model, benchmark, layer, metrics, n, seed, replicates=replicates, rope=rope, image=spec_a,
                    text=spec_b, metric_params=metric_params, use_cache=use_cache, threads=threads,
                    progress=sub.child(), should_stop=should_stop, head=head,
                )
            for row in got:
                row.depth = relative_depth(layer, depth)
            yield from got
            steps.advance(f"{model} layer {layer}" + ("" if head is None else f" head {head}"))


def layer_sweep(*args: Any, **kwargs: Any) -> list[ComparisonRow]:
    """Every row of :func:`iter_layer_sweep` (same arguments), once the whole sweep is done."""
    return list(iter_layer_sweep(*args, **kwargs))


__all__ = [
    "DEFAULT_CI", "DEFAULT_METRICS", "DEFAULT_N", "DEFAULT_PERMUTATIONS", "DEFAULT_REPLICATES", "DEFAULT_THREADS",
    "GROUPS", "ComparisonRow", "compare", "controls", "iter_layer_sweep", "layer_sweep", "model_depth",
    "relative_depth", "resolve_model_layers", "split_samples", "sweep_plan",
]
