"""Stored queries and attention allocation against the model's own numbers: its eager attention weights
(``output_attentions``), its q_proj, and the same run under sdpa. Everything runs through `ingest` into a
real store; the oracle sums the model's weights over positions it groups itself from the stored labels."""
from __future__ import annotations

import functools

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from test_ingest_capture import _forward_with_layer_inputs, _processed

from ingest.benchmarks import open_benchmark
from ingest.models import load_model
from ingest.run import ingest
from store import codec
from store.reader import KeyStore

FAMILIES = ["tiny:llava", "tiny:qwen2-vl", "tiny:qwen2.5-vl", "tiny:llava-next", "tiny:qwen3-vl"]
LIMIT = 3


#: random tiny weights attend almost uniformly (mass ~ token share to 1e-4), which would let a wrong
#: recipe pass a 1e-5 check; queries scaled up make each head's attention sharp and far from uniform
SHARPEN = 12.0


@functools.cache
def _loaded(name: str):
    lm = load_model(name, device="cpu")
    with torch.no_grad():
        for layer in lm.layers:
            attn = layer.self_attn
            norm = getattr(attn, "q_norm", None)  # Qwen3-VL normalises q: scale after the norm
            for param in ([norm.weight] if norm is not None else [attn.q_proj.weight, attn.q_proj.bias]):
                if param is not None:
                    param.mul_(SHARPEN)
    return lm


@functools.cache
def _plain(name: str):
    return load_model(name, device="cpu")


def _model(name: str, attn: str, sharpen: bool = True):
    """The model (built once per process) switched to the attention implementation ``attn``."""
    lm = _loaded(name) if sharpen else _plain(name)
    lm.model.set_attn_implementation(attn)
    return lm


def _table(root, tree: str) -> dict:
    t = ds.dataset(f"{root}/{tree}", format="parquet", partitioning="hive").to_table()
    return {name: t[name].to_pylist() for name in t.column_names} | {"_table": t}


def _eager_forward(lm, item):
    """The model's own eager attention weights of one sample, and each decoder layer's input."""
    out, layer_inputs = _forward_with_layer_inputs(lm, _processed(lm, item), output_attentions=True, use_cache=False)
    return [a[0].double().numpy() for a in out.attentions], layer_inputs


