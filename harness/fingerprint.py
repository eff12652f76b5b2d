"""Fingerprinting a device by running the agent's probe on it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pluggy

from .errors import CaseError
from .hook_calls import notify
from .record_json import from_json_dict
from .records import DeviceInfo


class _Ran(Protocol):
    @property
    def returncode(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class AgentDevice(Protocol):
    """What the agent uses of an entered :class:`edgebench.contracts.Device` (declared here,
    not imported: ``contracts`` builds the default agent, so importing it would be a cycle)."""

    @property
    def uri(self) -> str: ...
    @property
    def python(self) -> str: ...
    @property
    def workdir(self) -> PurePosixPath: ...
    def push(self, local: Path, remote: PurePosixPath) -> None: ...
    def run(self, argv: Sequence[str], *, timeout_s: float) -> _Ran: ...


AGENT_SCRIPT = Path(__file__).parent / "agent" / "edgebench_agent.py"
AGENT_NAME = "edgebench_agent.py"
PROTOCOL_SCRIPT = Path(__file__).parent / "agent" / "edgebench_protocol.py"
READINGS_SCRIPT = Path(__file__).parent / "agent" / "edgebench_readings.py"
AGENT_FILES = (PROTOCOL_SCRIPT, READINGS_SCRIPT, AGENT_SCRIPT)
"""What the agent needs on the device, side by side in one directory (the agent imports the
runner protocol from its own directory); a runner script goes next to them."""


class DeviceAgent:
    """The agent script on one entered device: pushed once, then probed as needed."""

    def __init__(self, device: AgentDevice) -> None:
        self.device = device
        self._remote: PurePosixPath | None = None

    @property
    def path(self) -> PurePosixPath:
        """The agent's path on the device (pushed on first use, with the runner protocol
        it imports: :data:`AGENT_FILES`)."""
        if self._remote is None:
            for local in AGENT_FILES:
                self.device.push(local, self.device.workdir / local.name)
            self._remote = self.device.workdir / AGENT_NAME
        return self._remote

    def probe(self, modules: tuple[str, ...], pm: pluggy.PluginManager | None = None
              ) -> DeviceInfo:
        """The device fingerprint, with versions of ``modules`` (absent ones left out)."""
        argv = [self.device.python, str(self.path), "probe"]
        for module in modules:
            argv += ["--module", module]
        done = self.device.run(argv, timeout_s=120)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CaseError(f"the device probe failed on {self.device.uri} with "
                            f"{self.device.python}: {tail[0]}")
        fields = _probe_fields(done.stdout, self.device.uri)
        fields["uri"] = self.device.uri
        if pm is not None:
            notify(pm.hook.edgebench_device_info, device=self.device, info=fields)
        known = {f.name for f in dataclasses.fields(DeviceInfo)}
        return from_json_dict(DeviceInfo, {k: v for k, v in fields.items() if k in known})

    def temperature(self) -> float | None:
        """The device's hottest thermal zone now, or ``None``."""
        try:
            done = self.device.run([self.device.python, str(self.path), "temperature"],
                                   timeout_s=30)
            value = json.loads(done.stdout).get("temperature_c")
        except (CaseError, ValueError, OSError):
            return None
        return float(value) if value is not None else None


def _probe_fields(stdout: str, uri: str) -> dict[str, Any]:
    """The probe's fields from the agent's stdout: its one JSON line
    (``{"protocol": ..., "probe": {...}}``), found among whatever else a runtime printed
    from native code on import or at exit (MNN's CPU banner came after the JSON over SSH).
    :class:`CaseError` when none parses."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("probe"), dict):
                fields: dict[str, Any] = parsed["probe"]
                return fields
    tail = stdout.strip().splitlines()[-1:] or ["nothing"]
    raise CaseError(f"the device probe on {uri} printed no readable result (its last line: "
                    f"{tail[0][:200]!r}); a runtime may print to stdout on import")

