"""The tables' own drawing: what DataTable drew before it measured new rows must not stay on screen."""

from __future__ import annotations

from test_tui_support import sync
from textual.app import App, ComposeResult

from keygap_tui.app.widgets.vim_table import VimTable


class _OneTable(App):
    def compose(self) -> ComposeResult:
        yield VimTable(id="t")


@sync
async def test_a_table_drawn_before_its_columns_are_measured_is_drawn_again_at_their_width():
    app = _OneTable()
    async with app.run_test(size=(60, 6)) as pilot:
        table = app.query_one(VimTable)
        table.add_column("A", key="a")
        table.add_column("B", key="b")
        table.add_row("image", "text")
        # What a loaded machine does: a frame is drawn before DataTable's idle pass has widened the
        # columns from their labels' width to their cells'. Its cells were cached at width 1 ("i", "t").
        drawn = "".join(seg.text for seg in table.render_line(1))
        assert "image" not in drawn and "i" in drawn
        await pilot.pause()
        await pilot.pause()
        screen = app.export_screenshot()
        assert "image" in screen and "text" in screen, "the cells drawn at the labels' width stayed on screen"
