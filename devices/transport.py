"""What the SSH and ADB devices share: URI options, remote command lines and a per-device
lock (the fingerprint read with the shell alone is :mod:`edgebench.devices.shell_agent`).

Nothing here talks to a device; the transports pass text in and out.
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath
from urllib.parse import unquote

from edgebench.errors import CaseError, UserError
from edgebench.redaction import redact

PID_MARK = "edgebench-pid:"
"""The first line a remote command prints: the PID (and process group) to kill on abort."""
EXIT_MARK = "edgebench-exit:"
"""The last line of a command run with ``exit_marker``: its exit status, as printed by the
device's shell itself (adb 29 reports 0 for a command cut off by a dropped connection)."""


# ----------------------------------------------------------------------------------- URIs


def parse_query(uri: str, query: str, allowed: Iterable[str]) -> dict[str, str]:
    """``key=value`` options of a device URI; an unknown or repeated key is a UserError."""
    allowed = sorted(allowed)
    options: dict[str, str] = {}
    # percent-decoding only: '+' stays '+' (base64 host key fingerprints are full of them)
    pairs = [part.partition("=") for part in query.split("&") if part]
    for key, value in ((unquote(k), unquote(v)) for k, _, v in pairs):
        if key not in allowed:
            raise UserError(f"device {redact(uri)!r} has an unknown option {key!r}; "
                            f"known options: {', '.join(allowed)}.")
        if key in options:
            raise UserError(f"device {redact(uri)!r} gives option {key!r} twice.")
        options[key] = value
    return options


def new_workdir_name() -> str:
    """An unpredictable directory name: ``edgebench-`` and 16 random hex digits."""
    return f"edgebench-{secrets.token_hex(8)}"


def within(workdir: PurePosixPath, path: PurePosixPath) -> PurePosixPath:
    """``path`` if it lies inside ``workdir``; the harness writes nowhere else on a device."""
    if ".." in path.parts or not (path == workdir or workdir in path.parents):
        raise CaseError(f"refusing to touch {path} on the device: outside the work dir "
                        f"{workdir}")
    return path


# --------------------------------------------------------------------------- commands


def remote_command(argv: Sequence[str], cwd: PurePosixPath | None, *,
                   exit_marker: bool = False) -> str:
    """A POSIX shell line that prints its PID, changes to ``cwd`` and runs ``argv``.

    Every argument is quoted with :func:`shlex.join`, so nothing in a path or a model name
    reaches the remote shell as syntax. sshd and adbd start the shell as a session leader,
    so the PID is also the process group that :func:`kill_command` kills. Without
    ``exit_marker`` the shell execs ``argv``; with it, the shell stays to print the exit
    status as the last line (see :func:`split_exit`).
    """
    if not argv:
        raise ValueError("empty command")
    cd = f"cd {shlex.quote(str(cwd))} && " if cwd is not None else ""
    if exit_marker:
        return (f"echo {PID_MARK}$$; {{ {cd}{shlex.join(argv)}; }}; s=$?; echo; "
                f"echo {EXIT_MARK}$s")
    return f"echo {PID_MARK}$$; {cd}exec {shlex.join(argv)}"


def split_exit(stdout: str) -> tuple[str, int | None]:
    """The command's own output and the status printed by an ``exit_marker`` command line;
    ``None`` when the line is missing: the shell never got to print it."""
    head, sep, tail = stdout.rpartition("\n" + EXIT_MARK)
    if not sep or not tail.endswith("\n") or not tail[:-1].isdigit():
        return stdout, None
    return head, int(tail[:-1])


def kill_command(pid: int) -> str:
    """Kill process group ``pid`` (the runner and anything it started), then the PID."""
    return (f"kill -9 -- -{int(pid)} 2>/dev/null || kill -9 -{int(pid)} 2>/dev/null; "
            f"pkill -9 -P {int(pid)} 2>/dev/null; kill -9 {int(pid)} 2>/dev/null; true")


def split_pid(stdout: str) -> tuple[int | None, str]:
    """The PID line printed by :func:`remote_command`, and the command's own output."""
    first, _sep, rest = stdout.partition("\n")
    if first.startswith(PID_MARK):
        try:
            return int(first[len(PID_MARK):].strip()), rest
        except ValueError:
            return None, rest
    return None, stdout


def remove_command(workdir: PurePosixPath) -> str:
    return f"rm -rf -- {shlex.quote(str(workdir))}"


# ----------------------------------------------------------------------- per-device lock

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def device_lock(key: str) -> Iterator[None]:
    """Hold the lock of one physical device (``ssh:user@host:port``, ``adb:SERIAL``).

    Two URIs naming the same device (different options) then never measure at once, in
    one run (a thread lock) or in two runs on this host (a file lock under the cache dir,
    released by the OS if the process dies).
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock, _host_lock(key):
        yield


@contextmanager
def _host_lock(key: str) -> Iterator[None]:
    import fcntl
    import hashlib

    from edgebench.cache import cache_root

    path = cache_root() / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        fd = -1  # no writable cache: the thread lock still holds within this run
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd >= 0:
            os.close(fd)
