"""A DataTable that also moves with vim keys (j/k/h/l, g/G), the movement users of terminal data tools
ask for first; and that can hand its selected cell to the clipboard action."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


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
        return str(self.get_cell_at(self.cursor_coordinate))
