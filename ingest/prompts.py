"""The prompts evaluation harnesses send, rebuilt as labelled pieces so every character knows its segment.

Keys depend on every character before them (causal attention), so "the lmms-eval prompt" means
the text lmms-eval's code builds when it runs. Each profile below follows that code, read in the
harness's own source and checked against it by tests/test_prompts_lmms_eval.py and
tests/test_prompts_vlmevalkit.py, which run the harnesses' own functions on awkward rows.

lmms-eval (0.7.3, the default path: ``--model llava_hf`` / ``qwen2_5_vl`` resolve to the chat classes
in lmms_eval/models/chat/, see lmms_eval/models/registry_v2.py)
  MMBench   tasks/mmbench/{cn,en}_utils.py doc_to_text: "{hint} {question} {options}\\n{post}"
            ("{question} {options}..." when the hint is null); options = "There are several
            options:" (both languages: cn_utils.py reads mmbench.yaml, not mmbench_cn.yaml) and
            "A. .." lines for the A-E cells that are neither empty nor "nan"; post = "\\n请直接使用所
            提供的选项字母作为答案回答。" (CN) / "\\nAnswer with the option's letter from the given
            choices directly." (EN). The hint is pasted whenever it is not null ("" and " "
            included; the string "nan" too in CN, not in EN). Messages: the task's default
            doc_to_messages, images then the text.
  MMMU      tasks/mmmu/utils.py: question_type "multiple-choice" -> "{question}\\n{A. ..\\nB. ..}\\n\\n
            Answer with the option's letter from the given choices directly.", anything else ->
            "{question}\\n\\nAnswer the question using a single word or phrase." (options unseen).
            The images are the `<image k>` the text mentions, deduplicated, in order of k.
            doc_to_messages replaces `<image k>` (k = 1..7) by "<image>", splits there, strips
            each piece, drops empty pieces and puts image i (in order of k, not of mention) after
            piece i; the last piece always closes the turn.
  LLaVA     models/chat/llava_hf.py: processor.apply_chat_template (llava-1.5-hf's template: "USER: "
            + "<image>\\n" per image, all images first + each text piece + " " + "ASSISTANT:").
  Qwen2.5-VL models/chat/qwen2_5_vl.py: processor.apply_chat_template, content in message order;
            the template adds the system turn "You are a helpful assistant.".
  Qwen2-VL  lmms-eval has no chat class for qwen2_vl: the simple class below runs.

lmms-eval-simple (``--force_simple``: models/simple/)
  Task text as above with `<image k>` kept in MMMU and all images first.
  LLaVA     models/simple/llava_hf.py: "<image>" per image joined by " " + "\\n" + text, in
            VICUNA_CHAT_TEMPLATE (the tokenizer of llava-1.5-7b-hf has no chat template):
            "A chat between a curious user ... questions. USER: {text} ASSISTANT:".
  Qwen      models/simple/qwen2_5_vl.py, qwen2_vl.py: "<image>" deleted from the text; system
            "You are a helpful assistant." + images first + text.

VLMEvalKit (the shipped configs in vlmeval/config.py)
  llava_v1.5_7b (vlm/llava/llava.py, custom prompt for every MCQ dataset, MMMU included):
            hint + "\\n" + question + "\\nA. .." lines + "\\n请直接回答选项字母。" when the text has
            Chinese characters, else "\\nAnswer with the option's letter from the given choices
            directly." (no options: "\\n请直接回答问题。" / "\\nAnswer the question directly."); then
            system "A chat between a curious human ... human's questions. " + "USER: " + " <image> "
            per image (all images first) + text + " ASSISTANT: ".
  Qwen2-VL-7B-Instruct (vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin): "Hint: {hint}\\nQuestion:
            {question}\\nOptions:\\nA. ..\\n" + "请直接回答选项字母。" (Chinese) or "Please select the
            correct answer from the options above." then rstrip; MMMU always the English sentence;
            all images first.
  Qwen2.5-VL-7B-Instruct (use_custom_prompt=False: the dataset's prompt,
            dataset/image_mcq.py ImageMCQDataset.build_prompt): the same "Hint/Question/Options"
            text + "Please select the correct answer from the options above. \\n" (kept as is);
            MMMU through MMMUDataset.split_MMMU: the text is cut at each "<image k>" and image k
            goes there (placeholder removed, pieces not stripped, repeats sent again).
  Qwen turns go through processor.apply_chat_template with no system message (the template adds
  "You are a helpful assistant."). Cells: VLMEvalKit reads its TSV with pandas, so every string
  pandas reads as missing ("", "nan", "NA", "None", "N/A", ...) is missing - options included.

Segments: template glue ("USER: ", "<|im_start|>user\\n", separators between images) is "role";
the closing "ASSISTANT:" / "<|im_start|>assistant\\n" is "assistant"; inside the task text a
separator belongs to the segment it introduces (" question", "\\n\\ninstruction"), which is also
where a SentencePiece tokenizer attaches a leading space. For Qwen the "image" span is exactly
"<|image_pad|>" (the token the processor expands); <|vision_start|> and <|vision_end|> are
"special" spans. image_spans point at the "image" spans and name the item image each one shows.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from ingest.benchmarks.base import BenchmarkError, Item, has_chinese

HARNESSES = ("lmms-eval", "lmms-eval-simple", "vlmevalkit")
SEGMENTS = ("system", "role", "image", "special", "hint", "question", "options", "instruction",
            "assistant")
# model_type -> which model's prompt rules apply (LLaVA-NeXT and Qwen3-VL borrow their nearest
# verified relative; ingest.harness records that they are not verified).
KINDS = {"llava": "llava-1.5", "llava_next": "llava-1.5", "qwen2_vl": "qwen2-vl",
         "qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen2.5-vl"}

# Placeholder each family's processor expands into image tokens.
IMAGE_PLACEHOLDER = {"llava-1.5": "<image>", "qwen2-vl": "<|image_pad|>", "qwen2.5-vl": "<|image_pad|>"}
QWEN_VISION_START, QWEN_VISION_END = "<|vision_start|>", "<|vision_end|>"
_RESERVED = {"llava-1.5": ("<image>",),
             "qwen": ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>",
                      "<|im_start|>", "<|im_end|>")}

LLAVA_SYSTEM_LMMS_EVAL = ("A chat between a curious user and an artificial intelligence assistant. "
                          "The assistant gives helpful, detailed, and polite answers to the user's "
                          "questions.")
LLAVA_SYSTEM_VLMEVALKIT = ("A chat between a curious human and an artificial intelligence assistant. "
                           "The assistant gives helpful, detailed, and polite answers to the human's "
                           "questions.")  # followed by " USER: " (VLMEvalKit's string ends with the space)
QWEN_SYSTEM = "You are a helpful assistant."

LMMS_OPTIONS_HEADER = "There are several options:"  # both languages (see the module docstring)
LMMS_MMBENCH_POST = {"mmbench-cn": "\n请直接使用所提供的选项字母作为答案回答。",
                     "mmbench-en": "\nAnswer with the option's letter from the given choices directly."}
LMMS_MMBENCH_LETTERS = "ABCDE"
LMMS_MMMU_CHOICE = "Answer with the option's letter from the given choices directly."
LMMS_MMMU_OPEN = "Answer the question using a single word or phrase."
LMMS_MMMU_MAX_K = 7  # replace_images_tokens handles <image 1> .. <image 7>
VLMEVAL_LLAVA_CHOICE = ("\n请直接回答选项字母。",
                        "\nAnswer with the option's letter from the given choices directly.")
VLMEVAL_LLAVA_OPEN = ("\n请直接回答问题。", "\nAnswer the question directly.")
VLMEVAL_QWEN2_CHOICE = ("请直接回答选项字母。", "Please select the correct answer from the options above.")
VLMEVAL_DATASET_CHOICE = "Please select the correct answer from the options above. \n"

# What pandas.read_csv reads as missing by default (pandas' STR_NA_VALUES; a test compares this with
# the installed pandas): VLMEvalKit reads its TSVs that way, so these cells are NaN there.
PANDAS_NA_STRINGS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})

_IMAGE_K = re.compile(r"<image (\d+)>")


@dataclass
class Prompt:
    """The model's input text and, for every character, which part of the prompt it is.

    ``chat`` is what the harness hands a chat template, when it uses one: ("processor" or
    "tokenizer", messages), so ingest can check that the checkpoint's own template renders `text`.
    """

    text: str
    spans: list[tuple[int, int, str]]
    image_spans: list[tuple[int, int, int]]  # (start, end, index into item.images)
    template_id: str
    pieces: list[tuple[str, str]] = field(default_factory=list, repr=False)
    chat: tuple[str, list] | None = field(default=None, repr=False)

    def segment_at(self, char: int) -> str:
        """Segment of the character at `char` (spans are few: a linear scan is fine)."""
        for start, end, segment in self.spans:
            if start <= char < end:
                return segment
        raise IndexError(f"character {char} is outside the prompt (length {len(self.text)})")


def kind_of(model_type: str) -> str:
    if model_type not in KINDS:
        raise ValueError(f"unknown model type '{model_type}'; choose one of {', '.join(KINDS)}")
    return KINDS[model_type]


def build_prompt(item: Item, model_type: str, harness: str = "lmms-eval") -> Prompt:
    """Build the prompt `harness` sends to a model of `model_type` (config.model_type) for this item.

    Raises BenchmarkError (the item is skipped) where the harness itself would fail on the item.
    """
    kind = kind_of(model_type)
    if harness not in HARNESSES:
        raise ValueError(f"unknown harness '{harness}'; choose one of {', '.join(HARNESSES)}")
    if item.prompt_style not in ("mmbench-cn", "mmbench-en", "mmmu"):
        raise ValueError(f"item {item.sample_id}: unknown prompt style '{item.prompt_style}'")
    if harness == "vlmevalkit":
        content, wrap = _vlmevalkit(item, kind)
    else:
        content, wrap = _lmms_eval(item, kind, simple=harness == "lmms-eval-simple")
    _refuse_placeholders(item, kind, content)
    pieces, chat = wrap(content)
    return _assemble(pieces, f"{harness}/{kind}/{item.prompt_style}", chat)


# ----------------------------------------------------------------------------------------------
# Labelled text: the harnesses split, strip and replace; every character keeps its segment.


class _Text:
    """A string with one segment label per character."""

    __slots__ = ("chars", "labels")

    def __init__(self, chars: str = "", labels: tuple[str, ...] = ()) -> None:
        self.chars, self.labels = chars, tuple(labels)

    @classmethod
    def of(cls, *pieces: tuple[str, str]) -> _Text:
        return cls("".join(t for _, t in pieces), tuple(s for s, t in pieces for _ in t))

    def __add__(self, other: _Text) -> _Text:
        return _Text(self.chars + other.chars, self.labels + other.labels)

    def __str__(self) -> str:
        return self.chars

    def _slice(self, a: int, b: int) -> _Text:
        return _Text(self.chars[a:b], self.labels[a:b])

    def replace(self, old: str, new: str) -> _Text:
        """str.replace; the new text takes the segment of the first character it replaces."""
        out, start = _Text(), 0
        while (hit := self.chars.find(old, start)) >= 0:
            out = out + self._slice(start, hit) + _Text(new, (self.labels[hit],) * len(new))
            start = hit + len(old)
        return out + self._slice(start, len(self.chars))

    def split(self, sep: str) -> list[_Text]:
        parts, start = [], 0
        while (hit := self.chars.find(sep, start)) >= 0:
            parts.append(self._slice(start, hit))
            start = hit + len(sep)
        return parts + [self._slice(start, len(self.chars))]

    def strip(self) -> _Text:
        left = len(self.chars) - len(self.chars.lstrip())
        return self._slice(left, left + len(self.chars.strip()))

    def rstrip(self, chars: str | None = None) -> _Text:
        return self._slice(0, len(self.chars.rstrip(chars)))

    def runs(self) -> list[tuple[str, str]]:
        runs: list[tuple[str, str]] = []
        for char, label in zip(self.chars, self.labels):
            if runs and runs[-1][0] == label:
                runs[-1] = (label, runs[-1][1] + char)
            else:
                runs.append((label, char))
        return runs


# Content of a user turn, in harness order: ("text", _Text) or ("image", index into item.images).
Content = list[tuple[str, Any]]


# ----------------------------------------------------------------------------------------------
# lmms-eval


def _lmms_eval(item: Item, kind: str, simple: bool):
    if item.prompt_style == "mmmu":
        text, images = _lmms_mmmu_text(item)
    else:
        text, images = _lmms_mmbench_text(item), list(range(len(item.images)))
    chat_path = not simple and kind != "qwen2-vl"  # qwen2_vl has no chat class in lmms-eval
    if chat_path:
        if item.prompt_style == "mmmu":
            content = _lmms_interleave(text, images)
        else:
            content = [("image", k) for k in images] + [("text", text)]
        wrap = _llava_hf_chat if kind == "llava-1.5" else _qwen_chat
        return content, wrap
    if kind == "llava-1.5":
        return [("image", k) for k in images] + [("text", text)], _llava_vicuna
    text = text.replace("<image>", "")  # models/simple/qwen2*_vl.py
    content = [("image", k) for k in images] + [("text", text)]
    return content, lambda c: _qwen_chat(c, system="explicit")


def _lmms_mmbench_text(item: Item) -> _Text:
    """tasks/mmbench/{cn,en}_utils.py mmbench_doc_to_text with the task's post_prompt."""
    cells = item.cells
    lines = []
    for letter in LMMS_MMBENCH_LETTERS:  # create_options_prompt: truthy cells, not "nan"
        value = cells.get(letter)
        if value and value != "nan":
            lines.append(f"{letter}. {value}\n")
    options = _Text.of(("options", LMMS_OPTIONS_HEADER + "\n" + "".join(lines))).rstrip("\n")
    hint = cells.get("hint")
    if hint == "nan" and item.prompt_style == "mmbench-en":
        hint = None  # en_utils.py also drops the string "nan"; cn_utils.py pastes it
    if hint is not None:  # pd.notna: every other string counts, "" included
        head = _Text.of(("hint", hint), ("question", " " + item.question))
    else:
        head = _Text.of(("question", item.question))
    return (head + _Text.of(("options", " ")) + options
            + _Text.of(("instruction", "\n" + LMMS_MMBENCH_POST[item.prompt_style])))


