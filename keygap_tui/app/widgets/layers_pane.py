"""Layers tab: one measure against relative depth, every model that has the benchmark overlaid."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from ..formatting import fmt_number as _fmt
from .choice import ChoiceField
from .plot_view import PlotView
from .vim_table import VimTable

if TYPE_CHECKING:
    from ..tasks import SweepResult


class LayersPane(Vertical):
    DEFAULT_CSS = """
    LayersPane > Horizontal { height: 1fr; }
    LayersPane > ChoiceField { height: 1; }
    LayersPane VimTable { width: 34; height: 1fr; }
    """

    def __init__(self, metrics: list[str], metric: str = "mmd", **kwargs) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.metric = metric if metric in metrics else metrics[0]
        self.result: SweepResult | None = None

    def compose(self) -> ComposeResult:
        yield ChoiceField("measure", self.metrics, self.metric, id="layers-metric",
                          tooltip="left/right to change, r to run")
        with Horizontal():
            yield PlotView("r: sweep every stored layer of every model on this benchmark", id="layers-plot")
            yield VimTable(id="layers-table")

    def on_mount(self) -> None:
        self.query_one(VimTable).add_columns("model", "L", "depth", "value", "p")

    def on_choice_field_changed(self, event: ChoiceField.Changed) -> None:
        self.metric = event.value

    def show(self, result: SweepResult) -> None:
        from .. import plots

        self.result = result
        self.query_one(PlotView).show(partial(plots.depth_lines, result.series, ylabel=f"{result.metric} (A vs B)"))
        table = self.query_one(VimTable)
        table.clear()
        table.raw_rows = []
        for r in sorted(result.rows, key=lambda r: (r["model"], r["layer"])):
            table.raw_rows.append(
                {"model": r["model"], "L": r["layer"], "depth": r["depth"], "value": r["value"], "p": r["p_value"]}
            )
            table.add_row(r["model"], str(r["layer"]), _fmt(r["depth"], 2), _fmt(r["value"]), _fmt(r["p_value"], 2))

    def clear(self) -> None:
        self.result = None
        self.query_one(PlotView).show(None)
        self.query_one(VimTable).clear()

    def export_rows(self) -> list[dict]:
        return self.result.rows if self.result else []
