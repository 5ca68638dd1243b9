"""The results cache: exact round trips, atomic files, invalidation by re-ingest, and no recomputation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from store_helpers import write_synthetic_store

from keygap_tui.analysis import ComparisonRow, Side, compare, controls, project
from store.reader import KeyStore
from store.results import RESULTS_SCHEMA, ResultsCache, fingerprint, question_key
from store.schema import partition_dir


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_synthetic_store(root, layers=(1,), samples=12, tokens=8, dim=16, shift=0.5)
    return root


def _count_calls(monkeypatch, name):
    """Wrap the real metric so the test can see whether it ran (the computation itself is untouched)."""
    import keygap_tui.stats as stats

    real = stats.METRICS[name]
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    wrapped.__signature__ = __import__("inspect").signature(real)
    monkeypatch.setitem(stats.METRICS, name, wrapped)
    return calls


def test_put_get_round_trip_is_exact_and_atomic(tmp_path):
    cache = ResultsCache(tmp_path)
    deps = {"keys/model=m/benchmark=b/layer=1/rope=post/modality=image": "abc"}
    rows = [
        {"kind": "compare", "model": "m", "benchmark": "b", "layer": 1, "metric": "mmd", "value": 0.1234567891234,
         "p_value": None, "n_a": 10, "n_b": 12, "seed": 3, "seconds": 0.5, "params": {"bandwidth": 2.5},
         "extra": {"null": [1, 2]}, "side_a": {"modality": "image"}, "side_b": {"modality": "text"}},
        {"metric": "js", "value": float("nan"), "p_value": 0.01, "replicate": 2},
    ]
    key = question_key({"metric": "mmd", "n": 10}, cache.data_id(deps))
    path = Path(cache.put(key, rows, depends=deps))
    assert path.name == f"part-{key}.parquet"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    got = cache.get(key)
    assert got[0]["value"] == rows[0]["value"] and got[0]["p_value"] is None
    assert got[0]["params"] == {"bandwidth": 2.5} and got[0]["replicate"] == -1
    assert got[0]["side_a"] == {"modality": "image"} and got[1]["params"] is None
    assert np.isnan(got[1]["value"]) and got[1]["replicate"] == 2 and got[1]["row"] == 1
    assert set(got[0]) == set(RESULTS_SCHEMA.names)
    assert cache.get("0" * 32) is None


def test_question_key_changes_with_any_parameter_or_data():
    base = question_key({"metric": "mmd", "n": 10, "seed": 0}, "data1")
    assert base == question_key({"seed": 0, "n": 10, "metric": "mmd"}, "data1")  # order does not matter
    assert base != question_key({"metric": "mmd", "n": 11, "seed": 0}, "data1")
    assert base != question_key({"metric": "mmd", "n": 10, "seed": 1}, "data1")
    assert base != question_key({"metric": "mmd", "n": 10, "seed": 0}, "data2")


def test_second_compare_is_served_from_cache_without_recomputing(store, monkeypatch):
    calls = _count_calls(monkeypatch, "mmd")
    a, b = Side("m", "b", 1, "image"), Side("m", "b", 1, "text")
    first = compare(store, a, b, ["mmd", "js"], n=40, seed=1, permutations=20)
    assert len(calls) == 1 and not any(r.cached for r in first)
    # A fresh KeyStore stands for a restarted process: the answer lives in STORE/results/.
    second = compare(KeyStore(str(store)), a, b, ["mmd", "js"], n=40, seed=1, permutations=20)
    assert len(calls) == 1, "the cached answer must not recompute"
    assert all(r.cached for r in second)
    for x, y in zip(first, second, strict=True):  # field for field, through the one serialisation
        assert x.to_dict() | {"cached": True} == y.to_dict() and x.result == y.result
    # ... and the JSON that `keygap compare --json` prints reads back as the same rows
    assert [ComparisonRow.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False))) for r in second] == second
    # Any parameter change is a new question.
    third = compare(store, a, b, ["mmd"], n=40, seed=2, permutations=20)
    assert len(calls) == 2 and not third[0].cached


def test_controls_are_cached_row_for_row(store, monkeypatch):
    calls = _count_calls(monkeypatch, "mmd")
    first = controls(store, "m", "b", 1, ["mmd"], n=30, seed=0, replicates=2)
    assert len(calls) == 6  # 3 groups x 2 replicates
    second = controls(store, "m", "b", 1, ["mmd"], n=30, seed=0, replicates=2)
    assert len(calls) == 6 and all(r.cached for r in second)
    assert [(r.group, r.replicate, r.result) for r in first] == [(r.group, r.replicate, r.result) for r in second]


def test_reingest_invalidates_and_prune_removes_stale_answers(store, monkeypatch):
    calls = _count_calls(monkeypatch, "mmd")
    a, b = Side("m", "b", 1, "image"), Side("m", "b", 1, "text")
    before = compare(store, a, b, ["mmd"], n=None, permutations=0)
    # Another run adds samples to the same partitions: the data read changed.
    write_synthetic_store(store, layers=(1,), samples=6, tokens=8, dim=16, shift=0.5, seed=7, run_id="run1")
    after = compare(store, a, b, ["mmd"], n=None, permutations=0)
    assert len(calls) == 2 and not after[0].cached
    assert after[0].result.n_a > before[0].result.n_a
    cache = ResultsCache(store)
    assert len(cache.entries()) == 2
    assert cache.prune_stale() == 1
    assert len(cache.entries()) == 1
    assert compare(store, a, b, ["mmd"], n=None, permutations=0)[0].cached


def test_fingerprint_tracks_size_and_mtime(store):
    key = ("m", "b", 1, "post", "image")
    before = fingerprint(KeyStore(store).inventory.files[key])
    assert before != "missing" and fingerprint([]) == "missing"
    victim = sorted(partition_dir(store, *key).glob("*.parquet"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 1))  # rewritten: same size
    assert fingerprint(KeyStore(store).inventory.files[key]) != before


def test_results_table_is_visible_to_sql(store):
    from store.sql import query_store

    a, b = Side("m", "b", 1, "image"), Side("m", "b", 1, "text")
    rows = compare(store, a, b, ["mmd", "js"], n=40, permutations=10)
    table = query_store(str(store), "SELECT metric, value, n_a, layer FROM results ORDER BY metric")
    got = table.to_pylist()
    assert [r["metric"] for r in got] == ["js", "mmd"]
    by_metric = {r.result.metric: r.result.value for r in rows}
    assert all(r["value"] == by_metric[r["metric"]] and r["layer"] == 1 for r in got)


def test_projections_are_cached_beside_the_results_view(store):
    from store.sql import query_store

    sides = [Side("m", "b", 1, "image"), Side("m", "b", 1, "text")]
    first = project(store, sides, method="pca", n=30, seed=2)
    second = project(KeyStore(str(store)), sides, method="pca", n=30, seed=2)
    assert not first.cached and second.cached
    np.testing.assert_array_equal(first.coords, second.coords)
    np.testing.assert_array_equal(first.slice_index, second.slice_index)
    assert list(first.sample_id) == list(second.sample_id) and second.params == first.params
    compare(store, *sides, ["centroid"], n=20, permutations=0)
    # The array answer sits outside results/*.parquet, so the SQL view keeps one schema.
    assert query_store(str(store), "SELECT count(*) AS n FROM results").to_pylist() == [{"n": 1}]
    write_synthetic_store(store, layers=(1,), samples=2, tokens=8, dim=16, seed=9, run_id="run2")
    assert ResultsCache(store).prune_stale() == 2
    assert not project(store, sides, method="pca", n=30, seed=2).cached
