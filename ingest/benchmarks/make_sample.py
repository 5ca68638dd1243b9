"""Build the bundled sample benchmark: real images, real questions, both published formats.

Why: keygap must run end to end with nothing downloaded, and the readers must be exercised on
files shaped exactly like the published ones. The images are photographs and handwritten digits
that scikit-learn ships (load_sample_images: china.jpg, a pagoda by a lake; flower.jpg, an
orange dahlia; load_digits: 8x8 scans of handwritten digits, upscaled), so every answer below
is checkable by looking at the picture. Output is deterministic:

    python -m ingest.benchmarks.make_sample            # rewrites ingest/benchmarks/data/
    python -m ingest.benchmarks.make_sample --out DIR

MMBench-CN form (VLMEvalKit TSV): Chinese questions and hints (some with newlines inside the
field, so pandas-style quoting is exercised), base64 JPEG in `image`, rows that reuse another
row's image by index (one of them pointing forward), and CircularEval copies (index >= 1e6)
with rotated options. MMMU form: <Subject>/<split>-00000-of-00001.parquet with image_k
struct<bytes, path>, options as a Python-list string, `<image k>` placeholders, two multi-image
items (one whose placeholders appear out of order, one whose images are named only in the
options) and one open question.
"""

from __future__ import annotations

import argparse
import base64
import csv
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

TSV_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image",
               "source", "l2-category", "comment", "split")
TSV_NAME = "sample_mmbench_cn.tsv"
MMMU_DIR = "sample_mmmu"
PHOTO_SIZE = (320, 214)  # half of the 640 x 427 originals: small files, still a clear picture
DIGIT_SIZE = 112  # 8 x 8 -> 112 x 112, nearest neighbour so the scan's pixels stay honest
JPEG_QUALITY = 90
CIRCULAR = 1_000_000
SOURCE = "scikit-learn sample data"

DIGIT_HINT_CN = "下图是一张 8×8 像素的手写数字扫描图，已放大显示。\n笔画越黑，墨迹越浓。"


@dataclass(frozen=True)
class Question:
    """One sample question, in both languages, with its correct option."""

    image: str
    question_cn: str
    question_en: str
    options_cn: tuple[str, ...]
    options_en: tuple[str, ...]
    answer: str
    category: str
    l2_category: str
    subject: str
    hint_cn: str | None = None
    extra_images: tuple[str, ...] = field(default=())


@functools.lru_cache(maxsize=1)
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # only the generator needs scikit-learn

    digits = load_digits()
    return digits.images, digits.target


