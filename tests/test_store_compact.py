"""Compaction: few files per partition, the same keys and samples, and safe against kills and readers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_helpers import stored_rows, stored_samples, write_synthetic_store

from store import compact as compact_module
from store.compact import compact_run, runs_to_compact
from store.inventory import MARKER_FILES_KEY
from store.reader import KeyStore
from store.writer import KeyWriter

ROOT = Path(__file__).resolve().parents[1]


def _content(root: Path) -> tuple:
    """Everything a reader can see (each key once, asserted by stored_rows), and that nothing was left out."""
    assert KeyStore(root).problems == []
    return stored_rows(root), stored_samples(root)


def _tree(root: Path) -> dict[str, object]:
    """Names and bytes of every file under keys/ and samples/ (hidden temp files included). A commit marker
    is compared by its rows and metadata less the key files' mtimes (a rerun writes them at another time),
    each of which must still be the mtime of the file it names, so the index stays trusted."""
    out: dict[str, object] = {}
    for p in sorted(p for sub in ("keys", "samples") for p in (root / sub).rglob("*") if p.is_file()):
        rel = p.relative_to(root).as_posix()
        if p.parent.name != "samples" or p.name.startswith("."):
            out[rel] = p.read_bytes()
            continue
        table = pq.read_table(p)
        meta = dict(table.schema.metadata or {})
        files = json.loads(meta.pop(MARKER_FILES_KEY, b"{}"))
        for name, entry in files.items():
            assert entry.pop("mtime_ns") == (root / name).stat().st_mtime_ns
        out[rel] = (table.replace_schema_metadata(None).to_pylist(), files, meta)
    return out


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "s"
    # 8 flushes of 5 samples, two layers: 8 files in each of 4 partitions
    write_synthetic_store(root, samples=40, tokens=12, dim=8, flush_every=5, layers=(1, 2))
    return root


def test_compaction_leaves_one_file_per_partition_with_the_same_keys_and_samples(store):
    before = _content(store)
    seeded = [(KeyStore(store).load("m", "b", 1, "image", n=50, seed=s).x) for s in (None, 0, 5)]
    assert runs_to_compact(KeyStore(store).inventory) == ["run0"]
    report = compact_run(store, "run0")
    assert (report.groups, report.files_before, report.files_after) == (1, 32, 4)
    ks = KeyStore(store)
    assert all(len(files) == 1 for files in ks.inventory.files.values())
    assert len(ks.inventory.markers) == 1 and ks.inventory.uncommitted == 0
    assert _content(store) == before
    # a sample is a window of the random order: the same rows however the files are split
    for x, s in zip(seeded, (None, 0, 5)):
        assert np.array_equal(ks.load("m", "b", 1, "image", n=50, seed=s).x, x)
    assert sorted(p.name for p in (store / "samples").iterdir()) == ["part-run0-00008.parquet"]
    assert runs_to_compact(ks.inventory) == []
    assert compact_run(store, "run0").groups == 0  # idempotent


def test_a_resumed_run_appends_after_the_compacted_flush_and_compacts_again(store):
    compact_run(store, "run0")
    w = KeyWriter(store, "run0")
    assert w._flush_no == 9
    w.close()
    before = _content(store)
    write_synthetic_store(store, samples=10, tokens=12, dim=8, flush_every=5, layers=(1, 2), run_id="run0", seed=1,
                          first_sample=40)
    grown = _content(store)
    assert len(grown[1]) == len(before[1]) + 10
    compact_run(store, "run0")
    assert _content(store) == grown
    assert all(len(files) == 1 for files in KeyStore(store).inventory.files.values())


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import pyarrow.parquet as pq
    import store.compact
    from store.compact import compact_run
    what, n = sys.argv[2], int(sys.argv[3])
    store.compact.GROUP_BYTES = int(sys.argv[4])
    calls = [0]
    def die_on(fn):
        def wrapped(*a, **kw):
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup runs
            return fn(*a, **kw)
        return wrapped
    if what == "replace":
        os.replace = die_on(os.replace)
    elif what == "unlink":
        Path.unlink = die_on(Path.unlink)
    elif what == "write":
        pq.ParquetWriter.write_table = die_on(pq.ParquetWriter.write_table)
    compact_run(sys.argv[1], sys.argv[5] if len(sys.argv) > 5 else "run0")
""")


