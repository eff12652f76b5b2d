"""The statistics of a comparison of two measurements of one case: the rank test on repeat
medians (Hodges-Lehmann ratio, exact Mann-Whitney interval), Mann-Whitney and a bootstrap
interval on raw samples, and the noise of a case (between repeats, between runs).

Pure functions of latencies in milliseconds; the gate that applies them is
:mod:`edgebench.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .records import CaseResult, Status

MIN_HISTORY = 5
"""Earlier runs of a case needed before their run-to-run noise raises its threshold."""


def mann_whitney_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test (scipy, asymptotic with ties)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue)


def ratio_ci(baseline: np.ndarray, current: np.ndarray, *, resamples: int,
             seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95 % percentile interval of median(current) / median(baseline)."""
    rng = np.random.default_rng(seed)
    b = np.median(rng.choice(baseline, (resamples, baseline.size)), axis=1)
    c = np.median(rng.choice(current, (resamples, current.size)), axis=1)
    lo, hi = np.percentile(c / b, [2.5, 97.5])
    return float(lo), float(hi)


def _u_null_counts(n: int, m: int) -> np.ndarray:
    """How many of the C(n+m, n) orderings give each Mann-Whitney U = 0 .. n*m (no ties).

    U counts the pairs in which the current value is the smaller. The largest of all n + m
    values is either a baseline one (above all m current ones: U grows by m) or a current
    one (U unchanged): f(n, m, u) = f(n-1, m, u-m) + f(n, m-1, u).
    """
    table = [[np.ones(1) for _ in range(m + 1)] for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            counts = np.zeros(i * j + 1)
            counts[j:j + (i - 1) * j + 1] += table[i - 1][j]
            counts[:i * (j - 1) + 1] += table[i][j - 1]
            table[i][j] = counts
    return table[n][m]


def rank_ratio(base: Sequence[float], cur: Sequence[float], *, alpha: float
               ) -> tuple[float, tuple[float, float], float]:
    """Ratio cur/base of repeat medians: Hodges-Lehmann estimate, interval, p-value.

    The estimate is the median of all n x m ratios cur_j / base_i; the 1 - ``alpha``
    interval is the distribution-free one that inverts the exact two-sided Mann-Whitney
    test (order statistics of those ratios), so it lies beyond 1 exactly when p < alpha.
    Where no interval reaches that confidence (too few repeats) it is (0, inf).
    """
    lb, lc = np.log(np.asarray(base, dtype=np.float64)), np.log(np.asarray(cur, dtype=np.float64))
    d = np.sort(np.subtract.outer(lc, lb).ravel())
    cdf = np.cumsum(_u_null_counts(lb.size, lc.size))
    cdf /= cdf[-1]
    k = int(np.searchsorted(cdf, alpha / 2 * (1 + 1e-12), side="right"))
    ci = (float(np.exp(d[k - 1])), float(np.exp(d[d.size - k]))) if k else (0.0, float("inf"))
    u = float(np.sum(d < 0) + 0.5 * np.sum(d == 0))  # pairs where current is faster
    lower = cdf[int(np.floor(u))]
    upper = 1.0 - (cdf[int(np.ceil(u)) - 1] if u >= 1 else 0.0)
    p = min(1.0, 2 * min(lower, upper))
    return float(np.exp(np.median(d))), ci, float(p)


def repeat_noise(base: Sequence[float], cur: Sequence[float]) -> float:
    """Relative spread of one repeat's median: the robust SD (1.4826 x MAD) of the log
    repeat medians, pooled over both runs."""
    def robust_var(values: Sequence[float]) -> float:
        logs = np.log(np.asarray(values, dtype=np.float64))
        return float((1.4826 * np.median(np.abs(logs - np.median(logs)))) ** 2)

    return float(np.expm1(np.sqrt((robust_var(base) + robust_var(cur)) / 2)))


def run_median_ms(result: CaseResult) -> float | None:
    """A run's latency of a case: the median of its repeat medians (or its median)."""
    if result.status is not Status.OK or result.latency is None:
        return None
    lat = result.latency
    return float(np.median(lat.repeat_medians_ms)) if lat.repeat_medians_ms else lat.p50_ms


def history_noise(medians_ms: Sequence[float]) -> float | None:
    """Relative run-to-run change of a case: the robust SD (1.4826 x median absolute
    value) of the log ratios of successive runs, i.e. the noise of a comparison of two
    runs. Successive ratios keep a real step in the history from counting as noise
    more than once. ``None`` with fewer than ``MIN_HISTORY`` runs."""
    if len(medians_ms) < MIN_HISTORY:
        return None
    steps = np.diff(np.log(np.asarray(medians_ms, dtype=np.float64)))
    return float(np.expm1(1.4826 * np.median(np.abs(steps))))
