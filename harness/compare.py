"""Baseline vs current: per-case ratios, confidence intervals, significance, and the gate.

A case regresses only when its change is both larger than the threshold (latency: the
ratio above ``1 + latency``; accuracy: mAP50-95 down by more than ``map_points``) and, for
latency, statistically significant. Improvements are the mirror image. Cases whose
fingerprint changed (runtime version, governor, CPU, model file) are compared but flagged.

With repeats (``repeats >= 5`` a side, each repeat one runner process, see ``repeats.py``)
the unit of evidence is the repeat: the ratio is the Hodges-Lehmann estimate over the
repeat medians (the median of all current/baseline ratios of repeat medians), its
interval the distribution-free one that inverts the exact Mann-Whitney test on them, and
the change must clear the *effective* threshold: the configured one, or the noise of this
case if larger (``noise_factor`` x the spread of single repeats, robust SD of their log
medians). A shared machine moves whole repeats (another process, a busy neighbour core);
a change of the size repeats scatter by is what two runs of the same build can show, so
it is not called a regression. Ranks and medians keep one disturbed repeat from deciding.

Side by side (``edgebench run --baseline-model OLD``, :func:`side_by_side`), the baseline
is measured in the same run as the candidate, their repeats interleaved (A B B A A B ...):
whatever the machine does during the run falls on both alike, so the rank test's interval
holds as it is and the threshold is the configured one, not raised by the noise. On a
shared machine this is the comparison that can see a 10 % change; two separate runs
cannot see less than their run-to-run drift (``benchmarks/gate_validity.py``). Side by
side, the CPU time per inference (the runner process's, all threads) is a second witness
with the same test and threshold: busy neighbours stretch wall times by a random factor
per repeat but leave CPU times nearly alone, so a case regresses when either its latency
or its CPU time does. (Between separate runs the CPU time drifts too; there it is shown,
not judged.)

Without enough repeats (old reports, ``repeats = 1``) the test is asv's rule on the raw
samples: Mann-Whitney U below ``alpha`` and a bootstrap 95 % interval beyond 1, which only
holds on a quiet machine.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .comparability import (
    evaluation_changes,
    fingerprint_changes,
    input_size_change,
    match_key,
    pairing_key,
)
from .identity import CaseKey
from .reasons import summary
from .records import CaseResult, RunReport, Status
from .significance import (
    history_noise,
    mann_whitney_p,
    rank_ratio,
    ratio_ci,
    repeat_noise,
    run_median_ms,
)


class Verdict(enum.StrEnum):
    """What the gate says about one case; ``regressed`` fails ``edgebench compare``."""

    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    NEW = "new"
    MISSING = "missing"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Thresholds:
    """What change counts (``--latency-threshold``, ``--map-threshold``, ...)."""

    latency: float = 0.05
    """Relative change of the latency that matters (0.05 = 5 %)."""
    map_points: float = 0.5
    """mAP50-95 change that matters, in points (0.5 = 0.005)."""
    alpha: float = 0.002
    """Significance level of the Mann-Whitney U test on raw samples (no repeats)."""
    alpha_repeats: float = 0.01
    """Significance level of the rank test on repeat medians (its interval is 1 - this)."""
    noise_factor: float = 3.0
    """The effective latency threshold is at least this many times the case's noise: the
    scatter of single repeats (robust SD of their log medians, both runs pooled) and, with
    a history, the run-to-run change of its median (robust SD of successive log ratios)."""
    bootstrap: int = 2000


MIN_REPEATS = 5
"""Repeats a side for the repeats test: with 5 against 5 the exact rank test can reach
p = 0.008, below the default ``alpha_repeats``; with 4 against 4 it cannot go below 0.029."""


@dataclass(frozen=True)
class CaseComparison:
    """One case's verdict with its figures: p50 latencies in ms, the current/baseline
    ratio with its interval, the test's p-value, the noise and the threshold applied
    (relative), the mAP50-95 change in points, and why."""

    key: str
    verdict: Verdict
    baseline_p50_ms: float | None = None
    current_p50_ms: float | None = None
    ratio: float | None = None
    ratio_ci: tuple[float, float] | None = None
    ci_level: float | None = None
    """Confidence of ``ratio_ci``: 1 - alpha_repeats (repeats) or 0.95 (samples)."""
    p_value: float | None = None
    test: str | None = None
    """"repeats" (ranks of repeat medians) or "samples" (Mann-Whitney on raw samples)."""
    noise: float | None = None
    """Relative spread of a single repeat's median (repeats test only)."""
    run_noise: float | None = None
    """Relative run-to-run change of this case's median in the history (``None``: fewer
    than ``MIN_HISTORY`` earlier runs)."""
    threshold: float | None = None
    """The latency threshold applied: the configured one or ``noise_factor`` x the larger
    noise, whichever is larger."""
    map_delta_points: float | None = None
    reasons: tuple[str, ...] = ()
    fingerprint_changes: tuple[str, ...] = ()
    cpu_ratio: float | None = None
    """The same estimate on the repeats' median CPU time per inference (repeats test)."""
    cpu_ratio_ci: tuple[float, float] | None = None
    cpu_p_value: float | None = None


