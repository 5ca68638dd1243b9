"""Controls tab: Image-vs-Text against Image-vs-Image and Text-vs-Text over layers (paper Figure 2)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .plot_view import PlotView

if TYPE_CHECKING:
    from ..tasks import ControlsResult


class ControlsPane(Vertical):
    DEFAULT_CSS = """
    ControlsPane > Static { height: 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.result: ControlsResult | None = None

    def compose(self) -> ComposeResult:
        yield Static("r: control groups at every stored layer of this model and benchmark", id="controls-info")
        yield PlotView("r: compute  (I-T = A vs B, I-I = A vs A, T-T = B vs B, disjoint sample halves)", id="controls-plot")

    def show(self, result: ControlsResult, what: str) -> None:
        from .. import plots

        self.result = result
        n = len(result.rows)
        layers = ",".join(map(str, result.layers))
        self.query_one("#controls-info", Static).update(f"{what}: layers {layers}; {n} values (I-T, I-I, T-T)")
        self.query_one(PlotView).show(partial(plots.control_boxes, result.values))

    def clear(self) -> None:
        self.result = None
        self.query_one("#controls-info", Static).update("r: control groups at every stored layer of this model and benchmark")
        self.query_one(PlotView).show(None)

    def export_rows(self) -> list[dict]:
        return self.result.rows if self.result else []
