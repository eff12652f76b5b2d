"""One URI, several boards of a labgrid farm, against the real lab (tests/labgrid_lab.py: a
real labgrid-coordinator, two labgrid-exporters, two private sshd "boards"): ``edgebench
devices`` probes every board of ``count=2``; a board that fails while the other runs every
case is in the report; a board that gives up does not cost the other its retries; a
coordinator that comes up late is waited for with the run's retry policy. After each, the
coordinator is asked that no place stays acquired."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import pytest
from labgrid_lab import LabgridLab
from remote_fixtures import only_report
from test_labgrid_device import FAST, THREADS, board_options, cli

pytestmark = [pytest.mark.labgrid, pytest.mark.sshd]

PY = sys.executable



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
