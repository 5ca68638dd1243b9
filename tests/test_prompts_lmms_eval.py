"""keygap's lmms-eval profiles against lmms-eval 0.7.3's own code, item by item.

For every awkward fixture row (tests/harness_fixtures.py) in lmms-eval's own input format (the
lmms-lab Parquet files), each model family and both paths (the default chat classes and
``--force_simple``), lmms-eval's task code builds the messages, the model class's lines
(tests/lmms_eval_runner.py) turn them into the prompt and the images, and an image processor
configured as lmms-eval configures it turns those into input ids. keygap must produce the same
text, the same images pixel for pixel, in the same order, and the same input ids (hence the same
image token counts) - or skip the row where lmms-eval itself stops with an exception.
"""
from __future__ import annotations

import functools
import io

import harness_fixtures as fixtures
import lmms_eval_runner as lmms
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ingest.benchmarks import BenchmarkError, open_benchmark
from ingest.harness import LMMS_EVAL_VERSION, prepare, resolve

# lmms-eval's Qwen classes pass min/max_pixels to from_pretrained, which transformers now warns about
pytestmark = pytest.mark.filterwarnings("ignore:Passing `min_pixels` and `max_pixels`:FutureWarning")

# keygap model -> lmms-eval's --model name
MODELS = {"tiny:llava": "llava_hf", "tiny:qwen2.5-vl": "qwen2_5_vl", "tiny:qwen2-vl": "qwen2_vl"}
STYLES = ("mmbench-cn", "mmbench-en", "mmmu")


_model = fixtures.tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms")
    fixtures.write_all(root)
    return root


def _spec(files, style):
    return f"mmmu:{files / 'mmmu'}" if style == "mmmu" else f"{style}:{files / f'{style}.parquet'}"


def _docs(files, style) -> dict[str, dict]:
    """The documents lmms-eval's tasks see: Parquet rows with images decoded as `datasets` does."""
    paths = sorted((files / "mmmu").rglob("*.parquet")) if style == "mmmu" else [files / f"{style}.parquet"]
    docs = {}
    for path in paths:
        for row in pq.read_table(path).to_pylist():
            for key, value in list(row.items()):
                if isinstance(value, dict) and "bytes" in value:
                    row[key] = _decode(value["bytes"])
            docs[str(row["id"] if style == "mmmu" else row["index"])] = row
    return docs


def _decode(data: bytes):
    """datasets.Image.decode_example: PIL.Image.open + load; a failure is the harness's failure."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except Exception as exc:
        return _Broken(exc)


class _Broken:
    def __init__(self, exc):
        self.exc = exc

    def convert(self, *_):
        raise self.exc


@functools.cache
def _harness_processor(name, tmp):
    """lmms-eval's processor: AutoProcessor.from_pretrained(pretrained) for LLaVA, with max_pixels= and
    min_pixels= (the class defaults) for the Qwen classes."""
    if MODELS[name] == "llava_hf":
        return _model(name).processor
    defaults = lmms.QWEN2_5_VL_DEFAULTS if MODELS[name] == "qwen2_5_vl" else lmms.QWEN2_VL_DEFAULTS
    return fixtures.checkpoint_processor(_model(name), f"{tmp}/{name.replace(':', '-')}",
                                         max_pixels=defaults["max_pixels"], min_pixels=defaults["min_pixels"])


def _harness(style, doc, name, simple, processor):
    """(prompt text, images handed to the processor) as lmms-eval builds them."""
    model_name = MODELS[name]
    chat_class = not simple and model_name != "qwen2_vl"
    if chat_class:
        messages = lmms.user_messages(style, doc, model_name)
        if model_name == "llava_hf":
            return lmms.llava_chat(messages, processor)
        return lmms.qwen_chat(messages, processor)
    context, visuals = lmms.context_and_visuals(style, doc, model_name)
    if model_name == "llava_hf":
        return lmms.llava_simple(context, visuals, processor.tokenizer), visuals
    defaults = lmms.QWEN2_5_VL_DEFAULTS if model_name == "qwen2_5_vl" else lmms.QWEN2_VL_DEFAULTS
    return lmms.qwen_simple(context, visuals, processor, defaults)


def _compare(files, style, name, profile, tmp):
    """Row by row: 'match', or 'skipped' where lmms-eval raises; anything else fails the test."""
    lm = _model(name)
    config = resolve(profile, lm.model_type)
    processor = _harness_processor(name, tmp)
    source = open_benchmark(_spec(files, style))
    items = {item.sample_id: item for item in source}
    outcome = {}
    for sid, doc in _docs(files, style).items():
        try:
            text, images = _harness(style, doc, name, profile == "lmms-eval-simple", processor)
        except Exception as exc:
            harness_error = exc
        else:
            harness_error = None
        try:
            if sid not in items:
                raise BenchmarkError(dict(source.skipped)[sid])
            prompt, ours = prepare(items[sid], lm, config)
        except BenchmarkError as exc:
            assert harness_error is not None, f"{sid}: keygap skipped ({exc}) a row lmms-eval runs"
            outcome[sid] = "skipped"
            continue
        assert harness_error is None, f"{sid}: lmms-eval raises {harness_error!r}; keygap runs the row"
        assert prompt.text == text, sid
        assert len(ours) == len(images), sid
        for a, b in zip(ours, images):
            assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b.convert("RGB"))), sid
        theirs = processor(text=[text], images=images or None, return_tensors="np")["input_ids"]
        mine = lm.processor(text=[prompt.text], images=ours or None, return_tensors="np",
                            **config.processor_kwargs())["input_ids"]
        assert theirs.shape == mine.shape and (theirs == mine).all(), sid
        outcome[sid] = "match"
    return outcome


@pytest.mark.parametrize("profile", ["lmms-eval", "lmms-eval-simple"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("style", STYLES)
def test_every_fixture_row_matches_lmms_eval(files, tmp_path_factory, style, name, profile):
    outcome = _compare(files, style, name, profile, tmp_path_factory.mktemp("processor"))
    # the rows lmms-eval itself cannot run, and only those, are skipped
    broken = {"9"} if style != "mmmu" else {"validation_Math_7", "validation_Math_10"}
    assert {sid for sid, what in outcome.items() if what == "skipped"} == broken
    assert len(outcome) == (12 if style == "mmmu" else 12)


def test_profiles_name_the_classes_lmms_eval_resolves():
    """registry_v2: --model llava_hf / qwen2_5_vl run the chat classes, --force_simple the simple ones."""
    for name, model_name in MODELS.items():
        for profile, force_simple in (("lmms-eval", False), ("lmms-eval-simple", True)):
            config = resolve(profile, _model(name).model_type)
            module, cls = lmms.resolve_class(model_name, force_simple).rsplit(".", 1)
            path = module.removeprefix("lmms_eval.").replace(".", "/") + ".py"
            assert config.model_config.startswith(model_name) and f"({path} {cls})" in config.model_config
            assert config.version == LMMS_EVAL_VERSION == lmms.VERSION and config.verified


def test_mmbench_cn_task_really_reads_the_english_options_header():
    doc = {"question": "图中是什么？", "hint": None, "A": "塔", "B": "花", "answer": "A", "category": "c",
           "L2-category": "c", "index": 0, "source": "s", "split": "dev"}
    kwargs = lmms.specific_kwargs(lmms._task_yaml("mmbench/mmbench_cn_dev.yaml"), "llava_hf")
    assert lmms.CN_UTILS.mmbench_doc_to_text(doc, kwargs) == (
        "图中是什么？ There are several options:\nA. 塔\nB. 花\n\n请直接使用所提供的选项字母作为答案回答。")
