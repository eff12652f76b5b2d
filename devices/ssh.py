"""A Linux board over SSH (a Raspberry Pi, a Jetson, any aarch64 or x86 host).

URI: ``ssh://[user@]host[:port][?option=value&...]``. ``host`` may be an alias from
``~/.ssh/config``, whose ``HostName``, ``User``, ``Port``, ``IdentityFile``,
``IdentitiesOnly``, ``UserKnownHostsFile``, ``ProxyCommand``, ``ProxyJump`` and
``ConnectTimeout`` are honoured. Options:

``python``           the interpreter on the device (default: ``python3``, else ``python``)
``key``              a private key file (default: the ssh-agent, then ``IdentityFile`` and
                     the usual ``~/.ssh/id_*``); an encrypted key must be in the agent
``known_hosts``      known_hosts file(s), comma-separated (default: as OpenSSH)
``hostkey``          the expected host key fingerprint, ``SHA256:...``: accepted for this
                     connection when known_hosts does not know the host, and required to
                     match when it does
``tmpdir``           where the private work dir is made (default ``/tmp``)
``connect_timeout``  seconds (default 10)
``onnxruntime_perf_test``, ``benchmark_model``, ``benchncnn``
                     a native benchmark binary on this host, pushed and used instead of the
                     Python runner of its backend (see :mod:`edgebench.devices.native`)

Host keys are checked as OpenSSH does (:mod:`edgebench.devices.ssh_hostkeys`); an unknown
host is refused with its fingerprint and how to accept it, a changed key always. Passwords
are not supported: they would end up in reports. The URI and ``~/.ssh/config`` are read by
:mod:`edgebench.devices.ssh_target`, the connection opened by
:mod:`edgebench.devices.ssh_connect`; this module is the device itself.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import shlex
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import ClassVar, Self

from edgebench.contracts import Completed, Device, NativeRunner
from edgebench.errors import CaseError
from edgebench.fingerprint import DeviceAgent
from edgebench.hookspecs import Register, hookimpl
from edgebench.redaction import redact
from edgebench.retry import ConnectionLost, RunnerTimedOut

from .native import native_runners
from .shell_agent import ShellAgent, read_throttling
from .ssh_connect import (
    Channel,
    SFTPClient,
    SSHClient,
    alive,
    connect,
    open_channel,
    reason,
    run_line,
)
from .ssh_hostkeys import HostKey, fingerprint, record_host_key
from .ssh_target import SSHTarget, parse_uri, resolve
from .transport import (
    device_lock,
    kill_command,
    new_workdir_name,
    remote_command,
    remove_command,
    split_pid,
    within,
)
from .workdirs import HostProcess, made, make_command, owner_command, remove_stale


class SSHDevice(Device):
    """``ssh://user@host``: runners run in a private work dir over an SSH connection."""

    scheme: ClassVar[str] = "ssh"
    has_host_keys: ClassVar[bool] = True

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._user, self._host, self._port, self._options = parse_uri(uri)
        self.python = self._options.get("python", "")
        self._natives = native_runners(self._options, uri)
        self._target: SSHTarget | None = None
        self._client: SSHClient | None = None
        self._sftp: SFTPClient | None = None
        self._workdir: PurePosixPath | None = None
        self._dirs: set[str] = set()
        self._running_pid: int | None = None
        self._running_channel: Channel | None = None
        self._unfinished: set[int] = set()  # remote PIDs whose end we have not seen
        self._aborted = False
        self._stack = contextlib.ExitStack()

    # -- optional Device members (defaults: edgebench.contracts.Device) -----------------

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("paramiko") is None:
            return "paramiko is not installed: pip install 'edgebench[ssh]'"
        return None

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Validate ``uri`` before a run starts (no connection)."""
        _, _, _, options = parse_uri(uri)
        native_runners(options, uri)

    @classmethod
    def preload(cls) -> None:
        """paramiko loads in a daemon thread, beside the host's planning."""

        def load() -> None:
            with contextlib.suppress(Exception):
                import paramiko  # noqa: F401

        threading.Thread(target=load, name="paramiko preload", daemon=True).start()

    @classmethod
    def accept_new_host_key(cls, uri: str) -> str:
        """Record the host key of an unknown host in known_hosts (an explicit opt-in)."""
        target = resolve(uri)
        seen: list[HostKey] = []

        def accept(key: HostKey) -> bool:
            seen.append(key)
            return True

        client = connect(target, accept_unknown=accept)
        client.close()
        if not seen:
            return f"{target.known_hosts_name} is already known"
        key = seen[0]
        path = record_host_key(target, key)
        return (f"recorded {key.get_name()} {fingerprint(key)} for "
                f"{target.known_hosts_name} in {path}")

    def agent(self) -> DeviceAgent:
        return DeviceAgent(self) if self.python else ShellAgent(self, self._native_versions())

    def native_runner(self, backend: str) -> NativeRunner | None:
        return self._natives.get(backend)

    def throttling(self) -> str | None:
        return read_throttling(self)

    def _native_versions(self) -> dict[str, str]:
        return {r.tool: r.version_label() for r in self._natives.values()}

    # -- required Device members ---------------------------------------------------------

    @property
    def workdir(self) -> PurePosixPath:
        if self._workdir is None:
            raise RuntimeError("SSHDevice used outside its 'with' block")
        return self._workdir

    def __enter__(self) -> Self:
        missing = self.host_unavailable_reason()
        if missing:
            raise CaseError(missing)
        target = resolve(self.uri)
        self._target = target
        self._stack.enter_context(device_lock(f"ssh:{target.user}@{target.hostname}:"
                                              f"{target.port}"))
        try:
            self._connect()
            if not self.python:
                self.python = self._find_python()
            self._make_workdir()
        except BaseException:
            self._close()
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._kill_running()
            if self._workdir is not None:
                # after a dropped connection: reconnect once, kill what may still run there
                with contextlib.suppress(CaseError, OSError, EOFError):
                    if not self._alive():
                        self._reconnect()
                    if self._unfinished and self._workdir_exists():
                        self._kill_unfinished()
                    self._exec(remove_command(self._workdir), 60)
        finally:
            self._workdir = None
            self._close()
            self._stack.close()

    def push(self, local: Path, remote: PurePosixPath) -> None:
        remote = within(self.workdir, remote)
        try:
            self._makedirs(remote.parent)
            self._sftp_client().put(str(local), str(remote))
        except CaseError:
            raise
        except (OSError, EOFError, Exception) as exc:
            raise self._copy_failure(local, remote, exc) from None

    def pull(self, remote: PurePosixPath, local: Path) -> None:
        remote = within(self.workdir, remote)
        try:
            self._sftp_client().get(str(remote), str(local))
        except FileNotFoundError:
            raise CaseError(f"{remote} was not produced on the device") from None
        except CaseError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                raise CaseError(f"{remote} was not produced on the device") from None
            if not self._alive():
                raise ConnectionLost(f"the connection to {self._label} was lost while "
                                     f"copying {remote.name}") from None
            raise CaseError(f"cannot copy {remote} from {self._label}: "
                            f"{reason(exc)}") from None

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        if self._aborted:
            raise CaseError("aborted")
        start = time.perf_counter()
        command = remote_command(argv, self._workdir)
        if not self._alive():
            self._reconnect()
        channel = open_channel(self._client, self._label)
        self._running_channel = channel
        self._running_pid = None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            channel.exec_command(command)
            while True:
                busy = False
                while channel.recv_ready():
                    out += channel.recv(65536)
                    busy = True
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    busy = True
                if self._running_pid is None and b"\n" in out:
                    self._running_pid, _ = split_pid(out.decode("utf-8", "replace"))
                    if self._running_pid is not None:
                        self._unfinished.add(self._running_pid)
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    break
                if self._aborted:
                    raise CaseError("aborted")
                if time.monotonic() > deadline:
                    self._kill_running()
                    raise RunnerTimedOut(timeout_s, out.decode("utf-8", "replace"))
                if not self._alive():
                    raise ConnectionLost(f"the connection to {self._label} was lost while "
                                         f"running {PurePosixPath(argv[0]).name}",
                                         output=out.decode("utf-8", "replace"))
                if not busy:
                    time.sleep(0.01)
            code = channel.recv_exit_status()
            if code == -1 and not self._alive():  # the channel closed with the connection
                raise ConnectionLost(f"the connection to {self._label} was lost while "
                                     f"running {PurePosixPath(argv[0]).name}",
                                     output=out.decode("utf-8", "replace"))
            self._unfinished.discard(self._running_pid or -1)
        except (OSError, EOFError) as exc:
            raise ConnectionLost(f"the connection to {self._label} was lost: "
                                 f"{reason(exc)}",
                                 output=out.decode("utf-8", "replace")) from None
        finally:
            self._running_channel = None
            channel.close()
        _, stdout = split_pid(out.decode("utf-8", "replace"))
        self._running_pid = None
        return Completed(tuple(argv), code, stdout, err.decode("utf-8", "replace"),
                         time.perf_counter() - start)

    def abort(self) -> None:
        self._aborted = True
        self._kill_running()

    # -- internals ----------------------------------------------------------------------

    @property
    def _label(self) -> str:
        return self._target.label if self._target is not None else redact(self.uri)

    def _connect(self) -> None:
        assert self._target is not None
        self._client = client = connect(self._target)
        try:
            self._sftp = client.open_sftp()
        except Exception as exc:
            raise CaseError(f"{self._label} offers no SFTP ({reason(exc)}); enable the "
                            "sftp subsystem in its sshd_config") from None

    def _alive(self) -> bool:
        return alive(self._client)

    def _reconnect(self) -> None:
        """After a dropped connection: one new attempt (the work dir survives on the device,
        its owner record now names the new connection)."""
        self._close()
        self._connect()
        if self._workdir is not None:
            self._record_owner(self._workdir)

    def reconnect(self) -> None:
        """Connect again after a lost connection (the retry of a case calls this).

        Kills what the cut-off case left running, if the work dir is still there (if it is
        gone, the device rebooted: those PIDs may now be someone else's); makes a new
        private work dir when the old one is gone.
        """
        if self._aborted:
            raise CaseError("aborted")
        self._running_pid = self._running_channel = None
        self._reconnect()
        if self._workdir_exists():
            self._kill_unfinished()
            return
        self._unfinished.clear()
        self._make_workdir()

    def _workdir_exists(self) -> bool:
        if self._workdir is None or self._sftp is None:
            return False
        try:
            return stat.S_ISDIR(self._sftp.stat(str(self._workdir)).st_mode or 0)
        except OSError:
            return False

    def _kill_unfinished(self) -> None:
        for pid in sorted(self._unfinished):
            self._exec(kill_command(pid), 15)
        self._unfinished.clear()

    def _make_workdir(self) -> None:
        """Make a private work dir (0700) with its owner record, and remove the ones that
        runs which are over left next to it (killed, or their connection lost): one round
        trip (:mod:`edgebench.devices.workdirs`)."""
        assert self._target is not None
        base = PurePosixPath(self._target.options.get("tmpdir", "/tmp"))
        workdir = base / new_workdir_name()
        if not self._alive():
            raise ConnectionLost(f"the connection to {self._label} was lost")
        _, out, _ = self._exec(make_command(workdir, HostProcess.current(), connection=True),
                               60)
        problem = made(out)
        if problem is not None:
            raise CaseError(f"cannot create a work dir in {base} on {self._target.label}: "
                            f"{problem}")
        self._workdir = workdir
        self._dirs = {str(workdir)}
        remove_stale(lambda line: self._exec(line, 60)[1], base, scan=out)

    def _record_owner(self, workdir: PurePosixPath) -> None:
        """Write the work dir's owner record again (after a reconnect: this connection's
        sshd is the one a later run must see alive)."""
        with contextlib.suppress(CaseError, OSError, EOFError):
            self._exec(owner_command(workdir, HostProcess.current(), connection=True), 30)

    def _sftp_client(self) -> SFTPClient:
        if not self._alive():
            self._reconnect()
        if self._sftp is None:
            raise ConnectionLost(f"the connection to {self._label} was lost")
        return self._sftp

    def _exec(self, command: str, timeout_s: float) -> tuple[int, str, str]:
        return run_line(self._client, self._label, command, timeout_s)

    def _find_python(self) -> str:
        code, out, _ = self._exec("command -v python3 || command -v python", 30)
        found = out.strip().splitlines()
        if code == 0 and found:
            return found[0]
        if self._natives:
            return ""  # native runners only
        raise CaseError(f"no Python found on {self._label} (looked for python3 and python): "
                        "install python3 there or give its path: ?python=/path/to/python3")

    def _makedirs(self, path: PurePosixPath) -> None:
        missing: list[PurePosixPath] = []
        while str(path) not in self._dirs:
            missing.append(path)
            path = path.parent
        sftp = self._sftp_client()
        for directory in reversed(missing):
            try:
                sftp.mkdir(str(directory), 0o700)
            except OSError:
                if not stat.S_ISDIR(sftp.stat(str(directory)).st_mode or 0):
                    raise
            self._dirs.add(str(directory))

    def _copy_failure(self, local: Path, remote: PurePosixPath, exc: BaseException
                      ) -> CaseError:
        size = local.stat().st_size if local.exists() else 0
        if not self._alive():
            return ConnectionLost(f"the connection to {self._label} was lost while copying "
                                  f"{local.name}")
        with contextlib.suppress(CaseError, OSError, ValueError, IndexError):
            _, out, _ = self._exec(shlex.join(["df", "-Pk", str(self.workdir)]), 30)
            free_kib = int(out.strip().splitlines()[-1].split()[3])
            if free_kib * 1024 < size + (1 << 20):
                return CaseError(f"the device's disk is full: {local.name} ({size >> 10} KiB) "
                                 f"does not fit in {self.workdir.parent} on {self._label} "
                                 f"({free_kib} KiB free)")
        return CaseError(f"cannot copy {local.name} to {self._label}:{remote}: "
                         f"{reason(exc)}")

    def _kill_running(self) -> None:
        pid, channel = self._running_pid, self._running_channel
        if pid is not None and self._alive():
            with contextlib.suppress(CaseError, OSError, EOFError, Exception):
                self._exec(kill_command(pid), 15)
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.close()

    def _close(self) -> None:
        for obj in (self._sftp, self._client):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
        self._sftp = None
        self._client = None


@hookimpl
def edgebench_register_devices(register: Register) -> None:
    register(SSHDevice)
