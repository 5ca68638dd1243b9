"""SQL tab: an editor and a result grid over the store's read-only catalog, with history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static, TextArea

from .vim_table import VimTable

if TYPE_CHECKING:
    from ..tasks import SqlResult

EXAMPLE = "SELECT layer, modality, count(*) AS keys FROM keys GROUP BY ALL ORDER BY ALL"


class SqlPane(Vertical):
    DEFAULT_CSS = """
    SqlPane TextArea { height: 4; }
    SqlPane > Static { height: 1; color: $text-muted; }
    SqlPane > Static.-error { color: $error; }
    SqlPane VimTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+up,alt+up", "history(-1)", "older query", id="sql_history_back"),
        Binding("ctrl+down,alt+down", "history(1)", "newer query", id="sql_history_forward"),
    ]

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history = history if history is not None else []
        self._cursor = len(self.history) - 1  # the editor shows the newest query
        self.result: SqlResult | None = None

    def compose(self) -> ComposeResult:
        yield TextArea(self.history[-1] if self.history else EXAMPLE, id="sql-editor", soft_wrap=True, tab_behavior="focus")
        yield Static("ctrl+r: run   ctrl+up/down: history   Esc: cancel", id="sql-info")
        yield VimTable(id="sql-grid")

    @property
    def query_text(self) -> str:
        return self.query_one(TextArea).text

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._cursor = max(0, min(len(self.history) - 1, self._cursor + step))
        self.query_one(TextArea).text = self.history[self._cursor]

    def remember(self, query: str) -> None:
        self._cursor = len(self.history) - 1  # the editor shows the newest query

    def info(self, text: str, error: bool = False) -> None:
        info = self.query_one("#sql-info", Static)
        info.update(text)
        info.set_class(error, "-error")

    def show(self, result: SqlResult) -> None:
        self.result = result
        grid = self.query_one(VimTable)
        grid.clear(columns=True)
        grid.add_columns(*result.columns)
        grid.raw_rows = []
        grid.add_rows(result.cells)
        shown = len(result.cells)
        more = f", {shown:,} shown (export for all)" if shown < result.total else ""
        took = f" in {result.seconds:.2f}s" if result.seconds is not None else ""
        self.info(f"{result.total:,} rows{took}{more}")

    def export_table(self):
        return None if self.result is None else self.result.table
