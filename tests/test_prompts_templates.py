"""The structure of keygap's prompts: spans, image placeholders, segments, template ids and refusals.

Whether the text is the harnesses' own is tested against their code in test_prompts_lmms_eval.py and
test_prompts_vlmevalkit.py; these tests check what keygap adds on top: every character's segment.
"""

from __future__ import annotations

import dataclasses

import pytest

from ingest.benchmarks import BenchmarkError, open_benchmark
from ingest.harness import HarnessError, check_chat_template, resolve
from ingest.models import load_model
from ingest.prompts import HARNESSES, IMAGE_PLACEHOLDER, KINDS, SEGMENTS, _Text, build_prompt

MODEL_TYPES = ("llava", "qwen2_vl", "qwen2_5_vl")


def _all_items():
    items = list(open_benchmark("sample")) + list(open_benchmark("sample-mmmu"))
    english = dataclasses.replace(items[0], prompt_style="mmbench-en", sample_id="en-0",
                                  question="What is the main building?", hint=None,
                                  cells={"hint": None, "A": "A pagoda", "B": "A tent"})
    return items + [english]


ITEMS = _all_items()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("harness", HARNESSES)
def test_spans_cover_the_text_and_images_are_exactly_the_placeholders(model_type, harness):
    placeholder = IMAGE_PLACEHOLDER[KINDS[model_type]]
    for item in ITEMS:
        prompt = build_prompt(item, model_type, harness)
        position = 0
        for start, end, segment in prompt.spans:
            assert start == position and end > start and segment in SEGMENTS
            position = end
        assert position == len(prompt.text)
        image_spans = [(s, e) for s, e, seg in prompt.spans if seg == "image"]
        assert [(s, e) for s, e, _ in prompt.image_spans] == image_spans
        assert all(0 <= k < len(item.images) for _, _, k in prompt.image_spans)
        assert all(prompt.text[s:e] == placeholder for s, e in image_spans)
        assert prompt.text.count(placeholder) == len(image_spans)
        if model_type != "llava":
            block = "<|vision_start|><|image_pad|><|vision_end|>"
            assert prompt.text.count(block) == len(image_spans)
            specials = [prompt.text[s:e] for s, e, seg in prompt.spans if seg == "special"]
            assert specials == ["<|vision_start|>", "<|vision_end|>"] * len(image_spans)


def test_segments_hold_the_item_parts():
    item = next(i for i in ITEMS if i.sample_id == "0")  # has a hint, four options
    for model_type in MODEL_TYPES:
        for harness in HARNESSES:
            prompt = build_prompt(item, model_type, harness)
            by_segment: dict[str, str] = {}
            for start, end, segment in prompt.spans:
                by_segment[segment] = by_segment.get(segment, "") + prompt.text[start:end]
            assert item.hint in by_segment["hint"]
            assert item.question in by_segment["question"]
            assert item.question not in by_segment["hint"]
            assert all(text in by_segment["options"] for text in item.options.values())
            assert by_segment["instruction"].strip()
            assert "ASSISTANT" in by_segment["assistant"] or "assistant" in by_segment["assistant"]
            if model_type != "llava":
                assert by_segment["system"] == "You are a helpful assistant."
            elif harness == "lmms-eval":
                assert "system" not in by_segment  # llava-1.5-hf's chat template has no system text
            else:
                assert by_segment["system"].startswith("A chat between")
            assert prompt.segment_at(prompt.text.index(item.question)) == "question"


def test_mmmu_question_pieces_keep_their_segments_when_split_at_the_images():
    item = next(i for i in ITEMS if i.sample_id == "validation_Math_15")  # <image 2> ... <image 1>
    prompt = build_prompt(item, "qwen2_5_vl", "lmms-eval")
    assert "<image" not in prompt.text  # lmms-eval's chat path removes the placeholders
    question_text = "".join(prompt.text[s:e] for s, e, seg in prompt.spans if seg == "question")
    assert "the digit in" in question_text and "and the digit in" in question_text
    # images in order of k at the placeholders' places, not in order of mention
    assert [k for _, _, k in prompt.image_spans] == [0, 1]


