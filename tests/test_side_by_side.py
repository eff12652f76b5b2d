"""Side by side: a baseline model measured in the same run as the candidate, repeats
interleaved A B B A, and gated against it (``edgebench run --baseline-model``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from test_compare import noisy, report, result, with_repeats

from edgebench.cli import main
from edgebench.compare import Thresholds, Verdict, compare_reports, side_by_side
from edgebench.config import DEFAULT_MODEL, Matrix, RunSettings
from edgebench.matrix_file import MatrixFile
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.records import Case, CaseResult, RunReport
from edgebench.reports.comparison import render_comparison
from edgebench.reports.json_report import render_json
from edgebench.reports.markdown import render_markdown
from edgebench.runner import Session

SPREAD = [0.95, 0.97, 1.0, 1.0, 1.03, 1.05]
"""Repeat medians scattering by ~4 % (robust SD), as on this machine under load."""


def pair(base_ms: float, cur_ms: float, *, cur_spread: list[float] = SPREAD
         ) -> tuple[CaseResult, CaseResult]:
    base = with_repeats(result(noisy(base_ms, seed=1), model="old@aaaa"),
                        [base_ms * f for f in SPREAD])
    cur = with_repeats(result(noisy(cur_ms, seed=2), model="new@bbbb"),
                       [cur_ms * f for f in cur_spread])
    return base, cur


def test_a_ten_percent_slowdown_side_by_side_regresses_where_separate_runs_cannot_tell() -> None:
    base, cur = pair(20.0, 22.0, cur_spread=SPREAD[::-1])
    (case,) = side_by_side(report(base, cur), "old@aaaa", Thresholds()).cases
    assert case.key.startswith("new|") and case.verdict is Verdict.REGRESSED
    assert case.ratio == pytest.approx(1.10, abs=0.01) and case.threshold == 0.05
    assert case.noise is not None and case.noise > 0.02  # reported, not raising the bar
    assert case.fingerprint_changes == ()  # the model is meant to differ
    # The same numbers from two separate runs: the noise could be drift, so 3 x 4 % > 10 %.
    (runs,) = compare_reports(report(base), report(
        with_repeats(result(noisy(22.0, seed=2), model="old@aaaa"),
                     [22.0 * f for f in SPREAD[::-1]])), Thresholds()).cases
    assert runs.verdict is Verdict.UNCHANGED and runs.threshold is not None
    assert runs.threshold > 0.10


@pytest.mark.parametrize(("cur_ms", "expected"), [
    (20.0, Verdict.UNCHANGED),  # A/A
    (20.6, Verdict.UNCHANGED),  # +3 %: below the threshold
    (18.0, Verdict.IMPROVED),
    (24.0, Verdict.REGRESSED),
])
def test_side_by_side_known_answers(cur_ms: float, expected: Verdict) -> None:
    base, cur = pair(20.0, cur_ms)
    (case,) = side_by_side(report(base, cur), "old@aaaa", Thresholds()).cases
    assert case.verdict is expected


def test_scattered_repeats_are_not_called_a_regression() -> None:
    # +10 %, but the repeats scatter by +-20 %: the rank test cannot tell, so no verdict.
    wild = [0.7, 0.9, 1.0, 1.1, 1.2, 1.3]
    base = with_repeats(result(noisy(20, seed=1), model="old@aaaa"), [20 * f for f in wild])
    cur = with_repeats(result(noisy(22, seed=2), model="new@bbbb"),
                       [22 * f for f in wild[::-1]])
    (case,) = side_by_side(report(base, cur), "old@aaaa", Thresholds()).cases
    assert case.verdict is Verdict.UNCHANGED
    assert case.p_value is not None and case.p_value > 0.01


def test_candidate_cases_without_a_baseline_counterpart_are_new() -> None:
    base, cur = pair(20.0, 20.0)
    other = with_repeats(result(noisy(20, seed=3), model="new@bbbb", backend="litert"),
                         [20.0] * 6)
    comp = side_by_side(report(base, cur, other), "old@aaaa", Thresholds())
    assert sorted(c.verdict.value for c in comp.cases) == ["new", "unchanged"]
    text = render_comparison(comp)
    assert "Measured side by side in one run" in text and "old@aaaa" in text


@pytest.mark.slow
def test_repeats_run_in_abba_order_and_a_slow_candidate_is_caught(tmp_path: Path) -> None:
    base, cand = tmp_path / "base.onnx", tmp_path / "cand.onnx"
    shutil.copyfile(DEFAULT_MODEL, base)
    shutil.copyfile(DEFAULT_MODEL, cand)
    matrix = Matrix(models=(base, cand), baseline_model=base, backends=("onnxruntime",),
                    accuracy=None, settings=RunSettings(warmup_iterations=2, iterations=15,
                                                        threads=1, repeats=6))
    order: list[str] = []

    def slow_candidate(case: Case) -> Mapping[str, float]:
        order.append(case.model.split("@")[0])
        return {"test_slowdown": 1.0} if case.model.startswith("cand@") else {}

    pm = make_plugin_manager()
    session = Session(matrix, pm, collect_registry(pm), test_options=slow_candidate)
    (tmp_path / "out").mkdir()
    try:
        run = session.run(tmp_path / "out")
    finally:
        session.close()
    assert order == ["base", "cand", "cand", "base"] * 3
    (case,) = side_by_side(run, next(r.case.model for r in run.cases
                                     if r.case.model.startswith("base@")), Thresholds()).cases
    assert case.verdict is Verdict.REGRESSED, case
    assert case.ratio is not None and 1.7 < case.ratio < 2.3
    for r in run.cases:  # the runner reports the CPU time of every timed iteration
        assert r.latency is not None and len(r.latency.cpu_samples_ns) == r.latency.n
        assert len(r.latency.repeat_cpu_medians_ms) == 6 and r.latency.cpu_p50_ms
    assert case.cpu_ratio is not None and 1.7 < case.cpu_ratio < 2.3  # a busy-wait is CPU


def test_cli_baseline_model_gates_and_writes_compare_md(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "yesterday.onnx"
    shutil.copyfile(DEFAULT_MODEL, base)
    code = main(["run", "--baseline-model", str(base), "-b", "onnxruntime", "--threads", "1",
                 "--repeats", "5", "-n", "10", "--warmup", "2", "--no-accuracy",
                 "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    (compare_md,) = (tmp_path / "out").glob("*/compare.md")
    text = compare_md.read_text()
    assert text in out and "Measured side by side" in text
    assert "`shapes-yolov8n|fp32|onnxruntime|local|t1`" in text and "yesterday@" in text
    assert code == (1 if "**regressed**" in text else 0)


def test_cli_baseline_model_with_too_few_repeats_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "yesterday.onnx"
    shutil.copyfile(DEFAULT_MODEL, base)
    main(["run", "--baseline-model", str(base), "-b", "onnxruntime", "--repeats", "2",
          "-n", "5", "--warmup", "1", "--no-accuracy", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "warning: with --repeats 2 the side-by-side gate tests the raw samples" in err
    (compare_md,) = (tmp_path / "out").glob("*/compare.md")
    assert "| samples |" in compare_md.read_text()


def test_cli_an_unchanged_model_is_measured_once_and_passes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The nightly case where the model did not change: last-good/ holds the same file."""
    last_good = tmp_path / "last-good" / DEFAULT_MODEL.name
    last_good.parent.mkdir()
    shutil.copyfile(DEFAULT_MODEL, last_good)
    code = main(["run", "--baseline-model", str(last_good), "-b", "onnxruntime", "--threads",
                 "1", "--repeats", "2", "-n", "5", "--warmup", "1", "--no-accuracy",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0
    assert f"is identical to --baseline-model {last_good} (same name and content): it is " \
           "measured once, as the baseline." in err
    (run_dir,) = (tmp_path / "out").iterdir()
    cases = json.loads((run_dir / "report.json").read_text())["cases"]
    assert [c["case"]["id"] for c in cases] == [f"{DEFAULT_MODEL.stem}@{sha[:8]}|fp32|"
                                                 "onnxruntime|local|t1"
                                                 for sha in [_sha256(DEFAULT_MODEL)]]
    assert (run_dir / "compare.md").read_text().startswith("Nothing to gate side by side")


def test_cli_other_models_are_gated_against_a_model_identical_to_the_baseline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last_good = tmp_path / "last-good" / DEFAULT_MODEL.name
    last_good.parent.mkdir()
    shutil.copyfile(DEFAULT_MODEL, last_good)
    candidate = tmp_path / "candidate.onnx"
    shutil.copyfile(DEFAULT_MODEL, candidate)
    code = main(["run", "--baseline-model", str(last_good), "-m", str(DEFAULT_MODEL),
                 "-m", str(candidate), "-b", "onnxruntime", "--threads", "1", "--repeats",
                 "2", "-n", "5", "--warmup", "1", "--no-accuracy", "-o", str(tmp_path / "out")])
    capsys.readouterr()
    (run_dir,) = (tmp_path / "out").iterdir()
    models = {c["case"]["model"].split("@")[0]
              for c in json.loads((run_dir / "report.json").read_text())["cases"]}
    assert models == {DEFAULT_MODEL.stem, "candidate"}  # the baseline's twin ran once
    text = (run_dir / "compare.md").read_text()
    assert "`candidate|fp32|onnxruntime|local|t1`" in text and "Measured side by side" in text
    assert code == (1 if "**regressed**" in text else 0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_matrix_file_baseline_model_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "nightly.toml").write_text('[run]\nbaseline_model = "models/last-good.onnx"\n')
    values = MatrixFile(tmp_path / "nightly.toml").values
    assert values["baseline_model"] == (tmp_path / "models" / "last-good.onnx").resolve()


def with_cpu(r: CaseResult, medians: list[float]) -> CaseResult:
    assert r.latency is not None
    return dataclasses.replace(r, latency=dataclasses.replace(
        r.latency, repeat_cpu_medians_ms=tuple(medians)))


def test_busy_neighbours_hide_a_slowdown_from_wall_time_but_not_from_cpu_time() -> None:
    # Wall medians of the repeats scatter by up to 2x (neighbours come and go); the CPU
    # time per inference of the same repeats moves by a few percent, and shows +10 %.
    wall = [1.0, 1.9, 1.1, 1.6, 1.0, 2.0]
    cpu = [0.98, 1.0, 1.01, 0.99, 1.02, 1.0]
    base = with_cpu(with_repeats(result(noisy(20, seed=1), model="old@aaaa"),
                                 [20 * f for f in wall]), [15 * f for f in cpu])
    cur = with_cpu(with_repeats(result(noisy(22, seed=2), model="new@bbbb"),
                                [22 * f for f in wall[::-1]]), [16.5 * f for f in cpu[::-1]])
    (case,) = side_by_side(report(base, cur), "old@aaaa", Thresholds()).cases
    assert case.p_value is not None and case.p_value > 0.01  # wall time cannot tell
    assert case.cpu_ratio == pytest.approx(1.10, abs=0.005)
    assert case.cpu_ratio_ci is not None and case.cpu_ratio_ci[0] > 1.05
    assert case.verdict is Verdict.REGRESSED
    assert case.reasons == (f"CPU time per inference +10.0 % (p={case.cpu_p_value:.1e})",)
    # identical CPU times: nothing to report
    same = with_cpu(cur, [15 * f for f in cpu[::-1]])
    (case,) = side_by_side(report(base, same), "old@aaaa", Thresholds()).cases
    assert case.verdict is Verdict.UNCHANGED and case.cpu_ratio == pytest.approx(1.0)
    assert "CPU time ratio" in render_comparison(side_by_side(report(base, same), "old@aaaa",
                                                               Thresholds()))


def test_between_separate_runs_cpu_time_is_shown_not_judged() -> None:
    # CPU time drifts between runs as the machine's caches and clocks do: no verdict on it.
    steady = [0.99, 1.0, 1.0, 1.01, 1.0, 1.0]
    base = with_cpu(with_repeats(result(noisy(20, seed=1)), [20 * f for f in SPREAD]),
                    [15 * f for f in steady])
    cur = with_cpu(with_repeats(result(noisy(20, seed=2)), [20 * f for f in SPREAD[::-1]]),
                   [16.5 * f for f in steady])
    (case,) = compare_reports(report(base), report(cur), Thresholds()).cases
    assert case.cpu_ratio == pytest.approx(1.10, abs=0.005)
    assert case.verdict is Verdict.UNCHANGED and case.reasons == ()


def test_combine_keeps_one_cpu_median_per_repeat() -> None:
    from edgebench.repeats import combine
    from edgebench.stats import latency_stats

    def measured(wall_ms: float, cpu_ms: float) -> CaseResult:
        r = result(noisy(wall_ms, 20))
        assert r.latency is not None
        lat = latency_stats(r.latency.samples_ns,
                            cpu_samples_ns=[int(cpu_ms * 1e6)] * r.latency.n)
        return dataclasses.replace(r, latency=lat)

    merged = combine(combine(combine(None, measured(20, 15)), measured(21, 16)),
                     measured(20, 17))
    assert merged.latency is not None
    assert merged.latency.repeat_cpu_medians_ms == pytest.approx((15, 16, 17))
    assert merged.latency.cpu_p50_ms == pytest.approx(16) and \
        len(merged.latency.cpu_samples_ns) == 60


def test_night_to_night_comparison_and_history_leave_the_baseline_model_out(
        tmp_path: Path) -> None:
    """Each night's report holds last night's model (the baseline, same file name) and
    tonight's; the trend follows tonight's, and the history holds one point per night."""
    from edgebench.history import load_runs, series

    def night(run_id: str, old: str, new: str, new_ms: float, seed: int) -> RunReport:
        return dataclasses.replace(
            report(result(noisy(10.0, seed=seed), model=old),
                   result(noisy(new_ms, seed=seed + 1), model=new)),
            run_id=run_id, baseline_model=old)

    monday = night("r1", "det@0000", "det@1111", 10.0, seed=1)
    tuesday = night("r2", "det@1111", "det@2222", 20.0, seed=3)
    (case,) = compare_reports(monday, tuesday, Thresholds()).cases
    assert case.verdict is Verdict.REGRESSED  # det@2222 (20 ms) vs det@1111 (10 ms)
    assert case.ratio is not None and 1.9 < case.ratio < 2.1
    for r in (monday, tuesday):
        (tmp_path / r.run_id).mkdir()
        (tmp_path / r.run_id / "report.json").write_text(render_json(r))
    (points,) = series(load_runs(tmp_path), "p50_ms").values()
    assert [p.model for p in points] == ["det@1111", "det@2222"]
    text = render_markdown(tuesday)
    assert "`det@1111` is the baseline model" in text
    assert "| det@1111 | fp32 |" in text  # its measurements stay in the run's own report


def test_cli_records_the_baseline_model_only_when_measured_as_baseline_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "yesterday.onnx"
    shutil.copyfile(DEFAULT_MODEL, base)
    args = ["-b", "onnxruntime", "--threads", "1", "--repeats", "1", "-n", "3", "--warmup",
            "1", "--no-accuracy"]
    main(["run", "--baseline-model", str(base), *args, "-o", str(tmp_path / "a")])
    main(["run", "--baseline-model", str(DEFAULT_MODEL), *args, "-o", str(tmp_path / "b")])
    capsys.readouterr()
    (a,) = (tmp_path / "a").glob("*/report.json")
    (b,) = (tmp_path / "b").glob("*/report.json")
    assert json.loads(a.read_text())["baseline_model"] == f"yesterday@{_sha256(base)[:8]}"
    assert json.loads(b.read_text())["baseline_model"] is None  # measured once, as the model
