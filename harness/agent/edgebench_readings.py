"""Device-side readings: the fingerprint probe, memory (RSS), temperature and CPU load.

Copied to the device next to ``edgebench_agent.py`` (which imports it) and self-contained:
the standard library only, Python 3.8+. Sources: ``/proc/self/status`` (VmRSS, VmHWM, in
kB), ``getrusage`` (``ru_maxrss``, kB on Linux) as the peak's fallback,
``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius), ``/proc/cpuinfo``,
``/proc/meminfo`` and ``/etc/os-release``; the CPU's identity for the peak model
(``vendor_id``/``cpu family``/``model``, or ``CPU implementer``/``CPU part`` per processor;
macOS ``sysctl``) and its clock (cpufreq ``cpuinfo_max_freq`` per CPU, else
:func:`clock_probe_mhz`); the machine's CPU load from ``/proc/stat`` (the
aggregate ``cpu`` line, clock ticks of ``SC_CLK_TCK``) and ``/proc/loadavg`` (``psutil``
where ``/proc`` is missing and it is importable; else ``None``).
"""

from __future__ import annotations

import ctypes
import glob
import mmap
import os
import platform
import resource
import socket
import struct
import subprocess
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


def _core_ids(text: str) -> List[Tuple[int, str]]:
    """(processor number, core id) per ``processor`` block of ``/proc/cpuinfo``
    (``x86:vendor:family:model:stepping:name``, ``arm:implementer:part``); the host's
    ``edgebench.peak.core_ids_from_cpuinfo`` is this function."""
    ids = []  # type: List[Tuple[int, str]]
    for block in text.split("\n\n"):
        fields = {}  # type: Dict[str, str]
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip().lower(), value.strip())
        number = fields.get("processor", "")
        index = int(number) if number.isdigit() else len(ids)
        if "vendor_id" in fields and "cpu family" in fields and "model" in fields:
            ids.append((index, "x86:%s:%s:%s:%s:%s" % (
                fields["vendor_id"], fields["cpu family"], fields["model"],
                fields.get("stepping", ""), fields.get("model name", ""))))
        elif "cpu implementer" in fields and "cpu part" in fields:
            ids.append((index, "arm:%s:%s" % (fields["cpu implementer"], fields["cpu part"])))
    return ids


