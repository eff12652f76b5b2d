"""Load and threads in the report: every backend run on its default threads reports the
count it really used (checked against the runtime's own figure where it has one), every
case records the device's and the host's load, a busy device is warned about in words in
report.md, report.html and on stderr, and ncnn's idle workers sleep as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from remote_fixtures import only_report
from runner_utils import default_backends

from edgebench.cli import main
from edgebench.fingerprint import AGENT_FILES
from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
from edgebench.records import RunSettings
from edgebench.reports.markdown import BUSY_HEADLINE

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc")

FAST = ["-n", "3", "--warmup", "1", "--no-accuracy"]


def _threads_column(md: str) -> dict[str, str]:
    """backend -> the threads cell of report.md's results table."""
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(head):
            out[cells[head.index("backend")]] = cells[head.index("threads")]
    return out


FAST_BACKENDS = {"onnxruntime", "litert", "ncnn"}
"""Backends that run the embedded model's committed exports; MNN, OpenVINO and ExecuTorch
convert or export first (:func:`test_other_backends_report_their_threads`; ExecuTorch's
export takes a minute or two: slow tier)."""


@pytest.fixture(scope="session")
def default_threads_run(tmp_path_factory: pytest.TempPathFactory
                        ) -> tuple[dict[str, Any], str]:
    """ONNX Runtime, LiteRT and ncnn (those installed) on the embedded model with the
    runtimes' default threads."""
    out = tmp_path_factory.mktemp("load-default-threads")
    backends = sorted(default_backends() & FAST_BACKENDS)
    assert main(["run", "-o", str(out), "-b", ",".join(backends), *FAST]) == 0
    report = only_report(out)
    (md,) = out.glob("*/report.md")
    return report, md.read_text()


def _runtime_own_count(backend: str) -> int | None:
    """What the runtime (or its documentation) says its default is on this host."""
    if backend == "onnxruntime":  # "default: the number of physical cores"
        return int(psutil.cpu_count(logical=False) or 0) or None
    if backend == "ncnn":
        import ncnn

        return int(ncnn.get_physical_big_cpu_count())
    if backend == "litert":  # the runner gives it every usable core
        return len(os.sched_getaffinity(0))
    return None  # OpenVINO, MNN: read back from the compiled model / session by the runner


def test_threads_column_shows_the_count_each_backend_used(
        default_threads_run: tuple[dict[str, Any], str]) -> None:
    report, md = default_threads_run
    column = _threads_column(md)
    cases = [c for c in report["cases"] if c["status"] == "ok"]
    assert {c["case"]["backend"] for c in cases} >= {"onnxruntime", "ncnn"}
    for case in cases:
        backend, used = case["case"]["backend"], case["runtime"]["threads"]
        assert isinstance(used, int) and used >= 1, (backend, case["runtime"])
        assert column[backend] == str(used), (backend, column)
        own = _runtime_own_count(backend)
        if own is not None:
            assert used == own, (backend, used, own)


def test_each_case_records_the_device_and_host_load(
        default_threads_run: tuple[dict[str, Any], str]) -> None:
    report, _ = default_threads_run
    for case in (c for c in report["cases"] if c["status"] == "ok"):
        device, host = case["load"]["device"], case["load"]["host"]
        samples_s = sum(case["latency"]["samples_ns"]) / 1e9
        assert device["cores"] == os.cpu_count() and device["source"] == "/proc/stat"
        assert samples_s <= device["window_s"] <= samples_s + 0.05
        assert 0.0 <= device["other_cpu_cores"] <= device["cores"]
        assert device["other_cpu_share"] == pytest.approx(
            device["other_cpu_cores"] / device["cores"], abs=1e-3)
        assert host["source"] == "psutil" and host["cores"] == psutil.cpu_count()
        assert 0.0 <= host["other_cpu_cores"] <= host["cores"]
        # the same machine over the same loop: the same load average (psutil's own read)
        assert device["loadavg_1m"] == pytest.approx(host["loadavg_1m"], abs=0.5)


@pytest.fixture
def two_busy_processes() -> Iterator[None]:
    """Two processes burning CPU (up to 60 CPU seconds each) for the test's duration."""
    burn = "import time\nwhile time.process_time() < 60:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_busy_device_is_warned_about_in_words(
        tmp_path: Path, two_busy_processes: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", str(tmp_path), "-b", "onnxruntime", "--threads", "2",
                 "--min-duration", "1", *FAST]) == 0
    err = capsys.readouterr().err
    (case,) = only_report(tmp_path)["cases"]
    warning = case["load"]["busy_warning"]
    assert warning and "device busy: other processes kept" in warning, case["load"]
    assert case["load"]["device"]["other_cpu_cores"] > 0.25
    md = next(tmp_path.glob("*/report.md")).read_text()
    html = next(tmp_path.glob("*/report.html")).read_text()
    assert f"**{BUSY_HEADLINE}**" in md and warning in md
    assert BUSY_HEADLINE in html and "device busy: other processes kept" in html
    assert err.count("fewer spare cores than the threads") == 1, err


def test_ncnn_idle_workers_sleep_by_default(tmp_path: Path, embedded_onnx: Path) -> None:
    """The ncnn runner on the plugin's default options: libgomp itself (OMP_DISPLAY_ENV)
    says its wait policy is passive, and the runner reports it."""
    from edgebench.config import ASSETS

    backend = NcnnBackend()
    options = dict(backend.runner_options(RunSettings()))
    assert options["wait_policy"] == "passive"
    work = tmp_path / "device"
    work.mkdir()
    for script in (*AGENT_FILES, backend.runner()):
        shutil.copy(script, work / script.name)
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    np.savez(work / "inputs.npz", in0=x)
    request = {"model": str(ASSETS / "shapes-yolov8n_ncnn_model"),
               "inputs": str(work / "inputs.npz"), "iterations": 2, "options": options}
    (work / "request.json").write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-I", str(work / backend.runner().name),
                           "--request", "request.json", "--out", "result.json"],
                          capture_output=True, text=True, timeout=120, cwd=work,
                          env={**env, "OMP_DISPLAY_ENV": "TRUE"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in done.stderr, done.stderr[-2000:]
    result = json.loads((work / "result.json").read_text())
    assert result["runtime"]["details"]["omp_wait_policy"] == "PASSIVE"


@pytest.mark.parametrize("backend", [
    "mnn", "openvino",
    pytest.param("executorch", marks=[pytest.mark.slow, pytest.mark.export])])
def test_other_backends_report_their_threads(tmp_path: Path, backend: str) -> None:
    """MNN (its session's thread count), OpenVINO (the compiled model's
    INFERENCE_NUM_THREADS) and ExecuTorch (its threadpool's size) on their defaults: the
    report's threads column is that integer (ExecuTorch exports the committed .pt first)."""
    if backend not in default_backends():
        pytest.skip(f"{backend} is not installed")
    assert main(["run", "-o", str(tmp_path), "-b", backend, *FAST]) == 0
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "ok", case["reason"]
    used = case["runtime"]["threads"]
    assert isinstance(used, int) and used >= 1, case["runtime"]
    md = next(tmp_path.glob("*/report.md")).read_text()
    assert _threads_column(md)[backend] == str(used)
    cores = os.cpu_count() or 1
    oversubscribed = f"ran {used} threads on {cores} cores"
    assert (oversubscribed in md) == (used > cores), md  # MNN's default 4 on a 2-core box
