"""Memory and time limits for converter subprocesses, so a conversion never endangers the host.

Every tool edgebench runs to make or change a model (pnnx, the Ultralytics export worker, the
PyTorch reference, ai-edge-quantizer, the torch compressors' workers) goes through
:func:`run_limited`. It starts
the tool in a process group of its own, samples the resident memory (RSS) of the whole process
tree every :data:`POLL_S` seconds from ``/proc`` and kills the group when the sum passes the
memory limit or the run passes its time budget. The case then fails with one sentence that says
what to do; the rest of the run goes on.

Why RSS and not ``RLIMIT_AS``: torch, onnxruntime and CUDA builds reserve tens of GiB of
*virtual* address space at import, so an address-space limit kills healthy runs. RSS is what
the host actually loses. Threads share their process's RSS, so it is counted once per process;
children (pnnx's, a DataLoader's workers) are found through ``/proc/PID/task/TID/children``.
Memory shared between processes is counted in each of them, so the sum can overstate (never
understate) the real use. Between two samples the tree can grow past the limit by what it
allocates in :data:`POLL_S`.

Limits (each overridable, e.g. for a big model on a big machine):

- memory: ``min(MemTotal / 2, MemAvailable * 3 / 4)`` read from ``/proc/meminfo`` when the tool
  starts: half the machine, and never more than three quarters of what is free right now, so
  the rest of the host (other users, the harness itself) keeps room. Override:
  ``EDGEBENCH_CONVERT_MEMORY_GIB`` (GiB, decimal allowed).
- time: the budget the call site gives (pnnx, the Ultralytics export and the PyTorch
  reference 1800 s, LiteRT quantization 3600 s, inspecting a ``.pt`` 600 s, pruning and
  distillation training 6 h). Override: ``EDGEBENCH_CONVERT_TIMEOUT_S`` (seconds), applied
  to every limited tool.

Where ``/proc`` is missing (macOS), memory cannot be sampled: only the time limit applies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CaseError

MEMORY_ENV = "EDGEBENCH_CONVERT_MEMORY_GIB"
TIME_ENV = "EDGEBENCH_CONVERT_TIMEOUT_S"
POLL_S = 0.1
"""Seconds between two memory samples of the tool's process tree."""
GIB = 1 << 30
PROC = Path("/proc")


@dataclass(frozen=True)
class Limits:
    """What one tool run may use: ``memory_bytes`` of summed RSS (``None``: not enforced,
    no ``/proc``) and ``time_s`` of wall time; ``memory_source`` says where the memory
    figure came from (for messages and logs)."""

    memory_bytes: int | None
    time_s: float
    memory_source: str


