"""Two-sample comparisons over store slices: one pair, control groups, and sweeps over layers and models.

Every answer goes through the results cache (store.results): the key hashes every parameter and the
identity of the key files read, so asking again returns the stored numbers at once (``cached=True``), even
after a restart, and re-ingesting a slice makes the old answers unreachable.

Defaults (ours, not the paper's - the paper states none; see FIELD-NOTES 1 and 5):
- ``DEFAULT_N`` = 500 keys per side, a uniform random sample (``n=None`` reads every key). Exact MMD with
  200 sample-level permutations plus JS at d = 4096 then answered in 0.48 s (median) on the shared 2-core
  machine at load average 4.5; n = 1000 took 1.24 s there (BENCHMARKS.md, "Analysis"). Cost grows as n^2 d,
  so raise n (or pass "all") when you can wait; the permutation test's power comes mostly from the number
  of samples, which the reader's uniform draw spreads over.
- ``DEFAULT_PERMUTATIONS`` = 200: p = (1 + #{null >= observed}) / (1 + B), permuting whole samples.
- Control groups split the SAMPLES into disjoint random halves A and B: image(A) vs image(B),
  text(A) vs text(B), image(A) vs text(B); ``DEFAULT_REPLICATES`` = 5 new splits; the MMD bandwidth is
  fitted once per (model, benchmark, layer) on pooled image + text keys and shared by all three groups.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from store.reader import KeyStore
from store.results import ResultsCache, question_key

from .errors import AnalysisError
from .progress import ProgressFn, Steps, StopFn
from .sides import Side, depends, load_side, open_store, store_root
from .threads import limit_threads

DEFAULT_METRICS = ("mmd", "js")
DEFAULT_N = 500
DEFAULT_PERMUTATIONS = 200
DEFAULT_REPLICATES = 5
DEFAULT_THREADS = "auto"
# Bump when a change in this module changes what a cached number means.
CACHE_VERSION = 2

GROUPS = ("image-vs-image", "text-vs-text", "image-vs-text")


@dataclass
class ComparisonRow:
    """One metric on one pair of sides; what compare/controls/layer_sweep return and the CLI prints."""

    metric: str
    value: float
    p_value: float | None
    n_a: int
    n_b: int
    params: dict
    seed: int
    seconds: float
    side_a: Side
    side_b: Side
    kind: str = "compare"
    group: str = ""
    replicate: int = -1
    extra: dict = field(default_factory=dict)
    cached: bool = False
    depth: float | None = None  # layer / (num_layers - 1): compares models of different depths

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "value": self.value,
            "p_value": self.p_value,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "params": self.params,
            "seed": self.seed,
            "seconds": self.seconds,
            "kind": self.kind,
            "group": self.group,
            "replicate": self.replicate,
            "model": self.side_a.model,
            "benchmark": self.side_a.benchmark,
            "layer": self.side_a.layer,
            "depth": self.depth,
            "side_a": self.side_a.to_dict(),
            "side_b": self.side_b.to_dict(),
            "extra": self.extra,
            "cached": self.cached,
        }


# --- metric plumbing ---------------------------------------------------------------------------------------
def _metrics():
    from keygap_tui.stats import METRICS

    return METRICS


def metric_names(metrics: Iterable[str]) -> tuple[str, ...]:
    """Normalised, de-duplicated names; validated against METRICS only when something must be computed,
    so a cached answer never pays for importing the statistics stack (torch: ~3 s)."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in metrics if m and m.strip()))
    if not names:
        raise AnalysisError("no metric given: e.g. --metrics mmd,js")
    return names


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    names = metric_names(metrics)
    known = _metrics()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise AnalysisError(f"unknown metric {', '.join(unknown)}: choose from {', '.join(sorted(known))}")
    return names


