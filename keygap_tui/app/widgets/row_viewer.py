"""Enter on an SQL result row: the whole row, one field per line, for rows too wide for the grid.

A vector (vec FLOAT[]) shows summarised (length, norm, first values); the field under the cursor shows in
full below the list, so nothing is cut. Values are plain Text, never markup.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .vim_table import VimTable


def summarise(value) -> str:
    """One line for any cell: vectors as length, L2 norm and their first values; bytes as their size."""
    if isinstance(value, (list, tuple)):
        nums = [v for v in value if isinstance(v, (int, float))]
        norm = math.sqrt(sum(float(v) * float(v) for v in nums)) if nums else float("nan")
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in list(value)[:4])
        return f"[{head}{', …' if len(value) > 4 else ''}]  (length {len(value)}, norm {norm:.4g}; enter shows all)"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return "NULL" if value is None else str(value)


def full(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return "NULL" if value is None else str(value)


class RowViewer(ModalScreen):
    DEFAULT_CSS = """
    RowViewer { align: center middle; }
    RowViewer > Vertical { width: 95%; height: 90%; border: round $accent; background: $surface; }
    RowViewer VimTable { height: 1fr; }
    RowViewer VerticalScroll { height: 35%; border-top: solid $accent; }
    """
    BINDINGS = [Binding("escape,q,enter", "dismiss", "close the row")]

    def __init__(self, row: dict, title: str) -> None:
        super().__init__()
        self.row = row
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield VimTable(id="row-fields", cursor_type="row")
            with VerticalScroll():
                yield Static(id="row-value")

    def on_mount(self) -> None:
        table = self.query_one(VimTable)
        table.add_columns("field", "value")
        for name, value in self.row.items():
            table.add_row(Text(name), Text(summarise(value)))
        table.focus()
        self._detail(0)

    def on_data_table_row_highlighted(self, event) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        names = list(self.row)
        if names:
            name = names[min(index, len(names) - 1)]
            self.query_one("#row-value", Static).update(Text(f"{name} = {full(self.row[name])}"))

    def action_dismiss(self) -> None:
        self.dismiss()
