"""The machine-load readings: the agent's /proc readings against the OS's own figures and
against a real busy process's CPU time (psutil), the host sampler's split between its own
process tree and the others, and the busy threshold."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from runner_utils import run_device_runner

from edgebench.agent import edgebench_readings as readings
from edgebench.agent.edgebench_protocol import LoadReading, RunnerResult
from edgebench.load import (
    BUSY_MARGIN_CORES,
    HostSampler,
    busy_warning,
    machine_load,
    oversubscribed_note,
    worst,
)
from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend
from edgebench.records import CaseLoad, MachineLoad

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc")

BUSY = "import time\nwhile time.process_time() < {s}:\n    pass\n"
"""A process that burns {s} CPU seconds (however busy the machine is) and exits."""


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def test_loadavg_is_the_os_figure() -> None:
    snap = readings.cpu_snapshot()
    assert snap["loadavg_1m"] == pytest.approx(os.getloadavg()[0], abs=0.3)


def test_a_busy_process_counts_as_other_and_the_own_process_as_own() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY.format(s=3)])
    try:
        child = psutil.Process(busy.pid)
        time.sleep(0.3)
        before, c0 = readings.cpu_snapshot(), _cpu_s(child)
        end = time.process_time() + 0.3
        while time.process_time() < end:  # this process busy too: its own, not "other"
            pass
        deadline = time.monotonic() + 10
        while _cpu_s(child) - c0 < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)  # however busy the machine is, the child burns 0.5 CPU s
        after, c1 = readings.cpu_snapshot(), _cpu_s(child)
    finally:
        busy.kill()
        busy.wait()
    load = readings.cpu_load(before, after)
    assert load["window_s"] >= 0.3
    assert load["cores"] == os.cpu_count()
    assert c1 - c0 >= 0.5  # the busy process really ran
    assert load["other_cpu_s"] >= (c1 - c0) - 0.06  # /proc/stat ticks: 10 ms per CPU
    assert load["own_cpu_s"] == pytest.approx(0.3, abs=0.05)
    assert load["busy_cpu_s"] >= load["other_cpu_s"] + load["own_cpu_s"] - 1e-9


def test_runner_records_the_load_of_its_timed_loop(tmp_path: Path, embedded_onnx: Path
                                                   ) -> None:
    """The real ONNX Runtime runner with a busy process next to it: the loop's window is
    the samples' time, and the busy process's CPU rate shows in the other processes' cores."""
    import numpy as np

    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    busy = subprocess.Popen([sys.executable, "-c", BUSY.format(s=30)])
    try:
        child = psutil.Process(busy.pid)
        t0, c0 = time.monotonic(), _cpu_s(child)
        code, raw = run_device_runner(OnnxRuntimeBackend(), tmp_path, embedded_onnx,
                                      {"images": x}, warmup_iterations=1, iterations=3,
                                      min_duration_s=1.0, threads=1)
        rate = (_cpu_s(child) - c0) / (time.monotonic() - t0)
    finally:
        busy.kill()
        busy.wait()
    assert code == 0, raw
    result = RunnerResult.from_json(raw)
    reading = result.load
    assert reading is not None and result.samples_ns is not None
    loop_s = sum(result.samples_ns) / 1e9
    assert loop_s <= reading.window_s <= loop_s + 0.05
    assert reading.own_cpu_s is not None and result.cpu_samples_ns
    assert reading.own_cpu_s >= sum(result.cpu_samples_ns) / 1e9 - 0.02
    assert reading.source == "/proc/stat" and reading.cores == os.cpu_count()
    assert reading.loadavg_1m_after == pytest.approx(os.getloadavg()[0], abs=1.0)
    assert reading.started_before_end_s is not None and reading.ended_before_end_s is not None
    assert reading.started_before_end_s - reading.ended_before_end_s == pytest.approx(
        reading.window_s, abs=1e-3)
    device = machine_load(reading)
    assert device is not None and device.other_cpu_cores is not None
    assert rate > 0.05
    assert device.other_cpu_cores >= 0.6 * rate


def test_host_sampler_counts_its_children_as_its_own_and_others_as_other() -> None:
    """A child that burns 0.8 CPU seconds is the harness's own tree; a detached process
    (re-parented to init) burning CPU is another process's load."""
    with HostSampler(interval_s=0.1) as own:
        subprocess.run([sys.executable, "-c", BUSY.format(s=0.8)], check=True)
    times = os.times()
    assert own.readings[-1].tree_s - own.readings[0].tree_s >= 0.7
    assert times.children_user + times.children_system >= 0.7
    pid = int(subprocess.run(
        ["sh", "-c", f"{sys.executable} -c '{BUSY.format(s=3)}' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True).stdout)
    orphan = psutil.Process(pid)
    assert orphan.ppid() != os.getpid()
    with HostSampler(interval_s=0.1) as sampler:
        c0 = _cpu_s(orphan)
        time.sleep(1.0)
        c1 = _cpu_s(orphan)
    orphan.kill()
    host = sampler.window(None)
    assert host is not None and host.window_s is not None and host.other_cpu_cores is not None
    assert host.source == "psutil" and host.cores == psutil.cpu_count()
    assert host.other_cpu_cores * host.window_s >= (c1 - c0) - 0.1


def test_host_window_follows_the_agents_offsets() -> None:
    with HostSampler(interval_s=0.05) as sampler:
        time.sleep(0.6)
    reading = LoadReading(window_s=0.2, started_before_end_s=0.4, ended_before_end_s=0.2)
    host = sampler.window(reading)
    assert host is not None and host.window_s is not None
    assert 0.2 <= host.window_s <= 0.2 + 2 * 0.05 + 0.05


def _load(other: float, cores: int = 2) -> MachineLoad:
    return MachineLoad(window_s=2.0, cores=cores, other_cpu_cores=other,
                       other_cpu_share=other / cores, loadavg_1m=1.5, source="/proc/stat")


def test_busy_threshold() -> None:
    """Warn when the others' cores plus the case's threads exceed the device's cores by
    more than the margin; the warning names the figures."""
    assert busy_warning(_load(BUSY_MARGIN_CORES - 0.01), 2) is None
    warning = busy_warning(_load(BUSY_MARGIN_CORES + 0.05), 2)
    assert warning is not None and "0.30 of its 2 cores" in warning and "2 threads" in warning
    assert busy_warning(_load(1.0 + BUSY_MARGIN_CORES - 0.01), 1) is None
    assert busy_warning(_load(1.5), 1) is not None
    assert busy_warning(_load(0.3), None) is not None  # unknown threads: every core
    assert busy_warning(_load(0.3), 4) is not None  # MNN's 4 threads on 2 cores
    assert busy_warning(MachineLoad(None, None, None, None, None), 2) is None


def test_more_threads_than_cores_is_noted() -> None:
    note = oversubscribed_note(4, 2)
    assert note is not None and "ran 4 threads on 2 cores" in note
    assert oversubscribed_note(2, 2) is None and oversubscribed_note(None, 2) is None


def test_repeats_keep_the_busiest_load_and_any_warning() -> None:
    quiet = CaseLoad(device=_load(0.1), busy_warning=None)
    busy = CaseLoad(device=_load(1.2), busy_warning="device busy: ...")
    assert worst(quiet, busy) == busy and worst(busy, quiet) == busy
    assert worst(None, quiet) == quiet and worst(quiet, None) == quiet
    odd = worst(CaseLoad(device=_load(1.5)), CaseLoad(device=_load(0.2), busy_warning="x"))
    assert odd is not None and odd.device == _load(1.5) and odd.busy_warning == "x"
