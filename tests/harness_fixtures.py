"""Awkward benchmark rows, written in each harness's own input format, for the harness tests.

MMBench rows go into VLMEvalKit's TSV (what VLMEvalKit reads; written with pandas, as its TSVs
are) and into lmms-lab's Parquet layout (what lmms-eval reads), in Chinese and in English. MMMU
rows go into the Hugging Face Parquet tree (what lmms-eval and keygap read) and into a VLMEvalKit
MMMU TSV made from the same rows (options spread over A, B, ...; images as one base64 cell or a
list of them). Pictures are the bundled sample's, plus a 512 x 384 photograph and bytes that are
no picture at all. ``WHAT`` says why each row is there. Every option column holds some text, as
in the published files: pandas turns a column of numbers only into numbers (a listed deviation).
"""
from __future__ import annotations

import base64
import functools
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ingest.benchmarks import make_sample as ms
from ingest.models import image_only_processor_class, load_model

CORRUPT = b"these bytes are no picture at all" * 3
# preprocessor_config.json of Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct
QWEN_CHECKPOINT_PIXELS = {"shortest_edge": 3136, "longest_edge": 12845056}


@functools.cache
def tiny_model(name: str):
    return load_model(name, device="cpu")


def checkpoint_processor(lm, folder, **kwargs):
    """The processor as a harness loads it from a checkpoint folder (``from_pretrained(folder,
    **kwargs)``); for Qwen the folder holds the published 7B pixel limits. The image-only subclass:
    the video processor needs torchvision, which is not installed; kwargs travel alike."""
    if lm.family == "llava":
        return lm.processor
    saved = lm.processor.image_processor.size
    lm.processor.image_processor.size = dict(QWEN_CHECKPOINT_PIXELS)
    try:
        lm.processor.save_pretrained(folder)
    finally:
        lm.processor.image_processor.size = saved
    return image_only_processor_class(type(lm.processor)).from_pretrained(folder, **kwargs)


@functools.lru_cache(maxsize=1)
def pictures() -> dict[str, bytes]:
    images = dict(ms.build_images())
    wide = Image.open(io.BytesIO(images["china"])).convert("RGB").resize((512, 384))
    buffer = io.BytesIO()
    wide.save(buffer, format="JPEG", quality=90)
    images["wide"] = buffer.getvalue()
    images["corrupt"] = CORRUPT
    return images


# ------------------------------------------------------------------------------------- MMBench
# (index, hint, options A..E, picture or the index whose picture the row reuses, why)
_CN = {"q": "图中是什么？", "opts": ("塔楼", "花朵", "数字", "汽车"), "hint": "这是一张照片。\n请仔细看。"}
_EN = {"q": "What is shown in the image?", "opts": ("A pagoda", "A flower", "A digit", "A car"),
       "hint": "This is a photograph.\nLook closely."}


def _mmbench_specs(lang: dict) -> list[tuple]:
    four = dict(zip("ABCD", lang["opts"]))
    return [
        (0, lang["hint"], four, "china", "hint with a newline"),
        (1, None, four, "digit-1", "no hint"),
        (2, " ", four, "digit-2", "whitespace-only hint"),
        (3, "", four, 0, "empty-string hint; image is a reference to row 0"),
        (4, "nan", four, "digit-4", "hint is the string 'nan'"),
        (5, None, {"A": "None", "B": "NA", "C": "3", "D": "5"}, "digit-5", "option texts None and NA"),
        (6, "提示：看图。", {**four, "E": "以上都不是"}, "flower", "five options; a Chinese hint"),
        (7, None, {"A": lang["opts"][0], "B": lang["opts"][1], "C": None, "D": lang["opts"][3]},
         "digit-7", "option C missing between others"),
        (8, None, four, "wide", "a 512 x 384 picture"),
        (9, None, four, "corrupt", "bytes that are no picture"),
        (10, "  spaces around  ", {"A": " padded ", "B": "tab\there", "C": "", "D": "nan"}, "digit-3",
         "padded cells, a tab, an empty option, option 'nan'"),
        (1_000_003, "", {"A": lang["opts"][1], "B": lang["opts"][2], "C": lang["opts"][3],
                         "D": lang["opts"][0]}, 3, "CircularEval copy: image 1000003 -> 3 -> 0"),
    ]


