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

Host keys are checked against known_hosts (plain and hashed entries; a key marked
``@revoked`` is refused); an unknown host is refused with its fingerprint and how to accept
it (``edgebench devices --accept-new-host-keys -d URI``), unless ``~/.ssh/config`` says
``StrictHostKeyChecking accept-new`` (or ``no``) for it: then its key is recorded as
OpenSSH would (hashed under ``HashKnownHosts yes``). A changed key is always refused.
Passwords are not supported: they would end up in reports.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import importlib.util
import os
import shlex
import socket
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from edgebench.contracts import Completed, Device, NativeRunner
from edgebench.errors import CaseError, UserError
from edgebench.fingerprint import DeviceAgent
from edgebench.hookspecs import Register, hookimpl
from edgebench.retry import ConnectionLost, RunnerTimedOut

from .native import NATIVE_TOOLS, native_runners
from .transport import (
    ShellAgent,
    device_lock,
    kill_command,
    new_workdir_name,
    parse_query,
    read_throttling,
    redact,
    remote_command,
    remove_command,
    split_pid,
    within,
)

OPTIONS = ("python", "key", "known_hosts", "hostkey", "tmpdir", "connect_timeout",
           *NATIVE_TOOLS)


@dataclass(frozen=True)
class SSHTarget:
    """Where to connect, from the URI and ``~/.ssh/config``."""

    uri: str
    alias: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str | None = None
    connect_timeout: float = 10.0
    accept_new_keys: bool = False
    """``StrictHostKeyChecking accept-new`` (or ``no``, read as accept-new: a changed key
    is never accepted) in ``~/.ssh/config``."""
    hash_known_hosts: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.hostname}{port}"

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts writes it: ``host`` or ``[host]:port``."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def parse_uri(uri: str) -> tuple[str | None, str, int | None, dict[str, str]]:
    """``(user, host, port, options)`` of an ``ssh://`` URI; errors are UserErrors."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address
        parts = urlsplit("invalid:")
    if parts.scheme != "ssh" or not parts.netloc:
        raise UserError(f"device {redact(uri)!r} is not an SSH URI such as "
                        "'ssh://pi@raspberrypi' or 'ssh://pi@192.168.1.20:2222'.")
    if parts.password is not None:
        raise UserError(f"device {redact(uri)!r} has a password in it; passwords are not "
                        "supported (they would end up in reports): use a key or ssh-agent.")
    if parts.path not in ("", "/"):
        raise UserError(f"device {redact(uri)!r} has a path; put options after '?', "
                        "e.g. ssh://pi@raspberrypi?python=/usr/bin/python3.")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"device {redact(uri)!r} has an invalid port.") from None
    if not parts.hostname:
        raise UserError(f"device {redact(uri)!r} names no host.")
    options = parse_query(uri, parts.query, OPTIONS)
    if "connect_timeout" in options:
        try:
            if float(options["connect_timeout"]) <= 0:
                raise ValueError
        except ValueError:
            raise UserError(f"device {redact(uri)!r}: connect_timeout must be a positive number of "
                            "seconds.") from None
    if "hostkey" in options and not options["hostkey"].startswith("SHA256:"):
        raise UserError(f"device {redact(uri)!r}: hostkey must be a SHA256 fingerprint as "
                        "'ssh-keygen -lf' prints it, e.g. hostkey=SHA256:AbC...")
    user = unquote(parts.username) if parts.username else None
    return user, parts.hostname, port, options


def resolve(uri: str) -> SSHTarget:
    """Combine the URI with ``~/.ssh/config`` (read now, so edits apply to the next run)."""
    import paramiko

    user, host, port, options = parse_uri(uri)
    config_path = Path("~/.ssh/config").expanduser()
    entry: dict[str, Any] = {}
    if config_path.is_file():
        try:
            entry = dict(paramiko.SSHConfig.from_path(str(config_path)).lookup(host))
        except Exception as exc:  # paramiko raises several kinds on a bad config
            raise UserError(f"{config_path} cannot be read: {exc}.") from None
    hostname = entry.get("hostname", host)
    port = port or int(entry.get("port", 22))
    user = user or entry.get("user") or getpass.getuser()
    if "key" in options:
        keys: tuple[str, ...] = (os.path.expanduser(options["key"]),)
    else:
        keys = tuple(os.path.expanduser(k) for k in entry.get("identityfile", []))
    if "known_hosts" in options:
        known = tuple(os.path.expanduser(p) for p in options["known_hosts"].split(",") if p)
    else:
        user_files = entry.get("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2")
        known = (*(os.path.expanduser(p) for p in str(user_files).split()),
                 "/etc/ssh/ssh_known_hosts")
    proxy = entry.get("proxycommand")
    if not proxy and entry.get("proxyjump") and entry["proxyjump"] != "none":
        proxy = f"ssh -W {shlex.quote(hostname)}:{port} {shlex.quote(entry['proxyjump'])}"
    timeout = float(options.get("connect_timeout") or entry.get("connecttimeout") or 10)
    return SSHTarget(uri=uri, alias=host, hostname=hostname, port=port, user=user, key_files=keys,
                     known_hosts=known,
                     identities_only=str(entry.get("identitiesonly", "no")).lower() == "yes",
                     accept_new_keys=str(entry.get("stricthostkeychecking", "ask")).lower()
                     in ("accept-new", "no", "off", "false"),
                     hash_known_hosts=str(entry.get("hashknownhosts", "no")).lower() == "yes",
                     proxy_command=proxy, connect_timeout=timeout, options=options)


def fingerprint(key: Any) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(Exception):
    def __init__(self, key: Any) -> None:
        super().__init__("unknown host key")
        self.key = key


def _policy(accept: Any = None) -> Any:
    """A MissingHostKeyPolicy that refuses (default) or hands the key to ``accept``."""
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if accept is not None and accept(key):
                return
            raise UnknownHostKey(key)

    return Policy()


def record_host_key(target: SSHTarget, key: Any) -> Path:
    """Append ``key`` for the target to the first known_hosts file (hashed with
    ``HashKnownHosts yes``), as ``ssh`` does when it accepts a new host."""
    import paramiko

    name = target.known_hosts_name
    if target.hash_known_hosts:
        name = paramiko.HostKeys.hash_host(name)
    path = Path(target.known_hosts[0])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as f:
        f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    return path


def load_known_hosts(keys: Any, path: str) -> None:
    """Add the entries of an OpenSSH known_hosts file to paramiko ``HostKeys``.

    As ``ssh`` does: plain and hashed (``|1|``) host names; lines it cannot parse and
    marker lines (``@cert-authority``, ``@revoked``: see :func:`revoked_keys`) are skipped
    (paramiko's own loader gives up on the whole file). Only read: never written back.
    """
    from paramiko.hostkeys import HostKeyEntry

    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CaseError(f"known_hosts file {path} cannot be read: {_reason(exc)}") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except Exception:  # bad base64, unknown key type: OpenSSH skips these too
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def revoked_keys(paths: Sequence[str]) -> dict[str, str]:
    """``{base64 key: file}`` of the ``@revoked`` lines of known_hosts files (paramiko
    skips marker lines, so a revoked key would otherwise pass as known)."""
    found: dict[str, str] = {}
    for path in paths:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "@revoked":
                found[fields[3]] = path
    return found


def connect(target: SSHTarget, *, accept_unknown: Any = None) -> Any:
    """A connected ``paramiko.SSHClient``; every failure is a CaseError of one sentence."""
    import paramiko

    if accept_unknown is None and target.accept_new_keys:
        def accept_unknown(key: Any) -> bool:
            record_host_key(target, key)
            return True

    client = paramiko.SSHClient()
    for path in target.known_hosts:
        load_known_hosts(client.get_host_keys(), path)
    pinned = target.options.get("hostkey")
    client.set_missing_host_key_policy(_policy(
        accept_unknown or (lambda key: pinned is not None and fingerprint(key) == pinned)))
    sock = paramiko.ProxyCommand(target.proxy_command) if target.proxy_command else None
    tried = ", ".join(target.key_files) if target.key_files else "~/.ssh/id_*"
    try:
        client.connect(
            target.hostname, port=target.port, username=target.user,
            key_filename=list(target.key_files) or None,
            allow_agent=not (target.identities_only and target.key_files),
            look_for_keys=not target.key_files, timeout=target.connect_timeout,
            banner_timeout=target.connect_timeout, auth_timeout=target.connect_timeout,
            sock=sock, passphrase=None, password=None)
    except UnknownHostKey as exc:
        client.close()
        raise CaseError(
            f"the host key of {target.known_hosts_name} is not known "
            f"({exc.key.get_name()} {fingerprint(exc.key)}); if that is the device's key, "
            f"accept it with: edgebench devices --accept-new-host-keys -d "
            f"{shlex.quote(redact(target.uri))} (or add hostkey={fingerprint(exc.key)} to "
            "the URI)") from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise CaseError(
            f"the host key of {target.known_hosts_name} has CHANGED (now "
            f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}): "
            "refusing to connect; if the device was reinstalled, remove the old key with "
            f"ssh-keygen -R '{target.known_hosts_name}'") from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise CaseError(f"the key {tried} is encrypted: add it to ssh-agent (ssh-add) so "
                        "edgebench never handles its passphrase") from None
    except paramiko.AuthenticationException:
        client.close()
        raise CaseError(f"{target.label} refused the key (tried ssh-agent and {tried}); "
                        f"install your public key there (ssh-copy-id -p {target.port} "
                        f"{target.user}@{target.hostname}) or pass key=PATH") from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        if "no authentication methods" in str(exc).lower():
            raise CaseError(f"no key to log in to {target.label} with: start ssh-agent and "
                            "ssh-add your key, or pass key=PATH") from None
        raise ConnectionLost(f"cannot reach {target.label}: {_reason(exc)}") from None
    server_key = client.get_transport().get_remote_server_key()
    revoked = revoked_keys(target.known_hosts).get(server_key.get_base64())
    if revoked is not None:
        client.close()
        raise CaseError(f"the host key of {target.known_hosts_name} "
                        f"({fingerprint(server_key)}) is marked @revoked in {revoked}: "
                        "refusing to connect")
    if pinned is not None:
        key = server_key
        if fingerprint(key) != pinned:
            client.close()
            raise CaseError(f"the host key of {target.known_hosts_name} is "
                            f"{fingerprint(key)}, not the {pinned} given in the URI")
    client.get_transport().set_keepalive(15)
    _detect_dead_peer(client.get_transport().sock)
    return client


def _detect_dead_peer(sock: Any, seconds: int = 30) -> None:
    """A board that reboots or drops off the network sends no FIN: without this, TCP
    retransmits for many minutes before the connection counts as lost. With unanswered
    data (paramiko's keepalive every 15 s) for ``seconds``, the socket fails instead."""
    if not isinstance(sock, socket.socket):
        return  # a ProxyCommand pipe
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4),
                            ("TCP_USER_TIMEOUT", seconds * 1000)):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError
    if isinstance(errors, dict) and errors:
        return _reason(next(iter(errors.values())))
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SSHDevice(Device):
    """``ssh://user@host``: runners run in a private work dir over an SSH connection."""

    scheme: ClassVar[str] = "ssh"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._user, self._host, self._port, self._options = parse_uri(uri)
        self.python = self._options.get("python", "")
        self._natives = native_runners(self._options, uri)
        self._target: SSHTarget | None = None
        self._client: Any = None
        self._sftp: Any = None
        self._workdir: PurePosixPath | None = None
        self._dirs: set[str] = set()
        self._running_pid: int | None = None
        self._running_channel: Any = None
        self._unfinished: set[int] = set()  # remote PIDs whose end we have not seen
        self._aborted = False
        self._stack = contextlib.ExitStack()

    # -- hooks the core looks for -------------------------------------------------------

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
    def accept_new_host_key(cls, uri: str) -> str:
        """Record the host key of an unknown host in known_hosts (an explicit opt-in)."""
        target = resolve(uri)
        seen: list[Any] = []

        def accept(key: Any) -> bool:
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

    # -- the Device protocol ------------------------------------------------------------

    @property
    def workdir(self) -> PurePosixPath:
        if self._workdir is None:
            raise RuntimeError("SSHDevice used outside its 'with' block")
        return self._workdir

    def __enter__(self) -> SSHDevice:
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
            if isinstance(exc, OSError) and getattr(exc, "errno", None) == 2:
                raise CaseError(f"{remote} was not produced on the device") from None
            if not self._alive():
                raise ConnectionLost(f"the connection to {self._label} was lost while "
                                     f"copying {remote.name}") from None
            raise CaseError(f"cannot copy {remote} from {self._label}: "
                            f"{_reason(exc)}") from None

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        if self._aborted:
            raise CaseError("aborted")
        start = time.perf_counter()
        command = remote_command(argv, self._workdir)
        channel = self._open_channel()
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
                                 f"{_reason(exc)}",
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
        self._client = connect(self._target)
        try:
            self._sftp = self._client.open_sftp()
        except Exception as exc:
            raise CaseError(f"{self._label} offers no SFTP ({_reason(exc)}); enable the "
                            "sftp subsystem in its sshd_config") from None

    def _alive(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return bool(transport is not None and transport.is_active())

    def _reconnect(self) -> None:
        """After a dropped connection: one new attempt (the work dir survives on the device)."""
        self._close()
        self._connect()

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
        if self._workdir is None:
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
        assert self._target is not None
        base = PurePosixPath(self._target.options.get("tmpdir", "/tmp"))
        workdir = base / new_workdir_name()
        try:
            self._sftp.mkdir(str(workdir), 0o700)
            self._sftp.chmod(str(workdir), 0o700)
        except OSError as exc:
            raise CaseError(f"cannot create a work dir in {base} on {self._target.label}: "
                            f"{_reason(exc)}") from None
        self._workdir = workdir
        self._dirs = {str(workdir)}

    def _sftp_client(self) -> Any:
        if not self._alive():
            self._reconnect()
        return self._sftp

    def _open_channel(self) -> Any:
        if not self._alive():
            self._reconnect()
        try:
            return self._client.get_transport().open_session(timeout=30)
        except Exception as exc:
            raise ConnectionLost(f"the connection to {self._label} was lost: "
                                 f"{_reason(exc)}") from None

    def _exec(self, command: str, timeout_s: float) -> tuple[int, str, str]:
        """Run a shell line (no PID line, no work dir): for housekeeping."""
        if not self._alive():
            raise ConnectionLost(f"the connection to {self._label} was lost")
        try:
            channel = self._client.get_transport().open_session(timeout=30)
        except Exception as exc:
            raise ConnectionLost(f"the connection to {self._label} was lost: "
                                 f"{_reason(exc)}") from None
        try:
            channel.settimeout(timeout_s)
            channel.exec_command(command)
            out = channel.makefile("rb").read()
            err = channel.makefile_stderr("rb").read()
            return channel.recv_exit_status(), out.decode("utf-8", "replace"), \
                err.decode("utf-8", "replace")
        except (OSError, EOFError) as exc:
            raise ConnectionLost(f"{self._label}: {_reason(exc)}") from None
        finally:
            channel.close()

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
                         f"{_reason(exc)}")

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
        self._sftp = self._client = None


@hookimpl
def edgebench_register_devices(register: Register) -> None:
    register(SSHDevice)
