"""The TUI's plain parts (no app running): config, state, selection rules, export, plot data, tasks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from test_tui_support import SMALL, make_store

from keygap_tui.analysis import Side, compare
from keygap_tui.app import plots, tasks
from keygap_tui.app.config import ConfigError, State, check_config, load_config, load_state, save_state
from keygap_tui.app.export import ExportError, export_rows
from keygap_tui.app.selection import ALL_SEGMENTS, Selection, named_layer, read_catalog, step_layer


def test_config_defaults_keys_and_one_line_errors(tmp_path):
    assert load_config(tmp_path / "missing.toml").analysis.n == 500  # analysis.DEFAULT_N, as keygap compare
    good = tmp_path / "good.toml"
    good.write_text('theme = "light"\n[keys]\ncompute = "x,f9"\n[analysis]\nn = "all"\npermutations = 50\n')
    cfg = load_config(good)
    assert cfg.theme == "textual-light" and cfg.keys == {"compute": "x,f9"}
    assert cfg.analysis.n is None and cfg.analysis.permutations == 50
    for text, needle in [
        ("theme = ", "fix or delete"),
        ("colour = 1", "unknown setting"),
        ("[analysis]\npermutations = -3", "non-negative"),
        ("[analysis]\nn = 1", ">= 2"),
        ("[keys]\ncompute = 3", "[keys]"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")) as info:
            check_config(load_config(bad))
        assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_config_lists_every_problem_and_keeps_the_good_values(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('theme = "light"\ncolour = 1\n[keys]\ncompute = 3\nlayer_next = "n"\n'
                   '[analysis]\nn = 1\npermutations = 50\nreplicates = -1\n')
    cfg = load_config(bad)
    assert len(cfg.problems) == 4  # colour, [keys] compute, n, replicates: each named
    assert any("colour" in p for p in cfg.problems) and any("[keys] compute" in p for p in cfg.problems)
    assert any("n must be" in p for p in cfg.problems) and any("replicates" in p for p in cfg.problems)
    # what was right still applies; what was wrong keeps its default
    assert cfg.theme == "textual-light" and cfg.keys == {"layer_next": "n"} and cfg.analysis.permutations == 50
    assert cfg.analysis.n == 500 and cfg.analysis.replicates == 5 and cfg.explicit == {"theme"}


def test_state_round_trip_per_store_and_damaged_file(tmp_path):
    path = tmp_path / "state" / "tui.json"
    st = State(selection={"model": "m", "layer": 3}, tab="sql", projection="tsne", theme="textual-light")
    for q in ["SELECT 1", "SELECT 2", "SELECT 1"]:
        st.remember_query(q)
    assert st.sql_history == ["SELECT 2", "SELECT 1"]  # a repeated query moves to the end, once
    save_state(st, path, "/stores/a")
    save_state(State(tab="layers"), path, "/stores/b")
    back = load_state(path, "/stores/a")
    assert back.selection == {"model": "m", "layer": 3} and back.tab == "sql" and back.projection == "tsne"
    assert load_state(path, "/stores/b").tab == "layers"
    path.write_text("{not json")
    assert load_state(path, "/stores/a") == State()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("units") / "store")


def test_catalog_and_selection_rules(store):
    cat = read_catalog(store)
    assert cat.models() == ["m"] and cat.layers("m", "b") == [0, 1, 2, 3]
    assert cat.segment_options("m", "b", "text") == [ALL_SEGMENTS, "question"]
    sel = Selection.from_dict({"model": "gone", "layer": 9, "a_segment": "nope", "junk": 1}).fitted(cat)
    assert (sel.model, sel.benchmark, sel.layer, sel.a_segment) == ("m", "b", 3, ALL_SEGMENTS)
    assert sel.side_b() == Side("m", "b", 3, "text")
    assert Selection(b_segment="question").spec("b") == "text:question"
    # early / middle / late are 1, L // 2, L - 1 of the recorded depth (4 here), nearest stored otherwise
    assert named_layer([0, 1, 2, 3], 4, "early") == (1, True)
    assert named_layer([0, 1, 2, 3], 4, "middle") == (2, True)
    assert named_layer([0, 2], 32, "late") == (2, False)
    assert named_layer([0, 5, 9], None, "middle") == (5, True)
    assert [step_layer([0, 2, 4], 2, s) for s in (-5, -1, 1, 5)] == [0, 0, 4, 4]


def test_matrix_task_gives_the_analysis_numbers_controls_and_uses_the_cache(store):
    from keygap_tui.analysis import controls
    from keygap_tui.app.matrix import Matrix, p_text

    sel = Selection(model="m", benchmark="b", layer=1)
    plan = tasks.matrix_plan(read_catalog(store), sel, "slice")
    parts: list = []
    assert tasks.matrix_rows(str(store), plan, SMALL, lambda *part: parts.append(part)) == 1
    assert [kind for kind, _, _ in parts] == ["measures", "controls"]
    direct = compare(str(store), Side("m", "b", 1, "image"), Side("m", "b", 1, "text"), SMALL.metrics, SMALL.n,
                     SMALL.seed, permutations=SMALL.permutations)
    measures = parts[0][2]
    assert [r["metric"] for r in measures] == ["mmd", "js"]
    assert [r["value"] for r in measures] == [r.result.value for r in direct]
    assert measures[0]["n"] == f"{direct[0].result.n_a}+{direct[0].result.n_b}"
    again: list = []
    tasks.matrix_rows(str(store), plan, SMALL, lambda *part: again.append(part))
    assert all(r["cached"] for _, _, rows in again for r in rows)
    m = Matrix(SMALL.metrics)
    row = m.row_for("m", "b", 1, "post", "image", "text")
    m.add_measures(row, measures)
    m.add_controls(row, parts[1][2])
    cols = {c.label: c for c in m.columns()}
    # JS shows the bias-corrected value by default, the raw one on demand
    assert m.value(row, cols["js bc"]) == direct[1].result.extra["bias_corrected"]
    m.raw = True
    assert m.value(row, {c.label: c for c in m.columns()}["js"]) == direct[1].result.value
    m.raw = False
    # the p-value floor 1/(B+1) is marked where the p-value sits on it (19 permutations: 0.05)
    assert direct[0].result.p_value == pytest.approx(1 / 20) and p_text(measures[0]) == "≤0.05"
    # the controls and the ratio, recomputed independently from analysis.controls and report's formula
    ctl = controls(str(store), "m", "b", 1, ["mmd"], SMALL.n, SMALL.seed, replicates=SMALL.replicates)
    mean = lambda g: np.mean([r.result.value for r in ctl if r.group == g])  # noqa: E731
    assert m.value(row, cols["mmd I-I"]) == pytest.approx(mean("image-vs-image"))
    assert m.value(row, cols["mmd T-T"]) == pytest.approx(mean("text-vs-text"))
    intra = np.mean([mean("image-vs-image"), mean("text-vs-text")])
    # report's Table rule: the ratio is undefined ('-') where the mean control is not positive
    assert m.value(row, cols["mmd ratio"]) == (pytest.approx(mean("image-vs-text") / intra) if intra > 0 else None)


def test_matrix_shows_the_interval_compare_computes_and_none_when_ci_is_0(store):
    from dataclasses import replace

    from keygap_tui.app.matrix import Matrix

    sel = Selection(model="m", benchmark="b", layer=1)
    plan = tasks.matrix_plan(read_catalog(store), sel, "slice")
    direct = compare(str(store), Side("m", "b", 1, "image"), Side("m", "b", 1, "text"), SMALL.metrics, SMALL.n,
                     SMALL.seed, permutations=SMALL.permutations, ci=SMALL.ci, use_cache=False)
    for settings, with_ci in ((SMALL, True), (replace(SMALL, ci=0), False)):
        parts: list = []
        tasks.matrix_rows(str(store), plan, settings, lambda *part, got=parts: got.append(part), with_controls=False)
        m = Matrix(settings.metrics)
        row = m.row_for("m", "b", 1, "post", "image", "text")
        m.add_measures(row, parts[0][2])
        cols = {c.label: c for c in m.columns()}
        assert ("mmd CI" in cols) is with_ci and ("js CI" in cols) is with_ci
        if with_ci:
            for name, want in zip(settings.metrics, direct, strict=True):
                assert want.result.ci is not None and want.result.params["ci"] == SMALL.ci == 0.95
                assert m.value(row, cols[f"{name} CI"]) == pytest.approx(want.result.ci)
                assert m.text(row, cols[f"{name} CI"]).startswith("[")


def test_matrix_sort_pins_argmax_and_clear():
    from keygap_tui.app.matrix import Matrix

    m = Matrix(("mmd",))
    for model, layer, v in [("x", 0, 0.1), ("x", 1, 0.5), ("x", 2, 0.3), ("y", 0, 0.2), ("y", 1, 0.05)]:
        row = m.row_for(model, "b", layer, "post", "image", "text")
        m.add_measures(row, [{"metric": "mmd", "value": v, "p_value": 0.01, "params": {"permutations": 99}}])
    col = {c.label: c for c in m.columns()}["mmd"]
    best = {key for key, label in m.argmax() if label == "mmd"}
    assert best == {("x", "b", 1, "post", "image", "text"), ("y", "b", 0, "post", "image", "text")}  # per model
    ctl = [{"metric": "mmd", "group": g, "value": v} for g, v in
           [("image-vs-image", 0.1), ("image-vs-image", 0.3), ("text-vs-text", 0.2), ("image-vs-text", 0.8)]]
    m.add_controls(m.rows[("x", "b", 0, "post", "image", "text")], ctl)
    ratio = {c.label: c for c in m.columns()}["mmd ratio"]
    assert m.value(m.rows[("x", "b", 0, "post", "image", "text")], ratio) == pytest.approx(0.8 / 0.2)
    m.sort_on(col)
    assert [r.layer for r in m.ordered()][:2] == [1, 2]  # descending first
    m.sort_on(col)
    assert [m.value(r, col) for r in m.ordered()][0] == 0.05
    m.sort_on(col)
    assert [(r.model, r.layer) for r in m.ordered()] == [("x", 0), ("x", 1), ("x", 2), ("y", 0), ("y", 1)]
    m.toggle_pin(("y", "b", 1, "post", "image", "text"))
    assert m.ordered()[0].model == "y"  # pinned rows first
    m.clear()
    assert list(m.rows) == [("y", "b", 1, "post", "image", "text")]  # the pin survives a clear


def test_five_numbers_match_numpy_and_scatter_says_what_it_shows():
    v = np.random.default_rng(1).normal(size=101)
    q = plots.five_numbers(list(v) + [float("nan")])
    assert q == pytest.approx([v.max(), np.percentile(v, 75), np.median(v), np.percentile(v, 25), v.min()])
    points = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    data = plots.ScatterData(points, np.repeat([0, 1], 250), ["A", "B"])
    idx, caption = plots.shown_caption(data, 120)
    assert caption == "120 of 500 shown" and len(set(idx.tolist())) == 120
    from rich.text import Text

    drawn = Text.from_ansi(plots.scatter(data, 60, 15, limit=120)).plain
    assert "120 of 500 shown" in drawn and "A" in drawn and "B" in drawn


def test_export_csv_and_json_round_trip(tmp_path):
    rows = [{"measure": "mmd", "value": 0.25, "params": {"k": 1}}, {"measure": "js", "value": None, "params": {}}]
    p1 = export_rows(rows, tmp_path / "out", "results", "csv")
    p2 = export_rows(rows, tmp_path / "out", "results", "csv")
    assert (p1.name, p2.name) == ("results-001.csv", "results-002.csv")
    back = list(csv.DictReader(p1.open()))
    assert back[0]["measure"] == "mmd" and float(back[0]["value"]) == 0.25 and json.loads(back[0]["params"]) == {"k": 1}
    pj = export_rows(rows, tmp_path / "out", "results", "json")
    assert json.loads(pj.read_text())[1] == {"measure": "js", "value": None, "params": "{}"}
    with pytest.raises(ExportError, match="nothing to export"):
        export_rows([], tmp_path, "scatter", "csv")