@pytest.mark.slow
@pytest.mark.parametrize(("group_bytes", "what", "n"), [
    # one group: die while merging, after the first and the last merged file, after the marker, while deleting
    (1 << 30, "write", 2), (1 << 30, "replace", 1), (1 << 30, "replace", 4), (1 << 30, "replace", 5),
    (1 << 30, "unlink", 1), (1 << 30, "unlink", 33), (1 << 30, "unlink", 40),
    # one partition per group: die inside the second group, after its marker, and before retiring the markers
    (1, "replace", 3), (1, "replace", 4), (1, "unlink", 9), (1, "unlink", 33),
])
def test_a_kill_during_compaction_loses_nothing_and_a_rerun_finishes_it(store, tmp_path, monkeypatch, group_bytes,
                                                                        what, n):
    reference = tmp_path / "reference"
    shutil.copytree(store, reference)
    monkeypatch.setattr(compact_module, "GROUP_BYTES", group_bytes)
    compact_run(reference, "run0")
    want = _tree(reference)
    before = _content(store)
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script), str(store), what, str(n), str(group_bytes)],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # it died where we meant it to
    assert _content(store) == before  # readers see every key once, whatever the kill left behind
    compact_run(store, "run0")
    assert _tree(store) == want  # the rerun ends in the same bytes as an uninterrupted compaction


SLOW_COMPACTION = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import store.compact
    from store.compact import compact_run
    store.compact.GROUP_BYTES = int(sys.argv[2])
    def slowly(fn):
        def wrapped(*a, **kw):
            time.sleep(0.04)  # widen every window between the steps a reader could fall into
            return fn(*a, **kw)
        return wrapped
    os.replace = slowly(os.replace)
    Path.unlink = slowly(Path.unlink)
    compact_run(sys.argv[1], "run0")
