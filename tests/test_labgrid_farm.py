"""One URI, several boards of a labgrid farm, against the real lab (tests/labgrid_lab.py: a
real labgrid-coordinator, two labgrid-exporters, two private sshd "boards"): ``edgebench
devices`` probes every board of ``count=2``; a board that fails while the other runs every
case is in the report; a board that gives up does not cost the other its retries; a
coordinator that comes up late is waited for with the run's retry policy. After each, the
coordinator is asked that no place stays acquired."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from labgrid_lab import LabgridLab
from remote_fixtures import only_report
from test_labgrid_device import FAST, THREADS, board_options, cli

from edgebench.devices.labgrid import LabgridDevice
from edgebench.records import Case, CaseResult, RunSettings, Status
from edgebench.retry import Retrier, RetryPolicy

pytestmark = [pytest.mark.labgrid, pytest.mark.sshd]

PY = sys.executable


def test_devices_probes_every_place_of_a_count_uri(labgrid_lab: LabgridLab,
                                                   tmp_path: Path) -> None:
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    done = cli("devices", "-d", uri, env=labgrid_lab.env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for name in ("shapes-pi-1", "shapes-pi-2"):
        assert f"{uri} → {name}  reachable" in done.stdout, done.stdout
    assert labgrid_lab.acquired_places() == {}
    assert labgrid_lab.reservations() == []


@pytest.mark.slow
def test_a_board_that_fails_while_the_other_runs_every_case_is_in_the_report(
        labgrid_lab: LabgridLab, tmp_path: Path) -> None:
    """shapes-pi-2's sshd is down: the device that gets that place fails (and releases it),
    the other runs both cases; the failure is in report.json, report.md and report.html."""
    sshd = labgrid_lab.places["shapes-pi-2"].sshd
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    sshd.kill()
    try:
        done = cli("run", "-o", str(tmp_path / "out"), "-d", uri, "-b", "onnxruntime",
                   *THREADS, *FAST, "--retries", "0", env=labgrid_lab.env)
    finally:
        sshd.start()
    assert done.returncode == 0, done.stderr[-3000:]
    report = only_report(tmp_path / "out")
    assert [c["status"] for c in report["cases"]] == ["ok", "ok"]
    assert {c["device"]["place"]["name"] for c in report["cases"]} == {"shapes-pi-1"}
    (failure,) = report["device_failures"]
    assert failure.startswith(f"device {uri}: place shapes-pi-2: "), failure
    assert f"127.0.0.1:{sshd.port}" in failure and "\n" not in failure
    run_dir = next((tmp_path / "out").glob("*/report.json")).parent
    assert f"**failed**: {failure}" in (run_dir / "report.md").read_text()
    assert html.escape(failure) in (run_dir / "report.html").read_text()
    assert labgrid_lab.acquired_places() == {}


def _ok(device: LabgridDevice, case: Case, during: threading.Event | None = None
        ) -> CaseResult:
    """A case's attempt: a command on the board (``sleep 2``; ``during`` is set once it
    runs, so the test can cut the link under it)."""
    if during is not None:
        threading.Timer(0.7, during.set).start()
    device.run(["sleep", "2"], timeout_s=30)
    return CaseResult(case=case, status=Status.OK)


def test_a_board_that_gave_up_does_not_cost_the_other_its_retries(
        labgrid_lab: LabgridLab, tmp_path: Path) -> None:
    """Two devices of one URI (two places): the first board is gone and its case gives up
    after its retries; then the second board's link drops mid-command: it is still
    retried (reconnects, runs again), as a device of its own."""
    uri = f"labgrid://?board=shapes-pi&{board_options(labgrid_lab, tmp_path)}"
    case = Case(id="m|onnxruntime", model="m", backend="onnxruntime", device=uri,
                settings=RunSettings())
    retrier = Retrier(RetryPolicy(retries=1, backoff_s=0.2))
    with LabgridDevice(uri) as first, LabgridDevice(uri) as second:
        assert first.placement is not None and second.placement is not None
        gone = labgrid_lab.places[first.placement.name].sshd
        cut = labgrid_lab.places[second.placement.name].sshd
        assert gone is not cut
        gone.kill()
        try:
            lost = retrier.run(lambda: _ok(first, case), CaseResult(
                case=case, status=Status.FAILED), first, lambda: None)
            assert lost.status is Status.FAILED and "gave up after 2 attempts" in \
                (lost.reason or ""), lost
            dropped = threading.Event()
            attempts = []

            def attempt() -> CaseResult:
                attempts.append(1)
                return _ok(second, case, dropped if len(attempts) == 1 else None)

            watcher = threading.Thread(target=lambda: dropped.wait(30) and
                                       cut.drop_connections())
            watcher.start()
            result = retrier.run(attempt, CaseResult(case=case, status=Status.FAILED),
                                 second, lambda: None)
            watcher.join()
        finally:
            gone.start()
    assert result.status is Status.OK, result.reason
    assert len(attempts) == 2
    assert "connection lost during the case" in result.notes[0], result.notes
    assert labgrid_lab.acquired_places() == {}


@pytest.mark.slow
def test_a_coordinator_that_comes_up_late_is_waited_for(labgrid_lab: LabgridLab,
                                                        tmp_path: Path) -> None:
    """The coordinator is down when the run starts: the device retries connecting with the
    run's --retries/--retry-backoff (saying so on stderr); the coordinator comes up before
    the next attempt and the run finishes."""
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    labgrid_lab.stop_coordinator()
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        run = subprocess.Popen(
            [PY, "-m", "edgebench.cli", "run", "-o", str(tmp_path / "out"), "-d", uri, "-b",
             "onnxruntime", *FAST, "--retries", "3", "--retry-backoff", "6"],
            env={**os.environ, **labgrid_lab.env}, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while "retrying in 6 s" not in err.read_text():
            assert run.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        labgrid_lab.heal()  # the coordinator, its exporters and places come up
        assert run.wait(timeout=300) == 0, err.read_text()[-3000:]
    finally:
        run.kill()
    text = err.read_text()
    assert f"cannot reach a labgrid coordinator at {labgrid_lab.address}" in text
    assert "attempt 1 of 4, retrying in 6 s" in text
    report = only_report(tmp_path / "out")
    assert [c["status"] for c in report["cases"]] == ["ok"]
    assert labgrid_lab.acquired_places() == {}

