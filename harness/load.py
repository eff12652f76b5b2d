"""The machine's load during a case's timed loop: the device's (read by the agent) and the
host's (read here with psutil), and the warning when the device was too busy to trust.

The device-side agent reads ``/proc/stat`` and ``/proc/loadavg`` right before and after
the timed loop (``edgebench_readings.cpu_load``) and says when the loop ran, in seconds
before it wrote its result. :class:`HostSampler` reads the host every
:data:`HOST_SAMPLE_S` seconds while the runner runs, and :meth:`HostSampler.window` picks
the readings that enclose the same loop (the host's clock: when the runner returned, minus
the agent's offsets; off by the runner's exit and the transport, tens of milliseconds).

The threshold (:func:`busy_warning`): the case competed for CPU when the other processes'
average cores plus the threads the case ran exceed the device's cores by more than
:data:`BUSY_MARGIN_CORES`. Measured on a shared 2-core x86 VM (docs/measurements.md,
"Threads and machine load"): at 1 thread with other processes at 0.95-1.01 cores, ONNX
Runtime and ncnn ran at 17-23 ms (p90/p10 at most 1.15); at 1 thread with 1.58-1.70
other cores at 48-78 ms; at 2 threads with 1.07-1.75 other cores at 51-704 ms (10-14 ms
on the quiet machine).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from .agent.edgebench_protocol import LoadReading
from .records import CaseLoad, MachineLoad

HOST_SAMPLE_S = 0.2
"""Seconds between two host readings (each reads /proc/stat and the process tree once)."""

BUSY_MARGIN_CORES = 0.25
"""Other processes may take this many cores beyond the cores the case left free before the
report warns. The measurements above bracket it (no inflation at 1.01 other cores with 1
core free, 2.8x at 1.58); where inside that gap inflation starts is not measured."""


def machine_load(reading: LoadReading | None) -> MachineLoad | None:
    """The device's :class:`MachineLoad` from the agent's reading (``None``: none sent,
    an older agent or a native runner)."""
    if reading is None:
        return None
    window = reading.window_s if reading.window_s > 0 else None
    other = reading.other_cpu_s / window if reading.other_cpu_s is not None and window \
        else None
    if other is not None and reading.cores:
        other = min(other, float(reading.cores))
    averages = [v for v in (reading.loadavg_1m_before, reading.loadavg_1m_after)
                if v is not None]
    return MachineLoad(
        window_s=window, cores=reading.cores,
        other_cpu_cores=None if other is None else round(other, 3),
        other_cpu_share=round(other / reading.cores, 3)
        if other is not None and reading.cores else None,
        loadavg_1m=max(averages) if averages else None, source=reading.source)


def busy_warning(load: MachineLoad | None, threads: int | None) -> str | None:
    """One sentence when other processes took CPU the case needed, else ``None``.

    ``threads``: the threads the runtime used (``None``: unknown, taken as every core). The
    case competed when ``other_cpu_cores + threads > cores + BUSY_MARGIN_CORES``.
    """
    if load is None or load.other_cpu_cores is None or not load.cores:
        return None
    used = threads or load.cores
    free = load.cores - min(used, load.cores)
    if load.other_cpu_cores <= free + BUSY_MARGIN_CORES:
        return None
    average = f", load average {load.loadavg_1m:.2f}" if load.loadavg_1m is not None else ""
    return (f"device busy: other processes kept {load.other_cpu_cores:.2f} of its "
            f"{load.cores} cores busy during the timed loop ({load.other_cpu_share:.0%}"
            f"{average}) while the case ran {used} thread{'s' if used != 1 else ''}"
            f"{'' if threads else ' (count unknown: taken as every core)'}: latency is "
            "inflated; measure on a quiet device or with fewer threads")


def oversubscribed_note(threads: int | None, cores: int | None) -> str | None:
    """A note when the runtime ran more threads than the device has cores (MNN's default
    is 4 on any CPU): its threads take turns on the cores, whatever else runs."""
    if not threads or not cores or threads <= cores:
        return None
    return (f"ran {threads} threads on {cores} cores: the threads take turns on the cores; "
            f"--threads {cores} measures without that")


def case_load(device: MachineLoad | None, host: MachineLoad | None,
              threads: int | None) -> CaseLoad | None:
    """The case's :class:`CaseLoad`, with :func:`busy_warning` of the device."""
    if device is None and host is None:
        return None
    return CaseLoad(device=device, host=host, busy_warning=busy_warning(device, threads))


