"""Token labels against independent facts: the prompt's own segment text, the processor's per-image
token counts, and the token policy's promises."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from ingest.benchmarks import open_benchmark
from ingest.harness import prepare, resolve
from ingest.labels import TokenKinds, expand_text, label_sample
from ingest.models import load_model
from ingest.prompts import HARNESSES
from ingest.selection import TokenPolicy, parse_tokens, select_positions


@functools.cache
def _model(name):
    return load_model(name, device="cpu")


def _label(lm, item, harness="lmms-eval"):
    config = resolve(harness, lm.model_type)
    prompt, images = prepare(item, lm, config)
    enc = lm.processor(text=[prompt.text], images=images, return_tensors="np",
                       return_text_replacement_offsets=True, **config.processor_kwargs())
    kinds = TokenKinds(lm.image_token_id, lm.video_token_id, lm.special_ids)
    toks = label_sample(enc["input_ids"][0], prompt.text, prompt.spans, prompt.image_spans,
                        enc["text_replacement_offsets"][0], lm.tokenizer, kinds)
    return prompt, images, enc, toks


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2.5-vl", "tiny:llava-next"])
@pytest.mark.parametrize("harness", HARNESSES)
def test_each_segment_decodes_back_to_its_prompt_text(name, harness):
    lm = _model(name)
    for item in list(open_benchmark("sample"))[:3]:
        prompt, _, _, toks = _label(lm, item, harness)
        assert lm.tokenizer.decode(toks.token_id.tolist(), skip_special_tokens=False).endswith(prompt.text[-20:])
        for seg in {s for _, _, s in prompt.spans} - {"image"}:
            want = "".join(prompt.text[a:b] for a, b, s in prompt.spans if s == seg)
            ids = toks.token_id[toks.segment == seg]
            # a space merged into the next segment's first word travels with the word
            assert lm.tokenizer.decode(ids.tolist()).strip() == want.strip(), (seg, harness)
        assert (toks.segment[toks.modality == "image"] == "image").all()
        if lm.family == "llava":
            assert toks.segment[0] == "special" and toks.modality[0] == "special"  # BOS


@pytest.mark.parametrize("name", ["tiny:llava", "tiny:qwen2-vl", "tiny:llava-next"])
def test_multi_image_items_get_each_image_its_own_contiguous_run(name):
    lm = _model(name)
    item = next(it for it in open_benchmark("sample-mmmu") if len(it.images) == 2)
    _, images, _, toks = _label(lm, item)
    # independent count: the processor on each image alone
    alone = []
    for img in images:
        ph = "<image>" if lm.family == "llava" else "<|vision_start|><|image_pad|><|vision_end|>"
        ids = lm.processor(text=[ph], images=[img], return_tensors="np",
                           **resolve("lmms-eval", lm.model_type).processor_kwargs())["input_ids"][0]
        alone.append(int((ids == lm.image_token_id).sum()))
    for k, count in enumerate(alone):
        pos = np.flatnonzero(toks.image_index == k)
        assert len(pos) == count and np.all(np.diff(pos) == 1)
    assert np.flatnonzero(toks.image_index == 0).max() < np.flatnonzero(toks.image_index == 1).min()
    assert (toks.image_index[toks.modality != "image"] == -1).all()


def test_expand_text_maps_replacements():
    text = "ab<x>cd<x>e"
    reps = [{"span": (2, 5), "replacement": "<y><y>"}, {"span": (7, 10), "replacement": "Z"}]
    out, table = expand_text(text, reps)
    assert out == "ab<y><y>cdZe"
    assert table.tolist() == [[2, 8, 2, 5], [10, 11, 7, 10]]


def test_token_policy_draws_by_sample_not_by_batch():
    lm = _model("tiny:llava")
    item = next(iter(open_benchmark("sample")))
    _, _, _, toks = _label(lm, item)
    policy = parse_tokens("8:8")
    a = select_positions(toks, policy, seed=3, sample_id=item.sample_id)
    b = select_positions(toks, policy, seed=3, sample_id=item.sample_id)
    c = select_positions(toks, policy, seed=4, sample_id=item.sample_id)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (toks.modality[a] == "image").sum() == 8 and (toks.modality[a] == "text").sum() == 8
    assert a[-1] == len(toks) - 1
    everything = select_positions(toks, TokenPolicy(None, None), seed=0, sample_id="x")
    assert np.array_equal(everything, np.arange(len(toks)))
    more_than_there = select_positions(toks, TokenPolicy(10_000, 10_000), seed=0, sample_id="x")
    assert np.array_equal(more_than_there, np.arange(len(toks))[toks.modality != "special"])
    no_image = select_positions(toks, policy, seed=3, sample_id=item.sample_id, store_image=False)
    assert np.array_equal(no_image, a[toks.modality[a] != "image"])  # same text draw without images
    assert parse_tokens("32").image == 32 and parse_tokens("all").keeps_all
    for bad in ("x", "1:2:3", "-1:4"):
        with pytest.raises(ValueError, match="is not understood"):
            parse_tokens(bad)
