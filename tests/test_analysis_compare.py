"""compare / controls / layer_sweep on real Parquet stores, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from store_helpers import write_synthetic_store

from keygap_tui.analysis import (
    GROUPS,
    AnalysisError,
    Cancelled,
    Side,
    compare,
    controls,
    layer_sweep,
    resolve_model_layers,
    split_samples,
)
from keygap_tui.stats import METRICS
from store.errors import KeygapError
from store.reader import KeyStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp") / "store"
    write_synthetic_store(root, model="m4", layers=(1, 2, 3), samples=16, tokens=8, dim=12, shift=0.6, seed=1)
    write_synthetic_store(root, model="m8", layers=(1, 4, 7), samples=16, tokens=8, dim=20, shift=0.6, seed=2,
                          run_id="run8")
    return root


def naive_unbiased_mmd2(x, y, sigma2):
    """MMD^2 U-statistic from the textbook formula, float64, no shared code with keygap_tui.stats."""
    x, y = x.astype(np.float64), y.astype(np.float64)

    def k(a, b):
        return np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_compare_mmd_equals_the_textbook_formula_on_the_same_keys(store):
    a, b = Side("m4", "b", 2, "image"), Side("m4", "b", 2, "text")
    row = compare(store, a, b, ["mmd"], n=50, seed=3, permutations=0, use_cache=False)[0]
    got = row.result
    ks = KeyStore(str(store))
    xa = ks.load("m4", "b", 2, "image", n=50, seed=3).x
    xb = ks.load("m4", "b", 2, "text", n=50, seed=3).x
    sigma2 = np.median(pdist(np.vstack([xa, xb]).astype(np.float64), "sqeuclidean")) / 2
    assert got.params["bandwidth"] == pytest.approx(sigma2, rel=1e-5)
    assert got.value == pytest.approx(naive_unbiased_mmd2(xa, xb, sigma2), rel=1e-4, abs=1e-7)
    assert (got.n_a, got.n_b, got.p_value) == (50, 50, None)
    assert got.params["n_per_side"] == 50 and got.params["seed"] == 3
    assert row.depth == pytest.approx(2 / 3)  # layer 2 of a 4-layer model (run manifest num_layers)


def test_compare_passes_sample_groups_and_records_every_parameter(store):
    a, b = Side("m4", "b", 1, "image"), Side("m4", "b", 1, "text")
    rows = compare(store, a, b, ["mmd", "js"], n=None, seed=0, permutations=50, use_cache=False,
                   metric_params={"js": {"bins": 16}})
    mmd, js = (r.result for r in rows)
    assert mmd.n_a == mmd.n_b == 16 * 8  # n=None reads every key
    assert mmd.p_value == pytest.approx(1 / 51)  # a clear shift: no permutation beats it
    assert mmd.params["permutation_unit"] == "within-sample swap"  # image and text of the same samples
    # The JS value is exactly what the metric gives on the reader's slices with sample ids as groups.
    ks = KeyStore(str(store))
    sa, sb = ks.load("m4", "b", 1, "image"), ks.load("m4", "b", 1, "text")
    direct = METRICS["js"](sa.x, sb.x, groups_x=sa.sample_id, groups_y=sb.sample_id, seed=0, bins=16)
    assert js.value == pytest.approx(direct.value, rel=1e-12) and js.params["bins"] == 16


def test_segment_filter_and_clear_errors(store):
    base = dict(n=20, permutations=0, use_cache=False)
    rows = compare(store, Side("m4", "b", 1, "image"), Side("m4", "b", 1, "text", ("question",)), ["centroid"], **base)
    assert rows[0].side_b.what == "text[question]" and rows[0].result.n_b == 20
    with pytest.raises(AnalysisError, match="segments options"):
        compare(store, Side("m4", "b", 1, "image"), Side("m4", "b", 1, "text", ("options",)), ["mmd"], **base)
    with pytest.raises(KeygapError, match="layer"):
        compare(store, Side("m4", "b", 5, "image"), Side("m4", "b", 5, "text"), ["mmd"], **base)
    with pytest.raises(AnalysisError, match="unknown metric nope"):
        compare(store, Side("m4", "b", 1, "image"), Side("m4", "b", 1, "text"), ["nope"], **base)
    with pytest.raises(AnalysisError, match="12-dim keys"):
        compare(store, Side("m4", "b", 1, "image"), Side("m8", "b", 1, "text"), ["mmd"], **base)
    with pytest.raises(AnalysisError, match="at least 2"):
        compare(store, Side("m4", "b", 1, "image"), Side("m4", "b", 1, "text"), ["mmd"], n=1)
    with pytest.raises(AnalysisError, match="unknown modality"):
        Side("m4", "b", 1, "audio")


def test_split_samples_gives_disjoint_reproducible_halves():
    ids = [f"s{i}" for i in range(11)] * 3
    a, b = split_samples(ids, seed=4, replicate=0)
    assert a.isdisjoint(b) and a | b == set(ids) and len(a) == 5
    assert (a, b) == split_samples(ids, seed=4, replicate=0)
    assert a != split_samples(ids, seed=4, replicate=1)[0]


def test_controls_share_one_bandwidth_and_separate_groups(store):
    rows = controls(store, "m4", "b", 3, ["mmd"], n=30, seed=5, replicates=3, use_cache=False)
    assert [r.group for r in rows[:3]] == list(GROUPS) and len(rows) == 9
    assert sorted({r.replicate for r in rows}) == [0, 1, 2]
    # One bandwidth, fitted on the pooled image + text keys loaded for this layer (2n per modality).
    ks = KeyStore(str(store))
    pooled = np.vstack([ks.load("m4", "b", 3, m, n=60, seed=5).x for m in ("image", "text")]).astype(np.float64)
    sigma2 = np.median(pdist(pooled, "sqeuclidean")) / 2
    assert len({r.result.params["bandwidth"] for r in rows}) == 1
    assert rows[0].result.params["bandwidth"] == pytest.approx(sigma2, rel=1e-6)
    means = {g: np.mean([r.result.value for r in rows if r.group == g]) for g in GROUPS}
    assert means["image-vs-text"] > 5 * max(abs(means["image-vs-image"]), abs(means["text-vs-text"]))
    assert all(r.result.n_a <= 30 and r.result.n_b <= 30 for r in rows)


def test_layer_sweep_aligns_models_of_different_depth(store):
    ks = KeyStore(str(store))
    assert resolve_model_layers(ks, "m4", "b", "early,middle,late") == [1, 2, 3]
    assert resolve_model_layers(ks, "m8", "b", "middle") == [4]
    assert resolve_model_layers(ks, "m8", "b", "50%,100%") == [4, 7]
    with pytest.raises(AnalysisError, match=r"not in the store \(stored: 1, 4, 7\)"):
        resolve_model_layers(ks, "m8", "b", "2")
    rows = layer_sweep(store, ["all"], "b", "middle,late", metrics=["centroid"], n=20, permutations=0,
                       use_cache=False)
    got = sorted((r.side_a.model, r.side_a.layer, round(r.depth, 3)) for r in rows)
    assert got == [("m4", 2, 0.667), ("m4", 3, 1.0), ("m8", 4, 0.571), ("m8", 7, 1.0)]


def test_progress_is_monotone_and_cancel_stops(store):
    seen = []
    layer_sweep(store, ["m4"], "b", "all", metrics=["centroid"], n=20, permutations=0, with_controls=True,
                replicates=1, use_cache=False, progress=lambda f, msg: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(Cancelled):
        layer_sweep(store, ["m4"], "b", "all", metrics=["centroid"], n=20, use_cache=False, should_stop=lambda: True)


def test_cli_compare_sweeps_and_controls(store, capsys):
    import json

    from keygap_tui.cli import main as keygap

    rc = keygap(["compare", "--store", str(store), "--model", "all", "--layer", "late",  # the only benchmark
                 "--metrics", "centroid", "--n", "20", "--controls", "--replicates", "1", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["model"], r["layer"]) for r in rows} == {("m4", 3), ("m8", 7)}
    assert sorted({r["group"] for r in rows if r["kind"] == "controls"}) == sorted(GROUPS)
    assert all({"metric", "value", "p_value", "n_a", "n_b", "params"} <= set(r) for r in rows)
    rc = keygap(["compare", "--store", str(store), "--model", "m4", "--layer", "2", "--metrics", "centroid",
                 "--n", "20", "--controls", "--replicates", "2", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["kind"] for r in rows] == ["compare"] + ["controls"] * 6
    assert {r["replicate"] for r in rows[1:]} == {0, 1} and all(r["layer"] == 2 for r in rows)
    rc = keygap(["compare", "--store", str(store), "--model", "m4", "--benchmark", "b", "--layer", "1",
                 "--a", "text:question", "--b", "image", "--metrics", "mmd", "--n", "all", "--permutations", "0",
                 "--param", "mmd.estimator=biased"])
    out = capsys.readouterr().out
    assert rc == 0 and "text[question] vs image" in out and '"estimator": "biased"' in out
    assert keygap(["compare", "--store", str(store), "--model", "m4", "--benchmark", "b", "--layer", "1",
                   "--n", "x"]) == 2
    assert "--n must be an integer or 'all'" in capsys.readouterr().err
    assert keygap(["compare", "--store", str(store), "--model", "m4", "--benchmark", "b", "--layer", "1",
                   "--param", "oops"]) == 2
    assert "METRIC.NAME=VALUE" in capsys.readouterr().err


def test_thread_limit_changes_speed_not_numbers(store):
    from keygap_tui.analysis.threads import resolve_threads

    assert resolve_threads(None) is None and resolve_threads(3) == 3
    assert resolve_threads("auto") in (None, 1)
    with pytest.raises(ValueError, match="positive integer"):
        resolve_threads(0)
    a, b = Side("m8", "b", 4, "image"), Side("m8", "b", 4, "text")
    one = compare(store, a, b, ["mmd", "js"], n=40, permutations=10, use_cache=False, threads=1)
    lib = compare(store, a, b, ["mmd", "js"], n=40, permutations=10, use_cache=False, threads=None)
    assert one[0].result.params["blas_threads"] == 1 and lib[0].result.params["blas_threads"] == "library default"
    for x, y in zip((r.result for r in one), (r.result for r in lib), strict=True):
        assert x.value == pytest.approx(y.value, rel=1e-5) and x.p_value == y.p_value


@pytest.mark.slow
def test_analysis_never_imports_duckdb_or_textual(store, tmp_path):
    import subprocess
    import sys

    code = f"""
