"""Harness profiles: what an evaluation harness feeds a model, from prompt text down to image pixels.

A profile (``--harness``) names the harness code keygap reproduces; for each model it resolves to
that harness's own configuration of the model (lmms-eval's model class, VLMEvalKit's entry in
vlmeval/config.py), which decides the prompt (ingest.prompts) and the image preprocessing here.
Image preprocessing matters as much as the text: for one 512 x 384 picture Qwen2.5-VL gets 252
image tokens from the transformers defaults, 266 under ``--force_simple``, 285 on lmms-eval's
default path and 1,302 under VLMEvalKit's config.

Image steps, in the harnesses' order, each as the harness's code does it:
  jpeg_quality      lmms-eval's simple Qwen classes send a JPEG data URL (PIL save, quality 85).
  fetch_pixels      qwen_vl_utils.fetch_image: smart_resize to multiples of 28 within
                    [min, max] pixels, then PIL's Image.resize with its default filter.
  processor_pixels  the min / max pixels the harness gives the Qwen image processor, which
                    resizes once more (smart_resize, bicubic).
  pad_square        LLaVA's expand2square (VLMEvalKit runs the original LLaVA code with
                    image_aspect_ratio "pad"): pad to a square with the processor's mean colour.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field

from store.errors import KeygapError

from .benchmarks.base import BenchmarkError, Item, decode_image
from .prompts import HARNESSES, Prompt, build_prompt

LMMS_EVAL_VERSION = "0.7.3"
VLMEVALKIT_COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"
QWEN_FACTOR = 28  # patch 14 x merge 2: what qwen_vl_utils and the image processor round to
QWEN_MAX_RATIO = 200  # qwen_vl_utils refuses a longer side over 200 x the shorter one


class HarnessError(KeygapError, ValueError):
    """The model or its files do not match the harness profile asked for; the message says what to do."""


@dataclass(frozen=True)
class ImageSteps:
    """How a harness turns the decoded RGB picture into what its processor sees (see the docstring)."""

    jpeg_quality: int | None = None
    fetch_pixels: tuple[int, int] | None = None
    processor_pixels: tuple[int, int] | None = None
    pad_square: bool = False


@dataclass(frozen=True)
class HarnessConfig:
    """One harness profile resolved for one model type."""

    profile: str  # what the user passes to --harness
    harness: str  # lmms-eval / VLMEvalKit
    version: str  # the harness release or commit whose code keygap reproduces
    model_config: str  # the harness's own name for what runs the model
    verified: bool  # checked against the harness's code by the tests (else: nearest relative's rules)
    images: ImageSteps = field(default_factory=ImageSteps)

    def describe(self) -> dict:
        """What a run manifest records (and what the run id hashes)."""
        images = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.images).items() if v}
        return {"profile": self.profile, "harness": self.harness, "version": self.version,
                "model_config": self.model_config, "verified": self.verified, "images": images}

    def processor_kwargs(self) -> dict:
        """Keyword arguments for the processor call: the harness's pixel limits, where it sets them."""
        if self.images.processor_pixels is None:
            return {}
        low, high = self.images.processor_pixels
        return {"size": {"shortest_edge": low, "longest_edge": high}}

    def prepare_image(self, image, processor):
        """The decoded RGB picture as this harness hands it to the processor."""
        steps = self.images
        if steps.jpeg_quality is not None:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=steps.jpeg_quality)
            image = decode_image(buffer.getvalue())
        if steps.fetch_pixels is not None:
            height, width = qwen_smart_resize(image.height, image.width, *steps.fetch_pixels)
            image = image.resize((width, height))
        if steps.pad_square:
            mean = processor.image_processor.image_mean
            image = expand_to_square(image, tuple(int(x * 255) for x in mean))
        return image


