"""Baseline vs current: per-case ratios, confidence intervals, significance, and the gate.

A case regresses only when its change is both larger than the threshold (latency: the
ratio of medians above ``1 + latency``; accuracy: mAP50-95 down by more than ``map_points``)
and, for latency, statistically significant: a two-sided Mann-Whitney U test on the raw
samples below ``alpha`` (asv's rule) and a bootstrap 95 % interval of the ratio of medians
that lies entirely beyond 1. Improvements are the mirror image. Cases whose fingerprint
changed (runtime version, governor, CPU, model file) are compared but flagged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .records import CaseResult, RunReport, Status


class Verdict(enum.StrEnum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    NEW = "new"
    MISSING = "missing"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Thresholds:
    latency: float = 0.05
    """Relative change of the median that matters (0.05 = 5 %)."""
    map_points: float = 0.5
    """mAP50-95 change that matters, in points (0.5 = 0.005)."""
    alpha: float = 0.002
    """Significance level of the Mann-Whitney U test on raw samples (one run per side)."""
    alpha_repeats: float = 0.01
    """Significance level of Welch's t-test on repeat medians (>= 3 repeats per side)."""
    bootstrap: int = 2000


@dataclass(frozen=True)
class CaseComparison:
    key: str
    verdict: Verdict
    baseline_p50_ms: float | None = None
    current_p50_ms: float | None = None
    ratio: float | None = None
    ratio_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    test: str | None = None
    """"repeats" (Welch on repeat medians) or "samples" (Mann-Whitney on raw samples)."""
    map_delta_points: float | None = None
    reasons: tuple[str, ...] = ()
    fingerprint_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    baseline: str
    current: str
    thresholds: Thresholds
    cases: tuple[CaseComparison, ...]

    def of(self, verdict: Verdict) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict is verdict]

    @property
    def overlapping(self) -> int:
        return sum(c.verdict not in (Verdict.NEW, Verdict.MISSING) for c in self.cases)


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


def welch_log_ratio(base: Sequence[float], cur: Sequence[float]
                    ) -> tuple[float, tuple[float, float], float]:
    """Ratio of geometric means of repeat medians, its 95 % CI and Welch's p-value.

    Logs make the test about ratios; Welch's test does not assume equal noise on both
    sides. The repeats' spread *is* the run-to-run noise, so this test sees it.
    """
    from scipy import stats

    lb, lc = np.log(np.asarray(base)), np.log(np.asarray(cur))
    diff = float(lc.mean() - lb.mean())
    vb, vc = lb.var(ddof=1) / lb.size, lc.var(ddof=1) / lc.size
    se = float(np.sqrt(vb + vc))
    if se == 0.0:
        return float(np.exp(diff)), (float(np.exp(diff)), float(np.exp(diff))), \
            (1.0 if diff == 0 else 0.0)
    df = (vb + vc) ** 2 / (vb**2 / (lb.size - 1) + vc**2 / (lc.size - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return float(np.exp(diff)), (float(np.exp(diff - half)), float(np.exp(diff + half))), p


def match_key(result: CaseResult) -> str:
    """The case id without the model's content hash: a changed model file still compares."""
    case = result.case
    model = case.model.split("@")[0]
    parts = [model, "+".join(case.pipeline) or "fp32", case.backend, case.device,
             f"t{case.settings.threads or 'auto'}"]
    options = case.settings.backend_options.get(case.backend)
    if options:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(options.items())))
    return "|".join(parts)


def fingerprint_changes(base: CaseResult, cur: CaseResult) -> tuple[str, ...]:
    changes = []
    if base.case.model != cur.case.model:
        changes.append(f"model {base.case.model} -> {cur.case.model}")
    if base.device and cur.device:
        for field in ("arch", "cpu_model", "cores", "governor", "os"):
            a, b = getattr(base.device, field), getattr(cur.device, field)
            if a != b:
                changes.append(f"{field} {a} -> {b}")
    if base.runtime and cur.runtime and base.runtime.version != cur.runtime.version:
        changes.append(f"{cur.runtime.name} {base.runtime.version} -> {cur.runtime.version}")
    if base.case.settings != cur.case.settings:
        changes.append("run settings differ")
    return tuple(changes)


