"""Work dirs that a run could not remove (its process SIGKILLed, its device unreachable when
it ended) are removed at the next connection to that device, with the runner processes
still working in them; dirs a live run uses, other users' dirs and anything not named like
a work dir stay (:mod:`edgebench.devices.workdirs`).

A "run" here is a real device object held open in another process (``HOLDER``), with a
real command running in its work dir (``sleep``, as a runner would be), on the real sshd,
the real adb server with the adbd stand-in, and the local host.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adb_standin import AdbStandin
from remote_fixtures import adb_env, adb_server, adb_uri, ssh_home, sshd, standin  # noqa: F401
from servers import AdbServer, SshServer, process_alive

from edgebench.devices.adb import AdbDevice
from edgebench.devices.local import LocalDevice
from edgebench.devices.ssh import SSHDevice
from edgebench.devices.workdirs import FOREIGN_GRACE_S, OWNER_FILE, UNRECORDED_GRACE_S

PY = sys.executable

HOLDER = r'''
import importlib, signal, sys, threading, time
module, cls, uri = sys.argv[1:4]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the 'with': clean up if it can
device = getattr(importlib.import_module(module), cls)(uri)
with device:
    threading.Thread(target=lambda: device.run(["sleep", "300"], timeout_s=600),
                     daemon=True).start()
    print(device.workdir, flush=True)
    time.sleep(300)
'''


@pytest.fixture(autouse=True)
def _no_holder_left() -> Iterator[None]:
    """Whatever a failed test leaves: the holders and the commands they started."""
    yield
    for proc in _HOLDERS:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for pid in _WORKERS:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _HOLDERS.clear()
    _WORKERS.clear()


_HOLDERS: list[subprocess.Popen[str]] = []
_WORKERS: list[int] = []


def _hold(module: str, cls: str, uri: str, tmp_path: Path, env: dict[str, str] | None = None
          ) -> tuple[subprocess.Popen[str], Path, int]:
    """A device held open by another process (its own cache: its own host lock), with a
    ``sleep`` running in its work dir: ``(process, work dir, sleep's PID)``."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    cache = tmp_path / f"holder-cache-{time.monotonic_ns()}"
    proc = subprocess.Popen([PY, str(script), module, cls, uri], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EDGEBENCH_CACHE": str(cache), **(env or {})})
    _HOLDERS.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read() if proc.stderr else ""
    workdir = Path(line)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        worker = _worker_in(workdir)
        if worker:
            _WORKERS.append(worker)
            return proc, workdir, worker
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the command never started in {workdir}: {proc.communicate()}")


def _worker_in(workdir: Path) -> int | None:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd") == str(workdir) and \
                    (proc / "cmdline").read_bytes().startswith(b"sleep\x00300\x00"):
                return int(proc.name)
        except OSError:
            continue
    return None


def _kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _backdate(path: Path, seconds: float) -> None:
    for p in (path / OWNER_FILE, path):
        if p.exists():
            old = time.time() - seconds
            os.utime(p, (old, old), follow_symlinks=False)


@pytest.mark.sshd
@pytest.mark.parametrize("how", ["SIGKILL", "unreachable"])
def test_ssh_work_dir_of_a_run_that_is_over_goes_at_the_next_connection(
        how: str, sshd: SshServer, tmp_path: Path) -> None:  # noqa: F811
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    uri = sshd.uri(python=PY, tmpdir=str(device_tmp), connect_timeout="2")
    holder, left, worker = _hold("edgebench.devices.ssh", "SSHDevice", uri, tmp_path)
    record = (left / OWNER_FILE).read_text()
    assert f" pid={holder.pid} " in record and re.search(r" conn=\d+ conn_start=\d+", record)
    if how == "SIGKILL":
        _kill9(holder)  # no cleanup runs
    else:  # the board drops off the network; the run ends without reaching it again
        sshd.kill()
        holder.terminate()
        holder.wait(60)
        sshd.start()
    assert left.is_dir() and process_alive(worker, 0.1), "nothing was left to clean"
    with SSHDevice(uri) as dev:  # the next connection to that device
        assert not left.exists(), "the left work dir is still there"
        assert not process_alive(worker), "the runner left in it still runs"
        assert [p.name for p in device_tmp.iterdir()] == [dev.workdir.name]
    assert list(device_tmp.iterdir()) == []


@pytest.mark.sshd
def test_ssh_keeps_what_a_live_run_or_someone_else_uses(sshd: SshServer,  # noqa: F811
                                                        tmp_path: Path) -> None:
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    uri = sshd.uri(python=PY, tmpdir=str(device_tmp))
    holder, live, worker = _hold("edgebench.devices.ssh", "SSHDevice", uri, tmp_path)
    try:
        _backdate(live, 10 * UNRECORDED_GRACE_S)  # age alone never condemns a live run
        with SSHDevice(uri):
            assert live.is_dir() and process_alive(worker, 0.1)  # this host's run is alive
        # the same run as seen from another host: its connection's sshd is what counts
        owner = live / OWNER_FILE
        owner.write_text(re.sub(r"host=\S+", "host=elsewhere", owner.read_text()))
        _backdate(live, 10 * UNRECORDED_GRACE_S)
        holder.send_signal(signal.SIGSTOP)  # alive, quiet: its connection stays up
        with SSHDevice(uri):
            assert live.is_dir() and process_alive(worker, 0.1)
    finally:
        holder.send_signal(signal.SIGCONT)
        _kill9(holder)
    # gone on the other host, but a command still works in its dir: kept
    with SSHDevice(uri):
        assert live.is_dir()
    os.kill(worker, signal.SIGKILL)
    assert not process_alive(worker)
    (live / "result.json").write_text("{}")  # touched just now: it may be reconnecting
    with SSHDevice(uri):
        assert live.is_dir()
    _backdate(live, FOREIGN_GRACE_S + 60)
    others = {  # name: (owner uid, record) of dirs next to it, all idle for two days
        "edgebench-" + "a" * 16: (0, None),          # ours, no record: an older edgebench
        "edgebench-" + "b" * 16: (65534, None),      # another user's
        "edgebench-notours-1234": (0, None),         # not a work dir's name
        "edgebench-" + "c" * 16: (0, "host=elsewhere host_boot=x pid=1 pid_start=1 "
                                     "device_boot=not-this-boot conn=- conn_start=-"),
    }
    for name, (uid, record) in others.items():
        path = device_tmp / name
        path.mkdir(mode=0o700)
        if record is not None:
            (path / OWNER_FILE).write_text(f"edgebench-owner v1 {record}\n")
        os.chown(path, uid, uid)
        _backdate(path, 2 * UNRECORDED_GRACE_S)
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    (device_tmp / ("edgebench-" + "d" * 16)).symlink_to(target)
    with SSHDevice(uri) as dev:
        kept = sorted(p.name for p in device_tmp.iterdir() if p.name != dev.workdir.name)
    assert kept == ["edgebench-" + "b" * 16, "edgebench-" + "d" * 16, "edgebench-notours-1234"]
    assert (target / "keep").exists()


@pytest.mark.adb
@pytest.mark.parametrize("adb_server", ["adb-adbutils"], indirect=True)
def test_adb_work_dir_of_a_killed_run_goes_at_the_next_connection(
        standin: AdbStandin, adb_env: AdbServer, tmp_path: Path) -> None:  # noqa: F811
    uri = adb_uri(standin, adb_env, python="none")
    phone_tmp = standin.root / "data" / "local" / "tmp"
    holder, left, worker = _hold("edgebench.devices.adb", "AdbDevice", uri, tmp_path)
    assert f" pid={holder.pid} " in (left / OWNER_FILE).read_text()
    _kill9(holder)
    assert left.is_dir() and process_alive(worker, 0.1)
    with AdbDevice(uri) as dev:
        assert not left.exists() and not process_alive(worker)
        assert [p.name for p in phone_tmp.iterdir()] == [dev.workdir.name]
    assert list(phone_tmp.iterdir()) == []


def test_local_work_dir_of_a_killed_run_goes_at_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    holder, left, worker = _hold("edgebench.devices.local", "LocalDevice", "local", tmp_path,
                                 env={"TMPDIR": str(temp)})
    assert left.parent == temp and f" pid={holder.pid} " in (left / OWNER_FILE).read_text()
    with LocalDevice() as dev:  # a second run while the first is alive: kept
        assert left.is_dir() and dev.workdir.name != left.name
    _kill9(holder)
    assert left.is_dir() and process_alive(worker, 0.1)
    with LocalDevice() as dev:
        assert not left.exists() and not process_alive(worker)
        assert [p.name for p in temp.iterdir()] == [dev.workdir.name]
    assert list(temp.iterdir()) == []
