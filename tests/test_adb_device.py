"""The ADB device through the real adb server and client (Debian's and adbutils' bundled)
against the test suite's adbd stand-in."""

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
from adb_standin import AdbStandin
from remote_fixtures import (  # noqa: F401
    PHONE_PROPS,
    adb_env,
    adb_server,
    adb_uri,
    key_paths,
    only_report,
    standin,
)
from servers import AdbServer, free_port, process_alive

from edgebench.cli import main
from edgebench.devices.adb import AdbDevice
from edgebench.errors import CaseError
from edgebench.probe import device_agent

pytestmark = pytest.mark.adb
FAST = ["--warmup", "1", "-n", "5", "--images", "2"]
PY = sys.executable


def test_private_workdir_run_push_pull_and_cleanup(standin: AdbStandin, adb_env: AdbServer,
                                                   tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(300_000))
    with AdbDevice(adb_uri(standin, adb_env)) as dev:
        work = Path(dev.workdir)
        assert work.parent == standin.root / "data" / "local" / "tmp"
        assert re.fullmatch(r"edgebench-[0-9a-f]{16}", work.name)
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        dev.push(src, dev.workdir / "models" / "m.bin")
        done = dev.run(["sh", "-c", "ls models; echo to-stderr >&2; exit 3"], timeout_s=30)
        assert (done.returncode, done.stdout, done.stderr) == (3, "m.bin\n", "to-stderr\n")
        dev.pull(dev.workdir / "models" / "m.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        with pytest.raises(CaseError, match="was not produced on the device"):
            dev.pull(dev.workdir / "result.json", tmp_path / "r.json")
        with pytest.raises(CaseError, match="outside the work dir"):
            dev.push(src, dev.workdir.parent / "x.bin")
    assert not work.exists()
    assert standin.serial not in adb_env.adb("devices").stdout, "adb connect was not undone"


def test_arguments_reach_the_device_verbatim(standin: AdbStandin, adb_env: AdbServer,
                                            tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = ["a b", "it's", 'say "hi"', f"; touch {canary}", f"$(touch {canary})",
            f"`touch {canary}`", "line\nbreak", "*", "$HOME", f"'; touch {canary}; '"]
    with AdbDevice(adb_uri(standin, adb_env)) as dev:
        done = dev.run([PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args],
                       timeout_s=30)
    assert json.loads(done.stdout) == args
    assert not canary.exists()


def _spawner(marker: Path) -> str:
    return ("import os, subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(marker)!r}, 'w').write('%d %d' % (os.getpid(), p.pid)); "
            "time.sleep(60)")


def test_timeout_and_abort_kill_the_remote_process_group(standin: AdbStandin,
                                                        adb_env: AdbServer,
                                                        tmp_path: Path) -> None:
    with AdbDevice(adb_uri(standin, adb_env)) as dev:
        first = tmp_path / "first"
        with pytest.raises(CaseError, match="timed out after 1 s; the runner was killed"):
            dev.run([PY, "-c", _spawner(first)], timeout_s=1)
        second = tmp_path / "second"
        threading.Timer(1.0, dev.abort).start()
        start = time.monotonic()
        with pytest.raises(CaseError, match="aborted"):
            dev.run([PY, "-c", _spawner(second)], timeout_s=120)
        assert time.monotonic() - start < 15
    for marker in (first, second):
        runner, child = map(int, marker.read_text().split())
        assert not process_alive(runner) and not process_alive(child), "orphan on the device"


@pytest.mark.slow
def test_unauthorized_offline_and_refused_are_one_clear_reason(
        tmp_path: Path, adb_env: AdbServer) -> None:
    for mode, expected in (("unauthorized", "is unauthorized: unlock it and accept"),
                           ("offline", "is offline: reconnect it")):
        phone = AdbStandin(tmp_path / mode, mode=mode)
        try:
            with pytest.raises(CaseError, match=expected):
                AdbDevice(adb_uri(phone, adb_env)).__enter__()
        finally:
            adb_env.adb("disconnect", phone.serial)
            phone.stop()
    with pytest.raises(CaseError, match=r"cannot reach 127.0.0.1:.*refused"):
        AdbDevice(f"adb://127.0.0.1:{free_port()}").__enter__()
    with pytest.raises(CaseError, match="no device nosuchserial is attached"):
        AdbDevice("adb://nosuchserial").__enter__()


def test_python_less_phone_is_fingerprinted_with_getprop(tmp_path: Path,
                                                         adb_env: AdbServer) -> None:
    phone = AdbStandin(tmp_path / "phone", props=PHONE_PROPS)
    (phone.root / "data" / "local" / "tmp").mkdir(parents=True)
    try:
        with AdbDevice(adb_uri(phone, adb_env, python="none")) as dev:
            assert dev.python == ""
            info = device_agent(dev).probe(("onnxruntime",))
    finally:
        adb_env.adb("disconnect", phone.serial)
        phone.stop()
    assert info.cpu_model == "Google Pixel 7 (GS201, arm64-v8a)"
    assert info.os.startswith("Android 14 (SDK 34, Linux ")
    assert info.python is None and info.runtimes == {}
    assert info.cores == os.cpu_count() and info.ram_bytes and info.arch == os.uname().machine


def test_phone_with_python_gets_android_fields_and_runtimes(standin: AdbStandin,
                                                            adb_env: AdbServer) -> None:
    from edgebench.plugin_manager import make_plugin_manager

    with AdbDevice(adb_uri(standin, adb_env)) as dev:
        assert dev.python == str(standin.root / "system" / "bin" / "python3")
        info = device_agent(dev).probe(("onnxruntime", "numpy"), make_plugin_manager())
    assert info.cpu_model == "Google Pixel 7 (GS201, arm64-v8a)"
    assert info.os.startswith("Android 14") and info.python
    assert {"onnxruntime", "numpy"} <= set(info.runtimes)


def test_connection_dropped_mid_run(standin: AdbStandin, adb_env: AdbServer,
                                    tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    with AdbDevice(adb_uri(standin, adb_env)) as dev:
        work = Path(dev.workdir)
        threading.Timer(1.5, standin.drop_connections).start()
        with pytest.raises(CaseError, match=r"connection to 127.0.0.1:.* was lost while running"):
            dev.run([PY, "-c", _spawner(marker)], timeout_s=60)
    # adb reconnects by itself: leaving kills the cut-off runner and removes the work dir
    runner, child = map(int, marker.read_text().split())
    assert not process_alive(runner) and not process_alive(child)
    assert not work.exists()


def test_disk_full_on_push(standin: AdbStandin, adb_env: AdbServer, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        big = tmp_path / "big.onnx"
        big.write_bytes(os.urandom(3 << 20))
        with AdbDevice(adb_uri(standin, adb_env, tmpdir=str(small))) as dev, \
                pytest.raises(CaseError, match=r"disk is full: big.onnx"):
            dev.push(big, dev.workdir / "big.onnx")
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_edgebench_run_over_adb_gives_the_local_report_shape(standin: AdbStandin,
                                                             adb_env: AdbServer,
                                                             tmp_path: Path) -> None:
    uri = adb_uri(standin, adb_env)
    assert main(["run", "-o", str(tmp_path / "adb"), "-d", uri, "-b", "onnxruntime",
                 *FAST]) == 0
    assert main(["run", "-o", str(tmp_path / "local"), "-d", "local", "-b", "onnxruntime",
                 *FAST]) == 0
    remote, local = only_report(tmp_path / "adb"), only_report(tmp_path / "local")
    (case,) = remote["cases"]
    assert case["status"] == "ok", case["reason"]
    assert case["device"]["cpu_model"] == "Google Pixel 7 (GS201, arm64-v8a)"
    assert case["latency"]["n"] == 5 and case["accuracy"] is not None
    assert key_paths(case) == key_paths(local["cases"][0])
    leftovers = list((standin.root / "data" / "local" / "tmp").iterdir())
    assert leftovers == [], "the work dir was not removed"


def _perf_test_binary(tmp_path: Path) -> Path:
    """The onnxruntime_perf_test stand-in as an executable file, as a user would give."""
    source = Path(__file__).with_name("adb_native_standin.py").read_text()
    binary = tmp_path / "onnxruntime_perf_test"
    binary.write_text(f"#!{PY}\n{source}")
    binary.chmod(0o644)  # the harness must make it executable on the device
    return binary


def test_native_runner_on_a_python_less_phone(tmp_path: Path, adb_env: AdbServer) -> None:
    phone = AdbStandin(tmp_path / "phone", props=PHONE_PROPS)
    (phone.root / "data" / "local" / "tmp").mkdir(parents=True)
    binary = _perf_test_binary(tmp_path)
    try:
        uri = adb_uri(phone, adb_env, python="none", onnxruntime_perf_test=str(binary))
        assert main(["run", "-o", str(tmp_path / "out"), "-d", uri, "-b", "onnxruntime",
                     "--warmup", "1", "-n", "12", "--threads", "1", "--images", "2"]) == 0
        commands = list(phone.shell_commands)
    finally:
        adb_env.adb("disconnect", phone.serial)
        phone.stop()
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "ok", case["reason"]
    latency = case["latency"]
    assert latency["n"] == 12 and len(latency["samples_ns"]) == 12
    assert 0 < latency["min_ms"] <= latency["p50_ms"] <= latency["max_ms"]
    assert latency["init_ns"] > 0
    assert case["runtime"]["details"]["tool"] == "onnxruntime_perf_test"
    assert case["runtime"]["threads"] == 1 and case["memory"]["peak_rss_bytes"] > 0
    assert case["device"]["runtimes"]["onnxruntime_perf_test"].startswith("native")
    assert any("measured by native onnxruntime_perf_test" in n for n in case["notes"])
    assert any("accuracy not measured" in n for n in case["notes"])
    run = next(c for c in commands if "onnxruntime_perf_test -e cpu" in c)
    assert "-m times -r 12 -o 99 -x 1" in run
    assert any(c.startswith("echo edgebench-pid:$$; { cd ") and " && chmod 755 " in c
               for c in commands)


def test_python_less_phone_without_native_runner_is_skipped_with_the_fix(
        tmp_path: Path, adb_env: AdbServer) -> None:
    phone = AdbStandin(tmp_path / "phone", props=PHONE_PROPS)
    (phone.root / "data" / "local" / "tmp").mkdir(parents=True)
    try:
        uri = adb_uri(phone, adb_env, python="none")
        assert main(["run", "-o", str(tmp_path / "out"), "-d", uri, "-b", "onnxruntime",
                     *FAST]) == 0
    finally:
        adb_env.adb("disconnect", phone.serial)
        phone.stop()
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "skipped"
    assert "has no Python" in case["reason"] and "onnxruntime_perf_test=PATH" in case["reason"]


def test_bad_adb_uris_fail_before_anything_runs(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", str(tmp_path), "-d", "adb://phone?bogus=1"]) == 2
    assert "unknown option 'bogus'" in capsys.readouterr().err
    assert main(["run", "-o", str(tmp_path), "-d", "adb://user@phone"]) == 2
    assert main(["run", "-o", str(tmp_path), "-d", "adb://host:port"]) == 2
    assert "invalid port" in capsys.readouterr().err
