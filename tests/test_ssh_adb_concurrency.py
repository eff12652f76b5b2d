"""Devices run at the same time; cases on one device (even under two URIs) never overlap."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from adb_standin import AdbStandin
from remote_fixtures import (  # noqa: F401
    adb_env,
    adb_server,
    adb_uri,
    only_report,
    ssh_home,
    sshd,
    standin,
)
from servers import AdbServer, SshServer

import edgebench.cli
from edgebench import hookimpl
from edgebench.cli import main
from edgebench.plugin_manager import make_plugin_manager

pytestmark = [pytest.mark.sshd, pytest.mark.adb]
PY = sys.executable
SLOW = ["-b", "onnxruntime", "--warmup", "0", "-n", "1", "--min-duration", "1.5",
        "--no-accuracy"]


class CaseClock:
    """Wraps every case and records when it ran, by device URI."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    @hookimpl(wrapper=True)
    def edgebench_run_case(self, case: Any, device: Any) -> Generator[None, Any, Any]:
        start = time.monotonic()
        result = yield
        with self._lock:
            self.spans.append((case.device, start, time.monotonic()))
        return result


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> CaseClock:
    clock = CaseClock()

    def with_clock(**kwargs: Any) -> Any:
        return make_plugin_manager(**kwargs, extra_plugins=[("case-clock", clock)])

    monkeypatch.setattr(edgebench.cli, "make_plugin_manager", with_clock)
    return clock


def _overlap(a: tuple[str, float, float], b: tuple[str, float, float]) -> float:
    return min(a[2], b[2]) - max(a[1], b[1])


@pytest.mark.slow
def test_ssh_and_adb_devices_run_concurrently(sshd: SshServer, standin: AdbStandin,
                                              adb_env: AdbServer, clock: CaseClock,
                                              tmp_path: Path, make_onnx: Any) -> None:
    ssh, adb = sshd.uri(python=PY), adb_uri(standin, adb_env)
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(2)]
    assert main(["run", "-o", str(tmp_path), "-d", ssh, "-d", adb, "-m", models[0],
                 "-m", models[1], *SLOW]) == 0
    cases = only_report(tmp_path)["cases"]
    assert len(cases) == 4 and all(c["status"] == "ok" for c in cases)
    by_device = {uri: [s for s in clock.spans if s[0] == uri] for uri in (ssh, adb)}
    for spans in by_device.values():  # one device: strictly one after another
        assert len(spans) == 2 and _overlap(spans[0], spans[1]) <= 0
    overlap = max(_overlap(a, b) for a in by_device[ssh] for b in by_device[adb])
    assert overlap > 0.5, f"the two devices did not run at the same time: {clock.spans}"


@pytest.mark.slow
def test_same_device_under_two_uris_is_never_measured_twice_at_once(
        sshd: SshServer, clock: CaseClock, tmp_path: Path, make_onnx: Any) -> None:
    first, second = sshd.uri(python=PY), sshd.uri(python=PY, connect_timeout="9")
    model = str(make_onnx("conv", size=32))
    assert main(["run", "-o", str(tmp_path), "-d", first, "-d", second, "-m", model,
                 *SLOW]) == 0
    assert [c["status"] for c in only_report(tmp_path)["cases"]] == ["ok", "ok"]
    (a, b) = clock.spans
    assert {a[0], b[0]} == {first, second} and _overlap(a, b) <= 0
