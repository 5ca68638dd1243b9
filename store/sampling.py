"""Which rows of a partition a sample takes, found by reading little more than those rows.

Every key file is sorted by ``rand``, a uniform hash of (sample id, position) that is the same in every
layer (store.writer.row_rand). A sample of n rows is the n rows whose ``rand`` comes first at or after a
start point u, wrapping past 1: u = 0 without a seed (the store's own random order), else a uniform
number drawn from the seed (:func:`window_start`). That gives the guarantees the analysis needs:

- uniform: the ``rand`` values are independent uniforms, so the n rows after any fixed u are a uniform
  random sample of the partition (a shift modulo 1 keeps them independent uniforms);
- paired: ``rand`` depends only on (sample id, position), so one seed takes the same tokens in every layer;
- cheap: each file is sorted by ``rand``, so the window [u, u + w) is one contiguous row range per file
  (two where it wraps). The min/max of ``rand`` that each row group's footer records say which row groups
  hold it; only their ``rand`` column is read to place the window exactly, then only the row groups that
  hold chosen rows are read in full. Bytes read are O(n + files x row group), not O(partition).

The sample does not depend on how the rows are split into files (a compaction keeps every sample), and
its rows come in window order, so the first k rows of an n-row sample are the k-row sample.

pyarrow and numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

RAND = "rand"
_BELOW_ONE = np.nextafter(1.0, 0.0)


def window_start(seed: int | None) -> float:
    """Where in the stored random order a sample starts: 0 without a seed, else a uniform draw in [0, 1)."""
    if seed is None:
        return 0.0
    return float(np.random.default_rng(int(seed)).random())


@dataclass(frozen=True)
class FileIndex:
    """Row-group layout of one key file: first row of each group (plus the end), and each group's rand range."""

    starts: np.ndarray  # int64 [groups + 1]
    lo: np.ndarray  # float64 [groups]: min rand of each group
    hi: np.ndarray  # float64 [groups]: max rand of each group

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    @classmethod
    def of(cls, pf: pq.ParquetFile) -> FileIndex:
        """From the footer's statistics; a file written without them has its ``rand`` column read instead."""
        md = pf.metadata
        groups = md.num_row_groups
        starts = np.zeros(groups + 1, np.int64)
        lo = np.empty(groups)
        hi = np.empty(groups)
        col = md.schema.to_arrow_schema().get_field_index(RAND)
        complete = col >= 0
        for g in range(groups):
            rg = md.row_group(g)
            starts[g + 1] = starts[g] + rg.num_rows
            st = rg.column(col).statistics if complete else None
            if st is None or not st.has_min_max:
                complete = False
                continue
            lo[g], hi[g] = st.min, st.max
        if not complete and groups:
            rand = pf.read(columns=[RAND])[RAND].to_numpy()
            for g in range(groups):
                part = rand[starts[g] : starts[g + 1]]
                lo[g], hi[g] = (part.min(), part.max()) if len(part) else (np.inf, -np.inf)
        return cls(starts, lo, hi)

    def groups_meeting(self, intervals: Sequence[tuple[float, float]]) -> np.ndarray:
        """Row groups whose rand range meets any of the half-open intervals [a, b)."""
        hit = np.zeros(len(self.lo), bool)
        for a, b in intervals:
            hit |= (self.hi >= a) & (self.lo < b)
        return np.flatnonzero(hit)


def window_intervals(u: float, width: float) -> list[tuple[float, float]]:
    """[u, u + width) on the circle [0, 1) as one or two intervals of rand."""
    if width >= 1.0:
        return [(0.0, 1.0)]
    end = u + width
    return [(u, end)] if end <= 1.0 else [(u, 1.0), (0.0, end - 1.0)]


@dataclass
class Choice:
    """The rows a sample takes: per file, sorted row indices; ``order`` puts the concatenation of those
    files' rows (file by file, rows ascending) into window order."""

    rows: list[np.ndarray]
    order: np.ndarray
    total: int  # rows eligible before sampling


ReadRand = Callable[[int, np.ndarray], np.ndarray]  # (file, row groups) -> rand of those groups' rows


def choose(
    indexes: Sequence[FileIndex],
    read_rand: ReadRand,
    n: int | None,
    seed: int | None,
    masks: Sequence[np.ndarray] | None = None,
) -> Choice:
    """The n eligible rows (``masks``: per file, a bool per row; None = every row) with the smallest
    shifted rand ``(rand - u) mod 1``, or every eligible row in that order when ``n`` is None or too big.

    ``read_rand(file, groups)`` returns the rand values of those row groups' rows (group order); it is
    called only for groups that may hold the window, widening the window until it holds n eligible rows.
    """
    u = window_start(seed)
    total = sum(ix.rows for ix in indexes) if masks is None else int(sum(int(m.sum()) for m in masks))
    want = total if n is None else min(int(n), total)
    if want <= 0:
        return Choice([np.zeros(0, np.int64) for _ in indexes], np.zeros(0, np.int64), total)
    width = 1.0 if want == total else min(1.0, (want + 4.0 * math.sqrt(want) + 16.0) / total)
    cache: list[dict[int, np.ndarray]] = [{} for _ in indexes]
    while True:
        rows, shifted = _in_window(indexes, read_rand, cache, masks, u, width)
        found = sum(len(r) for r in rows)
        if found >= want or width >= 1.0:
            break
        width = min(1.0, width * (max(1.1, 1.25 * want / found) if found else 4.0))
    all_shifted = np.concatenate(shifted)
    keep = np.argpartition(all_shifted, want - 1)[:want] if want < found else np.arange(found)
    owner = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    keep = keep[np.lexsort((np.concatenate(rows)[keep], owner[keep]))]  # file by file, rows ascending
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    chosen = [rows[i][keep[owner[keep] == i] - offsets[i]] for i in range(len(rows))]
    order = np.argsort(all_shifted[keep], kind="stable")
    return Choice(chosen, order, total)


def _in_window(
    indexes: Sequence[FileIndex],
    read_rand: ReadRand,
    cache: list[dict[int, np.ndarray]],
    masks: Sequence[np.ndarray] | None,
    u: float,
    width: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per file: eligible rows whose shifted rand is below ``width`` (sorted), and those shifted values."""
    rows_out, shifted_out = [], []
    for i, ix in enumerate(indexes):
        groups = ix.groups_meeting(window_intervals(u, width))
        new = [int(g) for g in groups if int(g) not in cache[i]]
        if new:
            values = read_rand(i, np.array(new))
            at = 0
            for g in new:
                size = int(ix.starts[g + 1] - ix.starts[g])
                cache[i][g] = values[at : at + size]
                at += size
        if len(groups) == 0:
            rows_out.append(np.zeros(0, np.int64))
            shifted_out.append(np.zeros(0))
            continue
        rows = np.concatenate([np.arange(ix.starts[g], ix.starts[g + 1]) for g in groups])
        rand = np.concatenate([cache[i][int(g)] for g in groups])
        shifted = np.minimum(np.mod(rand - u, 1.0), _BELOW_ONE)  # rounding may give exactly 1.0
        ok = shifted < width
        if masks is not None:
            ok &= masks[i][rows]
        rows_out.append(rows[ok])
        shifted_out.append(shifted[ok])
    return rows_out, shifted_out
