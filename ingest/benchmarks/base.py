"""What every benchmark reader yields, and the few helpers they share.

Readers hand over ENCODED image bytes and decode nothing: the ingest loop decodes each item's
images itself, so one corrupt image costs one item, not the whole run.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from store.errors import KeygapError

# MMBench CircularEval: a row with index >= this is an option-rotated copy of index % this.
CIRCULAR_OFFSET = 1_000_000

# Prompt styles a reader can ask for; ingest.prompts builds each one per harness.
PROMPT_STYLES = ("mmbench-cn", "mmbench-en", "mmmu")

_CJK = re.compile("[\u4e00-\u9fff]")
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class BenchmarkError(KeygapError, ValueError):
    """A benchmark name, path, file or item that cannot be used; the message says what to do."""


@dataclass
class Item:
    """One benchmark question with its images, in the benchmark's own terms (no prompt yet)."""

    sample_id: str
    benchmark: str
    question: str
    options: dict[str, str]
    hint: str | None
    answer: str | None
    category: str | None
    images: list[bytes]
    image_hash: str
    circular_of: str | None
    extra: dict = field(default_factory=dict)
    # Which published prompt the harness templates build for this item (see PROMPT_STYLES).
    prompt_style: str = "mmbench-cn"
    # The hint and option cells exactly as the file holds them (None = null / empty TSV cell):
    # harnesses disagree on which of them count as missing, so ingest.prompts decides per harness.
    cells: dict[str, str | None] = field(default_factory=dict)


def image_hash(images: list[bytes]) -> str:
    """sha1 of the item's image bytes joined: equal hashes mean the model saw the same pixels."""
    if not images:
        return ""
    return hashlib.sha1(b"".join(images)).hexdigest()


def decode_image(data: bytes, what: str = "image") -> Image.Image:
    """Decode fully (so truncated files fail here, not inside the processor) and convert to RGB."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # "cannot identify image file <_io.BytesIO object at 0x7f...>": the address differs per run,
        # and a skip reason must read the same every time the item is skipped
        reason = _OBJECT_REPR.sub("the image bytes", reason)
        raise BenchmarkError(f"{what} cannot be decoded: {reason}") from None


def is_missing(value) -> bool:
    """Published files write a missing cell as empty, null or the string 'nan' (pandas).

    'None' is NOT missing: it is a real answer option ("How many cats? A. None").
    """
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and value.strip() in ("", "nan", "NaN")


def has_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


class BenchmarkSource:
    """A readable benchmark: iterate it for Items.

    ``skipped`` lists (sample id or "row N", reason) for rows that could not be used. Text files
    are parsed when opened, so their ``skipped`` is complete at once; Parquet sources read images
    lazily, so theirs grows while iterating and ``len()`` counts rows before any were skipped.
    """

    name: str
    kind: str
    path: str
    split: str | None

    def __init__(self, name: str, kind: str, path: str, split: str | None) -> None:
        self.name = name
        self.kind = kind
        self.path = path
        self.split = split
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance to record in a run manifest."""
        return {"benchmark": self.name, "format": self.kind, "path": self.path, "split": self.split,
                "rows": len(self)}

    def _skip(self, where: str, reason: str) -> None:
        self.skipped.append((where, reason))
