"""The SQL tab as a user would choose it over Harlequin: completion of tables, columns and functions, the
schema sidebar, the row viewer for wide rows, exports of `SELECT *` (binary key encoded) and as many
result rows at 80x24 as VisiData shows (21: measured with visidata 3.4 on a 100-row CSV in tmux at 80x24, whose
menu line, column header and status line take the other 3)."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from test_tui_support import make_app, make_store, screen_text, settle, sync

from keygap_tui.app.widgets.row_viewer import RowViewer
from store.sql import query_store

VISIDATA_ROWS_80x24 = 21  # visidata 3.4, 100-row CSV, tmux 80x24: rows s0000-s0020 on screen


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


@pytest.mark.slow
@sync
async def test_completion_schema_row_viewer_and_exports(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        await settle(app, pilot)
        editor = app.query_one("#sql-editor")
        assert editor.language == "sql"  # tree-sitter highlighting
        tree = app.query_one("#sql-schema")
        tables = [str(n.label) for n in tree.root.children]
        assert tables[:7] == ["attention", "keys", "queries", "results", "runs", "samples", "tokens"]
        keys_columns = [str(n.label).split()[0] for n in tree.root.children[tables.index("keys")].children]
        assert keys_columns[:3] == ["model", "benchmark", "layer"] and "vec" in keys_columns
        await pilot.press("ctrl+a", "x")  # ctrl+a selects the whole query: typing replaces it
        assert editor.text == "x"
        # completion: a table, a column, and the catalog's own functions
        editor.text = ""
        await pilot.press(*"SELECT segm", "tab")
        assert editor.text == "SELECT segment"
        await pilot.press(*", keygap_de", "tab")
        assert editor.text == "SELECT segment, keygap_decode"
        editor.text = "SELECT * FROM tok"
        editor.move_cursor((0, len(editor.text)))
        await pilot.press("tab")  # tokens, token_id, token_text: first the common prefix ...
        assert editor.text == "SELECT * FROM token"
        await pilot.press("tab")  # ... then each candidate in turn
        first = editor.text
        await pilot.press("tab")
        assert {first, editor.text} <= {"SELECT * FROM tokens", "SELECT * FROM token_id", "SELECT * FROM token_text"}
        assert first != editor.text
        # SELECT *: a wide row with the binary key and the decoded vec
        editor.text = "SELECT * FROM keys WHERE layer = 1 ORDER BY sample_id, position LIMIT 30"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        grid = app.query_one("#sql-grid")
        assert grid.row_count == 30
        grid.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RowViewer)
        text = screen_text(app)
        assert "length 8, norm" in text and "<16 bytes>" in text  # vec summarised, key as its size
        await pilot.press("escape")
        assert not isinstance(app.screen, RowViewer)
        for key in ("e", "E", "ctrl+e"):
            await pilot.press(key)
            await settle(app, pilot)
        exports = tmp_path / "exports"
        direct = query_store(str(store), "SELECT * FROM keys WHERE layer = 1 ORDER BY sample_id, position LIMIT 30")
        rows = list(csv.DictReader((exports / "sql-001.csv").open()))
        assert len(rows) == 30 and "key_base64" in rows[0] and "key" not in rows[0]  # the header says the encoding
        import base64

        assert base64.b64decode(rows[0]["key_base64"]) == direct["key"][0].as_py()
        assert json.loads((exports / "sql-001.json").read_text())[0]["key_base64"] == rows[0]["key_base64"]
        back = pq.read_table(exports / "sql-001.parquet")
        assert back.num_rows == 30 and back["key"].to_pylist() == direct["key"].to_pylist()


@pytest.mark.slow
@sync
async def test_result_rows_at_80x24_at_least_as_visidata(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        app.query_one("#sql-editor").text = "SELECT sample_id, position, layer FROM keys ORDER BY ALL LIMIT 100"
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        app.query_one("#sql-grid").focus()
        await pilot.press("m")  # maximise the grid
        await pilot.pause()
        lines = screen_text(app).splitlines()
        shown = sum(1 for line in lines if line.strip().startswith("s0"))
        assert shown >= VISIDATA_ROWS_80x24
        await pilot.press("m")
        assert app.screen.maximized is None
        # F8: the editor to the whole pane and back (F-keys work from the editor)
        app.query_one("#sql-editor").focus()
        for _ in range(2):
            await pilot.press("f8")
        assert app.query_one("#sql-grid").display is False
        await pilot.press("f8")
        assert app.query_one("#sql-grid").display is True
