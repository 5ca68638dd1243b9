"""Stored keys against the model's own numbers: its cache (post-RoPE), its k_proj (pre-RoPE), and
the positions it filled with vision features. Everything runs through `ingest` into a real store."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch

from ingest.benchmarks import open_benchmark
from ingest.harness import prepare, resolve
from ingest.models import load_model
from ingest.run import ingest
from store import codec

LIMIT = 5


@functools.cache
def _model(name: str, dtype: str | None = None):
    return load_model(name, device="cpu", dtype=dtype)


def _items(limit=LIMIT):
    return [it for _, it in zip(range(limit), open_benchmark("sample"))]


def _stored(root, *, layer, rope, modality=None):
    """{(sample_id, position): float32 key} plus labels, read straight from the Parquet files."""
    dataset = ds.dataset(f"{root}/keys", format="parquet", partitioning="hive")
    flt = (ds.field("layer") == layer) & (ds.field("rope") == rope)
    if modality:
        flt &= ds.field("modality") == modality
    t = dataset.to_table(filter=flt)
    dtype = t["dtype"][0].as_py() if t.num_rows else "float32"
    x = codec.decode(t["key"], dtype)
    keys = {(s, p): x[i] for i, (s, p) in enumerate(zip(t["sample_id"].to_pylist(), t["position"].to_pylist()))}
    return keys, t, dtype


def _processed(lm, item):
    """The processor's inputs for one item, as ingest builds them (default harness profile)."""
    config = resolve("lmms-eval", lm.model_type)
    prompt, images = prepare(item, lm, config)
    return lm.processor(text=[prompt.text], images=images, return_tensors="pt", **config.processor_kwargs())


def _forward_with_layer_inputs(lm, inputs: dict, **forward_kwargs):
    """The model's own forward on ``inputs``, and what each decoder layer received.

    Layer inputs are read by pre-hooks (hidden_states as passed, which for Qwen3-VL already include
    the deepstack visual features added between layers), so a k_proj / q_proj oracle sees exactly them.
    """
    layer_inputs = {}

    def keep(i):
        def hook(module, args, kwargs):
            layer_inputs[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True) for i, layer in enumerate(lm.layers)]
    try:
        with torch.no_grad():
            out = lm.model(**inputs, **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
    return out, layer_inputs


def _single_forward(lm, item):
    """The model's own forward on one sample: its cache, and what each decoder layer received."""
    inputs = {k: (v.to(lm.dtype) if v.is_floating_point() else v) for k, v in _processed(lm, item).items()}
    out, layer_inputs = _forward_with_layer_inputs(lm, inputs, use_cache=True)
    out.layer_inputs = layer_inputs
    return inputs, out


@pytest.mark.parametrize(("name", "dtype"), [("tiny:llava", None), ("tiny:qwen2.5-vl", None),
                                        ("tiny:qwen2-vl", None), ("tiny:llava-next", None),
                                        ("tiny:qwen3-vl", None),
                                        ("tiny:llava", "float16"), ("tiny:qwen2.5-vl", "bfloat16")])
@pytest.mark.slow
def test_post_rope_keys_equal_cache_and_pre_rope_equal_k_proj(tmp_path, name, dtype):
    lm = _model(name, dtype)
    ingest(name, "sample", str(tmp_path), layers="0,2", keys="both", tokens="all", batch_size=1,
           limit=3, dtype=dtype, progress=False)
    stored = {}
    for layer in (0, 2):
        post, _, stored_dtype = _stored(tmp_path, layer=layer, rope="post")
        pre, _, _ = _stored(tmp_path, layer=layer, rope="pre")
        stored[layer] = (post, pre)
        assert stored_dtype == {None: "float32", "float16": "float16", "bfloat16": "bfloat16"}[dtype]
    for item in _items(3):
        inputs, out = _single_forward(lm, item)
        n_tok = inputs["input_ids"].shape[1]
        for layer, (post, pre) in stored.items():
            cache = out.cache.layers[layer].keys[0].transpose(0, 1).reshape(n_tok, -1).float().numpy()
            with torch.no_grad():
                normed = lm.layers[layer].input_layernorm(out.layer_inputs[layer])
                attn = lm.layers[layer].self_attn
                k_proj = attn.k_proj(normed)
                if getattr(attn, "k_norm", None) is not None:  # Qwen3-VL: the pre-RoPE key is k_norm(k_proj)
                    k_proj = attn.k_norm(k_proj.view(*k_proj.shape[:-1], -1, attn.head_dim)).flatten(-2)
                k_proj = k_proj[0].float().numpy()
            got_post = np.stack([post[(item.sample_id, p)] for p in range(n_tok)])
            got_pre = np.stack([pre[(item.sample_id, p)] for p in range(n_tok)])
            assert np.abs(got_post - cache).max() == 0.0
            assert np.abs(got_pre - k_proj).max() == 0.0
            # pre and post differ (RoPE did something) except at position 0 where it is the identity
            assert np.abs(got_post[1:] - got_pre[1:]).max() > 0


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2.5-vl", "tiny:qwen2-vl", "tiny:llava-next",
                                  "tiny:qwen3-vl"])
