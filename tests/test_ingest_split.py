"""Splits and the run manifest: a default split and its explicit name are one run; another split adds items."""

from __future__ import annotations

import pytest

from ingest.run import ingest
from store.reader import KeyStore


@pytest.mark.slow
def test_split_default_equals_explicit_and_other_split_adds_items(tmp_path):
    store = str(tmp_path / "s")
    first = ingest("tiny:llava", "sample-mmmu", store, limit=3, progress=False)
    again = ingest("tiny:llava", "sample-mmmu", store, split="validation", limit=3, progress=False)
    assert again.run_id == first.run_id and again.samples_done == 0 and again.samples_resumed == 3
    dev = ingest("tiny:llava", "sample-mmmu", store, split="dev", progress=False)
    assert dev.run_id != first.run_id and dev.samples_done >= 1
    ks = KeyStore(store)
    ids = ks.samples(["sample_id"])["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 3 + dev.samples_done
    runs = {r["run_id"]: r for r in ks.runs()}
    assert runs[first.run_id]["settings"]["split"] == "validation"
    assert runs[dev.run_id]["settings"]["split"] == "dev"
    # what relative depth and provenance need
    assert runs[first.run_id]["num_layers"] == 4
    assert runs[first.run_id]["versions"]["keygap"]
    assert runs[first.run_id]["attn_implementation"]


@pytest.mark.slow
def test_two_shard_processes_fill_one_fresh_store_at_once(tmp_path):
    """Both shards create the store at the same instant (the SLURM-array case) and neither duplicates rows."""
    import subprocess
    import sys

    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "keygap_tui.cli", "ingest", "--model", "tiny:llava", "--benchmark", "sample",
           "--store", str(store), "--limit", "8", "--layers", "1", "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ks = KeyStore(str(store))
    ids = ks.samples(["sample_id"])["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 8
    image = ks.load("tiny-llava", "sample", 1, "image")
    assert len(set(zip(image.sample_id, image.position))) == len(image) and set(image.sample_id) == set(ids)


def test_more_keys_prune_cached_answers_that_read_the_old_files(tmp_path):
    from keygap_tui.analysis import Side, compare
    from store.results import ResultsCache

    store = str(tmp_path / "s")
    ingest("tiny:llava", "sample", store, layers="1", limit=4, progress=False)
    side = dict(model="tiny-llava", benchmark="sample", layer=1)
    compare(store, Side(modality="image", **side), Side(modality="text", **side), metrics=("centroid",),
            n=None, permutations=0)
    assert len(ResultsCache(store).entries()) == 1
    ingest("tiny:llava", "sample", store, layers="1", limit=8, progress=False)  # the same run, 4 more items
    assert ResultsCache(store).entries() == []
