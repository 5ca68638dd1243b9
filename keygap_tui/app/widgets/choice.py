"""A one-line, keyboard-first choice: ``label ‹value›``, cycled with left/right (or h/l).

Why not Select: a Select needs three rows (or an overlay) per field and a mouse-like open/close step; the
slice picker has seven fields that must fit two rows of an 80x24 terminal and change with one key each.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class ChoiceField(Widget, can_focus=True):
    DEFAULT_CSS = """
    ChoiceField { width: auto; height: 1; padding: 0 1 0 0; }
    ChoiceField:focus { background: $accent 30%; text-style: bold; }
    ChoiceField.-disabled-choice { color: $text-muted; }
    """
    BINDINGS = [
        Binding("left,h", "cycle(-1)", "previous", show=False),
        Binding("right,l", "cycle(1)", "next", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
        Binding("j", "app.focus_next", "next field", show=False),
        Binding("k", "app.focus_previous", "previous field", show=False),
    ]

    value: reactive[str] = reactive("", layout=True)

    class Changed(Message):
        def __init__(self, field: ChoiceField, value: str) -> None:
            super().__init__()
            self.field = field
            self.value = value

        @property
        def control(self) -> ChoiceField:
            return self.field

    def __init__(
        self, label: str, options: list[str] | None = None, value: str = "", *, id: str | None = None, tooltip: str = ""
    ):
        super().__init__(id=id)
        self.label = label
        self.options: list[str] = list(options or [])
        self.set_reactive(ChoiceField.value, value)
        if tooltip:
            self.tooltip = tooltip

    def render(self) -> Text:
        text = Text()
        if self.label:
            text.append(f"{self.label} ", style="dim")
        shown = self.value if self.options else "-"
        arrows = len(self.options) > 1
        text.append(("‹" if arrows else " ") + shown + ("›" if arrows else " "))
        return text

    def set_options(self, options: list[str], value: str | None = None) -> None:
        """Replace the options without posting Changed (the caller already knows the new state)."""
        self.options = list(options)
        value = value if value is not None else self.value
        if self.options and value not in self.options:
            value = self.options[0]
        self.set_reactive(ChoiceField.value, value)
        self.refresh(layout=True)

    def action_cycle(self, step: int) -> None:
        if not self.options:
            return
        i = self.options.index(self.value) if self.value in self.options else 0
        self._choose(self.options[(i + step) % len(self.options)])

    def action_jump(self, index: int) -> None:
        if self.options:
            self._choose(self.options[index])

    def _choose(self, value: str) -> None:
        if value != self.value:
            self.value = value
            self.post_message(self.Changed(self, value))