def _question_type(item: Item) -> str:
    return item.extra.get("question_type") or ("multiple-choice" if item.options else "open")


def _lmms_mmmu_text(item: Item) -> tuple[_Text, list[int]]:
    """tasks/mmmu/utils.py construct_prompt + mmmu_doc_to_visual."""
    question = _Text.of(("question", item.question))
    if _question_type(item) == "multiple-choice":
        options = item.extra.get("options_list", list(item.options.values()))
        parsed = "\n".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options))
        text = question + _Text.of(("options", "\n" + parsed), ("instruction", "\n\n" + LMMS_MMMU_CHOICE))
    else:
        text = question + _Text.of(("instruction", "\n\n" + LMMS_MMMU_OPEN))
    numbers = sorted({int(k) for k in _IMAGE_K.findall(str(text))}, key=lambda k: f"image_{k}")
    return text, [_image_of_number(item, k) for k in numbers]


def _image_of_number(item: Item, k: int) -> int:
    """Index in item.images of MMMU's image_k; the item is skipped where the row has none."""
    numbers = item.extra.get("image_numbers", list(range(1, len(item.images) + 1)))
    if k not in numbers:
        raise BenchmarkError(f"mentions <image {k}> but image_{k} is empty")
    return numbers.index(k)


def _lmms_interleave(text: _Text, images: list[int]) -> Content:
    """tasks/mmmu/utils.py mmmu_doc_to_messages (NUM_IMAGE=1)."""
    for k in range(1, LMMS_MMMU_MAX_K + 1):
        text = text.replace(f"<image {k}>", "<image>")
    pieces = text.split("<image>")
    content: Content = []
    for i, image in enumerate(images):
        if i < len(pieces) - 1:
            piece = pieces[i].strip()
            if str(piece):
                content.append(("text", piece))
        content.append(("image", image))
    content.append(("text", pieces[-1].strip()))
    return content


