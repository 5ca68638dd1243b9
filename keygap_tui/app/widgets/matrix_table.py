"""The results matrix on screen: rows as they are computed, sortable, pinnable, argmax highlighted.

The rules live in app/matrix.py; this widget draws them and owns the keys that act on the matrix alone
(sort, pin, clear, raw / corrected). Cells are rich Text, never markup, so any label prints as itself.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from ..matrix import Column, Matrix, MatrixRow
from .vim_table import VimTable

PIN = "▌"


class MatrixTable(VimTable):
    DEFAULT_CSS = """
    MatrixTable { height: auto; }
    """
    BINDINGS = [
        Binding("s", "sort", "sort by this column (again: ascending, again: by model and layer)", id="matrix_sort",
                show=False),
        Binding("p", "pin", "pin / unpin the row", id="matrix_pin", show=False),
        Binding("X", "clear", "clear the matrix (pinned rows stay)", id="matrix_clear", show=False),
        Binding("v", "raw", "JS: bias-corrected / raw values", id="matrix_raw", show=False),
    ]

    class RowChosen(Message):
        """Enter on a row: the app sets the picker to that slice (so the tabs show it)."""

        def __init__(self, row: MatrixRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, metrics: tuple[str, ...], **kwargs) -> None:
        kwargs.setdefault("cursor_type", "cell")
        super().__init__(**kwargs)
        self.matrix = Matrix(metrics)
        self._order: list[MatrixRow] = []
        self._columns: list[Column] = []

    def on_mount(self) -> None:
        self.redraw()

    @property
    def export_data(self) -> list[dict]:
        return self.matrix.export_rows()

    def current_row(self) -> MatrixRow | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_coordinate.row, len(self._order) - 1)]

    def current_column(self) -> Column | None:
        if not self._columns:
            return None
        return self._columns[min(self.cursor_coordinate.column, len(self._columns) - 1)]

    def redraw(self, focus_key: tuple | None = None) -> None:
        """Rebuild from the matrix, keeping the cursor on the same row and column."""
        keep = focus_key or (self.current_row().key if self.current_row() else None)
        col_index = self.cursor_coordinate.column
        m = self.matrix
        self._columns = m.columns()
        self._order = m.ordered()
        best = m.argmax()
        sort_col = m.sort_by[0].label if m.sort_by else None
        self.clear(columns=True)
        for col in self._columns:
            arrow = ("▼" if m.sort_by[1] else "▲") if col.label == sort_col else ""
            self.add_column(Text(col.label + arrow), key=col.label)
        self.raw_rows = []
        for row in self._order:
            cells = []
            for i, col in enumerate(self._columns):
                text = m.text(row, col)
                if i == 0 and row.pinned:
                    text = PIN + text
                style = "bold reverse" if (row.key, col.label) in best else ""
                cells.append(Text(text, style=style))
            self.add_row(*cells, key="|".join(map(str, row.key)))
            self.raw_rows.append({col.label: m.value(row, col) for col in self._columns})
        if keep is not None:
            for i, row in enumerate(self._order):
                if row.key == keep:
                    self.move_cursor(row=i, column=min(col_index, len(self._columns) - 1), animate=False)
                    break

    def add(self, row: MatrixRow) -> None:
        """A row (new or updated) is ready: redraw with the cursor on it."""
        self.redraw(focus_key=row.key)

    def action_sort(self) -> None:
        col = self.current_column()
        if col is not None:
            self.matrix.sort_on(col)
            self.redraw()

    def action_pin(self) -> None:
        row = self.current_row()
        if row is not None:
            self.matrix.toggle_pin(row.key)
            self.redraw(focus_key=row.key)

    def action_clear(self) -> None:
        self.matrix.clear(keep_pinned=True)
        self.redraw()

    def action_raw(self) -> None:
        self.matrix.raw = not self.matrix.raw
        self.redraw()
        self.app.notify("JS shown raw" if self.matrix.raw else "JS shown bias-corrected (the default)", markup=False)

    def on_data_table_cell_selected(self, event) -> None:
        event.stop()
        row = self.current_row()
        if row is not None:
            self.post_message(self.RowChosen(row))