def _groups_of(keys: dict, sample_id: str) -> dict[int, str]:
    """position -> key group, from the stored labels of every token (ingested with --tokens all)."""
    out = {}
    for s, p, m, seg, layer, rope in zip(keys["sample_id"], keys["position"], keys["modality"], keys["segment"],
                                         keys["layer"], keys["rope"]):
        if s == sample_id and layer == 0 and rope == "post":
            out[p] = "sink" if p == 0 else (seg if m == "text" else m)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_attention_mass_equals_the_models_eager_weights(tmp_path, name):
    lm = _model(name, "eager")
    ingest(lm, "sample", str(tmp_path), layers="all", keys="both", tokens="all", queries="text", attention=True,
           batch_size=2, limit=LIMIT, progress=False)
    keys, att, qs = _table(tmp_path, "keys"), _table(tmp_path, "attention"), _table(tmp_path, "queries")
    items = [it for _, it in zip(range(LIMIT), open_benchmark("sample"))]
    checked, far_from_uniform = 0, 0.0
    for item in items:
        weights, _ = _eager_forward(lm, item)
        groups = _groups_of(keys, item.sample_id)
        n = len(groups)
        last = n - 1
        text_queries = sorted({p for s, p, m, layer in zip(qs["sample_id"], qs["position"], qs["modality"], qs["layer"])
                               if s == item.sample_id and layer == 0 and m == "text" and p != last})
        assert len(text_queries) > 5
        names = sorted(set(groups.values()))
        member = np.zeros((n, len(names)))  # [positions, groups] 0/1
        member[np.arange(n), [names.index(groups[p]) for p in range(n)]] = 1
        visible = np.cumsum(member, axis=0)  # keys of each group at or before each position
        for layer, w in enumerate(weights):
            assert np.abs(np.triu(w, 1)).max() == 0  # the model's own causal mask: no weight on later keys
            for kind, queries in (("last", [last]), ("text", text_queries)):
                mass = (w[:, queries, :] @ member).mean(axis=1)  # [heads, groups]
                share = (visible[queries] / (np.array(queries)[:, None] + 1)).mean(axis=0)
                present = visible[queries].mean(axis=0) > 0
                for h in range(w.shape[0]):
                    got = {g: (m, s) for sid, lay, hh, k, g, m, s in zip(
                        att["sample_id"], att["layer"], att["head"], att["query"], att["group"], att["mass"],
                        att["token_share"]) if sid == item.sample_id and lay == layer and hh == h and k == kind}
                    assert sorted(got) == [g for g, ok in zip(names, present) if ok]
                    for g in got:
                        assert abs(got[g][0] - mass[h, names.index(g)]) <= 1e-5, (layer, kind, h, g)
                        assert abs(got[g][1] - share[names.index(g)]) <= 1e-12
                    assert abs(sum(m for m, _ in got.values()) - 1) <= 1e-5
                    checked += 1
                    far_from_uniform = max(far_from_uniform, np.abs(mass[h] - share).max())
    assert checked == LIMIT * lm.num_layers * 2 * lm.num_heads
    assert far_from_uniform > 0.05  # the check had teeth: attention was not just the token share


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_stored_queries_and_keys_give_the_models_attention(tmp_path, name):
    """softmax(q . k * scale) over the stored post-RoPE queries and keys is the model's eager attention, and
    the stored pre-RoPE queries are its q_proj output (after q_norm where the model has one)."""
    lm = _model(name, "eager")
    ingest(lm, "sample", str(tmp_path), layers="1,3", keys="both", tokens="all", queries="all-text",
           batch_size=2, limit=2, progress=False)
    ks = KeyStore(str(tmp_path))
    item = next(iter(open_benchmark("sample")))
    weights, layer_inputs = _eager_forward(lm, item)
    group = lm.num_heads // lm.num_kv_heads
    for layer in (1, 3):
        k = {}
        for modality in ("image", "text", "special"):
            sl = ks.load(lm.label, "sample", layer, modality, samples=[item.sample_id])
            k.update({int(p): x for p, x in zip(sl.position, sl.x)})
        K = np.stack([k[p] for p in range(len(k))]).reshape(len(k), lm.num_kv_heads, lm.head_dim).astype(np.float64)
        q_post = ks.load(lm.label, "sample", layer, "text", kind="query", samples=[item.sample_id])
        q_pre = ks.load(lm.label, "sample", layer, "text", kind="query", rope="pre", samples=[item.sample_id])
        assert len(q_post) > 10
        with torch.no_grad():
            attn = lm.layers[layer].self_attn
            normed = lm.layers[layer].input_layernorm(layer_inputs[layer])
            q_proj = attn.q_proj(normed)
            if getattr(attn, "q_norm", None) is not None:
                q_proj = attn.q_norm(q_proj.view(*q_proj.shape[:-1], -1, attn.head_dim)).flatten(-2)
            q_proj = q_proj[0].numpy()
        for p, x in zip(q_pre.position, q_pre.x):
            assert np.abs(x - q_proj[p]).max() == 0.0
        for p, x in zip(q_post.position, q_post.x):
            q = x.reshape(lm.num_heads, lm.head_dim).astype(np.float64)
            for h in range(lm.num_heads):
                logits = K[: p + 1, h // group] @ q[h] * attn.scaling
                probs = np.exp(logits - logits.max())
                probs /= probs.sum()
                assert np.abs(probs - weights[layer][h, p, : p + 1]).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_attention_under_sdpa_equals_eager(tmp_path, name):
    """The model as built: sdpa and eager round differently in every layer below the one measured, and
    sharpened queries would amplify that model-side rounding (to 2.6e-5 by the last Qwen3-VL layer)."""
    tables = {}
    for attn in ("eager", "sdpa"):
        ingest(_model(name, attn, sharpen=False), "sample", str(tmp_path / attn), layers="all", queries="text",
               attention=True, batch_size=2, limit=LIMIT, progress=False)
        t = ds.dataset(f"{tmp_path / attn}/attention", format="parquet", partitioning="hive").to_table()
        rows = zip(t["sample_id"].to_pylist(), t["layer"].to_pylist(), t["head"].to_pylist(), t["query"].to_pylist(),
                   t["group"].to_pylist(), t["mass"].to_pylist(), t["keys"].to_pylist())
        tables[attn] = {r[:5]: r[5:] for r in rows}
    assert tables["eager"].keys() == tables["sdpa"].keys() and len(tables["eager"]) > 100
    diff = max(abs(tables["eager"][k][0] - tables["sdpa"][k][0]) for k in tables["eager"])
    assert diff <= 1e-5
    assert all(tables["eager"][k][1] == tables["sdpa"][k][1] for k in tables["eager"])


def test_head_layout_is_in_the_run_manifest(tmp_path):
    lm = _model("tiny:qwen2.5-vl", "sdpa")
    ingest(lm, "sample", str(tmp_path), layers="1", queries="last", batch_size=2, limit=2, progress=False)
    (run,) = KeyStore(str(tmp_path)).runs()
    config = lm.model.config.get_text_config()
    assert run["num_heads"] == config.num_attention_heads == 4
    assert run["num_kv_heads"] == config.num_key_value_heads == 2
    assert run["head_dim"] == config.hidden_size // config.num_attention_heads
    assert run["kv_head_of_query_head"] == [0, 0, 1, 1]
    assert run["attention_scaling"] == lm.layers[1].self_attn.scaling == run["head_dim"] ** -0.5
    assert run["settings"]["queries"] == "last" and "attention" not in run["settings"]
    # --queries last: exactly one query (the last prompt token) per sample and layer, in heads * head_dim
    q = _table(tmp_path, "queries")
    assert len(q["position"]) == 2
    assert len(q["query"][0]) == 4 * run["head_dim"] * 4  # float32 bytes
    counts = KeyStore(str(tmp_path)).samples(["sample_id", "n_tokens"]).to_pylist()
    n_tokens = {r["sample_id"]: r["n_tokens"] for r in counts}
    assert sorted(zip(q["sample_id"], q["position"])) == sorted((s, n - 1) for s, n in n_tokens.items())
    assert codec.decode(q["_table"]["query"], "float32").shape == (2, 4 * run["head_dim"])