# ----------------------------------------------------------------------------------------------
# VLMEvalKit


def _pandas_missing(value: str | None) -> bool:
    return value is None or value in PANDAS_NA_STRINGS


def _vlmeval_line(item: Item) -> tuple[str | None, dict[str, str]]:
    """The TSV line as VLMEvalKit's pandas read leaves it: (hint, {letter: option}) without NaNs."""
    if item.prompt_style == "mmmu":
        raw = {chr(ord("A") + i): o for i, o in enumerate(item.extra.get("options_list",
                                                                        list(item.options.values())))}
        hint = None
    else:
        raw = {k: v for k, v in item.cells.items() if k != "hint"}
        hint = item.cells.get("hint")
    options = {k: v for k, v in raw.items() if k in string.ascii_uppercase and not _pandas_missing(v)}
    return (None if _pandas_missing(hint) else hint), options


def _vlmevalkit(item: Item, kind: str):
    if not item.images:  # ImageBaseDataset.__init__ drops rows whose image is NaN
        raise BenchmarkError("has no image, and VLMEvalKit drops rows without one")
    hint, options = _vlmeval_line(item)
    everything = list(range(len(item.images)))  # dump_image: all of the line's images, in order
    if kind == "llava-1.5":
        return [("image", k) for k in everything] + [("text", _vlmeval_llava_text(item, hint, options))], \
            _llava_vlmevalkit
    if kind == "qwen2-vl":
        text = _vlmeval_qwen2_text(item, hint, options)
        return [("image", k) for k in everything] + [("text", text)], _qwen_chat
    text = _vlmeval_dataset_text(item, hint, options)
    if item.prompt_style == "mmmu":
        return _split_mmmu(item, text), _qwen_chat
    return [("image", k) for k in everything] + [("text", text)], _qwen_chat


