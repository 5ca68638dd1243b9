"""Text that looks like markup ('[/x]', '[bold]') is shown as itself everywhere in the TUI, and the app
stays up: SQL values, column names and errors, the status line, notifications, a segment label from the
store, an export path, and the store's damaged-file warnings (Textual parses plain strings as markup, and a
closing tag that opens nothing raises)."""

from __future__ import annotations

import numpy as np
import pytest
from test_tui_support import make_app, screen_text, settle, sync

from keygap_tui.app.config import Config
from keygap_tui.app.widgets.matrix_table import MatrixTable
from keygap_tui.app.widgets.problems_bar import ProblemsBar
from store.writer import KeyBatch, KeyWriter, write_run

MARKUP = "[/x]"


def _store_with_markup_segment(root):
    """A real store whose text segment label is '[/x]' (labels come from data; only model and benchmark
    names are restricted to path-safe characters)."""
    rng = np.random.default_rng(0)
    with KeyWriter(root, "run0") as w:
        ids = [f"s{i}" for i in range(8)]
        for modality, segment in (("image", "image"), ("text", MARKUP)):
            n = len(ids) * 4
            w.add(KeyBatch(model="m", benchmark="b", layer=1, rope="post", modality=modality,
                           sample_id=np.repeat(np.array(ids, dtype=object), 4),
                           position=np.tile(np.arange(4), len(ids)) + (0 if modality == "image" else 4),
                           token_id=rng.integers(0, 50, n), segment=np.array([segment] * n, dtype=object),
                           keys=rng.standard_normal((n, 8)).astype(np.float16)))
        w.commit([{"model": "m", "benchmark": "b", "sample_id": s, "status": "done"} for s in ids])
    write_run(root, {"run_id": "run0", "status": "done", "model_id": "m", "benchmark": "b", "num_layers": 2})
    return root


@pytest.mark.slow
@sync
async def test_markup_in_values_errors_and_labels_is_shown_as_text(tmp_path):
    store = _store_with_markup_segment(tmp_path / "store")
    app = make_app(store, tmp_path)
    app.config = Config(export_dir=str(tmp_path / "[" / "x] exports"), path=tmp_path / "tui.toml")
    async with app.run_test(size=(110, 32)) as pilot:
        await settle(app, pilot)
        # a segment named '[/x]' in the picker and the status line
        app.query_one("#b_segment").focus()
        await pilot.press("l")
        await settle(app, pilot)
        assert f"text:{MARKUP}" in app.selection.spec("b")
        assert MARKUP in screen_text(app)
        await pilot.press("c")
        await settle(app, pilot)
        rows = list(app.query_one(MatrixTable).matrix.rows.values())
        assert app.is_running and [sorted(r.measures) for r in rows] == [["js", "mmd"]]

        # SQL: a value, a column name and an error message holding markup
        await pilot.press("f5")
        editor = app.query_one("#sql-editor")
        editor.text = f"SELECT '{MARKUP}' AS \"{MARKUP}\", '[bold]b' AS c"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        grid = app.query_one("#sql-grid")
        text = screen_text(app)
        assert MARKUP in text and "[bold]b" in text
        grid.focus()
        await pilot.press("y")  # copying the cell gives the value itself, not its escaped form
        assert app.status.message == f"copied {MARKUP!r} (OSC 52)"
        editor.text = f'SELECT * FROM "{MARKUP}"'
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert MARKUP in str(app.query_one("#sql-info").render()) and MARKUP in app.status.message
        assert app.is_running

        # an export path holding markup: status line and notification
        await pilot.press("e")
        await settle(app, pilot)
        assert app.status.message.startswith("saved ") and "[/x] exports" in app.status.message
        assert app.is_running

        # a session-long problem holding markup
        app.query_one(ProblemsBar).add(f"keys/part-run0-00000.parquet is damaged ({MARKUP})")
        await pilot.pause()
        assert f"is damaged ({MARKUP})" in screen_text(app) and app.is_running


@sync
async def test_damaged_files_of_the_store_are_listed_on_screen(tmp_path):
    store = _store_with_markup_segment(tmp_path / "store")
    key_file = next((store / "keys").rglob("modality=image/*.parquet"))
    key_file.write_bytes(b"not parquet")
    app = make_app(store, tmp_path)
    async with app.run_test(size=(110, 32)) as pilot:
        await settle(app, pilot)
        bar = app.query_one(ProblemsBar)
        assert any("is damaged" in p and "was left out" in p for p in bar.problems), bar.problems
        assert "part-run0-00000.parquet is damaged" in screen_text(app)