@dataclass(frozen=True)
class ToolRun:
    """A finished tool run: exit code, its output (empty when streamed), its peak summed RSS
    in bytes as sampled (0 where ``/proc`` is missing)."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int


def read_meminfo(path: Path = PROC / "meminfo") -> dict[str, int]:
    """``/proc/meminfo`` as {field: bytes} (its ``kB`` are KiB). Empty when unreadable."""
    fields: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            fields[name.strip()] = int(parts[0]) * scale
    return fields


def default_memory_limit(meminfo: Mapping[str, int]) -> int | None:
    """``min(MemTotal / 2, MemAvailable * 3 / 4)`` in bytes (``MemAvailable`` missing, as on
    kernels before 3.14: ``MemTotal / 2``); ``None`` without ``MemTotal``."""
    total = meminfo.get("MemTotal")
    if not total:
        return None
    half = total // 2
    available = meminfo.get("MemAvailable")
    return min(half, available * 3 // 4) if available is not None else half


def tool_limits(time_s: float, *, environ: Mapping[str, str] | None = None,
                meminfo: Mapping[str, int] | None = None) -> Limits:
    """The limits for one tool run: the defaults above, or the environment's overrides.

    Raises :class:`CaseError` when an override is not a positive number."""
    env = os.environ if environ is None else environ
    info = read_meminfo() if meminfo is None else meminfo
    memory = default_memory_limit(info)
    source = "half the RAM, at most 3/4 of the available RAM"
    if env.get(MEMORY_ENV):
        gib = _positive(env[MEMORY_ENV], MEMORY_ENV, "a size in GiB, e.g. 8")
        memory, source = int(gib * GIB), f"{MEMORY_ENV}={env[MEMORY_ENV]}"
    if env.get(TIME_ENV):
        time_s = _positive(env[TIME_ENV], TIME_ENV, "a time in seconds, e.g. 3600")
    return Limits(memory_bytes=memory, time_s=time_s, memory_source=source)


def _positive(value: str, name: str, wanted: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise CaseError(f"{name}={value!r} is not a positive number; give {wanted}, or "
                        "unset it for the default")
    return number


def format_gib(nbytes: int) -> str:
    """Bytes as GiB with 3 significant digits: 0.25, 1.5, 11.7, 12."""
    return f"{nbytes / GIB:.3g}"


def run_limited(argv: Sequence[str], what: str, *, time_s: float, cwd: Path | None = None,
                env: Mapping[str, str] | None = None, stream: bool = False,
                limits: Limits | None = None) -> ToolRun:
    """Run ``argv`` under :func:`tool_limits` (or ``limits``) and return how it ended.

    ``what`` names the work in messages ("converting m.onnx to ncnn with pnnx"). With
    ``stream`` the tool's output goes to this process's stderr (progress bars) and is not
    returned. The tool's own exit code is returned, not judged: a failed tool is the caller's
    to word. Over a limit, the whole process group (and any descendant outside it) is killed
    with SIGKILL and :class:`CaseError` is raised:

    - ``{what} needed more than {N} GiB; set EDGEBENCH_CONVERT_MEMORY_GIB to allow more
      (this machine has {T} GiB of RAM), or use a smaller model or --imgsz``
    - ``{what} took longer than {S} s; set EDGEBENCH_CONVERT_TIMEOUT_S to allow more time,
      or use a smaller model or --imgsz``

    Leftover members of the group are killed when the tool exits, so nothing outlives it.
    """
    limits = limits or tool_limits(time_s)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sink_out = sys.stderr if stream else out
        sink_err = sys.stderr if stream else err
        proc = subprocess.Popen(list(argv), stdout=sink_out, stderr=sink_err, cwd=cwd,
                                env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            peak = _watch(proc, what, limits)
        finally:
            _kill_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        out.seek(0)
        err.seek(0)
        return ToolRun(returncode=proc.returncode if proc.returncode is not None else -9,
                       stdout=out.read().decode(errors="replace"),
                       stderr=err.read().decode(errors="replace"), peak_rss_bytes=peak)


def _watch(proc: subprocess.Popen[bytes], what: str, limits: Limits) -> int:
    deadline = time.monotonic() + limits.time_s
    peak = 0
    while True:
        try:
            proc.wait(timeout=POLL_S)
            return peak
        except subprocess.TimeoutExpired:
            pass
        rss = tree_rss(proc.pid)
        peak = max(peak, rss)
        if limits.memory_bytes is not None and rss > limits.memory_bytes:
            _kill_tree(proc.pid)
            raise over_memory(what, limits.memory_bytes)
        if time.monotonic() > deadline:
            _kill_tree(proc.pid)
            raise CaseError(f"{what} took longer than {limits.time_s:g} s; set {TIME_ENV} to "
                            "allow more time, or use a smaller model or --imgsz")


def process_tree(root: int) -> list[int]:
    """``root`` and its living descendants (via ``/proc/PID/task/TID/children``, every
    thread's children), root first; ``[]`` when ``root`` is gone or ``/proc`` is missing."""
    if not (PROC / str(root)).is_dir():
        return []
    seen = [root]
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = list((PROC / str(pid) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in seen:
                    seen.append(child)
                    todo.append(child)
    return seen


def tree_rss(root: int) -> int:
    """Summed resident memory in bytes of ``root`` and its descendants (``/proc/PID/statm``,
    resident pages x page size); 0 without ``/proc``."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in process_tree(root):
        try:
            total += int((PROC / str(pid) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def _kill_tree(root: int) -> None:
    """SIGKILL the process group led by ``root`` and every descendant of ``root`` (one that
    left the group with setsid included)."""
    pids = process_tree(root)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def over_memory(what: str, limit_bytes: int) -> CaseError:
    """The one-sentence error of a converter (``what``) that needed more than
    ``limit_bytes`` of memory: how to allow more, with this machine's RAM."""
    total = read_meminfo().get("MemTotal")
    machine = f" (this machine has {format_gib(total)} GiB of RAM)" if total else ""
    return CaseError(f"{what} needed more than {format_gib(limit_bytes)} GiB; set "
                     f"{MEMORY_ENV} to allow more{machine}, or use a smaller model or --imgsz")
