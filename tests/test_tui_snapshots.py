"""Snapshots of the main screens at 80x24 and 120x40 (fixed seeds, no timings, relative store path).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at
the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest
from store_helpers import write_synthetic_store
from test_tui_support import make_app, make_store, settle

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def app_in(tmp_path, monkeypatch):
    """An app on ./store inside a fresh folder, so no temp path shows on screen."""
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "store")

    def build(**kwargs):
        return make_app("store", tmp_path, show_timings=False, **kwargs)

    return build


@pytest.fixture
def two_models_in(tmp_path, monkeypatch):
    """As app_in, with a second model of another depth (7 layers) for the matrix and side by side."""
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "store")
    write_synthetic_store(tmp_path / "store", model="n", benchmark="b", layers=(0, 1, 2, 3, 4, 5, 6), samples=12,
                          tokens=6, dim=8, shift=0.4, run_id="r2", seed=1)
    return lambda: make_app("store", tmp_path, show_timings=False)


def _steps(*keys, focus: str | None = None, sql: str | None = None):
    async def run_before(pilot):
        app = pilot.app
        await settle(app, pilot)
        for key in keys:
            if key == "<sql>":
                app.query_one("#sql-editor").text = sql
                continue
            await pilot.press(key)
            await settle(app, pilot)
        if focus:
            app.query_one(focus).focus()
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        # layout passes after a table's columns change (the matrix fits its columns to the width, Controls'
        # numbers) can come late on a loaded machine: wait until two screens in a row are the same
        previous = None
        for _ in range(30):
            await pilot.pause(0.3)
            await settle(app, pilot)
            screen = app.export_screenshot()
            if screen == previous:
                break
            previous = screen

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_scatter_with_results(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("c", "f2", "r", focus="#results"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_controls(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f3", "r", focus="#results"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_layers(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f4", "r", focus="#layers-table"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_sql(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f5", "ctrl+r", focus="#sql-grid"))


@pytest.mark.slow
def test_help_light_theme(snap_compare, app_in):
    assert snap_compare(app_in(), terminal_size=(80, 24), run_before=_steps("T", "f1"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_matrix_every_layer_of_two_models(snap_compare, two_models_in, size):
    """Task 1: C fills the matrix; each model's largest value per column is highlighted."""
    assert snap_compare(two_models_in(), terminal_size=size, run_before=_steps("C", focus="#results"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_scatter_cursor_and_nearest_tokens(snap_compare, app_in, size):
    """Task 3: the cursor's point with its token text, and the text tokens nearest to A's centroid."""
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f2", "r", "l", "l", "k", "n"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_side_by_side_two_models_same_depth(snap_compare, two_models_in, size):
    """Task 4: m's middle layer pinned on the left, n at the same relative depth beside it, rows on top."""
    assert snap_compare(two_models_in(), terminal_size=size,
                        run_before=_steps("2", "c", "f2", "r", "b", "M", "c", "r"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.slow
def test_sql_row_viewer_on_a_wide_row(snap_compare, app_in, size):
    """Task 5's tool: SELECT * and the row viewer (key as its size, vec summarised and in full below)."""
    query = "SELECT * FROM keys WHERE layer = 1 ORDER BY sample_id, position LIMIT 5"
    steps = _steps("f5", "<sql>", "ctrl+r", "tab", "G", "enter", "G", sql=query)
    assert snap_compare(app_in(), terminal_size=size, run_before=steps)
