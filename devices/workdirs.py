"""Work dirs that a run could not remove (its process was killed, its connection lost, the
host lost power): found and removed the next time any edgebench run connects to that
device, and never one that a live run still uses.

Every work dir (``edgebench-`` and 16 hex digits, made 0700 by its run) holds an owner
record, ``.edgebench-owner``, one line written on the device when the dir is made (and
again after a reconnect)::

    edgebench-owner v1 host=NAME host_boot=ID pid=PID pid_start=TICKS device_boot=ID
                       conn=PID conn_start=TICKS

``host``/``host_boot``/``pid``/``pid_start``: the edgebench process that made it (its
host's name and boot id, its PID and start time in clock ticks, as ``/proc/PID/stat``
field 22 gives it); ``device_boot``: the device's boot id then; ``conn``/``conn_start``:
the device-side process of that run's SSH connection (the per-connection ``sshd``, the
parent of every command the run starts), ``-`` where there is none (ADB, local).

A dir of this device's work dir parent is removed when its name matches, it is a real
directory owned by the user we log in as, and its run is over:

- made on this host in this boot by a process that is gone (no such PID, or one started at
  another time), or made on this host before it rebooted: the run is certainly over, so
  runner processes still working in the dir (their cwd is in it) are killed first;
- or the device has rebooted since (its boot id differs): nothing from before runs;
- or, made on another host: its connection's process on the device is gone, no process
  works in the dir, and nothing in it changed for :data:`FOREIGN_GRACE_S` (that run may
  be between a dropped connection and its retry); a dir without a record (an older
  edgebench, or a run killed right after ``mkdir``), after :data:`UNRECORDED_GRACE_S`.

Everything is read with one POSIX shell script (``/proc``, ``ls``, ``stat``, ``sed``:
coreutils, busybox and Android's toybox all have them); where something cannot be read
(no ``/proc``, no ``stat -c``) the dir counts as in use.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from .transport import kill_command

OWNER_FILE = ".edgebench-owner"
NAME = re.compile(r"edgebench-[0-9a-f]{16}")
FOREIGN_GRACE_S = 3600
"""How long a dir made on another host must have been untouched (seconds)."""
UNRECORDED_GRACE_S = 24 * 3600
"""How long a dir without an owner record must have been untouched (seconds)."""

Shell = Callable[[str], str]
"""Runs a POSIX shell line on the device and returns its stdout (raises on failure)."""

_START = ("st() { s=$(cat \"/proc/$1/stat\" 2>/dev/null) || return 0; s=${s##*\") \"}; "
          "set -- $s; eval \"echo \\${20}\"; }")


@dataclass(frozen=True)
class HostProcess:
    """This edgebench process, as an owner record names it."""

    host: str
    boot: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> HostProcess:
        return cls(_word(socket.gethostname()), _read_word("/proc/sys/kernel/random/boot_id"),
                   os.getpid(), process_start(os.getpid()) or "-")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` on this host (``/proc/PID/stat`` field 22, clock ticks
    since boot), ``None`` when it is not running (or there is no ``/proc``)."""
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one short read
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_command(workdir: PurePosixPath, me: HostProcess, *, connection: bool) -> str:
    """The shell line that writes ``workdir``'s owner record on the device;
    ``connection``: record the command's parent (the per-connection sshd) as ``conn``."""
    conn = "conn=$PPID conn_start=$(st $PPID)" if connection else "conn=- conn_start=-"
    line = (f"edgebench-owner v1 host={me.host} host_boot={me.boot} pid={me.pid} "
            f"pid_start={me.start} device_boot=${{b:--}} {conn}")
    return (f"{_START}; b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); "
            f"printf '%s\\n' \"{line}\" > {shlex.quote(str(workdir / OWNER_FILE))}")


def make_command(workdir: PurePosixPath, me: HostProcess, *, connection: bool) -> str:
    """One shell script that makes ``workdir`` (0700), writes its owner record and scans
    its parent (:func:`scan_command`): one round trip to the device. Its output goes to
    :func:`made` and then :func:`remove_stale` (``scan=``)."""
    q = shlex.quote(str(workdir))
    owner = owner_command(workdir, me, connection=connection)
    return (f"if e=$(mkdir -m 700 {q} 2>&1); then {owner}"
            f"; echo 'made|'; else printf 'mkerr|%s\\n' \"$e\"; fi\n"
            + scan_command(workdir.parent))


def made(text: str) -> str | None:
    """``None`` when the :func:`make_command` output says the dir was made, else why not
    (mkdir's own words)."""
    if any(line == "made|" for line in text.splitlines()):
        return None
    errors = [line[6:] for line in text.splitlines() if line.startswith("mkerr|")]
    return (errors[0].strip() if errors else "") or "mkdir failed"


def scan_command(base: PurePosixPath) -> str:
    """The shell script that lists the work dirs under ``base`` with what
    :func:`stale_workdirs` needs (see :func:`parse_scan`)."""
    q = shlex.quote(str(base))
    return f"""base={q}
echo "uid|$(id -u)"
echo "now|$(date +%s)"
echo "boot|$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
{_START}
n=0
for d in "$base"/edgebench-*; do
  [ -d "$d" ] || continue
  [ -h "$d" ] && continue
  u=$(ls -ldn "$d" | {{ read -r _ _ u _; echo "$u"; }})
  m=$(stat -c %Y "$d" 2>/dev/null)
  om=$(stat -c %Y "$d/{OWNER_FILE}" 2>/dev/null)
  o=$(head -n 1 "$d/{OWNER_FILE}" 2>/dev/null)
  c=""; case "$o" in *" conn="*) c=${{o#* conn=}}; c=${{c%% *}};; esac
  cs=""; case "$c" in ''|*[!0-9]*) ;; *) cs=$(st "$c");; esac
  printf 'dir|%s|%s|%s|%s|%s|%s\\n' "$d" "$u" "${{m:-0}}" "${{om:-0}}" "${{cs:--}}" "$o"
  n=1
done
[ "$n" = 1 ] && ls -l /proc/[0-9]*/cwd 2>/dev/null | grep -F -- "$base/edgebench-" \\
  | sed 's#.*/proc/\\([0-9]*\\)/cwd -> \\(.*\\)$#cwd|\\1|\\2#'
true"""


