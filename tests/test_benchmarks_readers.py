"""Benchmark readers against the generator's own definitions and hand-built broken files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ingest.benchmarks import BENCHMARKS, SAMPLE_MMMU, SAMPLE_TSV, BenchmarkError, decode_image, open_benchmark
from ingest.benchmarks import make_sample as ms


@pytest.fixture(scope="module")
def images():
    return ms.build_images()


@pytest.fixture(scope="module")
def generated(tmp_path_factory, images):
    out = tmp_path_factory.mktemp("sample")
    ms.write_mmbench_tsv(out / ms.TSV_NAME, images)
    ms.write_mmmu_tree(out / ms.MMMU_DIR, images)
    return out


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------- MMBench TSV


def test_tsv_round_trip_matches_definitions(generated, images):
    source = open_benchmark(f"mmbench-cn:{generated / ms.TSV_NAME}")
    items = list(source)
    rows = ms.mmbench_rows(images)
    assert source.skipped == []
    assert len(source) == len(items) == len(rows) == 23
    for item, row in zip(items, rows):
        assert item.sample_id == row["index"]
        assert item.benchmark == "mmbench-cn"
        assert item.question == row["question"]
        assert item.hint == (row["hint"] or None)
        assert item.options == {k: row[k] for k in "ABCD" if row[k]}
        assert item.answer == row["answer"]
        assert item.category == row["category"]
        assert item.extra["l2-category"] == row["l2-category"]
        assert item.extra["split"] == "dev"
        assert item.images == [row["_image"]]  # exact bytes through base64, references resolved
        assert item.image_hash == hashlib.sha1(row["_image"]).hexdigest()
        assert item.prompt_style == "mmbench-cn"
        # the published answer is right: the correct option text is the definition's
        assert decode_image(item.images[0]).mode == "RGB"


def test_tsv_keeps_newlines_inside_quoted_hints(generated):
    items = {i.sample_id: i for i in open_benchmark(f"mmbench-cn:{generated / ms.TSV_NAME}")}
    assert items["0"].hint == "这是一张风景照片。\n请根据画面中央的建筑作答。"
    assert items["6"].hint == ms.DIGIT_HINT_CN and "\n" in items["6"].hint


def test_image_reference_rows_share_the_owner_image_forward_and_backward(generated):
    items = {i.sample_id: i for i in open_benchmark(f"mmbench-cn:{generated / ms.TSV_NAME}")}
    raw = list(csv.reader(open(generated / ms.TSV_NAME, encoding="utf-8", newline=""),
                          delimiter="\t"))
    cells = {r[0]: r[9] for r in raw[1:]}
    assert cells["1"] == "0" and cells["3"] == "5"  # the file really holds references
    assert items["1"].images == items["0"].images == [base64.b64decode(cells["0"])]
    assert items["3"].images == items["5"].images  # row 3 points forward to row 5


def test_circular_copies_point_to_originals_with_rotated_options(generated):
    items = {i.sample_id: i for i in open_benchmark(f"mmbench-cn:{generated / ms.TSV_NAME}")}
    copies = [i for i in items.values() if i.circular_of is not None]
    assert sorted(i.sample_id for i in copies) == ["1000000", "1000016", "2000000"]
    for copy in copies:
        original = items[copy.circular_of]
        assert int(copy.sample_id) % 1_000_000 == int(original.sample_id)
        assert original.circular_of is None
        assert copy.image_hash == original.image_hash
        assert copy.images[0] is original.images[0]  # one decoded picture, shared
        assert sorted(copy.options.values()) == sorted(original.options.values())
        assert copy.options != original.options
        assert copy.options[copy.answer] == original.options[original.answer]


def test_shipped_sample_equals_a_fresh_generation(generated):
    shipped = list(open_benchmark("sample"))
    fresh = list(open_benchmark(f"mmbench-cn:{generated / ms.TSV_NAME}"))
    assert [i.sample_id for i in shipped] == [i.sample_id for i in fresh]
    for a, b in zip(shipped, fresh):
        assert (a.question, a.hint, a.options, a.answer) == (b.question, b.hint, b.options, b.answer)
        assert a.benchmark == "sample"
        # JPEG bytes may differ between Pillow builds; the pictures may not
        assert np.abs(_pixels(a.images[0]) - _pixels(b.images[0])).mean() < 2.0
    total = SAMPLE_TSV.stat().st_size + sum(p.stat().st_size for p in SAMPLE_MMMU.rglob("*"))
    assert total < 2_000_000


def test_generator_is_deterministic(tmp_path, images):
    ms.write_mmbench_tsv(tmp_path / "a.tsv", images)
    ms.write_mmbench_tsv(tmp_path / "b.tsv", ms.build_images())
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()


def test_digit_answers_match_the_scikit_learn_labels():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    items = list(open_benchmark("sample"))
    digit_items = [i for i in items if i.question == "图中写的是哪个数字？" and i.circular_of is None]
    assert len(digit_items) == 10
    for k, item in enumerate(digit_items):  # built from load_digits samples 0..9 in order
        assert item.options[item.answer] == str(labels[k])


def _write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def test_corrupt_rows_are_skipped_with_reasons_and_the_rest_read(generated, tmp_path):
    raw = list(csv.reader(open(generated / ms.TSV_NAME, encoding="utf-8", newline=""),
                          delimiter="\t"))
    header, rows = raw[0], [list(r) for r in raw[1:]]
    by_index = {r[0]: r for r in rows}
    by_index["7"][9] = "!!" + by_index["7"][9][2:]  # not base64 any more
    by_index["8"].pop()  # wrong column count
    by_index["9"][9] = "999"  # refers to a row that does not exist
    by_index["10"][0] = "ten"  # not an index
    by_index["11"][9] = "7"  # borrows the broken picture of row 7
    path = tmp_path / "broken.tsv"
    _write_tsv(path, header, rows)

    source = open_benchmark(f"mmbench-cn:{path}")
    reasons = dict(source.skipped)
    assert len(source) == 23 - 5 == len(list(source))
    assert reasons["7"].startswith("image is not valid base64")
    assert reasons["11"] == reasons["7"] + " (that of index 7)"
    row_of_8 = [k for k in reasons if k.startswith("row ") and "fields" in reasons[k]]
    assert row_of_8 == [f"row {rows.index(by_index['8']) + 1}"]
    assert reasons["9"] == "image refers to index 999, which is not in the file"
    assert any("'ten'" in r for r in reasons.values())
    assert {"7", "8", "9", "10", "11"}.isdisjoint(i.sample_id for i in source)


def test_tsv_without_required_columns_is_refused(tmp_path):
    path = tmp_path / "other.tsv"
    _write_tsv(path, ["id", "text"], [["1", "hello"]])
    with pytest.raises(BenchmarkError, match="not an MMBench TSV: no column index, question, image"):
        open_benchmark(str(path))
    (tmp_path / "latin.tsv").write_bytes(b"index\tquestion\timage\n1\t\xe9t\xe9\tx\n")
    with pytest.raises(BenchmarkError, match="not UTF-8"):
        open_benchmark(str(tmp_path / "latin.tsv"))


def test_english_tsv_gets_the_english_style(tmp_path, images):
    header = ["index", "question", "hint", "A", "B", "answer", "image"]
    jpeg = base64.b64encode(images["flower"]).decode()
    _write_tsv(tmp_path / "en.tsv", header, [["0", "What is this?", "nan", "A flower", "None", "A",
                                              jpeg]])
    source = open_benchmark(str(tmp_path / "en.tsv"))
    item = next(iter(source))
    assert source.name == item.benchmark == item.prompt_style == "mmbench-en"
    assert item.hint is None  # pandas' "nan" is a missing hint
    assert item.options == {"A": "A flower", "B": "None"}  # "None" is a real option
    forced = next(iter(open_benchmark(f"mmbench-cn:{tmp_path / 'en.tsv'}")))
    assert forced.prompt_style == "mmbench-cn" and forced.benchmark == "mmbench-cn"


# ---------------------------------------------------------------- MMBench Parquet (HF copies)


def _hf_mmbench(tmp_path, images, nan_hint: bool):
    rows = ms.mmbench_rows(images)
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "index": pa.array([int(r["index"]) for r in rows], pa.int64()),
        "question": [r["question"] for r in rows],
        "hint": [r["hint"] or ("nan" if nan_hint else None) for r in rows],
        **{k: [r[k] or None for r in rows] for k in "ABCD"},
        "answer": [r["answer"] for r in rows],
        "category": [r["category"] for r in rows],
        "image": pa.array([{"bytes": r["_image"], "path": None} for r in rows], struct),
        "source": [r["source"] for r in rows],
        "L2-category": [r["l2-category"] for r in rows],
        "comment": [None] * len(rows),
        "split": ["dev"] * len(rows),
    })
    root = tmp_path / "MMBench" / "cn"
    root.mkdir(parents=True)
    pq.write_table(table, root / "dev-00000-of-00001.parquet", row_group_size=5)
    test = table.slice(0, 3).set_column(table.schema.get_field_index("split"), "split",
                                        pa.array(["test"] * 3))
    pq.write_table(test, root / "test-00000-of-00001.parquet")
    return root, rows


@pytest.mark.parametrize("nan_hint", [False, True])
def test_hf_parquet_variant_reads_like_the_tsv(tmp_path, images, nan_hint):
    root, rows = _hf_mmbench(tmp_path, images, nan_hint)
    source = open_benchmark(str(root))  # a folder: the dev files are chosen by default
    items = list(source)
    assert source.kind == "mmbench-parquet" and source.split == "dev"
    assert source.name == "mmbench-cn" and len(source) == len(items) == len(rows)
    assert source.skipped == []
    for item, row in zip(items, rows):
        assert item.sample_id == row["index"]
        assert item.hint == (row["hint"] or None)
        assert item.options == {k: row[k] for k in "ABCD" if row[k]}
        assert item.answer == row["answer"]
        assert item.images == [row["_image"]]
        assert item.extra["l2-category"] == row["l2-category"]
        assert item.circular_of == (str(int(row["index"]) % 1_000_000)
                                    if int(row["index"]) >= 1_000_000 else None)
    assert len(list(open_benchmark(str(root), split="test"))) == 3
    one_file = open_benchmark(str(root / "dev-00000-of-00001.parquet"))
    assert [i.sample_id for i in one_file] == [i.sample_id for i in items]


def test_hf_parquet_row_without_image_is_skipped(tmp_path, images):
    root, rows = _hf_mmbench(tmp_path, images, False)
    path = root / "dev-00000-of-00001.parquet"
    table = pq.read_table(path)
    column = table.column("image").to_pylist()
    column[2] = None
    table = table.set_column(table.schema.get_field_index("image"), "image",
                             pa.array(column, table.schema.field("image").type))
    pq.write_table(table, path)
    source = open_benchmark(str(path))
    assert len(list(source)) == len(rows) - 1
    assert source.skipped == [("2", "has no image bytes")]


# ---------------------------------------------------------------- MMMU


def test_mmmu_round_trip_matches_definitions(generated, images):
    source = open_benchmark(f"mmmu:{generated / ms.MMMU_DIR}")
    assert source.split == "validation"
    items = {i.sample_id: i for i in source}
    expected = [r for (subject, split), rs in sorted(ms.mmmu_rows(images).items())
                for r in rs if split == "validation"]
    assert source.skipped == [] and len(source) == len(items) == len(expected) == 23
    for row in expected:
        item = items[row["id"]]
        assert item.benchmark == "mmmu" and item.prompt_style == "mmmu"
        assert item.question == row["question"]
        assert list(item.options.values()) == eval(row["options"])
        assert list(item.options) == list("ABCDEFGHI"[:len(item.options)])
        assert item.answer == row["answer"]
        assert item.hint is None and item.circular_of is None
        assert item.images == row["_images"]
        assert item.extra["question_type"] == row["question_type"]
        assert item.category == row["id"].split("_")[1]
        for data in item.images:
            assert decode_image(data).size in ((320, 214), (112, 112))


def test_mmmu_multi_image_order_follows_k_not_mention(generated, images):
    items = {i.sample_id: i for i in open_benchmark(f"mmmu:{generated / ms.MMMU_DIR}")}
    mixed = items["validation_Math_15"]
    assert mixed.question.index("<image 2>") < mixed.question.index("<image 1>")
    assert mixed.images == [images["digit-21"], images["digit-25"]]  # image_1, image_2
    assert mixed.extra["image_numbers"] == [1, 2]
    only_in_options = items["validation_Art_7"]
    assert "<image" not in only_in_options.question
    assert only_in_options.images == [images["china"], images["flower"]]
    assert only_in_options.options[only_in_options.answer] == "<image 2>"  # the flower
    open_question = items["validation_Math_16"]
    assert open_question.options == {} and open_question.extra["question_type"] == "open"


def test_mmmu_splits(generated):
    assert len(list(open_benchmark("sample-mmmu"))) == 23
    dev = open_benchmark("sample-mmmu", split="dev")
    assert [i.sample_id for i in dev] == ["dev_Math_1", "dev_Math_2"]
    with pytest.raises(BenchmarkError, match="no 'test' files; found splits: dev, validation"):
        open_benchmark("sample-mmmu", split="test")


def test_mmmu_bad_rows_are_skipped_with_reasons(generated, tmp_path):
    root = tmp_path / "mmmu"
    shutil.copytree(generated / ms.MMMU_DIR, root)
    path = root / "Math" / "validation-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["question"] = "Compare <image 1> with <image 3>."  # image_3 is empty
    rows[1]["options"] = "['unclosed"
    rows[2]["question"] = "Which digit is written here?"  # no placeholder
    rows[3]["image_1"] = {"bytes": None, "path": "lost.png"}
    pq.write_table(pa.Table.from_pylist(rows, schema=ms.MMMU_SCHEMA), path)
    source = open_benchmark(str(root))
    assert source.kind == "mmmu-parquet"  # recognised by its columns, no prefix needed
    kept = {i.sample_id: i for i in source}
    assert len(kept) == len(source) - 1
    assert "not a Python list literal" in dict(source.skipped)[rows[1]["id"]]
    # the reader keeps every image a row holds; which ones a harness sends is the prompt's business
    assert kept[rows[0]["id"]].images == [rows[0]["image_1"]["bytes"]]
    assert kept[rows[0]["id"]].extra["image_numbers"] == [1]
    assert kept[rows[2]["id"]].images == [rows[2]["image_1"]["bytes"]]
    assert kept[rows[3]["id"]].images == []
    from ingest.prompts import build_prompt

    for harness in ("lmms-eval", "vlmevalkit"):
        with pytest.raises(BenchmarkError, match=r"^mentions <image 3> but image_3 is empty$"):
            build_prompt(kept[rows[0]["id"]], "qwen2_5_vl", harness)
    with pytest.raises(BenchmarkError, match=r"^has no image, and VLMEvalKit drops rows without one$"):
        build_prompt(kept[rows[3]["id"]], "llava", "vlmevalkit")


# ---------------------------------------------------------------- names, paths, images


@pytest.mark.parametrize(("spec", "message"), [
    ("mmbench-xx", "unknown benchmark 'mmbench-xx'; give 'sample'"),
    ("mmbench-cn", "'mmbench-cn' is not bundled"),
    ("mmmu", "'mmmu' is not bundled"),
    ("mmmu:", "'mmmu:' needs a path"),
    ("/no/such/MMBench_DEV_CN.tsv", "no such file or folder: /no/such/MMBench_DEV_CN.tsv"),
    ("mmbench-cn:/no/such/dir", "no such file or folder"),
])
def test_unknown_names_and_missing_paths_raise_one_line_errors(spec, message):
    with pytest.raises(BenchmarkError, match=message) as info:
        open_benchmark(spec)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unusable_files_and_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BenchmarkError, match=r"neither a \.tsv, a \.parquet nor a folder"):
        open_benchmark(str(tmp_path / "notes.txt"))
    with pytest.raises(BenchmarkError, match=r"holds no \.parquet files"):
        open_benchmark(str(tmp_path))
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BenchmarkError, match="cannot be read as Parquet"):
        open_benchmark(str(tmp_path / "fake.parquet"))
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(BenchmarkError, match="neither MMBench columns"):
        open_benchmark(str(tmp_path / "other.parquet"))


def test_benchmark_names_and_labels():
    assert set(BENCHMARKS) >= {"sample", "sample-mmmu", "mmbench-cn", "mmmu"}
    assert open_benchmark("sample").describe()["rows"] == 23
    assert next(iter(open_benchmark("sample", name="demo"))).benchmark == "demo"


def test_decode_image_gives_rgb_and_clear_errors(images):
    digit = decode_image(images["digit-3"])
    assert digit.mode == "RGB" and digit.size == (112, 112)
    gray = io.BytesIO()
    Image.new("L", (4, 3), 7).save(gray, format="PNG")
    assert decode_image(gray.getvalue()).getpixel((0, 0)) == (7, 7, 7)
    with pytest.raises(BenchmarkError, match=r"^sample 9 image 1 cannot be decoded: "):
        decode_image(b"definitely not an image", what="sample 9 image 1")
    with pytest.raises(BenchmarkError, match="cannot be decoded"):
        decode_image(images["china"][: len(images["china"]) // 2])


def test_hint_and_option_cells_reach_the_prompts_as_the_file_holds_them(tmp_path):
    """Harnesses disagree on which cells are missing, so the readers hand over the raw cells."""
    import harness_fixtures as fixtures

    rows = fixtures.mmbench_rows("mmbench-en")
    fixtures.write_mmbench_tsv(tmp_path / "f.tsv", rows)
    fixtures.write_mmbench_parquet(tmp_path / "f.parquet", rows)
    tsv = {i.sample_id: i.cells for i in open_benchmark(f"mmbench-en:{tmp_path / 'f.tsv'}")}
    hf = {i.sample_id: i.cells for i in open_benchmark(f"mmbench-en:{tmp_path / 'f.parquet'}")}
    assert [hf[s]["hint"] for s in ("1", "2", "3", "4")] == [None, " ", "", "nan"]
    # a TSV cannot tell an empty string from a missing value: pandas writes both as an empty cell
    assert [tsv[s]["hint"] for s in ("1", "2", "3", "4")] == [None, " ", None, "nan"]
    for cells in (tsv, hf):
        assert (cells["5"]["A"], cells["5"]["B"], cells["7"]["C"]) == ("None", "NA", None)
        assert (cells["10"]["A"], cells["10"]["B"], cells["10"]["D"]) == (" padded ", "tab\there", "nan")
        assert cells["6"]["E"] is not None and cells["0"]["E"] is None
