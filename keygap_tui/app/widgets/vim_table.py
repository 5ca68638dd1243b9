"""A DataTable that also moves with vim keys (j/k/h/l, g/G), the movement users of terminal data tools
ask for first; and that can hand its selected cell to the clipboard action."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import DataTable


def as_text(value: object) -> object:
    """A cell or label shown as itself: DataTable parses plain strings as markup, so a value such as
    '[/x]' (from SQL, a model name, an error) would raise and take the app down. Escaped, it stays a str
    that DataTable turns back into exactly the value."""
    return escape(value) if isinstance(value, str) else value


class VimTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
        Binding("h", "cursor_left", "left", show=False),
        Binding("l", "cursor_right", "right", show=False),
        Binding("g", "scroll_top", "top", show=False),
        Binding("G", "scroll_bottom", "bottom", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "cell")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self.raw_rows: list[dict] = []  # unformatted values, for export and copy

    async def _on_idle(self, event: events.Idle) -> None:
        """DataTable measures new rows' cells on idle and widens their columns, but keeps the cells and lines
        it drew before at the old widths (Textual 8.2's render caches are keyed without the width): a table
        drawn between adding rows and that pass stayed cut to its labels' widths ("i" for "image") until
        the next change, seen on a loaded machine and in 1 of 8 side-by-side snapshots. Widths changed:
        drop what was drawn with the old ones (tests/test_tui_table.py)."""
        before = [c.get_render_width(self) for c in self.ordered_columns]
        await super()._on_idle(event)
        if [c.get_render_width(self) for c in self.ordered_columns] != before:
            self._clear_caches()
            self.refresh()

    def add_column(self, label, *, width=None, key=None, default=None):  # type: ignore[override]
        return super().add_column(as_text(label), width=width, key=key, default=default)

    def add_row(self, *cells, height=1, key=None, label=None):  # type: ignore[override]
        return super().add_row(*(as_text(c) for c in cells), height=height, key=key,
                               label=as_text(label) if label is not None else None)

    def selected_text(self) -> str | None:
        """The selected cell as shown (full text, not the cut-off display), or None on an empty table."""
        if not self.row_count or not self.columns:
            return None
        row, col = self.cursor_coordinate
        if self.raw_rows and row < len(self.raw_rows):
            key = list(self.columns.values())[col].label.plain
            raw = self.raw_rows[row]
            if key in raw:
                return "" if raw[key] is None else str(raw[key])
        cell = self.get_cell_at(self.cursor_coordinate)
        return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)  # undo as_text's escape