def requested_params(metric: str, permutations: int, metric_params: Mapping[str, Mapping[str, Any]] | None) -> dict:
    """What the caller asked of one metric: the cache-key part that does not need the metric's code."""
    return _jsonable({"permutations": int(permutations), **dict((metric_params or {}).get(metric, {}))})


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def metric_kwargs(
    metric: str, permutations: int, metric_params: Mapping[str, Mapping[str, Any]] | None, bandwidth=None
) -> dict:
    """Keyword arguments of one metric call: permutations where it takes them, then the user's params."""
    fn = _metrics()[metric]
    kwargs: dict[str, Any] = {}
    if _accepts(fn, "permutations"):
        kwargs["permutations"] = int(permutations)
    if bandwidth is not None and _accepts(fn, "bandwidth"):
        kwargs["bandwidth"] = float(bandwidth)
    kwargs.update(dict((metric_params or {}).get(metric, {})))
    return kwargs


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _run_metric(metric, xa, xb, ga, gb, seed, kwargs):
    t0 = time.perf_counter()
    res = _metrics()[metric](xa, xb, groups_x=ga, groups_y=gb, seed=seed, **kwargs)
    seconds = getattr(res, "seconds", None) or (time.perf_counter() - t0)
    p = res.p_value
    return {
        "value": float(res.value),
        "p_value": None if p is None or (isinstance(p, float) and np.isnan(p)) else float(p),
        "n_a": int(res.n_a),
        "n_b": int(res.n_b),
        "params": _jsonable(dict(res.params or {})),
        "extra": _jsonable(dict(res.extra or {})),
        "seconds": float(seconds),
    }


def _cache_for(ks: KeyStore) -> ResultsCache | None:
    root = store_root(ks)
    return ResultsCache(root) if os.path.isdir(root) else None


def _row_from_cache(r: dict, kind: str) -> ComparisonRow:
    return ComparisonRow(
        metric=r["metric"],
        value=r["value"],
        p_value=r["p_value"],
        n_a=r["n_a"],
        n_b=r["n_b"],
        params=json.loads(r["params"]),
        seed=r["seed"],
        seconds=r["seconds"],
        side_a=Side(**json.loads(r["side_a"])),
        side_b=Side(**json.loads(r["side_b"])),
        kind=kind,
        group=r["group"] or "",
        replicate=r["replicate"],
        extra=json.loads(r["extra"]),
        cached=True,
    )


def _cache_row(row: ComparisonRow) -> dict:
    d = row.to_dict()
    d["rope"] = row.side_a.rope
    d["side_a"] = row.side_a.to_dict()
    d["side_b"] = row.side_b.to_dict()
    return d


def _n_arg(n: int | None) -> int | None:
    if n is None:
        return None
    n = int(n)
    if n < 2:
        raise AnalysisError(f"n must be at least 2 keys per side (or 'all'), got {n}")
    return n


