"""Multi-label metrics, as the PTB-XL benchmark reports them (several classes per record).

- :func:`multilabel_metrics`: macro-AUROC (the headline, sklearn's ``roc_auc_score`` with
  ``average="macro"``; chance is 0.5), one AUROC per class (``auroc_<class>``), macro average
  precision (``macro_ap``), sample-F1 at one global ``threshold`` on the probabilities
  (``sample_f1``) and ``n_test``.
- :func:`choose_threshold`: the threshold of :data:`THRESHOLDS` with the best sample-F1, chosen
  on the validation split and applied to the test split.
- :func:`weighted_macro_auroc`, :func:`weighted_scores`: macro-AUROC (and macro AP, sample-F1)
  under many record weightings at once (the bootstrap's resample counts), exact with ties.
- :func:`multilabel_frame`: the predictions table, ``index, group, true_<class>...,
  prob_<class>...``, from which every metric recomputes (with the recorded threshold).

Layouts: ``y_true`` int ``[N, K]`` binary indicator; ``proba`` float ``[N, K]`` (per-class
sigmoid probabilities, rows need not sum to 1).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

PROB_PREFIX = "prob_"
TRUE_PREFIX = "true_"
MULTILABEL_CI_METRICS = ("macro_auroc", "macro_ap", "sample_f1")
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)  # the sample-F1 threshold's grid


def multilabel_metrics(y_true, proba, classes: Sequence[str], threshold: float) -> dict:
    """Every multi-label metric of one prediction set. A class without positives or without
    negatives in ``y_true`` has no AUROC (``None``, listed in ``classes_undefined``); the macro
    averages run over the classes that have one."""
    y_true, proba = _check(y_true, proba, classes)
    auroc = per_class_auroc(y_true, proba)
    defined = [a for a in auroc if a is not None]
    has_positive = y_true.any(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no positive: that class's AP is left out below
        ap = [skm.average_precision_score(y_true[:, k], proba[:, k])
              for k in np.flatnonzero(has_positive)]
    return {
        "macro_auroc": float(np.mean(defined)) if defined else None,
        **{f"auroc_{c}": a for c, a in zip(classes, auroc)},
        "macro_ap": float(np.mean(ap)) if ap else None,
        "sample_f1": sample_f1(y_true, proba, threshold),
        "threshold": float(threshold),
        "classes_undefined": [c for c, a in zip(classes, auroc) if a is None],
        "n_test": int(len(y_true)),
    }


def per_class_auroc(y_true: np.ndarray, proba: np.ndarray) -> list[float | None]:
    """One-vs-rest AUROC of each class column (``None`` where the column holds one value)."""
    return [float(skm.roc_auc_score(y_true[:, k], proba[:, k]))
            if 0 < y_true[:, k].sum() < len(y_true) else None for k in range(y_true.shape[1])]


def sample_f1(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> float:
    """F1 per record of the classes with ``proba >= threshold``, averaged over records."""
    return float(skm.f1_score(y_true, (proba >= threshold).astype(np.int8), average="samples",
                              zero_division=0))


def choose_threshold(y_true, proba, thresholds: Sequence[float] = THRESHOLDS) -> float:
    """The threshold with the highest sample-F1 (the lowest of ties)."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    scores = [sample_f1(y_true, proba, t) for t in thresholds]
    return float(thresholds[int(np.argmax(scores))])