def mmbench_rows(style: str) -> list[dict]:
    """Logical rows: hint / options None where the cell is missing; image bytes or a row index."""
    lang = _CN if style == "mmbench-cn" else _EN
    images = pictures()
    rows = []
    for index, hint, options, picture, why in _mmbench_specs(lang):
        row = {"index": index, "question": lang["q"], "hint": hint}
        row.update({letter: options.get(letter) for letter in "ABCDE"})
        row.update({"answer": "A", "category": "fixture", "l2-category": "fixture", "source": why,
                    "comment": None, "split": "dev",
                    "image": picture if isinstance(picture, int) else images[picture]})
        rows.append(row)
    return rows


WHAT = {f"mmbench/{spec[0]}": spec[4] for spec in _mmbench_specs(_EN)}


def _resolved(rows: list[dict]) -> list[dict]:
    by_index = {r["index"]: r for r in rows}
    out = []
    for row in rows:
        image = row["image"]
        while isinstance(image, int):
            image = by_index[image]["image"]
        out.append({**row, "image": image})
    return out


def write_mmbench_tsv(path, rows: list[dict]) -> None:
    """VLMEvalKit's layout: base64 image cells, a reuse written as the other row's index."""
    frame = pd.DataFrame([{**r, "image": str(r["image"]) if isinstance(r["image"], int)
                           else base64.b64encode(r["image"]).decode()} for r in rows])
    frame.to_csv(path, sep="\t", index=False)


MMBENCH_PARQUET_SCHEMA = pa.schema(
    [("index", pa.int64()), ("question", pa.string()), ("hint", pa.string())]
    + [(letter, pa.string()) for letter in "ABCDE"]
    + [("answer", pa.string()), ("category", pa.string()),
       ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
       ("source", pa.string()), ("L2-category", pa.string()), ("comment", pa.string()),
       ("split", pa.string())])


def write_mmbench_parquet(path, rows: list[dict]) -> None:
    """lmms-lab's layout: every row carries its picture; nulls stay null, strings stay strings."""
    records = []
    for row in _resolved(rows):
        record = {k: v for k, v in row.items() if k != "l2-category"}
        record["L2-category"] = row["l2-category"]
        record["image"] = {"bytes": row["image"], "path": None}
        records.append(record)
    pq.write_table(pa.Table.from_pylist(records, schema=MMBENCH_PARQUET_SCHEMA), path)


def write_chain_below_tsv(path) -> None:
    """1000001 -> 1 -> 0 with row 1 below row 1000001: VLMEvalKit cannot resolve that order."""
    rows = mmbench_rows("mmbench-en")[:2]
    rows = [rows[0], {**rows[1], "index": 1_000_001, "image": 1}, {**rows[1], "image": 0}]
    write_mmbench_tsv(path, rows)


