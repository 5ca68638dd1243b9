"""Snapshots of the main screens at 80x24 and 120x40 (fixed seeds, no timings, relative store path).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at
the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest
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


def _steps(*keys, focus: str | None = None):
    async def run_before(pilot):
        app = pilot.app
        await settle(app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(app, pilot)
        if focus:
            app.query_one(focus).focus()
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.3)  # the last layout pass after a table's columns change (Controls' numbers)
        await settle(app, pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_scatter_with_results(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("c", "f2", "r", focus="#results"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_controls(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f3", "r", focus="#results"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_layers(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f4", "r", focus="#layers-table"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sql(snap_compare, app_in, size):
    assert snap_compare(app_in(), terminal_size=size, run_before=_steps("f5", "ctrl+r", focus="#sql-grid"))


def test_help_light_theme(snap_compare, app_in):
    assert snap_compare(app_in(), terminal_size=(80, 24), run_before=_steps("T", "f1"))
