"""pytest fixtures for the remote-device tests (imported by the test_ssh*/test_adb* modules)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from adb_standin import AdbStandin
from servers import AdbServer, SshServer, adb_binaries, require

from edgebench import hookimpl
from edgebench.records import RunReport
from edgebench.runner import Session
from edgebench.schema import SCHEMA_PATH

PHONE_PROPS = {
    "ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7",
    "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "14",
    "ro.build.version.sdk": "34", "ro.soc.model": "GS201",
}


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (no ~/.ssh of the user's) and no ssh-agent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def sshd(tmp_path: Path, ssh_home: Path) -> Iterator[SshServer]:
    server = SshServer(tmp_path / "sshd").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=sorted(adb_binaries()) or ["adb-missing"])
def adb_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[AdbServer]:
    """The real adb server, once per adb client found (Debian's 29, adbutils' 36)."""
    binaries = adb_binaries()
    require(request.param in binaries, "adb is not installed (Debian's adb package)")
    server = AdbServer(binaries[request.param], tmp_path_factory.mktemp("adb-home")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def adb_env(adb_server: AdbServer) -> Iterator[AdbServer]:
    with adb_server.environment():
        yield adb_server


def _standin(root: Path, server: AdbServer, **kwargs: Any) -> AdbStandin:
    standin = AdbStandin(root, **kwargs)
    (standin.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
    return standin


@pytest.fixture
def standin(tmp_path: Path, adb_env: AdbServer) -> Iterator[AdbStandin]:
    """A Termux-like phone: getprop, and a python3 (this interpreter) on its PATH."""
    phone = _standin(tmp_path / "phone", adb_env, props=PHONE_PROPS, python=sys.executable)
    try:
        yield phone
    finally:
        adb_env.adb("disconnect", phone.serial)
        phone.stop()


def adb_uri(phone: AdbStandin, server: AdbServer, **options: str) -> str:
    query = {"tmpdir": str(phone.root / "data" / "local" / "tmp"), "adb": server.binary,
             **options}
    return f"adb://{phone.serial}?" + "&".join(f"{k}={v}" for k, v in query.items())


def only_report(out_dir: Path) -> dict[str, Any]:
    (report,) = out_dir.glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()),
                        cls=jsonschema.Draft202012Validator)
    return data


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON value (lists collapsed): the shape of a report."""
    if isinstance(value, dict):
        out = set()
        for k, v in value.items():
            if k in ("runtimes", "details", "versions"):  # free-form maps
                out.add(f"{prefix}.{k}")
                continue
            out |= {f"{prefix}.{k}"} | key_paths(v, f"{prefix}.{k}")
        return out
    if isinstance(value, list):
        return set().union(*(key_paths(v, f"{prefix}[]") for v in value)) if value else set()
    return set()


# ----------------------------------------------------------------------- fault injection


def runner_pids(marker: str) -> list[int]:
    """Running processes (zombies excluded) whose command line holds ``marker`` and
    ``--request``: device-side runners in a work dir under ``marker``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and "--request" in cmdline and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


def no_runners_left(marker: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while runner_pids(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def kill_runners(marker: str) -> None:
    for pid in runner_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def report_cases(path: Path) -> list[dict[str, Any]]:
    """The cases of the report on disk now ([] when it does not exist yet)."""
    try:
        cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    except FileNotFoundError:
        return []
    return cases


class Injector:
    """A plugin that injects a fault while a case runs on a device.

    At the start of case number ``case_index`` (0-based) on device ``uri``, it waits until
    the runner is running there (a process whose command line holds ``marker``), then
    ``delay_s`` more, records the cases of the report on disk (``before``) and calls
    ``action``.
    """

    def __init__(self, uri: str, marker: str, action: Callable[[], None], *,
                 case_index: int = 0, delay_s: float = 2.0) -> None:
        self.uri, self.marker, self.action = uri, marker, action
        self.case_index, self.delay_s = case_index, delay_s
        self.report: Path | None = None
        self.before: list[dict[str, Any]] = []
        self.fired = threading.Event()
        self._seen = 0

    @hookimpl(wrapper=True)
    def edgebench_run_case(self, case: Any, device: Any) -> Generator[None, Any, Any]:
        if case.device == self.uri:
            if self._seen == self.case_index:
                threading.Thread(target=self._fire, daemon=True).start()
            self._seen += 1
        return (yield)

    def _fire(self) -> None:
        deadline = time.monotonic() + 60
        while not runner_pids(self.marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.delay_s)
        if self.report is not None:
            self.before = report_cases(self.report)
        self.action()
        self.fired.set()


def session_for(argv: list[str], *, plugins: Sequence[tuple[str, object]] = (),
                test_options: dict[str, float] | None = None) -> Session:
    """A Session built from ``edgebench run`` flags exactly as the CLI builds it, with extra
    plugins and test-only runner options."""
    from edgebench.cli import build_parser, run_flags
    from edgebench.config import load_matrix
    from edgebench.plugin_manager import collect_registry, make_plugin_manager

    matrix = load_matrix(run_flags(build_parser().parse_args(["run", *argv])))
    pm = make_plugin_manager(extra_plugins=plugins)
    return Session(matrix, pm, collect_registry(pm), argv=argv, test_options=test_options,
                   retry=matrix.retry)


def run_session(session: Session, out: Path, injector: Injector | None = None) -> RunReport:
    out_dir = out / session.run_id
    out_dir.mkdir(parents=True)
    if injector is not None:
        injector.report = out_dir / "report.json"
    try:
        return session.run(out_dir)
    finally:
        session.close()


def same_cases(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Every case of ``before`` is in ``after``, unchanged: nothing measured was lost."""
    by_id = {c["case"]["id"]: c for c in after}
    for case in before:
        assert by_id.get(case["case"]["id"]) == case, f"lost or changed: {case['case']['id']}"
