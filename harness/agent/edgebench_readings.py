"""Device-side readings: the fingerprint probe, memory (RSS), temperature and CPU load.

Copied to the device next to ``edgebench_agent.py`` (which imports it) and self-contained:
the standard library only, Python 3.8+. Sources: ``/proc/self/status`` (VmRSS, VmHWM, in
kB), ``getrusage`` (``ru_maxrss``, kB on Linux) as the peak's fallback,
``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius), ``/proc/cpuinfo``,
``/proc/meminfo`` and ``/etc/os-release``; the machine's CPU load from ``/proc/stat`` (the
aggregate ``cpu`` line, clock ticks of ``SC_CLK_TCK``) and ``/proc/loadavg`` (``psutil``
where ``/proc`` is missing and it is importable; else ``None``).
"""

from __future__ import annotations

import glob
import os
import platform
import resource
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

_INTERESTING_FLAGS = (
    "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8",
    "f16c", "sse4_2", "neon", "asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "i8mm",
    "bf16",
)


# ----------------------------------------------------------------------------- readings


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _status_kb(field: str) -> Optional[int]:
    text = _read("/proc/self/status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def rss_bytes() -> Optional[int]:
    """Current resident set size, or None where /proc is absent."""
    return _status_kb("VmRSS")


def peak_rss_bytes() -> Optional[int]:
    """High-water mark of the resident set (VmHWM), falling back to getrusage."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def temperature_c() -> Optional[float]:
    """Hottest thermal zone in degrees Celsius, or None when none is readable."""
    temps: List[float] = []
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        text = _read(path)
        try:
            value = int(text.strip()) / 1000.0 if text else None
        except ValueError:
            value = None
        if value is not None and -40.0 < value < 150.0:
            temps.append(value)
    return max(temps) if temps else None


def _busy_cpu_s() -> Tuple[Optional[float], str]:
    """Seconds all CPUs together spent busy since boot (user, nice, system, irq, softirq,
    steal: everything but idle and iowait; guest time is inside user), and the source."""
    text = _read("/proc/stat")
    if text is not None:
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[0] == "cpu":
                ticks = [int(v) for v in fields[1:9]] + [0] * (8 - len(fields[1:9]))
                user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
                hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
                return float(user + nice + system + irq + softirq + steal) / hz, "/proc/stat"
    try:
        import psutil  # type: ignore[import-untyped]
    except Exception:
        return None, ""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0)
                 - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)), "psutil"


def loadavg_1m() -> Optional[float]:
    """The 1-minute load average (``/proc/loadavg``, else ``os.getloadavg`` where the OS
    has one), or None."""
    text = _read("/proc/loadavg")
    if text:
        try:
            return float(text.split()[0])
        except (ValueError, IndexError):
            pass
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def cpu_snapshot() -> Dict[str, Any]:
    """One reading for :func:`cpu_load`: a monotonic time (s), the busy CPU seconds of the
    whole machine (None where unreadable), this process's own CPU seconds (all threads,
    and reaped children) and the 1-minute load average."""
    busy, source = _busy_cpu_s()
    times = os.times()
    return {"t": time.monotonic(), "busy_s": busy, "source": source,
            "own_s": time.process_time() + times[2] + times[3],
            "loadavg_1m": loadavg_1m()}


def cpu_load(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """The machine's load between two :func:`cpu_snapshot` readings, as the runner
    result's ``load`` (wire form): ``window_s``, ``cores`` (online CPUs, which
    ``/proc/stat``'s ``cpu`` line sums), ``busy_cpu_s`` / ``own_cpu_s`` / ``other_cpu_s``
    (CPU seconds of every process / this one / the others, clamped at 0), the 1-minute
    load average at each end, ``source``. ``None`` values where the machine cannot tell.
    ``/proc/stat`` counts in clock ticks (10 ms each on most kernels), so a window under
    a second is coarse."""
    window = after["t"] - before["t"]
    busy = None
    if before["busy_s"] is not None and after["busy_s"] is not None:
        busy = max(0.0, after["busy_s"] - before["busy_s"])
    own = max(0.0, after["own_s"] - before["own_s"])
    return {"window_s": window, "cores": os.cpu_count(), "busy_cpu_s": busy,
            "own_cpu_s": own, "other_cpu_s": None if busy is None else max(0.0, busy - own),
            "loadavg_1m_before": before["loadavg_1m"], "loadavg_1m_after": after["loadavg_1m"],
            "source": after["source"] or None}


def _cpuinfo() -> Tuple[Optional[str], Optional[float], List[str]]:
    text = _read("/proc/cpuinfo") or ""
    names: Dict[str, str] = {}
    mhz: List[float] = []
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        value = value.strip()
        if key in ("model name", "hardware", "model", "cpu model") and value:
            names.setdefault(key, value)
        elif key == "cpu mhz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
        elif key in ("flags", "features"):
            flags.update(value.split())
    max_freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    cpu_max_mhz = None
    if max_freq and max_freq.strip().isdigit():
        cpu_max_mhz = int(max_freq.strip()) / 1000.0
    elif mhz:
        cpu_max_mhz = max(mhz)
    # "model name" on x86, "Model" (the board) / "Hardware" on ARM; x86's "model" is a number.
    model = names.get("model name") or names.get("cpu model")
    board = names.get("model") if not names.get("model", "").isdigit() else None
    if board and model:
        model = "%s (%s)" % (board, model)
    model = model or board or names.get("hardware") or platform.processor() or None
    return model, cpu_max_mhz, sorted(f for f in flags if f in _INTERESTING_FLAGS)


def _os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return "%s (%s %s)" % (line.split("=", 1)[1].strip('"'), platform.system(),
                                   platform.release())
    return platform.platform()


def _ram_bytes() -> Optional[int]:
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _import_quietly(name: str) -> Any:
    """Import ``name`` with file descriptor 1 pointing at 2 meanwhile: a runtime that prints
    on import from native code (MNN prints the CPU's features) must not garble the probe's
    JSON on stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable descriptors: import as is
        return __import__(name)
    try:
        return __import__(name)
    finally:
        sys.stdout.flush()
        _flush_c_stdio()  # native printf into a pipe sits in libc's buffer until exit
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: write out what native code printed while fd 1 pointed at fd 2.
    Into a pipe (SSH, ADB, a subprocess) libc buffers it, and would otherwise flush it to
    the restored stdout at exit, after the probe's JSON."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # no libc to reach (unusual platforms): nothing buffered we can flush
        pass


def _module_version(name: str) -> Optional[str]:
    try:
        module = _import_quietly(name)
    except Exception:
        return None
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            from importlib import metadata

            version = metadata.version(name.replace("_", "-"))
        except Exception:
            version = "unknown"
    return str(version)


def probe(modules: Sequence[str]) -> Dict[str, Any]:
    """The device fingerprint as a dict of DeviceInfo fields (uri is added by the host)."""
    cpu_model, cpu_max_mhz, flags = _cpuinfo()
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    runtimes: Dict[str, str] = {}
    for name in modules:
        version = _module_version(name)
        if version is not None:
            runtimes[name] = version
    return {
        "hostname": socket.gethostname() or None,
        "arch": platform.machine(),
        "os": _os_name(),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_bytes": _ram_bytes(),
        "python": platform.python_version(),
        "governor": governor.strip() if governor else None,
        "temperature_c": temperature_c(),
        "cpu_max_mhz": cpu_max_mhz,
        "cpu_flags": flags,
        "runtimes": runtimes,
    }
