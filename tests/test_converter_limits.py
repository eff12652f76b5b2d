"""Converters run under a memory and time limit derived from the machine (issue 14, item 4).

Real converters over tiny limits set through the environment overrides: pnnx inside a whole
``edgebench run`` (its ncnn case fails with the limit's sentence, the ONNX Runtime case is
still measured), the Ultralytics export worker over memory and over time, and a process tree
whose memory is in a grandchild. Each asserts the sentence word for word and that no process
of the converter is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgebench.errors import CaseError
from edgebench.limits import (
    MEMORY_ENV,
    TIME_ENV,
    default_memory_limit,
    read_meminfo,
    run_limited,
    tool_limits,
)

ASSETS = Path(__file__).resolve().parents[1] / "harness" / "assets"


def proc_meminfo_kib(field: str) -> int:
    """One /proc/meminfo field in KiB, read here with a regex (the code under test has its
    own reader)."""
    match = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def machine_gib() -> str:
    """This machine's RAM in GiB as the messages format it (3 significant digits)."""
    return f"{proc_meminfo_kib('MemTotal') / 2**20:.3g}"


def memory_sentence(what: str, limit: str) -> str:
    return (f"{what} needed more than {limit} GiB; set {MEMORY_ENV} to allow more (this machine "
            f"has {machine_gib()} GiB of RAM), or use a smaller model or --imgsz")


def processes_mentioning(token: str) -> list[str]:
    """Command lines of living (not zombie) processes whose argv contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if token in cmdline and state != "Z":
            found.append(cmdline)
    return found


def children_mentioning(parent: int, token: str) -> list[int]:
    """Living children of process ``parent`` whose argv contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and token in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def assert_none_left(token: str) -> None:
    for _ in range(50):  # SIGKILL is asynchronous: give the kernel a moment
        if not processes_mentioning(token):
            return
        time.sleep(0.1)
    assert processes_mentioning(token) == []


# -- the default limit -------------------------------------------------------------------


