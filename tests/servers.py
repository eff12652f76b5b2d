"""Real servers for the remote-device tests, started and stopped by the tests themselves.

- :class:`SshServer`: a private OpenSSH ``sshd`` (own ed25519 host key, key-only login,
  internal-sftp) on 127.0.0.1 or inside a network namespace, optionally chrooting logins.
- :class:`AdbServer`: the real adb server on a private port, HOME and TMPDIR.
- :class:`NetNs`: a network namespace joined to the host by a veth pair.

Missing system tools (installed by ``scripts/setup_test_system.sh``) skip the tests on a
developer machine and fail them in CI (``CI`` set), where a skip would hide a broken setup.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def require(condition: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) when a prerequisite is missing."""
    if condition:
        return
    message = f"{what}; run scripts/setup_test_system.sh as root"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, outside 5555-5585 (the adb server scans those)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not 5555 <= port <= 5585:
            return port


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgebench-test",
                    "-f", str(path)], check=True)
    return path


def _wait_for_banner(host: str, port: int, timeout_s: float, proc: subprocess.Popen[str],
                     netns: str | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: "
                               f"{(proc.stderr.read() if proc.stderr else '')[-2000:]}")
        try:
            if netns is None:
                with socket.create_connection((host, port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            else:
                probe = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn",
                                        f"sport = :{port}"], capture_output=True, text=True)
                if probe.stdout.strip():
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"sshd did not listen on {host}:{port} within {timeout_s} s")


class SshServer:
    """A private sshd. ``chroot`` confines logins to a root; ``netns`` runs it there."""

    def __init__(self, workdir: Path, *, listen: str = "127.0.0.1", port: int | None = None,
                 chroot: Path | None = None, netns: str | None = None,
                 mount_proc: bool = False, set_env: dict[str, str] | None = None) -> None:
        require(Path(SSHD).exists(), "sshd is not installed (openssh-server)")
        require(os.geteuid() == 0, "the sshd tests run as root")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.listen, self.port = listen, port or free_port()
        self.chroot, self.netns, self.mount_proc = chroot, netns, mount_proc
        self.set_env = dict(set_env or {})
        self.user = getpass.getuser()
        self.host_key = keygen(self.dir / "host_ed25519")
        self.client_key = keygen(self.dir / "client_ed25519")
        self.authorized_keys = self.dir / "authorized_keys"
        self.authorized_keys.write_text((self.dir / "client_ed25519.pub").read_text())
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"{self.known_name} {self.host_public_key}\n")
        self.proc: subprocess.Popen[str] | None = None

    @property
    def known_name(self) -> str:
        return self.listen if self.port == 22 else f"[{self.listen}]:{self.port}"

    @property
    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` of the server."""
        return " ".join((self.dir / "host_ed25519.pub").read_text().split()[:2])

    @property
    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.dir / "host_ed25519.pub")],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]

    def uri(self, **options: str) -> str:
        """``ssh://user@host:port?key=...&known_hosts=...`` plus ``options``."""
        query = {"key": str(self.client_key), "known_hosts": str(self.known_hosts), **options}
        q = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
        return f"ssh://{self.user}@{self.listen}:{self.port}?{q}"

    def config_text(self) -> str:
        lines = [
            f"Port {self.port}", f"ListenAddress {self.listen}", f"HostKey {self.host_key}",
            "PidFile none", f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp", "MaxSessions 50", "MaxStartups 50",
            "LogLevel ERROR",
        ]
        if self.chroot is not None:
            lines.append(f"ChrootDirectory {self.chroot}")
        if self.set_env:
            lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in self.set_env.items()))
        return "\n".join(lines) + "\n"

    def start(self) -> SshServer:
        config = self.dir / "sshd_config"
        config.write_text(self.config_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        argv = [SSHD, "-D", "-e", "-f", str(config)]
        if self.mount_proc and self.chroot is not None:
            # /proc for the device inside its own mount namespace: gone when sshd stops
            script = (f"mount -t proc proc {self.chroot}/proc && exec "
                      + " ".join(argv))
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        _wait_for_banner(self.listen, self.port, 15, self.proc, self.netns)
        return self

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        assert self.proc is not None
        return _children(self.proc.pid, recursive=True)

    def drop_connections(self) -> None:
        """Kill every per-connection sshd (a dropped link); the listener stays."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                if comm.startswith("sshd"):
                    os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """The device is gone: cut every connection and stop listening (the processes
        the logins started keep running, as on a board that dropped off the network)."""
        if self.proc is not None:
            self.drop_connections()
        self.stop()

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def _children(pid: int, *, recursive: bool = False) -> list[int]:
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found.append(child)
            if recursive:
                found += _children(child, recursive=True)
    return found


def process_alive(pid: int, timeout_s: float = 5.0) -> bool:
    """Running (zombies count as dead), polled for up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------------------------ adb


def adb_binaries() -> dict[str, str]:
    """The real adb clients here: Debian's package and the one adbutils bundles."""
    found: dict[str, str] = {}
    debian = shutil.which("adb")
    if debian:
        found["adb-debian"] = debian
    with contextlib.suppress(ImportError):
        import adbutils

        bundled = Path(adbutils.__file__).parent / "binaries" / "adb"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            found["adb-adbutils"] = str(bundled)
    return found


@dataclass
class AdbServer:
    """The real adb server, isolated: its own port, HOME (adb keys) and TMPDIR."""

    binary: str
    home: Path

    def __post_init__(self) -> None:
        self.port = free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {"ANDROID_ADB_SERVER_PORT": str(self.port), "HOME": str(self.home),
                    "TMPDIR": str(self.home)}

    def adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> AdbServer:
        done = self.adb("start-server")
        if done.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {done.stderr}")
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.adb("kill-server", timeout=30)

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """os.environ pointing adb clients (and so AdbDevice) at this server."""
        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# -------------------------------------------------------------------------------- netns


class NetNs:
    """A network namespace with a veth pair: the host gets ``.1``, the namespace ``.2``."""

    def __init__(self, subnet: str = "10.213.61") -> None:
        require(shutil.which("ip") is not None, "iproute2 is missing")
        tag = secrets.token_hex(3)
        self.name = f"ebtest-{tag}"
        self.host_if, self.ns_if = f"ebh{tag}", f"ebn{tag}"
        self.host_addr, self.ns_addr = f"{subnet}.1", f"{subnet}.2"

    def __enter__(self) -> NetNs:
        commands = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if],
            ["ip", "-n", self.name, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ]
        try:
            for argv in commands:
                subprocess.run(argv, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{' '.join(exc.cmd)}: {exc.stderr.strip()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