@dataclass(frozen=True)
class Comparison:
    """Every case of two reports (or of two models of one run) compared."""

    baseline: str
    current: str
    thresholds: Thresholds
    cases: tuple[CaseComparison, ...]
    side_by_side: bool = False
    """Both measured in one run, interleaved (see :func:`side_by_side`)."""

    def of(self, verdict: Verdict) -> list[CaseComparison]:
        """The cases with ``verdict``, in order."""
        return [c for c in self.cases if c.verdict is verdict]

    @property
    def overlapping(self) -> int:
        """How many cases both sides have."""
        return sum(c.verdict not in (Verdict.NEW, Verdict.MISSING) for c in self.cases)


def compare_case(key: str, base: CaseResult, cur: CaseResult, t: Thresholds,
                 *, history_ms: Sequence[float] = (), side_by_side: bool = False
                 ) -> CaseComparison:
    """``history_ms``: this case's run medians in earlier runs, oldest first (the baseline
    among them or not); with ``MIN_HISTORY`` or more their run-to-run noise counts.
    ``side_by_side``: both were measured in one run with interleaved repeats, so the noise
    does not raise the threshold (it is reported, and the rank test accounts for it)."""
    changes = fingerprint_changes(base, cur, same_model=not side_by_side)
    if base.status is not Status.OK or cur.status is not Status.OK or not (
            base.latency and cur.latency):
        why = (f"baseline {base.status.value}" if base.status is not Status.OK
               else f"current {cur.status.value}: {summary(cur.reason or '')}")
        verdict = Verdict.REGRESSED if (base.status is Status.OK
                                        and cur.status is Status.FAILED) else \
            Verdict.NOT_COMPARABLE
        return CaseComparison(key, verdict, reasons=(why,), fingerprint_changes=changes)
    if base.latency.batch != cur.latency.batch:  # a sample is one inference of the batch
        return CaseComparison(key, Verdict.NOT_COMPARABLE, reasons=(
            f"static batch {base.latency.batch} -> {cur.latency.batch}: a latency sample is "
            "one inference of the whole batch, so the two do not compare",),
            fingerprint_changes=changes)
    size_change = input_size_change(base, cur)
    if size_change is not None:
        return CaseComparison(key, Verdict.NOT_COMPARABLE, reasons=(size_change,),
                              fingerprint_changes=changes)
    b = np.asarray(base.latency.samples_ns, dtype=np.float64) / 1e6
    c = np.asarray(cur.latency.samples_ns, dtype=np.float64) / 1e6
    rb, rc = base.latency.repeat_medians_ms, cur.latency.repeat_medians_ms
    noise = None
    run_noise = history_noise(history_ms)
    if len(rb) >= MIN_REPEATS and len(rc) >= MIN_REPEATS:
        test, ci_level = "repeats", 1 - t.alpha_repeats
        ratio, ci, p = rank_ratio(rb, rc, alpha=t.alpha_repeats)
        significant = p < t.alpha_repeats
        noise = repeat_noise(rb, rc)
    else:
        test, ci_level = "samples", 0.95
        ratio = float(np.median(c) / np.median(b))
        ci = ratio_ci(b, c, resamples=t.bootstrap)
        p = mann_whitney_p(b, c)
        significant = p < t.alpha
    threshold = t.latency if side_by_side and test == "repeats" else max(
        [t.latency, *(float(np.expm1(t.noise_factor * np.log1p(n)))
                      for n in (noise, run_noise) if n is not None)])
    reasons: list[str] = []
    verdict = _latency_verdict("latency", ratio, ci, p, significant, threshold, t.latency,
                               reasons)
    cb, cc = base.latency.repeat_cpu_medians_ms, cur.latency.repeat_cpu_medians_ms
    cpu: tuple[float, tuple[float, float], float] | None = None
    if test == "repeats" and len(cb) >= MIN_REPEATS and len(cc) >= MIN_REPEATS:
        cpu = rank_ratio(cb, cc, alpha=t.alpha_repeats)
        if side_by_side:  # between separate runs the CPU time drifts: shown, not judged
            cpu_verdict = _latency_verdict("CPU time per inference", *cpu,
                                           cpu[2] < t.alpha_repeats, threshold, t.latency,
                                           reasons)
            if Verdict.REGRESSED in (verdict, cpu_verdict):
                verdict = Verdict.REGRESSED
            elif Verdict.IMPROVED in (verdict, cpu_verdict):
                verdict = Verdict.IMPROVED
    map_delta = None
    if (base.accuracy and cur.accuracy and base.accuracy.map50_95 is not None
            and cur.accuracy.map50_95 is not None):
        other_set = evaluation_changes(base.accuracy, cur.accuracy)
        if other_set:  # latency still compares; the mAP of another set does not
            reasons.append("mAP50-95 not compared: measured on another evaluation set ("
                           + "; ".join(other_set) + ")")
        else:
            map_delta = (cur.accuracy.map50_95 - base.accuracy.map50_95) * 100
    if map_delta is not None:
        if map_delta < -t.map_points:
            verdict = Verdict.REGRESSED
            reasons.append(f"mAP50-95 {map_delta:+.2f} points")
        elif map_delta > t.map_points and verdict is not Verdict.REGRESSED:
            verdict = Verdict.IMPROVED
            reasons.append(f"mAP50-95 {map_delta:+.2f} points")
    return CaseComparison(key, verdict, float(np.median(b)), float(np.median(c)), ratio, ci,
                          ci_level, p, test, noise, run_noise, threshold, map_delta,
                          tuple(reasons), changes, *(cpu or (None, None, None)))


