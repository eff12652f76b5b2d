"""Ctrl-C (SIGINT) and SIGTERM of the harness while cases run on SSH and ADB devices: the
partial report is saved and marked interrupted, the runners on the devices are killed,
their work dirs removed, exit 130/143; ``--resume`` then finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from adb_standin import AdbStandin
from remote_fixtures import (  # noqa: F401
    adb_env,
    adb_server,
    adb_uri,
    no_runners_left,
    only_report,
    report_cases,
    runner_pids,
    same_cases,
    ssh_home,
    sshd,
    standin,
)
from servers import AdbServer, SshServer

pytestmark = [pytest.mark.faults, pytest.mark.sshd, pytest.mark.adb]
PY = sys.executable


@pytest.mark.parametrize("adb_server", ["adb-adbutils"], indirect=True)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_signal_mid_run_on_remote_devices(sig: signal.Signals, code: int, sshd: SshServer,
                                          standin: AdbStandin, adb_env: AdbServer,
                                          tmp_path: Path, make_onnx: Any) -> None:
    ssh_dir = tmp_path / "ssh-device"
    ssh_dir.mkdir()
    phone_tmp = standin.root / "data" / "local" / "tmp"
    ssh, adb = sshd.uri(python=PY, tmpdir=str(ssh_dir)), adb_uri(standin, adb_env)
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(3)]
    argv = ["run", "-d", ssh, "-d", adb, *(a for m in models for a in ("-m", m)), "-b",
            "onnxruntime", "--warmup", "0", "-n", "1", "--no-accuracy",
            "-o", str(tmp_path / "out")]
    # each case times for at least 3 s and each device has 3: once both devices finished a
    # case and both run the next, the signal lands mid-case on both (the devices need not
    # be in step: one may start later on a loaded machine)
    proc = subprocess.Popen([PY, "-m", "edgebench.cli", *argv, "--min-duration", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        report = _wait_for(lambda: _report_covering(tmp_path / "out", (ssh, adb)), 120)
        _wait_for(lambda: runner_pids(str(ssh_dir)) and runner_pids(str(standin.root)), 60)
        before = report_cases(report)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "partial report is saved" in err and "Traceback" not in err
    data = json.loads(report.read_text())
    assert data["state"] == "interrupted"
    # the cut cases are not recorded (a case may end between the last look and the signal)
    assert 2 <= len(before) <= len(data["cases"]) <= 4
    same_cases(before, data["cases"])
    assert no_runners_left(str(ssh_dir)) and no_runners_left(str(standin.root)), \
        "a runner was left running on a device"
    assert list(ssh_dir.iterdir()) == [] and list(phone_tmp.iterdir()) == [], \
        "a remote work dir was left behind"
    print(f"\n{sig.name}: report held {len(before)} cases before, "
          f"{len(data['cases'])} after, state {data['state']}")

    # --resume finishes exactly the cases the signal cut, in the same report (with the run's
    # own settings: --resume refuses another --min-duration)
    done = subprocess.run([PY, "-m", "edgebench.cli", *argv, "--min-duration", "3",
                           "--resume", str(report)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = only_report(tmp_path / "out")  # still one run dir: the run was finished
    assert resumed["state"] == "complete" and resumed["run_id"] == data["run_id"]
    assert len(resumed["cases"]) == 6 and all(c["status"] == "ok" for c in resumed["cases"])
    same_cases(data["cases"], resumed["cases"])
    print(f"--resume: {len(data['cases'])} cases before, {len(resumed['cases'])} after")


def _report_covering(out: Path, devices: tuple[str, ...]) -> Path | None:
    """The run's report once it holds a finished case of every device in ``devices``."""
    for path in out.glob("*/report.json"):
        try:
            cases = json.loads(path.read_text()).get("cases", [])
        except ValueError:
            continue
        if set(devices) <= {c["case"]["device"] for c in cases}:
            return path
    return None


def _wait_for(check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the run to get there")
