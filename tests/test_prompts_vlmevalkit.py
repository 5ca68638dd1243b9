"""keygap's vlmevalkit profile against VLMEvalKit's own code (vendored: tests/vendored_vlmevalkit.py).

Every awkward fixture row goes, in VLMEvalKit's own TSV format read with pandas, through the
dataset class, the image dump to PNG files, the prompt builder the shipped config selects
(llava_v1.5_7b: LLaVA's custom prompt; Qwen2-VL-7B-Instruct: the Qwen2-VL prompt mixin;
Qwen2.5-VL-7B-Instruct: the dataset's prompt and MMMU's splitter) and the model wrapper's message
lines, qwen_vl_utils and a processor as VLMEvalKit loads it. keygap must give the same text, the
same images pixel for pixel in the same order, and the same input ids (Qwen) or pixel values
(LLaVA) - or skip the row where VLMEvalKit stops with an exception.
"""
from __future__ import annotations

from argparse import Namespace

import harness_fixtures as fixtures
import lmms_eval_runner
import numpy as np
import pytest
import vendored_llava
import vendored_vlmevalkit as vlmeval

from ingest.benchmarks import BenchmarkError, open_benchmark
from ingest.harness import VLMEVALKIT_COMMIT, prepare, resolve
from ingest.prompts import PANDAS_NA_STRINGS

QWEN_VL_UTILS = lmms_eval_runner.QWEN_VL_UTILS
CONFIG_OF = {"tiny:llava": "llava_v1.5_7b", "tiny:qwen2-vl": "Qwen2-VL-7B-Instruct",
             "tiny:qwen2.5-vl": "Qwen2.5-VL-7B-Instruct"}
DATASETS = {"mmbench-cn": "MMBench_DEV_CN", "mmbench-en": "MMBench_DEV_EN", "mmmu": "MMMU_DEV_VAL"}


_model = fixtures.tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlmeval")
    fixtures.write_all(root)
    return root


def _vlmevalkit_outputs(files, style, name, tmp):
    """{row id: (text, images, processor inputs) or the exception VLMEvalKit raises}."""
    # Qwen2VLChat: AutoProcessor (Qwen2.5-VL) / Qwen2VLProcessor (Qwen2-VL).from_pretrained(checkpoint)
    processor = fixtures.checkpoint_processor(_model(name), tmp / "checkpoint")
    data = vlmeval.load_tsv(files / ("mmmu.tsv" if style == "mmmu" else f"{style}.tsv"))
    dataset_cls = vlmeval.MMMUDataset if style == "mmmu" else vlmeval.ImageMCQDataset
    dataset = dataset_cls(data, str(tmp / "images"), dataset=DATASETS[style])
    config = vlmeval.CONFIGS[CONFIG_OF[name]]
    if name == "tiny:llava":
        model = vlmeval.LLaVA(dataset.dump_image)
    else:
        model = vlmeval.Qwen2VLChat(**config, processor=processor)
        model.set_dump_image(dataset.dump_image)
    out = {}
    for i in range(len(dataset)):
        line = dataset.data.iloc[i]
        sid = str(line["id"] if style == "mmmu" else line["index"])
        try:
            struct = vlmeval.build_struct(model, dataset, DATASETS[style], line)
            if name == "tiny:llava":
                text, images = model.generate_inner_prompt(struct)
                pixels = vendored_llava.process_images(images, processor.image_processor,
                                                       Namespace(image_aspect_ratio="pad"))
                out[sid] = (text, images, np.stack([p.numpy() for p in pixels]))
            else:
                (text,), images = model.generate_inner_inputs(struct, QWEN_VL_UTILS.process_vision_info)
                ids = processor(text=[text], images=images, padding=True, return_tensors="np")["input_ids"]
                out[sid] = (text, images, ids)
        except Exception as exc:
            out[sid] = exc
    return out


