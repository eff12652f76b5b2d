"""Fault injection against the real test devices: a device that dies or reboots mid-case, a
runner that hangs, a device disk that fills, a runtime missing, a device unreachable.

Every test checks the cases of the report on disk before and after the fault: nothing
measured before it is lost or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from adb_standin import AdbStandin
from remote_fixtures import (  # noqa: F401
    PHONE_PROPS,
    Injector,
    adb_env,
    adb_server,
    adb_uri,
    kill_runners,
    no_runners_left,
    only_report,
    report_cases,
    run_session,
    same_cases,
    session_for,
    ssh_home,
    sshd,
    standin,
)
from servers import AdbServer, SshServer, free_port

from edgebench.record_json import to_json_dict
from edgebench.records import Status

pytestmark = [pytest.mark.faults, pytest.mark.sshd, pytest.mark.adb]
PY = sys.executable
ONE_ADB = "adb-adbutils"
"""The adb client most fault tests use (the killed-phone test runs with both)."""
ONLY_ONE_ADB = pytest.mark.parametrize("adb_server", [ONE_ADB], indirect=True)
LONG = ["-b", "onnxruntime", "--warmup", "0", "-n", "1", "--min-duration", "5",
        "--no-accuracy"]


def _devices(sshd: SshServer, standin: AdbStandin, adb_env: AdbServer, tmp_path: Path
             ) -> dict[str, tuple[str, str]]:
    """``{name: (uri, marker)}``: the marker is a path only that device's runners have in
    their command line (its private tmpdir)."""
    ssh_dir = tmp_path / "ssh-device"
    ssh_dir.mkdir()
    return {"ssh": (sshd.uri(python=PY, tmpdir=str(ssh_dir)), str(ssh_dir)),
            "adb": (adb_uri(standin, adb_env), str(standin.root))}


def _dicts(report: Any) -> list[dict[str, Any]]:
    return [to_json_dict(c) for c in report.cases]


@pytest.mark.parametrize(("victim", "adb_server"), [("ssh", ONE_ADB), ("adb", ONE_ADB),
                                                   ("adb", "adb-debian")],
                         indirect=["adb_server"])
@pytest.mark.slow
def test_device_killed_mid_case(victim: str, sshd: SshServer, standin: AdbStandin,
                                adb_env: AdbServer, tmp_path: Path, make_onnx: Any) -> None:
    devices = _devices(sshd, standin, adb_env, tmp_path)
    uri, marker = devices[victim]
    kill = {"ssh": sshd.kill, "adb": standin.stop}[victim]
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(3)]
    # 2.5 s into its 2nd case: in the timed loop (import and load take about 1 s)
    injector = Injector(uri, marker, kill, case_index=1, delay_s=2.5)
    session = session_for(["-d", devices["ssh"][0], "-d", devices["adb"][0], "-d", "local",
                           *(a for m in models for a in ("-m", m)), *LONG,
                           "--min-duration", "4",
                           "--retries", "1", "--retry-backoff", "0.5"],
                          plugins=[("fault", injector)])
    try:
        report = run_session(session, tmp_path / "out", injector)
    finally:
        kill_runners(marker)  # an sshd that dies leaves its runner running, as a Pi would
    assert injector.fired.is_set()
    after = report_cases(injector.report)  # type: ignore[arg-type]
    assert after == _dicts(report) and len(after) == 9
    # at least the victim's first case and the other remote device's (local opens only once
    # the host's work is over, scheduling.py, so its first case may still be running)
    assert len(injector.before) >= 2
    same_cases(injector.before, after)
    done, first, second = [c for c in report.cases if c.case.device == uri]
    others = [c for c in report.cases if c.case.device != uri]
    assert all(c.status is Status.OK for c in [done, *others]), [c.reason for c in others]
    assert first.status is Status.FAILED and second.status is Status.FAILED
    assert first.reason and first.reason.startswith("connection lost during timed loop: ")
    assert "(gave up after 2 attempts; the last: connection lost during reconnect" \
        in first.reason
    assert any(n.startswith("attempt 1 of 2: connection lost during timed loop")
               for n in first.notes)
    assert second.reason and "not retried: the device has been unreachable since case " \
        f"{first.case.id}" in second.reason
    print(f"\n{victim} killed: report held {len(injector.before)} cases before, "
          f"{len(after)} after; {first.reason}")


def _reboot_ssh(sshd: SshServer, marker: str) -> None:
    sshd.kill()
    kill_runners(marker)
    for workdir in Path(marker).iterdir():  # a reboot empties /tmp
        shutil.rmtree(workdir)
    time.sleep(0.5)
    sshd.start()


@ONLY_ONE_ADB
@pytest.mark.parametrize("victim", ["ssh", "adb"])
@pytest.mark.slow
def test_device_reboots_mid_case_and_the_retry_measures_it(
        victim: str, sshd: SshServer, standin: AdbStandin, adb_env: AdbServer,
        tmp_path: Path, make_onnx: Any) -> None:
    devices = _devices(sshd, standin, adb_env, tmp_path)
    uri, marker = devices[victim]
    back: list[AdbStandin] = []

    def reboot_phone() -> None:
        standin.stop()
        shutil.rmtree(standin.root / "data" / "local" / "tmp")
        (standin.root / "data" / "local" / "tmp").mkdir()
        time.sleep(0.5)
        back.append(AdbStandin(standin.root, port=standin.port, props=PHONE_PROPS,
                               python=PY))

    reboot = {"ssh": lambda: _reboot_ssh(sshd, marker), "adb": reboot_phone}[victim]
    injector = Injector(uri, marker, reboot, delay_s=2.0)
    session = session_for(["-d", uri, "-m", str(make_onnx("conv", size=32)), *LONG,
                           "--min-duration", "3.5", "--retries", "3",
                           "--retry-backoff", "1"],
                          plugins=[("fault", injector)])
    try:
        report = run_session(session, tmp_path / "out", injector)
    finally:
        for phone in back:
            adb_env.adb("disconnect", phone.serial)
            phone.stop()
    (case,) = report.cases
    assert case.status is Status.OK, (case.reason, case.notes)
    assert case.latency is not None and case.latency.n >= 1
    assert case.notes[0].startswith("attempt 1 of 4: connection lost during timed loop")
    assert case.notes[-1].endswith(": ok") and case.notes[-1].startswith("attempt ")
    remote_tmp = Path(marker) if victim == "ssh" else standin.root / "data" / "local" / "tmp"
    assert list(remote_tmp.iterdir()) == [], "the new work dir was not removed"
    print(f"\n{victim} rebooted: report held {len(injector.before)} cases before, "
          f"{len(report.cases)} after; notes: {case.notes}")


@ONLY_ONE_ADB
@pytest.mark.slow
def test_hung_runner_times_out_and_leaves_no_orphan(sshd: SshServer, standin: AdbStandin,
                                                    adb_env: AdbServer, tmp_path: Path,
                                                    make_onnx: Any) -> None:
    devices = _devices(sshd, standin, adb_env, tmp_path)
    uris = [devices["ssh"][0], devices["adb"][0], "local"]
    session = session_for([*(a for u in uris for a in ("-d", u)), "-b", "onnxruntime",
                           "-m", str(make_onnx("conv", size=32)), "--warmup", "0", "-n", "2",
                           "--timeout", "3", "--no-accuracy"],
                          test_options={"test_delay_s": 120})  # sleeps in the timed loop
    start = time.monotonic()
    report = run_session(session, tmp_path / "out")
    assert time.monotonic() - start < 60
    assert len(report.cases) == 3
    for case in report.cases:
        assert case.status is Status.FAILED
        assert case.reason == "timed out after 3 s in the timed loop; the runner was killed"
        assert case.notes == (), "a measurement failure was retried"
    for _, marker in devices.values():
        assert no_runners_left(marker), "the hung runner is still running on the device"
    assert list((tmp_path / "ssh-device").iterdir()) == []
    assert list((standin.root / "data" / "local" / "tmp").iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Any:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    yield small
    subprocess.run(["umount", "-l", str(small)], check=True)


@ONLY_ONE_ADB
@pytest.mark.parametrize("kind", ["ssh", "adb"])
def test_device_disk_full_on_push(kind: str, sshd: SshServer, standin: AdbStandin,
                                  adb_env: AdbServer, small_tmpfs: Path, tmp_path: Path,
                                  make_onnx: Any) -> None:
    uri = sshd.uri(python=PY, tmpdir=str(small_tmpfs)) if kind == "ssh" \
        else adb_uri(standin, adb_env, tmpdir=str(small_tmpfs))
    small, big = make_onnx("conv", size=32, name="small.onnx"), _big_onnx(tmp_path)
    session = session_for(["-d", uri, "-m", str(small), "-m", str(big), "-b", "onnxruntime",
                           "--warmup", "0", "-n", "2", "--no-accuracy"])
    report = run_session(session, tmp_path / "out")
    by_model = {c.case.model.split("@")[0]: c for c in report.cases}
    assert by_model["small"].status is Status.OK, by_model["small"].reason
    failed = by_model["big"]
    assert failed.status is Status.FAILED and failed.notes == ()
    assert failed.reason is not None and failed.reason.startswith(
        "the device's disk is full: big.onnx (3072 KiB) does not fit in ")
    assert list(small_tmpfs.iterdir()) == [], "the work dir was not removed"


def _big_onnx(tmp_path: Path) -> Path:
    """A valid 3 MiB ONNX model (a tiny conv plus an unused initializer)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    pad = numpy_helper.from_array(np.zeros(3 * 262144 - 54, np.float32), "pad")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["y"],
                                                pads=[1, 1, 1, 1])],
                              "big", [x], [y], [w, pad])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    return path


