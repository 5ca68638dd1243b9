"""lmms-eval 0.7.3's own prompt and image code, run on documents, for the harness tests.

lmms-eval is installed with ``--no-deps`` (the Makefile's venv step) and imported with the fewest
stubs that let its task code load without its evaluation stack:
  * ``lmms_eval.tasks`` is a bare package over the installed folder: its ``__init__`` builds the
    task registry (datasets, accelerate, ...); the task modules themselves are imported unchanged.
  * ``requests`` (imported by mmbench_evals.py for its GPT judge) and ``torchvision`` (imported by
    qwen_vl_utils for video reading) are empty modules while those two import, removed right after.
Code that runs as shipped: tasks/mmbench/{cn,en}_utils.py, tasks/mmmu/utils.py, the task YAML files,
protocol.py (ChatMessages), models/model_utils/media_encoder.py, models/registry_v2.py, and
qwen_vl_utils (fetch_image, process_vision_info). ``_visual_to_content`` / ``_build_user_turn``
(ConfigurableMessagesTask's default doc_to_messages) and the constants of the model classes are
read out of the installed source files and executed / evaluated as they are.
Transcribed, because the model classes need a GPU, accelerate and a checkpoint to construct: the
few lines of each ``generate_until`` that turn messages into the prompt text and images; each
function below names its file.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import yaml

ROOT = Path(importlib.util.find_spec("lmms_eval").submodule_search_locations[0])


@contextlib.contextmanager
def _stub_modules(*names: str):
    added = []
    for name in names:
        if name not in sys.modules:
            module = types.ModuleType(name)
            if name == "torchvision":
                module.io = types.ModuleType("torchvision.io")
                module.transforms = types.ModuleType("torchvision.transforms")
                module.transforms.InterpolationMode = type("InterpolationMode", (), {})
                sys.modules["torchvision.io"] = module.io
                sys.modules["torchvision.transforms"] = module.transforms
                added += ["torchvision.io", "torchvision.transforms"]
            sys.modules[name] = module
            added.append(name)
    try:
        yield
    finally:
        for name in added:  # nothing else may mistake the stubs for the real packages
            sys.modules.pop(name, None)


def _load():
    if "lmms_eval.tasks" not in sys.modules:
        package = types.ModuleType("lmms_eval.tasks")
        package.__path__ = [str(ROOT / "tasks")]
        sys.modules["lmms_eval.tasks"] = package
    with _stub_modules("requests"):
        cn = importlib.import_module("lmms_eval.tasks.mmbench.cn_utils")
        en = importlib.import_module("lmms_eval.tasks.mmbench.en_utils")
        mmmu = importlib.import_module("lmms_eval.tasks.mmmu.utils")
    with _stub_modules("requests", "torchvision"):
        qwen_vl_utils = importlib.import_module("qwen_vl_utils")
    protocol = importlib.import_module("lmms_eval.protocol")
    media = importlib.import_module("lmms_eval.models.model_utils.media_encoder")
    models = importlib.import_module("lmms_eval.models")
    return cn, en, mmmu, qwen_vl_utils, protocol, media, models


CN_UTILS, EN_UTILS, MMMU_UTILS, QWEN_VL_UTILS, PROTOCOL, MEDIA, MODELS = _load()
VERSION = importlib.metadata.version("lmms_eval")


# ---------------------------------------------------------------------------------------------
# Source read out of the installed files


def _source(relative: str) -> ast.Module:
    return ast.parse((ROOT / relative).read_text())


def _constant(relative: str, name: str):
    for node in _source(relative).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{name} not in {relative}")


def _init_defaults(relative: str, class_name: str) -> dict:
    """Default arguments of a model class's __init__, as its source states them."""
    for node in ast.walk(_source(relative)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
            args = init.args.args[-len(init.args.defaults):]
            return {a.arg: eval(compile(ast.Expression(d), relative, "eval"))
                    for a, d in zip(args, init.args.defaults)
                    if isinstance(d, (ast.Constant, ast.BinOp))}
    raise LookupError(f"{class_name} not in {relative}")


def _messages_task_methods():
    """ConfigurableMessagesTask._visual_to_content / _build_user_turn from api/task.py, executed as is."""
    tree = _source("api/task.py")
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "ConfigurableMessagesTask")
    wanted = ("_visual_to_content", "_build_user_turn")
    body = [n for n in cls.body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
            or (isinstance(n, ast.Assign) and any(getattr(t, "id", "").startswith("_") for t in n.targets))]
    module = ast.Module(body=[ast.ClassDef(name="MessagesTask", bases=[], keywords=[], body=body,
                                           decorator_list=[], type_params=[])], type_ignores=[])
    import os

    from PIL import Image as PIL_Image

    namespace = {"PIL_Image": PIL_Image, "os": os}
    exec(compile(ast.fix_missing_locations(module), str(ROOT / "api/task.py"), "exec"), namespace)
    return namespace["MessagesTask"]


MESSAGES_TASK = _messages_task_methods()
VICUNA_CHAT_TEMPLATE = _constant("models/simple/llava_hf.py", "VICUNA_CHAT_TEMPLATE")
QWEN2_5_VL_DEFAULTS = _init_defaults("models/simple/qwen2_5_vl.py", "Qwen2_5_VL")
QWEN2_VL_DEFAULTS = _init_defaults("models/simple/qwen2_vl.py", "Qwen2_VL")


# ---------------------------------------------------------------------------------------------
# Tasks: the YAML files as lmms-eval reads them


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _task_yaml(relative: str) -> dict:
    path = ROOT / "tasks" / relative
    config = yaml.load(path.read_text(), Loader=_Loader)
    if "include" in config:
        base = _task_yaml(str(Path(relative).parent / config.pop("include")))
        config = {**base, **config}
    return config


