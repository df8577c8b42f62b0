"""Grouped, stratified splits and subsets of :class:`~ecgnb.data.windows.Windows`.

- ``split_grouped``: train/val/test indices that never put one group (source record, subject) in
  two splits; ``check_disjoint`` guards it, ``split_card`` counts it;
- ``label_subset``: a grouped, stratified share of the labelled training windows (label
  efficiency), whole records kept or dropped (:func:`choose_records`; multi-label windows:
  :func:`stratify_groups`);
- ``stratify_groups``: iterative stratification (Sechidis et al. 2011) of whole groups over
  the label sets of multi-label windows, for their splits and label subsets;
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
    """Stratified train/val/test indices with every group in exactly one split (multi-label
    windows: :func:`stratify_groups` over their label sets, every class in every split where
    its groups allow)."""
    if windows.is_multilabel:
        return _split_multilabel(windows, val, test, seed)
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
    rows, indicator = [], windows.indicator()
    for name, idx in splits.items():
        y = indicator[idx]
        for k, cls in enumerate(windows.classes):
            rows.append({"split": name, "class": cls, "windows": int(y[:, k].sum()),
                         "groups": len(np.unique(windows.groups[idx][y[:, k] == 1]))})
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
    Multi-label windows (``y`` ``[N, K]``): :func:`multilabel_subset`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y, groups = (data.y, data.groups) if hasattr(data, "groups") else data
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    within = np.arange(len(y)) if within is None else np.asarray(within)
    if y.ndim == 2:
        return multilabel_subset(y, groups, fraction, seed, within)
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
    decides among near-equal subsets). The first improving neighbour (:func:`_first_move`) is
    found for all records at once, so tens of thousands of records take seconds.
    """
    totals = counts.sum(0)
    target = fraction * totals
    order = rng.permutation(len(counts))
    keep = np.zeros(len(counts), dtype=bool)
    for k in np.argsort((counts > 0).sum(0), kind="stable"):
        if counts[keep, k].sum() == 0:
            keep[next(r for r in order if counts[r, k] > 0)] = True
    while True:
        kept = counts[keep].sum(0)
        best = float((np.abs(kept - target) / totals).sum())
        move = _first_move(counts, keep, kept, order, target, totals, best)
        if move is None:
            return keep
        keep[list(move)] = ~keep[list(move)]


def _first_move(counts, keep, kept, order, target, totals, best) -> tuple | None:
    """The records to flip for the first subset, among those one record away (added or dropped)
    and then one swap away, in ``order``, that covers every class at a cost below ``best``."""
    def improving(sums: np.ndarray) -> np.ndarray:
        cost = (np.abs(sums - target) / totals).sum(axis=1)
        return (sums > 0).all(axis=1) & (cost < best - 1e-12)

    sign = np.where(keep[order], -1.0, 1.0)
    hit = improving(kept + sign[:, None] * counts[order])
    if hit.any():
        return (order[hit.argmax()],)
    outs = order[~keep[order]]
    for r_in in order[keep[order]]:
        hit = improving((kept - counts[r_in]) + counts[outs])
        if hit.any():
            return (r_in, outs[hit.argmax()])
    return None


# --------------------------------------------------------------------------- multi-label
def multilabel_subset(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int,
                      within: np.ndarray) -> np.ndarray:
    """Sorted indices of a grouped ``fraction`` of the labelled windows in ``within``, stratified
    over the label sets of an indicator matrix ``y`` ``[N, K]``: :func:`stratify_groups` shares
    whole groups between the subset (``fraction``) and the rest, then :func:`cover_labels` adds,
    for each label of ``within`` the subset lacks, a group that holds it. Seeded."""
    within = within[np.asarray(y)[within].any(axis=1)]
    if fraction >= 1.0 or not len(within):
        return np.sort(within)
    counts, sizes, group = group_counts(y[within], groups[within])
    rng = np.random.default_rng(seed)
    subset = stratify_groups(counts, sizes, (fraction, 1.0 - fraction), rng)
    subset = cover_labels(subset, counts, sizes, needs_every_label=(0,), rng=rng)
    return np.sort(within[subset[group] == 0])