def test_template_ids():
    cn, mmmu = ITEMS[0], next(i for i in ITEMS if i.prompt_style == "mmmu")
    assert build_prompt(cn, "llava").template_id == "lmms-eval/llava-1.5/mmbench-cn"
    assert build_prompt(cn, "qwen2_vl", "vlmevalkit").template_id == "vlmevalkit/qwen2-vl/mmbench-cn"
    assert build_prompt(mmmu, "llava", "lmms-eval-simple").template_id == "lmms-eval-simple/llava-1.5/mmmu"
    assert build_prompt(ITEMS[-1], "qwen3_vl").template_id == "lmms-eval/qwen2.5-vl/mmbench-en"


def test_unknown_model_type_or_harness_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="unknown model type 'blip'; choose one of llava, llava_next"):
        build_prompt(ITEMS[0], "blip")
    with pytest.raises(ValueError, match="unknown harness 'opencompass'; choose one of lmms-eval, "
                                         "lmms-eval-simple, vlmevalkit"):
        build_prompt(ITEMS[0], "llava", "opencompass")
    with pytest.raises(HarnessError, match="--harness 'opencompass': use one of lmms-eval"):
        resolve("opencompass", "llava")


def test_placeholder_inside_the_question_is_refused():
    bad = dataclasses.replace(ITEMS[0], question="Look at <image> again: what is it?")
    with pytest.raises(BenchmarkError, match="item 0: its text contains '<image>'"):
        build_prompt(bad, "llava", "vlmevalkit")
    # lmms-eval's simple Qwen classes delete "<image>" from the text, as the harness does
    assert "<image>" not in build_prompt(bad, "qwen2_5_vl", "lmms-eval-simple").text
    with pytest.raises(BenchmarkError, match="<\\|image_pad\\|>"):
        build_prompt(dataclasses.replace(ITEMS[0], cells={**ITEMS[0].cells, "hint": "<|image_pad|>"}),
                     "qwen2_5_vl")


def test_labelled_text_operations_equal_the_string_ones():
    pieces = [("hint", "  a<x>b "), ("question", "c<x><x>d\n"), ("options", "<x> e  ")]
    text = _Text.of(*pieces)
    plain = "".join(t for _, t in pieces)
    assert str(text.replace("<x>", "<y>")) == plain.replace("<x>", "<y>")
    assert [str(p) for p in text.split("<x>")] == plain.split("<x>")
    assert str(text.strip()) == plain.strip() and str(text.rstrip()) == plain.rstrip()
    assert str(text.rstrip(" e")) == plain.rstrip(" e")
    # every character keeps the segment it came from
    assert text.split("<x>")[1].runs() == [("hint", "b "), ("question", "c")]
    assert text.strip().runs()[0] == ("hint", "a<x>b ")
    assert text.replace("<x>", "#").runs()[-1] == ("options", "# e  ")


def test_a_checkpoint_whose_chat_template_differs_is_refused():
    lm = load_model("tiny:qwen2.5-vl", device="cpu")
    config = resolve("vlmevalkit", "qwen2_5_vl")
    prompt = build_prompt(ITEMS[0], "qwen2_5_vl", "vlmevalkit")
    check_chat_template(prompt, lm, config)  # the published template renders keygap's text
    saved = lm.processor.chat_template
    lm.processor.chat_template = saved.replace("You are a helpful assistant.", "You are a cat.")
    try:
        with pytest.raises(HarnessError, match=r"tiny:qwen2\.5-vl: its processor's chat template renders the "
                                               r"vlmevalkit prompt differently .*from character 29: 'cat"):
            check_chat_template(prompt, lm, config)
    finally:
        lm.processor.chat_template = saved
    # lmms-eval's simple LLaVA class uses the tokenizer's own template when it has one
    llava = load_model("tiny:llava", device="cpu")
    simple = build_prompt(ITEMS[0], "llava", "lmms-eval-simple")
    llava.tokenizer.chat_template = "{{ messages[0]['content'] }}"
    try:
        with pytest.raises(HarnessError, match="its tokenizer's chat template renders"):
            check_chat_template(simple, llava, resolve("lmms-eval-simple", "llava"))
    finally:
        llava.tokenizer.chat_template = None
