"""The regression gate's decisions on synthetic sample sets with known answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgebench.compare import Thresholds, Verdict, compare_reports
from edgebench.records import (
    SCHEMA_VERSION,
    Accuracy,
    Artifact,
    Case,
    CaseResult,
    DeviceInfo,
    RunReport,
    RunSettings,
    RunState,
    RuntimeInfo,
    Status,
)
from edgebench.reports.comparison import render_comparison
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
    assert case.ratio_ci is not None and 1.1 < case.ratio_ci[0] < case.ratio < \
        case.ratio_ci[1] < 1.2
    assert case.test == "samples" and case.ci_level == 0.95 and case.threshold == 0.05
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


def test_a_changed_precision_is_compared_but_flagged() -> None:
    """The same model file name that now holds fp16 weights (the graph says so) is still
    compared with last night's fp32 case, and the change is named."""
    base, cur = result(noisy(20, seed=1)), result(noisy(20, seed=2), model="m@bbbb")
    art = Artifact(path="m.onnx", format="onnx", sha256="a" * 64, size_bytes=1)
    base = dataclasses.replace(base, artifact=dataclasses.replace(art, precision="fp32"))
    cur = dataclasses.replace(cur, artifact=dataclasses.replace(art, precision="fp16"),
                              case=dataclasses.replace(cur.case, id="m@bbbb|fp16|onnxruntime|"
                                                                    "local|tauto"))
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert "precision fp32 -> fp16" in case.fingerprint_changes


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
    assert case.ratio_ci is not None and case.ratio_ci[0] > 1.05 and case.ci_level == 0.99
    assert case.threshold == 0.05 and case.noise is not None and case.noise < 0.01


def test_one_disturbed_repeat_does_not_decide() -> None:
    # A burst of load doubles one repeat of the current run: ranks and medians shrug it off.
    base = with_repeats(result(noisy(20, seed=1)), [20.0, 20.1, 19.9, 20.0, 20.2, 20.1])
    same = with_repeats(result(noisy(20, seed=2)), [20.1, 19.9, 40.0, 20.0, 20.2, 20.0])
    (case,) = compare_reports(report(base), report(same), Thresholds()).cases
    assert case.verdict is Verdict.UNCHANGED and case.ratio == pytest.approx(1.0, abs=0.01)
    slow = with_repeats(result(noisy(22, seed=2)), [22.1, 21.9, 44.0, 22.0, 22.2, 22.0])
    (case,) = compare_reports(report(base), report(slow), Thresholds()).cases
    assert case.verdict is Verdict.REGRESSED and case.ratio == pytest.approx(1.1, abs=0.01)


def test_a_change_within_the_repeats_noise_is_not_a_regression() -> None:
    # Repeats scatter by ~3 % (robust SD), so the effective threshold is 3 x 3 % = 9.2 %:
    # +8 %, although every current repeat is slower than every baseline one, is noise.
    spread = [0.97, 0.98, 1.0, 1.01, 1.03]
    base = with_repeats(result(noisy(20, seed=1)), [20 * f for f in spread])
    cur = with_repeats(result(noisy(21.6, seed=2)), [21.6 * f for f in spread])
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.noise == pytest.approx(0.0301, abs=0.001)
    assert case.threshold == pytest.approx(1.0301**3 - 1, abs=0.002)
    assert case.p_value is not None and case.p_value < 0.01 and case.ratio is not None
    assert 1.05 < case.ratio < 1 + case.threshold
    assert case.verdict is Verdict.UNCHANGED and "within this case's noise" in case.reasons[0]
    assert verdict(base, cur, noise_factor=1.0) is Verdict.REGRESSED
    # +15 % clears the noise
    faster = with_repeats(result(noisy(17, seed=2)), [20 / 1.15 * f for f in spread])
    slower = with_repeats(result(noisy(23, seed=2)), [23 * f for f in spread])
    assert verdict(base, slower) is Verdict.REGRESSED
    assert verdict(base, faster) is Verdict.IMPROVED


