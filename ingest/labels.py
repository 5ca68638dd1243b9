"""Labels of every token of one sample: modality, segment, image index, token id.

The processor expands each image placeholder into N image tokens, so the model's sequence no longer
lines up with the prompt text. The processor also reports where each placeholder went
(``text_replacement_offsets``); re-tokenising the expanded text with offsets, checking that it gives
exactly the processor's input ids, and mapping every offset back through the replacements gives
each token its character in the prompt, hence its segment. Modality is decided by token id alone,
the rule that matched the model's own vision-feature positions (docs/MODELS.md, "Labels").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.errors import KeygapError

# Segment names for tokens no prompt span covers.
SPECIAL_SEGMENT = "special"  # tokens the tokenizer adds (BOS), which have no characters
IMAGE_SEGMENT = "image"
UNCOVERED_SEGMENT = "template"


class LabelError(KeygapError):
    """The processor's tokens cannot be aligned with the prompt (a processor this code does not know)."""


@dataclass(frozen=True)
class TokenKinds:
    """Token ids that decide a token's modality."""

    image: int
    video: int | None
    special: frozenset


@dataclass
class SampleTokens:
    """One sample's tokens, unpadded, position 0 = first token."""

    token_id: np.ndarray  # int32 [T]
    modality: np.ndarray  # object [T]: image / text / special / video
    segment: np.ndarray  # object [T]
    image_index: np.ndarray  # int16 [T]: index into the item's images, -1 for non-image tokens

    def __len__(self) -> int:
        return len(self.token_id)

    def segment_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.segment.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}


def expand_text(text: str, replacements: list[dict]) -> tuple[str, np.ndarray]:
    """The processor's expanded text and a table [k, 4] of (new_start, new_end, old_start, old_end)."""
    parts, table, cursor = [], [], 0
    out_len = 0
    for rep in sorted(replacements, key=lambda r: r["span"][0]):
        a, b = rep["span"]
        parts.append(text[cursor:a])
        out_len += a - cursor
        new_start = out_len
        parts.append(rep["replacement"])
        out_len += len(rep["replacement"])
        table.append((new_start, out_len, a, b))
        cursor = b
    parts.append(text[cursor:])
    return "".join(parts), np.array(table, dtype=np.int64).reshape(-1, 4)


def label_sample(input_ids: np.ndarray, text: str, spans: list, image_spans: list,
                 replacements: list[dict], tokenizer, kinds: TokenKinds) -> SampleTokens:
    """Label one sample's unpadded input ids.

    ``spans``: (char_start, char_end, segment) over ``text``; ``image_spans``: (start, end,
    image_index) of each placeholder; ``replacements``: the processor's text_replacement_offsets
    for this sample.
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    expanded, table = expand_text(text, replacements)
    enc = tokenizer(expanded, return_offsets_mapping=True)
    if len(enc["input_ids"]) != len(input_ids) or np.any(np.asarray(enc["input_ids"]) != input_ids):
        raise LabelError("the processor's input ids differ from the tokenised prompt: this processor "
                         "changes text in a way keygap does not know; report the model id")
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    start, end = offsets[:, 0], offsets[:, 1]
    # A BPE token can straddle two segments (" 这" = role's space + the hint's first character): it
    # belongs where its last character is, so a word's merged leading space goes with the word.
    last = np.maximum(end - 1, start)

    # Which replacement (if any) each token falls in, and its character in the unexpanded text.
    k = np.searchsorted(table[:, 0], last, side="right") - 1 if len(table) else np.full(len(last), -1)
    inside = (k >= 0) & (last < table[np.maximum(k, 0), 1]) if len(table) else np.zeros(len(last), bool)
    delta = (table[:, 1] - table[:, 0]) - (table[:, 3] - table[:, 2])
    shift = np.concatenate([[0], np.cumsum(delta)])
    done = np.searchsorted(table[:, 1], last, side="right") if len(table) else np.zeros(len(last), int)
    orig = last - shift[done]

    n = len(input_ids)
    segment = np.full(n, UNCOVERED_SEGMENT, dtype=object)
    if spans:
        sp = sorted(spans, key=lambda s: s[0])
        s_start = np.array([s[0] for s in sp])
        s_end = np.array([s[1] for s in sp])
        s_name = np.array([s[2] for s in sp], dtype=object)
        j = np.searchsorted(s_start, orig, side="right") - 1
        hit = (j >= 0) & (orig < s_end[np.maximum(j, 0)])
        segment[hit] = s_name[j[hit]]
    segment[end == start] = SPECIAL_SEGMENT

    image_index = np.full(n, -1, dtype=np.int16)
    if len(table):
        placeholder_image = np.array([_image_of(a, b, image_spans) for _, _, a, b in table], dtype=np.int16)
        image_index[inside] = placeholder_image[k[inside]]
        segment[inside] = IMAGE_SEGMENT

    modality = np.full(n, "text", dtype=object)
    modality[np.isin(input_ids, list(kinds.special))] = "special"
    if kinds.video is not None:
        modality[input_ids == kinds.video] = "video"
    modality[input_ids == kinds.image] = "image"
    image_index[modality != "image"] = -1
    return SampleTokens(token_id=input_ids.astype(np.int32), modality=modality, segment=segment,
                        image_index=image_index)


def _image_of(a: int, b: int, image_spans: list) -> int:
    for s, e, idx in image_spans:
        if s <= a and b <= e:
            return int(idx)
    raise LabelError(f"an image placeholder at characters {a}-{b} lies in no image span of the prompt")


def token_texts(tokenizer, token_ids) -> dict[str, str]:
    """Each distinct id's text as the run's own tokenizer decodes it alone (e.g. " the", "<image>"), keyed by
    the id as a string (a JSON object's keys are strings). Stored with every sample, so the keys of a
    store can be read as words without the tokenizer at hand."""
    ids = sorted({int(i) for i in token_ids})
    return {str(i): tokenizer.decode([i]) for i in ids}
