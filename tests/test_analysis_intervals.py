"""Intervals and the design-aware test through the analysis layer: `keygap compare --ci`, the results cache
and SQL view, the report's Table, the TUI settings. Numbers are checked against the measure called
directly on the reader's slices."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from store_helpers import write_synthetic_store

from keygap_tui.analysis import DEFAULT_CI, Side, compare, controls, report
from keygap_tui.cli import main as keygap
from keygap_tui.stats import METRICS
from store.reader import KeyStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci") / "store"
    write_synthetic_store(root, model="m", benchmark="b", layers=(1, 2), samples=14, tokens=6, dim=6, shift=0.7)
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = keygap(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_compare_gives_intervals_by_default_that_equal_the_measure_called_directly(store):
    a, b = Side("m", "b", 1, "image"), Side("m", "b", 1, "text")
    rows = compare(store, a, b, ["mmd", "js", "energy", "centroid", "frechet"], n=None, permutations=30,
                   use_cache=False)
    ks = KeyStore(str(store))
    sa, sb = ks.load("m", "b", 1, "image", seed=0), ks.load("m", "b", 1, "text", seed=0)  # as compare reads them
    for row in rows:
        result = row.result
        if result.metric == "frechet":
            assert result.ci is None  # no interval for a measure without one
            continue
        kwargs = {"permutations": 30, "ci": DEFAULT_CI}
        direct = METRICS[result.metric](sa.x, sb.x, groups_x=sa.sample_id, groups_y=sb.sample_id, seed=0, **kwargs)
        assert result.ci == pytest.approx(direct.ci, rel=1e-9)
        assert result.params["ci"] == DEFAULT_CI and result.params["permutation_unit"] == "within-sample swap"


def test_intervals_survive_the_results_cache_and_reach_sql(store):
    from store.sql import query_store

    a, b = Side("m", "b", 2, "image"), Side("m", "b", 2, "text")
    fresh = compare(store, a, b, ["mmd", "js"], n=40, permutations=10)
    again = compare(store, a, b, ["mmd", "js"], n=40, permutations=10)
    assert all(r.cached for r in again)
    assert [r.result.ci for r in again] == [r.result.ci for r in fresh]
    table = query_store(str(store), "SELECT metric, ci_low, ci_high FROM results WHERE layer = 2 ORDER BY metric")
    got = {r["metric"]: (r["ci_low"], r["ci_high"]) for r in table.to_pylist()}
    assert got == {r.result.metric: r.result.ci for r in fresh}
    without = compare(store, a, b, ["mmd"], n=40, permutations=10, ci=None)[0]
    assert without.result.ci is None and not without.cached  # a different question, answered separately


def test_a_results_file_from_before_the_interval_columns_reads_with_nulls(tmp_path):
    from store.sql import query_store

    root = tmp_path / "old"
    write_synthetic_store(root, model="m", benchmark="b", layers=(1,), samples=6, tokens=4, dim=4, shift=0.5)
    compare(root, Side("m", "b", 1, "image"), Side("m", "b", 1, "text"), ["mmd"], n=20, permutations=5)
    (path,) = (root / "results").glob("part-*.parquet")
    old = pq.read_table(path)
    pq.write_table(old.drop_columns(["ci_low", "ci_high"]), path)
    table = query_store(str(root), "SELECT metric, value, ci_low FROM results")
    assert table.to_pylist()[0]["ci_low"] is None and table.column("value")[0].as_py() is not None


def test_controls_keep_disjoint_halves_and_give_no_intervals(store):
    rows = controls(store, "m", "b", 1, ["mmd"], n=40, replicates=1, permutations=10, use_cache=False)
    assert {r.result.params["permutation_unit"] for r in rows} == {"sample"}
    assert all(r.result.ci is None and r.result.extra["samples_shared"] == 0 for r in rows)


def test_compare_cli_prints_intervals_and_takes_ci(store, capsys):
    base = ["compare", "--store", str(store), "--model", "m", "--benchmark", "b", "--layer", "1", "--n", "40",
            "--permutations", "10", "--metrics", "mmd,js"]
    rc, out, _ = _run(capsys, *base, "--ci", "0.9", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert all(r["params"]["ci"] == 0.9 and r["ci_low"] < r["ci_high"] for r in rows)
    js = next(r for r in rows if r["metric"] == "js")
    assert js["ci_low"] < js["extra"]["bias_corrected"] < js["ci_high"]
    assert js["params"]["permutations"] == 10  # --permutations reaches JS
    rc, out, _ = _run(capsys, *base)
    assert rc == 0 and "ci = 95% bootstrap interval" in out and "[" in out.splitlines()[2]
    rc, out, _ = _run(capsys, *base, "--ci", "0", "--json")
    assert rc == 0 and all(r["ci_low"] is None for r in json.loads(out))
    rc, _, err = _run(capsys, *base, "--ci", "95")
    assert rc == 2 and "--ci must be a confidence level such as 0.95" in err


def test_report_table_has_interval_columns(store, tmp_path):
    out = tmp_path / "report"
    report(store, out, layers="1", metrics=("mmd", "js"), n=40, permutations=10, replicates=1, projection_n=30,
           projection_method="pca", png=False)
    with open(out / "table.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["mmd_ci_low"]) < float(row["mmd"]) < float(row["mmd_ci_high"])
    assert float(row["js_ci_low"]) < float(row["js_bc"]) < float(row["js_ci_high"])
    assert json.loads((out / "report.json").read_text())["parameters"]["ci"] == DEFAULT_CI


def test_tui_setting_for_the_interval_level(tmp_path):
    from keygap_tui.app.config import ConfigError, check_config, load_config

    path = tmp_path / "tui.toml"
    path.write_text("[analysis]\nci = 0.9\n")
    assert load_config(path).analysis.ci == 0.9
    path.write_text("[analysis]\nci = 95\n")
    config = load_config(path)
    assert config.analysis.ci == DEFAULT_CI  # the mistaken setting keeps its default
    with pytest.raises(ConfigError, match="ci must be a confidence level"):
        check_config(config)