def test_history_run_to_run_noise_raises_the_threshold() -> None:
    base = with_repeats(result(noisy(20, seed=1)), [20.0, 20.1, 19.9, 20.0, 20.2])
    cur = with_repeats(result(noisy(21.4, seed=2)), [21.4, 21.5, 21.3, 21.6, 21.4])
    # earlier nights of the same build wandered by +-6 % from run to run
    wandering = [20.0, 21.2, 19.9, 21.1, 20.0, 21.3]
    runs = [report(with_repeats(result(noisy(m, seed=i)), [m] * 5))
            for i, m in enumerate(wandering)]
    comp = compare_reports(report(base), report(cur), Thresholds(), history=runs)
    (case,) = comp.cases
    assert case.run_noise == pytest.approx(np.expm1(1.4826 * np.log(1.06)), rel=0.05)
    assert case.threshold is not None and case.threshold > 0.2
    assert case.verdict is Verdict.UNCHANGED and "noise" in case.reasons[0]
    # a steady history leaves the configured threshold; too short a history is ignored
    steady = [report(with_repeats(result(noisy(20, seed=i)), [20.0 + i / 100] * 5))
              for i in range(6)]
    (case,) = compare_reports(report(base), report(cur), Thresholds(), history=steady).cases
    assert case.verdict is Verdict.REGRESSED and case.threshold == 0.05
    (case,) = compare_reports(report(base), report(cur), Thresholds(), history=runs[:4]).cases
    assert case.run_noise is None and case.verdict is Verdict.REGRESSED
    # failed runs and other cases do not count
    other = [report(result(noisy(20), backend="ncnn")), report(result(noisy(20),
                                                                      status=Status.FAILED))]
    (case,) = compare_reports(report(base), report(cur), Thresholds(),
                              history=[*runs[:4], *other]).cases
    assert case.run_noise is None


def test_history_noise_known_values() -> None:
    from edgebench.significance import history_noise

    assert history_noise([10.0, 11.0, 10.0, 11.0]) is None  # fewer than 5 runs
    assert history_noise([10.0, 11.0, 10.0, 11.0, 10.0]) == pytest.approx(
        np.expm1(1.4826 * np.log(1.1)))
    # one real step among steady runs is not noise
    assert history_noise([10.0, 10.0, 10.0, 12.0, 12.0, 12.0]) == 0.0


def test_too_few_repeats_fall_back_to_the_samples_test() -> None:
    base = with_repeats(result(noisy(20, seed=1)), [20.0, 20.1, 19.9, 20.0])
    cur = with_repeats(result(noisy(23, seed=2)), [23.0, 23.1, 22.9, 23.0])
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.test == "samples" and case.noise is None and case.verdict is Verdict.REGRESSED


def test_rank_ratio_matches_the_exact_mann_whitney_test() -> None:
    from scipy import stats

    from edgebench.significance import rank_ratio

    rng = np.random.default_rng(3)
    for _ in range(200):
        n, m = (int(v) for v in rng.integers(3, 10, 2))
        b = np.exp(rng.normal(0, 0.03, n))
        c = np.exp(rng.normal(rng.choice([0.0, 0.03, 0.1]), 0.03, m))
        ratio, (lo, hi), p = rank_ratio(b, c, alpha=0.01)
        assert p == pytest.approx(stats.mannwhitneyu(c, b, method="exact").pvalue)
        assert ratio == pytest.approx(np.exp(np.median(np.log(np.divide.outer(c, b)))))
        assert (p < 0.01) == (lo > 1 or hi < 1)  # the interval inverts the test
    # 5 against 5, fully separated: p = 2 / C(10, 5); the 99 % interval is [min, max]
    ratio, ci, p = rank_ratio([1.0, 1.1, 1.2, 1.3, 1.4], [2.0, 2.1, 2.2, 2.3, 2.4], alpha=0.01)
    assert p == pytest.approx(2 / 252) and ci == pytest.approx((2.0 / 1.4, 2.4 / 1.0))
    # 4 against 4 can never reach p < 0.01: no interval has that confidence
    _, ci, p = rank_ratio([1.0, 1.1, 1.2, 1.3], [2.0, 2.1, 2.2, 2.3], alpha=0.01)
    assert p == pytest.approx(2 / 70) and ci == (0.0, float("inf"))


def test_mann_whitney_null_distribution() -> None:
    from math import comb

    from edgebench.significance import _u_null_counts

    assert list(_u_null_counts(2, 2)) == [1, 1, 2, 1, 1]
    for n, m in ((5, 5), (3, 7), (8, 6)):
        counts = _u_null_counts(n, m)
        assert counts.sum() == comb(n + m, n) and list(counts) == list(counts[::-1])


def test_render_shows_noise_and_threshold() -> None:
    base = with_repeats(result(noisy(20, seed=1)), [20.0, 20.1, 19.9, 20.0, 20.2])
    cur = with_repeats(result(noisy(21.4, seed=2)), [21.4, 21.5, 21.3, 21.6, 21.4])
    text = render_comparison(compare_reports(report(base), report(cur), Thresholds()))
    row = next(line for line in text.splitlines() if line.startswith("| **regressed**"))
    assert "(99%)" in row and "| repeats | 0.7 / – / 5.0 |" in row


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


