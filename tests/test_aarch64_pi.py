"""The aarch64 tier: an emulated Raspberry Pi, benchmarked over real SSH.

An arm64 Debian 12 root (``scripts/aarch64_root.sh``: debootstrap + aarch64 wheels of numpy
and onnxruntime; built once, cached under /var/cache/edgebench-test) runs its aarch64 code
through qemu-user and binfmt_misc. The "Pi" gets its own address in a network namespace
joined by a veth pair; a private sshd there chroots logins into the root, with /proc
mounted (in sshd's own mount namespace) and /sys deliberately not (aarch64 ONNX Runtime
crashes under qemu when it can read /sys's CPU topology). ``edgebench run --device
ssh://root@<pi>`` then runs a complete benchmark, accuracy pass included, on aarch64 code.

Emulation is some hundred times slower than the host, so this asserts structure and
sanity, and that aarch64 ONNX Runtime computes what the host's does (the fidelity check
against the host-side float reference), never speed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_fixtures import key_paths, only_report
from servers import NetNs, SshServer, require

from edgebench.cli import main
from edgebench.config import DEFAULT_MODEL

pytestmark = [pytest.mark.aarch64, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("EDGEBENCH_AARCH64_ROOT",
                           "/var/cache/edgebench-test/aarch64-root"))


@pytest.fixture(scope="module")
def aarch64_root() -> Path:
    require(os.geteuid() == 0, "the aarch64 tier runs as root")
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts", "ip", "unshare"):
        require(shutil.which(tool) is not None, f"{tool} is missing")
    start = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts" / "aarch64_root.sh"), str(ROOT)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, f"building the aarch64 root failed:\n{done.stderr[-3000:]}"
    print(f"aarch64 root ready in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pi(aarch64_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with NetNs() as ns:
        # QEMU_CPU: emulate a Raspberry Pi 5's Cortex-A76. qemu's default "max" CPU offers
        # SVE/SME, which ONNX Runtime's kernels then use and qemu emulates ~20x slower.
        server = SshServer(tmp_path_factory.mktemp("pi-sshd"), listen=ns.ns_addr, port=22,
                           chroot=aarch64_root, netns=ns.name, mount_proc=True,
                           set_env={"QEMU_CPU": "cortex-a76"}).start()
        try:
            yield server
        finally:
            server.stop()


def test_emulated_pi_is_fingerprinted_as_aarch64(pi: SshServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "-d", pi.uri()]) == 0
    out = capsys.readouterr().out
    assert f"{pi.uri()}  reachable" in out
    assert "(aarch64," in out and "Debian GNU/Linux 12 (bookworm)" in out
    assert "onnxruntime " in out and "numpy " in out


def test_full_onnxruntime_benchmark_on_aarch64_over_ssh(pi: SshServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no user ssh config or agent
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    uri = pi.uri()
    args = ["-b", "onnxruntime", "-m", str(DEFAULT_MODEL), "--warmup", "1", "-n", "3",
            "--images", "2", "--threads", "1", "--timeout", "900"]
    start = time.monotonic()
    assert main(["run", "-o", str(tmp_path / "pi"), "-d", uri, *args]) == 0
    print(f"aarch64 case: {time.monotonic() - start:.0f} s", file=sys.stderr)
    report = only_report(tmp_path / "pi")
    (case,) = report["cases"]
    assert case["status"] == "ok", case["reason"]
    device = case["device"]
    assert device["arch"] == "aarch64" and device["python"].startswith("3.")
    assert device["os"].startswith("Debian GNU/Linux 12 (bookworm)")
    assert "onnxruntime" in device["runtimes"] and "numpy" in device["runtimes"]
    assert report["host"]["arch"] != "aarch64" or os.uname().machine == "aarch64"
    latency = case["latency"]
    assert latency["n"] == 3 and len(latency["samples_ns"]) == 3
    assert all(s > 0 for s in latency["samples_ns"])
    assert 0 < latency["min_ms"] <= latency["p50_ms"] <= latency["max_ms"]
    assert latency["init_ns"] > 0 and latency["first_inference_ns"] > 0
    assert case["memory"]["peak_rss_bytes"] > case["memory"]["rss_baseline_bytes"] > 0
    assert case["runtime"]["name"] == "onnxruntime"
    assert case["runtime"]["providers"] == ["CPUExecutionProvider"]
    assert case["runtime"]["threads"] == 1
    accuracy = case["accuracy"]
    assert accuracy["images"] == 2 and accuracy["map50_95"] is not None
    fidelity = accuracy["fidelity"]
    assert fidelity["within_tolerance"] is True, fidelity  # aarch64 ORT == host's, in tolerance
    # the same report shape as the local device, and the Pi's work dir is gone
    assert main(["run", "-o", str(tmp_path / "local"), "-d", "local", *args]) == 0
    local = only_report(tmp_path / "local")["cases"][0]
    assert key_paths(case) == key_paths(local)
    assert accuracy["map50_95"] == pytest.approx(local["accuracy"]["map50_95"], abs=1e-3)
    leftovers = [p for p in (pi.chroot or Path("/nonexistent")).joinpath("tmp")
                 .glob("edgebench-*")]
    assert leftovers == []
