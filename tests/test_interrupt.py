"""Ctrl-C and SIGTERM mid-run: partial report saved and marked, runner killed, exit 130/143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


@pytest.mark.parametrize(("sig", "code"), [
    (signal.SIGINT, 130),
    pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),  # the same path, another signal
])
def test_signal_mid_run(tmp_path: Path, make_onnx, sig: signal.Signals, code: int) -> None:  # type: ignore[no-untyped-def]
    fast, slow = make_onnx("conv", size=32, name="a.onnx"), make_onnx("conv", size=48,
                                                                      name="b.onnx")
    # each case times for at least 4 s: the signal lands while the second one runs
    marker = f"EDGEBENCH_TEST_RUN={uuid.uuid4().hex}"  # inherited by the runners it starts
    env = {**os.environ, "EDGEBENCH_TEST_RUN": marker.split("=")[1]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebench.cli", "run", "-b", "onnxruntime",
         "-m", str(fast), "-m", str(slow),
         "--warmup", "0", "-n", "3", "--min-duration", "4", "-o", str(tmp_path / "b")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    report_path = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list((tmp_path / "b").glob("*/report.json"))
        if found and json.loads(found[0].read_text() or "{}").get("cases"):
            report_path = found[0]
            break
        time.sleep(0.05)
    assert report_path is not None, "the first case never finished"
    time.sleep(0.5)
    assert _runners(marker), "the second case's runner is not running: nothing to interrupt"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "partial report is saved" in err and "Traceback" not in err
    report = json.loads(report_path.read_text())
    assert report["state"] == "interrupted"
    assert [c["status"] for c in report["cases"]] == ["ok"]  # the cut case is not recorded
    assert not _runners_alive(marker), "runner processes left behind"


def _runners(marker: str) -> list[str]:
    """This run's runner processes (``marker`` in their environment) that are running now;
    zombies count as gone (other runs on the machine are not this test's business)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if ("onnxruntime_runner.py" in cmdline and marker.encode() in environ
                and state not in ("Z", "X")):
            alive.append(f"{stat.parent.name} {state} {cmdline}")
    return alive


def _runners_alive(marker: str) -> list[str]:
    """The runners still there after up to 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = _runners(marker)
        if not alive:
            return []
        time.sleep(0.1)
    return alive
