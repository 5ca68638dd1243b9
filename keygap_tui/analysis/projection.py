"""2-D projections of key slices: randomized PCA, then (optionally) t-SNE with openTSNE, seeded.

Several slices are projected jointly (stacked before PCA and t-SNE) so they share axes: that is what makes
image and text keys of Figure 1 comparable in one panel.

Why openTSNE rather than scikit-learn's TSNE: on 10,000 PCA-50 points with the same 250 iterations it
took 7.3-7.6 s against scikit-learn's 23-38 s (3.1-5.0x over two runs, benchmarks/bench_analysis.py,
BENCHMARKS.md "Analysis"), it accepts callbacks (progress, cancel, live drawing) and its FFT gradient
scales linearly in n.

Our defaults (not the paper's, which states none): PCA to 50 components (randomized, iterated_power=2),
perplexity 30, exact nearest neighbours up to 20,000 points (brute force after PCA beat Annoy there:
1.5 s against 5.3 s at 10,000), Barnes-Hut gradients below 10,000 points and FFT from there (FFT's grid
follows the embedding's span, so it is slow on small sets: 2.7 s against 0.7 s on 700 points), one thread,
125 early-exaggeration + 125 normal iterations (openTSNE's default schedule is 250 + 500, 4-5x slower:
pass ``iterations=(250, 500)`` for publication figures).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from store.reader import KeyStore

from .answers import CachedQuestions
from .errors import AnalysisError, Cancelled
from .progress import ProgressFn, Steps, StopFn
from .sides import Side, load_side, open_store
from .threads import limit_threads

DEFAULT_PROJECTION_N = 1000  # keys per slice
DEFAULT_PCA_COMPONENTS = 50
DEFAULT_PERPLEXITY = 30.0
DEFAULT_ITERATIONS = (125, 125)  # early exaggeration, then normal
EXACT_NEIGHBOURS_UP_TO = 20_000
FFT_FROM = 10_000
# One thread: with 2 on a shared 2-core machine openTSNE's OpenMP threads spin against other work and ran
# 3-10x slower (700 points: 1.5-4.6 s with one thread, 15 s with two; load average 5).
DEFAULT_TSNE_JOBS = 1


@dataclass
class Projection:
    """Coordinates of every projected key and which slice it came from."""

    coords: np.ndarray  # float32 [N, 2]
    slice_index: np.ndarray  # int32 [N]: index into ``sides``
    sides: list[Side]
    sample_id: np.ndarray  # object [N]
    segment: np.ndarray  # object [N]
    params: dict
    position: np.ndarray | None = None  # int32 [N]: token position in its prompt
    token_id: np.ndarray | None = None  # int32 [N]
    seconds: dict = field(default_factory=dict)
    cached: bool = False  # answered from the results cache (``seconds`` are the original run's)

    @property
    def labels(self) -> list[str]:
        """One label per slice (its modality/segments, plus model/layer where the slices differ)."""
        return slice_labels(self.sides)

    def point_labels(self) -> np.ndarray:
        return np.array(self.labels, dtype=object)[self.slice_index]


def slice_labels(sides: Sequence[Side]) -> list[str]:
    """Shortest labels that still tell the slices apart."""
    fields = ("model", "benchmark", "layer", "rope")
    varying = [f for f in fields if len({getattr(s, f) for s in sides}) > 1]
    labels = []
    for s in sides:
        parts = [f"L{s.layer}" if f == "layer" else str(getattr(s, f)) for f in varying]
        labels.append("/".join(parts + [s.what]))
    return labels


def pca(x: np.ndarray, components: int, seed: int) -> np.ndarray:
    """Randomized PCA scores (float32); fewer components if the data has fewer dimensions or rows."""
    from sklearn.decomposition import PCA

    k = int(min(components, x.shape[1], x.shape[0] - 1))
    if k < 2:
        raise AnalysisError(f"a projection needs at least 3 keys with 2 dimensions, got shape {x.shape}")
    model = PCA(n_components=k, svd_solver="randomized", iterated_power=2, random_state=seed)
    return model.fit_transform(x.astype(np.float32, copy=False)).astype(np.float32)


def gradient_method(n: int) -> str:
    """Barnes-Hut below FFT_FROM points, FFT interpolation from there (openTSNE's own rule).

    Measured on 700 points: BH 2 s, FFT 11 s (the FFT grid follows the embedding's span, not n).
    """
    return "bh" if n < FFT_FROM else "fft"


def tsne(
    x: np.ndarray,
    seed: int,
    *,
    perplexity: float = DEFAULT_PERPLEXITY,
    iterations: tuple[int, int] = DEFAULT_ITERATIONS,
    n_jobs: int = DEFAULT_TSNE_JOBS,
    steps: Steps | None = None,
) -> np.ndarray:
    """openTSNE embedding of (PCA-reduced) points; calls ``steps.report`` every 25 iterations."""
    from openTSNE import TSNEEmbedding, affinity, initialization

    n = x.shape[0]
    if n < 4:
        raise AnalysisError(f"t-SNE needs at least 4 points, got {n}: raise n or use --method pca")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    method = "exact" if n <= EXACT_NEIGHBOURS_UP_TO else "annoy"
    aff = affinity.PerplexityBasedNN(x, perplexity=perp, method=method, n_jobs=n_jobs, random_state=seed)
    init = initialization.pca(x, random_state=seed)
    early, main = (int(i) for i in iterations)
    total = max(1, early + main)
    done = [0]

    def callback(iteration, error, embedding):
        if steps is not None:
            steps.report(f"t-SNE iteration {done[0] + iteration}/{total}", within=(done[0] + iteration) / total)
        return False

    emb = TSNEEmbedding(
        init, aff, n_jobs=n_jobs, negative_gradient_method=gradient_method(n), random_state=seed,
        callbacks=[callback] if steps is not None else None, callbacks_every_iters=25,
    )
    if early:
        emb = emb.optimize(early, exaggeration=12, momentum=0.5)
        done[0] = early
    if main:
        emb = emb.optimize(main, momentum=0.8)
    return np.asarray(emb, dtype=np.float32)


def project_arrays(
    xs: Sequence[np.ndarray],
    *,
    method: str = "tsne",
    seed: int = 0,
    pca_components: int = DEFAULT_PCA_COMPONENTS,
    perplexity: float = DEFAULT_PERPLEXITY,
    iterations: tuple[int, int] = DEFAULT_ITERATIONS,
    n_jobs: int = DEFAULT_TSNE_JOBS,
    threads: int | str | None = "auto",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, dict]:
    """Joint projection of arrays that share a dimension; returns (coords [sum n_i, 2], seconds)."""
    if method not in ("pca", "tsne"):
        raise AnalysisError(f"unknown projection method {method!r}: use pca or tsne")
    dims = {x.shape[1] for x in xs}
    if len(dims) != 1:
        raise AnalysisError(
            f"slices of different key widths ({sorted(dims)}) cannot share axes: project one model at a time"
        )
    steps = Steps(2, progress, should_stop)
    x = np.vstack(xs)
    seconds = {}
    t0 = time.perf_counter()
    steps.report(f"PCA of {len(x)} keys")
    with limit_threads(threads):
        scores = pca(x, pca_components if method == "tsne" else 2, seed)
    seconds["pca"] = time.perf_counter() - t0
    steps.advance("PCA done")
    if method == "pca":
        return scores[:, :2], seconds
    t0 = time.perf_counter()
    coords = tsne(scores, seed, perplexity=perplexity, iterations=iterations, n_jobs=n_jobs, steps=steps)
    seconds["tsne"] = time.perf_counter() - t0
    steps.advance("t-SNE done")
    return coords, seconds


def project(
    store: str | os.PathLike | KeyStore,
    slices: Sequence[Side],
    method: str = "tsne",
    n: int | None = DEFAULT_PROJECTION_N,
    seed: int = 0,
    *,
    pca_components: int = DEFAULT_PCA_COMPONENTS,
    perplexity: float = DEFAULT_PERPLEXITY,
    iterations: tuple[int, int] = DEFAULT_ITERATIONS,
    n_jobs: int = DEFAULT_TSNE_JOBS,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Projection:
    """Load up to ``n`` keys of each slice and project them jointly (shared axes).

    Returns a Projection: ``coords`` [N, 2], ``slice_index`` (which of ``slices`` each point is from),
    ``labels`` (one per slice), ``params`` (everything the picture depends on) and ``seconds`` per stage.
    Answers are cached in the store (results/arrays/) under every parameter and the data's identity.
    Cancelling (``should_stop`` returns True) raises Cancelled.
    """
    if not slices:
        raise AnalysisError("nothing to project: give at least one slice")
    ks = open_store(store)
    steps = Steps(len(slices) + 1, progress, should_stop)
    question = {
        "kind": "projection", "version": 2, "sides": [s.to_dict() for s in slices], "method": method,
        "n": n, "seed": int(seed), "pca_components": int(pca_components), "perplexity": float(perplexity),
        "iterations": [int(i) for i in iterations], "threads": int(n_jobs),
    }
    cached = CachedQuestions(ks, slices, use_cache)
    key = cached.key(question)
    cache = cached.cache
    hit = cache.get_table(key) if cache is not None else None
    if hit is not None:
        table, info = hit
        steps.done = steps.total
        steps.report("projection answered from the results cache")
        return Projection(
            coords=np.column_stack([table["x"].to_numpy(), table["y"].to_numpy()]).astype(np.float32),
            slice_index=table["slice_index"].to_numpy().astype(np.int32),
            sides=list(slices),
            sample_id=np.asarray(table["sample_id"].to_pylist(), dtype=object),
            segment=np.asarray(table["segment"].to_pylist(), dtype=object),
            position=table["position"].to_numpy().astype(np.int32),
            token_id=table["token_id"].to_numpy().astype(np.int32),
            params=info["params"],
            seconds=info["seconds"],
            cached=True,
        )
    t0 = time.perf_counter()
    loaded = []
    for side in slices:
        steps.report(f"loading {side.label()}")
        loaded.append(load_side(ks, side, n=n, seed=seed))
        steps.advance()
    seconds = {"load": time.perf_counter() - t0}
    coords, more = project_arrays(
        [s.x for s in loaded], method=method, seed=seed, pca_components=pca_components, perplexity=perplexity,
        iterations=iterations, n_jobs=n_jobs, progress=steps.child(), should_stop=should_stop,
    )
    seconds.update(more)
    steps.advance("projection done")
    params = {
        "method": method,
        "n_per_slice": "all" if n is None else int(n),
        "seed": int(seed),
        "pca": {"components": int(pca_components), "solver": "randomized", "iterated_power": 2},
    }
    if method == "tsne":
        params["tsne"] = {
            "library": "openTSNE",
            "perplexity": float(perplexity),
            "iterations": {"early_exaggeration": int(iterations[0]), "normal": int(iterations[1])},
            "exaggeration": 12,
            "neighbours": f"exact up to {EXACT_NEIGHBOURS_UP_TO} points, else annoy",
            "gradient": f"Barnes-Hut below {FFT_FROM} points, else FFT",
            "initialization": "pca",
            "threads": int(n_jobs),
        }
    result = Projection(
        coords=coords,
        slice_index=np.repeat(np.arange(len(loaded), dtype=np.int32), [len(s.x) for s in loaded]),
        sides=list(slices),
        sample_id=np.concatenate([s.sample_id for s in loaded]),
        segment=np.concatenate([s.segment for s in loaded]),
        params=params,
        seconds=seconds,
        position=np.concatenate([s.position for s in loaded]).astype(np.int32),
        token_id=np.concatenate([s.token_id for s in loaded]).astype(np.int32),
    )
    if cache is not None:
        table = pa.table(
            {
                "x": pa.array(coords[:, 0], pa.float32()),
                "y": pa.array(coords[:, 1], pa.float32()),
                "slice_index": pa.array(result.slice_index, pa.int32()),
                "sample_id": pa.array([str(v) for v in result.sample_id], pa.string()),
                "segment": pa.array([str(v) for v in result.segment], pa.string()),
                "position": pa.array(result.position, pa.int32()),
                "token_id": pa.array(result.token_id, pa.int32()),
            }
        )
        cache.put_table(key, table, depends=cached.depends, info={"params": params, "seconds": seconds})
    return result


__all__ = ["Projection", "project", "project_arrays", "pca", "tsne", "slice_labels", "Cancelled"]
