"""Every flow of the TUI driven by keys through Textual's Pilot, on a real store (real Parquet, real DuckDB)."""

from __future__ import annotations

import csv
import json

import pytest
from test_tui_support import SMALL, make_app, make_store, screen_text, settle, sync

from keygap_tui.analysis import Side, compare
from keygap_tui.app.config import AnalysisSettings, load_state
from keygap_tui.app.widgets.help_screen import HelpScreen
from keygap_tui.app.widgets.matrix_table import MatrixTable


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


def _results(app, layer: int = 1) -> list[dict]:
    """The measures of the matrix row of the picker's sides at ``layer``, as rows of the analysis record."""
    row = app.query_one(MatrixTable).matrix.rows.get(("m", "b", layer, "post", "image", "text"))
    return [] if row is None else [row.measures[m] | {"measure": m} for m in row.measures]


@sync
@pytest.mark.slow
async def test_pick_slice_compute_change_layer_and_read_from_cache(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.selection.layer == 1 and app.selection.a_modality == "image"
        await pilot.press("2")  # middle layer of a 4-layer model: 4 // 2
        assert app.selection.layer == 2
        await pilot.press("right_square_bracket")
        assert app.selection.layer == 3
        await pilot.press("left_square_bracket", "left_square_bracket", "1")
        assert app.selection.layer == 1
        # change side B's modality with the keyboard: focus its field, cycle with l (vim right)
        app.query_one("#b_modality").focus()
        await pilot.press("l")
        assert app.selection.b_modality == "image"
        await pilot.press("h")
        assert app.selection.b_modality == "text"
        await pilot.press("c")
        await settle(app, pilot)
        rows = _results(app)
        direct = compare(str(store), Side("m", "b", 1, "image"), Side("m", "b", 1, "text"), SMALL.metrics, SMALL.n,
                         SMALL.seed, permutations=SMALL.permutations, use_cache=False)
        assert [r["measure"] for r in rows] == ["mmd", "js"]
        assert [r["value"] for r in rows] == pytest.approx([d.result.value for d in direct])
        assert [r["p_value"] for r in rows] == pytest.approx([d.result.p_value for d in direct])
        assert [r["cached"] for r in rows] == [False, False]
        await pilot.press("3")  # another layer: the matrix keeps its rows
        assert app.selection.layer == 3 and len(_results(app)) == 2
        await pilot.press("1", "c")
        await settle(app, pilot)
        assert [r["cached"] for r in _results(app)] == [True, True]
        assert len(app.query_one(MatrixTable).matrix.rows) == 1  # the same slice again: the same row


@sync
@pytest.mark.slow
async def test_tabs_scatter_controls_layers(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(app, pilot)
        await pilot.press("f2", "r")
        await settle(app, pilot)
        scatter = app.query_one("#scatter-pane")
        assert scatter.result is not None and scatter.result.data.coords.shape == (120, 2)
        assert "PCA: 120 of 120 shown" in screen_text(app)
        await pilot.press("f3", "r")
        await settle(app, pilot)
        controls = app.query_one("#controls-pane").result
        assert controls.layers == [1, 2, 3]  # keygap report's Figure 2 layers: early, middle, late
        counts = {g: len(v) for g, v in controls.values["mmd"][2].items()}
        assert counts == {"image-vs-image": 2, "text-vs-text": 2, "image-vs-text": 2}
        # shifted image keys: Image-vs-Text sits above both controls in every layer and replicate
        for layer in (1, 2, 3):
            groups = controls.values["mmd"][layer]
            assert min(groups["image-vs-text"]) > max(groups["text-vs-text"])
        assert "I-T" in screen_text(app) and "ratio" in screen_text(app)
        await pilot.press("f4", "r")
        await settle(app, pilot)
        sweep = app.query_one("#layers-pane").result
        assert [round(x, 3) for x, _ in sorted(sweep.series["m"])] == [0.0, 0.333, 0.667, 1.0]
        assert "relative depth" in screen_text(app)
        assert app.state.tab == "layers"


@sync
@pytest.mark.slow
async def test_the_layers_sweep_fills_as_it_goes_and_escape_keeps_what_is_done(store, tmp_path, monkeypatch):
    import asyncio
    import time

    from keygap_tui.analysis import comparisons

    real = comparisons.run_metric

    def slow(*args, **kwargs):
        time.sleep(0.8)  # one layer per 0.8 s: the sweep of 4 layers takes 3 s or more
        return real(*args, **kwargs)

    monkeypatch.setattr(comparisons, "run_metric", slow)
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(app, pilot)
        await pilot.press("f4", "r")
        pane = app.query_one("#layers-pane")
        for _ in range(200):  # the first rows arrive while the job still runs
            if pane.result is not None:
                break
            await asyncio.sleep(0.05)
        assert pane.result is not None and app.status.jobs, "no rows shown while the sweep ran"
        await pilot.press("escape")
        await settle(app, pilot)
        rows = pane.result.rows
        assert 1 <= len(rows) < 4 and app.status.message.endswith("cancelled")
        table = app.query_one("#layers-table")
        assert table.row_count == len(rows)
        for r in rows:  # the rows kept are the sweep's own numbers, computed again independently
            direct = compare(str(store), Side("m", "b", r["layer"], "image"), Side("m", "b", r["layer"], "text"),
                             ["mmd"], SMALL.n, SMALL.seed, permutations=SMALL.permutations, use_cache=False)
            assert r["value"] == pytest.approx(direct[0].result.value)


@sync
@pytest.mark.slow
async def test_cancel_a_running_job(store, tmp_path):
    # 500 replicates x 2 metrics x 4 layers x 3 groups: a minute of work, checked for cancel between calls
    slow = AnalysisSettings(metrics=("mmd", "js"), n=60, permutations=0, replicates=500)
    app = make_app(store, tmp_path, settings=slow)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("f3", "r")
        assert "control groups" in screen_text(app) and "Esc cancels" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)  # returns at once: the worker thread stopped at its next check
        assert app.query_one("#controls-pane").result is None
        assert app.status.message.endswith("cancelled") and not app.status.jobs
        await pilot.press("right_square_bracket")  # the app still answers keys
        assert app.selection.layer == 2  # from the early layer (1)


@sync
@pytest.mark.slow
async def test_sql_good_bad_cancel_and_history(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        editor = app.query_one("#sql-editor")
        editor.text = "SELECT modality, count(*) AS n FROM keys WHERE layer = 1 GROUP BY 1 ORDER BY 1"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        grid = app.query_one("#sql-grid")
        shown = [[str(c) for c in grid.get_row_at(i)] for i in range(grid.row_count)]
        assert shown == [["image", "72"], ["text", "72"]]
        editor.text = "DELETE FROM keys"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        info = str(app.query_one("#sql-info").render())
        assert "read-only" in info and "\n" not in info and app.status.has_class("-error")
        editor.text = "SELEC nonsense"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert "syntax error" in str(app.query_one("#sql-info").render()).lower()
        editor.text = "SELECT count(*) FROM range(100000000000) a, range(10) b"
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await settle(app, pilot)
        assert "cancelled" in str(app.query_one("#sql-info").render())
        await pilot.press("ctrl+up")
        assert editor.text == "SELEC nonsense"
        await pilot.press("ctrl+up", "ctrl+up", "ctrl+down")
        assert editor.text == "DELETE FROM keys"
    assert load_state(tmp_path / "state.json", str(store)).tab == "sql"
    assert app.state.sql_history[-1].startswith("SELECT count(*) FROM range")


@sync
@pytest.mark.slow
async def test_export_screenshot_copy_theme_and_help(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("e")  # nothing computed yet: a one-line error, the app goes on
        assert "nothing to export" in app.status.message
        await pilot.press("c")
        await settle(app, pilot)
        app.query_one(MatrixTable).focus()
        await pilot.press("e", "E")
        await settle(app, pilot)
        exports = tmp_path / "exports"
        rows = list(csv.DictReader((exports / "matrix-001.csv").open()))
        assert len(rows) == 1 and rows[0]["layer"] == "1"
        assert float(rows[0]["mmd"]) == pytest.approx(_results(app)[0]["value"])
        assert float(rows[0]["js_corrected"]) == pytest.approx(_results(app)[1]["extra"]["bias_corrected"])
        assert json.loads((exports / "matrix-001.json").read_text())[0]["model"] == "m"
        assert "matrix-001.json" in app.status.message
        await pilot.press("ctrl+s")
        svg = exports / "screen-001.svg"
        assert svg.read_text().startswith("<svg") and str(svg) in app.status.message
        # copy: the selected cell (row 0, column "mmd") goes to the clipboard (OSC 52)
        app.query_one(MatrixTable).move_cursor(row=0, column=6)
        await pilot.press("y")
        assert app.clipboard == str(_results(app)[0]["value"])
        await pilot.press("T")
        assert app.theme == "textual-light"
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "matrix: every layer of every model" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        assert not isinstance(app.screen, HelpScreen)
    assert load_state(tmp_path / "state.json", str(store)).theme == "textual-light"


@sync
@pytest.mark.slow
async def test_command_palette_lists_actions_with_keys(store, tmp_path):
    app = make_app(store, tmp_path, keys={"compute": "x"})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "compute (x)" in titles and "export CSV (e)" in titles and "cancel (esc)" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"compute")
        await pilot.pause(0.3)
        assert "compute (x)" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert [r["measure"] for r in _results(app)] == ["mmd", "js"]


@sync
@pytest.mark.slow
async def test_rebound_keys_and_remembered_state(store, tmp_path):
    app = make_app(store, tmp_path, keys={"compute": "x", "layer_late": "z"})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")  # no longer bound
        await settle(app, pilot)
        assert _results(app) == []
        await pilot.press("z", "x")
        await settle(app, pilot)
        assert app.selection.layer == 3 and len(_results(app, 3)) == 2
        await pilot.press("f3", "t")
    again = make_app(store, tmp_path)
    async with again.run_test(size=(100, 30)) as pilot:
        await settle(again, pilot)
        assert again.selection.layer == 3 and again.current_tab == "controls"
        assert again.query_one("#scatter-pane").method == "tsne"


@sync
async def test_bad_config_and_missing_store_are_shown_not_raised(tmp_path):
    app = make_app(tmp_path / "nowhere", tmp_path, keys={"no_such_action": "x"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        text = app.status.message
        assert app.is_running and app.status.has_class("-error")
        assert "no store at" in text or "holds no keys" in text
        assert any("no_such_action" in e for e in app.startup_errors)