@pytest.mark.slow
def test_image_labels_are_exactly_the_vision_filled_positions(tmp_path, name):
    lm = _model(name)
    ingest(name, "sample", str(tmp_path), layers="1", tokens="all", batch_size=2, limit=4, progress=False)
    _, table, _ = _stored(tmp_path, layer=1, rope="post")
    decoder = lm.model.get_decoder()
    for item in _items(4):
        seen = {}

        def grab(module, args, kwargs, seen=seen):
            seen["embeds"] = kwargs["inputs_embeds"]

        handle = decoder.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            inputs, _ = _single_forward(lm, item)
        finally:
            handle.remove()
        plain = lm.model.get_input_embeddings()(inputs["input_ids"])
        filled = set(np.flatnonzero((seen["embeds"][0] != plain[0]).any(-1).numpy()).tolist())
        assert filled, "the model filled no position with vision features"
        mine = table.filter(ds.field("sample_id") == item.sample_id)
        labelled = {p for p, m in zip(mine["position"].to_pylist(), mine["modality"].to_pylist()) if m == "image"}
        assert labelled == filled
        # every stored token is labelled and padding never appears: positions are 0..T-1 exactly
        assert sorted(mine["position"].to_pylist()) == list(range(inputs["input_ids"].shape[1]))


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2.5-vl"])
@pytest.mark.slow
def test_padded_batch_of_four_equals_four_single_runs(tmp_path, name):
    lengths = []
    for item in _items(4):
        lm = _model(name)
        inputs, _ = _single_forward(lm, item)
        lengths.append(inputs["input_ids"].shape[1])
    assert len(set(lengths)) > 1, "the test needs samples of different lengths to exercise padding"
    ingest(name, "sample", str(tmp_path / "batched"), layers="1,3", keys="both", tokens="all",
           batch_size=4, limit=4, progress=False)
    ingest(name, "sample", str(tmp_path / "single"), layers="1,3", keys="both", tokens="all",
           batch_size=1, limit=4, progress=False)
    for layer in (1, 3):
        for rope in ("pre", "post"):
            a, ta, _ = _stored(tmp_path / "batched", layer=layer, rope=rope)
            b, tb, _ = _stored(tmp_path / "single", layer=layer, rope=rope)
            assert a.keys() == b.keys() and len(a) == sum(lengths)
            diff = max(np.abs(a[k] - b[k]).max() for k in a)
            assert diff <= 1e-5
            if rope == "post" and name.startswith("tiny:qwen"):
                thw_a = sorted(zip(ta["sample_id"].to_pylist(), ta["position"].to_pylist(),
                                   ta["rope_t"].to_pylist(), ta["rope_h"].to_pylist(), ta["rope_w"].to_pylist()))
                thw_b = sorted(zip(tb["sample_id"].to_pylist(), tb["position"].to_pylist(),
                                   tb["rope_t"].to_pylist(), tb["rope_h"].to_pylist(), tb["rope_w"].to_pylist()))
                assert thw_a == thw_b
                # M-RoPE: image tokens spread over h/w, so some differ from the temporal index
                assert any(h != w for _, _, _, h, w in thw_a)


def test_forward_stops_after_the_last_captured_layer():
    from ingest.capture import KeyCapture

    lm = _model("tiny:llava")
    item = _items(1)[0]
    inputs = _processed(lm, item)
    ran = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(lm.layers)]
    try:
        n = inputs["input_ids"].shape[1]
        with KeyCapture(lm, [1], ropes=("post",)) as cap:
            got = cap.run(dict(inputs), np.zeros(n, int), np.arange(n))
    finally:
        for h in handles:
            h.remove()
    assert ran == [0]  # layer 1 raised inside its attention: layers 1..3 never finished
    assert got.keys[(1, "post")].shape == (n, lm.key_dim)


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2.5-vl"])
def test_circular_copies_have_their_originals_image_keys(name):
    """Why ingest stores no image keys for CircularEval copies: images precede the rotated options,
    so under causal attention the copy's image keys are the original's."""
    from ingest.capture import KeyCapture

    lm = _model(name)
    items = {it.sample_id: it for it in open_benchmark("sample")}
    copy = next(it for it in items.values() if it.circular_of)
    original = items[copy.circular_of]
    got = []
    for item in (original, copy):
        inputs = _processed(lm, item)
        image_pos = np.flatnonzero(inputs["input_ids"][0].numpy() == lm.image_token_id)
        with KeyCapture(lm, [1, 3]) as cap:
            keys = cap.run(dict(inputs), np.zeros(len(image_pos), int), image_pos).keys
        got.append((image_pos, keys))
    assert np.array_equal(got[0][0], got[1][0]) and copy.question == original.question
    for k in got[0][1]:
        np.testing.assert_allclose(got[0][1][k], got[1][1][k], rtol=0, atol=1e-6)
