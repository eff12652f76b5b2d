"""Security of the remote devices, end to end: hostile device paths and names never run as
commands, work dirs stay private and leave nothing behind, host keys are checked as
OpenSSH checks them (hashed entries, @revoked, StrictHostKeyChecking), and nothing loaded
from a file or a device can execute code in the harness."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from adb_standin import AdbStandin
from remote_fixtures import (  # noqa: F401
    adb_env,
    adb_server,
    adb_uri,
    run_session,
    session_for,
    ssh_home,
    sshd,
    standin,
)
from servers import AdbServer, SshServer

from edgebench.devices.ssh import SSHDevice
from edgebench.errors import CaseError, UserError
from edgebench.records import Status

pytestmark = [pytest.mark.faults, pytest.mark.sshd, pytest.mark.adb]
PY = sys.executable


def _hostile_dir(root: Path, canary: Path) -> Path:
    """A directory whose path holds every shell metacharacter the tests know of."""
    name = f"dev dir 'q\" ;$(touch {canary}) `touch {canary}` \n nl & | > <"
    path = root / name
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("adb_server", ["adb-adbutils"], indirect=True)
@pytest.mark.parametrize("kind", ["ssh", "adb"])
def test_hostile_paths_and_names_run_nothing_on_the_device(
        kind: str, sshd: SshServer, standin: AdbStandin, adb_env: AdbServer, tmp_path: Path,
        make_onnx: Any) -> None:
    canary = tmp_path / "canary"
    tmpdir = _hostile_dir(tmp_path / "device", canary)
    python = tmpdir / "py thon's;$(touch x)"
    python.write_text(f"#!/bin/sh\nexec {PY} \"$@\"\n")
    python.chmod(0o755)
    model = make_onnx("conv", size=32, name="m o'del;$(touch x) `y` \"q\".onnx")
    options = {"tmpdir": quote(str(tmpdir), safe="/"), "python": quote(str(python), safe="/")}
    uri = sshd.uri(**options) if kind == "ssh" else adb_uri(standin, adb_env, **options)
    seen: list[Any] = []

    class Watch:
        from edgebench import hookimpl

        @hookimpl(wrapper=True)
        def edgebench_run_case(self, case: Any, device: Any) -> Any:
            workdir = Path(device.workdir)
            seen.append((workdir, stat.S_IMODE(workdir.stat().st_mode)))
            return (yield)

    report = run_session(session_for(["-d", uri, "-m", str(model), "-b", "onnxruntime",
                                      "-n", "2", "--images", "2"],
                                     plugins=[("watch", Watch())]), tmp_path / "out")
    (case,) = report.cases
    assert case.status is Status.OK, case.reason
    assert case.accuracy is not None and case.accuracy.images == 2
    assert not canary.exists() and not (tmpdir / "x").exists(), "a name ran as a command"
    ((workdir, mode),) = seen
    assert workdir.parent == tmpdir and mode == 0o700
    assert sorted(p.name for p in tmpdir.iterdir()) == [python.name], \
        "something was left (or written outside the work dir)"


def test_hashed_known_hosts_entries_are_honoured(sshd: SshServer, tmp_path: Path) -> None:
    hashed = tmp_path / "known_hashed"
    hashed.write_text(sshd.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert hashed.read_text().startswith("|1|")
    with SSHDevice(sshd.uri(known_hosts=str(hashed), python=PY)) as dev:
        assert dev.run(["true"], timeout_s=30).returncode == 0
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    wrong = tmp_path / "known_wrong"
    wrong.write_text(f"{sshd.known_name} "
                     + " ".join(Path(f"{impostor}.pub").read_text().split()[:2]) + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(wrong)], check=True, capture_output=True)
    with pytest.raises(CaseError, match="has CHANGED"):
        SSHDevice(sshd.uri(known_hosts=str(wrong))).__enter__()


def test_revoked_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts.read_text() + f"@revoked * {sshd.host_public_key}\n")
    with pytest.raises(CaseError, match=r"is marked @revoked in .*known_hosts: refusing"):
        SSHDevice(sshd.uri(known_hosts=str(known))).__enter__()


def test_strict_host_key_checking_from_ssh_config(sshd: SshServer, ssh_home: Path,
                                                  tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    dot = ssh_home / ".ssh"
    dot.mkdir(mode=0o700)
    base = (f"  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
            f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {known}\n")
    (dot / "config").write_text(f"Host strict\n{base}  StrictHostKeyChecking yes\n"
                                f"Host acceptnew\n{base}  StrictHostKeyChecking accept-new\n"
                                "  HashKnownHosts yes\n")
    with pytest.raises(CaseError, match="is not known"):
        SSHDevice(f"ssh://strict?python={PY}").__enter__()
    assert known.read_text() == ""
    with SSHDevice(f"ssh://acceptnew?python={PY}") as dev:  # recorded, hashed, as ssh does
        assert dev.run(["true"], timeout_s=30).returncode == 0
    line = known.read_text()
    assert line.startswith("|1|") and line.rstrip().endswith(sshd.host_public_key)
    assert sshd.known_name not in line
    with SSHDevice(f"ssh://strict?python={PY}") as dev:  # now it is known
        assert dev.run(["true"], timeout_s=30).returncode == 0
    # a changed key stays refused, accept-new or not
    other = tmp_path / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    known.write_text(f"{sshd.known_name} "
                     + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n")
    with pytest.raises(CaseError, match="has CHANGED"):
        SSHDevice(f"ssh://acceptnew?python={PY}").__enter__()


def test_no_auto_add_policy_anywhere() -> None:
    import edgebench.devices

    sources = Path(edgebench.devices.__file__).parent.glob("*.py")
    assert not [p for p in sources if "AutoAddPolicy" in p.read_text()
                or "WarningPolicy" in p.read_text()]


# -- loading what others wrote --------------------------------------------------------------


def test_untrusted_files_cannot_run_code_in_the_harness(tmp_path: Path) -> None:
    """YAML tags, pickled numpy arrays and JSON that names classes are data, never code."""
    from edgebench.datasets import load_dataset
    from edgebench.matrix_file import MatrixFile
    from edgebench.remote import _read_outputs
    from edgebench.reports.json_report import load_report

    canary = tmp_path / "canary"
    yaml = tmp_path / "data.yaml"
    yaml.write_text(f"path: !!python/object/apply:os.system ['touch {canary}']\n"
                    "train: images\nval: images\nnames: {0: a}\n")
    with pytest.raises(UserError):
        load_dataset(yaml)
    toml = tmp_path / "nightly.toml"
    toml.write_text(f'[run]\ndevices = ["__import__(\'os\').system(\'touch {canary}\')"]\n')
    MatrixFile(toml)  # a string, never evaluated
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema_version": 2, "__class__": "os.system",
                                  "run_id": f"$(touch {canary})", "cases": "x"}))
    with pytest.raises(UserError, match="does not match report schema"):
        load_report(report)
    outputs = tmp_path / "outputs.npz"
    np.savez(outputs, **{"0_0": np.array([os.system], dtype=object)})  # a pickle inside
    with pytest.raises(CaseError, match="the runner's outputs are malformed: Object arrays "
                                        "cannot be loaded when allow_pickle=False"):
        _read_outputs(outputs)
    assert not canary.exists()
