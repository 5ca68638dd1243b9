"""Simulated key sets with the structure that matters for the tests: items, an item effect shared by an
item's two blocks, unequal token counts, a key-like spectrum. Used by the statistics tests and by
benchmarks/bench_calibration.py (which imports it from here)."""

from __future__ import annotations

import numpy as np


def keylike_scales(d: int, decay: float = 0.8, massive: int = 2, massive_factor: float = 8.0) -> np.ndarray:
    """Per-dimension standard deviations: a power-law spectrum plus a few massive channels, as keys have."""
    scales = np.arange(1, d + 1, dtype=np.float64) ** (-decay / 2.0)
    scales[: min(massive, d)] *= massive_factor
    return scales / np.sqrt(np.mean(scales**2))


def paired_items(
    rng: np.random.Generator,
    items: int,
    d: int,
    *,
    tokens: tuple[int, int] = (8, 8),
    unequal: bool = False,
    item_effect: float = 1.0,
    shift: float = 0.0,
    design: str = "shared",
    scales: np.ndarray | None = None,
    offset: float = 0.0,
):
    """x (side a), y (side b) and their per-row sample ids.

    design='shared': every item gives an a block and a b block that share the item's effect (image vs
    text of one prompt). design='disjoint': side a and side b hold different items (`items` per side).
    design='mixed': shared, then a third of the items lose their b block and another third their a block
    (what drawing n keys per side from many items produces). tokens: rows per block; unequal=True draws
    each block's size from 1..2*tokens-1 (independently per side, so sizes differ within an item).
    item_effect: sd of the shared item effect in units of the token noise; shift: mean shift of side b
    along the first axis (the alternative), in the same units; offset: a common mean added to every row
    (keys sit far from the origin)."""
    scales = np.ones(d) if scales is None else scales

    def sizes(count, mean):
        if not unequal:
            return np.full(count, mean)
        return rng.integers(1, 2 * mean, size=count)

    paired = design in ("shared", "mixed")
    effects_a = rng.standard_normal((items, d)) * item_effect
    effects_b = effects_a if paired else rng.standard_normal((items, d)) * item_effect
    size_a, size_b = sizes(items, tokens[0]), sizes(items, tokens[1])
    ids_a = np.repeat(np.arange(items), size_a)
    ids_b = np.repeat(np.arange(items) + (0 if paired else items), size_b)
    x = (effects_a[ids_a] + rng.standard_normal((len(ids_a), d))) * scales + offset
    y = (effects_b[ids_b - (0 if paired else items)] + rng.standard_normal((len(ids_b), d))) * scales
    y = y + offset
    y[:, 0] += shift * scales[0]
    if design == "mixed":
        keep_a, keep_b = ids_a % 3 != 1, ids_b % 3 != 2
        x, ids_a, y, ids_b = x[keep_a], ids_a[keep_a], y[keep_b], ids_b[keep_b]
    return x.astype(np.float32), y.astype(np.float32), ids_a.astype(str), ids_b.astype(str)
