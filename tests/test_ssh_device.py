"""The SSH device against a real OpenSSH server that each test starts on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from remote_fixtures import key_paths, only_report, ssh_home, sshd  # noqa: F401
from servers import SshServer, free_port, keygen, process_alive

from edgebench.cli import main
from edgebench.devices.ssh import SSHDevice
from edgebench.errors import CaseError
from edgebench.probe import device_agent

pytestmark = pytest.mark.sshd
FAST = ["--warmup", "1", "-n", "5", "--images", "2"]
PY = sys.executable


def test_private_workdir_run_push_pull_and_cleanup(sshd: SshServer, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(300_000))
    with SSHDevice(sshd.uri(python=PY)) as dev:
        work = Path(dev.workdir)
        assert work.parent == Path("/tmp") and re.fullmatch(r"edgebench-[0-9a-f]{16}", work.name)
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        dev.push(src, dev.workdir / "models" / "m.bin")
        done = dev.run(["sh", "-c", "ls models; echo to-stderr >&2; exit 3"], timeout_s=30)
        assert (done.returncode, done.stdout, done.stderr) == (3, "m.bin\n", "to-stderr\n")
        dev.pull(dev.workdir / "models" / "m.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        with pytest.raises(CaseError, match="was not produced on the device"):
            dev.pull(dev.workdir / "result.json", tmp_path / "r.json")
        with pytest.raises(CaseError, match="outside the work dir"):
            dev.push(src, dev.workdir.parent / "elsewhere.bin")
        with pytest.raises(CaseError, match="outside the work dir"):
            dev.push(src, dev.workdir / ".." / "escape.bin")
    assert not work.exists()
    assert not (work.parent / "elsewhere.bin").exists()


def test_each_entry_gets_a_new_unpredictable_dir(sshd: SshServer) -> None:
    names = set()
    for _ in range(3):
        with SSHDevice(sshd.uri(python=PY)) as dev:
            names.add(dev.workdir.name)
    assert len(names) == 3


NASTY = ["a b", "it's", 'say "hi"', "x; touch pwned", "$(touch pwned)", "`touch pwned`",
         "line\nbreak", "*", "-n", "~", "$HOME", "a&&b|c>d", "x\ntouch pwned"]


def test_arguments_and_file_names_reach_the_device_verbatim(sshd: SshServer,
                                                           tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [*NASTY, f"; touch {canary}", f"$(touch {canary})", f"'; touch {canary}; '"]
    src = tmp_path / "x"
    src.write_text("x")
    with SSHDevice(sshd.uri(python=PY)) as dev:
        for name in NASTY:
            dev.push(src, dev.workdir / name)
        done = dev.run([PY, "-c", "import json, os, sys; "
                        "print(json.dumps([sys.argv[1:], sorted(set(os.listdir('.')) - "
                        "{'.edgebench-owner'})]))", *args],
                       timeout_s=30)
        argv, listing = json.loads(done.stdout)
        assert argv == args
        assert listing == sorted(NASTY), "a file name ran as a command (or got lost)"
        dev.pull(dev.workdir / NASTY[4], tmp_path / "back")
    assert not canary.exists(), "a shell metacharacter in an argument ran on the device"


def _spawner(marker: Path) -> str:
    return ("import os, subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(marker)!r}, 'w').write('%d %d' % (os.getpid(), p.pid)); "
            "time.sleep(60)")


def test_timeout_kills_the_remote_process_group(sshd: SshServer, tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    start = time.monotonic()
    with SSHDevice(sshd.uri(python=PY)) as dev, \
            pytest.raises(CaseError, match="timed out after 1 s; the runner was killed"):
        dev.run([PY, "-c", _spawner(marker)], timeout_s=1)
    assert time.monotonic() - start < 15
    runner, child = map(int, marker.read_text().split())
    assert not process_alive(runner) and not process_alive(child), "orphan left on the device"


def test_abort_from_another_thread_kills_the_runner(sshd: SshServer, tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    with SSHDevice(sshd.uri(python=PY)) as dev:
        timer = threading.Timer(1.0, dev.abort)
        timer.start()
        start = time.monotonic()
        with pytest.raises(CaseError, match="aborted"):
            dev.run([PY, "-c", _spawner(marker)], timeout_s=120)
        assert time.monotonic() - start < 15
    runner, child = map(int, marker.read_text().split())
    assert not process_alive(runner) and not process_alive(child)


def test_unknown_host_key_is_refused_until_explicitly_accepted(
        sshd: SshServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    uri = sshd.uri(known_hosts=str(known), python=PY)
    with pytest.raises(CaseError) as refused:
        SSHDevice(uri).__enter__()
    message = str(refused.value)
    assert sshd.fingerprint in message and "ssh-ed25519" in message
    assert "--accept-new-host-keys" in message and f"hostkey={sshd.fingerprint}" in message
    assert known.read_text() == "", "an unknown host key was added silently"
    # the explicit opt-in records it (after showing the fingerprint), then it connects
    assert main(["devices", "--accept-new-host-keys", "-d", uri]) == 0
    captured = capsys.readouterr()
    assert sshd.fingerprint in captured.err and "recorded" in captured.err
    assert f"{sshd.known_name} {sshd.host_public_key}" in known.read_text()
    assert "reachable" in captured.out
    with SSHDevice(uri) as dev:
        assert dev.run(["true"], timeout_s=30).returncode == 0


def test_changed_host_key_is_refused_even_with_the_opt_in(sshd: SshServer,
                                                           tmp_path: Path) -> None:
    other = keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    entry = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    known.write_text(f"{sshd.known_name} {entry}\n")
    uri = sshd.uri(known_hosts=str(known))
    with pytest.raises(CaseError, match="has CHANGED") as refused:
        SSHDevice(uri).__enter__()
    assert "ssh-keygen -R" in str(refused.value) and sshd.fingerprint in str(refused.value)
    assert main(["devices", "--accept-new-host-keys", "-d", uri]) == 1
    assert known.read_text() == f"{sshd.known_name} {entry}\n"
    assert other.exists()


def test_pinned_host_key(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with SSHDevice(sshd.uri(known_hosts=str(empty), hostkey=sshd.fingerprint,
                            python=PY)) as dev:
        assert dev.run(["true"], timeout_s=30).returncode == 0
    assert empty.read_text() == ""
    wrong = "SHA256:" + "A" * 43
    # a wrong pin is a mismatch (both fingerprints), not an unknown key: test_cleanup_small
    with pytest.raises(CaseError, match=f"does not match the hostkey={wrong}"):
        SSHDevice(sshd.uri(known_hosts=str(empty), hostkey=wrong)).__enter__()
    with pytest.raises(CaseError, match=f"does not match the hostkey={wrong}"):
        SSHDevice(sshd.uri(hostkey=wrong)).__enter__()  # known_hosts agrees, pin not


def test_refused_key_and_unreachable_host(sshd: SshServer, tmp_path: Path) -> None:
    wrong = keygen(tmp_path / "wrong_key")
    with pytest.raises(CaseError, match="refused the key") as refused:
        SSHDevice(sshd.uri(key=str(wrong))).__enter__()
    assert "ssh-copy-id" in str(refused.value)
    closed = free_port()
    uri = f"ssh://root@127.0.0.1:{closed}?known_hosts={sshd.known_hosts}&connect_timeout=5"
    with pytest.raises(CaseError, match=r"cannot reach root@127.0.0.1:.*Connection refused"):
        SSHDevice(uri).__enter__()


def test_ssh_config_alias_and_ssh_agent(sshd: SshServer, ssh_home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dot = ssh_home / ".ssh"
    dot.mkdir(mode=0o700)
    (dot / "config").write_text(
        f"Host mypi\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  UserKnownHostsFile {sshd.known_hosts}\n  IdentityFile {sshd.client_key}\n"
        "Host agentpi\n  HostName 127.0.0.1\n"
        f"  Port {sshd.port}\n  User {sshd.user}\n  UserKnownHostsFile {sshd.known_hosts}\n")
    with SSHDevice(f"ssh://mypi?python={PY}") as dev:
        assert dev.run(["echo", "via config"], timeout_s=30).stdout == "via config\n"
    with pytest.raises(CaseError, match="no key to log in"):  # no agent, no key for agentpi
        SSHDevice("ssh://agentpi").__enter__()
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True,
                       capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SSHDevice(f"ssh://agentpi?python={PY}") as dev:
            assert dev.run(["echo", "via agent"], timeout_s=30).stdout == "via agent\n"
    finally:
        agent.terminate()
        agent.wait(10)


def test_fingerprint_of_the_remote_device(sshd: SshServer) -> None:
    with SSHDevice(sshd.uri(python=PY)) as dev:
        info = device_agent(dev).probe(("onnxruntime", "numpy", "no_such_runtime"))
    assert info.uri == sshd.uri(python=PY)
    assert info.arch == os.uname().machine and info.cores == os.cpu_count()
    assert info.ram_bytes and info.python and info.os
    assert "onnxruntime" in info.runtimes and "no_such_runtime" not in info.runtimes


def test_missing_python_is_one_clear_reason(sshd: SshServer) -> None:
    with SSHDevice(sshd.uri(python="/nonexistent/python3")) as dev, \
            pytest.raises(CaseError, match="/nonexistent/python3"):
        device_agent(dev).probe(("numpy",))


def test_connection_dropped_mid_run_is_reported_and_cleaned_up(sshd: SshServer,
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    with SSHDevice(sshd.uri(python=PY)) as dev:
        work = Path(dev.workdir)
        threading.Timer(1.5, sshd.drop_connections).start()
        with pytest.raises(CaseError, match=r"connection to .* was lost"):
            dev.run([PY, "-c", _spawner(marker)], timeout_s=60)
    # leaving reconnected once: the orphaned runner is killed and the work dir removed
    runner, child = map(int, marker.read_text().split())
    assert not process_alive(runner) and not process_alive(child)
    assert not work.exists()


def test_disk_full_on_push_names_the_problem(sshd: SshServer, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        big = tmp_path / "big.onnx"
        big.write_bytes(os.urandom(3 << 20))
        with SSHDevice(sshd.uri(python=PY, tmpdir=str(small))) as dev, \
                pytest.raises(CaseError, match=r"disk is full: big.onnx"):
            dev.push(big, dev.workdir / "models" / "big.onnx")
        assert list(small.iterdir()) == [], "the work dir was not cleaned"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _workdirs() -> set[str]:
    """Remote work dirs (the sshd is this host) of this test process: edgebench- and 16
    hex digits, whose owner record names this process (others are other runs': other
    engineers' tests make work dirs in /tmp too)."""
    found = set()
    for p in Path("/tmp").glob("edgebench-*"):
        try:
            record = (p / ".edgebench-owner").read_text()
        except OSError:
            record = ""
        if re.fullmatch(r"edgebench-[0-9a-f]{16}", p.name) and \
                f" pid={os.getpid()} " in record:
            found.add(p.name)
    return found


def test_edgebench_run_over_ssh_gives_the_local_report_shape(sshd: SshServer, tmp_path: Path
                                                             ) -> None:
    before = _workdirs()
    uri = sshd.uri(python=PY)
    # --fresh: both measure their accuracy pass (a pass cached by an earlier test would add
    # accuracy.cached_from to one side's shape)
    assert main(["run", "-o", str(tmp_path / "ssh"), "-d", uri, "-b", "onnxruntime",
                 *FAST, "--fresh"]) == 0
    assert main(["run", "-o", str(tmp_path / "local"), "-d", "local", "-b", "onnxruntime",
                 *FAST, "--fresh"]) == 0
    remote, local = only_report(tmp_path / "ssh"), only_report(tmp_path / "local")
    (case,) = remote["cases"]
    assert case["status"] == "ok", case["reason"]
    assert case["case"]["device"] == uri and case["device"]["uri"] == uri
    assert case["latency"]["n"] == 5 and len(case["latency"]["samples_ns"]) == 5
    assert case["accuracy"] is not None and case["memory"]["peak_rss_bytes"] > 0
    assert key_paths(case) == key_paths(local["cases"][0])
    assert _workdirs() - before == set(), "a remote work dir was left behind"


def test_runtime_missing_on_the_device_is_skipped_with_the_pip_hint(sshd: SshServer,
                                                                   tmp_path: Path) -> None:
    system_python = "/usr/bin/python3"
    has_ort = subprocess.run([system_python, "-c", "import onnxruntime"],
                             capture_output=True).returncode == 0
    if has_ort:
        pytest.skip("the system python has onnxruntime")
    uri = sshd.uri(python=system_python)
    assert main(["run", "-o", str(tmp_path), "-d", uri, "-b", "onnxruntime", *FAST]) == 0
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "skipped"
    numpy = subprocess.run([system_python, "-c", "import numpy"],
                           capture_output=True).returncode == 0
    assert case["reason"] == (
        f"onnxruntime is not installed on {uri}; install it there with: {system_python} -m "
        "pip install onnxruntime" if numpy else
        f"onnxruntime and numpy are not installed on {uri}; install them there with: "
        f"{system_python} -m pip install onnxruntime numpy")


def test_devices_command_lists_reachable_and_unreachable(
        sshd: SshServer, capsys: pytest.CaptureFixture[str]) -> None:
    good = sshd.uri(python=PY)
    bad = f"ssh://root@127.0.0.1:{free_port()}?known_hosts={sshd.known_hosts}"
    assert main(["devices", "-d", good, "-d", bad]) == 1
    out = capsys.readouterr().out
    assert f"{good}  reachable" in out and f"{bad}  UNREACHABLE" in out
    assert "Connection refused" in out and f"{os.cpu_count()} cores" in out
    assert main(["devices", "--json", "-d", good]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["reachable"] and entry["device"]["arch"] == os.uname().machine
    matrix = sshd.dir / "nightly.toml"  # the devices a matrix file configures
    matrix.write_text(f'[run]\ndevices = ["{good}"]\n')
    assert main(["devices", "-c", str(matrix)]) == 0
    assert f"{good}  reachable" in capsys.readouterr().out


def test_bad_ssh_uris_fail_before_anything_runs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", str(tmp_path), "-d", "ssh://pi:hunter2@pi.local"]) == 2
    err = capsys.readouterr().err
    assert "password" in err and "hunter2" not in err
    assert main(["run", "-o", str(tmp_path), "-d", "ssh://pi@pi.local?pyton=python3"]) == 2
    assert "unknown option 'pyton'" in capsys.readouterr().err
    assert main(["run", "-o", str(tmp_path), "-d", "ssh://pi@pi.local:99999"]) == 2
    assert "invalid port" in capsys.readouterr().err
    assert main(["run", "-o", str(tmp_path), "-d",
                 "ssh://pi@pi.local?onnxruntime_perf_test=/no/such/binary"]) == 2
    assert "is not a file on this host" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_without_paramiko_the_ssh_device_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract's member (a misspelt override once left the default ``None``: a missing
    paramiko was only found when a device was entered)."""
    import importlib.util

    from edgebench.contracts import Device

    assert "host_unavailable_reason" in vars(SSHDevice)
    assert not [k for k in vars(SSHDevice) if not k.startswith("_") and not hasattr(Device, k)
                and k != "scheme"], "a public member the Device contract does not declare"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "paramiko" else real(name, *a))
    assert SSHDevice.host_unavailable_reason() == \
        "paramiko is not installed: pip install 'edgebench[ssh]'"
