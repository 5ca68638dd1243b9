"""Model loading: built-in tiny/random models, save_pretrained folders, and the unsupported cases."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ingest import tiny
from ingest.capture import KeyCapture, storage_dtype
from ingest.models import ModelError, load_model, resolve_dtype
from store.errors import KeygapError


def _keys(lm, text, image):
    inputs = lm.processor(text=[text], images=[image], return_tensors="pt")
    n = inputs["input_ids"].shape[1]
    with KeyCapture(lm, [1, 3], ropes=("pre", "post")) as cap:
        got = cap.run(dict(inputs), np.zeros(n, int), np.arange(n))
    return inputs["input_ids"], got


def _image(seed=0, size=(96, 140)):
    from PIL import Image

    return Image.fromarray((np.random.default_rng(seed).random((*size, 3)) * 255).astype("uint8"))


PROMPTS = {"llava": "USER: <image>\nWhat is it? ASSISTANT:",
           "qwen2-vl": "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What?<|im_end|>\n"}


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2.5-vl", "tiny:qwen2-vl", "tiny:llava-next",
                                  "tiny:qwen3-vl"])
@pytest.mark.slow
def test_tiny_model_is_deterministic_and_survives_save_pretrained(tmp_path, name):
    a = load_model(name, device="cpu")
    b = load_model(name, device="cpu")
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert a.num_layers == 4 and a.num_kv_heads == 2 and a.key_dim == 32
    a.model.save_pretrained(tmp_path)
    a.processor.save_pretrained(tmp_path)
    c = load_model(str(tmp_path), device="cpu")
    assert c.model_type == a.model_type and c.label == tmp_path.name
    ids_a, keys_a = _keys(a, PROMPTS[a.family], _image())
    ids_c, keys_c = _keys(c, PROMPTS[c.family], _image())
    assert torch.equal(ids_a, ids_c)
    for k in keys_a.keys:
        assert np.array_equal(keys_a.keys[k], keys_c.keys[k])


def test_tiny_image_token_counts_are_realistic_but_small():
    lm = load_model("tiny:llava", device="cpu")
    ids = lm.processor(text=[PROMPTS["llava"]], images=[_image()], return_tensors="pt")["input_ids"]
    assert int((ids == lm.image_token_id).sum()) == 64  # (112 / 14)^2, as 576 = (336 / 14)^2 in LLaVA-1.5
    q = load_model("tiny:qwen2.5-vl", device="cpu")
    small = q.processor(text=[PROMPTS["qwen2-vl"]], images=[_image(size=(60, 60))], return_tensors="pt")
    big = q.processor(text=[PROMPTS["qwen2-vl"]], images=[_image(size=(300, 200))], return_tensors="pt")
    n_small = int((small["input_ids"] == q.image_token_id).sum())
    n_big = int((big["input_ids"] == q.image_token_id).sum())
    assert n_small == int(small["image_grid_thw"].prod()) // 4  # prod(grid) / merge^2, as in Qwen2.5-VL
    assert 0 < n_small < n_big <= 16


def test_random_full_size_architectures_match_the_published_parameter_counts():
    llava, lp = tiny.build("random:llava-1.5-7b", device="meta")
    qwen, qp = tiny.build("random:qwen2.5-vl-7b", device="meta")
    # llava-hf/llava-1.5-7b-hf: 7,063,427,072 parameters; Qwen/Qwen2.5-VL-7B-Instruct: 8,292,166,656
    assert sum(p.numel() for p in llava.parameters()) == 7_063_427_072
    assert sum(p.numel() for p in qwen.parameters()) == 8_292_166_656
    assert llava.dtype == torch.float16 and qwen.dtype == torch.bfloat16
    assert lp.image_processor.crop_size["height"] == 336 and llava.config.image_seq_length == 576
    assert llava.config.image_token_index == lp.tokenizer.convert_tokens_to_ids("<image>")


def test_unknown_and_unsupported_models_give_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match=r"unknown built-in model 'tiny:gpt'.*supported: LLaVA-1\.5"):
        load_model("tiny:gpt", device="cpu")
    with pytest.raises(ModelError, match=r"neither a local folder nor in the Hugging Face cache.*hf download"):
        load_model("no-such-org/no-such-model-xyz", device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64,
                                                      "num_attention_heads": 4}))
    with pytest.raises(ModelError, match=r"model type 'llama'.*not supported; supported: LLaVA-1\.5"):
        load_model(str(tmp_path), device="cpu")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"holds no readable config\.json"):
        load_model(str(tmp_path / "bad"), device="cpu")
    with pytest.raises(ModelError, match="unknown device"):
        load_model("tiny:llava", device="tpu9")
    assert issubclass(ModelError, KeygapError)


def test_dtype_rules():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu, torch.float16) == torch.float32  # CPUs compute in float32
    assert resolve_dtype("auto", gpu, torch.bfloat16) == torch.bfloat16  # the checkpoint's half type
    assert resolve_dtype(None, gpu, "float16") == torch.float16
    assert resolve_dtype("fp16", cpu, None) == torch.float16
    with pytest.raises(ModelError, match="unknown dtype"):
        resolve_dtype("int4", cpu, None)
    assert storage_dtype(torch.float16) == "float16"
    assert storage_dtype(torch.bfloat16) == "bfloat16"
    assert storage_dtype(torch.float32) == "float32"
    assert storage_dtype(torch.float32, "float16") == "float16"


@pytest.mark.slow
def test_a_hub_id_already_in_the_local_cache_loads_offline(tmp_path):
    """A real Hugging Face cache layout (refs/main -> snapshots/<commit>), read in a fresh process
    whose HF_HUB_CACHE points at it, with the network switched off."""
    import subprocess
    import sys
    from pathlib import Path

    lm = load_model("tiny:qwen2.5-vl", device="cpu")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--keygap-test--tiny-qwen"
    snapshot = repo / "snapshots" / commit
    lm.model.save_pretrained(snapshot)
    lm.processor.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = ("from ingest.models import load_model\n"
              "lm = load_model('keygap-test/tiny-qwen', device='cpu')\n"
              "print(lm.label, lm.model_type, lm.num_layers)\n")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["keygap-test--tiny-qwen", "qwen2_5_vl", "4"]
