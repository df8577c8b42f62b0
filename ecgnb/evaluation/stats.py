"""Statistics of the report: the bootstrap interval of a mean and paired comparisons by seed.

With a handful of seeds these are small-sample tools: the exact Wilcoxon signed-rank test (its
smallest two-sided p with n pairs is 2/2^n) and a paired bootstrap of the mean difference, shown
side by side so that neither is read alone.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def bootstrap_mean_ci(values, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` [n] over ``n_boot`` resamples."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_test(a, b, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of ``a - b`` ([n] each, same seeds in the same order).

    Wilcoxon signed-rank, two-sided, exact for n <= 25 (zero differences dropped); paired
    bootstrap of the mean difference: percentile 95 % interval and a two-sided p-value from the
    null-centred resamples, ``(k + 1) / (n_boot + 1)``.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out = {"n": len(diff), "mean_diff": float(diff.mean()) if len(diff) else float("nan")}
    nonzero = diff[diff != 0]
    if len(nonzero) == 0:
        out["p_wilcoxon"] = 1.0 if len(diff) else float("nan")
    else:
        method = "exact" if len(nonzero) <= 25 else "approx"
        out["p_wilcoxon"] = float(stats.wilcoxon(nonzero, method=method).pvalue)
    out["diff_ci_low"], out["diff_ci_high"] = bootstrap_mean_ci(diff, n_boot, seed)
    if len(diff) >= 2:
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
        extreme = np.abs(means - diff.mean()) >= abs(diff.mean()) - 1e-12
        out["p_bootstrap"] = float((extreme.sum() + 1) / (n_boot + 1))
    else:
        out["p_bootstrap"] = float("nan")
    return out


def smallest_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon p-value with ``n`` pairs: 2 / 2^n."""
    return 2.0 / 2 ** n if n > 0 else float("nan")
