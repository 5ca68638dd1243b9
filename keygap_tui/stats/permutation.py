"""Sample-level permutation draws, shared by every measure that has a permutation test.

Tokens of one benchmark sample (the 576 keys of one image, the words of one question) are strongly
correlated, so permuting single tokens between the two sides gives p-values that are far too small.
The exchangeable unit is therefore a block: all rows of one side that share a sample id. A draw
reassigns whole blocks to the two sides, keeping the number of blocks per side fixed (the row counts
may then vary between draws; the statistics use each draw's own counts).

A sample id present on both sides gives two blocks, one per side: the test then assumes that the
image block and the text block of one sample are exchangeable under the null, which is what "same
distribution" means. The control-group design (disjoint sample halves) never has shared ids.

Without groups, every row is its own block (token-level permutation; only valid for independent rows).
"""

from __future__ import annotations

import numpy as np

from .errors import StatsInputError


def block_ids(n_a: int, n_b: int, groups: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, int, int]:
    """Per-row block index over the pooled rows [x; y], and the number of blocks of each side."""
    if groups is None:
        return np.arange(n_a + n_b, dtype=np.int64), n_a, n_b
    parts, counts = [], []
    offset = 0
    for g in groups:
        inverse = _dense_ids(g)
        parts.append(inverse + offset)
        count = int(inverse.max()) + 1 if inverse.size else 0
        counts.append(count)
        offset += count
    return np.concatenate(parts), counts[0], counts[1]


def _dense_ids(groups: np.ndarray) -> np.ndarray:
    try:
        return np.unique(groups, return_inverse=True)[1].reshape(-1).astype(np.int64)
    except TypeError:  # mixed, unorderable ids: fall back to order of first appearance
        index: dict = {}
        return np.fromiter((index.setdefault(g, len(index)) for g in groups.tolist()), np.int64, len(groups))


def permutation_membership(
    n_a: int,
    n_b: int,
    permutations: int,
    *,
    groups_x=None,
    groups_y=None,
    seed: int = 0,
) -> np.ndarray:
    """bool [n_a + n_b, permutations + 1]: True where a pooled row sits on side a.

    Column 0 is the observed split (the first n_a rows); columns 1.. are the permuted splits drawn from
    np.random.default_rng(seed). Every permutation test in this package uses exactly this draw, so a
    slow reference loop can reuse it and must reproduce the streamed p-value."""
    groups = None
    if groups_x is not None or groups_y is not None:
        from .inputs import as_groups

        groups = as_groups(groups_x, groups_y, n_a, n_b)
    blocks, blocks_a, blocks_b = block_ids(n_a, n_b, groups)
    if permutations > 0 and (blocks_a < 2 or blocks_b < 2):
        raise StatsInputError(
            f"a permutation test needs at least 2 samples per side (got {blocks_a} and {blocks_b}); "
            "load more samples or pass permutations=0 (shuffles=0 for js)"
        )
    total_blocks = blocks_a + blocks_b
    membership = np.empty((n_a + n_b, permutations + 1), dtype=bool)
    membership[:n_a, 0] = True
    membership[n_a:, 0] = False
    rng = np.random.default_rng(seed)
    on_a = np.zeros(total_blocks, dtype=bool)
    for column in range(1, permutations + 1):
        on_a[:] = False
        on_a[rng.permutation(total_blocks)[:blocks_a]] = True
        membership[:, column] = on_a[blocks]
    return membership


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + B): never 0, valid at any B (Phipson & Smyth 2010)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= observed)) / (1 + null.size))
