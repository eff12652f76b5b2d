"""What the SSH and ADB devices share: URI options, remote command lines, a per-device lock,
and a fingerprint read with the shell alone (for devices without Python, such as phones).

Nothing here talks to a device; the transports pass text in and out.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

import pluggy

from edgebench.contracts import Device
from edgebench.errors import CaseError, UserError
from edgebench.fingerprint import DeviceAgent
from edgebench.record_json import from_json_dict
from edgebench.records import DeviceInfo
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


# ------------------------------------------------------------------- shell fingerprint

PROBE_SCRIPT = r"""
echo @@uname; uname -m; uname -r; uname -s; uname -n
echo @@getprop
if command -v getprop >/dev/null 2>&1; then
  for p in ro.product.manufacturer ro.product.model ro.product.cpu.abi \
           ro.build.version.release ro.build.version.sdk ro.soc.model ro.board.platform; do
    echo "$p=$(getprop $p)"
  done
fi
echo @@os-release; cat /etc/os-release 2>/dev/null
echo @@cpuinfo; cat /proc/cpuinfo 2>/dev/null
echo @@meminfo; grep MemTotal /proc/meminfo 2>/dev/null
echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null
echo @@governor; cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null
echo @@maxfreq; cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq 2>/dev/null
""".strip()

THERMAL_SCRIPT = r"""
echo @@thermal
for z in /sys/class/thermal/thermal_zone*; do
  [ -r "$z/temp" ] && echo "$(cat "$z/type" 2>/dev/null) $(cat "$z/temp" 2>/dev/null)"
done
echo @@cooling
for d in /sys/class/thermal/cooling_device*; do
  [ -r "$d/cur_state" ] && echo "$(cat "$d/type" 2>/dev/null) $(cat "$d/cur_state" 2>/dev/null)"
done
echo @@throttled; vcgencmd get_throttled 2>/dev/null
true
""".strip()

_FLAGS = ("neon", "asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "i8mm", "bf16",
          "avx", "avx2", "fma", "avx512f", "f16c", "sse4_2")


def sections(text: str) -> dict[str, list[str]]:
    """Split the output of the scripts above into ``{section: lines}``."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line.rstrip())
    return out


def hottest_zone_c(lines: Iterable[str]) -> float | None:
    """The hottest thermal zone in °C; zones report milli-degrees (some phones: degrees)."""
    temps: list[float] = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        try:
            raw = int(parts[-1])
        except ValueError:
            continue
        value = raw / 1000.0 if abs(raw) >= 200 else float(raw)
        if -40.0 < value < 150.0:
            temps.append(value)
    return max(temps) if temps else None


def throttling(text: str) -> str | None:
    """Why the CPU is being held back now, or ``None``.

    Reads a Raspberry Pi's ``vcgencmd get_throttled`` bits (under-voltage, frequency capped,
    throttled, soft temperature limit: now) and CPU cooling devices whose state is not 0.
    """
    found = sections(text)
    reasons: list[str] = []
    for line in found.get("throttled", []):
        match = re.search(r"throttled=(0x[0-9a-fA-F]+)", line)
        if match:
            bits = int(match.group(1), 16)
            names = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled",
                     3: "soft temperature limit"}
            now = [name for bit, name in names.items() if bits & (1 << bit)]
            if now:
                reasons.append(f"vcgencmd: {', '.join(now)} ({match.group(1)})")
    for line in found.get("cooling", []):
        parts = line.split()
        if len(parts) >= 2 and parts[-1].isdigit() and int(parts[-1]) > 0:
            kind = " ".join(parts[:-1]).lower()
            if "cpu" in kind or "freq" in kind:
                reasons.append(f"{' '.join(parts[:-1])} at state {parts[-1]}")
    return "; ".join(reasons) or None


