"""One writer per (model, benchmark): the lock file's rules (store/lock.py) and two real ingest processes
started at the same instant, round after round, whose store must equal one clean run's row for row."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from store import lock as store_lock
from store.errors import StoreError
from store.lock import LockHeld, LockLost, acquire, held_locks, lock_path

ROOT = Path(__file__).resolve().parents[1]


def test_parts_of_one_run_share_a_pair_and_everything_else_is_refused(tmp_path):
    a = acquire(tmp_path, "m", "b", part="shard-0of2", tag="run1")
    b = acquire(tmp_path, "m", "b", part="shard-1of2", tag="run1")  # the other shard of the same run
    other_pair = acquire(tmp_path, "m", "b2")  # another benchmark: its own lock
    with pytest.raises(LockHeld, match=r"m on b in .* is being written by `.*` \(pid \d+ on host .*, user .*, since "
                                       r".*\): wait for it to finish \(or pass --wait\); if that process is gone "
                                       r"for good, delete .*m@b@shard-1of2\.lock$"):
        acquire(tmp_path, "m", "b", part="shard-1of2", tag="run1")
    with pytest.raises(LockHeld, match="being written with other settings"):
        acquire(tmp_path, "m", "b", part="shard-2of4", tag="run2")
    with pytest.raises(LockHeld, match=r"delete .*m@b@shard-0of2\.lock"):
        acquire(tmp_path, "m", "b")  # the whole pair (compaction) waits for every shard
    assert {(h["benchmark"], h["part"]) for h in held_locks(tmp_path)} == {
        ("b", "shard-0of2"), ("b", "shard-1of2"), ("b2", None)}
    a.release(), b.release(), other_pair.release()
    assert not list((tmp_path / "locks").glob("*.lock"))
    with acquire(tmp_path, "m", "b") as whole:
        with pytest.raises(LockHeld, match=r"delete .*m@b\.lock"):
            acquire(tmp_path, "m", "b", part="shard-0of1", tag="run1")
        assert json.loads(whole.path.read_text())["pid"] == os.getpid()
    assert not whole.path.exists()


def test_a_lock_whose_holder_died_is_taken_over(tmp_path):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from store.lock import acquire
        acquire({str(tmp_path)!r}, "m", "b", command="keygap ingest (killed)")
        os._exit(9)  # no release: the file stays behind
        """)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    path = lock_path(tmp_path, "m", "b")
    assert json.loads(path.read_text())["command"] == "keygap ingest (killed)"
    with acquire(tmp_path, "m", "b") as lock:
        assert lock.notes == [f"took over the stale lock of `keygap ingest (killed)` (pid {proc_pid(lock, path)}"
                              f" on host {socket.gethostname()}, user {lock.info['user']}, since "
                              f"{lock.notes[0].split('since ')[1]}"]
        assert json.loads(path.read_text())["token"] == lock.info["token"]


def proc_pid(lock, path) -> int:
    return int(lock.notes[0].split("(pid ")[1].split()[0])


def test_a_reused_pid_and_another_hosts_silent_lock_are_stale_but_a_live_one_is_not(tmp_path):
    path = lock_path(tmp_path, "m", "b")
    path.parent.mkdir(parents=True)
    me = {"model": "m", "benchmark": "b", "part": None, "tag": "", "command": "old", "user": "u",
          "started": "2020-01-01T00:00:00Z", "token": "t0"}
    # our own pid, but a process that started at another time: the pid was reused
    path.write_text(json.dumps(me | {"host": socket.gethostname(), "pid": os.getpid(),
                                     "proc_start": store_lock._proc_start(os.getpid()) + 1}))
    acquire(tmp_path, "m", "b").release()
    # our own pid and start time: alive, held
    path.write_text(json.dumps(me | {"host": socket.gethostname(), "pid": os.getpid(),
                                     "proc_start": store_lock._proc_start(os.getpid())}))
    with pytest.raises(LockHeld, match="`old` \\(pid"):
        acquire(tmp_path, "m", "b")
    # another host: held while its heartbeat is fresh, stale after STALE_SECONDS without one
    path.write_text(json.dumps(me | {"host": "elsewhere.invalid", "pid": 1, "proc_start": None}))
    with pytest.raises(LockHeld, match=r"on host elsewhere\.invalid"):
        acquire(tmp_path, "m", "b")
    old = time.time() - store_lock.STALE_SECONDS - 5
    os.utime(path, (old, old))
    with acquire(tmp_path, "m", "b") as lock:
        assert "took over the stale lock of `old` (pid 1 on host elsewhere.invalid" in lock.notes[0]


