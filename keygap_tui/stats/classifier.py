"""Classifier two-sample test: can a linear model tell the two key sets apart on held-out samples?

Standardised logistic regression (class_weight='balanced'), cross-validated with folds that split by
sample id (GroupKFold), so tokens of one benchmark item - which are strongly correlated, and may sit on
both sides - never straddle train and test. value = held-out balanced accuracy (the mean of the two
per-class accuracies: chance is 0.5 whatever n_a / n_b; equals plain accuracy when n_a == n_b).

p-value, documented choice:
- refit_permutations = 0 (default): one-sided Mann-Whitney U test of the held-out decision scores (side a
  scored higher than side b), i.e. a test of AUC > 0.5. It treats held-out rows as independent, so it
  is optimistic when tokens of one sample are correlated.
- refit_permutations = B > 0: labels are re-drawn B times by moving whole samples
  (permutation_membership), the model is refit on the same folds, p = (1 + #{null balanced accuracy >=
  observed}) / (1 + B). Valid under within-sample correlation; costs B x folds fits, which is why the
  parameter is not called `permutations`: a caller handing every metric `permutations=200` (cheap for
  the kernel measures) would otherwise start 1,000 logistic-regression fits.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import StatsInputError
from .inputs import as_groups, as_pair, check_count
from .permutation import permutation_membership, permutation_p_value
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
    refit_permutations: int = 0,
    keep_null: bool = False,
) -> MeasureResult:
    """groups_x / groups_y: per-row sample ids; None means every row is its own sample (optimistic)."""
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    folds = check_count("folds", folds, 2)
    permutations = check_count("refit_permutations", refit_permutations, 0)
    x, y = as_pair(x, y, min_rows=2)
    groups = as_groups(groups_x, groups_y, len(x), len(y))
    features = np.concatenate([x, y])
    labels = np.concatenate([np.ones(len(x), dtype=np.int8), np.zeros(len(y), dtype=np.int8)])
    splits = _fold_splits(labels, groups, folds, seed)

    scores = _held_out_scores(features, labels, splits, C, max_iter, seed)
    observed = _balanced_accuracy(labels, scores)
    extra = {
        "auc": float(roc_auc_score(labels, scores)),
        "accuracy": float(np.mean((scores > 0) == (labels == 1))),
    }
    if permutations:
        membership = permutation_membership(
            len(x), len(y), permutations,
            groups_x=None if groups is None else groups[0],
            groups_y=None if groups is None else groups[1],
            seed=seed,
        )[:, 1:]
        null = np.array([
            _balanced_accuracy(perm, _held_out_scores(features, perm, splits, C, max_iter, seed))
            for perm in membership.T.astype(np.int8)
        ])
        p_value, p_method = permutation_p_value(observed, null), "sample permutation (refit)"
        extra.update(null_mean=float(null.mean()), null_std=float(null.std()))
        if keep_null:
            extra["null"] = null.tolist()
    else:
        p_value = float(mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater").pvalue)
        p_method = "mann-whitney U on held-out scores (rows independent)"
    params = {
        "model": "standardize + logistic regression (lbfgs, class_weight=balanced)",
        "C": float(C),
        "max_iter": max_iter,
        "folds": folds,
        "fold_unit": "row" if groups is None else "sample",
        "value_is": "held-out balanced accuracy",
        "p_method": p_method,
        "refit_permutations": permutations,
    }
    return MeasureResult("c2st", observed, p_value, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra)


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