@dataclass(frozen=True)
class Found:
    """One work dir as the scan saw it."""

    path: PurePosixPath
    uid: str
    mtime: int
    owner_mtime: int
    conn_start_now: str
    """The start ticks of the recorded ``conn`` process now, ``-`` when it is gone."""
    record: dict[str, str]
    workers: tuple[int, ...] = ()
    """PIDs whose cwd is in the dir."""


@dataclass(frozen=True)
class Scan:
    uid: str
    now: int
    boot: str
    dirs: tuple[Found, ...]


def parse_scan(text: str) -> Scan:
    """Read the output of :func:`scan_command`."""
    head: dict[str, str] = {}
    rows: list[list[str]] = []
    cwd: list[tuple[int, str]] = []
    for line in text.splitlines():
        kind, _, rest = line.partition("|")
        if kind == "dir":
            rows.append(rest.split("|", 5))
        elif kind == "cwd":
            pid, _, path = rest.partition("|")
            if pid.isdigit():
                cwd.append((int(pid), path.strip()))
        elif kind in ("uid", "now", "boot"):
            head[kind] = rest.strip()
    dirs = []
    for row in rows:
        if len(row) != 6:
            continue
        path, uid, mtime, owner_mtime, conn_start, record = row
        words = record.split()
        fields = dict(w.split("=", 1) for w in words[2:] if "=" in w) \
            if words[:2] == ["edgebench-owner", "v1"] else {}
        workers = tuple(pid for pid, where in cwd
                        if where == path or where.startswith(path + "/"))
        dirs.append(Found(PurePosixPath(path), uid, _int(mtime), _int(owner_mtime),
                          conn_start.strip() or "-", fields, workers))
    return Scan(head.get("uid", ""), _int(head.get("now", "0")), head.get("boot", ""),
                tuple(dirs))


def verdict(found: Found, scan: Scan, me: HostProcess,
            alive: Callable[[int, str], bool]) -> tuple[bool, tuple[int, ...]]:
    """``(remove, pids to kill first)`` for one dir (the rules: module docstring).
    ``alive(pid, start)``: whether that process of this host still runs."""
    if not NAME.fullmatch(found.path.name) or not scan.uid or found.uid != scan.uid:
        return False, ()
    rec = found.record
    if not rec:
        idle = _idle_s(found, scan)
        return (not found.workers and idle is not None and idle > UNRECORDED_GRACE_S), ()
    if rec.get("host") == me.host and me.boot != "-" and rec.get("host_boot") == me.boot:
        pid = _int(rec.get("pid", ""))
        if pid and alive(pid, rec.get("pid_start", "-")):
            return False, ()
        return True, found.workers  # this host's run is over: its leftovers go
    if rec.get("host") == me.host and me.boot != "-" and rec.get("host_boot", "-") != "-":
        return True, found.workers  # made on this host before it rebooted
    device_boot = rec.get("device_boot", "-")
    if device_boot != "-" and scan.boot and device_boot != scan.boot:
        return True, ()  # the device rebooted since
    conn_start = rec.get("conn_start", "-")
    if conn_start != "-" and found.conn_start_now == conn_start:
        return False, ()  # its connection is still up
    idle = _idle_s(found, scan)
    return (not found.workers and idle is not None and idle > FOREIGN_GRACE_S), ()


def remove_stale(shell: Shell, base: PurePosixPath, me: HostProcess | None = None, *,
                 scan: str | None = None) -> list[PurePosixPath]:
    """Remove the stale work dirs under ``base`` on the device that ``shell`` reaches (see
    the module docstring); returns those removed. ``scan``: the output of
    :func:`scan_command` (or :func:`make_command`) when it was run already. Best effort: a
    device where the scan fails keeps its dirs (a run never fails for this)."""
    me = me or HostProcess.current()
    try:
        found = parse_scan(shell(scan_command(base)) if scan is None else scan)
    except Exception:  # housekeeping: a device that cannot tell keeps its dirs
        return []
    doomed: list[PurePosixPath] = []
    kill: list[int] = []
    for entry in found.dirs:
        remove, pids = verdict(entry, found, me, _alive_here)
        if remove:
            doomed.append(entry.path)
            kill += pids
    if not doomed:
        return []
    lines = [kill_command(pid) for pid in sorted(set(kill))]
    lines += [f"rm -rf -- {shlex.quote(str(p))}" for p in doomed]
    with contextlib.suppress(Exception):
        shell("; ".join([*lines, "true"]))
    return doomed


def _alive_here(pid: int, start: str) -> bool:
    now = process_start(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return start == "-"  # running, but no /proc to tell whether it is the same one
    return start in ("-", now)


def _idle_s(found: Found, scan: Scan) -> int | None:
    last = max(found.mtime, found.owner_mtime)
    if not last or not scan.now:
        return None
    return scan.now - last


def _int(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


def _word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "-"


def _read_word(path: str) -> str:
    try:
        return _word(open(path).read().strip())
    except OSError:
        return "-"