@ONLY_ONE_ADB
def test_runtime_missing_on_the_phone_is_skipped_with_the_fix(
        tmp_path: Path, adb_env: AdbServer, make_onnx: Any) -> None:
    system_python = "/usr/bin/python3"
    if subprocess.run([system_python, "-c", "import onnxruntime"],
                      capture_output=True).returncode == 0:
        pytest.skip("the system python has onnxruntime")
    phone = AdbStandin(tmp_path / "phone", props=PHONE_PROPS, python=system_python)
    (phone.root / "data" / "local" / "tmp").mkdir(parents=True)
    try:
        uri = adb_uri(phone, adb_env)
        report = run_session(session_for(["-d", uri, "-b", "onnxruntime", "--no-accuracy",
                                          "-m", str(make_onnx("conv", size=32))]),
                             tmp_path / "out")
    finally:
        adb_env.adb("disconnect", phone.serial)
        phone.stop()
    (case,) = report.cases
    assert case.status is Status.SKIPPED
    numpy = subprocess.run([system_python, "-c", "import numpy"],
                           capture_output=True).returncode == 0
    on_phone = phone.root / "system" / "bin" / "python3"  # what `command -v python3` finds
    assert case.reason == (
        f"onnxruntime is not installed on {uri}; install it there with: {on_phone} -m "
        "pip install onnxruntime" if numpy else
        f"onnxruntime and numpy are not installed on {uri}; install them there with: "
        f"{on_phone} -m pip install onnxruntime numpy")