def qwen_smart_resize(height: int, width: int, min_pixels: int, max_pixels: int,
                      factor: int = QWEN_FACTOR) -> tuple[int, int]:
    """qwen_vl_utils.smart_resize: the nearest multiples of `factor` within [min, max] pixels."""
    if max(height, width) / min(height, width) > QWEN_MAX_RATIO:
        raise BenchmarkError(f"image of {width} x {height} pixels is more than {QWEN_MAX_RATIO} times "
                             "longer than wide, which qwen_vl_utils refuses")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def expand_to_square(image, background: tuple[int, ...]):
    """LLaVA's expand2square: the picture centred on a square of the background colour."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


# ----------------------------------------------------------------------------------------------
# The table: profile x model type -> the harness's configuration of that model.

_LMMS = "lmms-eval"
_VLM = "VLMEvalKit"
_VLM_VERSION = f"git {VLMEVALKIT_COMMIT[:12]}"
_LMMS_QWEN25 = (256 * 28 * 28, 1605632)  # models/simple/qwen2_5_vl.py defaults
_LMMS_QWEN2 = (3136, 602112)  # models/simple/qwen2_vl.py defaults
_QWEN_UTILS_DEFAULT = (4 * 28 * 28, 16384 * 28 * 28)  # fetch_image without min/max_pixels
_VLM_QWEN = (1280 * 28 * 28, 16384 * 28 * 28)  # vlmeval/config.py Qwen2(.5)-VL-7B-Instruct
_QWEN_CHECKPOINT = (3136, 12845056)  # preprocessor_config.json of the 7B Instruct checkpoints

_TABLE: dict[tuple[str, str], tuple[str, ImageSteps]] = {
    ("lmms-eval", "llava"): ("llava_hf (models/chat/llava_hf.py LlavaHf)", ImageSteps()),
    ("lmms-eval", "qwen2_5_vl"): (
        "qwen2_5_vl (models/chat/qwen2_5_vl.py Qwen2_5_VL)",
        ImageSteps(fetch_pixels=_QWEN_UTILS_DEFAULT, processor_pixels=_LMMS_QWEN25)),
    ("lmms-eval", "qwen2_vl"): (  # no chat class: the simple one runs
        "qwen2_vl (models/simple/qwen2_vl.py Qwen2_VL)",
        ImageSteps(jpeg_quality=85, fetch_pixels=_LMMS_QWEN2, processor_pixels=_LMMS_QWEN2)),
    ("lmms-eval-simple", "llava"): ("llava_hf --force_simple (models/simple/llava_hf.py LlavaHf)",
                                    ImageSteps()),
    ("lmms-eval-simple", "qwen2_5_vl"): (
        "qwen2_5_vl --force_simple (models/simple/qwen2_5_vl.py Qwen2_5_VL)",
        ImageSteps(jpeg_quality=85, fetch_pixels=_LMMS_QWEN25, processor_pixels=_LMMS_QWEN25)),
    ("lmms-eval-simple", "qwen2_vl"): (
        "qwen2_vl --force_simple (models/simple/qwen2_vl.py Qwen2_VL)",
        ImageSteps(jpeg_quality=85, fetch_pixels=_LMMS_QWEN2, processor_pixels=_LMMS_QWEN2)),
    ("vlmevalkit", "llava"): ("llava_v1.5_7b (vlm/llava/llava.py LLaVA)", ImageSteps(pad_square=True)),
    ("vlmevalkit", "qwen2_vl"): (
        "Qwen2-VL-7B-Instruct (vlm/qwen2_vl/model.py Qwen2VLChat)",
        ImageSteps(fetch_pixels=_VLM_QWEN, processor_pixels=_QWEN_CHECKPOINT)),
    ("vlmevalkit", "qwen2_5_vl"): (
        "Qwen2.5-VL-7B-Instruct (vlm/qwen2_vl/model.py Qwen2VLChat, use_custom_prompt=False)",
        ImageSteps(fetch_pixels=_VLM_QWEN, processor_pixels=_QWEN_CHECKPOINT)),
}
# Model types with no verified profile use the prompt rules of their nearest relative and the
# checkpoint's own image processor; the manifest says so (verified: false).
_NEAREST = {"llava_next": "llava", "qwen3_vl": "qwen2_5_vl"}


def resolve(profile: str, model_type: str) -> HarnessConfig:
    """The configuration `profile` gives a model of `model_type`."""
    if profile not in HARNESSES:
        raise HarnessError(f"--harness {profile!r}: use one of {', '.join(HARNESSES)}")
    harness, version = (_VLM, _VLM_VERSION) if profile == "vlmevalkit" else (_LMMS, LMMS_EVAL_VERSION)
    if (profile, model_type) in _TABLE:
        name, steps = _TABLE[(profile, model_type)]
        return HarnessConfig(profile, harness, version, name, True, steps)
    if model_type not in _NEAREST:
        raise HarnessError(f"model type {model_type!r} has no {profile} profile")
    name, _ = _TABLE[(profile, _NEAREST[model_type])]
    return HarnessConfig(profile, harness, version, f"{name}, applied to {model_type} (not verified)",
                         False)


def prepare(item: Item, lm, config: HarnessConfig) -> tuple[Prompt, list]:
    """The prompt and the processor-ready images of one item; BenchmarkError skips the item."""
    prompt = build_prompt(item, lm.model_type, config.profile)
    if config.verified:
        check_chat_template(prompt, lm, config)
    pictures: dict[int, object] = {}
    images = []
    for _, _, k in sorted(prompt.image_spans):
        if k not in pictures:
            decoded = decode_image(item.images[k], f"image {k + 1} of item {item.sample_id}")
            pictures[k] = config.prepare_image(decoded, lm.processor)
        images.append(pictures[k])
    return prompt, images


def check_chat_template(prompt: Prompt, lm, config: HarnessConfig) -> None:
    """Where the harness renders the checkpoint's own chat template, it must give keygap's text.

    A checkpoint without a template of its own gets the published one (what keygap reproduces);
    one with a different template would make keygap's text differ from the harness's: refuse.
    """
    if prompt.chat is None:
        return
    owner, messages = prompt.chat
    holder = lm.processor if owner == "processor" else lm.tokenizer
    if not getattr(holder, "chat_template", None):
        return
    rendered = holder.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered != prompt.text:
        at = next((i for i, (a, b) in enumerate(zip(rendered, prompt.text)) if a != b),
                  min(len(rendered), len(prompt.text)))
        raise HarnessError(
            f"{lm.model_id}: its {owner}'s chat template renders the {config.profile} prompt "
            f"differently from the published template keygap reproduces (from character {at}: "
            f"{rendered[at:at + 40]!r} instead of {prompt.text[at:at + 40]!r}); use a checkpoint "
            "with the published template, or another --harness")
