"""Faults of a labgrid board farm, against the real lab (tests/labgrid_lab.py): each gives the
labgrid device's cases one sentence, the report is on disk, the other devices finish, no place
this run took stays acquired (``labgrid-client who``), and ``--resume`` finishes the rest once
the farm is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from labgrid_lab import OTHER_USER, LabgridLab
from remote_fixtures import only_report
from servers import free_port
from test_labgrid_device import FAST, THREADS, board_options, cli

pytestmark = pytest.mark.labgrid

PY = sys.executable


def outcome(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """device URI + threads -> (status, reason)."""
    return {f"{c['case']['device']}|t{c['case']['settings']['threads']}":
            (c["status"], c["reason"]) for c in report["cases"]}


def assert_failed_with(report: dict[str, Any], device: str, sentence: str) -> None:
    cases = [c for c in report["cases"] if c["case"]["device"] == device]
    assert cases, f"no case of {device}"
    for case in cases:
        assert case["status"] == "failed", case
        assert case["reason"].startswith(f"device {device}: "), case["reason"]
        assert sentence in case["reason"], case["reason"]
        assert case["reason"].count(". ") == 0 and "\n" not in case["reason"]


def assert_others_ok(report: dict[str, Any], device: str) -> None:
    others = [c for c in report["cases"] if c["case"]["device"] == device]
    assert others and all(c["status"] == "ok" for c in others), \
        [(c["status"], c["reason"]) for c in others]


def test_coordinator_unreachable_and_no_place_with_the_tags(labgrid_lab: LabgridLab,
                                                           tmp_path: Path) -> None:
    options = board_options(labgrid_lab, tmp_path)
    nobody = f"127.0.0.1:{free_port()}"
    unreachable = f"labgrid://?board=shapes-pi&count=2&coordinator={nobody}&{options}"
    untagged = f"labgrid://?board=jetson-orin&{options}"
    started = time.monotonic()
    done = cli("run", "-o", str(tmp_path / "out"), "-d", unreachable, "-d", untagged, "-d",
               "local", "-b", "onnxruntime", *FAST, "--retries", "1", "--retry-backoff",
               "0.5", env=labgrid_lab.env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert time.monotonic() - started < 120  # one retry after 0.5 s, not the defaults
    assert "Traceback" not in done.stderr
    assert f"cannot reach a labgrid coordinator at {nobody}" in done.stderr  # the retry
    assert "attempt 1 of 2, retrying in 0.5 s" in done.stderr
    report = only_report(tmp_path / "out")
    assert_failed_with(report, unreachable, f"cannot reach a labgrid coordinator at {nobody}")
    assert_failed_with(report, unreachable, "(gave up after 2 attempts)")
    assert_failed_with(report, untagged, f"no place on the labgrid coordinator at "
                                         f"{labgrid_lab.address} has board=jetson-orin")
    assert_others_ok(report, "local")
    assert labgrid_lab.acquired_places() == {}


def test_reservation_times_out_while_every_place_is_held(labgrid_lab: LabgridLab,
                                                         tmp_path: Path) -> None:
    for name in labgrid_lab.places:
        labgrid_lab.hold(name)
    uri = (f"labgrid://?board=shapes-pi&count=2&reservation_timeout=3&"
           f"{board_options(labgrid_lab, tmp_path)}")
    started = time.monotonic()
    done = cli("run", "-o", str(tmp_path / "out"), "-d", uri, "-d", "local", "-b",
               "onnxruntime", *FAST, env=labgrid_lab.env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert time.monotonic() - started < 120
    report = only_report(tmp_path / "out")
    assert_failed_with(report, uri, "became free on the labgrid coordinator at "
                                    f"{labgrid_lab.address} within 3 s")
    assert_failed_with(report, uri, f"/{OTHER_USER}")  # names who holds them
    assert_others_ok(report, "local")
    assert set(labgrid_lab.acquired_places().values()) == {f"{_host()}/{OTHER_USER}"}
    assert "Reservation" not in labgrid_lab.client("reservations").stdout


@pytest.mark.slow
def test_place_held_by_someone_else_then_resume_once_freed(labgrid_lab: LabgridLab,
                                                          tmp_path: Path) -> None:
    """shapes-pi-1 is acquired by someone else and never freed during the run: its cases fail
    naming the holder once reservation_timeout passes, shapes-pi-2's finish; once it is
    freed, --resume runs exactly the failed cases."""
    labgrid_lab.hold("shapes-pi-1")
    options = board_options(labgrid_lab, tmp_path)
    held = f"labgrid://shapes-pi-1?reservation_timeout=4&{options}"
    free = f"labgrid://shapes-pi-2?{options}"
    args = ["-d", held, "-d", free, "-b", "onnxruntime", *THREADS, *FAST]
    done = cli("run", "-o", str(tmp_path), *args, env=labgrid_lab.env)
    assert done.returncode == 1, done.stderr[-3000:]
    report = only_report(tmp_path)
    assert_failed_with(report, held, f"acquired: shapes-pi-1 by {_host()}/{OTHER_USER}")
    assert_others_ok(report, free)
    assert labgrid_lab.acquired_places() == {"shapes-pi-1": f"{_host()}/{OTHER_USER}"}
    labgrid_lab.unhold("shapes-pi-1")
    (run_dir,) = tmp_path.glob("*/report.json")
    resumed = cli("run", "-o", str(tmp_path), "--resume", str(run_dir), *args,
                  env=labgrid_lab.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(run_dir.read_text())
    assert all(status == "ok" for status, _ in outcome(final).values()), outcome(final)
    rerun = [c for c in final["cases"] if any("run again by --resume" in n for n in c["notes"])]
    assert {c["case"]["device"] for c in rerun} == {held} and len(rerun) == 2
    assert labgrid_lab.acquired_places() == {}


@pytest.mark.slow
def test_exporter_killed_mid_case_then_resume_once_it_is_back(labgrid_lab: LabgridLab,
                                                              tmp_path: Path) -> None:
    """The exporter of shapes-pi-1 dies while its first case runs: the board is no longer in
    the farm, so its later cases fail with one sentence (the case that was running finishes
    or fails with the same sentence), the place is released, shapes-pi-2's cases finish;
    with the exporter back, --resume finishes the rest."""
    options = board_options(labgrid_lab, tmp_path)
    lost = f"labgrid://shapes-pi-1?{options}"
    other = f"labgrid://shapes-pi-2?{options}"
    exporter = labgrid_lab.places["shapes-pi-1"].exporter
    args = ["-d", lost, "-d", other, "-b", "onnxruntime", *THREADS, "--warmup", "1", "-n",
            "200", "--images", "10"]
    run = subprocess.Popen([PY, "-m", "edgebench.cli", "run", "-o", str(tmp_path), *args],
                           env={**os.environ, **labgrid_lab.env}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while "shapes-pi-1" not in labgrid_lab.acquired_places():
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)  # probed, into its first case
        labgrid_lab.kill_exporter(exporter)
        out = run.communicate(timeout=300)[0]
    finally:
        run.kill()
    assert run.returncode == 1, out[-3000:]
    report = only_report(tmp_path)
    gone = f"the exporter {exporter} of place shapes-pi-1 no longer exports its NetworkService"
    results = [c for c in report["cases"] if c["case"]["device"] == lost]
    assert len(results) == 2
    assert any(c["status"] == "failed" for c in results)
    for case in results:
        assert case["status"] == "ok" or gone in case["reason"], case["reason"]
    assert_others_ok(report, other)
    assert labgrid_lab.acquired_places() == {}
    labgrid_lab.start_exporter(exporter)
    (run_dir,) = tmp_path.glob("*/report.json")
    resumed = cli("run", "-o", str(tmp_path), "--resume", str(run_dir), *args,
                  env=labgrid_lab.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(run_dir.read_text())
    assert all(status == "ok" for status, _ in outcome(final).values()), outcome(final)
    assert labgrid_lab.acquired_places() == {}


def _host() -> str:
    import socket

    return os.environ.get("LG_HOSTNAME") or socket.gethostname()
