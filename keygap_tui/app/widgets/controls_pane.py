"""Controls tab: per layer, A-vs-B against A-vs-A and B-vs-B on disjoint sample halves (paper Figure 2).

Labels follow the actual sides (I-T / I-I / T-T only when A is image and B is text); the table beside
the boxes gives each layer's means and the inter/intra ratio, the numbers of `keygap report`'s Table. The
layers are the report's Figure 2 layers (early, middle, late) unless the user asks for all of them (a).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ..formatting import fmt_number
from .plot_view import PlotView
from .vim_table import VimTable

if TYPE_CHECKING:
    from ..selection import Selection
    from ..tasks import ControlsResult

HINT = "r: control groups at the early, middle and late layers (as keygap report); a: at every stored layer"


class ControlsPane(Vertical):
    DEFAULT_CSS = """
    ControlsPane > Static { height: 1; color: $text-muted; }
    ControlsPane > Horizontal { height: 1fr; }
    ControlsPane VimTable { width: 54; height: 1fr; scrollbar-gutter: stable; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.result: ControlsResult | None = None
        self.stale = False

    def compose(self) -> ComposeResult:
        yield Static(HINT, id="controls-info")
        with Horizontal():
            yield PlotView("r: compute  (A vs B against A vs A and B vs B, disjoint sample halves)", id="controls-plot")
            yield VimTable(id="controls-table")

    def show(self, result: ControlsResult, what: str) -> None:
        from .. import plots

        self.result = result
        self.stale = False
        self.what = what
        self._caption()
        self.query_one(PlotView).show(partial(plots.control_boxes, result.values, result.labels, title=what))
        table = self.query_one(VimTable)
        table.clear(columns=True)
        names = [result.labels[g] for g in ("image-vs-text", "image-vs-image", "text-vs-text")]
        table.add_columns("measure", "L", *names, "ratio")
        table.raw_rows = list(result.table)
        for r in result.table:
            table.add_row(r["metric"], str(r["layer"]), *(fmt_number(r[n]) for n in names), fmt_number(r["ratio"]))

    def _caption(self) -> None:
        if self.result is None:
            return
        layers = ",".join(map(str, self.result.layers))
        sel = self.result.selection
        sides = f"A = {sel.spec('a')}, B = {sel.spec('b')}, {sel.rope}-RoPE; " if sel is not None else ""
        text = f"{self.what}: layers {layers}; {sides}{len(self.result.rows)} values; ratio = A-B / mean(A-A, B-B)"
        if self.stale:
            text = "STALE (the picker moved; r redraws)  " + text
        self.query_one("#controls-info", Static).update(Text(text, style="bold" if self.stale else ""))

    def mark_stale(self, sel: Selection) -> None:
        r = self.result
        s = r.selection if r is not None else None
        stale = s is not None and (s.model, s.benchmark, s.rope, s.spec("a"), s.spec("b")) != (
            sel.model, sel.benchmark, sel.rope, sel.spec("a"), sel.spec("b"))
        if stale != self.stale:
            self.stale = stale
            self._caption()

    def clear(self) -> None:
        self.result = None
        self.query_one("#controls-info", Static).update(HINT)
        self.query_one(PlotView).show(None)

    def export_rows(self) -> list[dict]:
        return self.result.rows if self.result else []
