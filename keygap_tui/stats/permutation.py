"""Which relabellings of the rows are equally likely under the null, read from the sample ids of the two sides.

Tokens of one benchmark item are strongly correlated, so the exchangeable unit is a block: the rows of one
side that share a sample id. Which blocks may trade places depends on the design (docs/STATISTICS.md,
"Which permutation test"):

- disjoint sides (no sample id on both, e.g. the control groups): whole blocks are permuted between the
  sides, the number of blocks per side fixed. Unit "sample".
- shared sides (every sample on both, e.g. image vs text of the same items): an item's two blocks share
  the item's effect, so moving whole items between sides would break that pairing and the null would
  be far too wide. A draw swaps an item's A block with its B block, independently per item with
  probability 1/2 (blocks of unequal size allowed; the side sizes then vary between draws and every
  statistic uses each draw's own counts). Unit "within-sample swap".
- partial overlap (some samples on both sides, e.g. after drawing n keys per side from many items):
  both at once, which keeps the pairing of shared items and the independence of the rest. Unit
  "within-sample swap + sample".
- no sample ids: every row is its own block (token-level; valid only for independent rows). Unit "row".

Every statistic is computed for all splits through one arithmetic path, and distinct_splits lets it
compute each distinct split once, so that a draw that reproduces the observed split, or swaps its two
sides, ties with the observed value exactly instead of differing by round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StatsInputError

ROW = "row"
SAMPLE = "sample"
SWAP = "within-sample swap"
MIXED = "within-sample swap + sample"


@dataclass(frozen=True)
class Design:
    """The exchangeable blocks of one comparison and how a draw may move them.

    block_of_row: int64 [n_a + n_b], the block of every pooled row (rows of x first).
    pair_a, pair_b: the a block and the b block of every sample present on both sides.
    free_groups: groups of unpaired blocks, each permuted within itself with `on_a` of them on side a
    (one group normally; the classifier test passes its folds as strata).
    observed_on_a: bool [n_blocks], where each block sits in the observed split."""

    unit: str
    block_of_row: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    free_groups: tuple[tuple[np.ndarray, int], ...]
    observed_on_a: np.ndarray
    samples_a: int
    samples_b: int

    @property
    def shared(self) -> int:
        return len(self.pair_a)

    def record(self) -> dict:
        """What the caller stores in extra: the unit and the sample counts it was read from."""
        return {"samples_shared": self.shared, "samples_only_a": self.samples_a - self.shared,
                "samples_only_b": self.samples_b - self.shared}

    def stratified(self, stratum_of_sample_block: np.ndarray) -> Design:
        """The same design with unpaired blocks permuted only within strata (pairs are strata already)."""
        groups = []
        for block_ids, _ in self.free_groups:
            strata = stratum_of_sample_block[block_ids]
            for s in np.unique(strata):
                members = block_ids[strata == s]
                groups.append((members, int(np.count_nonzero(self.observed_on_a[members]))))
        return Design(self.unit, self.block_of_row, self.pair_a, self.pair_b, tuple(groups), self.observed_on_a,
                      self.samples_a, self.samples_b)


def exchange_design(n_a: int, n_b: int, groups: tuple[np.ndarray, np.ndarray] | None) -> Design:
    """Read the design from per-row sample ids (None: rows are independent)."""
    if groups is None:
        on_a = np.r_[np.ones(n_a, bool), np.zeros(n_b, bool)]
        return Design(ROW, np.arange(n_a + n_b, dtype=np.int64), _EMPTY, _EMPTY,
                      ((np.arange(n_a + n_b, dtype=np.int64), n_a),), on_a, n_a, n_b)
    ids_a, inverse_a = _dense_ids(groups[0])
    ids_b, inverse_b = _dense_ids(groups[1])
    blocks_a, blocks_b = len(ids_a), len(ids_b)
    block_of_row = np.concatenate([inverse_a, inverse_b + blocks_a])
    position_b = {key: i for i, key in enumerate(ids_b)}
    pairs = [(i, blocks_a + position_b[key]) for i, key in enumerate(ids_a) if key in position_b]
    pair_a = np.array([p[0] for p in pairs], dtype=np.int64)
    pair_b = np.array([p[1] for p in pairs], dtype=np.int64)
    paired = np.zeros(blocks_a + blocks_b, bool)
    paired[pair_a] = True
    paired[pair_b] = True
    free = np.flatnonzero(~paired)
    observed_on_a = np.r_[np.ones(blocks_a, bool), np.zeros(blocks_b, bool)]
    if not pairs:
        unit = SAMPLE
    elif len(free) == 0:
        unit = SWAP
    else:
        unit = MIXED
    return Design(unit, block_of_row, pair_a, pair_b, ((free, int(np.count_nonzero(free < blocks_a))),),
                  observed_on_a, blocks_a, blocks_b)


_EMPTY = np.zeros(0, dtype=np.int64)


def _dense_ids(groups: np.ndarray) -> tuple[list, np.ndarray]:
    """Distinct ids (compared by their text) in order of first appearance, and every row's index into them.

    The draws therefore follow the order of the rows, which the store's reader fixes for a given seed."""
    keys = [str(g) for g in np.asarray(groups, dtype=object).tolist()]
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, len(keys))
    return list(index), inverse


