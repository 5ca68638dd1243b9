"""Prompt templates against independent renderings of what each harness sends.

The oracles below are the harnesses' own formatting code transcribed line by line (string
concatenation as they do it, not keygap's piecewise builder) and the published chat templates
rendered with jinja2, as transformers' apply_chat_template renders them.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import string

import jinja2
import pytest

from ingest.benchmarks import BenchmarkError, open_benchmark
from ingest.prompts import FAMILIES, HARNESSES, IMAGE_PLACEHOLDER, SEGMENTS, build_prompt

# lmms-eval models/llava_hf.py, used when the tokenizer has no chat template (llava-1.5-7b-hf)
VICUNA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.index0 == 0 %}A chat between a curious user and an "
    "artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers "
    "to the user's questions. USER: {{ message['content'] }} {% elif message['role'] == 'user' %}"
    "USER: {{ message['content'] }} {% else %} ASSISTANT: {{ message['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# Qwen2-VL-Instruct / Qwen2.5-VL-Instruct chat_template
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _render(template: str, messages: list, **kwargs) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers does
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            eos_token="</s>", **kwargs)


def _row(item) -> dict:
    """The item as the harness's `doc` / `line`: MMBench letters, MMMU options string."""
    doc = {"question": item.question, "hint": item.hint if item.hint is not None else float("nan")}
    doc.update(item.options)
    doc["options"] = repr(list(item.options.values()))
    doc["question_type"] = item.extra.get("question_type", "multiple-choice")
    return doc


def _notna(value) -> bool:
    return not (isinstance(value, float) and value != value)


# --- lmms-eval, transcribed (tasks/mmbench/cn_utils.py + mmbench_evals.py, tasks/mmmu/utils.py)

def lmms_mmbench_doc_to_text(doc, sys_prompt, post_prompt):
    options = {c: doc[c] for c in set(doc) & set("ABCDE") if doc[c]}
    options_prompt = f"{sys_prompt}\n"
    for key, item in sorted(options.items()):
        options_prompt += f"{key}. {item}\n"
    options_prompt = options_prompt.rstrip("\n")
    if _notna(doc["hint"]):
        query = f"{doc['hint']} {doc['question']} {options_prompt}"
    else:
        query = f"{doc['question']} {options_prompt}"
    return f"{query}\n{post_prompt}"


def lmms_mmmu_doc_to_text(doc):
    question = doc["question"]
    if doc["question_type"] == "multiple-choice":
        options = ast.literal_eval(doc["options"])
        letters = [chr(ord("A") + i) for i in range(len(options))]
        parsed = "\n".join(f"{a}. {o}" for a, o in zip(letters, options))
        return f"{question}\n{parsed}\n\nAnswer with the option's letter from the given choices directly."
    return f"{question}\n\nAnswer the question using a single word or phrase."


def lmms_text(item) -> str:
    doc = _row(item)
    if item.prompt_style == "mmmu":
        return lmms_mmmu_doc_to_text(doc)
    if item.prompt_style == "mmbench-cn":
        return lmms_mmbench_doc_to_text(doc, "有如下几个选项：", "\n请直接使用所提供的选项字母作为答案回答。")
    return lmms_mmbench_doc_to_text(doc, "There are several options:",
                                    "\nAnswer with the option's letter from the given choices directly.")


def lmms_llava(item) -> str:
    context = lmms_text(item)
    if "<image>" not in context:
        context = f"{' '.join(['<image>'] * len(item.images))}\n{context}"
    return _render(VICUNA_CHAT_TEMPLATE, [{"role": "user", "content": context}])


def lmms_qwen(item) -> str:
    context = lmms_text(item).replace("<image>", "")
    content = [{"type": "image", "image": "x"} for _ in item.images] + [{"type": "text", "text": context}]
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": content}]
    return _render(QWEN2_VL_CHAT_TEMPLATE, messages)


# --- VLMEvalKit, transcribed (vlm/llava/llava.py, vlm/qwen2_vl/prompt.py, Qwen2VLChat)

def cn_string(s):
    return bool(re.search("[\u4e00-\u9fff]", s))


def vlmeval_llava(item) -> str:
    line = _row(item)
    question = line["question"]
    hint = line["hint"] if _notna(line["hint"]) else None
    if hint is not None:
        question = hint + "\n" + question
    options = {c: line[c] for c in string.ascii_uppercase if c in line and _notna(line[c])}
    for key, value in options.items():
        question += f"\n{key}. {value}"
    prompt = question
    if len(options):
        prompt += "\n请直接回答选项字母。" if cn_string(prompt) else \
            "\nAnswer with the option's letter from the given choices directly."
    else:
        prompt += "\n请直接回答问题。" if cn_string(prompt) else "\nAnswer the question directly."
    content = "".join(" <image> " for _ in item.images) + prompt  # concat_tilist
    system = ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions. ")
    return system + "USER: " + content + " ASSISTANT: "


def vlmeval_qwen(item) -> str:
    line = _row(item)
    options = {c: line[c] for c in string.ascii_uppercase if c in line and _notna(line[c])}
    options_prompt = "Options:\n"
    for key, value in options.items():
        options_prompt += f"{key}. {value}\n"
    hint = line["hint"] if _notna(line["hint"]) else None
    prompt = ""
    if hint is not None:
        prompt += f"Hint: {hint}\n"
    prompt += f"Question: {line['question']}\n"
    if len(options):
        prompt += options_prompt
        if item.prompt_style == "mmmu":
            prompt += "Please select the correct answer from the options above. \n"
        else:
            prompt += "请直接回答选项字母。" if cn_string(prompt) else \
                "Please select the correct answer from the options above."
    prompt = prompt.rstrip()
    content = [{"type": "image", "image": "x"} for _ in item.images] + [{"type": "text", "text": prompt}]
    return _render(QWEN2_VL_CHAT_TEMPLATE, [{"role": "user", "content": content}])


