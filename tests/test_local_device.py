"""The local device and the device probe (fingerprint)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edgebench.agent import edgebench_readings as readings
from edgebench.devices.local import LocalDevice
from edgebench.errors import CaseError
from edgebench.fingerprint import DeviceAgent


def test_private_workdir_push_pull_run_cleanup(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("hello")
    with LocalDevice() as dev:
        work = Path(dev.workdir)
        assert work.is_dir() and (work.stat().st_mode & 0o777) == 0o700
        dev.push(src, dev.workdir / "sub" / "a.txt")
        done = dev.run([sys.executable, "-c", "import os; print(sorted(os.listdir('sub')))"],
                       timeout_s=60)
        assert done.returncode == 0 and done.stdout.strip() == "['a.txt']"
        dev.pull(dev.workdir / "sub" / "a.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "hello"
        with pytest.raises(CaseError, match="was not produced"):
            dev.pull(dev.workdir / "missing", tmp_path / "x")
    assert not work.exists()


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    with LocalDevice() as dev, pytest.raises(CaseError, match="timed out after 1 s"):
        dev.run([sys.executable, "-c", code], timeout_s=1)
    child = int(marker.read_text())
    assert not _alive(child), "the grandchild survived: an orphan was left behind"


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its reaper counts as dead), polled for up to 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_probe_fingerprint() -> None:
    with LocalDevice() as dev:
        info = DeviceAgent(dev).probe(("onnxruntime", "numpy", "no_such_runtime"))
        temperature = DeviceAgent(dev).temperature()
    assert (temperature is None) == (info.temperature_c is None)
    assert info.uri == "local"
    assert info.arch and info.os and info.python
    assert info.cores == os.cpu_count()
    assert info.ram_bytes and info.ram_bytes > 1 << 28
    assert "onnxruntime" in info.runtimes and "no_such_runtime" not in info.runtimes
    assert info.cpu_model and not info.cpu_model.isdigit()


def test_probe_never_crashes_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readings, "_read", lambda path: None)
    monkeypatch.setattr(readings.glob, "glob", lambda pattern: [])
    fields = readings.probe(["numpy"])
    assert fields["governor"] is None and fields["temperature_c"] is None
    assert fields["ram_bytes"] is None and fields["cpu_cores"] == []
    # No cpufreq: the clock is measured (x86-64 Linux) or unknown, never a guess.
    assert (fields["cpu_max_mhz"], fields["cpu_clock_source"]) == (None, None) \
        or fields["cpu_clock_source"] == "probe"
    assert readings.rss_bytes() is None
    assert readings.peak_rss_bytes() is not None  # falls back to getrusage


def test_probe_reads_a_raspberry_pi_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\n"
                         "Features\t: fp asimd evtstrm crc32 cpuid asimdhp asimddp\n"
                         "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
        "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "2400000\n",
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "ondemand\n",
        "/sys/class/thermal/thermal_zone0/temp": "51350\n",
    }
    monkeypatch.setattr(readings, "_read", files.get)
    monkeypatch.setattr(readings.glob, "glob",
                        lambda pattern: ["/sys/class/thermal/thermal_zone0/temp"])
    fields = readings.probe([])
    assert fields["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert fields["cpu_max_mhz"] == 2400.0 and fields["governor"] == "ondemand"
    assert fields["temperature_c"] == pytest.approx(51.35)
    assert {"asimd", "asimddp", "asimdhp"} <= set(fields["cpu_flags"])


def test_workdir_outside_with_block_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = LocalDevice().workdir
