"""Is the regression gate trustworthy on this machine? Measured, not assumed.

Runs the same case (embedded model, ONNX Runtime, local) again and again, in rounds of
A, A' (an identical copy of the model) and B (a copy whose runner is made 10 % slower
with the agent's test-only ``test_slowdown``), with the settings of the nightly matrix
file (``examples/nightly.toml``: repeats, iterations, minimum duration, cool-down), judged
with its ``[gate]`` table. Two ways, as a nightly job could gate:

``--mode side-by-side`` (default; ``edgebench run --baseline-model A``): each round is
    one run of A, A' and B with their repeats interleaved (A A' B B A' A ...), gated as
    that command gates it.
``--mode runs`` (``edgebench compare previous last``): each round is three separate runs,
    judged as ``edgebench compare`` would in a results directory: the history of earlier
    A runs (``--history`` warm-up runs first, then every round's A and A') gives the
    case's run-to-run noise.

Reports

(a) the coefficient of variation of the run medians (A and A' runs): the pooled median,
    and the median of the repeat medians, which the gate uses,
(b) A/A: how many of the A vs A' comparisons the gate flags (goal 0 of N),
(c) A/B: how many of the A vs B comparisons it calls a regression (goal N of N),

with the time per case and how busy the machine was meanwhile (load average, and the
share of both cores in use, ours included), since that is what the figures depend on.

    python benchmarks/gate_validity.py [--mode side-by-side|runs] [--rounds 10]
                                       [--history 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgebench.comparability import match_key
from edgebench.compare import CaseComparison, Thresholds, Verdict, compare_case, side_by_side
from edgebench.config import DEFAULT_MODEL, Matrix, load_matrix
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.records import Case, CaseResult, LatencyStats, RunReport
from edgebench.runner import Session
from edgebench.significance import MIN_HISTORY, repeat_noise, run_median_ms

NIGHTLY = Path(__file__).resolve().parent.parent / "examples" / "nightly.toml"


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def measure(matrix: Matrix, out: Path,
            test_options: Mapping[str, float] | Callable[[Case], Mapping[str, float]] | None
            ) -> tuple[RunReport, dict[str, float]]:
    pm = make_plugin_manager()
    session = Session(matrix, pm, collect_registry(pm), test_options=test_options)
    out.mkdir(parents=True)
    busy0, total0 = cpu_times()
    t0 = time.monotonic()
    try:
        report = session.run(out)
    finally:
        session.close()
    busy1, total1 = cpu_times()
    for result in report.cases:
        assert result.latency is not None, result.reason
    machine = {"wall_s": (time.monotonic() - t0) / len(report.cases),
               "load1": os.getloadavg()[0], "busy": (busy1 - busy0) / max(1, total1 - total0)}
    return report, machine


def one_run(matrix: Matrix, out: Path, slowdown: float) -> tuple[CaseResult, dict[str, float]]:
    report, machine = measure(matrix, out, {"test_slowdown": slowdown} if slowdown else None)
    (result,) = report.cases
    return result, machine


def latency(r: CaseResult) -> LatencyStats:
    assert r.latency is not None, r.reason
    return r.latency


def run_median(r: CaseResult) -> float:
    median = run_median_ms(r)
    assert median is not None
    return float(median)


def describe(c: CaseComparison) -> str:
    ci = f"{c.ratio_ci[0]:.3f}-{c.ratio_ci[1]:.3f}" if c.ratio_ci else "-"
    noise = "".join(f", {name} {v * 100:.1f} %" for name, v in
                    (("repeats", c.noise), ("runs", c.run_noise)) if v is not None)
    cpu = (f"; CPU {c.cpu_ratio:.3f} [{c.cpu_ratio_ci[0]:.3f}-{c.cpu_ratio_ci[1]:.3f}] p "
           f"{c.cpu_p_value:.1e}" if c.cpu_ratio is not None and c.cpu_ratio_ci
           and c.cpu_p_value is not None else "")
    return (f"ratio {c.ratio:.3f} [{ci}] p {c.p_value:.1e}{noise}{cpu}, threshold "
            f"{(c.threshold or 0) * 100:.1f} %: {c.verdict.value}")


def matrix_and_thresholds(args: argparse.Namespace, models: tuple[Path, ...] = (DEFAULT_MODEL,)
                          ) -> tuple[Matrix, Thresholds]:
    flags: dict[str, Any] = {"models": models, "backends": ("onnxruntime",),
                             "devices": ("local",), "accuracy": False,
                             "threads": (args.threads,), "repeats": args.repeats,
                             "iterations": args.iterations,
                             "min_duration_s": args.min_duration}
    matrix = load_matrix(flags, args.config)
    return matrix, matrix.gate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["side-by-side", "runs"], default="side-by-side")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--history", type=int, default=MIN_HISTORY,
                        help="A runs before the rounds: the history a nightly would have")
    parser.add_argument("--config", type=Path, default=NIGHTLY,
                        help="matrix file whose [settings] and [gate] are tested")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--slowdown", type=float, default=0.10)
    parser.add_argument("--repeats", type=int, help="override the file's repeats")
    parser.add_argument("--iterations", type=int, help="override the file's iterations")
    parser.add_argument("--min-duration", type=float, help="override min_duration_s")
    parser.add_argument("--json", type=Path, help="also write every run and verdict here")
    parser.add_argument("--neighbours", type=int, default=0,
                        help="also start this many busy neighbours, each on and off for "
                             "random 1-10 s spells, like other sessions on a shared box")
    args = parser.parse_args()
    neighbours = [subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(seed)])
                  for seed in range(args.neighbours)]
    try:
        return (side_by_side_rounds if args.mode == "side-by-side" else separate_runs)(args)
    finally:
        for process in neighbours:
            process.kill()
            process.wait()


NEIGHBOUR = """
import random, sys, time
rng = random.Random(int(sys.argv[1]))
while True:
    end = time.monotonic() + rng.uniform(1, 10)
    if rng.random() < 0.5:
        while time.monotonic() < end:
            sum(i * i for i in range(10000))
    else:
        time.sleep(end - time.monotonic())
