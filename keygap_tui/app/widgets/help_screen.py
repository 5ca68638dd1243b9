"""F1 / ?: every action with its current key (after the user's keymap), grouped as the footer can't."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "keygap compares attention keys of image and text tokens. Pick a slice (model, benchmark, layer, "
    "sides A and B), press c to compute, r to run the open tab. Work runs in the background; Esc cancels. "
    "Keys can be changed in the [keys] table of the config file."
)


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%; border: round $accent; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss", "close help"),
        Binding("j", "scroll(1)", show=False),
        Binding("k", "scroll(-1)", show=False),
    ]

    def __init__(self, rows: list[tuple[str, str, str]], config_path: str) -> None:
        super().__init__()
        self.rows = rows
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, header_style="bold", expand=True, padding=(0, 1))
        table.add_column("key", no_wrap=True)
        table.add_column("action")
        table.add_column(Text("id (for [keys])"), style="dim", no_wrap=True)
        for key, description, binding_id in self.rows:
            table.add_row(Text(key), Text(description), Text(binding_id))  # config values print as themselves
        with VerticalScroll():
            yield Static(Text(INTRO))
            yield Static(table)
            yield Static(Text(f"config file: {self.config_path}   Esc / q / F1 / ? closes", style="dim"))

    def action_scroll(self, step: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=step, animate=False)
