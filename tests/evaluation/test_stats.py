"""Exact tests that a handful of seeds can support, and the interval of a mean over seeds."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ecgnb.evaluation import stats
from ecgnb.evaluation.metrics import bootstrap_ci, bootstrap_seed_mean_ci


# --------------------------------------------------------------------------- p-values
@pytest.mark.parametrize("n", [2, 3, 5])
def test_no_paired_p_below_what_n_seeds_allow(n):
    floor = 2 / 2 ** n  # 0.5, 0.25, 0.0625
    assert stats.smallest_paired_p(n) == floor
    rng = np.random.default_rng(n)
    for _ in range(50):
        a, b = rng.normal(0.6, 0.05, n), rng.normal(0.5, 0.05, n)
        out = stats.paired_test(a, b, n_boot=100)
        assert floor <= out["p"] <= 1 and out["p_min"] == floor
    huge = stats.paired_test(np.full(n, 0.9) + 0.001 * np.arange(n), np.full(n, 0.1))
    assert huge["p"] == floor  # the most extreme data reach the floor, never below


@pytest.mark.parametrize("n", [2, 3, 5])
def test_no_unpaired_p_below_what_n_seeds_allow(n):
    floor = 2 / scipy_stats.binom(2 * n, 0.5).pmf(n) / 2 ** (2 * n)  # 2 / C(2n, n)
    assert stats.smallest_unpaired_p(n, n) == pytest.approx(floor)
    out = stats.unpaired_test(np.full(n, 0.9) + 0.001 * np.arange(n), np.full(n, 0.1))
    assert out["p"] == pytest.approx(floor) and out["p_min"] == pytest.approx(floor)
    assert stats.smallest_unpaired_p(2, 3) == pytest.approx(1 / 10)


def test_sign_flip_p_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    for n in (3, 4, 6):
        diff = rng.normal(0.02, 0.05, n)
        flips = [np.mean(np.array(s) * diff) for s in itertools.product([-1, 1], repeat=n)]
        reference = np.mean(np.abs(flips) >= abs(diff.mean()) - 1e-12)
        assert stats.sign_flip_p(diff) == pytest.approx(reference)


def test_permutation_p_matches_scipy_exact_and_a_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.05, 4), rng.normal(0.55, 0.05, 4)
    scipy_p = scipy_stats.permutation_test(
        (a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="independent",
        n_resamples=np.inf, alternative="two-sided").pvalue
    assert stats.permutation_p(a, b) == pytest.approx(scipy_p)
    a, b = rng.normal(0.6, 0.05, 2), rng.normal(0.5, 0.05, 3)  # unequal sizes
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    splits = [abs(pooled[list(c)].mean() - np.delete(pooled, list(c)).mean())
              for c in itertools.combinations(range(5), 2)]
    assert stats.permutation_p(a, b) == pytest.approx(np.mean(np.array(splits) >= observed - 1e-12))


def test_no_bootstrap_interval_of_a_mean_from_too_few_seeds():
    assert np.isnan(stats.bootstrap_mean_ci([0.5, 0.7, 0.6])).all()
    out = stats.paired_test([0.6, 0.7], [0.5, 0.55])
    assert np.isnan(out["diff_ci_low"]) and out["p"] == 0.5


# --------------------------------------------------------------------------- seed-mean interval
def seed_predictions(rng, n_seeds=5, n_records=30, per_record=4, seed_sd=0.8) -> list[pd.DataFrame]:
    """Binary predictions of ``n_seeds`` models on one test split: records differ in difficulty
    (shared by every seed), seeds in skill (logit scale)."""
    difficulty = np.repeat(rng.normal(0, 1, n_records), per_record)
    groups = np.repeat([f"r{g}" for g in range(n_records)], per_record)
    frames = []
    for skill in rng.normal(1.0, seed_sd, n_seeds):
        y = rng.integers(0, 2, len(groups))
        correct = rng.random(len(groups)) < 1 / (1 + np.exp(difficulty - skill))
        frames.append(pd.DataFrame({"group": groups, "y_true": y,
                                    "y_pred": np.where(correct, y, 1 - y)}))
    return frames


def test_seed_mean_interval_is_not_the_average_of_per_seed_endpoints():
    """One seed always right, one always wrong: each per-seed interval is a point (1 or 0), their
    average [0.5, 0.5]; the mean over two seeds is anything from 0 to 1."""
    y = np.tile([0, 1], 20)
    groups = np.repeat([f"r{g}" for g in range(10)], 4)
    right = pd.DataFrame({"group": groups, "y_true": y, "y_pred": y})
    wrong = right.assign(y_pred=1 - y)
    ends = np.mean([bootstrap_ci(f, "accuracy", n_boot=200) for f in (right, wrong)], axis=0)
    assert tuple(ends) == (0.5, 0.5)
    assert bootstrap_seed_mean_ci([right, wrong], "accuracy", n_boot=500) == (0.0, 1.0)
    assert bootstrap_seed_mean_ci([right, right], "accuracy", n_boot=200) == (1.0, 1.0)


def test_seed_mean_interval_covers_the_expected_score():
    """Over simulated test splits and seeds, the 95 % interval covers the expected accuracy (over
    seeds and records) about 95 % of the time; averaged per-seed endpoints cover less."""
    rng = np.random.default_rng(3)
    truth = np.mean([(f["y_true"] == f["y_pred"]).mean()
                     for f in seed_predictions(rng, n_seeds=400, n_records=400)])
    hits = {"seed mean": 0, "averaged endpoints": 0}
    for i in range(80):
        frames = seed_predictions(rng)
        low, high = bootstrap_seed_mean_ci(frames, "accuracy", n_boot=300, seed=i)
        ends = np.mean([bootstrap_ci(f, "accuracy", n_boot=300, seed=i) for f in frames], axis=0)
        hits["seed mean"] += low <= truth <= high
        hits["averaged endpoints"] += ends[0] <= truth <= ends[1]
    assert hits["seed mean"] / 80 >= 0.85
    assert hits["averaged endpoints"] < hits["seed mean"]