# ---------------------------------------------------------------------------------------- MMMU
# (id, question, options, question_type, pictures (image_1, image_2, ...), why)
_MMMU_SPECS = [
    ("validation_Math_1", "Which digit is written in <image 1>?", ["1", "4", "7", "none of these"],
     "multiple-choice", ["digit-1"], "one image"),
    ("validation_Math_2", "Is the digit in <image 2> larger than the digit in <image 1>?", ["Yes", "No"],
     "multiple-choice", ["digit-2", "digit-3"], "mentioned in reverse order"),
    ("validation_Art_1", "Which image shows a flower?", ["<image 1>", "<image 2>"], "multiple-choice",
     ["china", "flower"], "images only in the options"),
    ("validation_Math_3", "Look at <image 1>. Is <image 1> a handwritten digit?", ["Yes", "No"],
     "multiple-choice", ["digit-5"], "one image mentioned twice"),
    ("validation_Math_4", "What digit is written in <image 1>?", ["<image 2>", "7"], "open",
     ["digit-4", "digit-6"], "open question with a non-empty options list"),
    ("validation_Math_5", "What do the two pictures show?", ["Digits", "Flowers"], "multiple-choice",
     ["digit-7", "digit-8"], "no placeholder, two images"),
    ("validation_Math_6", "How many strokes has <image 1>?", ["None", "NA", "one", "2"],
     "multiple-choice", ["digit-9"], "option texts None and NA"),
    ("validation_Math_7", "Compare <image 1> with <image 3>.", ["Same", "Different"],
     "multiple-choice", ["digit-1", "digit-2"], "mentions an image the row lacks"),
    ("validation_Math_8", "How many digits are in <image 1>?", [], "open", ["digit-0"],
     "open question, no options"),
    ("validation_Art_2", "<image 1> What is the main subject?", ["A pagoda", "A lake"],
     "multiple-choice", ["wide"], "a 512 x 384 picture, placeholder first"),
    ("validation_Math_9", "  Here:\n<image 1>\n  which digit?  ", ["0", "9"], "multiple-choice",
     ["digit-9"], "whitespace around the placeholder"),
    ("validation_Math_10", "Which digit is in <image 1>?", ["1", "2"], "multiple-choice", ["corrupt"],
     "bytes that are no picture"),
]
WHAT.update({f"mmmu/{spec[0]}": spec[5] for spec in _MMMU_SPECS})


def mmmu_rows() -> list[dict]:
    images = pictures()
    rows = []
    for sid, question, options, qtype, names, _ in _MMMU_SPECS:
        row = {"id": sid, "question": question, "options": repr(options), "explanation": "",
               "img_type": "['Photographs']", "answer": "A", "topic_difficulty": "Easy",
               "question_type": qtype, "subfield": "fixture"}
        for k in range(1, 8):
            row[f"image_{k}"] = ({"bytes": images[names[k - 1]], "path": f"{sid}_{k}.jpg"}
                                 if k <= len(names) else None)
        rows.append(row)
    return rows


def write_mmmu_tree(root, rows: list[dict]) -> None:
    by_subject: dict[str, list[dict]] = {}
    for row in rows:
        by_subject.setdefault(row["id"].split("_")[1], []).append(row)
    for subject, subject_rows in by_subject.items():
        (root / subject).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(subject_rows, schema=ms.MMMU_SCHEMA),
                       root / subject / "validation-00000-of-00001.parquet")


def write_mmmu_vlmevalkit_tsv(path, rows: list[dict]) -> None:
    """VLMEvalKit's MMMU_DEV_VAL layout, made from the Hugging Face rows (our reading of it)."""
    records = []
    for number, row in enumerate(rows):
        options = eval(row["options"])
        images = [base64.b64encode(row[f"image_{k}"]["bytes"]).decode() for k in range(1, 8)
                  if row[f"image_{k}"] is not None]
        record = {"index": number, "id": row["id"], "question": row["question"]}
        record.update({chr(ord("A") + i): o for i, o in enumerate(options)})
        record.update({"answer": row["answer"], "question_type": row["question_type"],
                       "image": images[0] if len(images) == 1 else str(images)})
        records.append(record)
    pd.DataFrame(records).to_csv(path, sep="\t", index=False)


def write_all(root) -> None:
    """Every fixture file: <style>.tsv and <style>.parquet for MMBench, mmmu/ and mmmu.tsv for MMMU."""
    for style in ("mmbench-cn", "mmbench-en"):
        rows = mmbench_rows(style)
        write_mmbench_tsv(root / f"{style}.tsv", rows)
        write_mmbench_parquet(root / f"{style}.parquet", rows)
    write_mmmu_tree(root / "mmmu", mmmu_rows())
    write_mmmu_vlmevalkit_tsv(root / "mmmu.tsv", mmmu_rows())
