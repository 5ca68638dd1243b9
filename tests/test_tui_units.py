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
from keygap_tui.app.formatting import display_cells
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


def test_compare_task_gives_the_analysis_numbers_and_uses_the_cache(store):
    sel = Selection(model="m", benchmark="b", layer=1)
    first = tasks.compare_slice(str(store), sel, SMALL)
    again = tasks.compare_slice(str(store), sel, SMALL)
    direct = compare(str(store), Side("m", "b", 1, "image"), Side("m", "b", 1, "text"), SMALL.metrics, SMALL.n,
                     SMALL.seed, permutations=SMALL.permutations)
    assert [r["metric"] for r in first] == ["mmd", "js"]
    assert [r["value"] for r in first] == [r.result.value for r in direct] == [r["value"] for r in again]
    assert [r["cached"] for r in again] == [True, True]
    assert first[0]["n"] == f"{direct[0].result.n_a}+{direct[0].result.n_b}"
    assert display_cells(again[0])[-1] == "yes" and display_cells(again[0])[1] == f"{again[0]['value']:.4g}"


def test_five_numbers_match_numpy_and_scatter_says_what_it_shows():
    v = np.random.default_rng(1).normal(size=101)
    q = plots.five_numbers(list(v) + [float("nan")])
    assert q == pytest.approx([v.max(), np.percentile(v, 75), np.median(v), np.percentile(v, 25), v.min()])
    data = plots.ScatterData(np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32), np.repeat([0, 1], 250), ["A", "B"])
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
