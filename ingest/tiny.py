"""Offline-built models for tests, the demo and GPU throughput runs.

`tiny:*` models are real transformers architectures (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL,
Qwen3-VL) shrunk to a few layers with random weights drawn from a seed, so the whole ingest path
runs in milliseconds on a CPU with nothing downloaded. `random:*` models are the full-size architectures
with random weights: the compute of the real model, for measuring throughput on a GPU without
fetching weights. Both get processors built here, from the `tokenizers` library and the image
processor classes with explicit sizes (nothing read from the hub).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig, ProcessorMixin

# The tokenizer corpus: the harness templates' fixed text plus common benchmark words in English
# and Chinese, so frequent words get merged tokens. Byte-level BPE covers any other text losslessly.
_CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: ASSISTANT:",
    "You are a helpful assistant. system user assistant",
    "Answer with the option's letter from the given choices directly.",
    "Question: Hint: Options: Answer: A. B. C. D. E. F. G. H. I.",
    "What is shown in the image? Which of the following is correct? How many objects are there?",
    "Which option describes the picture best? the a an of in on is are what which color number",
    "请直接回答选项字母。 请直接使用所提供的选项字母作为答案回答。",
    "问题: 提示: 选项: 答案: 图片 图中 图像 中 的 是 什么 哪个 下列 选项 正确 描述 颜色 数量 多少",
    "以下 关于 这 张 图片 说法 正确 的 是 哪 一 个 物体 人 动物 天气 场景",
]

_VOCAB_SIZE = 1024

# The chat templates the real checkpoints ship (chat_template.json), so the built-in processors render
# what lmms-eval and VLMEvalKit render when they call processor.apply_chat_template.
# llava-hf/llava-1.5-7b-hf (also llava-v1.6-vicuna): images first, then the text pieces.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] "
    "!= 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct: a default system turn, content in order.
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

# Special tokens per family, in the order they get ids (they come first in the vocabulary).
_LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
_QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]

TINY_MODELS = ("tiny:llava", "tiny:llava-next", "tiny:qwen2-vl", "tiny:qwen2.5-vl", "tiny:qwen3-vl")
RANDOM_MODELS = ("random:llava-1.5-7b", "random:qwen2.5-vl-7b")

# Tiny decoder shape: 4 layers so that early / middle / late (1, 2, 3) are distinct layers.
_TINY_TEXT: dict[str, Any] = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
_TINY_LLAVA_IMAGE = 112  # 112 / 14 = 8 x 8 = 64 image tokens per image (576 in the real model)
_TINY_QWEN_MAX_PIXELS = 112 * 112  # at most 16 image tokens per image (up to 16,384 in the real model)


@functools.cache
def _tokenizer_json(family: str) -> str:
    """Train a byte-level BPE once per process; training is deterministic for a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = _LLAVA_SPECIALS if family == "llava" else _QWEN_SPECIALS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer)
    if family == "llava":
        # LLaMA's tokenizer starts every sequence with <s>; the real LLaVA-1.5 prompt has it too.
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def build_tokenizer(family: str):
    """A transformers fast tokenizer for "llava" or "qwen" prompts, built without the hub."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_tokenizer_json(family))
    if family == "llava":
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
            pad_token="<pad>", padding_side="left", extra_special_tokens={"image_token": "<image>"},
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left",
        extra_special_tokens={
            "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
        },
    )


def _image_processor_class(name: str):
    """The torchvision-backed image processor where torchvision imports, else its PIL twin.

    Asking for the torchvision class without torchvision works too, but warns on every build.
    """
    import importlib.util

    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, name + "Pil"):
        return getattr(transformers, name + "Pil")
    return getattr(transformers, name)


def _padded_vocab(tokenizer, full_vocab: int | None) -> int:
    n = len(tokenizer)
    return max(full_vocab or 0, (n + 63) // 64 * 64)


def _llava_parts(tokenizer, *, full: bool, next_: bool) -> tuple[PretrainedConfig, ProcessorMixin]:
    """Config and processor for LLaVA-1.5 (or LLaVA-NeXT's anyres variant)."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaNextConfig,
        LlavaNextProcessor,
        LlavaProcessor,
    )

    config: PretrainedConfig
    processor: ProcessorMixin

    CLIPImageProcessor = _image_processor_class("CLIPImageProcessor")
    LlavaNextImageProcessor = _image_processor_class("LlavaNextImageProcessor")

    image = 336 if full else _TINY_LLAVA_IMAGE
    if full:  # CLIP ViT-L/14-336 + Vicuna-7B, as in llava-hf/llava-1.5-7b-hf
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14,
                                  projection_dim=768)
        text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32,
                           max_position_embeddings=4096, rms_norm_eps=1e-5,
                           vocab_size=_padded_vocab(tokenizer, 32064))
    else:
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=image, patch_size=14,
                                  projection_dim=32)
        text = LlamaConfig(vocab_size=_padded_vocab(tokenizer, None), **_TINY_TEXT)
    text.bos_token_id = tokenizer.bos_token_id
    text.eos_token_id = tokenizer.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id
    tokens = (image // 14) ** 2
    common = dict(vision_config=vision, text_config=text,
                  image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                  image_seq_length=tokens, vision_feature_select_strategy="default",
                  vision_feature_layer=-2)
    size = {"shortest_edge": image}
    crop = {"height": image, "width": image}
    if next_:
        pinpoints = [[image, 2 * image], [2 * image, image], [2 * image, 2 * image]]
        config = LlavaNextConfig(image_grid_pinpoints=pinpoints, **common)
        processor = LlavaNextProcessor(
            image_processor=LlavaNextImageProcessor(size=size, crop_size=crop,
                                                    image_grid_pinpoints=pinpoints),
            tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    else:
        config = LlavaConfig(**common)
        processor = LlavaProcessor(
            image_processor=CLIPImageProcessor(size=size, crop_size=crop),
            tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    return config, processor


def _qwen_parts(tokenizer, *, full: bool, v25: bool):
    """Config and processor for Qwen2-VL or Qwen2.5-VL (M-RoPE, variable image token count)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLConfig, Qwen2VLProcessor

    Qwen2VLImageProcessor = _image_processor_class("Qwen2VLImageProcessor")

    ids = dict(
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    if full:  # Qwen2.5-VL-7B-Instruct
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                    rms_norm_eps=1e-6, vocab_size=_padded_vocab(tokenizer, 152064),
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                     "mrope_section": [16, 24, 24]})
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                      out_hidden_size=3584, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
        max_pixels = 12845056
    else:
        # mrope_section must sum to head_dim / 2 = 64 / 4 / 2 = 8.
        text = dict(vocab_size=_padded_vocab(tokenizer, None),
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "mrope_section": [2, 3, 3]}, **_TINY_TEXT)
        if v25:
            vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                          out_hidden_size=64, patch_size=14, spatial_merge_size=2,
                          temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
        else:
            vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2,
                          patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        max_pixels = _TINY_QWEN_MAX_PIXELS
    text.update(bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    config_cls, processor_cls = ((Qwen2_5_VLConfig, Qwen2_5_VLProcessor) if v25
                                 else (Qwen2VLConfig, Qwen2VLProcessor))
    config = config_cls(text_config=text, vision_config=vision, **ids)
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels,
                                            patch_size=14, temporal_patch_size=2, merge_size=2)
    # No video processor: it needs torchvision, and keygap feeds no videos.
    from .models import image_only_processor_class

    processor = image_only_processor_class(processor_cls)(image_processor=image_processor,
                                                          tokenizer=tokenizer,
                                                          chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return config, processor


def _qwen3_parts(tokenizer):
    """Qwen3-VL: like Qwen2.5-VL for keygap, plus k_norm on keys and interleaved M-RoPE."""
    from transformers import Qwen3VLConfig, Qwen3VLProcessor

    from .models import image_only_processor_class

    ids = dict(
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    text = dict(vocab_size=_padded_vocab(tokenizer, None), head_dim=16, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                 "mrope_interleaved": True}, **_TINY_TEXT)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                  deepstack_visual_indexes=[0, 1])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    image_processor = _image_processor_class("Qwen2VLImageProcessor")(
        min_pixels=64 * 64, max_pixels=128 * 128, patch_size=16, temporal_patch_size=2, merge_size=2)
    processor = image_only_processor_class(Qwen3VLProcessor)(image_processor=image_processor,
                                                             tokenizer=tokenizer)
    return config, processor


def build_config_and_processor(name: str):
    """(config, processor) for a tiny:* or random:* name; raises ValueError for other names."""
    if name not in TINY_MODELS + RANDOM_MODELS:
        raise ValueError(f"unknown built-in model {name!r}; choose one of: "
                         + ", ".join(TINY_MODELS + RANDOM_MODELS))
    full = name.startswith("random:")
    kind = name.split(":", 1)[1]
    if kind.startswith("llava"):
        return _llava_parts(build_tokenizer("llava"), full=full, next_=kind == "llava-next")
    if kind == "qwen3-vl":
        return _qwen3_parts(build_tokenizer("qwen"))
    return _qwen_parts(build_tokenizer("qwen"), full=full, v25=kind.startswith("qwen2.5"))


def model_class(config):
    """The ConditionalGeneration class of a built-in config."""
    from transformers import (
        LlavaForConditionalGeneration,
        LlavaNextForConditionalGeneration,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLForConditionalGeneration,
        Qwen3VLForConditionalGeneration,
    )

    return {
        "llava": LlavaForConditionalGeneration,
        "llava_next": LlavaNextForConditionalGeneration,
        "qwen2_vl": Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
        "qwen3_vl": Qwen3VLForConditionalGeneration,
    }[config.model_type]


def native_dtype(name: str) -> torch.dtype:
    """The dtype the real checkpoint ships in: fp16 for LLaVA-1.5, bf16 for Qwen2.5-VL."""
    return torch.float16 if "llava" in name else torch.bfloat16


def build(name: str, *, seed: int = 0, device: str | torch.device = "cpu",
          dtype: torch.dtype | None = None):
    """(model, processor) for a built-in name: weights drawn from `seed`, in eval mode.

    tiny:* default to float32; random:* to the real checkpoint's dtype (fp16 for LLaVA, bf16 for
    Qwen2.5-VL) and are initialised directly on `device`, so a 7B model never touches host memory.
    """
    config, processor = build_config_and_processor(name)
    if dtype is None:
        dtype = torch.float32 if name.startswith("tiny:") else native_dtype(name)
    config.dtype = dtype
    cls = model_class(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        with torch.device(device):
            model = cls._from_config(config, dtype=dtype)
    model.eval()
    return model, processor
