"""Exact tests that a handful of seeds can support, and the bootstrap interval of a mean."""
import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ecgnb.report import stats


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


def test_no_difference_gives_p_one():
    out = stats.paired_test([0.5] * 5, [0.5] * 5, n_boot=99)
    assert out["p"] == 1.0 and out["mean_diff"] == 0.0


def test_mixed_signs_are_not_significant():
    out = stats.paired_test([0.6, 0.4, 0.6, 0.4, 0.6], [0.5] * 5, n_boot=999)
    assert out["p"] > 0.5
    assert out["diff_ci_low"] < 0 < out["diff_ci_high"]


def test_bootstrap_interval_of_the_mean():
    values = np.random.default_rng(0).normal(0.6, 0.05, size=5)
    low, high = stats.bootstrap_mean_ci(values, n_boot=2000)
    assert low < values.mean() < high and high - low < 0.2
