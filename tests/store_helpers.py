"""Small builders of real stores for tests (no mocks: real Parquet through the real writer)."""

from __future__ import annotations

import json

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
    ropes=("post",),
    text_segments=("question",),
    first_sample=0,
):
    """A store whose image keys are N(shift, 1) and text keys N(0, 1); returns {(layer, modality): keys}.

    ``ropes``: the RoPE stages written (the same keys under each); ``text_segments``: the text tokens of a
    sample cycle through these segment labels (e.g. ("system", "question", "options")); ``first_sample``: the
    number of the first sample id (to add samples to a store)."""
    rng = np.random.default_rng(seed)
    written: dict = {}
    w = KeyWriter(root, run_id)
    for s0 in range(first_sample, first_sample + samples, flush_every):
        ids = [f"s{i:04d}" for i in range(s0, min(first_sample + samples, s0 + flush_every))]
        for layer in layers:
            for modality in ("image", "text"):
                n = len(ids) * tokens
                x = rng.standard_normal((n, dim)).astype(np.float32) + (shift if modality == "image" else 0.0)
                if dtype == "float16":
                    x = x.astype(np.float16)
                if modality == "image":
                    segs = ["image"] * tokens
                else:
                    segs = [text_segments[t % len(text_segments)] for t in range(tokens)]
                token_id = rng.integers(0, 100, n)
                for rope in ropes:
                    w.add(
                        KeyBatch(
                            model=model,
                            benchmark=benchmark,
                            layer=layer,
                            rope=rope,
                            modality=modality,
                            sample_id=np.repeat(np.array(ids, dtype=object), tokens),
                            position=np.tile(np.arange(tokens), len(ids)) + (0 if modality == "image" else tokens),
                            token_id=token_id,
                            segment=np.array(segs * len(ids), dtype=object),
                            keys=x,
                            dtype=dtype,
                        )
                    )
                written.setdefault((layer, modality), []).append((np.repeat(ids, tokens), x))
        # token text as an ingest records it: id -> text (here a made-up word per id, "w<id>")
        texts = {str(t): f"w{t}" for t in range(100)}
        w.commit([{"model": model, "benchmark": benchmark, "sample_id": s, "status": "done",
                   "token_text": json.dumps(texts)} for s in ids])
        w.flush()
    w.close()
    # the head layout of a real manifest: the synthetic keys are one kv head of `dim` values
    write_run(root, {"run_id": run_id, "status": "done", "model_id": model, "model": model, "benchmark": benchmark,
                     "num_layers": max(layers) + 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": dim,
                     "kv_head_of_query_head": [0]})
    return written


def stored_rows(root) -> dict:
    """{every label of a committed row, with its partition: key bytes}, minus run_id (which names the
    writer, not the data): two stores are the same data when these are equal. Asserts no row is stored twice."""
    from store.reader import KeyStore

    ks = KeyStore(str(root))
    labels: list[tuple] = []
    keys: list[bytes] = []
    for partition, files in sorted(ks.inventory.files.items()):
        for f in files:
            t = ks._read(f.path)
            t = t.drop_columns(["run_id"])
            cols = [c for c in t.column_names if c != "key"]
            labels += [partition + row for row in zip(*[t[c].to_pylist() for c in cols])]
            keys += t["key"].to_pylist()
    assert len(set(labels)) == len(labels), "a row is stored twice"
    return dict(zip(labels, keys))


def stored_samples(root) -> list[tuple]:
    """The committed samples rows, sorted, minus run_id."""
    from store.reader import KeyStore

    t = KeyStore(str(root)).samples()
    cols = [c for c in t.column_names if c != "run_id"]
    return sorted(zip(*[t[c].to_pylist() for c in cols]))


def assert_same_rows(got: dict, want: dict, atol: float = 1e-5) -> None:
    """Two stores hold the same rows: every label exactly, keys equal up to float noise of batching
    (other samples pad a batch differently; a padded batch matches single runs within 1e-5)."""
    assert got.keys() == want.keys()
    worst = max((float(np.abs(np.frombuffer(got[k], "<f4") - np.frombuffer(want[k], "<f4")).max()) for k in got),
                default=0.0)
    assert worst <= atol, f"keys differ by up to {worst}"
