"""pytest fixtures for the remote-device tests (imported by the test_ssh*/test_adb* modules)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from adb_standin import AdbStandin
from servers import AdbServer, SshServer, adb_binaries, require

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