def _sysctl(name: str) -> Optional[str]:
    try:
        done = subprocess.run(["sysctl", "-n", name], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.decode(errors="replace").strip()
    return out if done.returncode == 0 and out else None


def _apple_cores() -> List[Dict[str, Any]]:
    """macOS on Apple silicon: the brand string and the P/E core counts (``hw.perflevel0``
    is the performance level, ``hw.perflevel1`` the efficiency one)."""
    brand = _sysctl("machdep.cpu.brand_string")
    if not brand or not brand.startswith("Apple"):
        return []
    cores = []
    for level, tag in (("0", "P"), ("1", "E")):
        count = _sysctl("hw.perflevel%s.logicalcpu" % level)
        if count and count.isdigit() and int(count) > 0:
            cores.append({"id": "apple:%s:%s" % (brand, tag), "count": int(count),
                          "max_mhz": None})
    return cores


def cpu_cores() -> List[Dict[str, Any]]:
    """The CPU's kinds of cores as ``CpuCores`` wire dicts (``id``, ``count``, ``max_mhz``
    from cpufreq ``cpuinfo_max_freq`` of each CPU, ``None`` where not readable), grouped by
    id and clock; empty where neither ``/proc/cpuinfo`` nor macOS ``sysctl`` tells."""
    if sys.platform == "darwin":
        return _apple_cores()
    groups = {}  # type: Dict[Tuple[str, Optional[float]], int]
    for index, core_id in _core_ids(_read("/proc/cpuinfo") or ""):
        freq = _read("/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq" % index)
        mhz = int(freq.strip()) / 1000.0 if freq and freq.strip().isdigit() else None
        groups[(core_id, mhz)] = groups.get((core_id, mhz), 0) + 1
    return [{"id": core_id, "count": count, "max_mhz": mhz}
            for (core_id, mhz), count in groups.items()]


_CHAIN_ADDS = 200


def _x86_64_chain() -> bytes:
    """x86-64 System V machine code of ``uint64 f(uint64 n)``: ``n`` rounds of 200
    dependent ``add rax, rcx`` (latency 1 cycle on every x86-64 core in the peak table:
    Agner Fog, instruction tables) and a ``dec``/``jnz`` that runs beside them.
    Register-register adds: some cores fold ``add reg, imm`` chains at rename."""
    code = b"\xb9\x01\x00\x00\x00" + b"\x31\xc0"  # mov ecx, 1; xor eax, eax
    start = len(code)
    code += b"\x48\x01\xc8" * _CHAIN_ADDS + b"\x48\xff\xcf"  # add rax, rcx; dec rdi
    code += b"\x0f\x85" + struct.pack("<i", start - (len(code) + 6)) + b"\xc3"  # jnz; ret
    return code


def clock_probe_mhz(samples: int = 40, rounds: int = 10000) -> Optional[float]:
    """The clock of the core this runs on, in MHz, measured: a chain of ``rounds * 200``
    dependent integer adds (one per cycle) placed in an executable page and called
    through ctypes, timed ``samples`` times (about 0.6 ms each at 3.5 GHz, after a 30 ms
    warm-up that lets the clock ramp up; about 0.1 s in all); the fastest sample gives the
    clock (other processes and a hypervisor can only slow a sample down). How steady it
    is depends on the host: on a Zen 4 EPYC VM (2026-12-01, load average 13) ten probes
    spread 3691.8-3692.5 MHz; on a Zen 3 EPYC VM (family 25 model 1, 2026-12-01, load
    average 4-5) probes in separate processes spread 3090-3241 MHz (5 %) as the host's
    clock moved, so the rounding to 10 MHz below does not keep a fingerprint stable there
    (docs/measurements.md, "Peak share"). Linux on x86-64 only; ``None`` elsewhere, or
    where the kernel refuses an executable mapping."""
    if not sys.platform.startswith("linux") or platform.machine().lower() not in (
            "x86_64", "amd64"):
        return None
    code = _x86_64_chain()
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE * (len(code) // mmap.PAGESIZE + 1),
                         prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        page.write(code)
        anchor = ctypes.c_char.from_buffer(page)
        chain = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(ctypes.addressof(anchor))
        warm_until = time.perf_counter() + 0.03
        while time.perf_counter() < warm_until:
            chain(rounds)
        best = None  # type: Optional[int]
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            done = chain(rounds)
            dt = time.perf_counter_ns() - t0
            if done != rounds * _CHAIN_ADDS:
                return None
            best = dt if best is None or dt < best else best
        del chain, anchor
    finally:
        try:
            page.close()
        except BufferError:  # a ctypes view still alive: the mapping goes with the process
            pass
    return rounds * _CHAIN_ADDS / best * 1e3 if best else None


def _clock(cores: List[Dict[str, Any]], cpuinfo_mhz: Optional[float]
           ) -> Tuple[Optional[float], Optional[str]]:
    """The device's clock and its source: the highest cpufreq max of its cores (cpu0's
    where ``/proc/cpuinfo`` names no cores), else the measured probe, else
    ``cpuinfo_mhz`` (``/proc/cpuinfo``'s current MHz, which the peak model ignores)."""
    freqs = [c["max_mhz"] for c in cores if c["max_mhz"]]
    if freqs:
        return max(freqs), "cpufreq max"
    cpu0 = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if cpu0 and cpu0.strip().isdigit():
        return int(cpu0.strip()) / 1000.0, "cpufreq max"
    measured = clock_probe_mhz()
    if measured is not None:  # to 10 MHz: steady on some hosts only (clock_probe_mhz)
        return round(measured, -1), "probe"
    if cpuinfo_mhz is not None:
        return cpuinfo_mhz, "/proc/cpuinfo"
    return None, None


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
    cores = cpu_cores()
    clock = _clock(cores, cpu_max_mhz)
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
        "cpu_max_mhz": clock[0],
        "cpu_flags": flags,
        "runtimes": runtimes,
        "cpu_cores": cores,
        "cpu_clock_source": clock[1],
    }
