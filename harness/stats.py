"""The only place where latency samples become numbers.

Percentiles use linear interpolation between order statistics (numpy's default, the same
as ``statistics.quantiles(method="inclusive")``). The 95 % confidence interval of the median
is distribution-free: the pair of order statistics whose ranks bracket the median with at
least 95 % binomial probability (exact for n <= 1000, normal approximation above). Below
n = 6 no pair reaches 95 % (``[min, max]`` covers ``1 - 2 / 2**n``: 93.75 % at n = 5), so
the interval is ``None`` there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .records import LatencyStats, PeakBasis

NS_PER_MS = 1e6


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics bounding the median's CI, or ``None``
    when no pair of order statistics reaches ``confidence``.

    For n samples of a continuous distribution, the count B of samples below the true median
    is Binomial(n, 1/2), so the interval ``[X_(k), X_(n-1-k)]`` (0-based order statistics)
    covers the median with probability ``1 - 2 * P(B <= k)`` (W. J. Conover, *Practical
    Nonparametric Statistics*, 3rd ed., 1999, section 3.2, "confidence interval for a
    quantile"; also D. J. Sheskin's handbook). Chooses the narrowest such symmetric pair with
    coverage >= ``confidence``. The widest pair, ``[min, max]``, covers ``1 - 2 / 2**n``,
    which is below 95 % for n <= 5: then the result is ``None``. Above n = 1000 the ranks
    come from the normal approximation ``n/2 -+ z * sqrt(n) / 2``, widened by one rank.
    Raises ``ValueError`` for n < 1.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    if n > 1000:
        z = _normal_quantile(0.5 + confidence / 2)
        half = z * math.sqrt(n) / 2
        lo = max(0, math.floor(n / 2 - half) - 1)
        hi = min(n - 1, math.ceil(n / 2 + half))
        return lo, hi
    # Exact: [X_(k), X_(n-1-k)] (0-based) covers the median with 1 - 2 * P(B <= k).
    cdf = 0.0
    best: int | None = None
    for k in range((n + 1) // 2):
        cdf += math.comb(n, k) / 2**n
        if 1 - 2 * cdf < confidence:
            break
        best = k
    return (best, n - 1 - best) if best is not None else None


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687,
         138.3577518672690, -30.66479806614716, 2.506628277459239)
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866,
         66.80131188771972, -13.28068155288572)
    c = (-7.784894002430293e-03, -0.3223964580411365, -2.400758277161838,
         -2.549732539343734, 4.374664141464968, 2.938163982698783)
    d = (7.784695709041462e-03, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def latency_stats(
    samples_ns: Sequence[int],
    *,
    warmup_ns: Sequence[int] = (),
    init_ns: int = 0,
    first_inference_ns: int = 0,
    gflops: float | None = None,
    peak_gflops: float | None = None,
    cpu_samples_ns: Sequence[int] = (),
    batch: int = 1,
    peak: PeakBasis | None = None,
) -> LatencyStats:
    """Summarise per-iteration samples (nanoseconds) of one case.

    ``gflops`` is the model's cost of one inference; when known, the achieved GFLOP/s at the
    median is reported, and its share of the peak when that is known too: ``peak`` (the
    case's :func:`edgebench.peak.case_peak`, recorded with the stats) or a bare
    ``peak_gflops`` (GFLOP/s). ``batch``:
    images per inference (a model with a static batch); the per-image figures are added by
    :func:`per_image`.
    """
    if len(samples_ns) == 0:
        raise ValueError("no timed samples")
    ms = np.asarray(samples_ns, dtype=np.float64) / NS_PER_MS
    ordered = np.sort(ms)
    p50, p90, p99 = (float(v) for v in np.percentile(ordered, [50, 90, 99]))
    ranks = median_ci_ranks(len(ordered))
    gflops_per_s = gflops / (p50 / 1e3) if gflops and p50 > 0 else None
    if peak is not None:
        peak_gflops = peak.gops
    peak_share = gflops_per_s / peak_gflops if gflops_per_s and peak_gflops else None
    return per_image(LatencyStats(
        samples_ns=tuple(int(s) for s in samples_ns),
        warmup_ns=tuple(int(s) for s in warmup_ns),
        init_ns=int(init_ns),
        first_inference_ns=int(first_inference_ns),
        n=len(ordered),
        min_ms=float(ordered[0]),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(ordered.mean()),
        std_ms=float(ordered.std(ddof=1)) if len(ordered) > 1 else 0.0,
        max_ms=float(ordered[-1]),
        median_ci95_ms=(float(ordered[ranks[0]]), float(ordered[ranks[1]])) if ranks
        else None,
        throughput_ips=1e3 / p50 if p50 > 0 else 0.0,
        gflops_per_s=gflops_per_s,
        peak_share=peak_share,
        peak=peak if gflops_per_s else None,
        cpu_samples_ns=tuple(int(s) for s in cpu_samples_ns),
        cpu_p50_ms=float(np.median(cpu_samples_ns)) / NS_PER_MS if len(cpu_samples_ns)
        else None,
    ), batch)


def per_image(stats: LatencyStats, batch: int) -> LatencyStats:
    """``stats`` of inferences of ``batch`` images each, with the per-image figures: the
    median and its interval divided by ``batch`` (every image of a batch finishes when the
    batch does, so this is the cost of an image, not the wait for one) and
    ``images_per_s = batch * 1000 / p50_ms``. Also for stats made elsewhere (a native tool's
    summary). The per-image interval is ``None`` when the median's is (n < 6): dividing by
    ``batch`` keeps the coverage. Raises ``ValueError`` for a batch below 1."""
    if batch < 1:
        raise ValueError(f"a batch holds at least one image, not {batch}")
    ci = stats.median_ci95_ms
    return dataclasses.replace(
        stats, batch=batch, per_image_p50_ms=stats.p50_ms / batch,
        per_image_median_ci95_ms=(ci[0] / batch, ci[1] / batch) if ci is not None else None,
        images_per_s=batch * 1e3 / stats.p50_ms if stats.p50_ms > 0 else 0.0)
