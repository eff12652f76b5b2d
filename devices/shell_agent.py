"""The fingerprint of a device read with its shell alone: for devices without Python (phones).

The scripts print ``@@section`` headers; the parsers here turn their output into the fields
the Python agent's probe returns, the hottest thermal zone and the throttling state.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import pluggy

from edgebench.contracts import Device
from edgebench.errors import CaseError
from edgebench.fingerprint import AgentDevice, DeviceAgent
from edgebench.peak import core_ids_from_cpuinfo, group_cores
from edgebench.record_json import from_json_dict
from edgebench.records import DeviceInfo

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
echo @@cpufreq
for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do
  [ -r "$f" ] && echo "$f $(cat "$f" 2>/dev/null)"
done
true
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
    per_cpu = {int(m.group(1)): int(m.group(2)) / 1000.0 for m in
               (re.search(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq (\d+)$", line)
                for line in found.get("cpufreq", [])) if m}
    cores_found = group_cores(core_ids_from_cpuinfo("\n".join(found.get("cpuinfo", []))),
                              per_cpu)
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
        "cpu_cores": [dataclasses.asdict(c) for c in cores_found],
        "cpu_clock_source": "cpufreq max" if freqs else None,
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

    def __init__(self, device: AgentDevice, runtimes: Mapping[str, str] | None = None
                 ) -> None:
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