ORACLES = {("llava", "lmms-eval"): lmms_llava, ("qwen2-vl", "lmms-eval"): lmms_qwen,
           ("llava", "vlmevalkit"): vlmeval_llava, ("qwen2-vl", "vlmevalkit"): vlmeval_qwen}


def _all_items():
    items = list(open_benchmark("sample")) + list(open_benchmark("sample-mmmu"))
    english = dataclasses.replace(items[0], prompt_style="mmbench-en", sample_id="en-0",
                                  question="What is the main building?", hint=None,
                                  options={"A": "A pagoda", "B": "A tent"})
    return items + [english]


ITEMS = _all_items()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("harness", HARNESSES)
def test_prompt_text_equals_the_harness_rendering(family, harness):
    oracle = ORACLES[(family, harness)]
    for item in ITEMS:
        assert build_prompt(item, family, harness).text == oracle(item), item.sample_id


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("harness", HARNESSES)
def test_spans_cover_the_text_and_images_are_exactly_the_placeholders(family, harness):
    placeholder = IMAGE_PLACEHOLDER[family]
    for item in ITEMS:
        prompt = build_prompt(item, family, harness)
        position = 0
        for start, end, segment in prompt.spans:
            assert start == position and end > start and segment in SEGMENTS
            position = end
        assert position == len(prompt.text)
        image_spans = [(s, e) for s, e, seg in prompt.spans if seg == "image"]
        assert [(s, e) for s, e, _ in prompt.image_spans] == image_spans
        assert [k for _, _, k in prompt.image_spans] == list(range(len(item.images)))
        assert all(prompt.text[s:e] == placeholder for s, e in image_spans)
        assert prompt.text.count(placeholder) == len(item.images)
        if family == "qwen2-vl":
            block = "<|vision_start|><|image_pad|><|vision_end|>"
            assert prompt.text.count(block) == len(item.images)
            specials = [prompt.text[s:e] for s, e, seg in prompt.spans if seg == "special"]
            assert specials == ["<|vision_start|>", "<|vision_end|>"] * len(item.images)


def test_segments_hold_the_item_parts():
    item = next(i for i in ITEMS if i.sample_id == "0")  # has a hint, four options
    for family in FAMILIES:
        for harness in HARNESSES:
            prompt = build_prompt(item, family, harness)
            by_segment: dict[str, str] = {}
            for start, end, segment in prompt.spans:
                by_segment[segment] = by_segment.get(segment, "") + prompt.text[start:end]
            assert item.hint in by_segment["hint"]
            assert item.question in by_segment["question"]
            assert item.question not in by_segment["hint"]
            assert all(text in by_segment["options"] for text in item.options.values())
            assert "选项字母" in by_segment["instruction"]
            assert "ASSISTANT" in by_segment["assistant"] or "assistant" in by_segment["assistant"]
            system = "You are a helpful assistant." if family == "qwen2-vl" else "A chat between"
            assert by_segment["system"].startswith(system)
            assert prompt.segment_at(prompt.text.index(item.question)) == "question"


def test_template_ids():
    cn, mmmu = ITEMS[0], next(i for i in ITEMS if i.prompt_style == "mmmu")
    assert build_prompt(cn, "llava").template_id == "lmms-eval/llava-1.5/mmbench-cn"
    assert build_prompt(cn, "qwen2-vl", "vlmevalkit").template_id == "vlmevalkit/qwen2-vl/mmbench-cn"
    assert build_prompt(mmmu, "llava", "vlmevalkit").template_id == "vlmevalkit/llava-1.5/mmmu"
    assert build_prompt(ITEMS[-1], "qwen2-vl").template_id == "lmms-eval/qwen2-vl/mmbench-en"


def test_mmmu_keeps_image_k_text_and_puts_images_first():
    item = next(i for i in ITEMS if i.sample_id == "validation_Math_15")
    for family in FAMILIES:
        for harness in HARNESSES:
            prompt = build_prompt(item, family, harness)
            assert "<image 2>" in prompt.text and "<image 1>" in prompt.text
            last_image_end = prompt.image_spans[-1][1]
            assert last_image_end < prompt.text.index("<image 2>")


def test_unknown_family_or_harness_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="unknown model family 'blip'; choose one of llava, qwen2-vl"):
        build_prompt(ITEMS[0], "blip")
    with pytest.raises(ValueError, match="unknown harness 'opencompass'; choose one of lmms-eval, vlmevalkit"):
        build_prompt(ITEMS[0], "llava", "opencompass")


def test_placeholder_inside_the_question_is_refused():
    bad = dataclasses.replace(ITEMS[0], question="Look at <image> again: what is it?")
    with pytest.raises(BenchmarkError, match="item 0: its text contains '<image>'"):
        build_prompt(bad, "llava", "vlmevalkit")
    # lmms-eval's Qwen path deletes "<image>" from the text, as the harness does
    assert "<image>" not in build_prompt(bad, "qwen2-vl").text
    with pytest.raises(BenchmarkError, match="<\\|image_pad\\|>"):
        build_prompt(dataclasses.replace(ITEMS[0], hint="<|image_pad|>"), "qwen2-vl")
