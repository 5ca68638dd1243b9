"""One command, several shard processes: `--devices`, and `--shard auto` under SLURM and torchrun.

Every test compares the store against one plain run of the same command (same committed rows, keys
byte for byte, no duplicates): that is what a user expects from running on more hardware.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from store_helpers import assert_same_rows, stored_rows, stored_samples

from ingest.benchmarks import SAMPLE_TSV
from ingest.shards import ShardError, parse_devices, shard_from_environment
from keygap_tui.cli import main as keygap

ARGS = ["--model", "tiny:llava", "--benchmark", "sample", "--layers", "1,2", "--tokens", "4:4",
        "--batch-size", "2", "--limit", "8", "--no-progress"]

def _sigint_default() -> None:
    """Ctrl-C reaches the child whatever pytest inherited: a job started in the background of a shell
    without job control (nohup, `cmd &` in a script) ignores SIGINT, and exec keeps that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)



def _keygap(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keygap_tui.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, **kw)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain") / "store"
    assert keygap(["ingest", *ARGS, "--store", str(root)]) == 0
    return stored_rows(root), stored_samples(root)


@pytest.mark.slow
def test_two_cpu_processes_equal_one_run(tmp_path, plain):
    root = tmp_path / "store"
    r = _keygap("ingest", *ARGS, "--store", str(root), "--devices", "cpu,cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("shard ") == 2 and "shard 0/2 (cpu): done" in r.stdout
    assert_same_rows(stored_rows(root), plain[0])
    assert stored_samples(root) == plain[1]
    r = _keygap("ingest", *ARGS, "--store", str(root), "--devices", "cpu,cpu")  # resumes: nothing to do
    assert r.returncode == 0 and "done: 0 samples" in r.stdout
    assert_same_rows(stored_rows(root), plain[0])


def _doubled_sample(path) -> str:
    """The bundled MMBench-CN sample twice over (new indices): enough items that Ctrl-C lands mid-run."""
    csv.field_size_limit(1 << 30)
    with open(SAMPLE_TSV, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    copies = [{**r, "index": str(int(r["index"]) + 10_000_000),
               "image": str(int(r["image"]) + 10_000_000) if r["image"].isdigit() else r["image"]} for r in rows]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows + copies)
    return f"mmbench-cn:{path}"


@pytest.mark.slow
def test_ctrl_c_stops_every_shard_and_the_rerun_completes(tmp_path):
    root = tmp_path / "store"
    args = ["--model", "tiny:llava", "--benchmark", _doubled_sample(tmp_path / "mmbench.tsv"), "--layers", "all",
            "--tokens", "all", "--batch-size", "1", "--no-progress"]  # one item a forward: work to interrupt
    p = subprocess.Popen([sys.executable, "-m", "keygap_tui.cli", "ingest", *args, "--store", str(root),
                          "--devices", "cpu,cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default)
    deadline = time.time() + 300
    while len(list((root / "runs").glob("*.json"))) < 2 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)  # both shards have planned their run: the forwards, most of the work, are to come
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err and "run the same command to resume" in err
    r = _keygap("ingest", *args, "--store", str(root), "--devices", "cpu,cpu")
    assert r.returncode == 0, r.stderr
    whole = tmp_path / "whole"
    assert keygap(["ingest", *args, "--store", str(whole)]) == 0
    # every label exactly; keys up to the float noise between the shard processes and this long-lived test
    # process, which grows through all layers (7e-5 in a fresh-clone CI run; 0 when run alone), as in
    # test_ingest_s3's resume check
    assert_same_rows(stored_rows(root), stored_rows(whole), atol=2e-4)
    assert stored_samples(root) == stored_samples(whole)


@pytest.mark.slow
def test_a_failing_shard_is_one_line_and_the_other_finishes(tmp_path):
    root = tmp_path / "store"
    r = _keygap("ingest", *ARGS, "--store", str(root), "--devices", "cpu,cuda:7")
    assert r.returncode == 2
    failed = [line for line in r.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1 and failed[0].startswith("shard 1/2 (cuda:7) failed:") and "Traceback" not in r.stderr
    assert "shard 0/2 (cpu): done" in r.stdout


@pytest.mark.slow
def test_shard_auto_under_slurm_and_torchrun(tmp_path, plain, monkeypatch, capsys):
    root = tmp_path / "slurm"
    for task in (3, 4):  # an array submitted as --array=3-4
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "2"}
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert keygap(["ingest", *ARGS, "--store", str(root), "--shard", "auto"]) == 0
    assert_same_rows(stored_rows(root), plain[0])
    assert stored_samples(root) == plain[1]
    runs = {p.name for p in (root / "runs").glob("*.json")}
    assert any(n.endswith("-0of2.json") for n in runs) and any(n.endswith("-1of2.json") for n in runs)
    root = tmp_path / "torchrun"
    for rank in (0, 1):
        with monkeypatch.context() as m:
            m.setenv("RANK", str(rank))
            m.setenv("WORLD_SIZE", "2")
            m.setenv("LOCAL_RANK", str(rank))
            assert keygap(["ingest", *ARGS, "--store", str(root), "--shard", "auto"]) == 0
    assert_same_rows(stored_rows(root), plain[0])
    capsys.readouterr()


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}, (5, 8)),
        ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}, (2, 4)),
        ({"RANK": "3", "WORLD_SIZE": "4"}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "8"}, (1, 2)),
    ],
)
def test_shard_from_environment(env, expect):
    assert shard_from_environment(env) == expect


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "none is set"),
        ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT"),
        ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"}, "not in 0..3"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "not an integer"),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, "step 2"),
    ],
)
def test_shard_auto_errors_say_what_to_set(env, needle):
    with pytest.raises(ShardError, match=needle):
        shard_from_environment(env)


def test_devices_are_validated(monkeypatch, capsys, tmp_path):
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    for bad in ("gpu0", "cpu:1", "cuda:x", " , "):
        with pytest.raises(ShardError):
            parse_devices(bad)
    with pytest.raises(ShardError, match="found no GPU"):
        parse_devices("all")  # this machine has none
    code = keygap(["ingest", *ARGS, "--store", str(tmp_path / "s"), "--devices", "cpu,cpu", "--shard", "0/2"])
    assert code == 2 and "without --shard and --device" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ray_shards_equal_one_run_and_ray_data_reads_the_store(tmp_path, plain):
    root = tmp_path / "store"
    r = _keygap("ingest", *ARGS, "--store", str(root), "--ray", "--shards", "2", env={"RAY_ADDRESS": ""})
    assert r.returncode == 0, r.stderr
    assert "shard 0/2 (ray): done" in r.stdout and "shard 1/2 (ray): done" in r.stdout
    assert_same_rows(stored_rows(root), plain[0])
    assert stored_samples(root) == plain[1]
    r = _keygap("ingest", *ARGS, "--store", str(root), "--ray", "--shards", "2", env={"RAY_ADDRESS": ""})
    assert r.returncode == 0 and r.stdout.count("done: 0 samples") == 2  # resumed: nothing left
    # Ray Data reads the finished store as it is, partitions included
    import ray
    from ray.data.datasource import Partitioning

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        data = ray.data.read_parquet(str(root / "keys"), partitioning=Partitioning("hive"))
        rows = data.filter(lambda row: row["layer"] == "1" and row["modality"] == "image").count()
        total = data.count()
    finally:
        ray.shutdown()
    want = stored_rows(root)
    assert total == len(want)
    assert rows == sum(1 for k in want if k[2] == 1 and k[4] == "image")
