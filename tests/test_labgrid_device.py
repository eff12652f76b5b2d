"""``edgebench run -d labgrid://...`` end to end against a real labgrid lab
(tests/labgrid_lab.py: labgrid-coordinator, labgrid-exporters exporting NetworkService
resources of private sshd "boards", places tagged board=shapes-pi): the cases spread over the
places, each case's fingerprint names its place, a second run waits in the coordinator's queue,
and no place stays acquired afterwards, as ``labgrid-client who`` reports (a separate
process asking the coordinator)."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from labgrid_lab import OTHER_USER, LabgridLab
from remote_fixtures import only_report

from edgebench.cli import main

pytestmark = pytest.mark.labgrid

PY = sys.executable
FAST = ["--warmup", "1", "-n", "3", "--images", "10"]
THREADS = ["--threads", "1", "--threads", "2"]


def board_options(lab: LabgridLab, tmp_path: Path) -> str:
    """The SSH options of the lab's boards: one client key every board accepts, a
    known_hosts file with every board's host key, this interpreter as the device Python."""
    places = list(lab.places.values())
    key = places[0].sshd.client_key
    public = (places[0].sshd.dir / "client_ed25519.pub").read_text()
    for place in places[1:]:
        if public not in place.sshd.authorized_keys.read_text():
            with place.sshd.authorized_keys.open("a") as f:
                f.write(public)
    known = tmp_path / "known_hosts"
    known.write_text("".join(p.sshd.known_hosts.read_text() for p in places))
    return f"key={key}&known_hosts={known}&python={PY}"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    """``edgebench ARGS`` in a new process (a run holds its places until it exits)."""
    return subprocess.run([PY, "-m", "edgebench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def places_of(report: dict[str, Any]) -> dict[str, str]:
    """case id -> the place its fingerprint names."""
    return {c["case"]["id"]: c["device"]["place"]["name"] for c in report["cases"]
            if c["device"] is not None and c["device"].get("place")}


def test_bad_labgrid_uris_fail_before_anything_runs(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # a coordinator nobody listens on: check_uri must not try to reach it
    os.environ.pop("LG_COORDINATOR", None)
    bad = {
        "labgrid://": "names no place and no tags",
        "labgrid://?board=rpi5&count=0": "count must be a whole number of places from 1 to 64",
        "labgrid://rpi5-1?count=2": "asks for 2 of the one place 'rpi5-1'",
        "labgrid://?Board=rpi5": "nor a labgrid tag name",
        "labgrid://?board=rpi5&reservation_timeout=soon": "reservation_timeout must be a "
                                                          "positive number of seconds",
        "labgrid://?board=rpi5&coordinator=host:http": "is not a coordinator address",
        "labgrid://?board=rpi5&count=2&hostkey=SHA256:abc": "pins one hostkey for 2 places",
        "labgrid://pi@rpi5-1": "is not a labgrid URI",
    }
    for uri, sentence in bad.items():
        started = time.monotonic()
        assert main(["run", "-o", str(tmp_path), "-d", uri]) == 2, uri
        err = capsys.readouterr().err
        assert sentence in err, (uri, err)
        assert "Traceback" not in err and time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_cases_spread_over_both_places_and_every_place_is_released(
        labgrid_lab: LabgridLab, tmp_path: Path) -> None:
    """The issue's done-when: every case ok, the report names both places, none acquired
    afterwards."""
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    done = cli("run", "-o", str(tmp_path / "out"), "-d", uri, "-b", "onnxruntime", *THREADS,
               *FAST, env=labgrid_lab.env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = only_report(tmp_path / "out")
    assert [c["status"] for c in report["cases"]] == ["ok", "ok"], \
        [c["reason"] for c in report["cases"]]
    assert sorted(places_of(report).values()) == ["shapes-pi-1", "shapes-pi-2"]
    for case in report["cases"]:
        place = case["device"]["place"]
        assert place["tags"] == {"board": "shapes-pi"}
        assert place["host"] == labgrid_lab.places[place["name"]].exporter
        assert place["farm"] == f"labgrid coordinator {labgrid_lab.address}"
        assert 0 <= place["waited_s"] < 5
        assert case["device"]["uri"] == uri and case["case"]["device"] == uri
    markdown = next((tmp_path / "out").glob("*/report.md")).read_text()
    page = next((tmp_path / "out").glob("*/report.html")).read_text()
    devices = page[page.index("<h2>Devices</h2>"):]
    for name in ("shapes-pi-1", "shapes-pi-2"):
        assert f"{uri} → {name}" in markdown
        assert f"place `{name}` (board=shapes-pi) on " \
               f"{labgrid_lab.places[name].exporter}" in markdown
        assert html.escape(f"{uri} → {name}") in page  # the results table
        assert f"place <code>{name}</code> (board=shapes-pi) on " \
               f"{labgrid_lab.places[name].exporter}" in devices  # a row per place
    assert labgrid_lab.acquired_places() == {}
    assert "Reservation" not in labgrid_lab.client("reservations").stdout


def test_a_place_that_never_frees_does_not_hold_up_the_run(labgrid_lab: LabgridLab,
                                                          tmp_path: Path) -> None:
    """count=2 while someone else holds shapes-pi-2 for good: shapes-pi-1 runs every case and
    the device still waiting in the queue gives up its reservation as soon as no case is
    left (not after the default reservation_timeout of half an hour)."""
    labgrid_lab.hold("shapes-pi-2")
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    started = time.monotonic()
    done = cli("run", "-o", str(tmp_path / "out"), "-d", uri, "-b", "onnxruntime", *THREADS,
               *FAST, env=labgrid_lab.env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - started < 300
    report = only_report(tmp_path / "out")
    assert [c["status"] for c in report["cases"]] == ["ok", "ok"]
    assert set(places_of(report).values()) == {"shapes-pi-1"}
    assert labgrid_lab.acquired_places() == {"shapes-pi-2": f"{_host()}/{OTHER_USER}"}
    assert "Reservation" not in labgrid_lab.client("reservations").stdout


@pytest.mark.slow
def test_a_second_run_waits_for_the_places_and_reports_its_wait(
        labgrid_lab: LabgridLab, tmp_path: Path) -> None:
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    env = {**os.environ, **labgrid_lab.env}
    first = subprocess.Popen(
        [PY, "-m", "edgebench.cli", "run", "-o", str(tmp_path / "first"), "-d", uri, "-b",
         "onnxruntime", *THREADS, "--warmup", "1", "-n", "300", "--images", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(labgrid_lab.acquired_places()) < 2:
            assert first.poll() is None and time.monotonic() < deadline, \
                first.stdout.read() if first.stdout else ""
            time.sleep(0.2)
        second = cli("run", "-o", str(tmp_path / "second"), "-d",
                     f"{uri}&reservation_timeout=300", "-b", "onnxruntime", *THREADS, *FAST,
                     env=labgrid_lab.env)
        first_out = first.communicate(timeout=300)[0]
    finally:
        first.kill()
    assert first.returncode == 0, first_out[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "waiting for board=shapes-pi: 0 of 1 allocated; acquired: shapes-pi-" \
        in second.stderr
    first_report, report = only_report(tmp_path / "first"), only_report(tmp_path / "second")
    assert all(c["status"] == "ok" for c in first_report["cases"] + report["cases"])
    first_end = max(c["started_at"] for c in first_report["cases"])
    assert min(c["started_at"] for c in report["cases"]) >= first_end
    waits = [c["device"]["place"]["waited_s"] for c in report["cases"]]
    assert min(waits) > 1.0, waits
    markdown = next((tmp_path / "second").glob("*/report.md")).read_text()
    assert f"waited {waits[0]:.1f} s for it" in markdown
    assert labgrid_lab.acquired_places() == {}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_releases_the_places_held_and_the_reservations_waiting(
        labgrid_lab: LabgridLab, tmp_path: Path, sig: signal.Signals) -> None:
    """A run holding shapes-pi-1 (shapes-pi-2 is someone else's, so its second device waits in
    the queue) gets the signal: it exits 130/143 with its report saved as interrupted, the
    place is released and the waiting reservation cancelled; --resume finishes the run."""
    labgrid_lab.hold("shapes-pi-2")
    uri = f"labgrid://?board=shapes-pi&count=2&{board_options(labgrid_lab, tmp_path)}"
    # The run cannot end while shapes-pi-2 is held, so the signal always lands mid-run; the
    # resume takes the same settings (--resume refuses a different -n).
    args = ["-d", uri, "-b", "onnxruntime", *THREADS, "--warmup", "1", "-n", "30",
            "--images", "10"]
    run = subprocess.Popen([PY, "-m", "edgebench.cli", "run", "-o", str(tmp_path), *args],
                           env={**os.environ, **labgrid_lab.env}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while labgrid_lab.acquired_places().get("shapes-pi-1") is None or \
                labgrid_lab.client("reservations").stdout.count("state: waiting") < 1:
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # into the first case
        run.send_signal(sig)
        out = run.communicate(timeout=60)[0]
    finally:
        run.kill()
    assert run.returncode == (130 if sig == signal.SIGINT else 143), out[-3000:]
    assert "Traceback" not in out
    report = only_report(tmp_path)
    assert report["state"] == "interrupted"
    assert labgrid_lab.acquired_places() == {"shapes-pi-2": f"{_host()}/{OTHER_USER}"}
    assert "state: waiting" not in labgrid_lab.client("reservations").stdout
    labgrid_lab.unhold("shapes-pi-2")
    (run_dir,) = tmp_path.glob("*/report.json")
    resumed = cli("run", "-o", str(tmp_path), "--resume", str(run_dir), *args,
                  env=labgrid_lab.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(run_dir.read_text())
    assert final["state"] == "complete"
    assert [c["status"] for c in final["cases"]] == ["ok", "ok"]
    assert labgrid_lab.acquired_places() == {}


def _host() -> str:
    import socket

    return os.environ.get("LG_HOSTNAME") or socket.gethostname()
