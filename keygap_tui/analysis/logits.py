"""`keygap compare --metrics logits`: the logit decomposition (stats/logits.py) over stored queries and keys.

The text queries of a layer (`keygap ingest --queries`) are drawn (``n`` rows, seeded, like keys); the keys
are every stored key of those samples on each side, so each query sees the keys of its own sample that the
causal mask lets it see, and the centroids are taken over the same keys. With ``heads`` one row per query
head, else one row over all query heads. Answers go through the results cache like every comparison.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from keygap_tui.stats.logits import HeadGeometry, LabelledVectors, logit_decomposition

from .answers import answer
from .comparisons import StoreArg, _n_arg
from .defaults import DEFAULT_N
from .errors import AnalysisError
from .heads import head_layout, parse_heads
from .layers import model_depth, relative_depth, resolve_model_layers
from .metrics import sampling_record
from .progress import ProgressFn, Steps, StopFn
from .rows import ComparisonRow
from .sides import Side, open_store, parse_what

METRIC = "logits"


def logit_gap(
    store: StoreArg, side_a: Side, side_b: Side, n: int | None = DEFAULT_N, seed: int = 0, *,
    heads: Sequence[int] | None = None, use_cache: bool = True, progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """Rows of the logit decomposition of side_a vs side_b keys as text queries of that layer see them."""
    ks = open_store(store)
    n = _n_arg(n)
    layout = head_layout(ks, side_a.model)
    parts = ["all"] if heads is None else [str(int(h)) for h in heads]
    steps = Steps(len(parts) + 1, progress, should_stop)
    steps.report(f"logits {side_a.what} vs {side_b.what}")

    def question(part: str) -> dict[str, Any]:
        return {"kind": METRIC, "side_a": side_a.to_dict(), "side_b": side_b.to_dict(), "n": n, "seed": int(seed),
                "query_heads": part}

    def compute(missing: list[str]) -> Iterator[tuple[str, list[ComparisonRow]]]:
        steps.report("loading queries and keys")
        # the reader's StoreError says to ingest with --queries when there are none
        q = ks.load(side_a.model, side_a.benchmark, side_a.layer, "text", rope=side_a.rope, n=n, seed=seed,
                    kind="query")
        samples = sorted(set(map(str, q.sample_id)))
        keys = []
        for side in (side_a, side_b):
            sl = ks.load(side.model, side.benchmark, side.layer, side.modality, rope=side.rope,
                         segments=list(side.segments) if side.segments else None, samples=samples)
            if len(sl.x) == 0:
                raise AnalysisError(f"no {side.what} keys in the samples of the stored queries of {side.label()}")
            keys.append(LabelledVectors(sl.x, sl.sample_id, sl.position))
        steps.advance("loaded")
        geometry = HeadGeometry(layout.num_heads, layout.num_kv_heads, layout.head_dim, layout.scaling)
        queries = LabelledVectors(q.x, q.sample_id, q.position)
        for part in missing:
            chosen = None if part == "all" else [int(part)]
            result = logit_decomposition(queries, keys[0], keys[1], geometry, heads=chosen,
                                         softcapping=layout.softcapping, seed=seed)
            result.params.update(sampling_record(n, seed) | {"n_per_side": "every stored key of the query samples",
                                                             "n_queries_drawn": "all" if n is None else int(n)})
            head = None if chosen is None else chosen[0]
            yield part, [ComparisonRow(result, side_a.replace(head=head), side_b.replace(head=head), kind=METRIC,
                                       group=f"{side_a.what}-vs-{side_b.what}")]
            steps.advance(f"logits {part} done")

    rows = answer(ks, [side_a, side_b], parts, question, compute, use_cache=use_cache, steps=steps)
    depth = relative_depth(side_a.layer, model_depth(ks, side_a.model))
    for row in rows:
        row.depth = depth
    return rows


def logit_sweep(
    store: StoreArg, models: Sequence[str], benchmark: str, layers: str | Sequence[object] = "all",
    a: str = "image", b: str = "text", n: int | None = DEFAULT_N, seed: int = 0, *, rope: str = "post",
    heads: str | None = None, use_cache: bool = True, progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> list[ComparisonRow]:
    """logit_gap for every model x layer (``heads``: None, 'all' or '0,5' query heads of each model)."""
    ks = open_store(store)
    if list(models) == ["all"]:
        models = [m for m in ks.models() if benchmark in ks.benchmarks(m)]
    ma, sa = parse_what(a)
    mb, sb = parse_what(b)
    plan = [(model, layer) for model in models for layer in resolve_model_layers(ks, model, benchmark, layers, rope)]
    steps = Steps(len(plan), progress, should_stop)
    rows: list[ComparisonRow] = []
    for model, layer in plan:
        chosen = parse_heads(heads, head_layout(ks, model).num_heads, "query heads")
        rows += logit_gap(ks, Side(model, benchmark, layer, ma, sa, rope), Side(model, benchmark, layer, mb, sb, rope),
                          n, seed, heads=chosen, use_cache=use_cache, progress=steps.child(), should_stop=should_stop)
        steps.advance(f"{model} layer {layer}")
    return rows
