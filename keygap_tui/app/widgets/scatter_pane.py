"""Scatter tab: both sides projected into shared axes (PCA or t-SNE), coloured by side, with a cursor.

The cursor is a crosshair that h/j/k/l (or the arrows) move across the plot; the point nearest to it is
selected and its sample, position, segment, token id and token text are shown. n lists the text tokens
nearest to side A's centroid (in key space), N those nearest to the selected point; the list sits beside
the plot and is what e exports when focused. A plot whose slice no longer matches the picker is marked
stale in its caption until it is run again. A scatter of one kv head (Enter on the Attention tab's heatmap)
says so in its title and on a line above the plot, with that head's numbers; backspace (or F6) goes back.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static

from .plot_view import PlotView
from .vim_table import VimTable

if TYPE_CHECKING:
    from ..selection import Selection
    from ..tasks import ScatterResult

METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
STEPS_PER_AXIS = 40  # one key press moves the crosshair 1/40 of the plotted range
NEAREST_COLUMNS = ("#", "distance", "token", "id", "segment", "pos", "sample")


class ScatterPlot(PlotView, can_focus=True):
    """The plot, focusable so the cursor keys reach it."""

    DEFAULT_CSS = """
    ScatterPlot:focus { background: $boost; }
    """
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "cursor left", show=False),
        Binding("right,l", "move(1, 0)", "cursor right", show=False),
        Binding("up,k", "move(0, 1)", "cursor up", show=False),
        Binding("down,j", "move(0, -1)", "cursor down", show=False),
        Binding("n", "nearest(False)", "nearest text tokens to A's centroid", id="nearest_centroid"),
        Binding("N", "nearest(True)", "nearest text tokens to the selected point", id="nearest_point"),
        Binding("backspace", "back", "from one kv head's scatter back to the Attention heatmap", id="scatter_back",
                show=False),
    ]

    class Back(Message):
        """backspace on a kv head's scatter: the app returns to the heatmap it came from."""

    class Nearest(Message):
        def __init__(self, point: int | None) -> None:
            super().__init__()
            self.point = point

    def action_move(self, dx: int, dy: int) -> None:
        self.parent_pane.move_cursor(dx, dy)

    def action_nearest(self, to_point: bool) -> None:
        pane = self.parent_pane
        if pane.result is None:
            self.app.notify("run the scatter first (r)", markup=False)
            return
        self.post_message(self.Nearest(pane.selected if to_point else None))

    def action_back(self) -> None:
        pane = self.parent_pane
        if pane.result is None or pane.result.head is None:
            self.app.notify("backspace goes back to the Attention heatmap from a kv head's scatter (Enter there)",
                            markup=False)
            return
        self.post_message(self.Back())

    @property
    def parent_pane(self) -> ScatterPane:
        return self.query_ancestor(ScatterPane)


