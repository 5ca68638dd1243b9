"""`keygap report` end to end: artefacts written, numbers equal to `keygap compare` for the same slice/seed."""

from __future__ import annotations

import argparse
import csv
import json
import re

import pytest
from store_helpers import write_synthetic_store

from keygap_tui.analysis import AnalysisError, Side, compare, report
from keygap_tui.analysis.cli import run_report
from keygap_tui.cli import main as keygap

SMALL = dict(n=60, permutations=20, replicates=2, projection_n=60, iterations=(25, 25))


def _compare_json(capsys, store, model, layer, n, permutations, seed=0):
    rc = keygap(["compare", "--store", str(store), "--model", model, "--benchmark", "sample", "--layer", str(layer),
                 "--n", str(n), "--permutations", str(permutations), "--seed", str(seed), "--json"])
    assert rc == 0
    return {r["metric"]: r for r in json.loads(capsys.readouterr().out)}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """The store the issue names: tiny:llava and tiny:qwen2.5-vl ingested on the bundled sample benchmark."""
    from ingest.run import ingest

    root = tmp_path_factory.mktemp("e2e") / "store"
    for model in ("tiny:llava", "tiny:qwen2.5-vl"):
        ingest(model, "sample", str(root), limit=10, progress=False)
    return root


@pytest.mark.slow
def test_report_on_tiny_models_matches_compare(tiny_store, tmp_path, capsys):
    out = tmp_path / "report"
    result = report(tiny_store, out, png=False, **SMALL)
    names = {p.name for p in result.files}
    assert {"figure1_tsne.txt", "figure1_tsne.csv", "figure2_boxplots.txt", "figure2_boxplots.csv", "table.csv",
            "table.json", "table.md", "report.json", "report.md"} <= names
    table = json.loads((out / "table.json").read_text())
    assert {(r["model"], r["layer_name"]) for r in table} == {
        (m, name) for m in ("tiny-llava", "tiny-qwen2.5-vl") for name in ("early", "middle", "late")
    }
    # The same slice and seed through the CLI gives the table's numbers (recomputed, not read from cache).
    for row in (table[0], table[-1]):
        cli = _compare_json(capsys, tiny_store, row["model"], row["layer"], SMALL["n"], SMALL["permutations"])
        assert cli["mmd"]["value"] == pytest.approx(row["mmd"], rel=1e-9)
        assert cli["js"]["value"] == pytest.approx(row["js"], rel=1e-9)
        assert cli["mmd"]["p_value"] == pytest.approx(row["mmd_p"])
        fresh = compare(tiny_store, Side(row["model"], "sample", row["layer"], "image"),
                        Side(row["model"], "sample", row["layer"], "text"), ["mmd"], SMALL["n"], 0,
                        permutations=SMALL["permutations"], use_cache=False)[0]
        assert fresh.result.value == pytest.approx(row["mmd"], rel=1e-9) and not fresh.cached
    # Figure 1 has a panel per cell with both slices; Figure 2 pools the control groups per model.
    fig1 = (out / "figure1_tsne.txt").read_text()
    assert fig1.count("tiny-llava | sample |") == 3 and "image:" in fig1 and "text:" in fig1
    with open(out / "figure2_boxplots.csv") as f:
        groups = {(r["model"], r["group"]) for r in csv.DictReader(f)}
    assert len(groups) == 6
    fig2 = (out / "figure2_boxplots.txt").read_text()
    assert fig2.count("mmd over layers and benchmarks") == 2 and "image-vs-image" in fig2
    # Parameters and timings are stated.
    meta = json.loads((out / "report.json").read_text())
    assert meta["parameters"]["permutations"] == 20 and meta["parameters"]["n_per_side"] == 60
    assert set(meta["seconds"]) >= {"compare", "controls", "projection", "write", "total"}
    md = (out / "report.md").read_text()
    assert "## Parameters" in md and "## Time per part" in md and "| tiny-llava | sample |" in md


def test_report_cli_and_its_errors(tmp_path, capsys):
    store = tmp_path / "store"
    write_synthetic_store(store, model="m", benchmark="sample", layers=(1, 2, 3), samples=8, tokens=6, dim=8,
                          shift=1.0)
    rc = keygap(["report", "--store", str(store), "--out", str(tmp_path / "r"), "--layers", "middle", "--n", "30",
                 "--permutations", "10", "--replicates", "1", "--projection", "pca", "--no-png",
                 "--metrics", "mmd,centroid", "--param", "mmd.estimator=biased"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "table.md" in printed and "time (s):" in printed
    with open(tmp_path / "r" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == ["2"] and float(rows[0]["centroid"]) > 0
    meta = json.loads((tmp_path / "r" / "report.json").read_text())["parameters"]
    assert meta["metric_params_requested"] == {"mmd": {"estimator": "biased"}}
    assert meta["metric_params"]["mmd (compare)"]["estimator"] == "biased"
    rc = keygap(["report", "--store", str(store), "--out", str(tmp_path / "r2"), "--models", "nope"])
    assert rc == 2 and "model nope is not in the store" in capsys.readouterr().err
    bad_iterations = argparse.Namespace(tsne_iterations="x", store=str(store))
    with pytest.raises(AnalysisError, match=re.escape("--tsne-iterations wants EARLY,MAIN (e.g. 125,125), got 'x'")):
        run_report(bad_iterations)


def test_report_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    store = tmp_path / "store"
    write_synthetic_store(store, model="m", benchmark="sample", layers=(1, 2), samples=8, tokens=6, dim=8, shift=1.0)
    result = report(store, tmp_path / "r", layers="all", png=True, metrics=["mmd"], n=30, permutations=0,
                    replicates=1, projection_n=30, projection_method="pca")
    pngs = [p for p in result.files if p.suffix == ".png"]
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