def _option_lines(options: dict[str, str]) -> str:
    return "".join(f"\n{key}. {value}" for key, value in options.items())


def _vlmeval_llava_text(item: Item, hint: str | None, options: dict[str, str]) -> _Text:
    """vlm/llava/llava.py LLaVA.build_prompt."""
    head = (_Text.of(("hint", hint), ("question", "\n" + item.question)) if hint is not None
            else _Text.of(("question", item.question)))
    text = head + _Text.of(("options", _option_lines(options)))
    table = VLMEVAL_LLAVA_CHOICE if options else VLMEVAL_LLAVA_OPEN
    return text + _Text.of(("instruction", table[0] if has_chinese(str(text)) else table[1]))


def _hint_question_options(item: Item, hint: str | None, options: dict[str, str]) -> _Text:
    text = _Text.of(("hint", f"Hint: {hint}\n")) if hint is not None else _Text()
    text = text + _Text.of(("question", f"Question: {item.question}\n"))
    if options:
        text = text + _Text.of(("options", "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())))
    return text


def _vlmeval_qwen2_text(item: Item, hint: str | None, options: dict[str, str]) -> _Text:
    """vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_mcq_prompt / _build_mmmu_prompt."""
    text = _hint_question_options(item, hint, options)
    if options:
        if item.prompt_style == "mmmu":
            instruction = VLMEVAL_DATASET_CHOICE
        else:
            instruction = VLMEVAL_QWEN2_CHOICE[0] if has_chinese(str(text)) else VLMEVAL_QWEN2_CHOICE[1]
        text = text + _Text.of(("instruction", instruction))
    return text.rstrip()


def _vlmeval_dataset_text(item: Item, hint: str | None, options: dict[str, str]) -> _Text:
    """dataset/image_mcq.py ImageMCQDataset.build_prompt (no strip: the trailing " \\n" stays)."""
    text = _hint_question_options(item, hint, options)
    if options:
        text = text + _Text.of(("instruction", VLMEVAL_DATASET_CHOICE))
    return text


def _split_mmmu(item: Item, text: _Text) -> Content:
    """dataset/image_mcq.py MMMUDataset.split_MMMU: image k where the text says <image k>."""
    segments = text.split("<image ")
    if len(segments) == 1:
        return [("image", k) for k in range(len(item.images))] + [("text", text)]
    content: Content = [("text", segments[0])]
    for segment in segments[1:]:
        raw = str(segment)
        if len(raw) < 2 or raw[0] not in string.digits or raw[1] != ">":
            raise BenchmarkError(f"'<image {raw[:3]}' is not a one-digit image reference, which "
                                 "VLMEvalKit's MMMU splitter requires")
        content.append(("image", _image_of_number(item, int(raw[0]))))
        content.append(("text", segment._slice(2, len(raw))))
    return content


def _refuse_placeholders(item: Item, kind: str, content: Content) -> None:
    """A placeholder inside the task text would be expanded into image tokens: refuse, clearly."""
    reserved = _RESERVED["llava-1.5" if kind == "llava-1.5" else "qwen"]
    for what, text in content:
        if what != "text":
            continue
        for token in reserved:
            if token in str(text):
                raise BenchmarkError(
                    f"item {item.sample_id}: its text contains {token!r}, which the {kind} "
                    "processor treats as an image or control token; remove it from the question")


# ----------------------------------------------------------------------------------------------
# Chat wrappers: content -> labelled pieces (segment, text, image index or None), plus the
# messages the harness hands a chat template.

Piece = tuple[str, str, int | None]


def _text_pieces(text: _Text) -> list[Piece]:
    return [(segment, chars, None) for segment, chars in text.runs()]


def _first_segment(text: _Text, default: str) -> str:
    return text.labels[0] if text.labels else default


def _messages(content: Content) -> list[dict]:
    return [{"type": "image"} if what == "image" else {"type": "text", "text": str(value)}
            for what, value in content]


def _llava_hf_chat(content: Content):
    """llava-1.5-hf's chat template: all images first ("<image>\\n" each), then each text + " "."""
    pieces: list[Piece] = [("role", "USER: ", None)]
    for what, value in content:
        if what == "image":
            pieces += [("image", IMAGE_PLACEHOLDER["llava-1.5"], value), ("role", "\n", None)]
    texts = [value for what, value in content if what == "text"]
    for i, text in enumerate(texts):
        pieces += _text_pieces(text)
        if i + 1 < len(texts):  # the joining space introduces the next piece
            pieces.append((_first_segment(texts[i + 1], "role"), " ", None))
    pieces.append(("assistant", " ASSISTANT:", None))
    return pieces, ("processor", [{"role": "user", "content": _messages(content)}])


def _llava_vicuna(content: Content):
    """lmms-eval models/simple/llava_hf.py: images joined by " ", "\\n", text; VICUNA_CHAT_TEMPLATE."""
    images = [value for what, value in content if what == "image"]
    (text,) = [value for what, value in content if what == "text"]
    pieces: list[Piece] = [("system", LLAVA_SYSTEM_LMMS_EVAL, None), ("role", " USER: ", None)]
    if images and "<image>" not in str(text):
        for i, k in enumerate(images):
            if i:
                pieces.append(("role", " ", None))
            pieces.append(("image", IMAGE_PLACEHOLDER["llava-1.5"], k))
        pieces.append(("role", "\n", None))
    pieces += _text_pieces(text) + [("assistant", " ASSISTANT:", None)]
    context = "".join(p[1] for p in pieces[2:-1])
    return pieces, ("tokenizer", [{"role": "user", "content": context}])


def _llava_vlmevalkit(content: Content):
    """VLMEvalKit LLaVA.generate_inner: system + "USER: " + concat_tilist + " ASSISTANT: "."""
    pieces: list[Piece] = [("system", LLAVA_SYSTEM_VLMEVALKIT, None)]
    glue = " USER: "
    for what, value in content:
        if what == "image":  # concat_tilist writes " <image> " per image
            pieces += [("role", glue + " ", None), ("image", IMAGE_PLACEHOLDER["llava-1.5"], value)]
            glue = " "
        else:
            if glue:
                pieces.append(("role", glue, None))
                glue = ""
            pieces += _text_pieces(value)
    return pieces + [("assistant", " ASSISTANT: ", None)], None


def _qwen_chat(content: Content, system: str = "template"):
    """The Qwen2-VL / Qwen2.5-VL chat template: system turn, content in order, assistant turn.

    ``system="template"``: no system message is passed and the template adds the default one;
    "explicit": the harness passes QWEN_SYSTEM itself (same text either way).
    """
    pieces: list[Piece] = [("role", "<|im_start|>system\n", None), ("system", QWEN_SYSTEM, None),
                           ("role", "<|im_end|>\n<|im_start|>user\n", None)]
    for what, value in content:
        if what == "image":
            pieces += [("special", QWEN_VISION_START, None),
                       ("image", IMAGE_PLACEHOLDER["qwen2-vl"], value),
                       ("special", QWEN_VISION_END, None)]
        else:
            pieces += _text_pieces(value)
    pieces += [("role", "<|im_end|>\n", None), ("assistant", "<|im_start|>assistant\n", None)]
    messages = [{"role": "user", "content": _messages(content)}]
    if system == "explicit":
        messages.insert(0, {"role": "system", "content": QWEN_SYSTEM})
    return pieces, ("processor", messages)


def _assemble(pieces: list[Piece], template_id: str, chat) -> Prompt:
    spans: list[tuple[int, int, str]] = []
    image_spans: list[tuple[int, int, int]] = []
    parts: list[str] = []
    position = 0
    for segment, text, image in pieces:
        if not text:
            continue
        end = position + len(text)
        if spans and spans[-1][2] == segment and segment not in ("image", "special"):
            spans[-1] = (spans[-1][0], end, segment)  # adjacent pieces of one segment: one span
        else:
            spans.append((position, end, segment))
        if segment == "image" and image is not None:  # an image piece always names its image
            image_spans.append((position, end, int(image)))
        parts.append(text)
        position = end
    return Prompt(text="".join(parts), spans=spans, image_spans=image_spans, template_id=template_id,
                  pieces=[(s, t) for s, t, _ in pieces if t], chat=chat)
