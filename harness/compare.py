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

from .records import Accuracy, CaseResult, RunReport, Status


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


MIN_HISTORY = 5
"""Earlier runs of a case needed before their run-to-run noise raises its threshold."""

MIN_REPEATS = 5
"""Repeats a side for the repeats test: with 5 against 5 the exact rank test can reach
p = 0.008, below the default ``alpha_repeats``; with 4 against 4 it cannot go below 0.029."""


@dataclass(frozen=True)
class CaseComparison:
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
    baseline: str
    current: str
    thresholds: Thresholds
    cases: tuple[CaseComparison, ...]
    side_by_side: bool = False
    """Both measured in one run, interleaved (see :func:`side_by_side`)."""

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


def fingerprint_changes(base: CaseResult, cur: CaseResult, *, same_model: bool = True
                        ) -> tuple[str, ...]:
    """What differs between the two cases' setups; ``same_model=False``: the model is meant
    to differ (side by side), so that is not a change."""
    changes = []
    if same_model and base.case.model != cur.case.model:
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
    before = base.artifact.precision if base.artifact is not None else None
    after = cur.artifact.precision if cur.artifact is not None else None
    if before and after and before != after:
        changes.append(f"precision {before} -> {after}")
    return tuple(changes)


def _hw(hw: tuple[int, int] | None) -> str:
    return f"{hw[0]}x{hw[1]}" if hw is not None else "?"


def input_size_change(base: CaseResult, cur: CaseResult) -> str | None:
    """Why two cases do not compare when they ran at different input sizes (H x W): the
    latency and the mAP both change with the input size by design. ``None``: same size
    (or a side's size unknown)."""
    before, after = base.input_hw(), cur.input_hw()
    if before is None or after is None or before == after:
        return None
    return (f"input size {_hw(before)} -> {_hw(after)} (H x W): latency and mAP both change "
            "with the input size, so the two do not compare")


def evaluation_changes(base: Accuracy, cur: Accuracy) -> tuple[str, ...]:
    """What differs between the two evaluation sets, each a phrase; empty: the same set.

    The set's identity is its content fingerprint when both reports have one, else its name
    (a path) and the images left out; the image count and conf / iou always count.
    """
    changes = []
    if base.dataset_fingerprint is not None and cur.dataset_fingerprint is not None:
        if base.dataset_fingerprint != cur.dataset_fingerprint:
            changes.append(f"dataset {base.dataset} -> {cur.dataset} (content "
                           f"{base.dataset_fingerprint[:8]} -> {cur.dataset_fingerprint[:8]})"
                           if base.dataset != cur.dataset else
                           f"dataset content {base.dataset_fingerprint[:8]} -> "
                           f"{cur.dataset_fingerprint[:8]}")
    elif base.dataset != cur.dataset:
        changes.append(f"dataset {base.dataset} -> {cur.dataset}")
    if base.images != cur.images:
        changes.append(f"images evaluated {base.images} -> {cur.images}")
    if set(base.left_out) != set(cur.left_out):
        changes.append(f"images left out {len(base.left_out)} -> {len(cur.left_out)}"
                       if len(base.left_out) != len(cur.left_out) else
                       "other images left out")
    if base.conf != cur.conf:
        changes.append(f"conf {base.conf:g} -> {cur.conf:g}")
    if base.iou != cur.iou:
        changes.append(f"iou {base.iou:g} -> {cur.iou:g}")
    return tuple(changes)


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
               else f"current {cur.status.value}: {cur.reason}")
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
    def rest(r: CaseResult) -> str:
        return match_key(r).split("|", 1)[1]

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


def render_comparison(comp: Comparison) -> str:
    """A Markdown table, regressions first."""
    order = [Verdict.REGRESSED, Verdict.IMPROVED, Verdict.NOT_COMPARABLE, Verdict.UNCHANGED,
             Verdict.NEW, Verdict.MISSING]
    t = comp.thresholds
    if comp.side_by_side:
        rule = (f"Measured side by side in one run (repeats interleaved A B B A ...). A case "
                f"regresses when its latency, or its CPU time per inference, grows by more "
                f"than {t.latency * 100:g} % and the change is significant:")
    else:
        rule = (f"A case regresses when its latency grows by more than {t.latency * 100:g} % "
                f"(or {t.noise_factor:g} x its noise, if larger: the scatter of its repeats, "
                f"and its run-to-run change over >= {MIN_HISTORY} earlier runs) and the "
                f"change is significant:")
    lines = [f"# edgebench compare: {comp.current} vs {comp.baseline}", "",
             f"{rule} with >= {MIN_REPEATS} repeats a side, the ratio of "
             f"repeat medians and its {(1 - t.alpha_repeats) * 100:g} % distribution-free "
             f"interval (rank test p < {t.alpha_repeats:g}); else Mann-Whitney on the samples "
             f"p < {t.alpha:g} and a 95 % bootstrap interval. mAP50-95: "
             f"{t.map_points:g} points.", "",
             "| verdict | case | baseline p50 ms | current p50 ms | ratio | ratio CI | p | "
             "CPU time ratio (CI) | test | noise % repeats / runs / threshold % | "
             "ΔmAP50-95 pts | why | fingerprint changes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for verdict in order:
        for c in comp.of(verdict):
            lines.append("| " + " | ".join([
                f"**{c.verdict.value}**" if c.verdict is Verdict.REGRESSED else c.verdict.value,
                f"`{c.key}`",
                _f(c.baseline_p50_ms, ".2f"), _f(c.current_p50_ms, ".2f"),
                _f(c.ratio, ".3f"),
                f"{c.ratio_ci[0]:.3f}–{c.ratio_ci[1]:.3f} ({c.ci_level or 0.95:.0%})"
                if c.ratio_ci else "–",
                _f(c.p_value, ".1e"),
                f"{c.cpu_ratio:.3f} ({c.cpu_ratio_ci[0]:.3f}–{c.cpu_ratio_ci[1]:.3f})"
                if c.cpu_ratio is not None and c.cpu_ratio_ci else "–",
                c.test or "–",
                " / ".join(_f(v * 100 if v is not None else None, ".1f")
                           for v in (c.noise, c.run_noise, c.threshold)),
                _f(c.map_delta_points, "+.2f"),
                "; ".join(c.reasons) or "–",
                "⚠ " + "; ".join(c.fingerprint_changes) if c.fingerprint_changes else "–",
            ]) + " |")
    counts = ", ".join(f"{len(comp.of(v))} {v.value}" for v in order if comp.of(v))
    lines += ["", f"{counts}."]
    return "\n".join(lines) + "\n"


def _f(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "–"
