"""Per-head measures: a head's slice of the stored keys is the model's own k_proj output for that head, and
`keygap compare --heads` gives one row per head, equal to the measure run on that slice by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_ingest_attention import _eager_forward, _plain

from ingest.benchmarks import open_benchmark
from ingest.models import load_model
from ingest.run import ingest
from keygap_tui.analysis import AnalysisError
from keygap_tui.analysis.cli import main as analysis_main
from keygap_tui.analysis.heads import head_layout, parse_heads
from keygap_tui.analysis.sides import Side, load_side
from keygap_tui.stats import centroid_gap
from store.reader import KeyStore


def _mha_llava(folder):
    """tiny:llava with as many kv heads as query heads (multi-head attention, as in LLaVA-1.5-7B), saved as a
    local checkpoint folder (the built-in tiny models all use grouped-query attention)."""
    from ingest import tiny

    config, processor = tiny.build_config_and_processor("tiny:llava")
    config.text_config.num_key_value_heads = config.text_config.num_attention_heads
    config.dtype = torch.float32
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tiny.model_class(config)._from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return load_model(str(folder), device="cpu", dtype="float32")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llava-mha", "tiny:qwen2.5-vl"])  # MHA, GQA
def test_a_head_slice_is_the_models_own_k_proj_head(tmp_path, name):
    lm = _mha_llava(tmp_path / "model") if name == "llava-mha" else _plain(name)
    lm.model.set_attn_implementation("eager")
    tmp_path = tmp_path / "store"
    ingest(lm, "sample", str(tmp_path), layers="2", keys="pre", tokens="all", batch_size=2, limit=1, progress=False)
    ks = KeyStore(str(tmp_path))
    layout = head_layout(ks, lm.label)
    assert (layout.num_kv_heads, layout.head_dim) == (lm.num_kv_heads, lm.head_dim)
    assert (layout.num_heads, layout.num_kv_heads) == ((4, 4) if name == "llava-mha" else (4, 2))
    item = next(iter(open_benchmark("sample")))
    _, layer_inputs = _eager_forward(lm, item)
    with torch.no_grad():
        attn = lm.layers[2].self_attn
        k_proj = attn.k_proj(lm.layers[2].input_layernorm(layer_inputs[2]))[0]
        own = k_proj.view(k_proj.shape[0], lm.num_kv_heads, lm.head_dim).numpy()  # [T, kv, hd]
    checked = 0
    for modality in ("image", "text"):
        for head in range(lm.num_kv_heads):
            sl = load_side(ks, Side(lm.label, "sample", 2, modality, rope="pre", head=head), n=None, seed=0)
            assert sl.x.shape[1] == lm.head_dim
            assert np.array_equal(sl.x, own[sl.position, head])
            checked += len(sl.x)
    assert checked == sum(len(load_side(ks, Side(lm.label, "sample", 2, m, rope="pre"), n=None, seed=0).x)
                          for m in ("image", "text")) * lm.num_kv_heads


@pytest.mark.slow
def test_compare_heads_gives_a_row_per_head(tmp_path, capsys):
    lm = _plain("tiny:qwen2.5-vl")
    ingest(lm, "sample", str(tmp_path), layers="1", batch_size=2, limit=4, progress=False)
    ks = KeyStore(str(tmp_path))
    code = analysis_main(["--store", str(tmp_path), "compare", "--model", lm.label, "--layer", "1", "--heads", "all",
                          "--metrics", "centroid", "--permutations", "0", "--n", "all", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["head"] for r in rows] == [0, 1]
    for r in rows:
        image = ks.load(lm.label, "sample", 1, "image")
        text = ks.load(lm.label, "sample", 1, "text")
        cut = slice(r["head"] * lm.head_dim, (r["head"] + 1) * lm.head_dim)
        by_hand = centroid_gap(image.x[:, cut], text.x[:, cut])
        assert r["value"] == pytest.approx(by_hand.value, rel=1e-6)
    whole = analysis_main(["--store", str(tmp_path), "compare", "--model", lm.label, "--layer", "1", "--heads", "2",
                           "--metrics", "centroid"])
    assert whole == 2
    assert "head(s) 2 do not exist: this model has 2 kv heads (0..1)" in capsys.readouterr().err


def test_parse_heads():
    assert parse_heads(None, 4) is None
    assert parse_heads("all", 3) == [0, 1, 2]
    assert parse_heads("2,0,2", 4) == [0, 2]
    with pytest.raises(AnalysisError, match="must be 'all' or head indices"):
        parse_heads("first", 4)
    with pytest.raises(AnalysisError, match=r"head\(s\) 7 do not exist"):
        parse_heads("1,7", 4)