def _latency_verdict(what: str, ratio: float, ci: tuple[float, float], p: float,
                     significant: bool, threshold: float, configured: float,
                     reasons: list[str]) -> Verdict:
    """Regressed / improved / unchanged for one time ratio; appends the reason."""
    change = f"{what} {(ratio - 1) * 100:+.1f} %"
    slower, faster = significant and ci[0] > 1, significant and ci[1] < 1
    if ratio > 1 + threshold and slower:
        reasons.append(f"{change} (p={p:.1e})")
        return Verdict.REGRESSED
    if ratio < 1 / (1 + threshold) and faster:
        reasons.append(f"{change} (p={p:.1e})")
        return Verdict.IMPROVED
    if (ratio > 1 + configured and slower) or (ratio < 1 / (1 + configured) and faster):
        reasons.append(f"{change} is within this case's noise (threshold "
                       f"{threshold * 100:.1f} %)")
    return Verdict.UNCHANGED


def compare_reports(baseline: RunReport, current: RunReport, thresholds: Thresholds,
                    *, baseline_name: str = "baseline", current_name: str = "current",
                    history: Sequence[RunReport] = ()) -> Comparison:
    """``history``: earlier runs, oldest first (the results directory); each case's
    medians there give its run-to-run noise (see :func:`history_noise`)."""
    base = {match_key(r): r for r in baseline.tracked_cases()}
    cur = {match_key(r): r for r in current.tracked_cases()}
    medians: dict[str, list[tuple[tuple[int, int] | None, float]]] = {}
    for run in history:
        for r in run.tracked_cases():
            median = run_median_ms(r)
            if median is not None:
                medians.setdefault(match_key(r), []).append((r.input_hw(), median))
    cases = []
    for key in sorted(base.keys() | cur.keys()):
        if key not in base:
            cases.append(CaseComparison(key, Verdict.NEW))
        elif key not in cur:
            cases.append(CaseComparison(key, Verdict.MISSING))
        else:
            hw = cur[key].input_hw()  # runs at another input size are not its noise
            cases.append(compare_case(key, base[key], cur[key], thresholds, history_ms=[
                m for h, m in medians.get(key, ()) if h is None or hw is None or h == hw]))
    return Comparison(baseline_name, current_name, thresholds, tuple(cases))


def side_by_side(report: RunReport, baseline_model: str, thresholds: Thresholds,
                 *, name: str = "run") -> Comparison:
    """Every other model's cases against the cases of ``baseline_model`` (a model label,
    ``stem@sha8``) with the same pipeline, backend, device and settings, all measured in
    ``report``'s run with their repeats interleaved (``edgebench run --baseline-model``)."""
    def rest(r: CaseResult) -> CaseKey:
        return pairing_key(r).replace(model="")

    base = {rest(r): r for r in report.cases if r.case.model == baseline_model}
    cases = []
    for r in report.cases:
        if r.case.model == baseline_model:
            continue
        key = match_key(r)
        if rest(r) not in base:
            cases.append(CaseComparison(key, Verdict.NEW))
        else:
            cases.append(compare_case(key, base[rest(r)], r, thresholds, side_by_side=True))
    return Comparison(f"{name}: {baseline_model}", f"{name}: the other models", thresholds,
                      tuple(cases), side_by_side=True)
