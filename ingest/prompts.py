"""Harness prompt templates, built as labelled pieces so every character knows its segment.

Keys depend on the exact prompt (under causal attention, every token's key depends on all text
before it), so keygap reproduces what the two harnesses people actually evaluate with send to
the model, and records a template id per sample. Sources (read in their repositories):

lmms-eval
  llava   models/llava_hf.py: "<image>" per image joined by " ", then "\\n" + task text, in
          its VICUNA_CHAT_TEMPLATE: "A chat between a curious user ... USER: {text} ASSISTANT:".
  qwen2-vl models/simple/qwen2_5_vl.py: system "You are a helpful assistant.", the images
          first, then the text, in the Qwen2-VL chat template; "<image>" is deleted from text.
  MMBench tasks/mmbench/{cn,en}_utils.py: "{hint} {question} {options}" (no hint: "{question}
          {options}"), options = "有如下几个选项：" / "There are several options:" then "A. ..."
          lines, then "\\n" + post_prompt "\\n请直接使用所提供的选项字母作为答案回答。" /
          "\\nAnswer with the option's letter from the given choices directly.".
  MMMU    tasks/mmmu/utils.py: "{question}\\n{A. ..\\nB. ..}\\n\\nAnswer with the option's letter
          from the given choices directly." (open questions: "{question}\\n\\nAnswer the
          question using a single word or phrase."). interleaved_format is false by default,
          so the `<image k>` text STAYS in the question, and the images all come first (in
          order of k; see benchmarks/mmmu.py). keygap does the same.

VLMEvalKit
  llava   vlm/llava/llava.py (LLaVA): system "A chat between a curious human ... human's
          questions. " + "USER: " + " <image> " per image + text + " ASSISTANT: "; text =
          hint + "\\n" + question + "\\nA. .." lines + "\\n请直接回答选项字母。" when the text has
          Chinese characters, else "\\nAnswer with the option's letter from the given choices
          directly." (no options: "\\n请直接回答问题。" / "\\nAnswer the question directly.").
          MMMU goes through the same MCQ prompt, `<image k>` text kept.
  qwen2-vl vlm/qwen2_vl/prompt.py (Qwen2VLPromptMixin): "Hint: {hint}\\nQuestion: {question}
          \\nOptions:\\nA. ..\\n" + "请直接回答选项字母。" (Chinese) or "Please select the correct
          answer from the options above." then rstrip; MMMU always uses the English sentence.
          No system prompt is passed, so the chat template inserts "You are a helpful
          assistant." - the same text lmms-eval passes.

Deliberate difference: a hint stored as the string "nan" (the Hugging Face MMBench copies do
this) is treated as no hint; lmms-eval's CN task pastes the literal "nan" into the prompt.

Segments: template glue ("USER: ", "<|im_start|>user\\n", separators between images) is
"role"; the closing "ASSISTANT:" / "<|im_start|>assistant\\n" is "assistant"; inside the task
text a separator belongs to the segment it introduces (" question", "\\n\\ninstruction"), which
is also where a SentencePiece tokenizer attaches a leading space. For Qwen the "image" span is
exactly "<|image_pad|>" (the token the processor expands); <|vision_start|> and <|vision_end|>
are "special" spans. image_spans point at the "image" spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.benchmarks.base import BenchmarkError, Item, has_chinese

FAMILIES = ("llava", "qwen2-vl")
HARNESSES = ("lmms-eval", "vlmevalkit")
SEGMENTS = ("system", "role", "image", "special", "hint", "question", "options", "instruction",
            "assistant")

# Placeholder each family's processor expands into image tokens.
IMAGE_PLACEHOLDER = {"llava": "<image>", "qwen2-vl": "<|image_pad|>"}
_FAMILY_LABEL = {"llava": "llava-1.5", "qwen2-vl": "qwen2-vl"}
QWEN_VISION_START, QWEN_VISION_END = "<|vision_start|>", "<|vision_end|>"
_RESERVED = {"llava": ("<image>",),
             "qwen2-vl": ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>",
                          "<|im_start|>", "<|im_end|>")}

LLAVA_SYSTEM_LMMS_EVAL = ("A chat between a curious user and an artificial intelligence assistant. "
                          "The assistant gives helpful, detailed, and polite answers to the user's "
                          "questions.")
LLAVA_SYSTEM_VLMEVALKIT = ("A chat between a curious human and an artificial intelligence assistant. "
                           "The assistant gives helpful, detailed, and polite answers to the human's "
                           "questions.")
QWEN_SYSTEM = "You are a helpful assistant."

LMMS_MMBENCH = {
    "mmbench-cn": ("有如下几个选项：", "\n请直接使用所提供的选项字母作为答案回答。"),
    "mmbench-en": ("There are several options:",
                   "\nAnswer with the option's letter from the given choices directly."),
}
LMMS_MMMU_CHOICE = "Answer with the option's letter from the given choices directly."
LMMS_MMMU_OPEN = "Answer the question using a single word or phrase."
VLMEVAL_LLAVA_CHOICE = ("\n请直接回答选项字母。",
                        "\nAnswer with the option's letter from the given choices directly.")
VLMEVAL_LLAVA_OPEN = ("\n请直接回答问题。", "\nAnswer the question directly.")
VLMEVAL_QWEN_CHOICE = ("请直接回答选项字母。", "Please select the correct answer from the options above.")
VLMEVAL_QWEN_MMMU = "Please select the correct answer from the options above. \n"


@dataclass
class Prompt:
    """The model's input text and, for every character, which part of the prompt it is."""

    text: str
    spans: list[tuple[int, int, str]]
    image_spans: list[tuple[int, int, int]]
    template_id: str
    pieces: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def segment_at(self, char: int) -> str:
        """Segment of the character at `char` (spans are few: a linear scan is fine)."""
        for start, end, segment in self.spans:
            if start <= char < end:
                return segment
        raise IndexError(f"character {char} is outside the prompt (length {len(self.text)})")