def _compare(files, style, name, tmp):
    lm = _model(name)
    config = resolve("vlmevalkit", lm.model_type)
    spec = f"mmmu:{files / 'mmmu'}" if style == "mmmu" else f"{style}:{files / f'{style}.tsv'}"
    source = open_benchmark(spec)
    items = {item.sample_id: item for item in source}
    outcome = {}
    for sid, theirs in _vlmevalkit_outputs(files, style, name, tmp).items():
        try:
            if sid not in items:
                raise BenchmarkError(dict(source.skipped)[sid])
            prompt, ours = prepare(items[sid], lm, config)
        except BenchmarkError as exc:
            assert isinstance(theirs, Exception), f"{sid}: keygap skipped ({exc}) a row VLMEvalKit runs"
            outcome[sid] = "skipped"
            continue
        assert not isinstance(theirs, Exception), f"{sid}: VLMEvalKit raises {theirs!r}; keygap runs it"
        text, images, processed = theirs
        assert prompt.text == text, sid
        assert len(ours) == len(images), sid
        if name != "tiny:llava":  # LLaVA pads inside process_images: compared as pixel values below
            for a, b in zip(ours, images):
                assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b)), sid
        mine = lm.processor(text=[prompt.text], images=ours, return_tensors="np", **config.processor_kwargs())
        if name == "tiny:llava":
            assert np.array_equal(mine["pixel_values"], processed), sid
        else:
            assert mine["input_ids"].shape == processed.shape and (mine["input_ids"] == processed).all(), sid
        outcome[sid] = "match"
    return outcome


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIG_OF))
@pytest.mark.parametrize("style", list(DATASETS))
def test_every_fixture_row_matches_vlmevalkit(files, tmp_path, style, name):
    outcome = _compare(files, style, name, tmp_path)
    if style == "mmmu":
        # the splitter of the Qwen2.5-VL config (dataset prompt) needs every image it is pointed at
        broken = {"validation_Math_10"} | ({"validation_Math_7"} if name == "tiny:qwen2.5-vl" else set())
    else:
        broken = {"9"}
    assert {sid for sid, what in outcome.items() if what == "skipped"} == broken
    assert len(outcome) == 12


def test_a_reference_to_a_later_reference_stops_vlmevalkit_and_skips_one_row(tmp_path):
    path = tmp_path / "chain.tsv"
    fixtures.write_chain_below_tsv(path)
    with pytest.raises(AssertionError):
        vlmeval.ImageMCQDataset(vlmeval.load_tsv(path), str(tmp_path / "images"))
    source = open_benchmark(f"mmbench-en:{path}")
    assert [item.sample_id for item in source] == ["0", "1"]
    assert source.skipped == [("1000001", "image refers to index 1, whose image is itself a reference "
                                          "further down the file (references resolve through rows above only)")]


def test_the_pandas_missing_strings_are_pandas_own():
    from pandas._libs.parsers import STR_NA_VALUES

    assert PANDAS_NA_STRINGS == STR_NA_VALUES


def test_profiles_name_the_shipped_configs():
    for name, config_name in CONFIG_OF.items():
        config = resolve("vlmevalkit", _model(name).model_type)
        assert config.model_config.startswith(config_name + " ") and config.verified
        assert config.version == f"git {VLMEVALKIT_COMMIT[:12]}" and VLMEVALKIT_COMMIT == vlmeval.COMMIT
        steps = config.images
        if name != "tiny:llava":
            settings = vlmeval.CONFIGS[config_name]
            assert steps.fetch_pixels == (settings["min_pixels"], settings["max_pixels"])


def test_a_column_of_numbers_only_is_the_listed_deviation(tmp_path):
    """pandas reads a column holding only numbers (and gaps) as floats; keygap keeps the cell text."""
    rows = fixtures.mmbench_rows("mmbench-en")[:2]
    rows = [{**rows[0], "D": "7"}, {**rows[1], "D": None}]
    path = tmp_path / "numbers.tsv"
    fixtures.write_mmbench_tsv(path, rows)
    line = vlmeval.load_tsv(path).iloc[0]
    assert f"D. {line['D']}" == "D. 7.0"
    item = next(iter(open_benchmark(f"mmbench-en:{path}")))
    assert "\nD. 7\nPlease" in prepare(item, _model("tiny:qwen2-vl"), resolve("vlmevalkit", "qwen2_vl"))[0].text
