"""Statistics of the report: exact tests that a handful of seeds can support, and intervals.

- :func:`paired_test`: the exact sign-flip (permutation) test of a paired mean difference, over
  all 2^n sign patterns of the n differences (random patterns above :data:`MAX_EXACT_PAIRS`).
  Its smallest two-sided p with n pairs is 2/2^n (:func:`smallest_paired_p`): 0.5 at 2 seeds,
  0.25 at 3, 0.0625 at 5; no p-value below that is ever reported.
- :func:`unpaired_test`: the exact permutation test of a difference of two means, over every way
  to split the pooled values into groups of the two sizes (for cells whose seeds are unrelated,
  e.g. an SSL cell against H-InceptionTime); smallest p: :func:`smallest_unpaired_p`.
- :func:`bootstrap_mean_ci`: percentile interval of a mean over seeds, only from
  :data:`MIN_BOOTSTRAP_N` values on (below that the resamples take a handful of values).
"""
from __future__ import annotations

import itertools
from math import comb

import numpy as np

MAX_EXACT_PAIRS = 16          # 2^16 sign patterns
MAX_EXACT_SPLITS = 200_000    # splits of the pooled values (10 + 10 seeds: 184,756)
N_RANDOM = 100_000            # random patterns / splits beyond those (p = (k + 1) / (N + 1))
MIN_BOOTSTRAP_N = 5


def bootstrap_mean_ci(values, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` [n] over ``n_boot`` resamples
    (NaN below :data:`MIN_BOOTSTRAP_N` values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < MIN_BOOTSTRAP_N:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_test(a, b, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of ``a - b`` ([n] each, the same units in the same order).

    ``p``: exact two-sided sign-flip test of the mean difference; ``p_min``: the smallest p the
    design allows; ``diff_ci_low/high``: bootstrap interval of the mean difference (NaN below
    :data:`MIN_BOOTSTRAP_N` pairs).
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diff)
    low, high = bootstrap_mean_ci(diff, n_boot, seed)
    return {"n": n, "mean_diff": float(diff.mean()) if n else float("nan"),
            "diff_ci_low": low, "diff_ci_high": high, "p": sign_flip_p(diff, seed),
            "p_min": smallest_paired_p(n), "test": "sign-flip (paired)"}


def unpaired_test(a, b, seed: int = 0) -> dict:
    """Unpaired comparison of the means of ``a`` [n_a] and ``b`` [n_b] (unrelated units).

    ``p``: exact two-sided permutation test of ``mean(a) - mean(b)``; ``p_min``: the smallest p
    the design allows.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    empty = not (len(a) and len(b))
    return {"n": len(a), "n_other": len(b),
            "mean_diff": float("nan") if empty else float(a.mean() - b.mean()),
            "p": float("nan") if empty else permutation_p(a, b, seed),
            "p_min": smallest_unpaired_p(len(a), len(b)), "test": "permutation (unpaired)"}


def sign_flip_p(diff, seed: int = 0) -> float:
    """Two-sided p of the sign-flip test: the share of sign patterns whose |mean| is at least
    the observed one (all 2^n patterns up to :data:`MAX_EXACT_PAIRS` pairs)."""
    diff = np.asarray(diff, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return float("nan")
    if n <= MAX_EXACT_PAIRS:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(N_RANDOM, n))
    k = int(_as_extreme(np.abs(signs @ diff) / n, abs(diff.mean())).sum())
    return k / len(signs) if n <= MAX_EXACT_PAIRS else (k + 1) / (N_RANDOM + 1)


def permutation_p(a, b, seed: int = 0) -> float:
    """Two-sided p of the permutation test of a difference of means: the share of splits of the
    pooled values (sizes kept) whose |difference| is at least the observed one."""
    pooled = np.concatenate([a, b]).astype(np.float64)
    n, n_a = len(pooled), len(a)
    exact = comb(n, n_a) <= MAX_EXACT_SPLITS
    if exact:
        members = np.array(list(itertools.combinations(range(n), n_a)))
    else:
        rng = np.random.default_rng(seed)
        members = np.argsort(rng.random((N_RANDOM, n)), axis=1)[:, :n_a]
    sums = pooled[members].sum(axis=1)
    diffs = np.abs(sums / n_a - (pooled.sum() - sums) / (n - n_a))
    k = int(_as_extreme(diffs, abs(np.mean(a) - np.mean(b))).sum())
    return k / len(members) if exact else (k + 1) / (N_RANDOM + 1)


def _as_extreme(values: np.ndarray, observed: float) -> np.ndarray:
    """``values >= observed`` with a relative tolerance for floating-point ties."""
    return values >= observed - 1e-9 * max(abs(observed), 1e-12)


def smallest_paired_p(n: int) -> float:
    """The smallest two-sided p of an exact paired test with ``n`` pairs: 2 / 2^n (the sign
    pattern and its mirror are always equally extreme)."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else float("nan")


def smallest_unpaired_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p of the exact permutation test with groups of ``n_a`` and ``n_b``:
    1 / C(n_a + n_b, n_a), or 2 / C when the sizes are equal (the swapped split ties)."""
    if n_a < 1 or n_b < 1:
        return float("nan")
    return min(1.0, (2.0 if n_a == n_b else 1.0) / comb(n_a + n_b, n_a))