# --- one pair ----------------------------------------------------------------------------------------------
def compare(
    store: str | os.PathLike | KeyStore,
    side_a: Side,
    side_b: Side,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """Compare two sides with each metric; one ComparisonRow per metric, in the order asked.

    ``n`` keys per side are drawn uniformly (reader sample with ``seed``); ``n=None`` reads all.
    ``permutations`` goes to every metric that takes it (sample-level: sample ids are the groups).
    ``metric_params`` = {metric: {param: value}} overrides a metric's defaults (e.g. mmd bandwidth).
    Rows answered from the cache carry ``cached=True`` and the original ``seconds``.
    ``threads``: BLAS threads for the computation ("auto": one on a busy machine, see threads.py).
    """
    ks = open_store(store)
    names = metric_names(metrics)
    n = _n_arg(n)
    steps = Steps(len(names) + 1, progress, should_stop)
    steps.report(f"compare {side_a.what} vs {side_b.what}")
    cache = _cache_for(ks) if use_cache else None
    deps = depends(ks, [side_a, side_b])
    data_id = ResultsCache.data_id(deps)
    answers: dict[str, ComparisonRow] = {}
    keys: dict[str, str] = {}
    for metric in names:
        question = {
            "kind": "compare",
            "version": CACHE_VERSION,
            "side_a": side_a.to_dict(),
            "side_b": side_b.to_dict(),
            "metric": metric,
            "n": n,
            "seed": int(seed),
            "requested": requested_params(metric, permutations, metric_params),
        }
        keys[metric] = question_key(question, data_id)
        if cache is not None:
            hit = cache.get(keys[metric])
            if hit:
                answers[metric] = _row_from_cache(hit[0], "compare")
    missing = [m for m in names if m not in answers]
    if missing:
        check_metrics(missing)
        kwargs_of = {m: metric_kwargs(m, permutations, metric_params) for m in missing}
        steps.report("loading keys")
        a = load_side(ks, side_a, n=n, seed=seed)
        b = load_side(ks, side_b, n=n, seed=seed)
        _check_dims(a.x, b.x, side_a, side_b)
        steps.advance("loaded")
        for metric in missing:
            steps.report(f"{metric} on {len(a.x)} + {len(b.x)} keys")
            with limit_threads(threads) as limit:
                out = _run_metric(metric, a.x, b.x, a.sample_id, b.sample_id, seed, kwargs_of[metric])
            params = _recorded_params(out["params"], kwargs_of[metric], n, seed, permutations)
            params["blas_threads"] = "library default" if limit is None else limit
            row = ComparisonRow(
                metric=metric, value=out["value"], p_value=out["p_value"], n_a=out["n_a"], n_b=out["n_b"],
                params=params, seed=int(seed), seconds=out["seconds"], side_a=side_a, side_b=side_b,
                group=f"{side_a.what}-vs-{side_b.what}", extra=out["extra"],
            )
            if cache is not None:
                cache.put(keys[metric], [_cache_row(row)], depends=deps)
            answers[metric] = row
            steps.advance(f"{metric} done")
    else:
        steps.done = steps.total
        steps.report("answered from the results cache")
    depth = relative_depth(side_a.layer, model_depth(ks, side_a.model)) if side_a.model == side_b.model else None
    for row in answers.values():
        row.depth = depth
    return [answers[m] for m in names]


def _check_dims(xa: np.ndarray, xb: np.ndarray, side_a: Side, side_b: Side) -> None:
    if xa.shape[1] != xb.shape[1]:
        raise AnalysisError(
            f"{side_a.label()} has {xa.shape[1]}-dim keys but {side_b.label()} has {xb.shape[1]}: "
            "compare sides of the same model (for different models, sweep layers and align by relative depth)"
        )


def _recorded_params(metric_params: dict, kwargs: dict, n, seed, permutations) -> dict:
    """What the number depends on, stored next to it: the metric's own record plus our sampling choices."""
    params = dict(metric_params)
    for k, v in _jsonable(kwargs).items():
        params.setdefault(k, v)
    params.update(
        {
            "n_per_side": "all" if n is None else int(n),
            "sampling": "uniform random keys per side (reader, seeded)",
            "permutation_unit": "sample",
            "seed": int(seed),
        }
    )
    return params


# --- control groups ------------------------------------------------------------------------------------
def split_samples(sample_ids: Iterable[str], seed: int, replicate: int) -> tuple[set, set]:
    """Disjoint random halves of the distinct sample ids; reproducible from (seed, replicate)."""
    uniq = np.array(sorted({str(s) for s in sample_ids}), dtype=object)
    rng = np.random.default_rng([int(seed), int(replicate)])
    perm = rng.permutation(len(uniq))
    half = len(uniq) // 2
    return set(uniq[perm[:half]]), set(uniq[perm[half:]])


def _take(x: np.ndarray, ids: np.ndarray, members: set, n: int | None, rng: np.random.Generator):
    """Rows of the samples in ``members``, at most ``n`` of them drawn without replacement."""
    idx = np.flatnonzero(np.isin(ids.astype(str), np.array(sorted(members), dtype=str)))
    if n is not None and len(idx) > n:
        idx = np.sort(rng.choice(idx, size=n, replace=False))
    return x[idx], ids[idx]


def controls(
    store: str | os.PathLike | KeyStore,
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
    image: str | tuple = "image",
    text: str | tuple = "text",
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """The three control groups, ``replicates`` times; rows carry ``group`` and ``replicate``.

    Samples are split into disjoint halves A/B (a new seeded split per replicate); each group compares
    at most ``n`` keys per side. One MMD bandwidth (median heuristic on pooled image + text keys) is shared
    by all groups and replicates of this (model, benchmark, layer), so the three are comparable.
    ``image``/``text`` are modality specs (e.g. "text:question,options" to drop the system prompt).
    ``permutations`` defaults to 0: controls are for the distribution of values, not p-values.
    """
    from .sides import parse_what

    ks = open_store(store)
    names = metric_names(metrics)
    n = _n_arg(n)
    if replicates < 1:
        raise AnalysisError(f"replicates must be at least 1, got {replicates}")
    img_mod, img_segs = parse_what(image) if isinstance(image, str) else image
    txt_mod, txt_segs = parse_what(text) if isinstance(text, str) else text
    side_i = Side(model, benchmark, layer, img_mod, img_segs, rope)
    side_t = Side(model, benchmark, layer, txt_mod, txt_segs, rope)
    steps = Steps(1 + len(names) * replicates, progress, should_stop)
    steps.report(f"controls {side_i.model} L{layer}")
    cache = _cache_for(ks) if use_cache else None
    deps = depends(ks, [side_i, side_t])
    data_id = ResultsCache.data_id(deps)
    answers: dict[str, list[ComparisonRow]] = {}
    keys = {}
    for metric in names:
        question = {
            "kind": "controls",
            "version": CACHE_VERSION,
            "image": side_i.to_dict(),
            "text": side_t.to_dict(),
            "metric": metric,
            "n": n,
            "seed": int(seed),
            "replicates": int(replicates),
            "requested": requested_params(metric, permutations, metric_params),
        }
        keys[metric] = question_key(question, data_id)
        hit = cache.get(keys[metric]) if cache is not None else None
        if hit:
            answers[metric] = [_row_from_cache(r, "controls") for r in hit]
    missing = [m for m in names if m not in answers]
    if missing:
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
        for metric in missing:
            kwargs = metric_kwargs(metric, permutations, metric_params, bandwidth=bandwidth)
            rows = []
            for r in range(replicates):
                A, B = split_samples(ids, seed, r)
                rng = np.random.default_rng([int(seed), int(r), 1])
                ia, ga_i = _take(img.x, img.sample_id, A, n, rng)
                ib, gb_i = _take(img.x, img.sample_id, B, n, rng)
                ta, ga_t = _take(txt.x, txt.sample_id, A, n, rng)
                tb, gb_t = _take(txt.x, txt.sample_id, B, n, rng)
                pairs = {
                    "image-vs-image": (ia, ib, ga_i, gb_i, side_i, side_i),
                    "text-vs-text": (ta, tb, ga_t, gb_t, side_t, side_t),
                    "image-vs-text": (ia, tb, ga_i, gb_t, side_i, side_t),
                }
                for group in GROUPS:
                    xa, xb, ga, gb, sa, sb = pairs[group]
                    if len(xa) < 2 or len(xb) < 2:
                        raise AnalysisError(
                            f"a half split left {len(xa)} / {len(xb)} keys for {group} of {sa.label()}: "
                            "ingest more samples or raise n"
                        )
                    steps.check()
                    with limit_threads(threads) as limit:
                        out = _run_metric(metric, xa, xb, ga, gb, seed + r, kwargs)
                    params = _recorded_params(out["params"], kwargs, n, seed, permutations)
                    params["blas_threads"] = "library default" if limit is None else limit
                    params.update(
                        {"split": "disjoint random halves of samples", "replicates": int(replicates),
                         "bandwidth_shared": "median of pooled image+text keys, one per model/benchmark/layer"}
                    )
                    rows.append(
                        ComparisonRow(
                            metric=metric, value=out["value"], p_value=out["p_value"], n_a=out["n_a"],
                            n_b=out["n_b"], params=params, seed=int(seed) + r, seconds=out["seconds"],
                            side_a=sa, side_b=sb, kind="controls", group=group, replicate=r, extra=out["extra"],
                        )
                    )
                steps.advance(f"{metric} replicate {r + 1}/{replicates}")
            if cache is not None:
                cache.put(keys[metric], [_cache_row(x) for x in rows], depends=deps)
            answers[metric] = rows
    return [row for m in names for row in answers[m]]


# --- sweeps ----------------------------------------------------------------------------------------------
def model_depth(ks: KeyStore, model: str) -> int | None:
    """Decoder depth of a model from its run manifests ("num_layers"), or None when none records it."""
    from store.schema import model_label

    label = model_label(model)
    depths = set()
    for run in ks.runs():
        ids = {str(run.get(k)) for k in ("model", "model_id", "model_label") if run.get(k)}
        if label in {model_label(i) for i in ids} and run.get("num_layers"):
            depths.add(int(run["num_layers"]))
    if len(depths) > 1:
        raise AnalysisError(f"run manifests of {label} disagree on its depth ({sorted(depths)}): re-ingest into one store")
    return depths.pop() if depths else None


def resolve_model_layers(ks: KeyStore, model: str, benchmark: str, spec, rope: str = "post") -> list[int]:
    """Layers of ``spec`` (early/middle/late/all/ints/percent of depth) that the store holds for a model.

    Named layers use the model's depth L from its run manifest (1, L // 2, L - 1), so models of different
    depths are compared at the same relative depth; "all" means every stored layer. Without a recorded
    depth, names map onto the stored layers (first, middle, last).
    """
    from store.schema import model_label, resolve_layers

    label = model_label(model)
    stored = ks.layers(label, benchmark)
    if not stored:
        raise AnalysisError(f"no keys for {label} on {benchmark}: run `keygap ingest --model {model} --benchmark {benchmark}`")
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else map(str, spec)) if str(p).strip()]
    if parts == ["all"]:
        return stored
    depth = model_depth(ks, label)
    out: set[int] = set()
    for part in parts:
        if part.endswith("%"):
            try:
                frac = float(part[:-1]) / 100.0
            except ValueError:
                raise AnalysisError(f"bad relative depth {part!r}: use e.g. 50%") from None
            if not 0.0 <= frac <= 1.0:
                raise AnalysisError(f"relative depth {part} is outside 0%..100%")
            if depth is None:
                out.add(stored[int(round(frac * (len(stored) - 1)))])
            else:
                out.add(int(round(frac * (depth - 1))))
        elif depth is None:
            named = {"early": stored[0], "middle": stored[len(stored) // 2], "late": stored[-1]}
            if part in named:
                out.add(named[part])
            elif part == "all":
                out.update(stored)
            else:
                try:
                    out.add(int(part))
                except ValueError:
                    raise AnalysisError(f"unknown layer {part!r}: use early, middle, late, all, N% or integers") from None
        else:
            try:
                out.update(resolve_layers(part, depth))
            except ValueError as exc:
                raise AnalysisError(str(exc)) from None
    missing = sorted(out - set(stored))
    if missing:
        raise AnalysisError(
            f"layer(s) {', '.join(map(str, missing))} of {label} on {benchmark} are not in the store "
            f"(stored: {', '.join(map(str, stored))}); ingest them with --layers"
        )
    return sorted(out)


def relative_depth(layer: int, depth: int | None) -> float | None:
    return None if not depth or depth < 2 else layer / (depth - 1)


def layer_sweep(
    store: str | os.PathLike | KeyStore,
    models: Sequence[str],
    benchmark: str,
    layers: str | Sequence = "all",
    a: str = "image",
    b: str = "text",
    metrics: Sequence[str] = DEFAULT_METRICS,
    n: int | None = DEFAULT_N,
    seed: int = 0,
    *,
    rope: str = "post",
    permutations: int = DEFAULT_PERMUTATIONS,
    with_controls: bool = False,
    replicates: int = DEFAULT_REPLICATES,
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    threads: int | str | None = DEFAULT_THREADS,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """compare() (and optionally controls()) for every model x layer; rows carry ``depth`` = layer/(L-1).

    ``models`` may be ["all"] for every model in the store; ``layers`` as in resolve_model_layers, resolved
    per model so "middle" is each model's own middle layer.
    """
    from .sides import parse_what

    ks = open_store(store)
    if list(models) == ["all"]:
        models = [m for m in ks.models() if benchmark in ks.benchmarks(m)]
        if not models:
            raise AnalysisError(f"no model in the store has keys for benchmark {benchmark}")
    plan = []
    for model in models:
        depth = model_depth(ks, model)
        for layer in resolve_model_layers(ks, model, benchmark, layers, rope):
            plan.append((model, layer, depth))
    ma, sa = parse_what(a)
    mb, sb = parse_what(b)
    steps = Steps(len(plan), progress, should_stop)
    rows: list[ComparisonRow] = []
    for model, layer, depth in plan:
        sub = steps.sub(2 if with_controls else 1)
        got = compare(
            ks, Side(model, benchmark, layer, ma, sa, rope), Side(model, benchmark, layer, mb, sb, rope), metrics, n,
            seed, permutations=permutations, metric_params=metric_params, use_cache=use_cache, threads=threads,
            progress=sub.child(), should_stop=should_stop,
        )
        if with_controls:
            sub.done = 1
            got += controls(
                ks, model, benchmark, layer, metrics, n, seed, replicates=replicates, rope=rope, image=a, text=b,
                metric_params=metric_params, use_cache=use_cache, threads=threads, progress=sub.child(),
                should_stop=should_stop,
            )
        for row in got:
            row.depth = relative_depth(layer, depth)
        rows += got
        steps.advance(f"{model} layer {layer}")
    return rows