def weighted_macro_auroc(y_true, proba, weights) -> np.ndarray:
    """Macro-AUROC of ``y_true, proba [N, K]`` under each row of ``weights [B, N]`` (a record
    drawn w times counts w times): ``[B]``. Per class, P(score of a positive > score of a
    negative) + half the ties, over the weighted pairs; classes without a weighted positive or
    negative are left out of the mean (NaN when none is left), as :func:`multilabel_metrics`."""
    y_true, proba = np.asarray(y_true, dtype=bool), np.asarray(proba, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    per_class = np.stack([_weighted_auroc(y_true[:, k], proba[:, k], weights)
                          for k in range(y_true.shape[1])], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no defined class
        return np.nanmean(per_class, axis=1)


def weighted_scores(y_true, proba, threshold: float, weights) -> dict[str, np.ndarray]:
    """:data:`MULTILABEL_CI_METRICS` of ``y_true, proba [N, K]`` under each row of
    ``weights [B, N]`` at once (``[B]`` each; the bootstrap's fast path), as
    :func:`multilabel_metrics` defines them: AP of the classes with a weighted positive,
    sample-F1 the weighted mean of the records' F1 at ``threshold``."""
    y_true, proba = np.asarray(y_true, dtype=bool), np.asarray(proba, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    predicted = proba >= threshold
    denominator = y_true.sum(1) + predicted.sum(1)
    record_f1 = np.divide(2 * (y_true & predicted).sum(1), denominator,
                          out=np.zeros(len(y_true)), where=denominator > 0)
    ap = np.stack([_weighted_ap(y_true[:, k], proba[:, k], weights)
                   for k in range(y_true.shape[1])], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without positives
        return {"macro_auroc": weighted_macro_auroc(y_true, proba, weights),
                "macro_ap": np.nanmean(ap, axis=1),
                "sample_f1": weights @ record_f1 / weights.sum(1)}


def _class_weights(positive, score, weights):
    """Positive and negative weight per distinct score (ascending) ``[B, levels]``."""
    levels, level_of = np.unique(score, return_inverse=True)
    pos = np.zeros((len(weights), len(levels)))
    neg = np.zeros_like(pos)
    np.add.at(pos.T, level_of[positive], weights[:, positive].T)
    np.add.at(neg.T, level_of[~positive], weights[:, ~positive].T)
    return pos, neg


def _weighted_ap(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    pos, neg = _class_weights(positive, score, weights)
    tp, fp = np.cumsum(pos[:, ::-1], axis=1), np.cumsum(neg[:, ::-1], axis=1)  # descending
    n_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = tp / n_pos
        step = np.diff(recall, axis=1, prepend=0.0)
        return np.where(n_pos[:, 0] > 0, (step * precision).sum(1), np.nan)


def _weighted_auroc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    pos, neg = _class_weights(positive, score, weights)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each level
    pairs = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan)


def multilabel_frame(indices, groups, y_true, proba, classes: Sequence[str]) -> pd.DataFrame:
    """The predictions table ``index, group, true_<class>..., prob_<class>...``."""
    y_true, proba = _check(y_true, proba, classes)
    frame = pd.DataFrame({"index": np.asarray(indices, dtype=np.int64),
                          "group": np.asarray(groups).astype(str)})
    for k, name in enumerate(classes):
        frame[TRUE_PREFIX + name] = y_true[:, k]
    for k, name in enumerate(classes):
        frame[PROB_PREFIX + name] = proba[:, k]
    return frame


def is_multilabel_frame(frame: pd.DataFrame) -> bool:
    return any(c.startswith(TRUE_PREFIX) for c in frame.columns)


def frame_classes(frame: pd.DataFrame) -> list[str]:
    return [c[len(TRUE_PREFIX):] for c in frame.columns if c.startswith(TRUE_PREFIX)]


def frame_metrics(frame: pd.DataFrame, threshold: float) -> dict:
    """:func:`multilabel_metrics` of a predictions table (:func:`multilabel_frame`)."""
    classes = frame_classes(frame)
    return multilabel_metrics(frame[[TRUE_PREFIX + c for c in classes]].to_numpy(),
                              frame[[PROB_PREFIX + c for c in classes]].to_numpy(), classes,
                              threshold)


def _check(y_true, proba, classes):
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    shape = (len(y_true), len(classes))
    if y_true.shape != shape or proba.shape != shape:
        raise ValueError(f"expected y_true and proba [N, {len(classes)}]; got {y_true.shape}, "
                         f"{proba.shape}")
    if np.any((y_true != 0) & (y_true != 1)):
        raise ValueError("y_true must be a 0/1 indicator matrix")
    return y_true, proba
