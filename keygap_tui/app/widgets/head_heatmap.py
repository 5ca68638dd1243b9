"""A layer x head heatmap as a table of coloured cells: one row per layer, one two-character cell per head.

Two characters a head keeps 32 heads (LLaVA-1.5-7B) inside 80 columns. Each cell shows which tenth of the
matrix's range its value falls in (0-9) on a background from blue (low) to red (high), so it reads without colour too;
moving the cursor onto a cell posts ``Picked`` with its layer and head (the pane shows that head's numbers),
Enter (or a click on the cell under the cursor) posts ``Chosen`` (the app drills down to that head's scatter).
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.message import Message

from .vim_table import VimTable

#: low -> high, readable on dark and light themes (foreground chosen per background)
RAMP = ("#313695", "#4575b4", "#74add1", "#abd9e9", "#e0f3f8", "#fee090", "#fdae61", "#f46d43", "#d73027", "#a50026")
DARK_TEXT = {3, 4, 5, 6}


class HeadHeatmap(VimTable):
    DEFAULT_CSS = """
    HeadHeatmap { height: 1fr; width: auto; }
    """

    class Picked(Message):
        def __init__(self, layer: int, head: int) -> None:
            super().__init__()
            self.layer, self.head = layer, head

    class Chosen(Message):
        """Enter on a cell: show that kv head's scatter."""

        def __init__(self, layer: int, head: int) -> None:
            super().__init__()
            self.layer, self.head = layer, head

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("zebra_stripes", False)
        kwargs.setdefault("cell_padding", 0)
        super().__init__(**kwargs)
        self.layer_ids: list[int] = []
        self.head_ids: list[int] = []
        self.values: list[list[float]] = []

    def show(self, layers: list[int], heads: list[int], values: list[list[float]]) -> None:
        """Fill with ``values`` [layer][head] (plain lists: the widgets load no numpy); NaN cells stay blank."""
        self.layer_ids, self.head_ids, self.values = list(layers), list(heads), [list(map(float, r)) for r in values]
        self.clear(columns=True)
        self.add_column(Text("L ", style="bold"), key="layer")
        for h in self.head_ids:
            self.add_column(Text(f"{h:>2}"[-2:], style="dim"), key=f"h{h}")
        self.raw_rows = []
        bins = _tenths(self.values)
        for i, layer in enumerate(self.layer_ids):
            cells = [Text(f"{layer:>2} ", style="bold")]
            for j in range(len(self.head_ids)):
                d = bins[i][j]
                if d < 0:
                    cells.append(Text("  "))
                else:
                    fg = "black" if d in DARK_TEXT else "white"
                    cells.append(Text(f" {d}", style=f"{fg} on {RAMP[d]}"))
            self.add_row(*cells, key=str(layer))
            row_values = {f"h{h}": self.values[i][j] for j, h in enumerate(self.head_ids)}
            self.raw_rows.append({"layer": layer} | row_values)
        if self.layer_ids and self.head_ids:
            self.move_cursor(row=0, column=1)

    def picked(self) -> tuple[int, int] | None:
        """(layer, head) under the cursor, None on the layer column or an empty table."""
        if not self.layer_ids or not self.head_ids:
            return None
        row, col = self.cursor_coordinate
        if col < 1 or row >= len(self.layer_ids):
            return None
        return self.layer_ids[row], self.head_ids[col - 1]

    def on_data_table_cell_highlighted(self, event: VimTable.CellHighlighted) -> None:
        event.stop()
        cell = self.picked()
        if cell is not None:
            self.post_message(self.Picked(*cell))

    def on_data_table_cell_selected(self, event: VimTable.CellSelected) -> None:
        event.stop()
        cell = self.picked()
        if cell is not None:
            self.post_message(self.Chosen(*cell))


def _tenths(values: list[list[float]]) -> list[list[int]]:
    """Which tenth (0-9) of the range between the matrix's min and max each finite value is in; -1 for NaN."""
    finite = [v for row in values for v in row if math.isfinite(v)]
    if not finite:
        return [[-1] * len(row) for row in values]
    lo, hi = min(finite), max(finite)

    def tenth(v: float) -> int:
        if not math.isfinite(v):
            return -1
        return 0 if hi == lo else min(9, max(0, int((v - lo) / (hi - lo) * 10)))

    return [[tenth(v) for v in row] for row in values]
