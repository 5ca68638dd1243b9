"""Attention tab: does the key gap decide where text attends? FastV's allocation over layers (left), the
layer x kv head heatmap of image attention, key gap or deficit (right), and the numbers of the head under
the heatmap's cursor with the gap/deficit correlation (the two lines below). Enter on a cell drills down:
the app draws that kv head's scatter in the Scatter tab (HeadHeatmap.Chosen)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ..formatting import fmt_number as _fmt
from .choice import ChoiceField
from .head_heatmap import HeadHeatmap
from .plot_view import PlotView

if TYPE_CHECKING:
    from ..tasks import AttentionView

#: heatmap quantity -> (HeadMatrix attribute, what it means)
QUANTITIES = {
    "image attention": ("image_mass", "image attention mass of the last prompt token"),
    "key gap": ("key_gap", "centroid gap |mu_A - mu_B| in the head's columns"),
    "deficit": ("deficit", "image token share - image attention"),
}


class AttentionPane(Vertical):
    DEFAULT_CSS = """
    AttentionPane > ChoiceField { height: 1; }
    AttentionPane > Horizontal { height: 1fr; }
    AttentionPane HeadHeatmap { width: auto; max-width: 70; }
    AttentionPane #attention-detail { height: 2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.quantity = "image attention"
        self.result: AttentionView | None = None

    def compose(self) -> ComposeResult:
        yield ChoiceField("heatmap", list(QUANTITIES), self.quantity, id="attention-quantity",
                          tooltip="left/right to change the heatmap's quantity")
        with Horizontal():
            yield PlotView("r: attention of the selected model over layers (needs `keygap ingest --attention`)",
                           id="attention-plot")
            yield HeadHeatmap(id="attention-heatmap")
        yield Static("", id="attention-detail")

    def on_choice_field_changed(self, event: ChoiceField.Changed) -> None:
        event.stop()
        self.quantity = event.value
        if self.result is not None:
            self._fill_heatmap()

    def show(self, result: AttentionView) -> None:
        from .. import plots

        self.result = result
        a = result.allocation
        series = [(b, a.mass[:, a.buckets.index(b)]) for b in ("image", "text", "sink") if b in a.buckets]
        if "image" in a.buckets:
            series.append(("image tokens", a.share[:, a.buckets.index("image")]))
        title = f"{result.model}: attention of the last prompt token"
        self.query_one(PlotView).show(partial(plots.allocation_lines, a.layers, series, title=title))
        self._fill_heatmap()

    def _fill_heatmap(self) -> None:
        m = self.result.matrix
        values = getattr(m, QUANTITIES[self.quantity][0]).tolist()  # numpy stays in the task's result
        self.query_one(HeadHeatmap).show(m.layers, m.heads, values)
        picked = self.query_one(HeadHeatmap).picked()
        if picked:
            self.describe(*picked)

    def on_head_heatmap_picked(self, event: HeadHeatmap.Picked) -> None:
        event.stop()
        self.describe(event.layer, event.head)

    def _head_values(self, layer: int, head: int) -> tuple[str, str, str]:
        """That kv head's key gap, image attention and image token share, formatted."""
        m = self.result.matrix
        i = m.layers.index(layer)
        return _fmt(m.key_gap[i, head]), _fmt(m.image_mass[i, head], 3), _fmt(m.image_share[i, head], 3)

    def head_note(self, layer: int, head: int) -> str:
        """The head's numbers, short, for the line above its scatter."""
        gap, mass, share = self._head_values(layer, head)
        return f"key gap {gap}  image attn {mass} / tokens {share}"

    def describe(self, layer: int, head: int) -> None:
        """The cursor's cell: that head's numbers, and the correlation over all cells (Enter: its scatter)."""
        m = self.result.matrix
        i = m.layers.index(layer)
        gap, mass, share = self._head_values(layer, head)
        lines = [f"L{layer} kv head {head}: key gap {gap}  image attention {mass} / tokens {share}"]
        c = self.result.correlation
        if c is not None:
            lines.append(f"deficit {_fmt(m.deficit[i, head], 2)}; gap~deficit, {c.n} cells: r {_fmt(c.r, 2)} "
                         f"p {_fmt(c.p_value, 2)} (heads shuffled per layer)")
        self.query_one("#attention-detail", Static).update("\n".join(lines))

    def clear(self) -> None:
        self.result = None
        self.query_one(PlotView).show(None)
        self.query_one(HeadHeatmap).clear(columns=True)
        self.query_one("#attention-detail", Static).update("")

    def export_rows(self) -> list[dict]:
        return list(self.query_one(HeadHeatmap).raw_rows) if self.result else []
