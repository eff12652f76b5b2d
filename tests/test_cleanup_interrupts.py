"""Ctrl-C (SIGINT) and SIGTERM of ``edgebench run`` while the runner on a real SSH device is
in each phase of a case (load, warm-up, timed loop, accuracy pass): the process waits for
the device thread to kill the runner and remove its work dir, then saves the report as
interrupted.

The phase is known, not guessed: the device's interpreter is a wrapper that passes the
runner's ``edgebench-phase:`` lines through and, on the one the test asks for, notes its
PID in a file and stays in that phase until killed. The signal is sent once the note is
there. Before the fix (``Thread.join`` after an interrupted join, CPython 3.10-3.12) the
process exited while the device thread was still cleaning up, and the work dir stayed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from remote_fixtures import no_runners_left, only_report, ssh_home, sshd  # noqa: F401
from servers import SshServer

pytestmark = pytest.mark.sshd
PY = sys.executable

SPY = r'''
import os, runpy, sys, time

HOLD, NOTES = os.environ["EB_SPY_HOLD"], os.environ["EB_SPY_NOTES"]
args = sys.argv[1:]
if not args or not args[0].endswith("_runner.py"):  # the probe and anything else: as is
    os.execv(sys.executable, [sys.executable, *args])


class Spy:
    """stdout that notes each phase line and holds the runner in the phase HOLD."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, text):
        written = self.inner.write(text)
        for line in text.splitlines():
            if line.startswith("edgebench-phase: "):
                phase = line.split(": ", 1)[1]
                with open(NOTES, "a") as f:
                    f.write("%d %s\n" % (os.getpid(), phase))
                if phase == HOLD:
                    self.inner.flush()
                    time.sleep(300)  # in this phase until the harness kills the runner
        return written

    def __getattr__(self, name):
        return getattr(self.inner, name)


sys.stdout = Spy(sys.stdout)
sys.argv = args
sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
runpy.run_path(args[0], run_name="__main__")
'''


def _spy_python(where: Path, hold: str, notes: Path) -> Path:
    """An executable "interpreter" for the device: this Python running the spy."""
    spy = where / "phase_spy.py"
    spy.write_text(SPY)
    wrapper = where / "spy-python"
    wrapper.write_text(f"#!/bin/sh\nEB_SPY_HOLD='{hold}' EB_SPY_NOTES='{notes}' "
                       f"exec '{PY}' '{spy}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def _held_pid(notes: Path, phase: str, proc: subprocess.Popen[str], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if notes.exists():
            for line in notes.read_text().splitlines():
                pid, _, seen = line.partition(" ")
                if seen == phase:
                    return int(pid)
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"the runner never reached the phase {phase!r}")


PHASES = ["load", "warm-up", "timed loop", "accuracy pass"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", [
    pytest.param(p, marks=() if (p, i) in (("load", 0), ("timed loop", 1)) else
                 pytest.mark.slow) for i, p in enumerate(PHASES)], ids=PHASES)
def test_signal_in_each_phase_leaves_no_work_dir(
        phase: str, sig: signal.Signals, code: int, sshd: SshServer,  # noqa: F811
        tmp_path: Path) -> None:
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    notes = tmp_path / "phases"
    python = _spy_python(tmp_path, phase, notes)
    uri = sshd.uri(python=str(python), tmpdir=str(device_tmp))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PY, "-m", "edgebench.cli", "run", "-d", uri, "-b", "onnxruntime", "--warmup", "1",
         "-n", "3", "--images", "2", "-o", str(out),
         "--fresh"],  # the accuracy pass runs even if an earlier test cached it
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        runner = _held_pid(notes, phase, proc, 120)
        assert [p.name for p in device_tmp.iterdir()], "no work dir while the runner runs"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "partial report is saved" in err and "Traceback" not in err
    report = only_report(out)
    assert report["state"] == "interrupted" and report["cases"] == []
    assert no_runners_left(str(device_tmp)), "the runner was left running on the device"
    assert not Path(f"/proc/{runner}").exists() or \
        Path(f"/proc/{runner}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    assert list(device_tmp.iterdir()) == [], "the device's work dir was left behind"
    seen = [line.split(" ", 1)[1] for line in notes.read_text().splitlines()]
    assert seen[-1] == phase, seen  # interrupted in that phase, not later
    print(f"\n{sig.name} in {phase}: phases seen {seen}; exit {proc.returncode}; "
          f"{json.dumps(report['state'])}; device tmp empty")