def draw_splits(design: Design, permutations: int, seed: int) -> np.ndarray:
    """bool [n_rows, permutations + 1]: True where a pooled row sits on side a; column 0 is the observed
    split, columns 1.. are draws from np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)
    on_a = np.empty((permutations + 1, len(design.observed_on_a)), dtype=bool)
    on_a[0] = design.observed_on_a
    if permutations:
        flips = rng.integers(0, 2, size=(permutations, design.shared), dtype=np.int8).astype(bool)
        on_a[1:, design.pair_a] = ~flips
        on_a[1:, design.pair_b] = flips
        for block_ids, count in design.free_groups:
            on_a[1:, block_ids] = False
            for column in range(1, permutations + 1):
                on_a[column, block_ids[rng.permutation(len(block_ids))[:count]]] = True
    return np.ascontiguousarray(on_a[:, design.block_of_row].T)


def check_exchangeable(design: Design, what: str = "permutations=0") -> None:
    """One line when the design leaves too few units to permute."""
    if design.samples_a < 2 or design.samples_b < 2:
        raise StatsInputError(
            f"a permutation test needs at least 2 samples per side (got {design.samples_a} and "
            f"{design.samples_b}); load more samples or pass {what}"
        )


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

    Column 0 is the observed split (the first n_a rows); columns 1.. are design-aware draws (see the
    module docstring) from np.random.default_rng(seed). Every permutation test in this package uses
    exactly this draw, so a slow reference loop can reuse it and must reproduce the streamed p-value."""
    from .inputs import as_groups

    groups = as_groups(groups_x, groups_y, n_a, n_b)
    design = exchange_design(n_a, n_b, groups)
    if permutations > 0:
        check_exchangeable(design, "permutations=0")
    return draw_splits(design, permutations, seed)


def distinct_splits(membership: np.ndarray, *, symmetric: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns of `membership` (the observed split first) and every column's index into them.

    symmetric=True: the statistic does not change when the two sides trade places, so a split and its
    mirror count as one (each column is first oriented so that pooled row 0 sits on side a). A caller
    computes the statistic on the distinct columns only and expands it with `inverse`: identical splits
    then carry bit-identical values, and a draw equal to the observed split ties with it."""
    canonical = np.where(membership[0], membership, ~membership) if symmetric else membership
    packed = np.packbits(canonical, axis=0)
    index: dict[bytes, int] = {}
    first: list[int] = []
    inverse = np.empty(membership.shape[1], dtype=np.int64)
    for column in range(membership.shape[1]):
        slot = index.setdefault(packed[:, column].tobytes(), len(index))
        if slot == len(first):
            first.append(column)
        inverse[column] = slot
    return np.ascontiguousarray(canonical[:, first]), inverse


@dataclass(frozen=True)
class Splits:
    """The splits one permutation test evaluates: all draws, and the distinct ones its statistic runs on."""

    design: Design
    membership: np.ndarray
    distinct: np.ndarray
    inverse: np.ndarray

    def observed_and_null(self, per_distinct: np.ndarray) -> tuple[float, np.ndarray]:
        """The statistic of the observed split and of every draw, from its values on the distinct splits."""
        values = np.asarray(per_distinct, dtype=np.float64)[self.inverse]
        return float(values[0]), values[1:]


def plan_splits(n_a: int, n_b: int, groups, permutations: int, seed: int, *, symmetric: bool = True,
                design: Design | None = None, refusal: str = "permutations=0") -> Splits:
    """Design (read from groups unless given), draws and their distinct columns, checked for enough samples."""
    design = design if design is not None else exchange_design(n_a, n_b, groups)
    if permutations > 0:
        check_exchangeable(design, refusal)
    membership = draw_splits(design, permutations, seed)
    distinct, inverse = distinct_splits(membership, symmetric=symmetric)
    return Splits(design, membership, distinct, inverse)


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + B): never 0, valid at any B (Phipson & Smyth 2010)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= observed)) / (1 + null.size))
