"""Classification metrics, grouped bootstrap confidence intervals and the run files.

One definition of every metric, used by SSL and supervised runs alike (the original reported
different F1 definitions per row and shifted its CSV columns by one):

- :func:`compute_metrics`: accuracy, balanced accuracy, macro / weighted F1 (sklearn, over the
  task's fixed class list ``0..K-1``, so cells stay comparable), macro one-vs-rest AUROC over the classes present in
  ``y_true``, per-class recall and F1, the confusion matrix (labels fixed ``0..K-1``), ``n_test``.
- :func:`bootstrap_ci`: percentile interval from resampling *source records* (groups), not
  fragments, since fragments of one record are correlated.
- :func:`bootstrap_seed_mean_ci`: the interval of a cell's mean over seeds, records and seeds
  resampled together.
- :func:`write_run` / :func:`metrics_from_predictions`: ``predictions.csv`` (columns ``index,
  group, y_true, y_pred, prob_<class>``; multi-label: ``index, group, true_<class>,
  prob_<class>``, :mod:`ecgnb.evaluation.multilabel`) then ``metrics.json``, each written
  atomically; ``metrics.json`` is written last, so its presence marks a complete run.

Layouts: ``y_true``, ``y_pred`` int ``[N]`` in ``0..K-1``; ``proba`` float ``[N, K]`` (rows sum
to 1).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ecgnb.evaluation.multilabel import (MULTILABEL_CI_METRICS, PROB_PREFIX, TRUE_PREFIX,
                                         frame_classes, frame_metrics, is_multilabel_frame,
                                         weighted_macro_auroc, weighted_scores)
from ecgnb.files import atomic_write
from ecgnb.runs import write_cell_metrics

CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")
Score = Callable[[pd.DataFrame], dict]  # a predictions table's rows -> their metrics


# --------------------------------------------------------------------------- point estimates
def compute_metrics(y_true, y_pred, proba, classes: Sequence[str]) -> dict:
    """All metrics of one prediction set; per-class entries are keyed by class name.

    A per-class recall is ``None`` when the class is absent from ``y_true``; AUROC is the mean of
    the one-vs-rest AUROCs of the classes present in ``y_true`` (listed in ``auroc_classes``).
    """
    y_true, y_pred, proba = _check(y_true, y_pred, proba, classes)
    labels = np.arange(len(classes))
    recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    f1 = skm.f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = np.isin(labels, y_true)
    auroc, auroc_classes = macro_auroc(y_true, proba)
    with warnings.catch_warnings():  # absent classes are reported in "classes_absent"
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found")
        balanced = float(skm.balanced_accuracy_score(y_true, y_pred))
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": balanced,
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro",
                                       zero_division=0)),
        "weighted_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="weighted",
                                          zero_division=0)),
        "macro_auroc": auroc,
        "auroc_classes": [classes[k] for k in auroc_classes],
        "classes_absent": [classes[k] for k in labels[~present]],
        "per_class_recall": {c: (float(r) if p else None)
                             for c, r, p in zip(classes, recall, present)},
        "per_class_f1": {c: float(v) for c, v in zip(classes, f1)},
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_test": int(len(y_true)),
    }


def macro_auroc(y_true: np.ndarray, proba: np.ndarray) -> tuple[float | None, list[int]]:
    """Mean one-vs-rest AUROC over the classes present in ``y_true`` (and the classes used).

    ``None`` when fewer than two classes are present (AUROC undefined).
    """
    present = [k for k in range(proba.shape[1]) if np.any(y_true == k)]
    if len(present) < 2:
        return None, present
    scores = [skm.roc_auc_score(y_true == k, proba[:, k]) for k in present]
    return float(np.mean(scores)), present


def _check(y_true, y_pred, proba, classes):
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(classes)
    if proba.ndim != 2 or proba.shape != (len(y_true), n_classes) or len(y_pred) != len(y_true):
        raise ValueError(f"expected y_true [N], y_pred [N], proba [N, {n_classes}]; got "
                         f"{y_true.shape}, {y_pred.shape}, {proba.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    return y_true, y_pred, proba


# --------------------------------------------------------------------------- bootstrap
def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`CI_METRICS` of confusion matrices ``[..., K, K]`` (rows = true, cols = predicted).

    Same definitions as sklearn's (checked by the tests), vectorised over leading axes so that
    thousands of bootstrap resamples cost one matrix product.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(-1), cm.sum(-2)
    total = support.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: empty resamples
        recall = np.where(support > 0, tp / support, np.nan)
        labelled = support + predicted
        f1 = np.where(labelled > 0, 2 * tp / labelled, 0.0)
        return {
            "accuracy": tp.sum(-1) / total,
            "balanced_accuracy": np.nanmean(recall, axis=-1),
            "macro_f1": f1.mean(-1),  # over all K classes, as compute_metrics
            "weighted_f1": (f1 * support).sum(-1) / total,
        }


def bootstrap_ci(predictions: pd.DataFrame, metric: str = "macro_f1", n_boot: int = 1000,
                 seed: int = 0, group_col: str = "group", level: float = 0.95,
                 score: Score | None = None,
                 threshold: float | None = None) -> tuple[float, float]:
    """Percentile interval of ``metric`` over ``n_boot`` resamples of whole groups.

    Each resample draws as many groups as there are, with replacement, and keeps every row of a
    drawn group (as often as it is drawn). ``predictions`` has the columns of ``predictions.csv``.
    ``score``: the metrics of a resample's rows (default: :func:`compute_metrics` of the
    single-label columns; the :data:`CI_METRICS` then come from confusion matrices at once).
    A multi-label table with ``threshold`` (its sample-F1's) and no ``score``: the
    :data:`~ecgnb.evaluation.multilabel.MULTILABEL_CI_METRICS` at once
    (:func:`~ecgnb.evaluation.multilabel.weighted_scores`).
    """
    codes, uniques = pd.factorize(predictions[group_col])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniques), size=(n_boot, len(uniques)))
    if threshold is not None and score is None and is_multilabel_frame(predictions):
        values = _bootstrap_multilabel(predictions, codes, len(uniques), draws, threshold)[metric]
    elif metric in CI_METRICS and score is None:
        values = _bootstrap_fast(predictions, codes, len(uniques), draws)[metric]
    else:
        values = _bootstrap_slow(predictions, codes, draws, metric, score or _single_label_score)
    tail = (1.0 - level) / 2
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_seed_mean_ci(predictions: Sequence[pd.DataFrame], metric: str = "macro_f1",
                           n_boot: int = 2000, seed: int = 0, group_col: str = "group",
                           level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the *mean over seeds* of ``metric`` (one of :data:`CI_METRICS`;
    of multi-label tables, ``macro_auroc``).

    ``predictions``: one ``predictions.csv`` table per seed of one cell, scored on the same test
    records. Each resample draws the test records (whole groups, the same draw for every seed:
    they share the test split) and, independently, the seeds, both with replacement; each drawn
    seed's metric is recomputed on the drawn records and the drawn seeds are averaged. So both
    sources of variation, test records and training seeds, widen the interval; averaging the
    per-seed intervals' endpoints instead has no coverage meaning.
    """
    frames = list(predictions)
    if frames and is_multilabel_frame(frames[0]):
        if metric != "macro_auroc":
            raise ValueError(f"a multi-label seed-mean interval is of macro_auroc, got '{metric}'")
    elif metric not in CI_METRICS:
        raise ValueError(f"metric must be one of {CI_METRICS} for this interval, got '{metric}'")
    codes, uniques = pd.factorize(pd.concat([f[group_col] for f in frames], ignore_index=True))
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, len(uniques)))
    np.add.at(counts, (np.arange(n_boot)[:, None],
                       rng.integers(0, len(uniques), (n_boot, len(uniques)))), 1)
    if is_multilabel_frame(frames[0]):
        scores = _seed_auroc(frames, codes, counts)
    else:
        scores = _seed_confusion_scores(frames, codes, counts)[metric]
    seeds = rng.integers(0, len(frames), (n_boot, len(frames)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(np.take_along_axis(scores, seeds, axis=1), axis=1)
    tail = (1.0 - level) / 2
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _seed_auroc(frames, codes, counts) -> np.ndarray:
    """Macro-AUROC ``[n_boot, n_seeds]`` of each seed's table under each resample's counts."""
    scores, start = [], 0
    for frame in frames:
        classes = frame_classes(frame)
        rows = codes[start:start + len(frame)]
        scores.append(weighted_macro_auroc(frame[[TRUE_PREFIX + c for c in classes]].to_numpy(),
                                           frame[[PROB_PREFIX + c for c in classes]].to_numpy(),
                                           counts[:, rows]))
        start += len(frame)
    return np.stack(scores, axis=1)


def _seed_confusion_scores(frames, codes, counts) -> dict:
    """The :data:`CI_METRICS` ``[n_boot, n_seeds]`` from per-group confusion matrices."""
    n_classes = max(len(_prob_columns(f)) or int(max(f["y_true"].max(), f["y_pred"].max()) + 1)
                    for f in frames)
    per_group = np.zeros((len(frames), counts.shape[1], n_classes, n_classes))
    start = 0
    for s, frame in enumerate(frames):
        rows = codes[start:start + len(frame)]
        np.add.at(per_group[s], (rows, frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()), 1)
        start += len(frame)
    return scores_from_confusion(np.einsum("bg,sgij->bsij", counts, per_group))


def _bootstrap_multilabel(df, codes, n_groups, draws, threshold) -> dict:
    counts = np.zeros((len(draws), n_groups))
    np.add.at(counts, (np.arange(len(draws))[:, None], draws), 1)
    classes = frame_classes(df)
    return weighted_scores(df[[TRUE_PREFIX + c for c in classes]].to_numpy(),
                           df[[PROB_PREFIX + c for c in classes]].to_numpy(), threshold,
                           counts[:, codes])


def _bootstrap_fast(df: pd.DataFrame, codes: np.ndarray, n_groups: int, draws: np.ndarray):
    n_classes = len(_prob_columns(df)) or int(max(df["y_true"].max(), df["y_pred"].max()) + 1)
    per_group = np.zeros((n_groups, n_classes, n_classes))
    np.add.at(per_group, (codes, df["y_true"].to_numpy(), df["y_pred"].to_numpy()), 1)
    counts = np.zeros((len(draws), n_groups))
    np.add.at(counts, (np.arange(len(draws))[:, None], draws), 1)
    cms = (counts @ per_group.reshape(n_groups, -1)).reshape(-1, n_classes, n_classes)
    return scores_from_confusion(cms)


def _bootstrap_slow(df: pd.DataFrame, codes: np.ndarray, draws: np.ndarray, metric: str,
                    score: Score):
    rows_of = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    values = []
    for draw in draws:
        result = score(df.iloc[np.concatenate([rows_of[g] for g in draw])])
        if metric not in result:
            raise KeyError(f"unknown metric '{metric}'; known: {sorted(result)}")
        values.append(np.nan if result[metric] is None else result[metric])
    return np.asarray(values, dtype=np.float64)


def _single_label_score(rows: pd.DataFrame) -> dict:
    """:func:`compute_metrics` of a single-label predictions table."""
    classes = [c[len(PROB_PREFIX):] for c in _prob_columns(rows)]
    return compute_metrics(rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(),
                           rows[_prob_columns(rows)].to_numpy(), classes)


# --------------------------------------------------------------------------- run files
def predictions_frame(indices, groups, y_true, proba, classes: Sequence[str]) -> pd.DataFrame:
    """The predictions table: ``index, group, y_true, y_pred, prob_<class>`` (one row per window).

    ``indices`` are positions in the :class:`~ecgnb.data.Windows` the split indexes;
    ``y_pred`` is the arg-max of ``proba [N, K]``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    frame = pd.DataFrame({"index": np.asarray(indices, dtype=np.int64),
                          "group": np.asarray(groups).astype(str),
                          "y_true": np.asarray(y_true, dtype=np.int64),
                          "y_pred": proba.argmax(axis=1).astype(np.int64)})
    for k, name in enumerate(classes):
        frame[PROB_PREFIX + name] = proba[:, k]
    return frame


def write_run(folder, metrics: dict, predictions: pd.DataFrame, extra: dict | None = None,
              ci_metrics: Sequence[str] | None = None, n_boot: int = 1000, ci_seed: int = 0,
              level: float = 0.95) -> Path:
    """Write ``predictions.csv`` then ``metrics.json`` (metrics, grouped-bootstrap CIs, ``extra``).

    ``ci_metrics`` default: :data:`CI_METRICS`, or for a multi-label table
    :data:`~ecgnb.evaluation.multilabel.MULTILABEL_CI_METRICS` (sample-F1 at the ``threshold``
    that ``metrics`` records).

    ``extra`` carries the run's record (seed, selection criterion, best epoch, ...; see
    :meth:`ecgnb.evaluation.cell.CellResult.summary`). A stale ``metrics.json`` is removed first;
    the new one names its sibling files with their sizes and checksums
    (:func:`ecgnb.runs.write_cell_metrics`), so a cell is complete only when every file matches.
    Returns the ``metrics.json`` path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)
    with atomic_write(folder / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    threshold = metrics["threshold"] if is_multilabel_frame(predictions) else None
    if ci_metrics is None:
        ci_metrics = CI_METRICS if threshold is None else MULTILABEL_CI_METRICS
    ci = {m: list(bootstrap_ci(predictions, m, n_boot, ci_seed, level=level,
                               threshold=threshold)) for m in ci_metrics}
    record = {**metrics, "ci": ci, "ci_level": level, "ci_n_boot": n_boot, "ci_unit": "group",
              "n_groups": int(predictions["group"].nunique()), **(extra or {})}
    return write_cell_metrics(folder, record)


def read_predictions(csv_path, classes: Sequence[str]) -> pd.DataFrame:
    """Read ``predictions.csv`` and check its columns are exactly the expected ones (of either
    layout)."""
    frame = pd.read_csv(csv_path, dtype={"group": str})
    labels = ([TRUE_PREFIX + c for c in classes] if is_multilabel_frame(frame)
              else ["y_true", "y_pred"])
    expected = ["index", "group", *labels] + [PROB_PREFIX + c for c in classes]
    if list(frame.columns) != expected:
        raise ValueError(f"{csv_path}: columns {list(frame.columns)} != expected {expected}")
    return frame


def metrics_from_predictions(csv_path, classes: Sequence[str],
                             threshold: float | None = None) -> dict:
    """Recompute :func:`compute_metrics` from a ``predictions.csv``; a multi-label one needs the
    ``threshold`` of its sample-F1 (``metrics.json``'s)."""
    frame = read_predictions(csv_path, classes)
    if is_multilabel_frame(frame):
        if threshold is None:
            raise ValueError(f"{csv_path} is multi-label: pass the recorded threshold")
        return frame_metrics(frame, threshold)
    proba = frame[[PROB_PREFIX + c for c in classes]].to_numpy()
    return compute_metrics(frame["y_true"], frame["y_pred"], proba, classes)


def _prob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(PROB_PREFIX)]
