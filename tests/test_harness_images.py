"""Image tokens of one 512 x 384 picture for Qwen2.5-VL: each harness's own code against keygap's profile.

The harness side runs qwen_vl_utils and a Qwen2.5-VL processor loaded the way each harness loads it
(a checkpoint folder with the published preprocessor settings; lmms-eval adds min/max_pixels); the
keygap side runs what ingest runs: the profile's image steps and the processor call it makes.
"""
from __future__ import annotations

import base64
import io

import harness_fixtures as fixtures
import lmms_eval_runner as lmms
import pytest
import vendored_vlmevalkit as vlmeval
from PIL import Image, UnidentifiedImageError

from ingest.benchmarks import BenchmarkError, Item, decode_image
from ingest.harness import expand_to_square, prepare, qwen_smart_resize, resolve
from ingest.models import image_only_processor_class


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    lm = fixtures.tiny_model("tiny:qwen2.5-vl")
    folder = tmp_path_factory.mktemp("checkpoint")
    fixtures.checkpoint_processor(lm, folder)
    return lm, folder, image_only_processor_class(type(lm.processor)).from_pretrained


# lmms-eval's Qwen classes pass min/max_pixels to from_pretrained, which transformers now warns about
pytestmark = pytest.mark.filterwarnings("ignore:Passing `min_pixels` and `max_pixels`:FutureWarning")


def _tokens(processor, text, images, **kwargs) -> int:
    ids = processor(text=[text], images=images, return_tensors="np", **kwargs)["input_ids"][0]
    return int((ids == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())


def _picture():
    return decode_image(fixtures.pictures()["wide"])


@pytest.mark.slow
def test_one_512_by_384_picture_gets_each_harness_token_count(qwen, tmp_path):
    lm, folder, load = qwen
    picture = _picture()
    assert picture.size == (512, 384)
    block = "<|vision_start|><|image_pad|><|vision_end|>"

    plain = _tokens(load(folder), block, [picture])  # transformers with the checkpoint's settings

    defaults = lmms.QWEN2_5_VL_DEFAULTS
    lmms_processor = load(folder, min_pixels=defaults["min_pixels"], max_pixels=defaults["max_pixels"])
    messages = lmms.MESSAGES_TASK._build_user_turn([picture], "What is shown?")
    text, images = lmms.qwen_chat(messages, lmms_processor)
    chat = _tokens(lmms_processor, text, images)
    text, images = lmms.qwen_simple("What is shown?", [picture], lmms_processor, defaults)
    simple = _tokens(lmms_processor, text, images)

    png = tmp_path / "0.png"
    vlmeval.decode_base64_to_image_file(base64.b64encode(fixtures.pictures()["wide"]), str(png))
    model = vlmeval.Qwen2VLChat(**vlmeval.CONFIGS["Qwen2.5-VL-7B-Instruct"], processor=load(folder))
    (text,), images = model.generate_inner_inputs([dict(type="image", value=str(png)), dict(type="text", value="x")],
                                                   lmms.QWEN_VL_UTILS.process_vision_info)
    vlm = _tokens(model.processor, text, images)

    assert (plain, simple, chat, vlm) == (252, 266, 285, 1302)
    for profile, want in (("lmms-eval", chat), ("lmms-eval-simple", simple), ("vlmevalkit", vlm)):
        config = resolve(profile, "qwen2_5_vl")
        ours = config.prepare_image(picture, lm.processor)
        assert _tokens(lm.processor, block, [ours], **config.processor_kwargs()) == want, profile


@pytest.mark.parametrize("size", [(512, 384), (28, 28), (27, 1000), (5000, 4000), (113, 57), (1, 150)])
@pytest.mark.parametrize("pixels", [(3136, 12845056), (200704, 1605632), (1003520, 12845056)])
def test_smart_resize_equals_qwen_vl_utils(size, pixels):
    width, height = size
    assert qwen_smart_resize(height, width, *pixels) == lmms.QWEN_VL_UTILS.smart_resize(
        height, width, factor=28, min_pixels=pixels[0], max_pixels=pixels[1])


def test_a_picture_far_longer_than_wide_is_skipped_as_qwen_vl_utils_refuses_it():
    with pytest.raises(ValueError, match="absolute aspect ratio must be smaller than 200"):
        lmms.QWEN_VL_UTILS.smart_resize(1, 201, factor=28)
    with pytest.raises(BenchmarkError, match=r"^image of 201 x 1 pixels is more than 200 times longer than wide"):
        qwen_smart_resize(1, 201, 3136, 12845056)


def test_pad_to_square_equals_llavas_expand2square():
    import numpy as np
    import vendored_llava

    for size in ((320, 214), (112, 300), (50, 50)):
        picture = Image.new("RGB", size, (10, 200, 30))
        for background in ((122, 116, 104), (0, 0, 0)):
            a = expand_to_square(picture, background)
            b = vendored_llava.expand2square(picture, background)
            assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_a_corrupt_picture_is_skipped_with_the_same_reason_every_time():
    """PIL names the BytesIO object (and its memory address) in its message; the reason must not."""
    item = Item(sample_id="9", benchmark="b", question="q", options={"A": "x"}, hint=None, answer=None,
                category=None, images=[fixtures.CORRUPT], image_hash="h", circular_of=None,
                prompt_style="mmbench-en", cells={"A": "x"})
    lm = fixtures.tiny_model("tiny:llava")
    reasons = set()
    for _ in range(3):
        with pytest.raises(BenchmarkError, match=r"^image 1 of item 9 cannot be decoded") as info:
            prepare(item, lm, resolve("lmms-eval", "llava"))
        reasons.add(str(info.value))
    with pytest.raises(UnidentifiedImageError, match=" at 0x"):  # the raw message does carry the address
        Image.open(io.BytesIO(fixtures.CORRUPT))
    assert reasons == {"image 1 of item 9 cannot be decoded: cannot identify image file the image bytes"}
