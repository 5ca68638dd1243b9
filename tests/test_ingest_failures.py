"""What a run manifest claims after a kill -9 and after a full disk: never a row that readers cannot see.

The manifest (runs/<run_id>.json) is written while the run goes; its totals must equal what the store has
committed (counted here independently: SQL over the store, and the samples files read with pyarrow)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.run import ingest
from keygap_tui.cli import main as keygap
from store.lock import LockLost
from store.reader import KeyStore

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(layers="1,3", keys="both", tokens="6:6", batch_size=2, limit=8, progress=False)


def _manifest(store: Path) -> dict:
    (path,) = (store / "runs").glob("*.json")
    return json.loads(path.read_text())


def _sql_count(store: Path, capsys) -> int:
    capsys.readouterr()
    assert keygap(["sql", "--store", str(store), "--format", "json", "SELECT count(*) AS n FROM keys"]) == 0
    return json.loads(capsys.readouterr().out)[0]["n"]


def _committed_samples(store: Path) -> int:
    t = pq.read_table(store / "samples", columns=["status"])
    return sum(s == "done" for s in t["status"].to_pylist())


def _info(store: Path, capsys) -> dict:
    capsys.readouterr()
    assert keygap(["info", "--store", str(store), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_after_kill_9_the_manifest_and_info_claim_only_committed_rows(tmp_path, capsys):
    clean, store = tmp_path / "clean", tmp_path / "store"
    ingest("tiny:llava", "sample", str(clean), **COMMON)
    clean_rows = _sql_count(clean, capsys)
    # a first attempt that commits two flushes and ends normally would be too easy: this one is killed
    # (SIGKILL from outside, no cleanup) while it holds the lock, after two flushes and half of a third
    script = textwrap.dedent(f"""
        import sys, time, store.writer as w
        orig, calls = w.KeyWriter._write_parquet, [0]
        def write(self, table, path, **kw):
            orig(self, table, path, **kw)
            calls[0] += 1
            if calls[0] == 2 * 9 + 3:  # 9 files per flush: 8 key files + the marker
                print("READY", flush=True)
                time.sleep(600)
        w.KeyWriter._write_parquet = write
        from ingest.run import ingest
        ingest("tiny:llava", "sample", {str(store)!r}, checkpoint_seconds=0, **{COMMON!r})
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list((store / "locks").glob("*.lock")), "the killed run's lock stays behind"
    committed = _sql_count(store, capsys)
    assert 0 < committed < clean_rows and _committed_samples(store) == 4
    manifest = _manifest(store)
    assert manifest["status"] == "running"
    assert manifest["keys_written"] == 0 and manifest["samples_done"] == 0  # all it claims: its start
    info = _info(store, capsys)
    assert info["rows"] == committed and info["samples"] == 4 and info["uncommitted_files"] == 3
    (run,) = info["runs"]
    assert run["status"].startswith("stopped (killed or crashed") and run["rows"] == committed
    assert info["writing"] == []  # the lock's pid is gone

    # the rerun takes over the dead lock, says so, and its manifest claims exactly what is committed
    assert keygap(["ingest", "--model", "tiny:llava", "--benchmark", "sample", "--store", str(store),
                   "--layers", "1,3", "--keys", "both", "--tokens", "6:6", "--batch-size", "2", "--limit", "8",
                   "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"took over the stale lock of `-c` (pid {proc.pid} on host" in err
    manifest = _manifest(store)
    assert manifest["status"] == "done" and manifest["attempts"] == 2
    assert manifest["keys_written"] == _sql_count(store, capsys) == clean_rows
    assert manifest["samples_done"] == _committed_samples(store) == 8
    assert not list((store / "locks").glob("*.lock"))


def _full_disk_after(monkeypatch, writes: int, manifests_too: bool) -> None:
    """Every Parquet write after the first ``writes`` fails with ENOSPC, as on a disk that filled up; with
    ``manifests_too`` the run manifest cannot be rewritten either."""
    import store.location
    import store.writer as w

    real, calls = w.KeyWriter._write_parquet, [0]

    def write(self, table, path, **kw):
        calls[0] += 1
        if calls[0] > writes:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(self, table, path, **kw)

    monkeypatch.setattr(w.KeyWriter, "_write_parquet", write)
    if manifests_too:
        real_atomic = store.location.atomic_write_bytes

        def atomic(final, data):
            if calls[0] > writes:
                raise OSError(errno.ENOSPC, "No space left on device", str(final))
            return real_atomic(final, data)

        monkeypatch.setattr(store.location, "atomic_write_bytes", atomic)


@pytest.mark.parametrize("manifests_too", [False, True], ids=["keys-only", "manifest-too"])
@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_the_manifest_claims_only_committed_rows(
        tmp_path, monkeypatch, capsys, manifests_too):
    from ingest.plan import plan_run

    store = tmp_path / "store"
    monkeypatch.setitem(plan_run.__kwdefaults__, "checkpoint_seconds", 0)  # a flush after every batch
    # two flushes go through; the third fails after its first key file
    _full_disk_after(monkeypatch, writes=2 * 9 + 1, manifests_too=manifests_too)
    code = keygap(["ingest", "--model", "tiny:llava", "--benchmark", "sample", "--store", str(store),
                   "--layers", "1,3", "--keys", "both", "--tokens", "6:6", "--batch-size", "2", "--limit", "8",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"keygap ingest: error: the disk holding {store} is full ([Errno 28] No space left on device" in err
    assert err.strip().endswith("free space, then rerun the same command to resume (committed samples are kept)")
    monkeypatch.undo()
    committed = _sql_count(store, capsys)
    assert committed > 0 and _committed_samples(store) == 4
    ks = KeyStore(str(store))
    assert ks.inventory.uncommitted == 0  # the failed flush took its key files with it
    manifest = _manifest(store)
    if manifests_too:  # the end could not be recorded: the start's claim (nothing yet) stands
        assert manifest["status"] == "running" and manifest["keys_written"] == 0
    else:
        assert manifest["status"] == "failed"
        assert manifest["keys_written"] == committed and manifest["samples_done"] == 4
    assert not list((store / "locks").glob("*.lock"))
    # space is back: the rerun completes, and the manifest counts every committed row
    again = ingest("tiny:llava", "sample", str(store), **COMMON)
    assert again.samples_resumed == 4 and again.samples_done == 4
    manifest = _manifest(store)
    assert manifest["status"] == "done" and manifest["keys_written"] == _sql_count(store, capsys)


@pytest.mark.slow
def test_a_writer_whose_lock_was_deleted_stops_before_writing_more(tmp_path, monkeypatch, capsys):
    import store.writer as w

    real = w.KeyWriter.flush

    def flush(self):
        if self._flush_no == 1:
            self.lock.path.unlink()  # someone deleted the lock by hand mid-run
        return real(self)

    monkeypatch.setattr(w.KeyWriter, "flush", flush)
    with pytest.raises(LockLost, match=r"the lock .*tiny-llava@sample@shard-0of1\.lock of tiny-llava on sample "
                                          r"is now held by nobody \(the lock file was deleted\): this process "
                                          r"stopped writing; rerun the same command to resume"):
        ingest("tiny:llava", "sample", str(tmp_path), checkpoint_seconds=0, **COMMON)
    assert _committed_samples(tmp_path) == 2
