"""An Android phone (or any adbd device) through the adb server.

URI: ``adb://SERIAL`` (as ``adb devices`` lists it), ``adb://host:port`` (TCP/IP debugging:
connected with ``adb connect`` and disconnected afterwards), or ``adb://`` (the only device
attached). Options:

``python``   an interpreter on the device (default: ``python3`` if one is on its PATH, e.g.
             an aarch64 Linux board or Termux; ``none``: do not use one); without one,
             only native runners run
``onnxruntime_perf_test``, ``benchmark_model``, ``benchncnn``
             a benchmark binary for the device's ABI on this host, pushed and used for its
             backend (see :mod:`edgebench.devices.native`)
``tmpdir``   where the private work dir is made (default ``/data/local/tmp``)
``adb``      the adb binary (default: ``adb`` on PATH, else the one bundled with adbutils)

The adb server is the user's (``ANDROID_ADB_SERVER_PORT`` and ``ANDROID_SERIAL`` work as
usual); every command is an ``adb shell`` line built from an argument list with
:func:`shlex.join`. (The URI and adb's messages are read in
:mod:`edgebench.devices.adb_target`.)
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, ClassVar, Self

from edgebench.contracts import Completed, Device, NativeRunner
from edgebench.errors import CaseError
from edgebench.fingerprint import DeviceAgent
from edgebench.hookspecs import Register, hookimpl
from edgebench.retry import ConnectionLost, RunnerTimedOut

from .adb_target import (
    DEFAULT_TMPDIR,
    find_adb,
    first_line,
    parse_uri,
    state_error,
    state_problem,
    waits_for_a_person,
)
from .native import native_runners
from .shell_agent import PROBE_SCRIPT, ShellAgent, probe_fields, read_throttling
from .transport import (
    device_lock,
    kill_command,
    new_workdir_name,
    remote_command,
    remove_command,
    split_exit,
    split_pid,
    within,
)
from .workdirs import HostProcess, made, make_command, remove_stale


class AdbDevice(Device):
    """``adb://SERIAL``: a private dir under /data/local/tmp, commands over ``adb shell``."""

    scheme: ClassVar[str] = "adb"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.serial, self._network, self._options = parse_uri(uri)
        self.python = self._options.get("python", "")
        self._find_python = self.python == ""
        if self.python == "none":  # use native runners even where a Python exists
            self.python = ""
        self._natives = native_runners(self._options, uri)
        self._adb = ""
        self._workdir: PurePosixPath | None = None
        self._connected_by_us = False
        self._running: subprocess.Popen[bytes] | None = None
        self._running_pid: int | None = None
        self._unfinished: set[int] = set()  # PIDs whose exit status never came back
        self._aborted = False
        self._stack = contextlib.ExitStack()

    # -- optional Device members (defaults: edgebench.contracts.Device) -----------------

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        try:
            find_adb(None)
        except CaseError as exc:
            return str(exc)
        return None

    @classmethod
    def check_uri(cls, uri: str) -> None:
        _, _, options = parse_uri(uri)
        native_runners(options, uri)

    def agent(self) -> DeviceAgent:
        return DeviceAgent(self) if self.python else ShellAgent(
            self, {r.tool: r.version_label() for r in self._natives.values()})

    def native_runner(self, backend: str) -> NativeRunner | None:
        return self._natives.get(backend)

    def throttling(self) -> str | None:
        return read_throttling(self)

    def android_fields(self) -> dict[str, Any]:
        """Model, SoC, ABI and Android version from ``getprop`` ({} on a non-Android adbd)."""
        try:
            text = self.run(["sh", "-c", PROBE_SCRIPT], timeout_s=60).stdout
        except (CaseError, OSError):
            return {}
        fields = probe_fields(text)
        if not fields["os"].startswith("Android"):
            return {}
        return {k: fields[k] for k in ("cpu_model", "os") if fields.get(k)}

    # -- required Device members ---------------------------------------------------------

    @property
    def workdir(self) -> PurePosixPath:
        if self._workdir is None:
            raise RuntimeError("AdbDevice used outside its 'with' block")
        return self._workdir

    def __enter__(self) -> Self:
        self._adb = find_adb(self._options.get("adb"))
        try:
            self._attach()
            self._stack.enter_context(device_lock(f"adb:{self.serial}"))
            if self._find_python:
                code, out, _ = self._shell("command -v python3", 30)
                self.python = out.strip().splitlines()[0] if code == 0 and out.strip() else ""
            self._make_workdir()
        except BaseException:
            self._detach()
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._kill_running()
            if self._workdir is not None:
                with contextlib.suppress(CaseError, OSError, subprocess.TimeoutExpired):
                    if self._unfinished:  # cut off by a dropped connection: adb reconnects
                        self._adb_run(["wait-for-device"], 15)
                    for pid in sorted(self._unfinished):
                        self._shell(kill_command(pid), 15)
                    self._unfinished.clear()
                    self._shell(remove_command(self._workdir), 60)
        finally:
            self._workdir = None
            self._detach()
            self._stack.close()

    def push(self, local: Path, remote: PurePosixPath) -> None:
        remote = within(self.workdir, remote)
        done = self._adb_run(["push", str(local), str(remote)], 3600)
        if done.returncode != 0:
            text = (done.stderr + "\n" + done.stdout).strip()
            if "no space left" in text.lower():
                raise CaseError(f"the device's disk is full: {local.name} "
                                f"({local.stat().st_size >> 10} KiB) does not fit in "
                                f"{self.workdir.parent} on {self.serial}")
            raise self._lost_or(f"cannot copy {local.name} to {self.serial}:{remote}: "
                                f"{first_line(text)}")

    def pull(self, remote: PurePosixPath, local: Path) -> None:
        remote = within(self.workdir, remote)
        done = self._adb_run(["pull", str(remote), str(local)], 3600)
        if done.returncode != 0:
            text = (done.stderr + "\n" + done.stdout).strip()
            missing = "does not exist" in text or "No such file" in text
            if missing and self._state() == "device":
                raise CaseError(f"{remote} was not produced on the device")
            raise self._lost_or(f"cannot copy {remote} from {self.serial}: "
                                f"{first_line(text)}")

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        if self._aborted:
            raise CaseError("aborted")
        start = time.perf_counter()
        proc = subprocess.Popen(
            [self._adb, "-s", self.serial, "shell",
             remote_command(argv, self._workdir, exit_marker=True)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self._running, self._running_pid = proc, None
        out, err = bytearray(), bytearray()

        def read(pipe: io.BufferedIOBase, into: bytearray, watch_pid: bool) -> None:
            while True:
                chunk = pipe.read1(65536)
                if not chunk:
                    return
                into += chunk
                if watch_pid and self._running_pid is None and b"\n" in into:
                    self._running_pid, _ = split_pid(into.decode("utf-8", "replace"))
                    if self._running_pid is not None:
                        self._unfinished.add(self._running_pid)

        readers = [threading.Thread(target=read, args=(proc.stdout, out, True), daemon=True),
                   threading.Thread(target=read, args=(proc.stderr, err, False), daemon=True)]
        for t in readers:
            t.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_running()
            for t in readers:
                t.join(timeout=5)
            raise RunnerTimedOut(timeout_s, out.decode("utf-8", "replace")) from None
        finally:
            for t in readers:
                t.join(timeout=5)
            self._running, self._running_pid = None, None
        if self._aborted:
            raise CaseError("aborted")
        pid, stdout = split_pid(out.decode("utf-8", "replace"))
        stdout, code = split_exit(stdout)
        stderr = err.decode("utf-8", "replace")
        if code is None:  # the shell never printed the status: cut off
            lost = (f"the connection to {self.serial} was lost while running "
                    f"{PurePosixPath(argv[0]).name}")
            if pid is None and state_problem(self.serial, stderr):
                error = state_error(self.serial, stderr, lost)
                if isinstance(error, ConnectionLost):
                    error.output = stdout
                raise error
            raise ConnectionLost(lost, output=stdout)
        self._unfinished.discard(pid or -1)
        return Completed(tuple(argv), code, stdout, stderr, time.perf_counter() - start)

    def abort(self) -> None:
        self._aborted = True
        self._kill_running()

    # -- internals ----------------------------------------------------------------------

    def _adb_run(self, args: list[str], timeout_s: float, *, serial: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        argv = [self._adb, *(("-s", self.serial) if serial else ()), *args]
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CaseError(f"adb {args[0]} on {self.serial or 'the device'} timed out after "
                            f"{timeout_s:g} s") from None
        except OSError as exc:
            raise CaseError(f"cannot run {self._adb}: {exc.strerror}") from None

    def _shell(self, line: str, timeout_s: float) -> tuple[int, str, str]:
        done = self._adb_run(["shell", line], timeout_s)
        return done.returncode, done.stdout, done.stderr

    def _state(self) -> str:
        try:
            done = self._adb_run(["get-state"], 30)
        except CaseError:
            return "unknown"
        return done.stdout.strip() if done.returncode == 0 else (done.stderr or done.stdout)

    def _lost_or(self, message: str) -> CaseError:
        state = self._state()
        if state == "device":
            return CaseError(message)
        problem = state_problem(self.serial, state)
        if problem and waits_for_a_person(state):
            return CaseError(problem)
        return ConnectionLost(f"the connection to {self.serial} was lost: "
                              f"{problem or first_line(state)}")

    def _attach(self) -> None:
        started = self._adb_run(["start-server"], 60, serial=False)
        if started.returncode != 0:
            raise CaseError(f"the adb server does not start: "
                            f"{first_line(started.stderr or started.stdout)}")
        if not self.serial:
            self.serial = self._only_device()
        if self._network:
            done = self._adb_run(["connect", self.serial], 60, serial=False)
            text = done.stdout + done.stderr  # 'adb connect' exits 0 even when refused
            if "already connected" not in text and not text.startswith("connected to"):
                state = self._state()  # TCP up but no handshake: adb lists it "offline"
                seen = state if "offline" in state else text
                raise state_error(self.serial, seen,
                                  f"cannot connect to {self.serial}: {first_line(text)}")
            self._connected_by_us = self._connected_by_us or "already connected" not in text
        state = self._state()
        if state != "device":
            raise state_error(self.serial, state,
                              f"{self.serial} is not usable: {first_line(state)}")

    def reconnect(self) -> None:
        """Reach the device again after a lost connection (the retry of a case calls
        this): ``adb connect`` for a network device, then wait until adb lists it.

        Kills what the cut-off case left running if the work dir is still there (if it is
        gone, the device rebooted); makes a new private work dir when the old one is gone.
        """
        if self._aborted:
            raise CaseError("aborted")
        ours = self._connected_by_us
        if self._network:  # a fresh TCP connection: the server's own retries are slow
            self._adb_run(["disconnect", self.serial], 30, serial=False)
        try:
            self._attach()  # one try: the retrier waits between them
        finally:
            self._connected_by_us = ours
        assert self._workdir is not None
        code, _, _ = self._shell(shlex.join(["test", "-d", str(self._workdir)]), 30)
        if code == 0:
            for pid in sorted(self._unfinished):
                self._shell(kill_command(pid), 15)
        else:
            self._make_workdir()
        self._unfinished.clear()

    @property
    def _base(self) -> PurePosixPath:
        return PurePosixPath(self._options.get("tmpdir", DEFAULT_TMPDIR))

    def _shell_out(self, line: str) -> str:
        """stdout of a housekeeping line (:mod:`edgebench.devices.workdirs`)."""
        return self._shell(line, 60)[1]

    def _make_workdir(self) -> None:
        """A private work dir (0700) with its owner record (no connection process on the
        device: adbd starts every command), and the ones that runs which are over left
        next to it removed: one round trip (:mod:`edgebench.devices.workdirs`)."""
        base = self._base
        workdir = base / new_workdir_name()
        _, out, err = self._shell(make_command(workdir, HostProcess.current(),
                                               connection=False), 60)
        problem = made(out)
        if problem is not None:
            raise CaseError(f"cannot create a work dir in {base} on {self.serial}: "
                            f"{first_line(err) or problem}")
        self._workdir = workdir
        remove_stale(self._shell_out, base, scan=out)

    def _only_device(self) -> str:
        done = self._adb_run(["devices"], 30, serial=False)
        rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
        ready = [r[0] for r in rows if len(r) >= 2 and r[1] == "device"]
        if len(ready) == 1:
            return ready[0]
        listed = ", ".join(" ".join(r[:2]) for r in rows) or "none"
        raise CaseError(f"adb:// needs exactly one attached device, found {listed}; "
                        "name one: adb://SERIAL")

    def _detach(self) -> None:
        if self._connected_by_us:
            with contextlib.suppress(CaseError):
                self._adb_run(["disconnect", self.serial], 30, serial=False)
            self._connected_by_us = False

    def _kill_running(self) -> None:
        proc, pid = self._running, self._running_pid
        if pid is not None:
            with contextlib.suppress(CaseError, OSError):
                self._shell(kill_command(pid), 15)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)


@hookimpl
def edgebench_device_info(device: Device, info: dict[str, Any]) -> None:
    """Phones: model, SoC, ABI and Android version from getprop (Python-less devices
    already have them from the shell probe)."""
    if isinstance(device, AdbDevice) and info.get("python"):
        info.update(device.android_fields())


@hookimpl
def edgebench_register_devices(register: Register) -> None:
    register(AdbDevice)
