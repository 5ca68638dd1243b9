"""The run loop end to end on real tiny models and real stores: resume after a kill, shards,
CircularEval, token policy, bad input, and `keygap ingest` read back by `keygap info` / `keygap sql`."""
from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ingest.benchmarks import SAMPLE_TSV, open_benchmark
from ingest.run import IngestError, ingest
from keygap_tui.cli import main as keygap
from store.reader import KeyStore

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(layers="1,3", keys="both", tokens="6:6", batch_size=2, limit=8, progress=False)


def _rows(root) -> dict:
    """{every label of a stored row, with its partition: key bytes}, minus run_id (names the writer)."""
    t = ds.dataset(f"{root}/keys", format="parquet", partitioning="hive").to_table()
    cols = [c for c in t.column_names if c not in ("run_id", "key")]
    labels = list(zip(*[t[c].to_pylist() for c in cols]))
    assert len(set(labels)) == len(labels), "a row is stored twice"
    return dict(zip(labels, t["key"].to_pylist()))


def _samples(root) -> list[tuple]:
    t = pq.read_table(f"{root}/samples")
    cols = [c for c in t.column_names if c != "run_id"]
    return sorted(zip(*[t[c].to_pylist() for c in cols]))


@pytest.mark.slow
def test_killed_run_resumed_equals_one_clean_run(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    ingest("tiny:llava", "sample", str(clean), **COMMON)
    # Kill the process for real (os._exit, no cleanup) in the middle of its third flush: after the
    # first key file of that flush is in place but before its samples marker is written.
    script = (
        "import os, store.writer as w\n"
        "orig = w.KeyWriter._write_parquet\n"
        "calls = [0]\n"
        "def write(self, table, path, **kw):\n"
        "    orig(self, table, path, **kw)\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 2 * PER_FLUSH + 2: os._exit(9)\n"
        "w.KeyWriter._write_parquet = write\n"
        "from ingest.run import ingest\n"
        f"ingest('tiny:llava', 'sample', {str(killed)!r}, checkpoint_seconds=0, **{COMMON!r})\n"
    )
    per_flush = 2 * 2 * 2 + 1  # layers x ropes x (image, text) key files + the samples marker
    proc = subprocess.run([sys.executable, "-c", script.replace("PER_FLUSH", str(per_flush))],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    partial = KeyStore(str(killed))
    assert len(partial.done_samples("tiny-llava", "sample")) == 4  # two flushes of two samples
    orphans = list((killed / "keys").rglob("*-00002.parquet"))
    assert orphans, "the kill should have left a key file without its samples marker"

    summary = ingest("tiny:llava", "sample", str(killed), checkpoint_seconds=0, **COMMON)
    assert summary.samples_resumed == 4 and summary.samples_done == 4
    # the finished run was compacted: one file per partition, though it flushed after every batch
    partitions = {p.parent for p in (killed / "keys").rglob("*.parquet")}
    assert len(partitions) == 8 and all(len(list(d.glob("part-*.parquet"))) == 1 for d in partitions)
    assert len(list((killed / "samples").glob("part-*.parquet"))) == 1
    assert _rows(killed) == _rows(clean)
    assert _samples(killed) == _samples(clean)
    # a third run of the same command finds nothing to do and stores nothing twice
    again = ingest("tiny:llava", "sample", str(killed), **COMMON)
    assert again.samples_done == 0 and again.samples_resumed == 8
    assert _rows(killed) == _rows(clean)
    run = json.loads(next((killed / "runs").glob("*.json")).read_text())
    assert run["status"] == "done" and run["samples_done"] == 8 and run["attempts"] == 3


@pytest.mark.slow
def test_two_shards_equal_one_unsharded_run(tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    ingest("tiny:qwen2.5-vl", "sample", str(whole), **COMMON)
    a = ingest("tiny:qwen2.5-vl", "sample", str(sharded), shard="0/2", **COMMON)
    b = ingest("tiny:qwen2.5-vl", "sample", str(sharded), shard=(1, 2), **COMMON)
    assert a.samples_done == b.samples_done == 4  # a seeded permutation split 8 samples evenly
    assert a.run_id != b.run_id
    got, want = _rows(sharded), _rows(whole)
    assert got.keys() == want.keys()  # every label of every row, exactly
    # keys: equal up to batching (other samples pad the batch differently), float32 noise only
    diff = max(np.abs(np.frombuffer(got[k], "<f4") - np.frombuffer(want[k], "<f4")).max() for k in got)
    assert diff <= 1e-5
    assert _samples(sharded) == _samples(whole)
    t = pq.read_table(sharded / "samples")
    by_run = {}
    for sid, rid in zip(t["sample_id"].to_pylist(), t["run_id"].to_pylist()):
        by_run.setdefault(rid, set()).add(sid)
    assert len(by_run) == 2 and not set.intersection(*by_run.values())


@pytest.mark.slow
def test_token_policy_circular_copies_and_segments(tmp_path):
    items = list(open_benchmark("sample"))
    circular = [it for it in items if it.circular_of]
    assert circular, "the bundled sample holds CircularEval copies"
    ingest("tiny:llava", "sample", str(tmp_path / "a"), layers="1", tokens="5:7", progress=False)
    t = ds.dataset(f"{tmp_path}/a/keys", format="parquet", partitioning="hive").to_table()
    per = {}
    for sid, mod, seg, pos in zip(t["sample_id"].to_pylist(), t["modality"].to_pylist(),
                                  t["segment"].to_pylist(), t["position"].to_pylist()):
        per.setdefault(sid, []).append((mod, seg, pos))
    samples = pq.read_table(tmp_path / "a" / "samples")
    n_tokens = dict(zip(samples["sample_id"].to_pylist(), samples["n_tokens"].to_pylist()))
    for it in items:
        rows = per[it.sample_id]
        n_image = sum(m == "image" for m, _, _ in rows)
        n_text = sum(m == "text" for m, _, _ in rows)
        assert n_image == (0 if it.circular_of else 5)  # a copy's image keys equal its original's
        assert n_text == 7
        assert max(p for _, _, p in rows) == n_tokens[it.sample_id] - 1  # the last prompt token is kept
    # the same positions in every layer and for every seed-equal rerun; another seed draws others
    ingest("tiny:llava", "sample", str(tmp_path / "b"), layers="1", tokens="5:7", seed=1, progress=False)
    t2 = ds.dataset(f"{tmp_path}/b/keys", format="parquet", partitioning="hive").to_table()
    assert sorted(t2["position"].to_pylist()) != sorted(t["position"].to_pylist())
    # --segments restricts the text draw
    ingest("tiny:llava", "sample", str(tmp_path / "c"), layers="1", tokens="0:4", segments="question,options",
           limit=6, progress=False)
    t3 = ds.dataset(f"{tmp_path}/c/keys", format="parquet", partitioning="hive").to_table()
    text_segments = {s for s, m in zip(t3["segment"].to_pylist(), t3["modality"].to_pylist()) if m == "text"}
    # the last prompt token (in "assistant") is always kept; everything else drawn is question/options
    assert text_segments <= {"question", "options", "assistant"} and "options" in text_segments


def _write_tsv(path: Path, rows: list[list[str]], header: list[str], extra_lines: list[str] = ()) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)
        for line in extra_lines:
            f.write(line + "\n")


def test_bad_input_gives_clear_messages_and_the_run_goes_on(tmp_path, capsys):
    with open(SAMPLE_TSV, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        rows = [r for r in reader if r][:6]
    img = header.index("image")
    rows[1][img] = base64.b64encode(b"this is not a jpeg" * 10).decode()  # cannot be decoded
    rows[2][img] = ""  # no image at all
    tsv = tmp_path / "bad.tsv"
    _write_tsv(tsv, rows, header, extra_lines=["999\tonly two fields"])  # a corrupt row
    (tmp_path / "not-a-store").mkdir()
    (tmp_path / "not-a-store" / "notes.txt").write_text("mine")
    store = tmp_path / "store"
    code = keygap(["ingest", "--model", "tiny:llava", "--benchmark", str(tsv), "--store", str(store),
                   "--layers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "done: 4 samples" in out and "1 skipped" in out
    assert f"skipped {rows[1][0]}: image 1 of item {rows[1][0]} cannot be decoded" in out
    assert "2 benchmark rows were unusable" in out
    run = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert [s["sample_id"] for s in run["skipped"]] == [rows[1][0]]
    reasons = dict(map(tuple, run["reader_skipped"]))
    assert "has no image" in reasons[rows[2][0]]
    assert any("fields" in r for r in reasons.values())
    statuses = dict(zip(*[pq.read_table(store / "samples")[c].to_pylist() for c in ("sample_id", "status")]))
    assert statuses[rows[1][0]].startswith("skipped: image 1") and statuses[rows[0][0]] == "done"

    for argv, message in [
        (["--model", "tiny:gpt"], "unknown built-in model 'tiny:gpt'; supported: LLaVA-1.5"),
        (["--model", "/no/such/folder-xyz"], "neither a local folder nor in the Hugging Face cache"),
        (["--benchmark", "mmbench-xx"], "unknown benchmark 'mmbench-xx'"),
        (["--benchmark", str(tmp_path / "missing.tsv")], "no such file or folder"),
        (["--tokens", "a:b"], "--tokens 'a:b' is not understood"),
        (["--shard", "2/2"], "shards are numbered from 0"),
        (["--layers", "9"], "layer 9 is out of range: this model has layers 0..3"),
        (["--layers", "all"], "already holds tiny-llava on"),
        (["--store", str(tsv.parent / "not-a-store")], "is not a keygap store"),
    ]:
        args = {"--model": "tiny:llava", "--benchmark": str(tsv), "--store": str(store)}
        args.update(dict(zip(argv[::2], argv[1::2])))
        flat = [x for kv in args.items() for x in kv]
        code = keygap(["ingest", *flat, "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_cli_ingest_fills_a_store_that_info_and_sql_read(tmp_path, capsys):
    store = str(tmp_path / "store")
    for model in ("tiny:llava", "tiny:qwen2.5-vl"):
        assert keygap(["ingest", "--model", model, "--benchmark", "sample", "--store", store, "--limit", "4",
                       "--no-progress"]) == 0
    capsys.readouterr()
    assert keygap(["info", "--store", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["models"]) == {"tiny-llava", "tiny-qwen2.5-vl"} and info["samples"] == 8
    assert keygap(["sql", "--store", store, "--format", "json",
                   "SELECT model, modality, count(*) AS n, count(DISTINCT layer) AS layers FROM keys "
                   "GROUP BY ALL ORDER BY ALL"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {(r["model"], r["modality"]) for r in got} == {("tiny-llava", "image"), ("tiny-llava", "text"),
                                                           ("tiny-qwen2.5-vl", "image"), ("tiny-qwen2.5-vl", "text")}
    assert all(r["layers"] == 3 for r in got)  # early, middle, late = 1, 2, 3
    assert keygap(["sql", "--store", store, "--format", "json",
                   "SELECT DISTINCT model_id, status FROM runs ORDER BY 1"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["model_id"], r["status"]) for r in runs] == [("tiny:llava", "done"), ("tiny:qwen2.5-vl", "done")]


def test_arguments_are_checked_before_any_work(tmp_path):
    with pytest.raises(IngestError, match="--keys 'mid'"):
        ingest("tiny:llava", "sample", str(tmp_path), keys="mid")
    with pytest.raises(IngestError, match="--batch-size must be at least 1"):
        ingest("tiny:llava", "sample", str(tmp_path), batch_size=0)
    assert not os.listdir(tmp_path)


def _failing_capture(monkeypatch, exc, on_call):
    from ingest import capture

    real = capture.KeyCapture.run
    calls = [0]

    def run(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == on_call:
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(capture.KeyCapture, "run", run)


def test_ctrl_c_keeps_finished_batches_and_the_rerun_completes(tmp_path, monkeypatch, capsys):
    params = dict(layers="1", tokens="4:4", batch_size=2, limit=6, progress=False)
    clean = tmp_path / "clean"
    ingest("tiny:llava", "sample", str(clean), **params)
    store = tmp_path / "store"
    _failing_capture(monkeypatch, KeyboardInterrupt(), on_call=3)
    code = keygap(["ingest", "--model", "tiny:llava", "--benchmark", "sample", "--store", str(store),
                   "--layers", "1", "--tokens", "4:4", "--batch-size", "2", "--limit", "6", "--no-progress"])
    assert code == 130
    assert "run the same command to resume" in capsys.readouterr().err
    run = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert run["status"] == "interrupted" and run["samples_done"] == 4
    monkeypatch.undo()
    again = ingest("tiny:llava", "sample", str(store), **params)
    assert again.status == "done" and again.samples_resumed == 4 and again.samples_done == 2
    assert _rows(store) == _rows(clean)


def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    import torch

    _failing_capture(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), on_call=2)
    with pytest.raises(IngestError, match="out of memory at batch size 4 on cpu: rerun the same command with "
                                          "--batch-size 2"):
        ingest("tiny:qwen2.5-vl", "sample", str(tmp_path), layers="1", limit=12, progress=False)
    run = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert run["status"] == "failed" and run["samples_done"] == 4  # the first batch is kept


def test_an_already_loaded_model_ingests_like_its_spec(tmp_path):
    from ingest.models import load_model

    params = dict(layers="2", tokens="3:3", limit=3, progress=False)
    ingest("tiny:qwen2-vl", "sample", str(tmp_path / "spec"), **params)
    ingest(load_model("tiny:qwen2-vl", device="cpu"), "sample", str(tmp_path / "loaded"), **params)
    assert _rows(tmp_path / "loaded") == _rows(tmp_path / "spec")
    run = json.loads(next((tmp_path / "loaded" / "runs").glob("*.json")).read_text())
    assert run["model_id"] == "tiny:qwen2-vl"


@pytest.mark.slow
def test_ingest_never_imports_duckdb_or_textual(tmp_path):
    """`keygap ingest` runs on GPU servers that have neither: a whole run must not touch them."""
    script = ("import sys\n"
              "from keygap_tui.cli import main\n"
              f"code = main(['ingest', '--model', 'tiny:llava', '--benchmark', 'sample', '--store', {str(tmp_path)!r},"
              " '--limit', '2', '--no-progress'])\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'textual'))\n"
              "print(code, bad)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []"
