"""Grouped, stratified splits and subsets of :class:`~ecgnb.data.windows.Windows`.

- ``split_grouped``: train/val/test indices that never put one group (source record, subject) in
  two splits; ``check_disjoint`` guards it, ``split_card`` counts it;
- ``label_subset``: a grouped, stratified share of the labelled training windows (label
  efficiency), whole records kept or dropped (:func:`choose_records`);
- ``stratified_share``: a seeded share of rows drawn class by class (no groups).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ecgnb.data.windows import DataError, Windows


def split_grouped(windows: Windows, val: float = 0.15, test: float = 0.2,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices with every group in exactly one split."""
    idx = np.arange(len(windows))
    test_idx, rest = _take_fold(windows, idx, test, seed)
    val_idx, train_idx = _take_fold(windows, rest, val / (1.0 - test), seed + 1)
    splits = {"train": np.sort(train_idx), "val": np.sort(val_idx), "test": np.sort(test_idx)}
    check_disjoint(windows, splits)
    return splits


def _take_fold(windows: Windows, idx: np.ndarray, share: float, seed: int):
    """One stratified group fold of about ``share`` of ``idx``: (fold, rest)."""
    n_splits = max(2, round(1.0 / share))
    n_groups = len(np.unique(windows.groups[idx]))
    if n_groups < n_splits:
        raise DataError(f"only {n_groups} groups: too few for a grouped split of {share:.0%} "
                        f"(needs {n_splits}); use more records/subjects or smaller shares")
    kfold = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" is expected here
        rest, fold = next(kfold.split(idx, windows.y[idx], windows.groups[idx]))
    return idx[fold], idx[rest]


def check_disjoint(windows: Windows, splits: dict[str, np.ndarray]) -> None:
    """Raise if any group appears in two splits."""
    seen: dict[str, str] = {}
    for name, idx in splits.items():
        for group in np.unique(windows.groups[idx]):
            if seen.setdefault(group, name) != name:
                raise DataError(f"group {group} is in both '{seen[group]}' and '{name}' splits")


def split_card(windows: Windows, splits: dict[str, np.ndarray]) -> pd.DataFrame:
    """Windows and groups per split and class."""
    rows = []
    for name, idx in splits.items():
        y = windows.y[idx]
        for k, cls in enumerate(windows.classes):
            rows.append({"split": name, "class": cls, "windows": int((y == k).sum()),
                         "groups": len(np.unique(windows.groups[idx][y == k]))})
    return pd.DataFrame(rows)


def stratified_share(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded ``fraction`` of ``y``'s rows, drawn class by class
    (``round(fraction * count)`` of each label, at least one of every label present)."""
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n_keep = max(1, round(fraction * len(rows)))
        chosen.append(rng.choice(rows, size=n_keep, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- label subsets
def label_subset(data, fraction: float, seed: int, within=None) -> np.ndarray:
    """Sorted indices of a grouped, stratified ``fraction`` of the labelled windows in ``within``.

    ``data``: a :class:`~ecgnb.data.Windows` or a tuple ``(y, groups)``; ``within``: the indices
    to draw from (the training split; default all). Whole groups (source records) are kept or
    dropped, so the realised fraction can only approach the request: :func:`choose_records` picks
    the groups whose class counts come closest to ``fraction`` of every class's windows (every
    class keeps at least one group). Seeded, and the same for every model at one seed; subsets of
    two fractions are not nested. The realised share is ``len(result) / labelled windows``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y, groups = (data.y, data.groups) if hasattr(data, "groups") else data
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    within = np.arange(len(y)) if within is None else np.asarray(within)
    within = within[y[within] >= 0]
    if fraction >= 1.0:
        return np.sort(within)
    _, record = np.unique(groups[within], return_inverse=True)
    _, label = np.unique(y[within], return_inverse=True)
    counts = np.zeros((record.max() + 1, label.max() + 1))
    np.add.at(counts, (record, label), 1)
    keep = choose_records(counts, fraction, np.random.default_rng(seed))
    return np.sort(within[keep[record]])


def choose_records(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which records ``[R]`` (bool) to keep so that the kept windows of each class come closest
    to ``fraction`` of that class's windows; ``counts`` ``[R, K]`` windows per record and class.

    The cost is the sum over classes of |kept - target| / class size. Start: for each class,
    rarest first, the first record of one seeded random order that holds it (if none kept does
    yet); then, in that order, add, drop or swap single records while the cost falls and every
    class stays covered (a local search: close to the best that whole records allow, and the seed
    decides among near-equal subsets).
    """
    totals = counts.sum(0)
    target = fraction * totals

    def cost(kept: np.ndarray) -> float:
        return float((np.abs(counts[kept].sum(0) - target) / totals).sum())

    def covers(kept: np.ndarray) -> bool:
        return bool((counts[kept].sum(0) > 0).all())

    order = rng.permutation(len(counts))
    keep = np.zeros(len(counts), dtype=bool)
    for k in np.argsort((counts > 0).sum(0), kind="stable"):
        if counts[keep, k].sum() == 0:
            keep[next(r for r in order if counts[r, k] > 0)] = True
    best, improved = cost(keep), True
    while improved:
        improved = False
        for trial in _neighbours(keep, order):
            if covers(trial) and cost(trial) < best - 1e-12:
                keep, best, improved = trial, cost(trial), True
                break
    return keep


def _neighbours(keep: np.ndarray, order: np.ndarray):
    """Every subset one record away (added or dropped), then one swap away, in ``order``."""
    for r in order:
        trial = keep.copy()
        trial[r] = not trial[r]
        yield trial
    for r_in in order[keep[order]]:
        for r_out in order[~keep[order]]:
            trial = keep.copy()
            trial[[r_in, r_out]] = [False, True]
            yield trial
