"""Shows plot text that a thread worker built, so drawing never stalls the event loop.

textual-plotext's PlotextPlot rebuilds the whole figure inside ``render`` on the event loop, each time
the widget repaints; a scatter of 20k points took 0.78 s there (docs/TUI.md). Here a painter
``(width, height) -> ANSI text`` runs in a worker at the widget's size, again only when the data or the
size changes, and render shows the finished text.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widget import Widget
from textual.worker import Worker, WorkerState, get_current_worker

Painter = Callable[[int, int], str]


class PlotView(Widget):
    DEFAULT_CSS = """
    PlotView { width: 1fr; height: 1fr; }
    """

    def __init__(self, placeholder: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.placeholder = placeholder
        self.painter: Painter | None = None
        self._text: Text | None = None
        self._built_for: tuple | None = None

    def render(self) -> Text:
        if self._text is not None:
            return self._text
        return Text(self.placeholder, style="dim")

    def show(self, painter: Painter | None, placeholder: str | None = None) -> None:
        """Draw with ``painter`` (None clears); the build runs in a worker at the current size."""
        self.painter = painter
        if placeholder is not None:
            self.placeholder = placeholder
        self._built_for = None
        if painter is None:
            self._text = None
            self.refresh()
        self._rebuild()

    def on_resize(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        size = (self.size.width, self.size.height)
        if self.painter is None or size[0] < 4 or size[1] < 3 or self._built_for == (self.painter, size):
            return
        self._built_for = (self.painter, size)
        painter = self.painter
        self.run_worker(
            lambda: self._build(painter, size), thread=True, exclusive=True, group=f"plot-{id(self)}",
            exit_on_error=False, name="draw plot",
        )

    def _build(self, painter: Painter, size: tuple[int, int]) -> tuple:
        text = painter(*size)
        worker = get_current_worker()
        return (painter, size, None if worker.is_cancelled else Text.from_ansi(text, no_wrap=True))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != f"plot-{id(self)}":
            return
        event.stop()
        if event.state == WorkerState.SUCCESS:
            painter, size, text = event.worker.result
            if text is not None and painter is self.painter:
                self._text = text
                self.refresh()
        elif event.state == WorkerState.ERROR:
            self._text = Text(f"cannot draw this plot: {event.worker.error}", style="bold red")
            self.refresh()