def test_a_holder_whose_lock_was_taken_over_stops_writing(tmp_path):
    lock = acquire(tmp_path, "m", "b", heartbeat=0.05)
    lock.verify()
    before = lock.path.stat().st_mtime_ns
    time.sleep(0.3)
    assert lock.path.stat().st_mtime_ns > before  # the heartbeat refreshes it
    lock.path.unlink()  # someone deleted it by hand, and another process took it
    thief = acquire(tmp_path, "m", "b")
    with pytest.raises(LockLost, match=r"is now held by `.*`.*this process stopped writing; rerun the same command"):
        lock.verify()
    lock.release()  # must not delete the thief's file
    assert lock.path.exists()
    thief.release()


def test_wait_takes_the_lock_when_the_holder_finishes(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from store.lock import acquire
        with acquire({str(tmp_path)!r}, "m", "b", command="holder"):
            print("held", flush=True)
            time.sleep(1.5)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    told = []
    with pytest.raises(LockHeld, match="`holder`"):
        acquire(tmp_path, "m", "b", wait=0.3)
    with acquire(tmp_path, "m", "b", wait=None, on_wait=told.append):
        assert holder.wait(timeout=30) == 0
    assert len(told) == 1 and told[0].startswith("`holder` (pid")


# -- two processes creating the same new store ------------------------------------------------------------
class _FolderAppearsWhileListed:
    """pyarrow's order, played out: listing the folder fails (not there yet), then another process creates
    it before pyarrow asks whether it exists, so the listing raises FileNotFoundError despite allow_not_found
    (seen about once in 1,000 concurrent creations of one store by two processes before Location retried)."""

    def __init__(self, fs, root: Path, fail: int):
        self.fs, self.root, self.fail = fs, root, fail

    def get_file_info(self, what):
        if isinstance(what, pafs.FileSelector) and self.fail:
            self.fail -= 1
            self.root.mkdir(parents=True, exist_ok=True)
            raise FileNotFoundError(2, f"Cannot list directory '{what.base_dir}'. Detail: [errno 2] No such file")
        return self.fs.get_file_info(what)

    def __getattr__(self, name: str):
        return getattr(self.fs, name)  # everything else as the real filesystem does it


def test_a_store_folder_that_appears_while_it_is_listed_is_listed_again(tmp_path):
    from store.location import LISTING_ATTEMPTS, open_location
    from store.writer import init_store

    root = tmp_path / "new"
    loc = open_location(str(root))
    assert loc.children() == () and loc.list("keys") == []  # a folder that is not there lists as empty
    flaky = dataclasses.replace(loc, fs=_FolderAppearsWhileListed(loc.fs, root, fail=1))
    init_store(flaky)  # the race two shards creating one store run into: no "does not exist" error
    assert (root / "keygap.json").is_file()
    always = dataclasses.replace(loc, fs=_FolderAppearsWhileListed(loc.fs, root, fail=LISTING_ATTEMPTS))
    with pytest.raises(StoreError, match="does not exist"):  # a folder that keeps failing is still an error
        always.children()


# -- two real ingest processes at once --------------------------------------------------------------------
COMMON = dict(layers="1,3", keys="both", batch_size=2, limit=8, progress=False, checkpoint_seconds=0)

WORKER = """
import json, sys, time
from pathlib import Path
import torch
from ingest.models import load_model
from ingest.run import ingest
from store.errors import KeygapError

me, base, rounds, tokens, wait = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
common = json.loads(sys.argv[6])
torch.set_num_threads(1)  # two processes on a shared machine; also makes the key bytes comparable
lm = load_model("tiny:llava")
if me == "0":  # the reference: one clean run, in the same kind of process
    for t in sorted(set(sys.argv[7].split(","))):
        ingest(lm, "sample", str(base / f"clean-{t.replace(':', '-')}"), tokens=t, **common)
for k in range(rounds):
    (base / f"ready-{k}-{me}").touch()
    deadline = time.monotonic() + 300
    while len(list(base.glob(f"ready-{k}-*"))) < 2:  # a barrier: both start the same round together
        if time.monotonic() > deadline:
            sys.exit(f"the other worker never reached round {k}")
        time.sleep(0.001)
    try:
        s = ingest(lm, "sample", str(base / f"store-{k}"), tokens=tokens, wait=wait, **common)
        out = {"round": k, "done": s.samples_done, "resumed": s.samples_resumed}
    except KeygapError as exc:
        out = {"round": k, "error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out), flush=True)
"""


def _rows(root) -> dict:
    """{every column of a stored row but run_id: the row}, asserting no row is stored twice."""
    t = ds.dataset(f"{root}/keys", format="parquet", partitioning="hive").to_table()
    cols = [c for c in t.column_names if c != "run_id"]
    rows = list(zip(*[t[c].to_pylist() for c in cols]))
    assert len(set(rows)) == len(rows), "a row is stored twice"
    return {r[:-1]: r[-1] for r in rows}


def _samples(root) -> list[tuple]:
    t = pq.read_table(f"{root}/samples")
    return sorted(zip(*[t[c].to_pylist() for c in t.column_names if c != "run_id"]))


def _race(base: Path, rounds: int, tokens: tuple[str, str], wait: bool) -> list[list[dict]]:
    base.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(i), str(base), str(rounds), tokens[i],
                               "1" if wait else "0", json.dumps(COMMON), ",".join(tokens)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    results = [[json.loads(line) for line in out.splitlines()] for out, _ in outs]
    return [[results[0][k], results[1][k]] for k in range(rounds)]


@pytest.mark.slow
@pytest.mark.parametrize("wait", [False, True], ids=["refuse", "wait"])
def test_the_same_ingest_twice_at_once_stores_one_run(tmp_path, wait):
    rounds = _race(tmp_path / "race", 20, ("6:6", "6:6"), wait)
    want_rows, want_samples = _rows(tmp_path / "race" / "clean-6-6"), _samples(tmp_path / "race" / "clean-6-6")
    for k, pair in enumerate(rounds):
        store = tmp_path / "race" / f"store-{k}"
        assert _rows(store) == want_rows, (k, pair)  # every row, its labels and its key bytes
        assert _samples(store) == want_samples, (k, pair)
        assert sum(r.get("done", 0) for r in pair) == 8, pair  # no sample was done twice
        if wait:
            assert all("error" not in r for r in pair), pair
        else:
            refused = [r for r in pair if "error" in r]
            assert all(r["error"] == "LockHeld" and "tiny-llava on sample in" in r["message"] for r in refused), pair
        assert not list((store / "locks").glob("*.lock*"))  # both released their locks
    if not wait:
        # both really ran at once: most rounds refused one of the two
        assert sum(any("error" in r for r in pair) for pair in rounds) >= 10


@pytest.mark.slow
def test_two_ingests_with_clashing_tokens_at_once_never_mix(tmp_path):
    rounds = _race(tmp_path / "race", 10, ("6:6", "4:4"), wait=False)
    want = {t: _rows(tmp_path / "race" / f"clean-{t.replace(':', '-')}") for t in ("6:6", "4:4")}
    for k, pair in enumerate(rounds):
        winners = [tokens for tokens, r in zip(("6:6", "4:4"), pair, strict=True) if "error" not in r]
        assert len(winners) == 1, pair  # the other was refused: by the lock, or by the settings check after it
        loser = next(r for r in pair if "error" in r)
        assert loser["error"] in ("LockHeld", "IngestError"), pair
        assert "other settings" in loser["message"], pair
        assert _rows(tmp_path / "race" / f"store-{k}") == want[winners[0]], (k, pair)
