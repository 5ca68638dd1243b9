"""`keygap ingest --harness P` on the bundled sample, for every profile and both tiny model families.

The stored image token counts are checked against a count made from the harnesses' own numbers:
qwen_vl_utils' smart_resize with the pixel limits read out of lmms-eval's model classes and
VLMEvalKit's config, once for qwen_vl_utils' resize and once for the image processor's.
"""
from __future__ import annotations

import json

import harness_fixtures as fixtures
import lmms_eval_runner as lmms
import pyarrow.parquet as pq
import pytest
import vendored_vlmevalkit as vlmeval

from ingest.benchmarks import decode_image, open_benchmark
from ingest.harness import LMMS_EVAL_VERSION, VLMEVALKIT_COMMIT
from ingest.prompts import HARNESSES
from keygap_tui.cli import main as keygap


def _qwen_tokens(width: int, height: int, profile: str) -> int:
    """Image tokens of one picture: the harness's resize(s), then a 28-pixel grid merged 2 x 2."""
    resize = lmms.QWEN_VL_UTILS.smart_resize
    lmms_limits = (lmms.QWEN2_5_VL_DEFAULTS["min_pixels"], lmms.QWEN2_5_VL_DEFAULTS["max_pixels"])
    vlm = vlmeval.CONFIGS["Qwen2.5-VL-7B-Instruct"]
    steps = {"lmms-eval": [(4 * 28 * 28, 16384 * 28 * 28), lmms_limits],  # fetch_image defaults
             "lmms-eval-simple": [lmms_limits, lmms_limits],
             "vlmevalkit": [(vlm["min_pixels"], vlm["max_pixels"]),
                            tuple(fixtures.QWEN_CHECKPOINT_PIXELS.values())]}[profile]
    for low, high in steps:
        height, width = resize(height, width, factor=28, min_pixels=low, max_pixels=high)
    return (height // 28) * (width // 28)


@pytest.mark.slow
@pytest.mark.parametrize("profile", HARNESSES)
@pytest.mark.parametrize("model", ["tiny:llava", "tiny:qwen2.5-vl"])
def test_every_profile_ingests_the_bundled_sample(tmp_path, capsys, model, profile):
    store = tmp_path / "store"
    code = keygap(["ingest", "--model", model, "--benchmark", "sample", "--store", str(store), "--harness",
                   profile, "--layers", "1", "--tokens", "4:4", "--batch-size", "8", "--no-progress"])
    out = capsys.readouterr().out
    items = list(open_benchmark("sample"))
    assert code == 0 and f"done: {len(items)} samples" in out and "0 skipped" in out

    run = json.loads(next((store / "runs").glob("*.json")).read_text())
    described = run["settings"]["harness_config"]
    assert run["settings"]["harness"] == described["profile"] == profile and described["verified"]
    assert described["version"] == (f"git {VLMEVALKIT_COMMIT[:12]}" if profile == "vlmevalkit"
                                    else LMMS_EVAL_VERSION)
    expected_config = {("tiny:llava", "vlmevalkit"): "llava_v1.5_7b",
                       ("tiny:qwen2.5-vl", "vlmevalkit"): "Qwen2.5-VL-7B-Instruct",
                       ("tiny:llava", "lmms-eval"): "llava_hf (models/chat/",
                       ("tiny:llava", "lmms-eval-simple"): "llava_hf --force_simple (models/simple/",
                       ("tiny:qwen2.5-vl", "lmms-eval"): "qwen2_5_vl (models/chat/",
                       ("tiny:qwen2.5-vl", "lmms-eval-simple"): "qwen2_5_vl --force_simple (models/simple/"}
    assert described["model_config"].startswith(expected_config[(model, profile)])

    samples = pq.read_table(store / "samples").to_pylist()
    assert {s["template_id"].split("/")[0] for s in samples} == {profile}
    counts = {s["sample_id"]: s["n_image_tokens"] for s in samples}
    for item in items:
        if model == "tiny:llava":
            want = (112 // 14) ** 2  # the tiny CLIP tower: 112-pixel crops, 14-pixel patches
        else:
            width, height = decode_image(item.images[0]).size
            want = _qwen_tokens(width, height, profile)
        assert counts[item.sample_id] == want, item.sample_id