def test_unreachable_device_is_retried_then_fails_every_case(sshd: SshServer,
                                                             tmp_path: Path,
                                                             make_onnx: Any) -> None:
    closed = f"ssh://root@127.0.0.1:{free_port()}?known_hosts={sshd.known_hosts}"
    start = time.monotonic()
    report = run_session(session_for(["-d", closed, "-d", "local", "-b", "onnxruntime",
                                      "--no-accuracy", "-n", "2", "--retries", "2",
                                      "--retry-backoff", "0.3",
                                      "-m", str(make_onnx("conv", size=32))]),
                         tmp_path / "out")
    assert 0.9 <= time.monotonic() - start < 60  # waited 0.3 + 0.6 s between the tries
    by_device = {c.case.device: c for c in report.cases}
    assert by_device["local"].status is Status.OK
    reason = by_device[closed].reason
    assert reason is not None and reason.startswith(f"device {closed}: cannot reach root@")
    assert reason.endswith("Connection refused (gave up after 3 attempts)")


@pytest.mark.slow
def test_two_runs_never_measure_one_device_at_once(sshd: SshServer, tmp_path: Path,
                                                   make_onnx: Any) -> None:
    from edgebench.devices.transport import device_lock

    marker = tmp_path / "ssh-device"
    marker.mkdir()
    uri = sshd.uri(python=PY, tmpdir=str(marker))
    argv = [PY, "-m", "edgebench.cli", "run", "-d", uri, "-m", str(make_onnx("conv", size=32)),
            "-b", "onnxruntime", "-n", "2", "--no-accuracy", "-o", str(tmp_path / "out")]
    key = f"ssh:{sshd.user}@127.0.0.1:{sshd.port}"
    with device_lock(key):  # another run is measuring on the device
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ))
        deadline = time.monotonic() + 90
        while not _holds_lock_file(proc.pid) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert _holds_lock_file(proc.pid), "the second run never reached the device lock"
        time.sleep(3)  # unlocked, it would have connected and made its work dir by now
        assert proc.poll() is None and list(marker.iterdir()) == [], \
            "the second run used the device while the first held it"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "ok"


