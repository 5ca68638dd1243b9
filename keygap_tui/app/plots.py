"""Plot text for the TUI's tabs, built off the event loop (plotext blocks its thread while it draws).

Each function takes plain data and a size and returns plotext's ANSI text, so a thread worker can build it
and the widget only shows the finished text. A fresh plotext figure per call: plotext's module-level
figure is global state, which two workers drawing at once would corrupt. The "clear" theme leaves
background and foreground to the terminal, so one plot reads in the light and the dark theme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keygap_tui.analysis.plots import five_numbers

SERIES_COLORS = ("blue", "orange", "green", "magenta", "cyan", "red", "yellow")
MARKERS = ("dot", "x", "+", "*", "o")
TITLE_MARGIN = 9  # plotext drops a title wider than the plot area, which the y tick labels narrow (up to 8 columns)
GROUP_ORDER = ("image-vs-text", "image-vs-image", "text-vs-text")  # A vs B first, then the two controls


def _figure(width: int, height: int):
    from textual_plotext.plot import Plot

    plt = Plot()
    plt.theme("clear")
    # plotext caps a figure at the size of the terminal it detects (80x24 when there is none, e.g. in a
    # worker of a headless app): lift the cap, the widget knows its own size.
    plt._limit_size(False, False)
    plt.plotsize(max(10, int(width)), max(5, int(height)))
    return plt


def thin(n_total: int, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of a seeded uniform subset of at most ``limit`` rows, in order (stable pictures)."""
    if n_total <= limit:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=limit, replace=False))


@dataclass
class ScatterData:
    coords: np.ndarray  # float32 [N, 2]
    series: np.ndarray  # int [N]: index into labels
    labels: list[str]
    title: str = ""


def shown_caption(data: ScatterData, limit: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """The rows to draw and the "N of M shown" caption that goes with them."""
    idx = thin(len(data.coords), limit, seed)
    return idx, f"{len(idx):,} of {len(data.coords):,} shown"


def scatter(data: ScatterData, width: int, height: int, limit: int = 20000, seed: int = 0,
            highlight: int | None = None) -> str:
    """The points of each series; ``highlight`` (a point index) is drawn last as a large red cross."""
    plt = _figure(width, height)
    idx, caption = shown_caption(data, limit, seed)
    coords, series = data.coords[idx], data.series[idx]
    for i, label in enumerate(data.labels):
        pts = coords[series == i]
        if len(pts):
            plt.scatter(
                pts[:, 0].tolist(), pts[:, 1].tolist(), label=label,
                color=SERIES_COLORS[i % len(SERIES_COLORS)], marker=MARKERS[0],
            )
    if highlight is not None:
        x, y = data.coords[highlight]
        plt.scatter([float(x)], [float(y)], marker="X", color="red", label="cursor")
    plt.title(_fitted(data.title, f"  ({caption})", width - TITLE_MARGIN) if data.title else caption)
    return plt.build()


def control_boxes(values: dict[str, dict[int, dict[str, list[float]]]], labels: dict[str, str], width: int, height: int,
                  title: str = "") -> str:
    """Figure 2 live, per layer: one panel per metric; for each layer the A-vs-B box, then the two controls.

    ``values`` = {metric: {layer: {group: [value per replicate]}}}; ``labels`` name the groups after the
    actual sides. Whiskers go to min/max.
    """
    plt = _figure(width, height)
    metrics = list(values)
    if not metrics:
        plt.title("no control groups computed yet")
        return plt.build()
    plt.subplots(1, len(metrics))
    order = list(GROUP_ORDER)
    for col, metric in enumerate(metrics, start=1):
        sub = plt.subplot(1, col)
        layers = sorted(values[metric])
        xs, quints, ticks, names = [], [], [], []
        for i, layer in enumerate(layers):
            for j, group in enumerate(order):
                x = i * (len(order) + 1) + j + 1
                q = five_numbers(values[metric][layer].get(group, []))
                if q:
                    xs.append(x)
                    quints.append(q)
            ticks.append(i * (len(order) + 1) + 2)  # one label per layer, under its middle box: labels that
            names.append(f"L{layer}")  # overlap would be dropped by plotext in an order that varies by run
        if xs:
            sub.box(xs, quints, quintuples=True, width=0.6)
        fit = max(1, (width // len(metrics) - 10) // 6)  # labels that fit the panel without touching
        keep = sorted({round(k * (len(ticks) - 1) / max(1, fit - 1)) for k in range(min(fit, len(ticks)))})
        sub.xticks([ticks[k] for k in keep], [names[k] for k in keep])
        sub.xlim(0.5, len(layers) * (len(order) + 1) - 0.5)
        groups = " ".join(labels.get(g, g) for g in order)
        sub.title(_fitted(f"{metric.upper()}: {groups} per layer", f"  {title}" if title and col == 1 else "",
                          width // len(metrics) - TITLE_MARGIN - 1))
    return plt.build()


def _fitted(text: str, extra: str, room: int) -> str:
    """A title that fits its plot (plotext drops a wider one altogether): ``extra`` goes first, then the
    spaces of the slice ("PCA m/b/L2/post-RoPE image|text"), then the end of the line."""
    if len(text) + len(extra) <= room:
        return text + extra
    if len(text) > room:
        text = text.replace(" / ", "/").replace(": A ", " ").replace(" vs B ", "|").replace("PINNED ", "PIN ")
    return text if len(text) <= room else text[: max(1, room - 1)] + "…"


def depth_lines(series: dict[str, list[tuple[float, float]]], width: int, height: int, ylabel: str) -> str:
    """A measure against relative depth (layer / (L - 1)), one line per model, so depths line up."""
    plt = _figure(width, height)
    for i, (label, points) in enumerate(series.items()):
        pts = sorted((x, y) for x, y in points if x is not None and y is not None and np.isfinite(y))
        if pts:
            plt.plot(
                [p[0] for p in pts], [p[1] for p in pts], label=label,
                color=SERIES_COLORS[i % len(SERIES_COLORS)], marker=MARKERS[i % len(MARKERS)],
            )
    plt.xlim(0.0, 1.0)
    plt.xlabel("relative depth (layer / (L - 1))")
    plt.title(ylabel if series else f"{ylabel}: nothing computed yet")
    return plt.build()


def allocation_lines(layers: Sequence[int], series: Sequence[tuple[str, Sequence[float]]], width: int, height: int,
                     title: str) -> str:
    """FastV's figure live: attention share of image / text / sink keys (and the image tokens' share) per layer."""
    plt = _figure(width, height)
    for i, (label, values) in enumerate(series):
        plt.plot(list(layers), [float(v) for v in values], label=label, color=SERIES_COLORS[i % len(SERIES_COLORS)],
                 marker=MARKERS[i % len(MARKERS)])
    plt.ylim(0.0, 1.0)
    plt.xticks(list(layers)[:: max(1, len(layers) // 8)])
    plt.xlabel("layer")
    plt.title(title)
    return plt.build()
