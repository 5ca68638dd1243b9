"""Headless figures: terminal plots as text (plotext) and, when matplotlib is installed, PNG.

plotext keeps global figure state, so every function starts with ``clf()`` and renders to a string; colours
are stripped so the text files read anywhere. Scatter panels keep at most ``MAX_POINTS_PER_PANEL`` points
per slice and say how many they show (plotext took 3.7 s for 100,000 points: docs/TUI.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_POINTS_PER_PANEL = 2000
MARKERS = ("dot", "x", "+", "*")


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _thin(coords: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    if len(coords) <= limit:
        return coords
    idx = np.sort(np.random.default_rng(seed).choice(len(coords), size=limit, replace=False))
    return coords[idx]


def scatter_text(
    title: str, groups: Sequence[tuple[str, np.ndarray]], width: int = 70, height: int = 20
) -> str:
    """One scatter panel (one colour/marker per group of 2-D points) as plain text."""
    import plotext as plt

    plt.clf()
    plt.theme("clear")
    plt.plotsize(width, height)
    shown = []
    for i, (label, pts) in enumerate(groups):
        thin = _thin(np.asarray(pts), MAX_POINTS_PER_PANEL)
        shown.append(f"{label}: {len(thin):,} of {len(pts):,} shown")
        if len(thin):
            plt.scatter(thin[:, 0].tolist(), thin[:, 1].tolist(), label=label, marker=MARKERS[i % len(MARKERS)])
    plt.title(title)
    text = plt.uncolorize(plt.build())
    plt.clf()
    return f"{text}\n  ({'; '.join(shown)})\n"


def five_numbers(values: Sequence[float]) -> list[float]:
    """[max, q3, median, q1, min] of the finite values ([] when there are none): the box plotext draws from
    precomputed numbers, 10x faster than from the raw values (docs/TUI.md)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return []
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return [float(v.max()), float(q3), float(med), float(q1), float(v.min())]


def box_text(title: str, boxes: Sequence[tuple[str, Sequence[float]]], width: int = 70, height: int = 18) -> str:
    """Box plot (whiskers to min/max) of several value groups as plain text."""
    import plotext as plt

    drawn = [(label, five_numbers(vals)) for label, vals in boxes]
    labels = [label for label, quint in drawn if quint]
    quints = [quint for _, quint in drawn if quint]
    plt.clf()
    plt.theme("clear")
    plt.plotsize(width, height)
    if labels:
        plt.box(labels, quints, quintuples=True)
        plt.xlim(0.5, len(labels) + 0.5)
    plt.title(title)
    text = plt.uncolorize(plt.build())
    plt.clf()
    counts = ", ".join(f"{label}: {len(vals)} values" for label, vals in boxes)
    return f"{text}\n  ({counts}; whiskers at min/max)\n"


def scatter_grid_png(path: Path, panels: list[dict], rows: int, cols: int, legend: Sequence[str]) -> Path:
    """Figure 1 as PNG: ``panels`` = [{"row", "col", "title", "groups": [(label, pts)]}]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as mpl

    fig, axes = mpl.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    colours = {label: f"C{i}" for i, label in enumerate(legend)}
    for ax in axes.flat:
        ax.set_axis_off()
    for panel in panels:
        ax = axes[panel["row"]][panel["col"]]
        ax.set_axis_on()
        for label, pts in panel["groups"]:
            pts = np.asarray(pts)
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, color=colours.get(label), label=label, linewidths=0)
        ax.set_title(panel["title"], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [mpl.Line2D([], [], marker="o", ls="", color=c, label=name) for name, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    mpl.close(fig)
    return path


def box_grid_png(path: Path, panels: list[dict]) -> Path:
    """Figure 2 as PNG: one axis per panel {"title", "boxes": [(label, values)]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as mpl

    fig, axes = mpl.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        boxes = [(label, [v for v in vals if v is not None and np.isfinite(v)]) for label, vals in panel["boxes"]]
        boxes = [(label, vals) for label, vals in boxes if vals]
        if boxes:
            ax.boxplot([v for _, v in boxes], whis=(0, 100))
            ax.set_xticks(range(1, len(boxes) + 1), [label for label, _ in boxes], fontsize=7)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_title(panel["title"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    mpl.close(fig)
    return path


def lines_text(title: str, x: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], width: int = 70,
               height: int = 18, ylabel: str = "") -> str:
    """Several lines over one x axis (e.g. attention share per layer) as plain text."""
    import plotext as plt

    plt.clf()
    plt.theme("clear")
    plt.plotsize(width, height)
    for i, (label, values) in enumerate(series):
        plt.plot(list(x), [float(v) for v in values], label=label, marker=MARKERS[i % len(MARKERS)])
    plt.title(title)
    if ylabel:
        plt.ylabel(ylabel)
    text = plt.uncolorize(plt.build())
    plt.clf()
    return text + "\n"