import sys
import keygap_tui.analysis.cli
assert not {{'numpy', 'pyarrow'}} & set(sys.modules), 'the CLI module must import only the stdlib'
from keygap_tui.analysis import Side, compare, controls, project, report
a, b = Side('m4', 'b', 1, 'image'), Side('m4', 'b', 1, 'text')
compare({str(store)!r}, a, b, ['mmd', 'js'], n=20, permutations=5, use_cache=False)
report({str(store)!r}, {str(tmp_path / 'r')!r}, models=['m4'], layers='late', n=20, permutations=0, replicates=1,
       projection_n=20, projection_method='pca', png=False, use_cache=False)
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'textual', 'textual_plotext'))
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_sweep_yields_each_cell_as_it_finishes_and_a_stop_keeps_what_is_done(tmp_path, monkeypatch):
    from keygap_tui.analysis import comparisons, iter_layer_sweep

    root = tmp_path / "s"
    write_synthetic_store(root, model="m4", layers=(1, 2, 3), samples=12, tokens=6, dim=8, seed=4)
    computed = []
    real = comparisons.run_metric
    monkeypatch.setattr(comparisons, "run_metric", lambda metric, xa, xb, *a, **kw: computed.append(metric) or real(
        metric, xa, xb, *a, **kw))
    rows = iter_layer_sweep(root, ["m4"], "b", "all", metrics=["centroid", "norms"], n=20, permutations=0)
    first = next(rows)
    assert (first.side_a.layer, len(computed)) == (1, 2)  # the first cell is out before the second is computed
    assert [r.side_a.layer for r in rows] == [1, 2, 2, 3, 3]
    assert len(computed) == 6
    # a stop after the first cell keeps it: rows already out, and in the results cache for the next ask
    stop = {"now": False}
    got = []
    sweep = iter_layer_sweep(root, ["m4"], "b", "all", metrics=["energy"], n=20, permutations=0,
                             should_stop=lambda: stop["now"])
    got.append(next(sweep))
    stop["now"] = True
    with pytest.raises(Cancelled):
        next(sweep)
    assert [r.side_a.layer for r in got] == [1]
    again = list(iter_layer_sweep(root, ["m4"], "b", "all", metrics=["energy"], n=20, permutations=0))
    assert [r.cached for r in again] == [True, False, False]


