"""Host work and device work overlap (edgebench.scheduling): a remote device opens while the
host exports and measures the first case while the host exports the next; a device on the host
itself (local) waits until the host work is over; with one host job the run's exports and
reference come from one export worker, with two the host steps run side by side, a worker each
(edgebench.host_jobs); the report lists the cases in the plan's order.

The evidence is the order of timestamps (the progress's host steps and repeats, the
scheduler's device-opening times), never a duration."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_fixtures import ssh_home, sshd  # noqa: F401
from servers import SshServer

from edgebench.export_worker import LOG_ENV
from edgebench.host_jobs import HOST_JOBS_ENV
from edgebench.pipeline import ASSETS
from edgebench.progress import Silent
from edgebench.records import Case, RunReport, Status
from edgebench.runner import Session

pytestmark = [pytest.mark.export, pytest.mark.slow, pytest.mark.sshd]
PY = sys.executable


class Timeline(Silent):
    """Records when each host step began and ended and when each repeat started."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float, float]] = []
        self.repeats: list[tuple[str, str, int, float]] = []

    @contextlib.contextmanager
    def host_step(self, subject: str, what: str) -> Iterator[None]:
        began = time.time()
        yield
        self.steps.append((what, began, time.time()))

    def repeat_started(self, case: Case, repeat: int) -> None:
        self.repeats.append((case.id, case.device, repeat, time.time()))


def _run(argv: list[str], tmp_path: Path) -> tuple[Session, RunReport, Timeline]:
    """``edgebench run ARGV`` in this process, its progress recorded by a :class:`Timeline`."""
    from edgebench.cli import build_parser, run_flags
    from edgebench.config import load_matrix
    from edgebench.plugin_manager import collect_registry, make_plugin_manager

    matrix = load_matrix(run_flags(build_parser().parse_args(["run", *argv])))
    pm = make_plugin_manager()
    timeline = Timeline()
    session = Session(matrix, pm, collect_registry(pm), argv=argv, retry=matrix.retry,
                      progress=timeline)
    out = tmp_path / "run"
    out.mkdir()
    try:
        report = session.run(out)
    finally:
        session.close()
    return session, report, timeline


def test_devices_open_and_measure_while_the_host_exports(sshd: SshServer, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed")
    log = tmp_path / "worker.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setenv(HOST_JOBS_ENV, "1")  # one step after another: the order below
    pt = tmp_path / "m.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", pt)
    remote = sshd.uri(python=PY, tmpdir=str(tmp_path))
    argv = ["-m", str(pt), "-b", "onnxruntime,ncnn", "-d", remote, "-d", "local",
            "--images", "3", "-n", "3", "--warmup", "1", "--repeats", "2"]
    session, report, timeline = _run(argv, tmp_path)
    assert [c.status for c in report.cases] == [Status.OK] * 4, \
        [c.reason for c in report.cases]
    scheduler = session.scheduler
    assert scheduler is not None and scheduler.feed is not None

    # one worker made the ONNX, the ncnn (pnnx) export and the PyTorch reference
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["start"]

    (onnx_step, ncnn_step) = [s for s in timeline.steps if s[0].startswith("export for")]
    assert onnx_step[0] == "export for onnxruntime" and ncnn_step[0] == "export for ncnn"
    # the remote device was being opened before the host's first export was done ...
    assert scheduler.opening[remote] < onnx_step[2]
    # ... and measured the first case while the host exported for the second
    first = next(c.case.id for c in report.cases
                 if c.case.device == remote and c.case.backend == "onnxruntime")
    started = {(case, repeat): at for case, _, repeat, at in timeline.repeats}
    assert ncnn_step[1] < started[(first, 0)] < ncnn_step[2]
    # local is the host: opened only once the host work was over
    assert scheduler.opening["local"] >= ncnn_step[2]
    local_starts = [at for _, device, _, at in timeline.repeats if device == "local"]
    assert min(local_starts) >= ncnn_step[2]
    # repeats interleave per device as before: 1 2 2 1
    remote_order = [(case, repeat) for case, device, repeat, _ in timeline.repeats
                    if device == remote]
    second = next(c.case.id for c in report.cases
                  if c.case.device == remote and c.case.backend == "ncnn")
    assert remote_order == [(first, 0), (second, 0), (second, 1), (first, 1)]
    # the report holds the plan's cases, each device's in the plan's order
    assert [c.case.id for c in report.cases if c.case.device == remote] == [first, second]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_ctrl_c_while_the_host_exports_stops_the_worker_and_the_device(
        sshd: SshServer, tmp_path: Path) -> None:  # noqa: F811
    """SIGINT once the export worker has started and the remote device is open (its work dir
    exists): exit 130, the worker gone, the device's work dir removed, the report saved as
    interrupted."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed")
    log = tmp_path / "worker.log"
    pt = tmp_path / "m.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", pt)
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PY, "-m", "edgebench.cli", "run", "-m", str(pt), "-b", "onnxruntime,ncnn",
         "-d", sshd.uri(python=PY, tmpdir=str(device_tmp)), "--images", "2", "-n", "3",
         "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, LOG_ENV: str(log)})
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text() and any(device_tmp.iterdir())):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the worker or the device never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    workers = [int(line.split()[1]) for line in log.read_text().splitlines()]
    deadline = time.monotonic() + 10
    while any(_alive(worker) for worker in workers):
        assert time.monotonic() < deadline, "an export worker outlived the run"
        time.sleep(0.05)
    assert not list(device_tmp.iterdir())
    (report,) = out.glob("*/report.json")
    assert json.loads(report.read_text())["state"] == "interrupted"


def test_host_steps_run_side_by_side_a_worker_each(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two host jobs: the ONNX and the ncnn export steps overlap in time, each job starts its
    own export worker, the one float reference is computed once and shared by both cases,
    and ``local`` starts only after both steps ended."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed")
    log = tmp_path / "worker.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setenv(HOST_JOBS_ENV, "2")
    monkeypatch.setenv("EDGEBENCH_CACHE", str(tmp_path / "cache"))  # both exports happen
    pt = tmp_path / "m.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", pt)
    argv = ["-m", str(pt), "-b", "onnxruntime,ncnn", "--images", "3", "-n", "3",
            "--warmup", "1"]
    _, report, timeline = _run(argv, tmp_path)
    assert [c.status for c in report.cases] == [Status.OK] * 2, \
        [c.reason for c in report.cases]
    assert [c.case.backend for c in report.cases] == ["onnxruntime", "ncnn"]  # plan order
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["start", "start"]
    steps = {what: (began, ended) for what, began, ended in timeline.steps}
    onnx, ncnn = steps["export for onnxruntime"], steps["export for ncnn"]
    assert onnx[0] < ncnn[1] and ncnn[0] < onnx[1], "the two export steps did not overlap"
    assert min(at for *_, at in timeline.repeats) >= max(onnx[1], ncnn[1])
    references = {c.accuracy.fidelity.reference for c in report.cases
                  if c.accuracy is not None and c.accuracy.fidelity is not None}
    assert len(references) == 1 and "computed by this run" in references.pop()