def compare_case(key: str, base: CaseResult, cur: CaseResult, t: Thresholds) -> CaseComparison:
    changes = fingerprint_changes(base, cur)
    if base.status is not Status.OK or cur.status is not Status.OK or not (
            base.latency and cur.latency):
        why = (f"baseline {base.status.value}" if base.status is not Status.OK
               else f"current {cur.status.value}: {cur.reason}")
        verdict = Verdict.REGRESSED if (base.status is Status.OK
                                        and cur.status is Status.FAILED) else \
            Verdict.NOT_COMPARABLE
        return CaseComparison(key, verdict, reasons=(why,), fingerprint_changes=changes)
    b = np.asarray(base.latency.samples_ns, dtype=np.float64) / 1e6
    c = np.asarray(cur.latency.samples_ns, dtype=np.float64) / 1e6
    rb, rc = base.latency.repeat_medians_ms, cur.latency.repeat_medians_ms
    if len(rb) >= 3 and len(rc) >= 3:
        test = "repeats"
        ratio, ci, p = welch_log_ratio(rb, rc)
        significant = p < t.alpha_repeats
    else:
        test = "samples"
        ratio = float(np.median(c) / np.median(b))
        ci = ratio_ci(b, c, resamples=t.bootstrap)
        p = mann_whitney_p(b, c)
        significant = p < t.alpha
    reasons: list[str] = []
    verdict = Verdict.UNCHANGED
    if ratio > 1 + t.latency and significant and ci[0] > 1:
        verdict = Verdict.REGRESSED
        reasons.append(f"latency +{(ratio - 1) * 100:.1f} % (p={p:.1e})")
    elif ratio < 1 / (1 + t.latency) and significant and ci[1] < 1:
        verdict = Verdict.IMPROVED
        reasons.append(f"latency {(ratio - 1) * 100:.1f} % (p={p:.1e})")
    map_delta = None
    if (base.accuracy and cur.accuracy and base.accuracy.map50_95 is not None
            and cur.accuracy.map50_95 is not None):
        map_delta = (cur.accuracy.map50_95 - base.accuracy.map50_95) * 100
        if map_delta < -t.map_points:
            verdict = Verdict.REGRESSED
            reasons.append(f"mAP50-95 {map_delta:+.2f} points")
        elif map_delta > t.map_points and verdict is not Verdict.REGRESSED:
            verdict = Verdict.IMPROVED
            reasons.append(f"mAP50-95 {map_delta:+.2f} points")
    return CaseComparison(key, verdict, float(np.median(b)), float(np.median(c)), ratio, ci, p,
                          test, map_delta, tuple(reasons), changes)


def compare_reports(baseline: RunReport, current: RunReport, thresholds: Thresholds,
                    *, baseline_name: str = "baseline", current_name: str = "current"
                    ) -> Comparison:
    base = {match_key(r): r for r in baseline.cases}
    cur = {match_key(r): r for r in current.cases}
    cases = []
    for key in sorted(base.keys() | cur.keys()):
        if key not in base:
            cases.append(CaseComparison(key, Verdict.NEW))
        elif key not in cur:
            cases.append(CaseComparison(key, Verdict.MISSING))
        else:
            cases.append(compare_case(key, base[key], cur[key], thresholds))
    return Comparison(baseline_name, current_name, thresholds, tuple(cases))


def render_comparison(comp: Comparison) -> str:
    """A Markdown table, regressions first."""
    order = [Verdict.REGRESSED, Verdict.IMPROVED, Verdict.NOT_COMPARABLE, Verdict.UNCHANGED,
             Verdict.NEW, Verdict.MISSING]
    lines = [f"# edgebench compare: {comp.current} vs {comp.baseline}", "",
             f"Thresholds: latency {comp.thresholds.latency * 100:g} % and significant "
             f"(Welch on repeat medians p < {comp.thresholds.alpha_repeats:g} with >= 3 "
             f"repeats a side, else Mann-Whitney on samples p < {comp.thresholds.alpha:g}; "
             f"the ratio's 95 % CI beyond 1); mAP50-95 {comp.thresholds.map_points:g} "
             "points.", "",
             "| verdict | case | baseline p50 ms | current p50 ms | ratio | ratio 95% CI | p | "
             "test | ΔmAP50-95 pts | why | fingerprint changes |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|"]
    for verdict in order:
        for c in comp.of(verdict):
            lines.append("| " + " | ".join([
                f"**{c.verdict.value}**" if c.verdict is Verdict.REGRESSED else c.verdict.value,
                f"`{c.key}`",
                _f(c.baseline_p50_ms, ".2f"), _f(c.current_p50_ms, ".2f"),
                _f(c.ratio, ".3f"),
                f"{c.ratio_ci95[0]:.3f}–{c.ratio_ci95[1]:.3f}" if c.ratio_ci95 else "–",
                _f(c.p_value, ".1e"), c.test or "–", _f(c.map_delta_points, "+.2f"),
                "; ".join(c.reasons) or "–",
                "⚠ " + "; ".join(c.fingerprint_changes) if c.fingerprint_changes else "–",
            ]) + " |")
    counts = ", ".join(f"{len(comp.of(v))} {v.value}" for v in order if comp.of(v))
    lines += ["", f"{counts}."]
    return "\n".join(lines) + "\n"


def _f(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "–"
