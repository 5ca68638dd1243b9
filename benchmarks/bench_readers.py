"""Benchmark readers at published sizes: MMBench-CN dev TSV (4,329 rows) and MMMU validation (900).

Baselines, measured in the same process on the same files: for the TSV, one csv pass that base64-
decodes every image cell (the least work any reader must do); for MMMU, pyarrow reading every
column of every file. Ratios show what parsing, reference resolution and Item building add.
Run: python benchmarks/bench_readers.py   (or `make bench BENCH=readers`).
"""

from __future__ import annotations

import base64
import csv
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ingest.benchmarks import make_sample as ms
from ingest.benchmarks import open_benchmark

MMBENCH_ROWS = 4329  # MMBench_DEV_CN.tsv
MMBENCH_ORIGINALS = 1164  # rows that hold a picture; the rest are CircularEval copies (references)
MMMU_SUBJECTS, MMMU_PER_SUBJECT = 30, 30  # 900 validation questions
REPEATS = 5


def _photo(seed: int) -> bytes:
    """A 512 x 342 JPEG (~MMBench's typical size), different per seed so no cache can help."""
    from sklearn.datasets import load_sample_images

    base = load_sample_images().images[seed % 2]
    picture = Image.fromarray(base).resize((512, 342)).rotate(seed % 360)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_mmbench(path: Path) -> None:
    photos = [_photo(i) for i in range(16)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(ms.TSV_COLUMNS)
        for index in range(MMBENCH_ROWS):
            original = index % MMBENCH_ORIGINALS
            copy = index // MMBENCH_ORIGINALS
            sid = copy * 1_000_000 + original
            image = (base64.b64encode(photos[original % 16]).decode() if copy == 0 else str(original))
            writer.writerow([sid, f"问题 {original}：图中是什么？", "提示：\n第二行" if original % 3 else "",
                             "甲", "乙", "丙", "丁", "ABCD"[original % 4], "类别", image, "bench",
                             "感知", "", "dev"])


def write_mmmu(root: Path) -> None:
    photos = [_photo(i) for i in range(16)]
    for s in range(MMMU_SUBJECTS):
        rows = []
        for i in range(MMMU_PER_SUBJECT):
            sid = f"validation_Subject{s}_{i + 1}"
            row = {"id": sid, "question": f"What does <image 1> show? ({i})", "options": "['a', 'b', 'c', 'd']",
                   "explanation": "", "img_type": "['Photographs']", "answer": "A",
                   "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "x"}
            for k in range(1, 8):
                row[f"image_{k}"] = ({"bytes": photos[(s * 31 + i) % 16], "path": f"{sid}.jpg"}
                                     if k == 1 else None)
            rows.append(row)
        folder = root / f"Subject{s}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=ms.MMMU_SCHEMA),
                       folder / "validation-00000-of-00001.parquet")


def tsv_baseline(path: Path) -> int:
    csv.field_size_limit(2**31 - 1)
    total = 0
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        col = header.index("image")
        for fields in reader:
            cell = fields[col]
            if len(cell) > 64:
                total += len(base64.b64decode(cell))
    return total


def mmmu_baseline(root: Path) -> int:
    return sum(pq.read_table(p).num_rows for p in sorted(root.rglob("*.parquet")))


def read_all(spec: str) -> int:
    return sum(len(item.images) for item in open_benchmark(spec))


def paired(baseline, ours, arg, spec) -> tuple[float, float, float, object]:
    """Alternate baseline and ours REPEATS times; the median of per-pair ratios resists the load
    drift of a shared machine better than a ratio of medians."""
    base_times, our_times, ratios, out = [], [], [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        baseline(arg)
        mid = time.perf_counter()
        out = ours(spec)
        end = time.perf_counter()
        base_times.append(mid - start)
        our_times.append(end - mid)
        ratios.append((end - mid) / (mid - start))
    return (statistics.median(base_times), statistics.median(our_times), statistics.median(ratios),
            out)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "MMBench_DEV_CN.tsv"
        write_mmbench(tsv)
        mmmu = Path(tmp) / "MMMU"
        write_mmmu(mmmu)
        size_tsv = tsv.stat().st_size / 2**20
        size_mmmu = sum(p.stat().st_size for p in mmmu.rglob("*.parquet")) / 2**20

        base_tsv, ours_tsv, ratio_tsv, n_images = paired(tsv_baseline, read_all, tsv, f"mmbench-cn:{tsv}")
        base_mmmu, ours_mmmu, ratio_mmmu, n_mmmu = paired(mmmu_baseline, read_all, mmmu, f"mmmu:{mmmu}")

    print("| measure | value |\n|---|---|")
    print(f"| MMBench TSV: {MMBENCH_ROWS:,} rows, {MMBENCH_ORIGINALS:,} pictures, {size_tsv:.0f} MiB | |")
    print(f"| csv pass + base64 decode of every picture (baseline) | {base_tsv:.2f} s |")
    print(f"| open_benchmark + iterate all Items ({n_images:,} image refs resolved) | {ours_tsv:.2f} s |")
    print(f"| ratio ours / baseline | **{ratio_tsv:.2f}** (median of {REPEATS} paired runs) |")
    print(f"| per item | {1e3 * ours_tsv / MMBENCH_ROWS:.2f} ms |")
    print(f"| MMMU tree: {MMMU_SUBJECTS * MMMU_PER_SUBJECT} rows in {MMMU_SUBJECTS} files, {size_mmmu:.0f} MiB | |")
    print(f"| pyarrow read_table of every file (baseline) | {base_mmmu:.2f} s |")
    print(f"| open_benchmark + iterate all Items ({n_mmmu} images) | {ours_mmmu:.2f} s |")
    print(f"| ratio ours / baseline | **{ratio_mmmu:.2f}** (median of {REPEATS} paired runs) |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
