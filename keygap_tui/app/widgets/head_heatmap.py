"""A layer x head heatmap as a table of coloured cells: one row per layer, one two-character cell per head.

Two characters a head keeps 32 heads (LLaVA-1.5-7B) inside 80 columns. Each cell shows which tenth of the
matrix's range its value falls in (0-9) on a background from blue (low) to red (high), so it reads without colour too;
moving the cursor onto a cell posts ``Picked`` with its layer and head (the pane shows that head's numbers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.message import Message

from .vim_table import VimTable

if TYPE_CHECKING:
    import numpy as np

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

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("zebra_stripes", False)
        kwargs.setdefault("cell_padding", 0)
        super().__init__(**kwargs)
        self.layer_ids: list[int] = []
        self.head_ids: list[int] = []
        self.values: np.ndarray | None = None

    def show(self, layers: list[int], heads: list[int], values: np.ndarray) -> None:
        """Fill with ``values`` [layers, heads]; NaN cells stay blank."""
        import numpy as np  # only once a result arrives: the first screen loads no numpy

        self.layer_ids, self.head_ids, self.values = list(layers), list(heads), np.asarray(values, dtype=float)
        self.clear(columns=True)
        self.add_column(Text("L ", style="bold"), key="layer")
        for h in self.head_ids:
            self.add_column(Text(f"{h:>2}"[-2:], style="dim"), key=f"h{h}")
        self.raw_rows = []
        bins = _tenths(self.values)
        for i, layer in enumerate(self.layer_ids):
            cells = [Text(f"{layer:>2} ", style="bold")]
            for j in range(len(self.head_ids)):
                d = bins[i, j]
                if d < 0:
                    cells.append(Text("  "))
                else:
                    fg = "black" if d in DARK_TEXT else "white"
                    cells.append(Text(f" {d}", style=f"{fg} on {RAMP[d]}"))
            self.add_row(*cells, key=str(layer))
            values = {f"h{h}": float(self.values[i, j]) for j, h in enumerate(self.head_ids)}
            self.raw_rows.append({"layer": layer} | values)
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


def _tenths(values: np.ndarray) -> np.ndarray:
    """Which tenth (0-9) of the range between the matrix's min and max each finite value is in; -1 for NaN."""
    import numpy as np

    out = np.full(values.shape, -1, dtype=np.int64)
    finite = np.isfinite(values)
    if not finite.any():
        return out
    lo, hi = float(values[finite].min()), float(values[finite].max())
    scaled = np.zeros(values.shape) if hi == lo else (values - lo) / (hi - lo)
    out[finite] = np.clip((scaled[finite] * 10).astype(np.int64), 0, 9)
    return out
