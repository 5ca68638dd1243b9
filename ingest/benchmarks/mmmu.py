"""MMMU reader: the Hugging Face tree <Subject>/{dev,validation,test}-0000i-of-0000n.parquet.

An item carries every image its row holds (image_1..image_7, in order of k; their numbers in
``extra["image_numbers"]``) and its options as the raw list (``extra["options_list"]``). Which
images a harness sends, and where, is the harness's business: lmms-eval sends the ones the prompt
text mentions, VLMEvalKit all of them or the mentioned ones interleaved (ingest/prompts.py).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import BenchmarkSource, Item, image_hash, is_missing
from .mmbench import _checked_parquet, _parquet_file

MAX_IMAGES = 7
IMAGE_COLUMNS = tuple(f"image_{k}" for k in range(1, MAX_IMAGES + 1))
REQUIRED_COLUMNS = ("id", "question", "options", "image_1")
SPLITS = ("dev", "validation", "test")
DEFAULT_SPLIT = "validation"
_EXTRA_COLUMNS = ("question_type", "subfield", "img_type", "topic_difficulty", "explanation")
_FORMAT_HELP = ("expected MMMU columns id, question, options, answer, image_1..image_7, "
                "question_type")


def split_of(path: Path) -> str | None:
    """'validation-00000-of-00001.parquet' -> 'validation'."""
    match = re.match(r"^([A-Za-z_]+)-\d+-of-\d+\.parquet$", path.name)
    return match.group(1) if match else None


def parse_options(raw) -> list[str]:
    """MMMU stores options as a Python-list STRING ("['1', '2']"): literal_eval, never eval."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return [str(o) for o in raw]
    try:
        value = ast.literal_eval(str(raw))
    except (ValueError, SyntaxError):
        raise ValueError(f"options {str(raw)[:60]!r} is not a Python list literal") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"options {str(raw)[:60]!r} is not a list")
    return [str(o) for o in value]


class MMMUTree(BenchmarkSource):
    BATCH_ROWS = 32

    def __init__(self, files: list[Path], root: Path, name: str | None = None,
                 split: str | None = None) -> None:
        super().__init__(name or "mmmu", "mmmu-parquet", str(root), split)
        self.prompt_style = "mmmu"
        self.files = files
        self._rows = 0
        for path in files:
            self._rows += _checked_parquet(path, REQUIRED_COLUMNS, "an MMMU", _FORMAT_HELP).metadata.num_rows

    def __len__(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[Item]:
        seen: set[str] = set()
        for path in self.files:
            subject = path.parent.name
            meta = _parquet_file(path)
            offset = 0
            for batch in meta.iter_batches(batch_size=self.BATCH_ROWS):
                for number, row in enumerate(batch.to_pylist(), start=offset + 1):
                    where = row.get("id") or f"{path.name} row {number}"
                    try:
                        item = self._row_to_item(row, subject)
                    except ValueError as exc:
                        self._skip(str(where), str(exc))
                        continue
                    if item.sample_id in seen:
                        self._skip(item.sample_id, "id appears twice; kept the first")
                        continue
                    seen.add(item.sample_id)
                    yield item
                offset += batch.num_rows

    def _row_to_item(self, row: dict, subject: str) -> Item:
        if is_missing(row.get("id")):
            raise ValueError("has no id")
        if is_missing(row.get("question")):
            raise ValueError("has no question")
        sid = str(row["id"])
        question = str(row["question"])
        option_list = parse_options(row.get("options"))
        images, numbers = [], []
        for k in range(1, MAX_IMAGES + 1):
            image = row.get(f"image_{k}")
            data = image.get("bytes") if isinstance(image, dict) else image
            if data:
                images.append(bytes(data))
                numbers.append(k)
        extra: dict[str, Any] = {key: str(row[key]) for key in _EXTRA_COLUMNS if not is_missing(row.get(key))}
        extra["subject"] = _subject_of(sid) or subject
        extra["image_numbers"] = numbers
        extra["options_list"] = option_list
        return Item(
            sample_id=sid,
            benchmark=self.name,
            question=question,
            options={chr(ord("A") + i): text for i, text in enumerate(option_list)},
            hint=None,
            answer=None if is_missing(row.get("answer")) else str(row["answer"]),
            category=extra["subject"],
            images=images,
            image_hash=image_hash(images),
            circular_of=None,
            extra=extra,
            prompt_style="mmmu",
        )


def _subject_of(sample_id: str) -> str | None:
    """'validation_Art_Theory_12' -> 'Art_Theory' (the id carries the subject)."""
    match = re.match(r"^[a-z]+_(.+?)_\d+$", sample_id)
    return match.group(1) if match else None