def group_counts(y: np.ndarray, groups: np.ndarray):
    """``counts`` ``[R, K]`` windows of each group holding each label, ``sizes`` ``[R]`` windows
    per group, and each window's group index ``[N]``."""
    _, group = np.unique(groups, return_inverse=True)
    counts = np.zeros((group.max() + 1, y.shape[1]))
    np.add.at(counts, group, y)
    return counts, np.bincount(group).astype(float), group


def stratify_groups(counts: np.ndarray, sizes: np.ndarray, shares,
                    rng: np.random.Generator) -> np.ndarray:
    """The subset ``0..S-1`` of each of R groups: iterative stratification (Sechidis, Tsoumakas
    and Vlahavas 2011) with whole groups as its examples.

    ``counts`` ``[R, K]`` windows per group and label, ``sizes`` ``[R]`` windows per group,
    ``shares`` ``[S]`` the subsets' shares. Subset ``s`` wants ``shares[s]`` of every label's
    windows and of all windows. Label by label, the label held by the fewest unassigned groups
    first (ties: seeded), each unassigned group holding it, in one seeded order, goes to the
    subset that wants that label most (ties: the one that wants most windows, then seeded), and
    that subset's wants fall by the group's counts. Groups without a label go where most windows
    are wanted.
    """
    shares = np.asarray(shares, dtype=float)
    want = np.outer(shares, counts.sum(0))
    room = shares * sizes.sum()
    holders = counts > 0
    subset = np.full(len(counts), -1)
    order = rng.permutation(len(counts))

    def assign(r: int, wanted: np.ndarray) -> None:
        s = np.lexsort((rng.random(len(shares)), room, wanted))[-1]
        subset[r] = s
        want[s] -= counts[r]
        room[s] -= sizes[r]

    while True:
        n_left = holders[subset < 0].sum(0)
        if not n_left.any():
            break
        rarest = np.flatnonzero(n_left == n_left[n_left > 0].min())
        label = rarest[rng.integers(len(rarest))]
        for r in order[(subset[order] < 0) & holders[order, label]]:
            assign(r, want[:, label])
    for r in order[subset[order] < 0]:
        assign(r, room)
    return subset


def cover_labels(subset: np.ndarray, counts: np.ndarray, sizes: np.ndarray,
                 needs_every_label, rng: np.random.Generator) -> np.ndarray:
    """``subset`` with groups moved so that each subset in ``needs_every_label`` holds every
    label some group holds, where whole groups allow: rarest label first, the smallest group
    (ties: seeded) that holds the missing label moves in from a subset that keeps, without it,
    every label it must hold (a subset outside ``needs_every_label`` need keep none)."""
    subset, holders = subset.copy(), counts > 0
    tie = rng.random(len(counts))
    for label in np.argsort(holders.sum(0), kind="stable"):
        for s in needs_every_label:
            if holders[subset == s, label].any() or not holders[:, label].any():
                continue
            moving = next((r for r in np.lexsort((tie, sizes)) if holders[r, label]
                           and subset[r] != s
                           and _can_leave(subset, holders, r, needs_every_label)), None)
            if moving is not None:
                subset[moving] = s
    return subset


def _can_leave(subset: np.ndarray, holders: np.ndarray, r: int, needs_every_label) -> bool:
    """Whether group ``r`` can leave its subset without the subset losing a label it must hold."""
    if subset[r] not in needs_every_label:
        return True
    others = holders[(subset == subset[r]) & (np.arange(len(subset)) != r)].any(0)
    return bool(others[holders[r]].all())


def _split_multilabel(windows: Windows, val: float, test: float,
                      seed: int) -> dict[str, np.ndarray]:
    """train/val/test of multi-label windows by :func:`stratify_groups`, every class in every
    split where its groups allow (:func:`cover_labels`)."""
    counts, sizes, group = group_counts(windows.indicator(), windows.groups)
    if len(counts) < 3:
        raise DataError(f"only {len(counts)} groups: too few for a grouped train/val/test split "
                        "(needs 3); use more records/subjects")
    rng = np.random.default_rng(seed)
    subset = stratify_groups(counts, sizes, (1.0 - val - test, val, test), rng)
    subset = cover_labels(subset, counts, sizes, needs_every_label=(0, 1, 2), rng=rng)
    splits = {name: np.flatnonzero(subset[group] == s)
              for s, name in enumerate(("train", "val", "test"))}
    check_disjoint(windows, splits)
    return splits
