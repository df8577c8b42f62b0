"""Grouped splits, their guards, grouped label subsets, stratified shares."""
import numpy as np
import pytest

from ecgnb.data.formats import FRAGMENT_CLASSES
from ecgnb.data.rhythms import fragment_name, plan_episodes
from ecgnb.data.splits import (check_disjoint, label_subset, split_card, split_grouped,
                                stratified_share)
from ecgnb.data.windows import DataError, Windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_grouped_disjoint_and_complete(seed, toy_windows):
    w = toy_windows(seed=seed)
    splits = split_grouped(w, val=0.15, test=0.2, seed=seed)
    all_idx = np.concatenate(list(splits.values()))
    assert sorted(all_idx) == list(range(len(w)))
    sets = [set(w.groups[v]) for v in splits.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert 0.1 < len(splits["test"]) / len(w) < 0.3
    assert split_grouped(w, seed=seed)["test"].tolist() == splits["test"].tolist()


def test_check_disjoint_raises(toy_windows):
    w = toy_windows()
    with pytest.raises(DataError, match="in both"):
        check_disjoint(w, {"train": np.arange(0, 10), "test": np.arange(8, 20)})


def test_split_needs_enough_groups(toy_windows):
    with pytest.raises(DataError, match="too few"):
        split_grouped(toy_windows(n_groups=3))


def test_stratified_share_keeps_label_proportions():
    y = np.repeat([0, 1, 2, 3], [500, 100, 250, 150])
    idx = stratified_share(y, 0.2, np.random.default_rng(0))
    assert np.array_equal(np.bincount(y[idx]), [100, 20, 50, 30])
    assert len(set(idx)) == len(idx) and np.all(np.diff(idx) > 0)


# --------------------------------------------------------------------------- label subsets
def record_windows(n_groups=15, per_group=6, n_classes=3) -> Windows:
    """Labels and records of an easy task (signals unused): record g holds class g % 3, and
    every odd record also two windows in six of class (g + 1) % 3."""
    y, groups = [], []
    for g in range(n_groups):
        for i in range(per_group):
            y.append(g % n_classes if (g % 2 == 0 or i % 3) else (g + 1) % n_classes)
            groups.append(f"rec{g}")
    return Windows(x=np.zeros((len(y), 1, 1), np.float32), y=np.asarray(y),
                   groups=np.asarray(groups), domains=np.full(len(y), "ECG"), fs=360.0,
                   classes=tuple(f"class{k}" for k in range(n_classes)))


def test_label_subset_is_grouped_stratified_close_and_seeded():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"r{g}" for g in range(40)], rng.integers(3, 30, 40))
    y = rng.integers(0, 6, len(groups))
    y[rng.random(len(y)) < 0.05] = -1  # unlabelled windows are never drawn
    within = np.flatnonzero(np.isin(groups, [f"r{g}" for g in range(30)]))
    labelled = within[y[within] >= 0]
    subsets = {f: label_subset((y, groups), f, seed=1, within=within) for f in (0.1, 0.25, 0.5)}
    for f, idx in subsets.items():
        assert set(idx) <= set(labelled)
        for g in np.unique(groups[idx]):  # whole records in, or out
            assert set(labelled[groups[labelled] == g]) <= set(idx)
        assert set(y[idx]) == set(y[labelled])  # every class kept
        assert abs(len(idx) / len(labelled) - f) < 0.05
    np.testing.assert_array_equal(label_subset((y, groups), 0.25, 1, within), subsets[0.25])
    assert not np.array_equal(label_subset((y, groups), 0.25, 2, within), subsets[0.25])
    np.testing.assert_array_equal(label_subset((y, groups), 1.0, 1, within), labelled)


