"""No secret (a password or token in a device URI, a key's passphrase) ever appears in a
report, a log line or an error message: every output of the harness is grepped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from remote_fixtures import ssh_home, sshd  # noqa: F401
from servers import SshServer

pytestmark = [pytest.mark.faults, pytest.mark.sshd]
PY = sys.executable
SECRET = "hunter2-s3cr3t"
PASSPHRASE = "correct-horse-battery-staple"

BAD_URIS = [
    f"ssh://pi:{SECRET}@127.0.0.1",
    f"ssh://pi@127.0.0.1?token={SECRET}",
    f"ssh://pi@127.0.0.1?passphrase={SECRET}&python=/usr/bin/python3",
    f"ssh://pi:{SECRET}@127.0.0.1:99999",
    f"ssh://[::1?password={SECRET}",
    f"adb://u:{SECRET}@127.0.0.1:5037",
    f"adb://127.0.0.1:5555?password={SECRET}",
    f"adb://127.0.0.1:bad?token={SECRET}",
    f"local://?token={SECRET}",
    f"local?token={SECRET}",
]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "edgebench.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ), timeout=300)


def _everything_written(root: Path) -> str:
    """Every file under ``root``, as text: reports, logs, whatever a run left."""
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("uri", BAD_URIS)
def test_secret_in_a_device_uri_is_refused_and_never_echoed(uri: str, tmp_path: Path,
                                                            make_onnx: Any) -> None:
    model = make_onnx("conv", size=32)
    outputs = []
    for args in (["run", "-o", "out", "-m", str(model), "-d", uri, "--no-accuracy"],
                 ["--debug", "run", "-o", "out", "-m", str(model), "-d", uri],
                 ["devices", "-d", uri], ["devices", "--json", "-d", uri]):
        done = _cli(args, tmp_path)
        assert done.returncode in (1, 2), done
        outputs += [done.stdout, done.stderr]
    assert all(SECRET not in text for text in outputs), "a secret was printed"
    assert SECRET not in _everything_written(tmp_path)
    assert any("***" in text or "unknown device" in text or "not an" in text
               for text in outputs)


def test_encrypted_key_passphrase_is_never_handled(sshd: SshServer, tmp_path: Path,
                                                  make_onnx: Any) -> None:
    key = tmp_path / "encrypted_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)],
                   check=True)
    sshd.authorized_keys.write_text(Path(f"{key}.pub").read_text())
    model = make_onnx("conv", size=32)
    uri = sshd.uri(key=str(key), python=PY)
    args = ["run", "-o", "out", "-m", str(model), "-d", uri, "-b", "onnxruntime",
            "--no-accuracy", "-n", "2", "--retries", "0"]
    refused = _cli(args, tmp_path)
    assert refused.returncode == 1
    assert "is encrypted: add it to ssh-agent (ssh-add) so edgebench never handles its " \
           "passphrase" in refused.stdout
    # in the agent (which asked for the passphrase, not edgebench) it logs in
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho {PASSPHRASE}\n")
        askpass.chmod(0o700)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
               "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        askpass.unlink()
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            ok = _cli([*args[:-2], "--retries", "1"], tmp_path)
        finally:
            del os.environ["SSH_AUTH_SOCK"]
    finally:
        agent.terminate()
        agent.wait(10)
    assert ok.returncode == 0, ok.stderr
    for text in (refused.stdout, refused.stderr, ok.stdout, ok.stderr,
                 _everything_written(tmp_path / "out")):
        assert PASSPHRASE not in text
