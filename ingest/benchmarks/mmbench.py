"""MMBench readers: the VLMEvalKit TSV (MMBench_DEV_CN.tsv) and the Hugging Face Parquet copies.

TSV facts that shaped this code: pandas writes it, so a field holding a tab, a quote or a newline
(hints often have newlines) is double-quoted with "" escapes - the csv module reads that, a plain
line split does not. `image` is a base64 JPEG, or (64 characters or fewer) the index of another
row whose image it reuses; CircularEval copies (index >= 1,000,000) reuse their original's image.
A reference to a row that is itself a reference resolves as VLMEvalKit resolves it (one pass in
file order, so through rows above only). VLMEvalKit multi-image TSVs put a Python-list string of
base64 images in `image`; that is read too.

The hint and option cells also go into ``Item.cells`` as the file holds them (an empty TSV cell,
which is how pandas writes a missing value, becomes None): the harnesses disagree on which of
them are missing, so ingest.prompts applies each harness's own rule.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .base import (
    CIRCULAR_OFFSET,
    BenchmarkError,
    BenchmarkSource,
    Item,
    has_chinese,
    image_hash,
    is_missing,
)

OPTION_LETTERS = "ABCDEFGHI"
# VLMEvalKit's own rule: an `image` cell this short is a reference to another row's index.
IMAGE_REFERENCE_MAX_CHARS = 64
REQUIRED_COLUMNS = ("index", "question", "image")
_EXTRA_COLUMNS = ("source", "split", "l2-category", "comment")

_MMBENCH_FORMAT_HELP = ("expected VLMEvalKit MMBench columns index, question, hint, A, B, C, D, "
                        "answer, category, image, ...")


def _text(value) -> str | None:
    return None if is_missing(value) else str(value)


def _sample_id(raw) -> int:
    """MMBench indices are integers; pandas may have written them as '12' or '12.0'."""
    number = float(str(raw).strip())
    if not math.isfinite(number) or number != int(number) or number < 0:  # 'inf', '1e400', 'nan'
        raise ValueError
    return int(number)


def _raw_cells(row: dict, empty_is_null: bool) -> dict[str, str | None]:
    """The hint and option cells as the file holds them; None for a null (or empty TSV) cell."""
    cells = {}
    for key in ("hint", *OPTION_LETTERS):
        if key in row:
            value = row[key]
            cells[key] = None if value is None or (empty_is_null and value == "") else str(value)
    return cells


def _fields_to_item(row: dict, benchmark: str, prompt_style: str, images: list[bytes],
                    hashed: str | None = None, empty_is_null: bool = False) -> Item:
    """Shared by the TSV and the Parquet reader: both carry the same MMBench fields."""
    index = _sample_id(row["index"])
    if is_missing(row.get("question")):
        raise ValueError("has no question")
    options = {}
    for letter in OPTION_LETTERS:
        value = row.get(letter)
        if not is_missing(value):
            options[letter] = str(value)
    extra = {key: str(row[key]) for key in _EXTRA_COLUMNS if not is_missing(row.get(key))}
    return Item(
        sample_id=str(index),
        benchmark=benchmark,
        question=str(row["question"]),
        options=options,
        hint=_text(row.get("hint")),
        answer=_text(row.get("answer")),
        category=_text(row.get("category")),
        images=images,
        image_hash=image_hash(images) if hashed is None else hashed,
        circular_of=str(index % CIRCULAR_OFFSET) if index >= CIRCULAR_OFFSET else None,
        extra=extra,
        prompt_style=prompt_style,
        cells=_raw_cells(row, empty_is_null),
    )


def _style_for(questions: list[str]) -> str:
    """lmms-eval picks the CN or EN wording per task, not per question: decide once per file."""
    chinese = sum(has_chinese(q) for q in questions)
    return "mmbench-cn" if questions and chinese * 2 >= len(questions) else "mmbench-en"


def _decode_cell(cell: str) -> list[bytes]:
    """One base64 picture, or VLMEvalKit's multi-image form: a Python-list string of them."""
    if cell.startswith("["):
        try:
            parts = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            raise ValueError("image looks like a list but cannot be parsed") from None
        return [_b64_image(str(p)) for p in parts]
    return [_b64_image(cell)]


def _b64_image(text: str) -> bytes:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"image is not valid base64 ({exc})") from None
    if not data:
        raise ValueError("image is empty")
    return data


