"""Focus rules, config and remembered state, driven through Pilot on a real store.

F-keys and Escape must work from any focus (the SQL editor and grid included); single-letter keys must
type into the editor, never fire an action; a config file wins over remembered state; every config
problem stays on screen, as written.
"""

from __future__ import annotations

import pytest
from test_tui_support import make_app, make_store, screen_text, settle, sync

from keygap_tui.app.app import KeygapApp
from keygap_tui.app.config import State, load_config, save_state


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


@sync
@pytest.mark.slow
async def test_f_keys_and_escape_from_the_sql_editor_and_grid(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        await pilot.pause()
        editor = app.query_one("#sql-editor")
        assert app.focused is editor
        editor.text = ""
        await pilot.press("c", "q", "r", "T", "question_mark", "1", "e")  # all global keys elsewhere
        assert editor.text == "cqrT?1e" and app.is_running and app.theme == "textual-dark"
        assert app.selection.layer == 1 and not app.query_one("#results").matrix.rows
        for key, tab in (("f2", "scatter"), ("f5", "sql"), ("f3", "controls"), ("f5", "sql"), ("f4", "layers")):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_tab == tab, key
        await pilot.press("f5")
        await pilot.pause()
        editor.text = ""  # Tab after a word completes it; with nothing to complete it moves focus
        await pilot.press("tab")  # from the editor to the grid, as a user moves focus
        assert app.focused is app.query_one("#sql-grid")
        await pilot.press("f2")
        await pilot.pause()
        assert app.current_tab == "scatter"
        await pilot.press("f5")
        await pilot.pause()
        assert app.focused is editor
        await pilot.press("escape")  # nothing runs: Esc leaves the editor ...
        assert app.focused is not editor and app.current_tab == "sql"
        await pilot.press("2")  # ... so single-letter keys act again
        assert app.selection.layer == 2
        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("f1")
        assert type(app.screen).__name__ != "HelpScreen"


@sync
@pytest.mark.slow
async def test_config_problems_stay_on_screen_as_written(store, tmp_path):
    path = tmp_path / "tui.toml"
    path.write_text('colour = 1\n[keys]\ncompute = 3\n[analysis]\nn = 1\n')
    app = KeygapApp(str(store), config=load_config(path), state_path=tmp_path / "state.json")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "3", "1")  # other messages come and go
        await pilot.pause(0.5)
        text = screen_text(app)
        assert "unknown setting(s) colour" in text
        assert "[keys] compute must be a key string" in text  # "[keys]" is text, not markup
        assert "n must be an integer" in text


@sync
@pytest.mark.slow
async def test_config_theme_wins_over_remembered_theme(store, tmp_path):
    save_state(State(theme="textual-light"), tmp_path / "state.json", str(store))
    path = tmp_path / "tui.toml"
    path.write_text('theme = "dark"\n')
    app = KeygapApp(str(store), config=load_config(path), state_path=tmp_path / "state.json")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.theme == "textual-dark"  # the file's value, not the remembered one
        await pilot.press("T")  # changed while running: it holds for this session
        assert app.theme == "textual-light"
    path.write_text("")  # without a theme in the file, the remembered one applies
    again = KeygapApp(str(store), config=load_config(path), state_path=tmp_path / "state.json")
    async with again.run_test(size=(100, 30)) as pilot:
        await settle(again, pilot)
        assert again.theme == "textual-light"
