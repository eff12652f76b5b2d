"""The regression gate's decisions on synthetic sample sets with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgebench.compare import Thresholds, Verdict, compare_reports, render_comparison
from edgebench.records import (
    SCHEMA_VERSION,
    Accuracy,
    Case,
    CaseResult,
    DeviceInfo,
    RunReport,
    RunSettings,
    RunState,
    RuntimeInfo,
    Status,
)
from edgebench.stats import latency_stats

INFO = DeviceInfo(uri="local", hostname="h", arch="x86_64", os="Linux", cpu_model="cpu",
                  cores=2, ram_bytes=1 << 30, python="3.11", governor="performance",
                  temperature_c=None)


def result(samples_ms: np.ndarray, *, model: str = "m@aaaa", backend: str = "onnxruntime",
           map50_95: float | None = 0.8, status: Status = Status.OK,
           runtime_version: str = "1.20", info: DeviceInfo = INFO) -> CaseResult:
    case = Case(id=f"{model}|fp32|{backend}|local|tauto", model=model, backend=backend,
                device="local", settings=RunSettings())
    if status is not Status.OK:
        return CaseResult(case=case, status=status, reason="load failed: boom", device=info)
    ns = [int(v * 1e6) for v in samples_ms]
    acc = Accuracy(status=Status.OK, reason=None, dataset="d", images=10, labelled=True,
                   map50_95=map50_95, map50=0.9)
    return CaseResult(case=case, status=Status.OK, device=info, latency=latency_stats(ns),
                      runtime=RuntimeInfo("onnxruntime", runtime_version, None),
                      accuracy=acc)


def report(*cases: CaseResult) -> RunReport:
    return RunReport(schema_version=SCHEMA_VERSION, tool_version="0", run_id="r",
                     created_at="2026-01-01T00:00:00+00:00", state=RunState.COMPLETE, host=INFO,
                     argv=(), cases=cases)


def noisy(median: float, n: int = 100, spread: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return median * (1 + spread * rng.standard_normal(n)) + rng.exponential(0.5, n)


def verdict(base: CaseResult, cur: CaseResult, **t: float) -> Verdict:
    comp = compare_reports(report(base), report(cur), Thresholds(**t))  # type: ignore[arg-type]
    (case,) = comp.cases
    return case.verdict


def test_identical_distributions_are_unchanged() -> None:
    assert verdict(result(noisy(20, seed=1)), result(noisy(20, seed=2))) is Verdict.UNCHANGED


def test_a_clear_slowdown_regresses() -> None:
    comp = compare_reports(report(result(noisy(20, seed=1))),
                           report(result(noisy(23, seed=2))), Thresholds())
    (case,) = comp.cases
    assert case.verdict is Verdict.REGRESSED
    assert case.ratio == pytest.approx(1.15, abs=0.02)
    assert case.ratio_ci95 is not None and 1.1 < case.ratio_ci95[0] < case.ratio < \
        case.ratio_ci95[1] < 1.2
    assert case.p_value is not None and case.p_value < 1e-10
    assert "latency +" in case.reasons[0]


def test_a_significant_but_small_change_does_not_regress() -> None:
    # 2 % slower, with 400 samples and little noise: significant, but under the 5 % threshold
    base, cur = result(noisy(20, 400, 0.005, 1)), result(noisy(20.4, 400, 0.005, 2))
    comp = compare_reports(report(base), report(cur), Thresholds())
    assert comp.cases[0].p_value is not None and comp.cases[0].p_value < 0.002
    assert comp.cases[0].verdict is Verdict.UNCHANGED


def test_a_large_but_insignificant_change_does_not_regress() -> None:
    # 10 % slower median on 5 wildly noisy samples: not significant
    base = result(np.array([10.0, 30.0, 12.0, 25.0, 19.0]))
    cur = result(np.array([11.0, 33.0, 13.0, 28.0, 21.0]))
    assert verdict(base, cur) is Verdict.UNCHANGED


def test_speedup_is_an_improvement() -> None:
    assert verdict(result(noisy(20, seed=1)), result(noisy(15, seed=2))) is Verdict.IMPROVED


def test_thresholds_are_configurable() -> None:
    base, cur = result(noisy(20, seed=1)), result(noisy(23, seed=2))
    assert verdict(base, cur, latency=0.2) is Verdict.UNCHANGED


def test_map_drop_regresses_even_when_faster() -> None:
    base = result(noisy(20, seed=1), map50_95=0.80)
    cur = result(noisy(15, seed=2), map50_95=0.79)  # -1.0 point
    comp = compare_reports(report(base), report(cur), Thresholds())
    (case,) = comp.cases
    assert case.verdict is Verdict.REGRESSED
    assert case.map_delta_points == pytest.approx(-1.0)
    assert any("mAP50-95 -1.00 points" in r for r in case.reasons)
    small = result(noisy(20, seed=2), map50_95=0.797)  # -0.3 point: under 0.5
    assert verdict(base, small) is Verdict.UNCHANGED


def test_a_case_that_now_fails_regresses_and_new_or_missing_cases_are_listed() -> None:
    base = report(result(noisy(20)), result(noisy(20), backend="ncnn"))
    cur = report(result(noisy(20), status=Status.FAILED), result(noisy(20), backend="litert"))
    comp = compare_reports(base, cur, Thresholds())
    verdicts = {c.key.split("|")[2]: c.verdict for c in comp.cases}
    assert verdicts == {"onnxruntime": Verdict.REGRESSED, "ncnn": Verdict.MISSING,
                        "litert": Verdict.NEW}


def test_changed_fingerprint_is_compared_but_flagged() -> None:
    other = dataclasses.replace(INFO, governor="powersave")
    base = result(noisy(20, seed=1))
    cur = result(noisy(20, seed=2), model="m@bbbb", runtime_version="1.21", info=other)
    comp = compare_reports(report(base), report(cur), Thresholds())
    (case,) = comp.cases
    assert case.verdict is Verdict.UNCHANGED
    text = "; ".join(case.fingerprint_changes)
    assert "model m@aaaa -> m@bbbb" in text and "onnxruntime 1.20 -> 1.21" in text
    assert "governor performance -> powersave" in text
    assert "⚠" in render_comparison(comp)


def test_render_lists_regressions_first() -> None:
    base = report(result(noisy(20, seed=1)), result(noisy(20, seed=1), backend="ncnn"))
    cur = report(result(noisy(20, seed=2)), result(noisy(25, seed=2), backend="ncnn"))
    text = render_comparison(compare_reports(base, cur, Thresholds()))
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| **regressed** | `m|fp32|ncnn")
    assert text.rstrip().endswith("1 regressed, 1 unchanged.")


def with_repeats(r: CaseResult, medians: list[float]) -> CaseResult:
    assert r.latency is not None
    return dataclasses.replace(r, latency=dataclasses.replace(
        r.latency, repeat_medians_ms=tuple(medians)))


def test_repeats_see_run_to_run_noise() -> None:
    # Within each run the samples are tight, so a sample-level test calls a 7 % shift
    # significant; the repeats show runs wander by +-6 %: not a regression.
    base = with_repeats(result(noisy(20, 300, 0.005, 1)), [19.0, 20.0, 21.2, 20.4, 19.3])
    cur = with_repeats(result(noisy(21.4, 300, 0.005, 2)), [20.2, 21.4, 22.5, 19.8, 21.9])
    comp = compare_reports(report(base), report(cur), Thresholds())
    (case,) = comp.cases
    assert case.test == "repeats" and case.verdict is Verdict.UNCHANGED
    assert case.p_value is not None and case.p_value > 0.01
    # the same shift with steady repeats is a regression
    steady_b = with_repeats(base, [20.0, 20.1, 19.9, 20.0, 20.2])
    steady_c = with_repeats(cur, [21.4, 21.5, 21.3, 21.6, 21.4])
    (case,) = compare_reports(report(steady_b), report(steady_c), Thresholds()).cases
    assert case.verdict is Verdict.REGRESSED and case.ratio == pytest.approx(1.07, abs=0.005)
    assert case.ratio_ci95 is not None and case.ratio_ci95[0] > 1.05


def test_welch_log_ratio_known_values() -> None:
    from scipy import stats

    from edgebench.compare import welch_log_ratio

    b, c = [10.0, 11.0, 12.0], [13.0, 14.0, 15.5]
    ratio, (lo, hi), p = welch_log_ratio(b, c)
    expected = stats.ttest_ind(np.log(c), np.log(b), equal_var=False)
    assert p == pytest.approx(expected.pvalue)
    assert ratio == pytest.approx(np.exp(np.log(c).mean() - np.log(b).mean()))
    assert lo < ratio < hi


def test_combine_repeats() -> None:
    from edgebench.repeats import combine

    first = result(noisy(20, 50, seed=1))
    second = result(noisy(22, 50, seed=2))
    merged = combine(combine(None, first), second)
    assert merged.latency is not None and merged.latency.n == 100
    assert merged.latency.repeat_medians_ms == pytest.approx(
        (first.latency.p50_ms, second.latency.p50_ms))  # type: ignore[union-attr]
    failed = result(noisy(20), status=Status.FAILED)
    broken = combine(merged, failed)
    assert broken.status is Status.FAILED and broken.reason == "repeat 3: load failed: boom"
    assert broken.latency == merged.latency  # what was measured is kept