class MMBenchTsv(BenchmarkSource):
    """Reads the whole TSV when opened: image references may point anywhere in the file."""

    def __init__(self, path: Path, name: str | None = None, split: str | None = None,
                 prompt_style: str | None = None) -> None:
        super().__init__(name or "mmbench-cn", "mmbench-tsv", str(path), split)
        rows = self._read_rows(path)
        self.prompt_style = prompt_style or _style_for([r["question"] for r in rows])
        if name is None:
            self.name = self.prompt_style
        self._items = self._build_items(rows)

    def _read_rows(self, path: Path) -> list[dict]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # one base64 image is far over the default
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle, delimiter="\t")
                header = next(reader, None)
                if header is None:
                    raise BenchmarkError(f"{path} is empty; {_MMBENCH_FORMAT_HELP}")
                header = [h.strip() for h in header]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    raise BenchmarkError(
                        f"{path} is not an MMBench TSV: no column {', '.join(missing)}; "
                        f"{_MMBENCH_FORMAT_HELP}")
                rows = []
                for number, fields in enumerate(reader, start=1):
                    if not fields:
                        continue  # a trailing blank line
                    if len(fields) != len(header):
                        self._skip(f"row {number}", f"has {len(fields)} fields, the header has "
                                                    f"{len(header)} (a broken quote or tab?)")
                        continue
                    row: dict[str, Any] = dict(zip(header, fields))
                    row["_row"] = number
                    rows.append(row)
        except UnicodeDecodeError as exc:
            raise BenchmarkError(f"{path} is not UTF-8 text ({exc.reason}); "
                                 f"{_MMBENCH_FORMAT_HELP}") from None
        except csv.Error as exc:
            raise BenchmarkError(f"{path} cannot be parsed as a TSV: {exc}") from None
        return rows

    def _build_items(self, rows: list[dict]) -> list[Item]:
        by_index: dict[int, dict] = {}
        good: list[dict] = []
        for row in rows:
            try:
                index = _sample_id(row["index"])
            except ValueError:
                self._skip(f"row {row['_row']}", f"index {row['index']!r} is not a whole number")
                continue
            if index in by_index:
                self._skip(str(index), f"index {index} appears twice (rows "
                                       f"{by_index[index]['_row']} and {row['_row']}); kept the first")
                continue
            by_index[index] = row
            good.append(row)

        owners = self._image_owners(good, by_index)
        items = []
        decoded: dict[int, tuple[list[bytes], str] | ValueError] = {}  # owner index -> pictures
        splits = sorted({str(row.get("split")) for row in good if row.get("split")})
        if self.split is not None and good and not any(row.get("split", self.split) == self.split for row in good):
            raise BenchmarkError(f"--split {self.split!r}: {self.path} has no rows of that split "
                                 f"(its splits: {', '.join(splits) or 'none'})")
        for row in good:
            if self.split is not None and row.get("split", self.split) != self.split:
                continue  # after indexing: another split's row may still lend its image
            index = _sample_id(row["index"])
            try:
                owner = owners[index]
                if isinstance(owner, ValueError):
                    raise owner
                if owner not in decoded:
                    try:
                        images = _decode_cell(by_index[owner]["image"].strip())
                        decoded[owner] = (images, image_hash(images))
                    except ValueError as exc:
                        decoded[owner] = exc
                result = decoded[owner]
                if isinstance(result, ValueError):
                    where = "" if owner == index else f" (that of index {owner})"
                    raise ValueError(f"{result}{where}")
                # rows sharing a picture share one bytes object: CircularEval copies cost no memory
                items.append(_fields_to_item(row, self.name, self.prompt_style, *result,
                                             empty_is_null=True))
            except ValueError as exc:
                self._skip(str(index), str(exc))
        return items

    @staticmethod
    def _image_owners(rows: list[dict], by_index: dict[int, dict]) -> dict[int, int | ValueError]:
        """Index of the row whose `image` cell holds each row's picture (often the row itself).

        VLMEvalKit (ImageBaseDataset.__init__) replaces short cells by their target's cell in one
        pass in file order, so a reference to a reference resolves when that row comes first
        (1000003 -> 3 -> 0 with row 3 above) and fails otherwise; this does the same.
        """
        owners: dict[int, int | ValueError] = {}
        for row in rows:
            index = _sample_id(row["index"])
            cell = row["image"].strip()
            if is_missing(cell):
                owners[index] = ValueError("has no image")
                continue
            if len(cell) > IMAGE_REFERENCE_MAX_CHARS:
                owners[index] = index
                continue
            try:
                target = _sample_id(cell)
            except ValueError:
                owners[index] = ValueError(f"image cell {cell!r} is neither base64 nor a row index")
                continue
            source = by_index.get(target)
            if source is None:
                owners[index] = ValueError(f"image refers to index {target}, which is not in the file")
            elif target in owners:  # a row above: its reference (if any) is resolved already
                owner = owners[target]
                owners[index] = (ValueError(f"image refers to index {target}, whose image cannot be "
                                            f"used ({owner})") if isinstance(owner, ValueError) else owner)
            elif len(source["image"].strip()) > IMAGE_REFERENCE_MAX_CHARS:
                owners[index] = target  # a picture further down the file
            else:
                owners[index] = ValueError(
                    f"image refers to index {target}, whose image is itself a reference further down "
                    "the file (references resolve through rows above only)")
        return owners

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class MMBenchParquet(BenchmarkSource):
    """lmms-lab/MMBench (config cn) and lmms-lab/MMBench_CN: `image` is struct<bytes, path>.

    Every row carries its own image bytes there, so rows are read in batches while iterating.
    """

    BATCH_ROWS = 64

    def __init__(self, files: list[Path], root: Path, name: str | None = None,
                 split: str | None = None, prompt_style: str | None = None) -> None:
        super().__init__(name or "mmbench-cn", "mmbench-parquet", str(root), split)
        self.files = files
        self._rows = 0
        sample_questions: list[str] = []
        splits: set[str] = set()
        for path in files:
            meta = _checked_parquet(path, REQUIRED_COLUMNS, "an MMBench", _MMBENCH_FORMAT_HELP)
            if split is not None and "split" in meta.schema_arrow.names:  # one small column: is the split there?
                splits.update(str(v) for v in meta.read(columns=["split"]).column("split").unique().to_pylist()
                              if not is_missing(v))
            self._rows += meta.metadata.num_rows
            if len(sample_questions) < 50 and meta.metadata.num_rows:
                head = meta.read_row_group(0, columns=["question"]).column("question")
                sample_questions.extend(str(q) for q in head.to_pylist()[:50])
        self.prompt_style = prompt_style or _style_for(sample_questions)
        if name is None:
            self.name = self.prompt_style
        if splits and split not in splits:
            raise BenchmarkError(f"--split {split!r}: {root} has no rows of that split "
                                 f"(its splits: {', '.join(sorted(splits))})")

    def __len__(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[Item]:
        seen: set[str] = set()
        for path in self.files:
            meta = _parquet_file(path)
            offset = 0
            for batch in meta.iter_batches(batch_size=self.BATCH_ROWS):
                for number, row in enumerate(batch.to_pylist(), start=offset + 1):
                    item = self._row_to_item(row, f"{path.name} row {number}")
                    if item is None:
                        continue
                    if item.sample_id in seen:
                        self._skip(item.sample_id, f"index {item.sample_id} appears twice; "
                                                   "kept the first")
                        continue
                    seen.add(item.sample_id)
                    yield item
                offset += batch.num_rows

    def _row_to_item(self, row: dict, where: str) -> Item | None:
        if self.split is not None and not is_missing(row.get("split")) and row["split"] != self.split:
            return None
        row = dict(row)
        if "L2-category" in row and "l2-category" not in row:
            row["l2-category"] = row.pop("L2-category")
        try:
            sid = str(_sample_id(row["index"]))
        except (ValueError, TypeError):
            self._skip(where, f"index {row.get('index')!r} is not a whole number")
            return None
        image = row.get("image")
        data = image.get("bytes") if isinstance(image, dict) else image
        if not data:
            self._skip(sid, "has no image bytes")
            return None
        try:
            return _fields_to_item(row, self.name, self.prompt_style, [bytes(data)])
        except (ValueError, TypeError) as exc:
            self._skip(sid, f"cannot be read: {exc}")
            return None


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for non-Parquet data
        raise BenchmarkError(f"{path} cannot be read as Parquet: {str(exc).splitlines()[0]}") from None


def _checked_parquet(path: Path, required: Sequence[str], kind: str, help_text: str) -> pq.ParquetFile:
    """A benchmark Parquet file that has every ``required`` column, or one line naming what is missing."""
    meta = _parquet_file(path)
    columns = set(meta.schema_arrow.names)
    missing = [c for c in required if c not in columns]
    if missing:
        raise BenchmarkError(f"{path} is not {kind} Parquet file: no column {', '.join(missing)}; {help_text}")
    return meta