"""
"""A neighbour session: busy (one core) or idle, in random spells of 1-10 s."""


def settings_line(matrix: Matrix, thresholds: Thresholds, mode: str) -> str:
    s = matrix.settings
    return (f"{mode}: {s.repeats} repeats x {s.iterations} iterations (>= "
            f"{s.min_duration_s:g} s), warm-up {s.warmup_iterations}, cool-down "
            f"{s.cooldown_s:g} s, threads {s.threads}; {thresholds}")


def side_by_side_rounds(args: argparse.Namespace) -> int:
    """Each round one run of A, A' and B, interleaved; A' and B gated against A."""
    medians: list[float] = []
    cpu_medians: list[float] = []
    cpu_scatter: list[float] = []
    aa: list[CaseComparison] = []
    ab: list[CaseComparison] = []
    machine: list[dict[str, float]] = []
    log: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        models = tuple(Path(tmp) / f"{name}.onnx" for name in ("a", "a2", "b"))
        for path in models:
            shutil.copyfile(DEFAULT_MODEL, path)
        matrix, thresholds = matrix_and_thresholds(args, models)
        print(settings_line(matrix, thresholds, "side by side"), flush=True)
        slow_b = {"test_slowdown": args.slowdown}

        def options(case: Case) -> Mapping[str, float]:
            return slow_b if case.model.startswith("b@") else {}

        for i in range(args.rounds):
            report, m = measure(matrix, Path(tmp) / f"run{i}", options)
            machine.append(m)
            base = next(r for r in report.cases if r.case.model.startswith("a@"))
            comparison = side_by_side(report, base.case.model, thresholds)
            same, slow = (next(c for c in comparison.cases if c.key.startswith(prefix))
                          for prefix in ("a2|", "b|"))
            aa.append(same)
            ab.append(slow)
            by_model = {r.case.model.split("@")[0]: r for r in report.cases}
            medians.append(run_median(by_model["a"]))
            a_cpu, a2_cpu = (latency(by_model[k]).repeat_cpu_medians_ms for k in ("a", "a2"))
            if a_cpu and a2_cpu:
                cpu_medians.append(statistics.median(a_cpu))
                cpu_scatter.append(repeat_noise(a_cpu, a2_cpu))
            print(f"round {i + 1}: A {run_median(by_model['a']):.2f} ms, A' "
                  f"{run_median(by_model['a2']):.2f} ms ({describe(same)}); B "
                  f"{run_median(by_model['b']):.2f} ms ({describe(slow)}); load "
                  f"{m['load1']:.1f}", flush=True)
            log.append({"round": i + 1, "machine": m,
                        "repeat_medians_ms": {k: list(latency(r).repeat_medians_ms)
                                              for k, r in by_model.items()},
                        "repeat_cpu_medians_ms": {k: list(latency(r).repeat_cpu_medians_ms)
                                                  for k, r in by_model.items()},
                        "aa": _summary(same), "ab": _summary(slow)})
    cv = statistics.stdev(medians) / statistics.mean(medians)
    print(f"\n(a) CV of A's run medians over {len(medians)} runs: {cv * 100:.2f} %; "
          f"scatter of repeats within a run (median): {_pct_median([c.noise for c in aa])}")
    if len(cpu_medians) > 1:
        print(f"    CPU time per inference: CV of A's run medians "
              f"{statistics.stdev(cpu_medians) / statistics.mean(cpu_medians) * 100:.2f} %; "
              f"scatter of repeats (median): {_pct_median(list(cpu_scatter))}")
    decided = [("wall", c) for c in ab if any(r.startswith("latency") for r in c.reasons)]
    decided += [("cpu", c) for c in ab if any(r.startswith("CPU") for r in c.reasons)]
    print(f"    slowdowns seen in wall time: {sum(k == 'wall' for k, _ in decided)}, in CPU "
          f"time: {sum(k == 'cpu' for k, _ in decided)}")
    return _verdicts(args, aa, ab, machine, started, {
        "mode": "side-by-side", "settings": _settings(matrix), "thresholds": str(thresholds),
        "cv": cv, "machine": machine, "rounds": log})


def separate_runs(args: argparse.Namespace) -> int:
    """Each round three runs, A, A' and B, gated as ``edgebench compare`` with history."""
    matrix, thresholds = matrix_and_thresholds(args)
    print(settings_line(matrix, thresholds, "separate runs"), flush=True)
    medians: list[float] = []
    pooled: list[float] = []
    aa: list[CaseComparison] = []
    ab: list[CaseComparison] = []
    machine: list[dict[str, float]] = []
    log: list[dict[str, Any]] = []
    started = time.monotonic()
    history: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.history):
            h, mh = one_run(matrix, Path(tmp) / f"h{i}", 0.0)
            machine.append(mh)
            history.append(run_median(h))
            print(f"history run {i + 1}: {history[-1]:.2f} ms, load {mh['load1']:.1f}",
                  flush=True)
        for i in range(args.rounds):
            (a, ma), (a2, ma2), (b, mb) = (
                one_run(matrix, Path(tmp) / f"{name}{i}", slow)
                for name, slow in (("a", 0.0), ("a2", 0.0), ("b", args.slowdown)))
            machine += [ma, ma2, mb]
            medians += [run_median(a), run_median(a2)]
            pooled += [latency(a).p50_ms, latency(a2).p50_ms]
            history.append(run_median(a))
            same = compare_case(match_key(a), a, a2, thresholds, history_ms=history)
            history.append(run_median(a2))
            slow = compare_case(match_key(a), a, b, thresholds, history_ms=history)
            aa.append(same)
            ab.append(slow)
            load = ", ".join(f"{m['load1']:.1f}" for m in (ma, ma2, mb))
            print(f"round {i + 1}: A {run_median(a):.2f} ms, A' {run_median(a2):.2f} ms "
                  f"({describe(same)}); B {run_median(b):.2f} ms ({describe(slow)}); "
                  f"load {load}", flush=True)
            log.append({"round": i + 1, "machine": [ma, ma2, mb],
                        "repeat_medians_ms": {
                            k: list(latency(r).repeat_medians_ms)
                            for k, r in (("A", a), ("A2", a2), ("B", b))},
                        "aa": _summary(same), "ab": _summary(slow)})
    cv = statistics.stdev(medians) / statistics.mean(medians)
    cv_pooled = statistics.stdev(pooled) / statistics.mean(pooled)
    print(f"\n(a) CV of the run medians over {len(medians)} runs: {cv * 100:.2f} % "
          f"(median of repeat medians), {cv_pooled * 100:.2f} % (pooled median)")
    return _verdicts(args, aa, ab, machine, started, {
        "mode": "runs", "settings": _settings(matrix), "thresholds": str(thresholds),
        "cv": cv, "cv_pooled": cv_pooled, "history_ms": history, "machine": machine,
        "rounds": log})