def build_prompt(item: Item, family: str, harness: str = "lmms-eval") -> Prompt:
    """Build the prompt `harness` would send to a `family` model for this item."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}'; choose one of {', '.join(FAMILIES)}")
    if harness not in HARNESSES:
        raise ValueError(f"unknown harness '{harness}'; choose one of {', '.join(HARNESSES)}")
    style = item.prompt_style
    if style not in ("mmbench-cn", "mmbench-en", "mmmu"):
        raise ValueError(f"item {item.sample_id}: unknown prompt style '{style}'")

    if harness == "lmms-eval":
        body = _lmms_body(item)
        if family == "qwen2-vl":
            body = [(seg, text.replace("<image>", "")) for seg, text in body]
    else:
        body = _vlmeval_llava_body(item) if family == "llava" else _vlmeval_qwen_body(item)
    _refuse_placeholders(item, family, body)

    n_images = len(item.images)
    if family == "llava":
        pieces = (_llava_lmms if harness == "lmms-eval" else _llava_vlmeval)(n_images, body)
    else:
        pieces = _qwen_chat(n_images, body)
    template_id = f"{harness}/{_FAMILY_LABEL[family]}/{style}"
    return _assemble(pieces, template_id)


# ----------------------------------------------------------------------------------------------
# Task text (the part inside the user turn, after the images)


def _options_lines(options: dict[str, str]) -> list[str]:
    return [f"{letter}. {text}" for letter, text in options.items()]


def _lmms_body(item: Item) -> list[tuple[str, str]]:
    if item.prompt_style == "mmmu":
        if item.options:
            return [("question", item.question),
                    ("options", "\n" + "\n".join(_options_lines(item.options))),
                    ("instruction", "\n\n" + LMMS_MMMU_CHOICE)]
        return [("question", item.question), ("instruction", "\n\n" + LMMS_MMMU_OPEN)]
    lead, post = LMMS_MMBENCH[item.prompt_style]
    # create_options_prompt: lead + "\n" + "A. x\n" lines, then rstrip("\n")
    options = (lead + "\n" + "".join(line + "\n" for line in _options_lines(item.options))).rstrip("\n")
    pieces = []
    if item.hint is not None:
        pieces += [("hint", item.hint), ("question", " " + item.question)]
    else:
        pieces += [("question", item.question)]
    return pieces + [("options", " " + options), ("instruction", "\n" + post)]


def _vlmeval_llava_body(item: Item) -> list[tuple[str, str]]:
    pieces = []
    if item.hint is not None:
        pieces += [("hint", item.hint), ("question", "\n" + item.question)]
    else:
        pieces += [("question", item.question)]
    if item.options:
        pieces.append(("options", "".join("\n" + line for line in _options_lines(item.options))))
    chinese = has_chinese("".join(text for _, text in pieces))
    table = VLMEVAL_LLAVA_CHOICE if item.options else VLMEVAL_LLAVA_OPEN
    pieces.append(("instruction", table[0] if chinese else table[1]))
    return pieces


def _vlmeval_qwen_body(item: Item) -> list[tuple[str, str]]:
    pieces = []
    if item.hint is not None:
        pieces += [("hint", f"Hint: {item.hint}"), ("question", f"\nQuestion: {item.question}")]
    else:
        pieces += [("question", f"Question: {item.question}")]
    if item.options:
        pieces.append(("options", "\nOptions:" + "".join("\n" + line
                                                          for line in _options_lines(item.options))))
        if item.prompt_style == "mmmu":
            instruction = VLMEVAL_QWEN_MMMU
        else:
            chinese = has_chinese("".join(text for _, text in pieces))
            instruction = VLMEVAL_QWEN_CHOICE[0] if chinese else VLMEVAL_QWEN_CHOICE[1]
        pieces.append(("instruction", "\n" + instruction))
    return _rstrip(pieces)  # the mixin ends with prompt.rstrip()


def _rstrip(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    pieces = list(pieces)
    while pieces:
        segment, text = pieces[-1]
        stripped = text.rstrip()
        if stripped:
            pieces[-1] = (segment, stripped)
            break
        pieces.pop()
    return pieces


def _refuse_placeholders(item: Item, family: str, body: list[tuple[str, str]]) -> None:
    """A placeholder inside the task text would be expanded into image tokens: refuse, clearly."""
    for _, text in body:
        for token in _RESERVED[family]:
            if token in text:
                raise BenchmarkError(
                    f"item {item.sample_id}: its text contains {token!r}, which the {family} "
                    "processor treats as an image or control token; remove it from the question")


# ----------------------------------------------------------------------------------------------
# Chat wrappers


def _llava_lmms(n_images: int, body: list[tuple[str, str]]) -> list[tuple[str, str]]:
    pieces = [("system", LLAVA_SYSTEM_LMMS_EVAL), ("role", " USER: ")]
    for i in range(n_images):
        if i:
            pieces.append(("role", " "))
        pieces.append(("image", IMAGE_PLACEHOLDER["llava"]))
    pieces.append(("role", "\n"))
    return pieces + body + [("assistant", " ASSISTANT:")]


def _llava_vlmeval(n_images: int, body: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # system_prompt ends with a space; 'USER: ' follows; each image is ' <image> '.
    pieces = [("system", LLAVA_SYSTEM_VLMEVALKIT)]
    glue = " USER: "
    for _ in range(n_images):
        pieces += [("role", glue + " "), ("image", IMAGE_PLACEHOLDER["llava"])]
        glue = " "
    pieces.append(("role", glue))
    return pieces + body + [("assistant", " ASSISTANT: ")]


def _qwen_chat(n_images: int, body: list[tuple[str, str]]) -> list[tuple[str, str]]:
    pieces = [("role", "<|im_start|>system\n"), ("system", QWEN_SYSTEM),
              ("role", "<|im_end|>\n<|im_start|>user\n")]
    for _ in range(n_images):
        pieces += [("special", QWEN_VISION_START), ("image", IMAGE_PLACEHOLDER["qwen2-vl"]),
                   ("special", QWEN_VISION_END)]
    return pieces + body + [("role", "<|im_end|>\n"), ("assistant", "<|im_start|>assistant\n")]


def _assemble(pieces: list[tuple[str, str]], template_id: str) -> Prompt:
    spans, image_spans, parts = [], [], []
    position = 0
    for segment, text in pieces:
        if not text:
            continue
        end = position + len(text)
        if spans and spans[-1][2] == segment and segment not in ("image", "special"):
            spans[-1] = (spans[-1][0], end, segment)  # adjacent pieces of one segment: one span
        else:
            spans.append((position, end, segment))
        if segment == "image":
            image_spans.append((position, end, len(image_spans)))
        parts.append(text)
        position = end
    return Prompt(text="".join(parts), spans=spans, image_spans=image_spans,
                  template_id=template_id, pieces=[p for p in pieces if p[1]])