def demo_fragment_labels(seed: int = 0) -> Windows:
    """Labels and source records of the demo-sized embedded Fragment DB (600 fragments, 40
    records; ``embedded_data(small=False)``), from its plan alone: no signal is simulated."""
    episodes = plan_episodes(40, 600, np.random.default_rng(seed), min_records=3, min_per_class=8)
    rows = sorted((e.label, fragment_name(e.patient.source_id, e.code, e.start_s + offset),
                   f"{e.patient.source_id:03d}") for e in episodes for offset in e.fragment_s)
    label, _, group = map(np.asarray, zip(*rows))
    return Windows(x=np.zeros((len(rows), 1, 1), np.float32), y=label.astype(np.int64),
                   groups=group, domains=np.full(len(rows), "ECG"), fs=360.0,
                   classes=FRAGMENT_CLASSES)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_label_subset_realises_the_requested_fraction_on_the_demo_data(fraction):
    """Demo data, training split (383 fragments in 27 records): the realised share of the
    training fragments is within 0.03 of the request (the old prefix rule: 0.1 -> 0.16-0.32)."""
    windows = demo_fragment_labels()
    train = split_grouped(windows, seed=0)["train"]
    for seed in range(5):
        idx = label_subset(windows, fraction, seed, within=train)
        assert abs(len(idx) / len(train) - fraction) <= 0.03
        assert set(windows.y[idx]) == set(windows.y[train])


def test_label_subset_reads_windows():
    windows = record_windows()
    splits = split_grouped(windows, val=0.2, test=0.2, seed=0)
    idx = label_subset(windows, 0.3, seed=0, within=splits["train"])
    assert set(idx) < set(splits["train"])
    assert set(windows.y[idx]) == set(windows.y[splits["train"]])


# --------------------------------------------------------------------------- multi-label
def multilabel_groups(n_groups=120, n_labels=6, seed=0):
    """An indicator matrix ``[N, K]`` of windows in groups (patients of 1-4 records): label k
    has prevalence 0.5 / (k + 1); a group's records share most of its labels."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat([f"p{g}" for g in range(n_groups)], sizes)
    base = rng.random((n_groups, n_labels)) < 0.5 / (np.arange(n_labels) + 1)
    y = base[np.repeat(np.arange(n_groups), sizes)] ^ (rng.random((len(groups), n_labels)) < 0.03)
    y[~y.any(1), 0] = True  # every window has a label
    return y.astype(np.int8), groups


def test_stratify_groups_shares_every_label_like_the_windows():
    """Iterative stratification over whole groups: each label's share of windows in each
    subset is close to the subset's share, and every group is in exactly one subset."""
    from ecgnb.data.splits import group_counts, stratify_groups

    y, groups = multilabel_groups(n_groups=300)
    counts, sizes, group = group_counts(y, groups)
    subset = stratify_groups(counts, sizes, (0.7, 0.2, 0.1), np.random.default_rng(0))
    assert set(subset) == {0, 1, 2}
    for s, share in enumerate((0.7, 0.2, 0.1)):
        label_share = counts[subset == s].sum(0) / counts.sum(0)
        assert np.abs(label_share - share).max() < 0.05, (s, label_share)
        assert abs(sizes[subset == s].sum() / sizes.sum() - share) < 0.05
    random = np.random.default_rng(0).choice(3, size=len(counts), p=(0.7, 0.2, 0.1))
    worse = np.abs(counts[random == 2].sum(0) / counts.sum(0) - 0.1).mean()
    assert np.abs(counts[subset == 2].sum(0) / counts.sum(0) - 0.1).mean() < worse


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.5])
def test_multilabel_label_subset_is_grouped_covers_every_label_and_is_seeded(fraction):
    y, groups = multilabel_groups()
    within = np.flatnonzero(np.isin(groups, [f"p{g}" for g in range(100)]))
    idx = label_subset((y, groups), fraction, seed=3, within=within)
    assert set(idx) <= set(within) and np.all(np.diff(idx) > 0)
    for g in np.unique(groups[idx]):  # whole patients in, or out
        assert set(within[groups[within] == g]) <= set(idx)
    assert y[idx].any(axis=0).all()  # every label, at every fraction
    assert abs(len(idx) / len(within) - fraction) < 0.05 + 0.5 * (fraction < 0.1)
    np.testing.assert_array_equal(label_subset((y, groups), fraction, 3, within), idx)
    assert not np.array_equal(label_subset((y, groups), fraction, 4, within), idx)
    np.testing.assert_array_equal(label_subset((y, groups), 1.0, 3, within), within)