def test_a_sweep_over_segments_compares_every_pair_in_every_cell(tmp_path):
    from keygap_tui.analysis import iter_layer_sweep

    root = tmp_path / "s"
    write_synthetic_store(root, model="m4", layers=(1, 2), samples=12, tokens=6, dim=8, seed=5,
                          text_segments=("question", "options"))
    rows = list(iter_layer_sweep(root, ["m4"], "b", "all", metrics=["centroid"], n=20, permutations=0,
                                 pairs=[("image", "text:question"), ("image", "text:options")]))
    assert [(r.side_a.layer, r.side_b.segments) for r in rows] == [
        (1, ("question",)), (1, ("options",)), (2, ("question",)), (2, ("options",))]
    ks = KeyStore(str(root))
    want = np.linalg.norm(ks.load("m4", "b", 2, "image", n=20, seed=0).x.astype(np.float64).mean(0)
                          - ks.load("m4", "b", 2, "text", segments=["options"], n=20, seed=0).x.astype(np.float64)
                          .mean(0))
    assert rows[3].result.value == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_cli_sweep_prints_rows_as_they_come_and_ctrl_c_keeps_them(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path / "s"
    write_synthetic_store(root, model="m4", layers=tuple(range(1, 9)), samples=30, tokens=10, dim=16, seed=6)
    repo = Path(__file__).resolve().parents[1]
    table = subprocess.Popen(
        [sys.executable, "-m", "keygap_tui.cli", "compare", "--store", str(root), "--model", "m4", "--layer", "all",
         "--metrics", "mmd", "--permutations", "3000", "--n", "all", "--no-cache"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(repo)))
    header = table.stdout.readline()
    assert header.split()[:3] == ["model", "layer", "head"]
    table.stdout.readline()  # the rule under the header
    first = table.stdout.readline()  # the first cell's row, while the other seven are still to come
    assert first.split()[:2] == ["m4", "1"] and table.poll() is None
    table.send_signal(signal.SIGINT)
    rest, err = table.communicate(timeout=120)
    assert table.returncode == 130 and "stopped after" in err and "run again to go on" in err
    assert len([line for line in rest.splitlines() if line.startswith("m4")]) < 7


def test_cli_sweeps_segments_with_several_b_sides(tmp_path, capsys):
    import json

    from keygap_tui.cli import main as keygap

    root = tmp_path / "s"
    write_synthetic_store(root, model="m4", layers=(1, 2), samples=10, tokens=6, dim=8, seed=7,
                          text_segments=("question", "options"))
    assert keygap(["compare", "--store", str(root), "--model", "m4", "--layer", "1", "--b", "text:question",
                   "text:options", "--metrics", "centroid", "--n", "20", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["side_b"]["segments"]) for r in rows] == [(1, ["question"]), (1, ["options"])]
    assert keygap(["compare", "--store", str(root), "--model", "m4", "--layer", "all", "--metrics", "centroid",
                   "--n", "20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "layer", "head"] and [line.split()[1] for line in out[2:4]] == ["1", "2"]