def probe_fields(text: str) -> dict[str, Any]:
    """Fingerprint fields (as the Python agent's probe returns them) from the shell probe."""
    found = sections(text)
    uname = [*found.get("uname", []), "", "", "", ""]
    props = dict(line.split("=", 1) for line in found.get("getprop", []) if "=" in line)
    props = {k: v for k, v in props.items() if v}
    cpu_model, flags = _cpu_model(found.get("cpuinfo", []))
    if props.get("ro.product.model"):
        soc = props.get("ro.soc.model") or props.get("ro.board.platform")
        maker = props.get("ro.product.manufacturer", "")
        board = " ".join(p for p in (maker, props["ro.product.model"]) if p)
        detail = ", ".join(p for p in (soc, props.get("ro.product.cpu.abi")) if p)
        cpu_model = f"{board} ({detail})" if detail else board
    release = props.get("ro.build.version.release")
    if release:
        os_name = f"Android {release} (SDK {props.get('ro.build.version.sdk', '?')}, " \
                  f"{uname[2] or 'Linux'} {uname[1]})"
    else:
        pretty = next((line.split("=", 1)[1].strip('"') for line in found.get("os-release", [])
                       if line.startswith("PRETTY_NAME=")), None)
        os_name = f"{pretty} ({uname[2]} {uname[1]})" if pretty else f"{uname[2]} {uname[1]}"
    ram = next((int(line.split()[1]) * 1024 for line in found.get("meminfo", [])
                if line.startswith("MemTotal:") and line.split()[1].isdigit()), None)
    cores = next((int(line) for line in found.get("nproc", []) if line.strip().isdigit()), None)
    freqs = [int(x) for x in found.get("maxfreq", []) if x.strip().isdigit()]
    governor = next((line.strip() for line in found.get("governor", []) if line.strip()), None)
    return {
        "hostname": uname[3] or None,
        "arch": uname[0] or "unknown",
        "os": os_name.strip(),
        "cpu_model": cpu_model,
        "cores": cores,
        "ram_bytes": ram,
        "python": None,
        "governor": governor,
        "temperature_c": hottest_zone_c(found.get("thermal", [])),
        "cpu_max_mhz": max(freqs) / 1000.0 if freqs else None,
        "cpu_flags": flags,
        "runtimes": {},
    }


def _cpu_model(lines: Sequence[str]) -> tuple[str | None, list[str]]:
    names: dict[str, str] = {}
    flags: set[str] = set()
    for line in lines:
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "model", "cpu model") and value:
            names.setdefault(key, value)
        elif key in ("flags", "features"):
            flags.update(value.split())
    board = names.get("model") if not names.get("model", "").isdigit() else None
    model = names.get("model name") or names.get("cpu model")
    if board and model:
        model = f"{board} ({model})"
    return model or board or names.get("hardware"), sorted(f for f in flags if f in _FLAGS)


def device_info(fields: Mapping[str, Any], uri: str, device: object,
                pm: pluggy.PluginManager | None) -> DeviceInfo:
    """Freeze probe fields into a DeviceInfo, letting plugins add to them first."""
    data = dict(fields)
    data["uri"] = uri
    if pm is not None:
        pm.hook.edgebench_device_info(device=device, info=data)
    known = {f.name for f in dataclasses.fields(DeviceInfo)}
    return from_json_dict(DeviceInfo, {k: v for k, v in data.items() if k in known})


class ShellAgent(DeviceAgent):
    """The fingerprint of a device without Python (a phone), read with its shell.

    It has no agent script to push, so backends with a Python runner cannot run there;
    native runners (:mod:`edgebench.devices.native`) can.
    """

    def __init__(self, device: Device, runtimes: Mapping[str, str] | None = None) -> None:
        super().__init__(device)
        self.runtimes = dict(runtimes or {})

    @property
    def path(self) -> PurePosixPath:
        raise CaseError(f"{self.device.uri} has no Python to run the agent")

    def _sh(self, script: str, timeout_s: float) -> str:
        done = self.device.run(["sh", "-c", script], timeout_s=timeout_s)
        return done.stdout

    def probe(self, modules: tuple[str, ...], pm: pluggy.PluginManager | None = None
              ) -> DeviceInfo:
        fields = probe_fields(self._sh(PROBE_SCRIPT + "\n" + THERMAL_SCRIPT, 60))
        fields["runtimes"] = dict(self.runtimes)
        return device_info(fields, self.device.uri, self.device, pm)

    def temperature(self) -> float | None:
        try:
            return hottest_zone_c(sections(self._sh(THERMAL_SCRIPT, 30)).get("thermal", []))
        except (CaseError, OSError):
            return None


def read_throttling(device: Device) -> str | None:
    """:func:`throttling` read on ``device`` now (``None`` when it cannot tell)."""
    try:
        return throttling(device.run(["sh", "-c", THERMAL_SCRIPT], timeout_s=30).stdout)
    except (CaseError, OSError):
        return None
