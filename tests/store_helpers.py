"""Small builders of real stores for tests (no mocks: real Parquet through the real writer)."""

from __future__ import annotations

import numpy as np

from store.writer import KeyBatch, KeyWriter, write_run


def write_synthetic_store(
    root,
    *,
    model="m",
    benchmark="b",
    layers=(1,),
    samples=20,
    tokens=10,
    dim=16,
    dtype="float16",
    shift=0.0,
    seed=0,
    run_id="run0",
    flush_every=5,
):
    """A store whose image keys are N(shift, 1) and text keys N(0, 1); returns {(layer, modality): keys}."""
    rng = np.random.default_rng(seed)
    written: dict = {}
    w = KeyWriter(root, run_id)
    for s0 in range(0, samples, flush_every):
        ids = [f"s{i:04d}" for i in range(s0, min(samples, s0 + flush_every))]
        for layer in layers:
            for modality in ("image", "text"):
                n = len(ids) * tokens
                x = rng.standard_normal((n, dim)).astype(np.float32) + (shift if modality == "image" else 0.0)
                if dtype == "float16":
                    x = x.astype(np.float16)
                w.add(
                    KeyBatch(
                        model=model,
                        benchmark=benchmark,
                        layer=layer,
                        rope="post",
                        modality=modality,
                        sample_id=np.repeat(np.array(ids, dtype=object), tokens),
                        position=np.tile(np.arange(tokens), len(ids)) + (0 if modality == "image" else tokens),
                        token_id=rng.integers(0, 100, n),
                        segment=np.array([modality if modality == "image" else "question"] * n, dtype=object),
                        keys=x,
                        dtype=dtype,
                    )
                )
                written.setdefault((layer, modality), []).append((np.repeat(ids, tokens), x))
        w.commit([{"model": model, "benchmark": benchmark, "sample_id": s, "status": "done"} for s in ids])
        w.flush()
    w.close()
    write_run(root, {"run_id": run_id, "status": "done", "model_id": model, "benchmark": benchmark, "num_layers": max(layers) + 1})
    return written