def test_cli_compare_uses_the_results_directory_as_history(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgebench.cli import main
    from edgebench.reports.json_report import render_json

    def write(results: Path, day: int, medians: list[float], host: str = "h") -> None:
        run = dataclasses.replace(
            report(with_repeats(result(noisy(medians[0], seed=day)), medians)),
            run_id=f"r{day}", created_at=f"2026-01-{day:02d}T00:00:00+00:00",
            host=dataclasses.replace(INFO, hostname=host))
        (results / f"r{day}").mkdir(parents=True)
        (results / f"r{day}" / "report.json").write_text(render_json(run))

    wandering = [20.0, 21.2, 19.9, 21.1, 20.0]  # +-6 % night to night
    for day, level in enumerate(wandering, 1):
        write(tmp_path, day, [level + d for d in (0.0, 0.1, -0.1, 0.0, 0.2)])
    write(tmp_path, 6, [21.4, 21.5, 21.3, 21.6, 21.4])  # +7 % on steady repeats
    assert main(["compare", "previous", "last", "--results", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| unchanged"))
    assert "within this case's noise" in row
    # without that history the same pair is a regression
    assert main(["compare", str(tmp_path / "r5"), str(tmp_path / "r6"),
                 "--results", str(tmp_path / "none")]) == 1
    # and a smaller noise factor lets it through with the history too
    assert main(["compare", "previous", "last", "--results", str(tmp_path),
                 "--noise-factor", "0.5"]) == 1
    # another host's runs are not this case's history
    mixed = tmp_path / "mixed"
    for day, level in enumerate(wandering[:4], 1):
        write(mixed, day, [level] * 5, host="other")
    write(mixed, 5, [20.0, 20.1, 19.9, 20.0, 20.2])
    write(mixed, 6, [21.4, 21.5, 21.3, 21.6, 21.4])
    assert main(["compare", str(mixed / "r5"), str(mixed / "r6"), "--results", str(mixed)]) == 1


def _sized(r: CaseResult, hw: tuple[int, int]) -> CaseResult:
    art = Artifact(path="m.tflite", format="tflite", sha256="a" * 64, size_bytes=1,
                   input_shape=(1, 3, *hw))
    return dataclasses.replace(r, artifact=art)


def _evaluated_on(r: CaseResult, **changes: object) -> CaseResult:
    assert r.accuracy is not None
    return dataclasses.replace(r, accuracy=dataclasses.replace(r.accuracy, **changes))


def test_another_input_size_is_not_comparable() -> None:
    """The same .pt exported at 256x320 and at 288x320: faster and a different mAP by
    design, so neither a regression nor an improvement: not comparable, both sizes named.
    The same holds side by side and for the history's noise."""
    from edgebench.compare import side_by_side

    base = _sized(result(noisy(20, seed=1), map50_95=0.80), (256, 320))
    cur = _sized(result(noisy(24, seed=2), map50_95=0.8131), (288, 320))
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert case.map_delta_points is None and case.ratio is None
    assert case.reasons == ("input size 256x320 -> 288x320 (H x W): latency and mAP both "
                            "change with the input size, so the two do not compare",)
    other = dataclasses.replace(cur, case=dataclasses.replace(
        cur.case, model="n@bbbb", id="n@bbbb|fp32|onnxruntime|local|tauto"))
    (case,) = side_by_side(report(base, other), "m@aaaa", Thresholds()).cases
    assert case.verdict is Verdict.NOT_COMPARABLE and "256x320 -> 288x320" in case.reasons[0]
    # earlier runs at another size are not this case's run-to-run noise
    wandering = [_sized(with_repeats(result(noisy(m, seed=i)), [m] * 5), (288, 320))
                 for i, m in enumerate([20.0, 21.2, 19.9, 21.1, 20.0, 21.3])]
    b = _sized(with_repeats(result(noisy(20, seed=1)), [20.0, 20.1, 19.9, 20.0, 20.2]),
               (256, 320))
    c = _sized(with_repeats(result(noisy(21.4, seed=2)), [21.4, 21.5, 21.3, 21.6, 21.4]),
               (256, 320))
    (case,) = compare_reports(report(b), report(c), Thresholds(),
                              history=[report(w) for w in wandering]).cases
    assert case.run_noise is None and case.verdict is Verdict.REGRESSED


def test_a_symbolic_input_compares_the_size_it_was_fed() -> None:
    base = _sized(result(noisy(20, seed=1)), (-1, -1))
    cur = _sized(result(noisy(20, seed=2)), (-1, -1))
    base, cur = _evaluated_on(base, input_hw=(320, 320)), _evaluated_on(cur, input_hw=(256, 256))
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.verdict is Verdict.NOT_COMPARABLE and "320x320 -> 256x256" in case.reasons[0]


def test_another_evaluation_set_compares_latency_but_not_map() -> None:
    """The user's report: YOLO data (30 images) then a COCO json (10 images) of the same
    model gave 'regressed, mAP50-95 -3.70 points'. The fingerprints are the real
    ``Dataset.fingerprint`` of the embedded val images, first 30 vs first 10."""
    from edgebench.datasets import load_dataset

    thirty, ten = (load_dataset(None, limit=n).fingerprint() for n in (30, 10))
    base = _evaluated_on(result(noisy(20, seed=1), map50_95=0.80), dataset="val/data.yaml",
                         images=30, dataset_fingerprint=thirty)
    cur = _evaluated_on(result(noisy(20, seed=2), map50_95=0.763), dataset="val/coco.json",
                        images=10, dataset_fingerprint=ten)
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.verdict is Verdict.UNCHANGED and case.ratio is not None
    assert case.map_delta_points is None
    assert case.reasons == (
        "mAP50-95 not compared: measured on another evaluation set (dataset val/data.yaml -> "
        f"val/coco.json (content {thirty[:8]} -> {ten[:8]}); images evaluated 30 -> 10)",)
    # latency is still judged
    slower = _evaluated_on(result(noisy(24, seed=2), map50_95=0.763), images=10,
                           dataset_fingerprint=ten)
    assert verdict(base, slower) is Verdict.REGRESSED
    # the same content under another path is the same set; conf / iou / left out are not
    moved = _evaluated_on(base, dataset="/elsewhere/data.yaml")
    (case,) = compare_reports(report(base), report(moved), Thresholds()).cases
    assert case.map_delta_points == 0.0 and case.reasons == ()
    for changes, why in [({"conf": 0.25}, "conf 0.001 -> 0.25"), ({"iou": 0.6}, "iou 0.7 -> 0.6"),
                         ({"left_out": {"a.jpg": "truncated"}}, "images left out 0 -> 1")]:
        (case,) = compare_reports(report(base), report(_evaluated_on(base, **changes)),
                                  Thresholds()).cases
        assert case.map_delta_points is None and why in case.reasons[0]
    # older reports without fingerprints: the name and the image count
    old_b, old_c = (_evaluated_on(r, dataset_fingerprint=None) for r in (base, cur))
    (case,) = compare_reports(report(old_b), report(old_c), Thresholds()).cases
    assert case.map_delta_points is None
    assert "dataset val/data.yaml -> val/coco.json; images evaluated 30 -> 10" in case.reasons[0]


def test_the_dataset_fingerprint_is_its_content_not_its_path(tmp_path: Path) -> None:
    """A copy of the embedded val data elsewhere is the same evaluation set; a relabelled
    image is not."""
    import shutil

    from edgebench.datasets import embedded_val_yaml, load_dataset

    root = embedded_val_yaml().parent
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for cache in copy.rglob("*.cache"):
        cache.unlink()
    yaml = copy / "data.yaml"
    yaml.write_text(yaml.read_text().replace(str(root), str(copy)))
    here, there = load_dataset(root / "data.yaml", limit=5), load_dataset(yaml, limit=5)
    assert here.name != there.name and here.images[0].path != there.images[0].path
    assert here.fingerprint() == there.fingerprint()
    label = sorted((copy / "labels" / "val").glob("*.txt"))[0]
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    assert load_dataset(yaml, limit=5).fingerprint() != here.fingerprint()


def test_cli_compare_of_two_real_runs_on_other_images(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The user's report, end to end: the embedded model measured on 10 images, then on 4.
    Their mAPs differ by the images alone: not judged, the reason says why."""
    from edgebench.cli import main

    fast = ["-b", "onnxruntime", "--warmup", "1", "-n", "5"]
    for images in ("10", "4"):
        assert main(["run", "-o", str(tmp_path / images), *fast, "--images", images]) == 0
    capsys.readouterr()
    main(["compare", str(next((tmp_path / "10").glob("*/report.json"))),
          str(next((tmp_path / "4").glob("*/report.json"))),
          "--results", str(tmp_path / "none")])
    (row,) = [line for line in capsys.readouterr().out.splitlines()
              if "`shapes-yolov8n|fp32|onnxruntime|local|tauto`" in line]
    cells = [c.strip() for c in row.strip("|").split("|")]  # the key holds "|": from the end
    assert cells[0] != "**regressed**" or "latency" in cells[-2]  # latency is still judged
    assert cells[-3] == "–" and "mAP50-95 +" not in row and "mAP50-95 -" not in row
    assert "mAP50-95 not compared: measured on another evaluation set (dataset content " in row
    assert "; images evaluated 10 -> 4)" in row
