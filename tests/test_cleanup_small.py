"""Small things a user reads when a device is refused or a case skipped (issue 17, Why 6):

- a changed host key: the hint removes the old key from the file it is really in (the URI's
  ``known_hosts=`` or ``~/.ssh/config``'s ``UserKnownHostsFile``), checked by running the
  hint's own ``ssh-keygen -R`` and connecting again;
- a wrong ``hostkey=`` pin: said to not match, with both fingerprints (not "unknown");
- a runtime missing on a device: the install command for the device's own interpreter
  (a real venv without numpy), never the host's extra.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from remote_fixtures import ssh_home, sshd  # noqa: F401
from servers import SshServer, keygen

from edgebench.contracts import Backend
from edgebench.devices.local import LocalDevice
from edgebench.devices.ssh import SSHDevice
from edgebench.errors import CaseError
from edgebench.probe import device_agent
from edgebench.runtime_install import missing_runtime_reason

PY = sys.executable


def _impostor_known_hosts(server: SshServer, tmp_path: Path) -> tuple[Path, str]:
    """A known_hosts file that holds another key for the server (the device reinstalled)."""
    keygen(tmp_path / "old_host_key")
    entry = " ".join((tmp_path / "old_host_key.pub").read_text().split()[:2])
    known = tmp_path / "elsewhere" / "my_known_hosts"
    known.parent.mkdir()
    known.write_text(f"{server.known_name} {entry}\n")
    return known, entry


def _hint(message: str) -> list[str]:
    command = message.split("remove the old key with ", 1)[1]
    return shlex.split(command)


@pytest.mark.sshd
@pytest.mark.parametrize("where", ["uri", "ssh_config"])
def test_changed_host_key_hint_names_the_file_the_key_is_in(
        where: str, sshd: SshServer, ssh_home: Path, tmp_path: Path) -> None:  # noqa: F811
    known, _ = _impostor_known_hosts(sshd, tmp_path)
    home_known = ssh_home / ".ssh" / "known_hosts"
    home_known.parent.mkdir(mode=0o700)
    home_known.write_text("")
    if where == "uri":
        uri = sshd.uri(known_hosts=str(known), python=PY)
    else:
        (ssh_home / ".ssh" / "config").write_text(
            f"Host board\n  HostName {sshd.listen}\n  Port {sshd.port}\n  User {sshd.user}\n"
            f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {known}\n")
        uri = f"ssh://board?python={PY}"
    with pytest.raises(CaseError, match="has CHANGED") as refused:
        SSHDevice(uri).__enter__()
    message = str(refused.value)
    assert str(known) in message and sshd.fingerprint in message
    hint = _hint(message)
    assert hint[:3] == ["ssh-keygen", "-R", sshd.known_name] and hint[3:] == ["-f", str(known)]
    # the hint, run as printed, removes the old key from that file (and only there)
    subprocess.run(hint, check=True, capture_output=True)
    assert sshd.known_name not in known.read_text()
    assert home_known.read_text() == ""
    known.write_text(f"{sshd.known_name} {sshd.host_public_key}\n")  # the new key, accepted
    with SSHDevice(uri) as dev:
        assert dev.run(["true"], timeout_s=30).returncode == 0


@pytest.mark.sshd
def test_wrong_pin_is_a_mismatch_with_both_fingerprints(sshd: SshServer,  # noqa: F811
                                                       tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    wrong = "SHA256:" + "A" * 43
    for known in (str(empty), str(sshd.known_hosts)):  # host unknown, and known
        with pytest.raises(CaseError) as refused:
            SSHDevice(sshd.uri(known_hosts=known, hostkey=wrong)).__enter__()
        message = str(refused.value)
        assert f"does not match the hostkey={wrong}" in message, message
        assert sshd.fingerprint in message and "not known" not in message
        assert "--accept-new-host-keys" not in message
    assert empty.read_text() == ""


class _NamelessRuntime(Backend):
    """A backend whose runtime's pip package is not known (no device_requirements, and no
    distribution on this host provides its module)."""

    name = "nameless"
    formats = ("onnx",)
    runtime_modules = ("edgebench_no_such_runtime",)
    install_hint = "pip install 'edgebench[nameless]'"

    def runner(self) -> Path:
        raise NotImplementedError


def test_missing_runtime_hint_is_for_the_device_interpreter(tmp_path: Path) -> None:
    from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend

    venv = tmp_path / "bare"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    uri = f"local?python={python}"
    with LocalDevice(uri) as device:  # probed for real: this interpreter has no numpy
        info = device_agent(device).probe(("onnxruntime", "edgebench_no_such_runtime",
                                           "numpy"))
    assert "numpy" not in info.runtimes and "onnxruntime" not in info.runtimes
    assert missing_runtime_reason(OnnxRuntimeBackend, info, uri, python) == (
        f"onnxruntime and numpy are not installed on {uri}; install them there with: "
        f"{python} -m pip install onnxruntime numpy")
    reason = missing_runtime_reason(_NamelessRuntime, info, uri, python)
    assert reason is not None and "edgebench[" not in reason, reason
    assert reason == (
        f"edgebench_no_such_runtime and numpy are not installed on {uri}; install the "
        f"package that provides edgebench_no_such_runtime for {python} there (the nameless "
        f"backend does not name it), and numpy with: {python} -m pip install numpy")