""")


@pytest.mark.slow
@pytest.mark.parametrize("group_bytes", [1 << 30, 1])
def test_readers_see_every_key_once_while_a_compaction_runs(store, tmp_path, group_bytes):
    from store.catalog import SqlCatalog
    from store.sql import query_store

    want = {key: sum(f.rows for f in files) for key, files in KeyStore(store).inventory.files.items()}
    done = KeyStore(store).done_samples("m", "b")
    early = KeyStore(store)
    assert early.inventory.files  # a long-lived view taken before the compaction (as the TUI holds one)
    catalog = SqlCatalog(store)
    script = tmp_path / "slow.py"
    script.write_text(SLOW_COMPACTION.format(repo=str(ROOT)))
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(group_bytes)])
    checks = 0
    try:
        while True:
            finished = proc.poll() is not None
            ks = KeyStore(store)
            for (model, bench, layer, rope, modality), rows in want.items():
                s = ks.load(model, bench, layer, modality, rope)
                assert len(s) == rows and len(set(zip(s.sample_id, s.position))) == rows
            assert ks.done_samples("m", "b") == done
            counts = query_store(catalog, "SELECT layer, modality, count(*) AS n, "
                                          "count(DISTINCT (sample_id, position)) "
                                          "AS u FROM keys GROUP BY ALL").to_pylist()
            assert {(r["layer"], r["modality"]): (r["n"], r["u"]) for r in counts} == {
                (k[2], k[4]): (n, n) for k, n in want.items()}
            checks += 1
            if finished:
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0 and checks >= 3
    assert all(len(files) == 1 for files in KeyStore(store).inventory.files.values())
    s = early.load("m", "b", 1, "image")  # its files are gone: it looks again
    assert len(s) == want[("m", "b", 1, "post", "image")]


def test_a_scan_that_a_compaction_overtakes_starts_over(store, monkeypatch):
    """The worst interleaving, made to happen: after the scan listed the markers, a compaction commits its
    files and deletes the old key files before the scan lists the keys. Without a second look the scan would
    pair the old markers with the new files and see no keys at all."""
    import store.inventory as inventory

    want = _content(store)
    real = inventory.list_parquet
    overtaken = []

    def list_parquet(fs, base, recursive):
        if base.endswith("/keys") and not overtaken:
            overtaken.append(True)
            markers = sorted((store / "samples").glob("part-*"))
            real_unlink = Path.unlink

            def unlink(self, missing_ok=False):
                if self in markers:
                    raise KeyboardInterrupt  # stop before the old markers go
                return real_unlink(self, missing_ok=missing_ok)

            monkeypatch.setattr(Path, "unlink", unlink)
            with pytest.raises(KeyboardInterrupt):
                compact_run(store, "run0")
            monkeypatch.setattr(Path, "unlink", real_unlink)
        return real(fs, base, recursive)

    monkeypatch.setattr(inventory, "list_parquet", list_parquet)
    assert _content(store) == want and overtaken


def test_keygap_compact_merges_every_run_and_skips_a_pair_being_written(tmp_path, capsys):
    from keygap_tui.cli import main as keygap
    from store.lock import acquire

    root = tmp_path / "s"
    write_synthetic_store(root, model="a", samples=20, tokens=4, dim=8, flush_every=5)
    write_synthetic_store(root, model="b", samples=20, tokens=4, dim=8, flush_every=5, run_id="run1")
    before = _content(root)
    with acquire(root, "b", "b", part="shard-0of1"):  # an ingest of model b is running
        assert keygap(["compact", "--store", str(root)]) == 1
    out = capsys.readouterr()
    assert "run0: 8 files -> 2" in out.out and "skipped" in out.err and "shard-0of1" not in out.out
    files = {key[0]: len(v) for key, v in KeyStore(root).inventory.files.items()}
    assert files == {"a": 1, "b": 4}
    assert keygap(["compact", "--store", str(root)]) == 0
    assert "run1: 8 files -> 2" in capsys.readouterr().out
    assert _content(root) == before
    assert all(len(v) == 1 for v in KeyStore(root).inventory.files.values())
    assert keygap(["compact", "--store", str(root)]) == 0
    assert "already compact" in capsys.readouterr().out


# --- queries and attention: a flush commits files in three trees, and compaction merges all three ---------
def _visible(root: Path) -> tuple[dict, dict]:
    """Every committed row of each tree (with its partition) as a multiset, and the files per partition."""
    ks = KeyStore(root)
    assert ks.problems == []
    rows: dict[str, dict] = {}
    files: dict[str, list[int]] = {}
    for tree, parts in (("keys", ks.inventory.files), ("queries", ks.inventory.queries),
                        ("attention", ks.inventory.attention)):
        counted: dict[tuple, int] = {}
        for partition, found in parts.items():
            for f in found:
                for row in pq.read_table(f.path).to_pylist():
                    item = (partition, tuple(sorted(row.items())))
                    counted[item] = counted.get(item, 0) + 1
        rows[tree] = counted
        files[tree] = sorted(len(found) for found in parts.values())
    return rows, files


def _on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for tree in ("keys", "queries", "attention", "samples")
            for p in (root / tree).rglob("*") if p.is_file()}


@pytest.fixture
def ingested(tmp_path, monkeypatch) -> tuple[Path, str]:
    """A real tiny-model run with queries and attention, one flush per sample, left uncompacted."""
    import ingest.run as run_module
    from ingest.run import ingest

    root = tmp_path / "q"
    monkeypatch.setattr(run_module, "compact_run_files", lambda plan, writer: None)
    summary = ingest("tiny:llava", "sample", str(root), layers="1,2", queries="text", attention=True, batch_size=1,
                     limit=4, checkpoint_seconds=0, device="cpu")
    return root, summary.run_id


@pytest.mark.slow
def test_compaction_merges_query_and_attention_files_with_the_keys(ingested):
    root, run_id = ingested
    before, files = _visible(root)
    assert all(before[tree] for tree in before) and all(n == 4 for tree in files for n in files[tree])
    report = compact_run(root, run_id)
    after, files = _visible(root)
    assert after == before  # every key, query and attention row once, none lost
    assert all(n == 1 for tree in files for n in files[tree]), files
    ks = KeyStore(root)
    assert not ks.inventory.hidden and not ks.inventory.replaced and len(ks.inventory.markers) == 1
    visible = {f.rel for f in ks.inventory.data_files()} | {_rel(root, m.path) for m in ks.inventory.markers}
    assert _on_disk(root) == visible  # nothing left behind in any tree
    assert report.files_after == sum(len(v) for v in files.values())
    assert runs_to_compact(ks.inventory) == []


@pytest.mark.slow
@pytest.mark.parametrize(("what", "when"), [("replace", "the marker"), ("unlink", "half the inputs deleted")])
def test_a_kill_while_compacting_queries_and_attention_loses_nothing(ingested, tmp_path, what, when):
    root, run_id = ingested
    before, files = _visible(root)
    partitions = sum(len(v) for v in files.values())  # one merged file (one rename) each, then the marker's
    n = partitions + 1 if what == "replace" else 2 * partitions
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script), str(root), what, str(n), str(1 << 30), run_id],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # it died where we meant it to
    assert _visible(root)[0] == before  # readers see every row once, whatever the kill left
    compact_run(root, run_id)
    after, files = _visible(root)
    assert after == before and all(n == 1 for tree in files for n in files[tree])


def _rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()