def build_images() -> dict[str, bytes]:
    """Name -> JPEG bytes. 'digit-<i>' is load_digits() sample i; its label is known."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    images = {}
    for path, pixels in zip(photos.filenames, photos.images):
        name = Path(path).stem
        picture = Image.fromarray(pixels).resize(PHOTO_SIZE, Image.Resampling.LANCZOS)
        images[name] = _jpeg(picture)
    scans, _ = _digit_images()
    for i in DIGIT_SAMPLES:
        ink = scans[i] / 16.0  # load_digits counts ink 0..16 per pixel
        gray = np.round(255 * (1.0 - ink)).astype(np.uint8)  # dark ink on white paper
        picture = Image.fromarray(gray).resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.NEAREST)
        images[f"digit-{i}"] = _jpeg(picture.convert("RGB"))
    return images


def _jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# load_digits samples used: 0..9 are the digits 0..9 in order; the rest are checked below.
DIGIT_SAMPLES = tuple(range(0, 10)) + (10, 11, 12, 17, 21, 25, 13, 14)


def _label(i: int) -> int:
    return int(_digit_images()[1][i])


def _digit_question(i: int, hint: bool) -> Question:
    d = _label(i)
    wrong = [(d + 3) % 10, (d + 5) % 10, (d + 8) % 10]
    slot = d % 4  # spreads the correct letter over A..D
    options = [str(w) for w in wrong]
    options.insert(slot, str(d))
    return Question(
        image=f"digit-{i}", question_cn="图中写的是哪个数字？",
        question_en="Which digit is written in the image?",
        options_cn=tuple(options), options_en=tuple(options), answer="ABCD"[slot],
        category="手写数字识别", l2_category="感知", subject="Math",
        hint_cn=DIGIT_HINT_CN if hint else None)


def _parity_question(i: int) -> Question:
    d = _label(i)
    return Question(
        image=f"digit-{i}", question_cn="图中的数字是奇数还是偶数？",
        question_en="Is the digit in the image odd or even?",
        options_cn=("奇数", "偶数"), options_en=("Odd", "Even"), answer="A" if d % 2 else "B",
        category="数字推理", l2_category="推理", subject="Math")


def _compare_question(i: int) -> Question:
    d = _label(i)
    answer = "A" if d > 5 else ("B" if d < 5 else "C")
    return Question(
        image=f"digit-{i}", question_cn="图中的数字比 5 大还是比 5 小？",
        question_en="Is the digit in the image greater or smaller than 5?",
        options_cn=("比 5 大", "比 5 小", "等于 5"),
        options_en=("Greater than 5", "Smaller than 5", "Equal to 5"), answer=answer,
        category="数字推理", l2_category="推理", subject="Math")


PHOTO_QUESTIONS = (
    Question("china", "这张照片的主体是什么建筑？", "What kind of building is the main subject of this photograph?",
             ("中式多层塔楼", "玻璃幕墙摩天大楼", "铁索桥", "帐篷"),
             ("A multi-storey Chinese pagoda", "A glass skyscraper", "A suspension bridge", "A tent"),
             "A", "建筑识别", "感知", "Art",
             hint_cn="这是一张风景照片。\n请根据画面中央的建筑作答。"),
    Question("china", "照片背景中可以看到什么？", "What can be seen in the background of the photograph?",
             ("沙漠", "雪山", "湖水", "城市街道"), ("A desert", "Snowy mountains", "A lake", "A city street"),
             "C", "场景理解", "感知", "Art"),
    Question("china", "照片拍摄时的天气最可能是？", "What was the weather most likely like when the photo was taken?",
             ("晴天", "下雪", "暴雨", "深夜"), ("Sunny", "Snowing", "Heavy rain", "Night"),
             "A", "场景理解", "感知", "Art"),
    Question("flower", "这张照片的主体是什么？", "What is the main subject of this photograph?",
             ("一只猫", "一朵花", "一辆汽车", "一座房子"), ("A cat", "A flower", "A car", "A house"),
             "B", "物体识别", "感知", "Art"),
    Question("flower", "花朵的主要颜色是什么？", "What is the main colour of the flower?",
             ("蓝色", "黑色", "紫色", "橙色"), ("Blue", "Black", "Purple", "Orange"),
             "D", "属性识别", "感知", "Art"),
    Question("flower", "照片的背景是什么样的？", "What does the background of the photograph look like?",
             ("清晰的城市街景", "模糊的绿色叶子", "白色墙壁", "蓝色大海"),
             ("A sharp city street", "Blurred green leaves", "A white wall", "A blue sea"),
             "B", "场景理解", "感知", "Art"),
)


def sample_questions() -> list[Question]:
    """The single-image questions shared by both formats, in index order."""
    digits = [_digit_question(i, hint=(i % 3 == 0)) for i in range(10)]
    return [*PHOTO_QUESTIONS, *digits, _parity_question(10), _parity_question(11),
            _compare_question(12), _compare_question(17)]


# MMBench rows whose image cell names the row holding the picture (VLMEvalKit's <= 64-char rule);
# rows 3 and 4 point forward, to row 5.
_IMAGE_OWNER = {1: 0, 2: 0, 3: 5, 4: 5}
# CircularEval copies: (original index, rotation).
_CIRCULAR_COPIES = ((0, 1), (0, 2), (16, 1))


def mmbench_rows(images: dict[str, bytes]) -> list[dict]:
    """The TSV rows as written (image cells hold base64 or an index), plus '_image': the bytes."""
    questions = sample_questions()
    rows = []
    for index, q in enumerate(questions):
        row = _mmbench_row(index, q, list(q.options_cn), q.answer)
        owner = _IMAGE_OWNER.get(index)
        row["image"] = str(owner) if owner is not None else _b64(images[q.image])
        row["_image"] = images[q.image]
        rows.append(row)
    for original, shift in _CIRCULAR_COPIES:
        q = questions[original]
        n = len(q.options_cn)
        rotated = [q.options_cn[(j + shift) % n] for j in range(n)]
        answer = "ABCD"[("ABCD".index(q.answer) - shift) % n]
        row = _mmbench_row(shift * CIRCULAR + original, q, rotated, answer)
        row["image"] = str(original)
        row["_image"] = images[q.image]
        rows.append(row)
    return rows


def _mmbench_row(index: int, q: Question, options: list[str], answer: str) -> dict:
    letters = dict(zip("ABCD", options))
    return {
        "index": str(index), "question": q.question_cn, "hint": q.hint_cn or "",
        "A": letters.get("A", ""), "B": letters.get("B", ""), "C": letters.get("C", ""),
        "D": letters.get("D", ""), "answer": answer, "category": q.category, "image": "",
        "source": SOURCE, "l2-category": q.l2_category, "comment": "", "split": "dev",
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_mmbench_tsv(path: Path, images: dict[str, bytes]) -> None:
    """csv with QUOTE_MINIMAL writes what pandas' to_csv(sep='\\t') writes (pandas uses csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(TSV_COLUMNS)
        for row in mmbench_rows(images):
            writer.writerow([row[c] for c in TSV_COLUMNS])