def worst(a: CaseLoad | None, b: CaseLoad | None) -> CaseLoad | None:
    """Of two repeats' loads, the one whose device was busier (the warning stays when
    either repeat had one)."""
    if a is None or b is None:
        return a or b

    def other(load: CaseLoad) -> float:
        d = load.device
        return d.other_cpu_cores if d is not None and d.other_cpu_cores is not None else -1.0

    busiest = a if other(a) >= other(b) else b
    warning = busiest.busy_warning or a.busy_warning or b.busy_warning
    return CaseLoad(device=busiest.device, host=busiest.host, busy_warning=warning)


@dataclass(frozen=True)
class _Reading:
    t: float
    busy_s: float
    tree_s: float
    loadavg_1m: float | None


def _tree_cpu_s(psutil: Any, me: Any) -> float:
    """CPU seconds of this process and its children (live ones, and reaped ones through
    ``os.times``)."""
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        total += t.user + t.system
    times = os.times()
    return total + times.children_user + times.children_system


class HostSampler:
    """Reads the host's CPU load every :data:`HOST_SAMPLE_S` seconds in a thread, while a
    runner runs (a context manager). Without psutil it reads nothing and every window is
    ``None``."""

    def __init__(self, interval_s: float = HOST_SAMPLE_S) -> None:
        self.interval_s = interval_s
        self.readings: list[_Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._psutil: Any = None
        self._me: Any = None
        self.ended: float | None = None

    def _read(self) -> None:
        psutil = self._psutil
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
            - getattr(t, "guest_nice", 0.0)
        try:
            average: float | None = float(psutil.getloadavg()[0])
        except (AttributeError, OSError):
            average = None
        self.readings.append(_Reading(time.monotonic(), float(busy),
                                      _tree_cpu_s(psutil, self._me), average))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def __enter__(self) -> Self:
        try:
            import psutil
        except ImportError:
            return self
        self._psutil, self._me = psutil, psutil.Process()
        self._read()
        self._thread = threading.Thread(target=self._loop, name="edgebench-host-load",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.ended = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._read()

    def window(self, reading: LoadReading | None) -> MachineLoad | None:
        """The host's load over the device's timed loop (``reading``'s offsets before the
        runner returned), from the last reading at or before its start to the first at or
        after its end; over the whole run when the loop's times are unknown; ``None``
        without psutil or readings."""
        if len(self.readings) < 2 or self.ended is None:
            return None
        first, last = self.readings[0], self.readings[-1]
        if reading is not None and reading.started_before_end_s is not None \
                and reading.ended_before_end_s is not None:
            start = self.ended - reading.started_before_end_s
            end = self.ended - reading.ended_before_end_s
            first = max((r for r in self.readings if r.t <= start), key=lambda r: r.t,
                        default=first)
            last = min((r for r in self.readings if r.t >= end), key=lambda r: r.t,
                       default=last)
        window = last.t - first.t
        if window <= 0:
            return None
        cores = self._psutil.cpu_count() or None
        other = max(0.0, (last.busy_s - first.busy_s) - (last.tree_s - first.tree_s)) / window
        if cores:
            other = min(other, float(cores))
        averages = [r.loadavg_1m for r in (first, last) if r.loadavg_1m is not None]
        return MachineLoad(
            window_s=round(window, 3), cores=cores, other_cpu_cores=round(other, 3),
            other_cpu_share=round(other / cores, 3) if cores else None,
            loadavg_1m=max(averages) if averages else None, source="psutil")
