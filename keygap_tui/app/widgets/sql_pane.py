"""SQL tab, after Harlequin: a schema sidebar, a highlighted editor with completion, a result grid, a row viewer.

- Editor: Textual's TextArea with tree-sitter SQL highlighting (tree-sitter-sql from the package registry),
  its height cycled with F8 up to the whole pane; Tab completes tables, columns and the catalog's
  functions and macros (sql_complete.py), Esc leaves it (the app's rule), ctrl+r runs.
- Schema: the catalog's views and their columns with types; Enter inserts the name at the cursor.
- Grid: the result (1,000 rows shown, all exported); Enter opens the row viewer (vec summarised, every
  field in full below); m maximises the grid (as many rows as the terminal has lines).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static, TextArea, Tree

from ..sql_complete import Schema, candidates, common_prefix, word_before
from .vim_table import VimTable

if TYPE_CHECKING:
    from ..tasks import SqlResult

EXAMPLE = "SELECT layer, modality, count(*) AS keys FROM keys GROUP BY ALL ORDER BY ALL"
EDITOR_HEIGHTS = (6, 12, 0)  # rows; 0 = the whole pane (F8 cycles; F6 is left for a further tab)


class SqlEditor(TextArea):
    """The editor: SQL highlighting where tree-sitter is installed, Tab completes (then moves focus)."""

    # TextArea selects all with F7, which the schema sidebar holds here; ctrl+a as in Harlequin (home
    # still goes to the start of the line)
    BINDINGS = [Binding("ctrl+a", "select_all", "select all", show=False)]

    class Complete(Message):
        pass

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(text, soft_wrap=True, tab_behavior="focus", show_line_numbers=True, **kwargs)
        try:
            self.language = "sql"
        except Exception:  # no tree-sitter grammar: plain text, everything else works
            pass
        self.schema: Schema | None = None
        self._cycle: tuple[int, int, list[str], int] | None = None  # (row, start col, candidates, index)

    async def _on_key(self, event) -> None:
        if event.key == "tab" and self._complete():
            event.stop()
            event.prevent_default()
            return
        self._cycle = None
        await super()._on_key(event)

    def _complete(self) -> bool:
        """Complete the word before the cursor; False when there is nothing to complete (Tab moves focus)."""
        if self.schema is None:
            return False
        row, col = self.cursor_location
        line = self.document.get_line(row)
        if self._cycle is not None and self._cycle[0] == row:
            _, start, words, i = self._cycle
            i = (i + 1) % len(words)
            self.replace(words[i], (row, start), (row, col))
            self._cycle = (row, start, words, i)
            self.app.query_one(SqlPane).info(f"tab: {', '.join(words)}")
            return True
        prefix = word_before(line[:col])
        words = candidates(self.schema, prefix)
        if not words:
            return False
        start = col - len(prefix)
        if len(words) == 1:
            self.replace(words[0], (row, start), (row, col))
            return True
        common = common_prefix(words)
        if len(common) > len(prefix):
            self.replace(common, (row, start), (row, col))
        else:
            self.replace(words[0], (row, start), (row, col))
            self._cycle = (row, start, words, 0)
        self.app.query_one(SqlPane).info(f"tab: {', '.join(words[:12])}{' …' if len(words) > 12 else ''}")
        return True


class SqlPane(Vertical):
    DEFAULT_CSS = """
    SqlPane > Horizontal { height: 1fr; }
    SqlPane Tree { width: 26; height: 1fr; border-right: vkey $accent; }
    SqlPane Tree.-hidden { display: none; }
    SqlPane #sql-main { height: 1fr; }
    SqlPane SqlEditor { height: 6; }
    SqlPane #sql-main > Static { height: 1; color: $text-muted; }
    SqlPane #sql-main > Static.-error { color: $error; }
    SqlPane VimTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+up,alt+up", "history(-1)", "older query", id="sql_history_back"),
        Binding("ctrl+down,alt+down", "history(1)", "newer query", id="sql_history_forward"),
        Binding("f8", "editor_height", "SQL editor: taller / full / short", id="sql_editor_height", priority=True,
                show=False),
        Binding("f7", "toggle_schema", "SQL schema sidebar: hide / show", id="sql_schema", priority=True, show=False),
    ]

    class RowOpened(Message):
        def __init__(self, row: dict) -> None:
            super().__init__()
            self.row = row

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history = history if history is not None else []
        self._cursor = len(self.history) - 1  # the editor shows the newest query
        self.result: SqlResult | None = None
        self._height = 0

    def compose(self) -> ComposeResult:
        with Horizontal():
            tree: Tree = Tree("store", id="sql-schema")
            tree.show_root = False
            yield tree
            with Vertical(id="sql-main"):
                yield SqlEditor(self.history[-1] if self.history else EXAMPLE, id="sql-editor")
                yield Static("ctrl+r: run  tab: complete  F8: editor size  F7: schema  Esc: leave the editor",
                             id="sql-info")
                yield VimTable(id="sql-grid")

    @property
    def query_text(self) -> str:
        return self.query_one(SqlEditor).text

    def set_schema(self, schema: Schema) -> None:
        """Fill the sidebar and give the editor its completion words."""
        self.query_one(SqlEditor).schema = schema
        tree = self.query_one(Tree)
        tree.clear()
        for table, columns in schema.tables.items():
            node = tree.root.add(Text(table, style="bold"), data=table, expand=table == "keys")
            for name, kind in columns:
                node.add_leaf(Text.assemble(name, (f" {kind.lower()}", "dim")), data=name)
        if schema.functions:
            node = tree.root.add(Text("functions", style="bold"), data=None)
            for name in schema.functions:
                node.add_leaf(Text(name), data=name)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        """Enter on a table or column: its name goes into the editor at the cursor."""
        event.stop()
        if event.node.data:
            editor = self.query_one(SqlEditor)
            editor.insert(str(event.node.data))
            editor.focus()

    def action_editor_height(self) -> None:
        self._height = (self._height + 1) % len(EDITOR_HEIGHTS)
        rows = EDITOR_HEIGHTS[self._height]
        editor = self.query_one(SqlEditor)
        editor.styles.height = "1fr" if rows == 0 else rows
        self.query_one(VimTable).display = rows != 0
        self.info(f"editor: {'the whole pane' if rows == 0 else f'{rows} rows'} (F8 changes)")

    def action_toggle_schema(self) -> None:
        self.query_one(Tree).toggle_class("-hidden")

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._cursor = max(0, min(len(self.history) - 1, self._cursor + step))
        self.query_one(SqlEditor).text = self.history[self._cursor]

    def remember(self, query: str) -> None:
        self._cursor = len(self.history) - 1  # the editor shows the newest query

    def info(self, text: str, error: bool = False) -> None:
        info = self.query_one("#sql-info", Static)
        info.update(Text(text))
        info.set_class(error, "-error")

    def show(self, result: SqlResult) -> None:
        self.result = result
        grid = self.query_one(VimTable)
        grid.clear(columns=True)
        grid.add_columns(*result.columns)
        grid.raw_rows = []
        grid.add_rows([[Text(c) for c in row] for row in result.cells])
        shown = len(result.cells)
        more = f", {shown:,} shown (export for all)" if shown < result.total else ""
        took = f" in {result.seconds:.2f}s" if result.seconds is not None else ""
        self.info(f"{result.total:,} rows{took}{more}  enter: row viewer  m: maximise  e/E/ctrl+e: CSV/JSON/Parquet")

    def on_data_table_cell_selected(self, event) -> None:
        """Enter on a result cell: the whole row in the row viewer."""
        if event.data_table.id != "sql-grid" or self.result is None:
            return
        event.stop()
        row = self.result.table.slice(event.coordinate.row, 1).to_pylist()
        if row:
            self.post_message(self.RowOpened(row[0]))

    def export_table(self):
        return None if self.result is None else self.result.table