def _settings(matrix: Matrix) -> dict[str, Any]:
    s = matrix.settings
    return {"repeats": s.repeats, "iterations": s.iterations,
            "min_duration_s": s.min_duration_s, "threads": s.threads,
            "cooldown_s": s.cooldown_s}


def _verdicts(args: argparse.Namespace, aa: list[CaseComparison], ab: list[CaseComparison],
              machine: list[dict[str, float]], started: float, record: dict[str, Any]
              ) -> int:
    flagged = sum(c.verdict is not Verdict.UNCHANGED for c in aa)
    caught = sum(c.verdict is Verdict.REGRESSED for c in ab)
    wall = statistics.median(m["wall_s"] for m in machine)
    print(f"(b) A/A: {flagged} of {len(aa)} identical comparisons flagged (goal 0)")
    print(f"(c) A/B: {caught} of {len(ab)} +{args.slowdown * 100:.0f} % slowdowns caught "
          f"(goal {len(ab)})")
    print(f"effective threshold: median {_pct_median([c.threshold for c in aa + ab])}, "
          f"max {_pct_max([c.threshold for c in aa + ab])}; noise (median): repeats "
          f"{_pct_median([c.noise for c in aa + ab])}, runs "
          f"{_pct_median([c.run_noise for c in aa + ab])}")
    print(f"time per case (all its repeats): median {wall:.0f} s, max "
          f"{max(m['wall_s'] for m in machine):.0f} s; whole benchmark "
          f"{(time.monotonic() - started) / 60:.0f} min")
    print(f"machine: load average {min(m['load1'] for m in machine):.1f}-"
          f"{max(m['load1'] for m in machine):.1f} (median "
          f"{statistics.median(m['load1'] for m in machine):.1f}), cores busy "
          f"{statistics.median(m['busy'] for m in machine) * 100:.0f} % (median, ours "
          f"included)")
    if args.json:
        args.json.write_text(json.dumps({**record, "aa_flagged": flagged,
                                         "ab_caught": caught}, indent=1))
    return 0


def _summary(c: CaseComparison) -> dict[str, Any]:
    return {"verdict": c.verdict.value, "ratio": c.ratio, "ci": c.ratio_ci, "p": c.p_value,
            "cpu_ratio": c.cpu_ratio, "cpu_ci": c.cpu_ratio_ci, "cpu_p": c.cpu_p_value,
            "noise": c.noise, "run_noise": c.run_noise, "threshold": c.threshold,
            "reasons": c.reasons}


def _pct_median(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known) * 100:.1f} %" if known else "-"


def _pct_max(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{max(known) * 100:.1f} %" if known else "-"


if __name__ == "__main__":
    raise SystemExit(main())
