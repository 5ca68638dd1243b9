"""Load a vision-language model and its processor, and check that keygap can hook it.

Every model runs through Hugging Face transformers unchanged: keygap never re-implements a layer.
What keygap needs from a model is the standard decoder layout (``get_decoder().layers[i].self_attn``
with ``k_proj``, rotary ``position_embeddings`` passed to attention, and the attention module's own
``apply_rotary_pos_emb``), plus a prompt family that knows where its image placeholders go.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from store.errors import KeygapError, first_line
from store.schema import model_label

from . import tiny

# model_type -> prompt family (the placeholder convention of ingest.prompts).
FAMILIES = {
    "llava": "llava",
    "llava_next": "llava",
    "qwen2_vl": "qwen2-vl",
    "qwen2_5_vl": "qwen2-vl",
    "qwen3_vl": "qwen2-vl",  # same placeholders and chat markup; keys pass through k_norm
}
# Families whose rotary embedding takes 3-D (t, h, w) positions computed by the model itself.
MROPE_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}
SUPPORTED_TEXT = ("LLaVA-1.5 (llava), LLaVA-NeXT (llava_next), Qwen2-VL (qwen2_vl), Qwen2.5-VL (qwen2_5_vl), "
                  "Qwen3-VL (qwen3_vl); "
                  "built-in: " + ", ".join(tiny.TINY_MODELS + tiny.RANDOM_MODELS))

DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}


class ModelError(KeygapError):
    """The model cannot be found, loaded, or hooked."""


@dataclass
class LoadedModel:
    """A model ready for key capture, with what labelling and batching need to know about it."""

    model_id: str  # as the user gave it
    label: str  # partition-safe name used in the store
    model: torch.nn.Module
    processor: Any  # the model's transformers processor (tokenizer + image processor)
    model_type: str
    family: str  # prompt family for ingest.prompts
    layers: torch.nn.ModuleList  # the decoder's layers
    rotary: torch.nn.Module  # the decoder's rotary embedding (sees the positions the model uses)
    apply_rotary: Callable[..., tuple[Any, Any]]  # the attention module's own apply_rotary_pos_emb
    num_kv_heads: int
    head_dim: int
    image_token_id: int
    video_token_id: int | None
    special_ids: frozenset = field(default_factory=frozenset)
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    mrope: bool = False
    num_heads: int = 0  # query heads; query head h reads kv head h // (num_heads // num_kv_heads)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def key_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def head_layout(self) -> dict:
        """The attention head layout, as the run manifest records it: stored keys are the kv heads
        concatenated in this order (head_dim values each), stored queries the query heads."""
        group = self.num_heads // self.num_kv_heads
        attn = self.layers[0].self_attn
        return {"num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
                "kv_head_of_query_head": [h // group for h in range(self.num_heads)],
                "attention_scaling": float(getattr(attn, "scaling", self.head_dim ** -0.5)),
                "attn_logit_softcapping": getattr(attn, "attn_logit_softcapping", None)}

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def padding_side(self) -> str:
        return getattr(self.tokenizer, "padding_side", "right")


def resolve_device(device: str | None) -> torch.device:
    """"auto" -> the first CUDA GPU if there is one, else the CPU."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}: use cuda, cuda:N, cpu or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but torch sees no CUDA GPU: use --device cpu "
                         "(or install a CUDA build of torch)")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device,
                  checkpoint_dtype: torch.dtype | None) -> torch.dtype:
    """The compute dtype: the checkpoint's own half type on a GPU, float32 on a CPU, unless told.

    CPUs run half-precision matmuls slowly or not at all, so "auto" means float32 there.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(checkpoint_dtype, str):  # configs may carry the name ("float16") instead
        checkpoint_dtype = DTYPES.get(checkpoint_dtype.removeprefix("torch."))
    if dtype in (None, "auto"):
        if device.type == "cpu":
            return torch.float32
        if checkpoint_dtype in (torch.float16, torch.bfloat16):
            return checkpoint_dtype
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelError(f"unknown dtype {dtype!r}: use float16, bfloat16, float32 or auto") from None


def image_only_processor_class(processor_cls):
    """The processor class without its video processor.

    keygap feeds no videos, and video processors need torchvision, which CPU-only machines often
    lack; the subclass keeps the original name so saved processors load anywhere.
    """
    if "video_processor" not in inspect.signature(processor_cls.__init__).parameters:
        return processor_cls

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_cls.__init__(self, image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=None, chat_template=chat_template, **kwargs)

    return type(processor_cls.__name__, (processor_cls,),
                {"__init__": __init__, "__module__": processor_cls.__module__,
                 "__qualname__": processor_cls.__qualname__})


def load_model(spec: str, *, device: str | None = "auto", dtype: str | torch.dtype | None = None,
               seed: int = 0) -> LoadedModel:
    """Load MODEL: a save_pretrained folder, a hub id already in the local cache, tiny:* or random:*."""
    dev = resolve_device(device)
    if spec.startswith(("tiny:", "random:")):
        if spec not in tiny.TINY_MODELS + tiny.RANDOM_MODELS:
            raise ModelError(f"unknown built-in model {spec!r}; supported: {SUPPORTED_TEXT}")
        config, _ = tiny.build_config_and_processor(spec)
        # tiny models default to float32 everywhere; random:* to the real checkpoint's half type on a GPU.
        native = torch.float32 if spec.startswith("tiny:") else tiny.native_dtype(spec)
        want = resolve_dtype(dtype, dev, native)
        if dtype in (None, "auto") and spec.startswith("tiny:"):
            want = torch.float32
        try:
            model, processor = tiny.build(spec, seed=seed, device=dev, dtype=want)
        except torch.OutOfMemoryError:
            raise ModelError(f"{spec} does not fit in {dev} memory as {str(want).removeprefix('torch.')}: "
                             "use a GPU with more memory") from None
    else:
        model, processor = _load_pretrained(spec, dev, dtype)
    return inspect_model(spec, model, processor)


def _load_pretrained(spec: str, dev: torch.device, dtype):
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    local = os.path.isdir(os.path.expanduser(spec))
    path = os.path.expanduser(spec) if local else spec
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        if local:
            raise ModelError(f"{spec} holds no readable config.json ({first_line(exc)}): pass a folder "
                             "written by save_pretrained") from None
        raise ModelError(f"model {spec!r} is neither a local folder nor in the Hugging Face cache: "
                         f"download it first (`hf download {spec}`) or pass a local folder") from None
    model_type = getattr(config, "model_type", "?")
    if model_type not in FAMILIES:
        raise ModelError(f"model type {model_type!r} of {spec} is not supported; supported: {SUPPORTED_TEXT}")
    cls = tiny.model_class(config)
    want = resolve_dtype(dtype, dev, getattr(config, "dtype", None))
    # Straight onto the GPU where accelerate is installed (transformers needs it for device_map);
    # otherwise through host memory.
    direct = dev.type == "cuda" and importlib.util.find_spec("accelerate") is not None
    try:
        model = cls.from_pretrained(path, dtype=want, local_files_only=True,
                                    device_map=str(dev) if direct else None)
        processor_cls = _processor_class(PROCESSOR_MAPPING_NAMES.get(model_type))
        processor = image_only_processor_class(processor_cls).from_pretrained(path, local_files_only=True)
    except torch.OutOfMemoryError:
        raise ModelError(f"{spec} does not fit in {dev} memory as {str(want).removeprefix('torch.')}: "
                         "use a GPU with more memory or --dtype bfloat16 / float16") from None
    except OSError as exc:
        raise ModelError(f"cannot load {spec} ({first_line(exc)}): is the download complete "
                         "(weights, tokenizer and processor files)?") from None
    if not direct:
        model.to(dev)
    model.eval()
    return model, processor


def _processor_class(name):
    import transformers

    if isinstance(name, tuple):
        name = next(n for n in name if n)
    return getattr(transformers, name)


def inspect_model(model_id: str, model, processor) -> LoadedModel:
    """Check the standard decoder layout and gather what capture and labelling need."""
    config = model.config
    model_type = config.model_type
    if model_type not in FAMILIES:
        raise ModelError(f"model type {model_type!r} is not supported; supported: {SUPPORTED_TEXT}")
    try:
        decoder = model.get_decoder()
        layers = decoder.layers
        attn = layers[0].self_attn
        if not hasattr(attn, "k_proj"):
            raise AttributeError("k_proj")
        rotary = decoder.rotary_emb
    except (AttributeError, IndexError, ValueError):
        raise ModelError(f"{model_id}: the decoder does not follow the standard layout "
                         "(get_decoder().layers[i].self_attn.k_proj and a rotary_emb); "
                         f"supported: {SUPPORTED_TEXT}") from None
    apply_rotary = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
    if apply_rotary is None:
        raise ModelError(f"{model_id}: {type(attn).__name__}'s module has no apply_rotary_pos_emb, "
                         "so post-RoPE keys cannot be formed the model's way")
    text_config = config.get_text_config()
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    if attn.k_proj.out_features != kv_heads * head_dim:
        raise ModelError(f"{model_id}: k_proj gives {attn.k_proj.out_features} features, expected "
                         f"{kv_heads} kv heads x {head_dim}")
    if attn.q_proj.out_features != heads * head_dim or heads % kv_heads:
        raise ModelError(f"{model_id}: q_proj gives {attn.q_proj.out_features} features, expected "
                         f"{heads} heads x {head_dim} in groups of {kv_heads} kv heads")
    tok = processor.tokenizer
    image_token_id = getattr(config, "image_token_id", None)
    if image_token_id is None:
        image_token_id = config.image_token_index
    video_token_id = getattr(config, "video_token_id", None)
    special = set(tok.all_special_ids)
    for name in ("vision_start_token_id", "vision_end_token_id"):
        if getattr(config, name, None) is not None:
            special.add(getattr(config, name))
    special.discard(image_token_id)
    special.discard(video_token_id)
    param = next(model.parameters())
    return LoadedModel(
        model_id=model_id, label=model_label(model_id), model=model, processor=processor,
        model_type=model_type, family=FAMILIES[model_type], layers=layers, rotary=rotary,
        apply_rotary=apply_rotary, num_kv_heads=kv_heads, head_dim=head_dim, num_heads=heads,
        image_token_id=int(image_token_id),
        video_token_id=None if video_token_id is None else int(video_token_id),
        special_ids=frozenset(int(i) for i in special), device=param.device, dtype=param.dtype,
        mrope=model_type in MROPE_TYPES,
    )