def specific_kwargs(config: dict, model_name: str):
    """api/task.py ConfigurableTask.__init__ (transcribed): the task's lmms_eval_specific_kwargs."""
    kwargs = config.get("lmms_eval_specific_kwargs")
    if kwargs is not None:
        kwargs = dict(kwargs)
        if model_name in kwargs:
            kwargs = kwargs[model_name]
        elif "default" in kwargs:
            kwargs.update(kwargs.get("default", {}))
        elif "dataset" in kwargs:
            kwargs.update(kwargs.get("dataset", {}))
    return kwargs


TASKS = {"mmbench-cn": ("mmbench/mmbench_cn_dev.yaml", CN_UTILS),
         "mmbench-en": ("mmbench/mmbench_en_dev.yaml", EN_UTILS),
         "mmmu": ("mmmu/mmmu_val.yaml", MMMU_UTILS)}


def user_messages(style: str, doc: dict, model_name: str) -> list[dict]:
    """What ConfigurableMessagesTask.doc_to_messages returns for the doc (lmms-eval's chat path)."""
    relative, utils = TASKS[style]
    config = _task_yaml(relative)
    kwargs = specific_kwargs(config, model_name)
    if "doc_to_messages" in config:
        return utils.mmmu_doc_to_messages(doc, lmms_eval_specific_kwargs=kwargs)
    visuals = utils.mmbench_doc_to_visual(doc)
    return MESSAGES_TASK._build_user_turn(visuals, utils.mmbench_doc_to_text(doc, kwargs))


def context_and_visuals(style: str, doc: dict, model_name: str) -> tuple[str, list]:
    """doc_to_text and doc_to_visual as the simple path calls them."""
    relative, utils = TASKS[style]
    kwargs = specific_kwargs(_task_yaml(relative), model_name)
    if style == "mmmu":
        MMMU_UTILS.config["metadata"]["interleaved_format"] = _task_yaml("mmmu/_default_template_yaml")[
            "metadata"]["interleaved_format"]  # mmmu_doc_to_messages flips this module-level flag
        return utils.mmmu_doc_to_text(doc, kwargs), utils.mmmu_doc_to_visual(doc)
    return utils.mmbench_doc_to_text(doc, kwargs), utils.mmbench_doc_to_visual(doc)


# ---------------------------------------------------------------------------------------------
# The model classes' generate_until lines (transcribed)


def llava_chat(messages: list[dict], processor) -> tuple[str, list]:
    """models/chat/llava_hf.py LlavaHf.generate_until."""
    chat = PROTOCOL.ChatMessages(**{"messages": messages})
    visuals, _, _ = chat.extract_media()
    dumped = chat.model_dump()["messages"]
    text = processor.apply_chat_template(dumped, tokenize=False, add_generation_prompt=True)
    return text, visuals


def qwen_chat(messages: list[dict], processor, max_num_frames: int = 32) -> tuple[str, list]:
    """models/chat/qwen2_5_vl.py Qwen2_5_VL.generate_until (images only, batch of one)."""
    chat = PROTOCOL.ChatMessages(**{"messages": messages})
    video_kwargs = {"max_pixels": QWEN2_5_VL_DEFAULTS["max_pixels"],
                    "min_pixels": QWEN2_5_VL_DEFAULTS["min_pixels"], "nframes": max_num_frames}
    batched_messages = [chat.to_hf_messages(video_kwargs=video_kwargs)]
    texts = processor.apply_chat_template(batched_messages, tokenize=False, add_generation_prompt=True)
    image_inputs, _, _ = QWEN_VL_UTILS.process_vision_info(batched_messages, return_video_kwargs=True,
                                                            return_video_metadata=True)
    return texts[0], image_inputs or []


def llava_simple(context: str, visuals: list, tokenizer) -> str:
    """models/simple/llava_hf.py LlavaHf.generate_until (task_type "image")."""
    if "<image>" not in context and visuals:
        image_tokens = " ".join(["<image>"] * len(visuals))
        context = f"{image_tokens}\n{context}"
    messages = [{"role": "user", "content": context}]
    if tokenizer.chat_template is None:
        tokenizer.chat_template = VICUNA_CHAT_TEMPLATE
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        finally:
            tokenizer.chat_template = None
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def qwen_simple(context: str, visuals: list, processor, defaults: dict) -> tuple[str, list]:
    """models/simple/qwen2_5_vl.py (and qwen2_vl.py) Qwen2_5_VL.generate_until, interleave off."""
    context = context.replace("<image>", "")
    message = [{"role": "system", "content": defaults["system_prompt"]}]
    processed_visuals = [{"type": "image",
                          "image": MEDIA.encode_image_to_data_url(visual, image_format="JPEG",
                                                                  mime_type="image/jpeg",
                                                                  convert_rgb=True, quality=85),
                          "max_pixels": defaults["max_pixels"], "min_pixels": defaults["min_pixels"]}
                         for visual in visuals]
    message.append({"role": "user", "content": processed_visuals + [{"type": "text", "text": context}]})
    texts = processor.apply_chat_template([message], tokenize=False, add_generation_prompt=True)
    image_inputs, _ = QWEN_VL_UTILS.process_vision_info([message])
    return texts[0], image_inputs or []


def resolve_class(model_name: str, force_simple: bool) -> str:
    """models/registry_v2.py: the class `--model NAME [--force_simple]` runs."""
    return MODELS.MODEL_REGISTRY_V2.resolve(model_name, force_simple=force_simple).class_path