def mmmu_rows(images: dict[str, bytes]) -> dict[tuple[str, str], list[dict]]:
    """(subject, split) -> rows; image_k cells are {'bytes', 'path'} or None, as on the hub."""
    tree: dict[tuple[str, str], list[dict]] = {}
    counters: dict[tuple[str, str], int] = {}

    def add(split: str, subject: str, question: str, options: list[str], answer: str,
            pictures: list[str], question_type: str = "multiple-choice", subfield: str = "",
            explanation: str = "") -> None:
        key = (subject, split)
        counters[key] = counters.get(key, 0) + 1
        sid = f"{split}_{subject}_{counters[key]}"
        row: dict[str, Any] = {"id": sid, "question": question, "options": repr(options),
               "explanation": explanation, "img_type": repr(["Photographs"] if subject == "Art"
                                                            else ["Handwritten digits"]),
               "answer": answer, "topic_difficulty": "Easy", "question_type": question_type,
               "subfield": subfield or subject}
        for k in range(1, 8):
            name = pictures[k - 1] if k <= len(pictures) else None
            row[f"image_{k}"] = ({"bytes": images[name], "path": f"{sid}_{k}.jpg"}
                                 if name else None)
        row["_images"] = [images[p] for p in pictures]
        tree.setdefault(key, []).append(row)

    for q in sample_questions():
        text = q.question_en.replace("the image", "<image 1>").replace(
            "this photograph", "<image 1>").replace("the photograph", "<image 1>")
        if "<image 1>" not in text:
            text = f"<image 1> {text}"
        add("validation", q.subject, text, list(q.options_en), q.answer, [q.image],
            subfield="Digits" if q.subject == "Math" else "Photography")

    a, b = _label(21), _label(25)
    sums = [a + b, a + b + 1, a + b - 2, a + b + 3]
    add("validation", "Math", "What is the sum of the digit in <image 2> and the digit in <image 1>?",
        [str(s) for s in sums], "A", ["digit-21", "digit-25"], subfield="Arithmetic",
        explanation=f"<image 1> shows {a} and <image 2> shows {b}; {a} + {b} = {a + b}.")
    add("validation", "Art", "Which image shows a flower?", ["<image 1>", "<image 2>"], "B",
        ["china", "flower"], subfield="Photography")
    add("validation", "Math", "What digit is written in <image 1>?", [], str(_label(13)),
        ["digit-13"], question_type="open", subfield="Digits")
    for i in (14, 12):
        q = _digit_question(i, hint=False)
        add("dev", "Math", q.question_en.replace("the image", "<image 1>"), list(q.options_en),
            q.answer, [q.image], subfield="Digits")
    return tree


MMMU_SCHEMA = pa.schema(
    [("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
     ("explanation", pa.string())]
    + [(f"image_{k}", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
       for k in range(1, 8)]
    + [("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
       ("question_type", pa.string()), ("subfield", pa.string())])


def write_mmmu_tree(root: Path, images: dict[str, bytes]) -> None:
    for (subject, split), rows in sorted(mmmu_rows(images).items()):
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([{k: v for k, v in r.items() if not k.startswith("_")}
                                      for r in rows], schema=MMMU_SCHEMA)
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")


def write_sample(out: Path) -> list[Path]:
    images = build_images()
    write_mmbench_tsv(out / TSV_NAME, images)
    write_mmmu_tree(out / MMMU_DIR, images)
    return sorted(p for p in out.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data",
                        help="folder to write into (default: the package's data folder)")
    args = parser.parse_args(argv)
    for path in write_sample(args.out):
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
