"""Scatter tab: both sides projected into shared axes (PCA or t-SNE), coloured by side."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .plot_view import PlotView

if TYPE_CHECKING:
    from ..tasks import ScatterResult

METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}


class ScatterPane(Vertical):
    DEFAULT_CSS = """
    ScatterPane > Static { height: 1; color: $text-muted; }
    """

    def __init__(self, max_points: int = 20000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_points = max_points
        self.method = "pca"
        self.result: ScatterResult | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="scatter-info")
        yield PlotView("r: project the A and B sides   t: switch PCA / t-SNE", id="scatter-plot")

    def on_mount(self) -> None:
        self._caption()

    def _caption(self, extra: str = "") -> None:
        text = f"{METHOD_NAMES[self.method]} (t switches)  r: run"
        if self.result is not None:
            from .. import plots

            _, shown = plots.shown_caption(self.result.data, self.max_points)
            text = f"{METHOD_NAMES[self.result.method]}: {shown}  (t: PCA/t-SNE, r: run)"
        self.query_one("#scatter-info", Static).update(text + extra)

    def set_method(self, method: str) -> None:
        self.method = method
        self._caption()

    def show(self, result: ScatterResult) -> None:
        from .. import plots

        self.result = result
        self._caption()
        self.query_one(PlotView).show(partial(plots.scatter, result.data, limit=self.max_points))

    def clear(self) -> None:
        self.result = None
        self._caption()
        self.query_one(PlotView).show(None)

    def export_rows(self) -> list[dict]:
        return self.result.rows if self.result else []
