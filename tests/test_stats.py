"""Statistics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from edgebench.stats import _normal_quantile, latency_stats, median_ci_ranks

MS = 1_000_000


def test_percentiles_mean_std_by_hand() -> None:
    samples = [k * MS for k in (7, 1, 10, 3, 5, 2, 9, 4, 8, 6)]  # 1..10 ms, shuffled
    s = latency_stats(samples, warmup_ns=[50 * MS], init_ns=3 * MS, first_inference_ns=20 * MS)
    assert s.n == 10
    assert s.min_ms == 1.0 and s.max_ms == 10.0
    # linear interpolation: position (n-1)q on the sorted samples
    assert s.p50_ms == pytest.approx(5.5)   # between 5 and 6
    assert s.p90_ms == pytest.approx(9.1)   # 9 + 0.1 * (10 - 9)
    assert s.p99_ms == pytest.approx(9.91)  # 9 + 0.91 * (10 - 9)
    assert s.mean_ms == pytest.approx(5.5)
    assert s.std_ms == pytest.approx(math.sqrt(sum((k - 5.5) ** 2 for k in range(1, 11)) / 9))
    assert s.throughput_ips == pytest.approx(1000 / 5.5)
    assert s.samples_ns == tuple(samples)  # raw samples kept in order
    assert s.warmup_ns == (50 * MS,) and s.init_ns == 3 * MS and s.first_inference_ns == 20 * MS


def test_median_ci_small_n_matches_binomial_table() -> None:
    # n = 10: [x(2), x(9)] (1-based) covers 1 - 2 * 11/1024 = 97.85 %; [x(3), x(8)] only 89 %.
    assert median_ci_ranks(10) == (1, 8)
    s = latency_stats([k * MS for k in range(1, 11)])
    assert s.median_ci95_ms == (2.0, 9.0)
    # n = 100: the textbook ranks are 40 and 61 (1-based).
    assert median_ci_ranks(100) == (39, 60)


def test_median_ci_coverage_is_at_least_95_percent() -> None:
    for n in (6, 7, 20, 51, 200, 999):
        lo, hi = median_ci_ranks(n)
        assert hi == n - 1 - lo  # symmetric
        below = sum(math.comb(n, k) for k in range(lo + 1)) / 2**n
        assert 1 - 2 * below >= 0.95, n
        # and the next narrower interval would not be
        below_next = sum(math.comb(n, k) for k in range(lo + 2)) / 2**n
        assert 1 - 2 * below_next < 0.95, n


def test_median_ci_large_n_normal_approximation_is_close_to_exact() -> None:
    lo, hi = median_ci_ranks(2000)
    half = 1.959964 * math.sqrt(2000) / 2
    assert abs(lo - (1000 - half)) <= 2 and abs(hi - (1000 + half)) <= 2
    assert lo < 1000 < hi


def test_below_six_samples_there_is_no_95_percent_interval() -> None:
    # [min, max] of n samples covers the median with 1 - 2 / 2**n: 93.75 % at n = 5,
    # 96.9 % at n = 6 (binomial, computed here independently of the code).
    for n in range(1, 6):
        assert 1 - 2 / 2**n < 0.95
        assert median_ci_ranks(n) is None, n
    assert 1 - 2 / 2**6 >= 0.95 and median_ci_ranks(6) == (0, 5)
    s = latency_stats([k * MS for k in (28, 1933, 30, 29, 31)])
    assert s.median_ci95_ms is None and s.per_image_median_ci95_ms is None
    assert latency_stats([k * MS for k in (28, 1933, 30, 29, 31)], batch=2) \
        .per_image_median_ci95_ms is None
    s = latency_stats([MS])
    assert s.median_ci95_ms is None and s.std_ms == 0.0
    six = latency_stats([k * MS for k in range(1, 7)], batch=2)
    assert six.median_ci95_ms == (1.0, 6.0) and six.per_image_median_ci95_ms == (0.5, 3.0)


def test_markdown_report_shows_a_dash_and_says_why_without_an_interval() -> None:
    from test_records_and_schema import sample_report

    from edgebench.reports.html import render_html
    from edgebench.reports.markdown import NO_CI_NOTE, render_markdown

    report = sample_report()  # its measured case has 3 samples
    text = render_markdown(report)
    assert "| –¹ |" in text and NO_CI_NOTE in text
    assert NO_CI_NOTE.startswith("¹ No 95 % interval of the median")
    assert "No 95 % interval of the median" in render_html(report)


def test_normal_quantile() -> None:
    assert _normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert _normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
    assert _normal_quantile(0.01) == pytest.approx(-2.326348, abs=1e-6)


def test_achieved_gflops_and_share_of_peak() -> None:
    s = latency_stats([4 * MS, 5 * MS, 6 * MS], gflops=2.0, peak_gflops=100.0)
    assert s.gflops_per_s == pytest.approx(2.0 / 0.005)
    assert s.peak_share == pytest.approx(4.0)
    unknown = latency_stats([5 * MS])
    assert unknown.gflops_per_s is None and unknown.peak_share is None


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError):
        latency_stats([])


def test_map_axis_keeps_runtime_noise_on_one_line() -> None:
    """mAP values 1e-5 apart (MNN vs the others, floating-point noise) must not be spread
    over the whole latency-vs-mAP axis: the axis spans at least 2 mAP points."""
    from edgebench.reports.html import MIN_MAP_SPAN, map_axis_limits

    low, high = map_axis_limits([0.8213630, 0.8213719])
    assert high - low >= MIN_MAP_SPAN and low < 0.8213630 and high > 0.8213719
    low, high = map_axis_limits([0.55, 0.82])  # a real spread keeps its own range
    assert low < 0.55 and high > 0.82 and high - low < 0.35