def test_multilabel_label_subset_reads_windows_and_keeps_a_rare_label():
    y, groups = multilabel_groups(n_groups=60)
    y[:, -1] = 0
    y[groups == "p7", -1] = 1  # one patient holds the last label
    windows = Windows(x=np.zeros((len(y), 12, 4), np.float32), y=y, groups=groups,
                      domains=np.full(len(y), "ECG"), fs=100.0,
                      classes=tuple(f"c{k}" for k in range(y.shape[1])))
    idx = label_subset(windows, 0.1, seed=0)
    assert "p7" in set(groups[idx]) and windows.y[idx].any(axis=0).all()


def test_split_grouped_of_multilabel_windows():
    y, groups = multilabel_groups()
    windows = Windows(x=np.zeros((len(y), 2, 4), np.float32), y=y, groups=groups,
                      domains=np.full(len(y), "ECG"), fs=100.0,
                      classes=tuple(f"c{k}" for k in range(y.shape[1])))
    splits = split_grouped(windows, val=0.15, test=0.2, seed=1)
    assert sorted(np.concatenate(list(splits.values()))) == list(range(len(windows)))
    check_disjoint(windows, splits)
    for name, share in (("train", 0.65), ("val", 0.15), ("test", 0.2)):
        assert windows.y[splits[name]].any(axis=0).all(), name
        assert abs(len(splits[name]) / len(windows) - share) < 0.05
    again = split_grouped(windows, val=0.15, test=0.2, seed=1)
    assert all(np.array_equal(again[k], splits[k]) for k in splits)
    card = split_card(windows, splits)
    assert card["windows"].sum() == windows.y.sum()


def reference_choose_records(counts, fraction, rng):
    """choose_records the slow, obvious way: rebuild every neighbouring subset and cost it."""
    totals, order = counts.sum(0), rng.permutation(len(counts))
    target = fraction * totals

    def cost(kept):
        return float((np.abs(counts[kept].sum(0) - target) / totals).sum())

    keep = np.zeros(len(counts), dtype=bool)
    for k in np.argsort((counts > 0).sum(0), kind="stable"):
        if counts[keep, k].sum() == 0:
            keep[next(r for r in order if counts[r, k] > 0)] = True
    while True:
        flips = [[r] for r in order] + [[r_in, r_out] for r_in in order[keep[order]]
                                        for r_out in order[~keep[order]]]
        for flip in flips:
            trial = keep.copy()
            trial[flip] = ~trial[flip]
            if (counts[trial].sum(0) > 0).all() and cost(trial) < cost(keep) - 1e-12:
                keep = trial
                break
        else:
            return keep


def test_choose_records_matches_the_slow_reference():
    from ecgnb.data.splits import choose_records

    rng = np.random.default_rng(0)
    for _ in range(60):
        n_records, n_classes = int(rng.integers(3, 30)), int(rng.integers(1, 10))
        counts = (rng.random((n_records, n_classes)) < 0.4) * rng.integers(1, 20, (n_records,
                                                                                  n_classes))
        counts = counts[:, counts.sum(0) > 0].astype(float)
        if not counts.size:
            continue
        fraction, seed = float(rng.choice([0.05, 0.1, 0.3, 0.5, 0.9])), int(rng.integers(100))
        np.testing.assert_array_equal(
            choose_records(counts, fraction, np.random.default_rng(seed)),
            reference_choose_records(counts, fraction, np.random.default_rng(seed)))