class ScatterPane(Vertical):
    DEFAULT_CSS = """
    ScatterPane > Static { height: 1; color: $text-muted; }
    ScatterPane > Static#scatter-point { color: $text; }
    ScatterPane > Static#scatter-head { color: $text; display: none; }
    ScatterPane > Static#scatter-head.-shown { display: block; }
    ScatterPane Horizontal { height: 1fr; }
    ScatterPane VimTable { width: 48; height: 1fr; display: none; }
    ScatterPane VimTable.-shown { display: block; }
    ScatterPane #scatter-pinned { display: none; border-right: vkey $accent; }
    ScatterPane #scatter-pinned.-shown { display: block; }
    """

    def __init__(self, max_points: int = 20000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_points = max_points
        self.method = "pca"
        self.result: ScatterResult | None = None
        self.stale = False
        self.crosshair: tuple[float, float] | None = None
        self.selected: int | None = None
        self.nearest_rows: list[dict] = []
        self.nearest_of: Selection | None = None  # the slice the nearest-token list was computed on
        self.pinned: ScatterResult | None = None  # side by side: this slice stays on the left
        self.head_note = ""  # a kv head's numbers (from the Attention tab), shown while its scatter is

    def compose(self) -> ComposeResult:
        yield Static(id="scatter-head")
        yield Static(id="scatter-info")
        yield Static(id="scatter-point")
        with Horizontal():
            yield PlotView("", id="scatter-pinned")
            yield ScatterPlot("r: project the A and B sides   t: switch PCA / t-SNE", id="scatter-plot")
            yield VimTable(id="scatter-nearest")

    def on_mount(self) -> None:
        self._caption()

    def _caption(self) -> None:
        text = f"{METHOD_NAMES[self.method]} (t switches)  r: run"
        if self.result is not None:
            from .. import plots

            _, shown = plots.shown_caption(self.result.data, self.max_points)
            text = f"{METHOD_NAMES[self.result.method]}: {shown}  hjkl: cursor  n/N: nearest tokens"
            if self.stale:
                text = f"STALE (the picker moved; r redraws)  {text}"
        info = self.query_one("#scatter-info", Static)
        info.update(Text(text, style="bold" if self.stale else ""))

    def set_method(self, method: str) -> None:
        self.method = method
        self._caption()

    def mark_stale(self, sel: Selection) -> None:
        """Mark the plot stale when its slice is not the picker's (and fresh again when it is)."""
        stale = self.result is not None and self.result.selection is not None and self.result.selection != sel
        if stale != self.stale:
            self.stale = stale
            self._caption()

    def show(self, result: ScatterResult, head_note: str = "") -> None:
        """Draw ``result``; ``head_note``: the numbers of the kv head it shows (result.head), if any."""
        self.result = result
        self.head_note = head_note if result.head is not None else ""
        line = self.query_one("#scatter-head", Static)
        line.set_class(result.head is not None, "-shown")
        if result.head is not None:
            sel = result.selection
            where = f"kv head {result.head} of layer {sel.layer}" if sel is not None else f"kv head {result.head}"
            line.update(Text(f"{where}  {self.head_note}  ⌫: back", style="bold"))
        self.stale = False
        self.selected = None
        if self.nearest_rows and result.selection != self.nearest_of:
            self.hide_nearest()  # the list belonged to the slice drawn before: never beside another slice's plot
        coords = result.data.coords
        if len(coords):
            self.crosshair = (float(coords[:, 0].mean()), float(coords[:, 1].mean()))
            self._select_nearest()
        self._caption()
        self._draw()

    def _draw(self) -> None:
        from .. import plots

        self.query_one(ScatterPlot).show(partial(plots.scatter, self.result.data, limit=self.max_points,
                                                 highlight=self.selected))

    def move_cursor(self, dx: int, dy: int) -> None:
        if self.result is None or self.crosshair is None:
            return
        coords = self.result.data.coords
        span_x = float(coords[:, 0].max() - coords[:, 0].min()) or 1.0
        span_y = float(coords[:, 1].max() - coords[:, 1].min()) or 1.0
        x, y = self.crosshair
        self.crosshair = (x + dx * span_x / STEPS_PER_AXIS, y + dy * span_y / STEPS_PER_AXIS)
        before = self.selected
        self._select_nearest()
        if self.selected != before:
            self._draw()

    def _select_nearest(self) -> None:
        """The point nearest to the crosshair, in units of each axis' range (so both axes count alike)."""
        coords = self.result.data.coords
        span = (coords.max(axis=0) - coords.min(axis=0))
        span[span == 0] = 1.0
        d = (((coords - self.crosshair) / span) ** 2).sum(axis=1)
        self.selected = int(d.argmin())
        self._describe()

    def _describe(self) -> None:
        r = self.result.rows[self.selected]
        token = r["token_text"]
        shown = repr(token) if token is not None else "(no token text: re-ingest to record it)"
        self.query_one("#scatter-point", Static).update(Text(
            f"▶ {r['side']}  sample {r['sample_id']}  pos {r['position']}  {r['segment']}  "
            f"token {r['token_id']} {shown}"))

    def selected_row(self) -> dict | None:
        return None if self.result is None or self.selected is None else self.result.rows[self.selected]

    def hide_nearest(self) -> None:
        self.nearest_rows, self.nearest_of = [], None
        self.query_one("#scatter-nearest", VimTable).remove_class("-shown")

    def show_nearest(self, rows: list[dict]) -> None:
        self.nearest_rows = rows
        self.nearest_of = self.result.selection if self.result is not None else None
        table = self.query_one("#scatter-nearest", VimTable)
        table.clear(columns=True)
        table.add_columns(*NEAREST_COLUMNS)
        table.raw_rows = []
        for r in rows:
            text = "" if r["token_text"] is None else repr(r["token_text"])
            table.add_row(str(r["rank"]), f"{r['distance']:.4g}", Text(text), str(r["token_id"]), r["segment"],
                          str(r["position"]), r["sample_id"])
            table.raw_rows.append({"#": r["rank"], "distance": r["distance"], "token": r["token_text"],
                                   "id": r["token_id"], "segment": r["segment"], "pos": r["position"],
                                   "sample": r["sample_id"]})
        table.add_class("-shown")
        if rows:
            self.query_one("#scatter-info", Static).update(
                Text(f"nearest text tokens to {rows[0]['to']} (e exports it when focused)"))

    def toggle_pin(self) -> ScatterResult | None:
        """Side by side: keep the current plot on the left (its own title says its slice); again: unpin."""
        from .. import plots

        view = self.query_one("#scatter-pinned", PlotView)
        if self.pinned is not None or self.result is None:
            self.pinned = None
            view.remove_class("-shown")
            view.show(None)
            return None
        self.pinned = self.result
        pinned_data = plots.ScatterData(self.result.data.coords, self.result.data.series, self.result.data.labels,
                                        "PINNED " + self.result.data.title)
        view.add_class("-shown")
        view.show(partial(plots.scatter, pinned_data, limit=self.max_points))
        return self.pinned

    def clear(self) -> None:
        self.result = None
        self._caption()
        self.query_one(ScatterPlot).show(None)

    def export_rows(self) -> list[dict]:
        """The nearest-token list when it has focus, else every point (slice, layer, method, position, token)."""
        if self.nearest_rows and self.app.focused is self.query_one("#scatter-nearest"):
            return self.nearest_rows
        return self.result.rows if self.result else []