def test_default_memory_limit_from_proc_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684096 kB\nMemFree:        17433600 kB\n"
                       "MemAvailable:    8000000 kB\nBuffers:          123456 kB\n"
                       "HugePages_Total:       0\n")
    info = read_meminfo(meminfo)
    assert info["MemTotal"] == 24684096 * 1024 and info["HugePages_Total"] == 0
    # min(half of 23.5 GiB, 3/4 of 7.6 GiB available): the available RAM decides here
    assert default_memory_limit(info) == 8000000 * 1024 * 3 // 4
    info["MemAvailable"] = 20000000 * 1024  # mostly free: half the machine decides
    assert default_memory_limit(info) == 24684096 * 1024 // 2
    del info["MemAvailable"]  # kernels before 3.14
    assert default_memory_limit(info) == 24684096 * 1024 // 2
    assert default_memory_limit({}) is None

    # this machine's /proc/meminfo
    real = read_meminfo()
    assert real["MemTotal"] == proc_meminfo_kib("MemTotal") * 1024
    limits = tool_limits(1800, environ={}, meminfo=real)
    assert limits.memory_bytes == min(real["MemTotal"] // 2, real["MemAvailable"] * 3 // 4)
    assert limits.time_s == 1800


def test_overrides_and_bad_overrides() -> None:
    limits = tool_limits(1800, environ={MEMORY_ENV: "1.5", TIME_ENV: "60"})
    assert limits.memory_bytes == 3 << 29 and limits.time_s == 60
    assert limits.memory_source == f"{MEMORY_ENV}=1.5"
    for bad in ("0", "-2", "lots", "inf"):
        with pytest.raises(CaseError) as err:
            tool_limits(1800, environ={MEMORY_ENV: bad})
        assert str(err.value) == (f"{MEMORY_ENV}={bad!r} is not a positive number; give a "
                                  "size in GiB, e.g. 8, or unset it for the default")


# -- the whole process tree counts ---------------------------------------------------------


def test_memory_of_a_grandchild_counts_and_the_tree_is_killed(tmp_path: Path) -> None:
    marker = f"edgebench-limit-probe-{os.getpid()}"
    grandchild = ("import time; b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096]); "
                  f"time.sleep(60)  # {marker}")
    child = ("import subprocess, sys, time; "
             f"subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(CaseError) as err:
        run_limited([sys.executable, "-c", child], "probing the limit", time_s=30,
                    limits=tool_limits(30, environ={MEMORY_ENV: "0.25"}))
    assert str(err.value) == memory_sentence("probing the limit", "0.25")
    assert time.monotonic() - started < 20
    assert_none_left(marker)


# -- real converters ------------------------------------------------------------------------


@pytest.fixture()
def pt_copy(tmp_path: Path) -> Path:
    """The embedded .pt copied to a private dir (Ultralytics writes next to its input)."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed")
    dst = tmp_path / f"limitprobe{os.getpid()}.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", dst)
    return dst


@pytest.mark.export
def test_ultralytics_export_over_memory_limit(pt_copy: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.pipeline import export_with_ultralytics, load_source

    monkeypatch.setenv(MEMORY_ENV, "0.25")  # importing torch alone takes more
    with pytest.raises(CaseError) as err:
        export_with_ultralytics(load_source(pt_copy), "onnx", pt_copy.parent, imgsz=320)
    assert str(err.value) == memory_sentence(f"converting {pt_copy.name} to onnx with "
                                             "Ultralytics", "0.25")
    assert_none_left(pt_copy.name)
    assert not pt_copy.with_suffix(".onnx").exists()


@pytest.mark.export
def test_ultralytics_export_over_time_limit(pt_copy: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.pipeline import export_with_ultralytics, load_source

    monkeypatch.setenv(TIME_ENV, "1")
    with pytest.raises(CaseError) as err:
        export_with_ultralytics(load_source(pt_copy), "onnx", pt_copy.parent, imgsz=320)
    assert str(err.value) == (f"converting {pt_copy.name} to onnx with Ultralytics took longer "
                              f"than 1 s; set {TIME_ENV} to allow more time, or use a smaller "
                              "model or --imgsz")
    assert_none_left(pt_copy.name)


def test_pnnx_over_memory_limit_fails_its_case_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    from edgebench.cli import main
    from edgebench.plugins.backends.ncnn.pnnx import pnnx_binary

    if pnnx_binary() is None:
        pytest.skip("pnnx is not installed")
    # the embedded ONNX with one metadata entry more: a new content hash, so no committed
    # ncnn export matches and pnnx converts it (it peaks at ~170 MiB on this model)
    model = onnx.load(str(ASSETS / "shapes-yolov8n.onnx"))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "edgebench_test": "limits"})
    variant = tmp_path / f"limitvariant{os.getpid()}.onnx"
    onnx.save(model, str(variant))
    monkeypatch.setenv(MEMORY_ENV, "0.0625")  # 64 MiB
    out = tmp_path / "out"
    code = main(["run", "-o", str(out), "-m", str(variant), "-b", "onnxruntime,ncnn",
                 "--warmup", "1", "-n", "3", "--images", "2"])
    assert code == 1  # one case failed
    (report,) = out.glob("*/report.json")
    cases = {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}
    assert cases["onnxruntime"]["status"] == "ok"
    assert cases["onnxruntime"]["latency"]["n"] >= 3
    assert cases["ncnn"]["status"] == "failed"
    assert cases["ncnn"]["reason"] == memory_sentence(
        f"converting {variant.name} to ncnn with pnnx", "0.0625")
    assert_none_left(variant.name)


def test_litert_quantizer_over_memory_limit(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """ai-edge-quantizer holds the whole calibration set in memory, so it runs in a limited
    child (it peaks at ~380 MiB for 16 images at 320 px on the embedded model)."""
    pytest.importorskip("ai_edge_quantizer")
    import yaml

    from edgebench.datasets import embedded_val_yaml
    from edgebench.plugins.compression.quantize_litert import quantize_in_subprocess

    data = yaml.safe_load(Path(embedded_val_yaml()).read_text())
    images = sorted((Path(data["path"]) / data["val"]).iterdir())[:16]
    src = tmp_path / f"limitquant{os.getpid()}.tflite"
    shutil.copyfile(ASSETS / "shapes-yolov8n.tflite", src)
    monkeypatch.setenv(MEMORY_ENV, "0.25")
    with pytest.raises(CaseError) as err:
        quantize_in_subprocess(src, tmp_path / "int8.tflite", "int8", images, (320, 320),
                               keep_head_float=True, progress=False)
    assert str(err.value) == memory_sentence(
        f"quantizing {src.name} to int8 with ai-edge-quantizer", "0.25")
    assert not (tmp_path / "int8.tflite").exists()
    assert_none_left(src.name)


@pytest.mark.export
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_conversion_kills_the_converter(
        pt_copy: Path, tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """The converter (the run's export worker, ``edgebench.export_worker``) runs in its own
    session (the terminal's Ctrl-C does not reach it), so edgebench itself must kill it when
    it is interrupted or terminated."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebench.cli", "run", "-b", "onnxruntime", "-m", str(pt_copy),
         "--no-accuracy", "-n", "3", "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEBENCH_CACHE": str(tmp_path / "cache")})  # an export runs
    deadline = time.monotonic() + 60
    while not (workers := children_mentioning(proc.pid, "edgebench.export_worker")) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers, "the export worker never started"
    time.sleep(1.0)  # into its imports or the export itself
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    for _ in range(50):  # SIGKILL is asynchronous: give the kernel a moment
        if not any(alive(pid) for pid in workers):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the export worker {workers} was left running")
    assert_none_left(pt_copy.name)