def _holds_lock_file(pid: int) -> bool:
    """``pid`` has a device lock file open (it is waiting for it, or holds it)."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            if "/locks/" in os.readlink(fd) and os.readlink(fd).endswith(".lock"):
                return True
        except OSError:
            continue
    return False


@ONLY_ONE_ADB
@pytest.mark.slow
def test_phone_turns_unauthorized_mid_run(standin: AdbStandin, adb_env: AdbServer,
                                          tmp_path: Path, make_onnx: Any) -> None:
    uri, marker = adb_uri(standin, adb_env), str(standin.root)

    def revoke() -> None:  # the phone forgets this computer's key and the cable wiggles
        standin.mode = "unauthorized"
        standin.drop_connections()

    injector = Injector(uri, marker, revoke, case_index=1, delay_s=2.0)
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(3)]
    report = run_session(session_for(["-d", uri, "-d", "local",
                                      *(a for m in models for a in ("-m", m)), *LONG,
                                      "--min-duration", "3.5", "--retry-backoff", "0.5"],
                                     plugins=[("fault", injector)]), tmp_path / "out",
                         injector)
    kill_runners(marker)
    assert len(injector.before) >= 2
    same_cases(injector.before, _dicts(report))
    done, first, second = [c for c in report.cases if c.case.device == uri]
    assert all(c.status is Status.OK for c in report.cases if c.case.device == "local")
    assert done.status is Status.OK
    unauthorized = (f"the device {standin.serial} is unauthorized: unlock it and accept the "
                    "'Allow USB debugging?' prompt")
    assert first.reason is not None and first.reason.startswith(
        "connection lost during timed loop: ")
    assert f"; reconnecting: {unauthorized}" in first.reason
    assert len(first.notes) == 1  # one wait, then the phone said why: no more retries
    assert second.reason is not None and second.reason.startswith(unauthorized)
    assert second.notes == ()
    print(f"\nphone unauthorized: report held {len(injector.before)} cases before, "
          f"{len(report.cases)} after; {first.reason}")
