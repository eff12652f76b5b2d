"""benchmarks/vs_ultralytics.py: its phase parser on the real stderr of real edgebench runs,
and (slow) its two sides on the same .pt agreeing on mAP. No timing assertions: only that
the phases account for the wall time and match what the runner and the report say."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_ultralytics.py"
TINY = ["-n", "3", "--warmup", "1", "--images", "10", "-b", "onnxruntime"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vs_ultralytics", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_ultralytics"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vs() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def tiny_runs(vs: ModuleType, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, tuple[object, dict, Path]]:  # type: ignore[type-arg]
    """A cold (fresh EDGEBENCH_CACHE) and a warm (same cache) tiny run of the embedded
    model (its ONNX: no export) on the embedded val data of the session's cache, captured
    as the benchmark captures them: (capture, report, cache)."""
    from edgebench.datasets import embedded_val_yaml

    data = embedded_val_yaml()  # generated in the session's cache, not in the fresh one
    tmp = tmp_path_factory.mktemp("vs-ultralytics")
    cache = tmp / "cache"
    env = {**os.environ, **vs.offline_env(), "EDGEBENCH_CACHE": str(cache)}
    out: dict[str, tuple[object, dict, Path]] = {}  # type: ignore[type-arg]
    for temp in ("cold", "warm"):
        argv = [sys.executable, "-m", "edgebench.cli", "run", *TINY, "--data", str(data),
                "-o", str(tmp / temp)]
        run = vs.run_captured(argv, env, tmp)
        assert run.returncode == 0, run.tail()
        (report,) = (tmp / temp).glob("*/report.json")
        out[temp] = (run, json.loads(report.read_text()), cache)
    return out


@pytest.mark.parametrize("temp", ["cold", "warm"])
def test_phases_account_for_the_wall_time(vs: ModuleType, tiny_runs: dict, temp: str
                                          ) -> None:  # type: ignore[type-arg]
    run, report, cache = tiny_runs[temp]
    phases = vs.phases(run, cache)
    assert all(v >= 0 for v in phases.seconds.values()), phases.seconds
    assert sum(phases.seconds.values()) == pytest.approx(phases.wall_s, abs=0.05)
    assert phases.wall_s == run.wall_s
    assert phases.reported_wall_s is not None and phases.reported_wall_s <= run.wall_s + 0.05
    assert 0.0 < phases.outside_share < 1.0
    (case,) = phases.cases
    assert case.started < case.returned <= case.evaluated <= case.ended  # type: ignore
    # the runner's own figures, as the report holds them (the lines round to 10 ms)
    (result,) = report["cases"]
    latency = result["latency"]
    assert case.timed_s == pytest.approx(sum(latency["samples_ns"]) / 1e9, abs=0.006)
    assert case.warmup_s == pytest.approx(sum(latency["warmup_ns"]) / 1e9, abs=0.006)
    assert case.load_s == pytest.approx(latency["init_ns"] / 1e9, abs=0.0006)
    assert phases.seconds["runner: timed loop"] == pytest.approx(case.timed_s, abs=1e-9)
    # the runner's interval lies inside the case as the report timed it
    assert case.returned - case.started <= result["wall_s"] + 0.05
    assert phases.runner_s == pytest.approx(case.returned - case.started)


def test_cold_host_steps_follow_the_cache(vs: ModuleType, tiny_runs: dict) -> None:  # type: ignore[type-arg]
    """The cold run writes the evaluation tensors into the fresh cache, and host time goes
    to them; the warm run writes nothing there (an ONNX source needs no export)."""
    cold = vs.phases(*tiny_runs["cold"][::2])
    warm = vs.phases(*tiny_runs["warm"][::2])
    kinds = {kind for _, kind in vs.cache_entries(tiny_runs["cold"][2], tiny_runs["cold"][0]
                                                  .t0_epoch, tiny_runs["cold"][0].wall_s)}
    assert "tensors" in kinds and "exports" not in kinds
    assert cold.seconds["evaluation tensors"] > 0 and cold.seconds["exports"] == 0
    assert "evaluation tensors" not in warm.seconds and warm.seconds["exports"] == 0
    assert vs.cache_entries(tiny_runs["warm"][2], tiny_runs["warm"][0].t0_epoch,
                            tiny_runs["warm"][0].wall_s) == []


def test_case_lines_parse(vs: ModuleType) -> None:
    """The line forms harness/progress.py writes (a repeat label, a failed case)."""
    lines = [vs.Line(t, text) for t, text in [
        (1.5, "02:00:01 [1/9] m@1: export for ncnn"),
        (3.0, "02:00:03 [2/9] ncnn t2 @local repeat 1/2: runner started"),
        (4.0, "02:00:04 [2/9] ncnn t2 @local repeat 1/2: load (50 ms)"),
        (4.0, "02:00:04 [3/9] ncnn t2 @local repeat 1/2: warm-up (10 iterations, 0.30 s)"),
        (4.0, "02:00:04 [4/9] ncnn t2 @local repeat 1/2: timed loop (100 iterations, 2.50 s)"),
        (4.5, "02:00:04 [5/9] ncnn t2 @local repeat 1/2: accuracy (100 images evaluated)"),
        (4.5, "02:00:04 [5/9] ncnn t2 @local repeat 1/2: ok, p50 25.00 ms"),
        (5.0, "02:00:05 [6/9] ncnn t2 @local repeat 2/2: runner started"),
        (5.5, "02:00:05 [9/9] ncnn t2 @local repeat 2/2: failed: runner crashed"),
        (6.0, "edgebench: finished in 5.8 s")]]
    cases, hosts, finished, stated = vs.parse_cases(lines)
    assert hosts == [0.5] and finished == 6.0 and stated == 5.8
    first, second = cases
    assert (first.started, first.returned, first.evaluated, first.ended) == (3.0, 4.0, 4.5, 4.5)
    assert (first.load_s, first.warmup_s, first.timed_s) == (0.05, 0.3, 2.5)
    assert (second.started, second.returned, second.evaluated) == (5.0, 5.5, None)


@pytest.mark.slow
@pytest.mark.export
def test_both_sides_agree_on_map(vs: ModuleType, tmp_path: Path) -> None:
    """One cold and one warm edgebench run and one Ultralytics benchmark() of the ONNX
    export, on copies of the embedded .pt, all 100 images: the benchmark's mAP check holds
    (Ultralytics' val() is the oracle), and the exports are timed cold only."""
    from edgebench.datasets import embedded_val_yaml

    settings = vs.Settings(1, ("onnxruntime",), False, ("-n", "3", "--warmup", "1"), False)
    data = embedded_val_yaml()
    e_pt = vs.fresh_pt(tmp_path / "edgebench")
    cold = vs.run_edgebench(e_pt, data, tmp_path / "cache", tmp_path / "out", settings)
    warm = vs.run_edgebench(e_pt, data, tmp_path / "cache", tmp_path / "out", settings)
    theirs = vs.run_ultralytics(vs.fresh_pt(tmp_path / "ultralytics"), data, settings)
    assert (tmp_path / "ultralytics" / "shapes-yolov8n.onnx").is_file()
    assert not (vs.PT.parent / "benchmarks.log").exists()
    for ours in (cold, warm):
        assert abs(ours.map50_95["onnxruntime"] - theirs.map50_95["onnxruntime"]) \
            <= vs.MAP_TOLERANCE
    assert cold.phases.seconds["exports"] > 0 and warm.phases.seconds["exports"] == 0


def test_cpu_time_counts_the_whole_process_tree(vs: ModuleType, tmp_path: Path) -> None:
    """A run's ``cpu_s`` holds the CPU of a grandchild it waited for (an export worker's,
    a runner's), not only the direct child's: a child that sleeps while its own child spins
    for 0.4 s of CPU is charged at least that."""
    spin = "import time; t = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    parent = ("import subprocess, sys, time; time.sleep(0.1); "
              f"subprocess.run([sys.executable, '-c', {spin!r}], check=True)")
    run = vs.run_captured([sys.executable, "-c", parent], dict(os.environ), tmp_path)
    assert run.returncode == 0, run.tail()
    assert 0.4 <= run.cpu_s <= 0.4 + run.wall_s * (os.cpu_count() or 1)


def test_cpu_table_bounds_the_cold_ratio_by_cpu_over_usable_cores(vs: ModuleType) -> None:
    """The bound line is edgebench's cold CPU ÷ the usable cores ÷ Ultralytics' cold wall."""
    cores = len(os.sched_getaffinity(0))
    r = vs.Round()
    for temp in ("cold", "warm"):
        r.ultralytics[temp] = vs.UltralyticsRun(40.0, 1.0, 44.0, {}, "8.4")
        r.edgebench[temp] = vs.EdgebenchRun(30.0, 1.0, 32.0 * cores, None, {}, Path("r"))
    table = vs.cpu_table([r], edgebench_only=False)
    assert f"**{32.0 / 40.0:.2f}**" in table and "| Ultralytics | 44.0" in table
