"""Classifier two-sample test: can a linear model tell the two key sets apart on held-out samples?

Standardised logistic regression (class_weight='balanced'), cross-validated with folds that split by
sample id (GroupKFold), so tokens of one benchmark item - which are strongly correlated, and may sit on
both sides - never straddle train and test. value = held-out balanced accuracy (the mean of the two
per-class accuracies: chance is 0.5 whatever n_a / n_b; equals plain accuracy when n_a == n_b).

p-value (docs/STATISTICS.md, "Classifier test"): the statistic is the held-out AUC (side a scored above
side b). By default (`permutations` = B > 0, no refit) the held-out labels are redrawn B times within
each test fold by the design-aware draw (permutation.py: a swap within each sample for shared sides,
whole samples for disjoint ones) and the AUC of the fixed held-out scores is recomputed. Given the model
fitted on the other folds, a fold's held-out samples are exchangeable under the null, so this is valid
under within-sample correlation and costs no extra fit. (The earlier default, a Mann-Whitney test of the
held-out scores, treats rows as independent and rejected a third of true nulls with correlated tokens.)
refit_permutations = B > 0 instead refits the model on the same folds for each of B global redraws:
the unconditional test, at B x folds fits.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import StatsInputError
from .inputs import as_groups, as_pair, check_count
from .permutation import exchange_design, permutation_p_value, plan_splits
from .result import MeasureResult


def classifier_test(
    x,
    y,
    *,
    groups_x=None,
    groups_y=None,
    seed: int = 0,
    folds: int = 5,
    C: float = 1.0,
    max_iter: int = 1000,
    permutations: int = 200,
    refit_permutations: int = 0,
    keep_null: bool = False,
) -> MeasureResult:
    """groups_x / groups_y: per-row sample ids; None means every row is its own sample (optimistic).
    permutations: within-fold redraws of the held-out labels (no refit); refit_permutations: redraws with
    a refit each (overrides permutations when > 0); both 0: no p-value."""
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    folds = check_count("folds", folds, 2)
    permutations = check_count("permutations", permutations, 0)
    refits = check_count("refit_permutations", refit_permutations, 0)
    x, y = as_pair(x, y, min_rows=2)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    features = np.concatenate([x, y])
    labels = np.concatenate([np.ones(len(x), dtype=np.int8), np.zeros(len(y), dtype=np.int8)])
    splits = _fold_splits(labels, groups, folds, seed)

    scores = _held_out_scores(features, labels, splits, C, max_iter, seed)
    observed = _balanced_accuracy(labels, scores)
    extra: dict = {
        "auc": float(roc_auc_score(labels, scores)),
        "accuracy": float(np.mean((scores > 0) == (labels == 1))),
    }
    design = exchange_design(len(x), len(y), groups)
    extra.update(design.record())
    p_value, p_method, draws = None, "none (permutations=0)", 0
    if refits:
        plan = plan_splits(len(x), len(y), groups, refits, seed, symmetric=False, design=design,
                           refusal="refit_permutations=0")
        per_split = np.array([_auc(labels, scores)] + [
            _auc(column, _held_out_scores(features, column, splits, C, max_iter, seed))
            for column in plan.distinct[:, 1:].T.astype(np.int8)
        ])
        p_method, draws = "held-out AUC, labels redrawn by the design, model refit per draw", refits
    elif permutations:
        fold_of_row = np.empty(len(labels), dtype=np.int64)
        for index, (_, test) in enumerate(splits):
            fold_of_row[test] = index
        stratum_of_block = np.empty(len(design.observed_on_a), dtype=np.int64)
        stratum_of_block[design.block_of_row] = fold_of_row
        plan = plan_splits(len(x), len(y), groups, permutations, seed, symmetric=False,
                           design=design.stratified(stratum_of_block))
        per_split = _auc_of_splits(plan.distinct, scores)
        p_method, draws = "held-out AUC, held-out labels redrawn within folds by the design (no refit)", permutations
    if draws:
        auc_observed, null = plan.observed_and_null(per_split)
        p_value = permutation_p_value(auc_observed, null)
        extra.update(null_mean=float(null.mean()), null_std=float(null.std()))
        if keep_null:
            extra["null"] = null.tolist()
    params = {
        "model": "standardize + logistic regression (lbfgs, class_weight=balanced)",
        "C": float(C),
        "max_iter": max_iter,
        "folds": folds,
        "fold_unit": "row" if groups is None else "sample",
        "value_is": "held-out balanced accuracy",
        "test_statistic": "held-out AUC",
        "p_method": p_method,
        "permutations": permutations,
        "refit_permutations": refits,
        "permutation_unit": design.unit,
    }
    return MeasureResult("c2st", observed, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra)


def _auc_of_splits(membership: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of side a over side b for every column, from the average ranks of the fixed scores (ties count 1/2)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_a = membership.sum(axis=0).astype(np.float64)
    n_b = membership.shape[0] - n_a
    rank_sums = membership.T.astype(np.float64) @ ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sums - n_a * (n_a + 1) / 2.0) / (n_a * n_b)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(_auc_of_splits(labels[:, None].astype(bool), scores)[0])


def _fold_splits(labels, groups, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if groups is None:
        if min(np.count_nonzero(labels), np.count_nonzero(labels == 0)) < folds:
            raise StatsInputError(f"folds={folds} but a side has fewer rows; pass fewer folds or more keys")
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))
    # the raw ids: a sample present on both sides keeps all its tokens in one fold
    sample_ids = np.concatenate([np.asarray(groups[0], dtype=object), np.asarray(groups[1], dtype=object)])
    codes = np.unique(sample_ids.astype(str), return_inverse=True)[1]
    if codes.max() + 1 < folds:
        raise StatsInputError(f"folds={folds} but only {codes.max() + 1} samples; pass fewer folds or more samples")
    splits = list(GroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, codes))
    for train, _ in splits:
        if len(np.unique(labels[train])) < 2:
            raise StatsInputError("a training fold holds keys of one side only; pass fewer folds or more samples")
    return splits


def _held_out_scores(features, labels, splits, C: float, max_iter: int, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.empty(len(labels), dtype=np.float64)
    for train, test in splits:
        if len(np.unique(labels[train])) < 2:  # a permuted split can leave one side out of a fold
            scores[test] = 0.0
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced",
                                                                   random_state=seed))
        model.fit(features[train], labels[train])
        scores[test] = model.decision_function(features[test])
    return scores


def _balanced_accuracy(labels, scores) -> float:
    predicted = scores > 0
    positive = labels == 1
    return float(0.5 * (np.mean(predicted[positive]) + np.mean(~predicted[~positive])))
