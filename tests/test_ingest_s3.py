"""Ingest into S3: a real S3 server (moto, 127.0.0.1). The lock's rules hold on objects (conditional
requests), a run killed from outside and resumed leaves exactly the rows of one clean run on a local path,
no unmarked object survives, `keygap sql` reads it, and the credentials appear nowhere."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server
from store_helpers import assert_same_rows, stored_rows, stored_samples

from store import lock as store_lock
from store.errors import StoreError
from store.lock import LockHeld, LockLost, acquire, held_locks
from store.reader import KeyStore

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(layers="1,3", keys="both", tokens="6:6", batch_size=2, limit=8, progress=False)
PER_FLUSH = 2 * 2 * 2 + 1  # layers x ropes x (image, text) key files + the samples marker


@pytest.fixture
def s3(s3_server, monkeypatch):
    """(server, a fresh bucket's store URI, the bucket)."""
    s3_server.point_aws_at(monkeypatch)
    bucket = s3_server.make_bucket()
    return s3_server, f"s3://{bucket}/study/store", bucket


def _lock_objects(server: S3Server, bucket: str) -> dict[str, dict]:
    return {k.rsplit("/", 1)[1]: json.loads(v) for k, v in server.objects(bucket).items() if "/locks/" in k}


def test_lock_rules_hold_on_s3(s3):
    server, uri, bucket = s3
    a = acquire(uri, "m", "b", part="shard-0of2", tag="run1")
    b = acquire(uri, "m", "b", part="shard-1of2", tag="run1")  # the other shard of the same run
    with pytest.raises(LockHeld, match=r"being written by `.*` \(pid \d+ on host .*delete s3://.*/study/store/locks/"
                                       r"m@b@shard-1of2\.lock$"):
        acquire(uri, "m", "b", part="shard-1of2", tag="run1")
    with pytest.raises(LockHeld, match="being written with other settings"):
        acquire(uri, "m", "b", part="shard-0of3", tag="run2")
    with pytest.raises(LockHeld, match=r"delete .*m@b@shard-0of2\.lock"):
        acquire(uri, "m", "b")  # the whole pair waits for every shard
    assert set(_lock_objects(server, bucket)) == {"m@b@shard-0of2.lock", "m@b@shard-1of2.lock"}
    assert {h["part"] for h in held_locks(uri)} == {"shard-0of2", "shard-1of2"}
    a.release(), b.release()
    assert _lock_objects(server, bucket) == {}


@pytest.mark.slow
def test_conflicting_takers_at_the_same_instant_never_both_win_on_s3(s3):
    _, uri, _ = s3
    def take(tag: str, start: threading.Barrier, won: list) -> None:
        start.wait()
        try:
            won.append(acquire(uri, "m", "b", part="shard-0of1", tag=tag, heartbeat=0))
        except LockHeld:
            pass

    for round_no in range(6):
        won: list = []
        start = threading.Barrier(4)
        threads = [threading.Thread(target=take, args=(f"run{round_no}-{i}", start, won)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) <= 1, f"round {round_no}: {len(won)} conflicting takers all hold the lock"
        for lock in won:
            lock.release()


@pytest.mark.slow
def test_stale_locks_on_s3_are_taken_over_and_a_heartbeat_never_overwrites_a_thief(s3, monkeypatch):
    server, uri, bucket = s3
    # a holder on this host whose process is gone
    dead = _dead_pid()
    server_put = _client(server)
    me = {"model": "m", "benchmark": "b", "part": None, "tag": "", "command": "old", "user": "u",
          "started": "2020-01-01T00:00:00Z", "token": "t0", "proc_start": None}
    key = "study/store/locks/m@b.lock"
    server_put.put_object(Bucket=bucket, Key=key, Body=json.dumps(me | {"host": socket.gethostname(), "pid": dead}))
    with acquire(uri, "m", "b", heartbeat=0) as lock:
        assert lock.notes[0].startswith(f"took over the stale lock of `old` (pid {dead} on host")
    # another host: held while fresh, stale once not rewritten for STALE_SECONDS (by the server's clock)
    server_put.put_object(Bucket=bucket, Key=key, Body=json.dumps(me | {"host": "elsewhere.invalid", "pid": 1}))
    with pytest.raises(LockHeld, match=r"on host elsewhere\.invalid"):
        acquire(uri, "m", "b")
    monkeypatch.setattr(store_lock, "STALE_SECONDS", 1.0)
    time.sleep(2.5)  # Last-Modified has whole seconds
    lock = acquire(uri, "m", "b", heartbeat=0.2)
    assert "on host elsewhere.invalid" in lock.notes[0]
    first = server_put.head_object(Bucket=bucket, Key=key)["LastModified"]
    time.sleep(2.2)
    assert server_put.head_object(Bucket=bucket, Key=key)["LastModified"] > first  # the heartbeat rewrote it
    server_put.delete_object(Bucket=bucket, Key=key)  # someone deleted it by hand, and another process took it
    monkeypatch.setattr(store_lock, "STALE_SECONDS", 600.0)
    thief = acquire(uri, "m", "b", heartbeat=0)
    time.sleep(1.0)  # several heartbeats of the first holder: each one refused by If-Match
    assert _lock_objects(server, bucket)["m@b.lock"]["token"] == thief.info["token"]
    with pytest.raises(LockLost, match=r"is now held by `.*`.*this process stopped writing; rerun the same command"):
        lock.verify()
    lock.release()  # must not delete the thief's object
    assert _lock_objects(server, bucket)["m@b.lock"]["token"] == thief.info["token"]
    thief.release()
    assert _lock_objects(server, bucket) == {}


@pytest.mark.slow
def test_ingest_refuses_an_s3_prefix_that_holds_something_else(s3):
    from ingest.run import ingest

    server, uri, bucket = s3
    _client(server).put_object(Bucket=bucket, Key="study/store/notes.txt", Body=b"mine")
    with pytest.raises(StoreError, match=r"s3://.*/study/store exists and is not a keygap store \(no keygap\.json\): "
                                         r"choose an empty or new --store"):
        ingest("tiny:llava", "sample", uri, **COMMON)
    assert set(server.objects(bucket)) == {"study/store/notes.txt"}


@pytest.mark.slow
def test_killed_s3_ingest_resumed_equals_one_local_run(s3, tmp_path, capsys, monkeypatch):
    from ingest.run import ingest
    from keygap_tui.cli import main as keygap

    server, uri, bucket = s3
    local = tmp_path / "local"
    ingest("tiny:llava", "sample", str(local), checkpoint_seconds=0, **COMMON)
    # killed from outside (SIGKILL, no cleanup) in its third flush: after two key objects of that flush are
    # uploaded, before its commit marker, while it holds the lock
    script = textwrap.dedent(f"""
        import time, store.writer as w
        orig, calls = w.KeyWriter._write_parquet, [0]
        def write(self, table, rel, **kw):
            size = orig(self, table, rel, **kw)
            calls[0] += 1
            if calls[0] == 2 * {PER_FLUSH} + 2:
                print("READY", flush=True)
                time.sleep(600)
            return size
        w.KeyWriter._write_parquet = write
        from ingest.run import ingest
        ingest("tiny:llava", "sample", {uri!r}, checkpoint_seconds=0, **{COMMON!r})
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=os.environ | server.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        _, killed_err = proc.communicate(timeout=60)
    objects = server.objects(bucket)
    assert "study/store/locks/tiny-llava@sample@shard-0of1.lock" in objects  # the killed holder's lock stays
    unmarked = [k for k in objects if k.endswith("-00002.parquet")]
    assert len(unmarked) == 2 and all("/keys/" in k for k in unmarked)  # two key objects, no marker
    assert len(KeyStore(uri).done_samples("tiny-llava", "sample")) == 4  # readers see the two committed flushes

    # resumed by the same command, the store named by KEYGAP_STORE
    monkeypatch.setenv("KEYGAP_STORE", uri)
    code = keygap(["ingest", "--model", "tiny:llava", "--benchmark", "sample", "--layers", "1,3", "--keys", "both",
                   "--tokens", "6:6", "--batch-size", "2", "--limit", "8", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "took over the stale lock of" in err and "4 already stored" in out
    # every label exactly; keys up to the float noise of torch's thread count, which differs between the
    # killed process and this one (up to 7e-5 measured in the full suite)
    assert_same_rows(stored_rows(uri), stored_rows(local), atol=2e-4)
    assert stored_samples(uri) == stored_samples(local)
    ks = KeyStore(uri)
    committed = {ks.location.rel(f.path) for f in ks.inventory.all_files()}
    objects = server.objects(bucket)
    # (a key ending in "/" is the empty folder marker pyarrow may write when it deletes a file)
    stored = {k.removeprefix("study/store/") for k in objects if "/keys/" in k and not k.endswith("/")}
    assert stored == committed  # every key object is named by a commit marker: the killed flush's went
    assert not [k for k in objects if "/locks/" in k]
    run = json.loads(objects[f"study/store/runs/{ks.runs()[0]['run_id']}.json"])
    assert run["status"] == "done" and run["attempts"] == 2 and run["samples_done"] == 8

    query = ("SELECT layer, rope, modality, count(*) AS n, count(DISTINCT sample_id) AS s FROM keys "
             "GROUP BY ALL ORDER BY ALL")
    assert keygap(["sql", "--store", uri, query]) == 0
    from_s3 = capsys.readouterr().out
    assert keygap(["sql", "--store", str(local), query]) == 0
    assert from_s3 == capsys.readouterr().out and from_s3.count("\n") >= 8

    for text in (out, err, from_s3, killed_err):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    # nor in any object: manifests, markers, key files, lock files (while they existed) or the results cache
    assert not [k for k, v in objects.items() if SECRET_KEY.encode() in v or ACCESS_KEY.encode() in v]


def _client(server: S3Server):
    import boto3

    env = server.env()
    return boto3.client("s3", endpoint_url=server.endpoint, region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_two_shard_processes_into_one_s3_store_equal_one_local_run(s3, tmp_path):
    """`--devices cpu,cpu`: two real processes take their part locks on S3 and create the store at once."""
    server, uri, bucket = s3
    args = ["ingest", "--model", "tiny:llava", "--benchmark", "sample", "--layers", "1,3", "--keys", "both",
            "--tokens", "6:6", "--batch-size", "2", "--limit", "8", "--no-progress"]
    keygap = [sys.executable, "-m", "keygap_tui.cli"]
    env = os.environ | server.env()
    two = subprocess.run([*keygap, *args, "--store", uri, "--devices", "cpu,cpu"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "shard 0/2 (cpu): done: 4 samples" in two.stdout and "shard 1/2 (cpu): done: 4 samples" in two.stdout
    one = subprocess.run([*keygap, *args, "--store", str(tmp_path / "local")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    assert_same_rows(stored_rows(uri), stored_rows(tmp_path / "local"))
    assert stored_samples(uri) == stored_samples(tmp_path / "local")
    assert not [k for k in server.objects(bucket) if "/locks/" in k]
    assert SECRET_KEY not in two.stdout + two.stderr and ACCESS_KEY not in two.stdout + two.stderr
