"""The comparison results: measure, value, p-value, n, time, cached - one row per measure."""

from __future__ import annotations

from ..formatting import display_cells
from .vim_table import VimTable

COLUMNS = ("measure", "value", "p-value", "n", "time", "cached")


class ResultsTable(VimTable):
    DEFAULT_CSS = """
    ResultsTable { height: auto; max-height: 8; }
    """

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show_rows(self, rows: list[dict]) -> None:
        self.clear()
        self.raw_rows = [
            {"measure": r["metric"], "value": r["value"], "p-value": r["p_value"], "n": r["n"],
             "time": r["seconds"], "cached": r["cached"]}
            for r in rows
        ]
        self.export_data = rows
        for r in rows:
            self.add_row(*display_cells(r))

    export_data: list[dict] = []
