"""The OpenVINO backend with the real runtime: the embedded ONNX run as is next to ONNX
Runtime, a .pt exported to IR, its options (explicit precision read back, a device or
precision the runtime does not offer, unknown options) and the host-side IR reader."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.accuracy import FP16_TOLERANCE, FP32_TOLERANCE
from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.errors import CaseError, CaseSkipped
from edgebench.execution import _check_supported
from edgebench.pipeline import describe_onnx
from edgebench.plugins.backends.openvino.plugin import (
    BF16_TOLERANCE,
    OpenVINOBackend,
    describe_ir,
)
from edgebench.records import Artifact, DeviceInfo, RuntimeInfo

ov = pytest.importorskip("openvino")
FAST = ["--warmup", "1", "-n", "3", "--images", "20"]


def cpu_capabilities() -> list[str]:
    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def cases(out: Path) -> dict[str, dict[str, Any]]:
    (report,) = out.glob("*/report.json")
    return {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}


@pytest.fixture(scope="session")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The embedded model (320 px) on ONNX Runtime and OpenVINO, one thread, 20 images."""
    out = tmp_path_factory.mktemp("ov-side-by-side")
    assert main(["run", "-b", "onnxruntime,openvino", "--threads", "1", *FAST,
                 "-o", str(out)]) == 0
    return cases(out)


def test_embedded_onnx_runs_as_is_and_agrees_with_the_float_reference(
        side_by_side: dict[str, dict[str, Any]], embedded_onnx: Path) -> None:
    ort, case = side_by_side["onnxruntime"], side_by_side["openvino"]
    assert case["status"] == "ok", case["reason"]
    art = case["artifact"]
    assert art["format"] == "onnx" and Path(art["path"]) == embedded_onnx.resolve()
    assert art["input_shape"] == [1, 3, 320, 320]
    fid = case["accuracy"]["fidelity"]
    assert fid["reference"].startswith("onnxruntime ") and fid["within_tolerance"] is True
    assert fid["tolerance"]["box_max_abs_px"] == FP32_TOLERANCE.box_max_abs_px
    assert fid["detection_agreement"] == 1.0 and fid["reference_detections"] > 50
    assert case["accuracy"]["map50_95"] > 0.6
    assert abs(case["accuracy"]["map50_95"] - ort["accuracy"]["map50_95"]) <= 0.005
    rt = case["runtime"]
    assert rt["name"] == "openvino" and rt["version"] == ov.__version__.split("-")[0]
    assert rt["threads"] == 1 and rt["providers"] == ["CPU"]
    details = rt["details"]
    # f32 although OpenVINO's own CPU default is bf16 where the CPU has AVX512-BF16
    assert details["inference_precision"] == "f32"
    assert details["performance_hint"] == "latency" and details["num_streams"] == "1"
    assert details["inference_num_threads"] == "1"
    assert details["model_format"] == "ONNX (read directly)"


def test_bf16_is_used_and_reported_where_the_cpu_offers_it(tmp_path: Path,
                                                           embedded_onnx: Path) -> None:
    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 arithmetic for OpenVINO")
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    code, result = run_device_runner(
        OpenVINOBackend(), tmp_path, embedded_onnx, {"images": x}, threads=1, iterations=2,
        options={"inference_precision": "bf16"})
    assert code == 0, result
    assert result["runtime"]["details"]["inference_precision"] == "bf16"


def test_tolerance_follows_the_precision_really_used(embedded_onnx: Path) -> None:
    backend, artifact = OpenVINOBackend(), describe_onnx(embedded_onnx)

    def used(precision: str) -> RuntimeInfo:
        return RuntimeInfo("openvino", "x", 1, details={"inference_precision": precision})

    assert backend.tolerance(artifact, used("f32")) == FP32_TOLERANCE
    assert backend.tolerance(artifact, None) == FP32_TOLERANCE
    assert backend.tolerance(artifact, used("bf16")) == BF16_TOLERANCE
    assert backend.tolerance(artifact, used("f16")) == FP16_TOLERANCE


def test_a_precision_the_device_lacks_is_refused_not_replaced(tmp_path: Path,
                                                              embedded_onnx: Path) -> None:
    """OpenVINO's CPU plugin compiles f16 as bf16 on an AVX512-BF16 x86 CPU, silently."""
    if "FP16" in cpu_capabilities():
        pytest.skip("this CPU computes in f16")
    x = np.zeros((1, 3, 320, 320), np.float32)
    code, result = run_device_runner(
        OpenVINOBackend(), tmp_path, embedded_onnx, {"images": x}, iterations=1,
        options={"inference_precision": "f16"})
    assert code == 1
    message = result["error"]["message"]
    assert result["error"]["phase"] == "load" and "cannot compute in f16" in message
    assert "OPTIMIZATION_CAPABILITIES" in message and "use inference_precision=" in message


def test_an_unknown_device_lists_the_ones_openvino_offers(tmp_path: Path,
                                                          embedded_onnx: Path) -> None:
    x = np.zeros((1, 3, 320, 320), np.float32)
    code, result = run_device_runner(OpenVINOBackend(), tmp_path, embedded_onnx,
                                     {"images": x}, iterations=1, options={"device": "TPU"})
    assert code == 1
    assert result["error"]["message"] == (
        f"OpenVINO has no device 'TPU' here; it offers "
        f"{', '.join(ov.Core().available_devices)} (the device option)")


def test_more_threads_than_cores_fails_rather_than_mislabelling(tmp_path: Path,
                                                                 embedded_onnx: Path) -> None:
    """OpenVINO compiles with at most the usable cores; 2-thread figures are not '3 threads'."""
    cores = len(os.sched_getaffinity(0))
    x = np.zeros((1, 3, 320, 320), np.float32)
    code, result = run_device_runner(OpenVINOBackend(), tmp_path, embedded_onnx,
                                     {"images": x}, iterations=1, threads=cores + 1)
    assert code == 1
    assert result["error"]["message"] == (
        f"OpenVINO compiled shapes-yolov8n.onnx with {cores} threads, not the {cores + 1} "
        f"asked for (it uses at most the {cores} cores this process may run on)")


@pytest.mark.parametrize(("option", "expected"), [
    ("openvino.precision=f32", "backend 'openvino' has no option 'precision'; its options "
                               "are device, inference_precision, num_streams, "
                               "performance_hint."),
    ("openvino.inference_precision=fp16", "backend 'openvino' option 'inference_precision' "
                                          "must be one of f32, bf16, f16; got 'fp16'."),
    ("openvino.num_streams=-1", "backend 'openvino' option 'num_streams' must be 0 (the "
                                "performance hint's choice) or more, got -1."),
])
def test_bad_options_are_refused_before_any_work(tmp_path: Path, option: str, expected: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-b", "openvino", "--backend-option", option, "-o",
                 str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"edgebench: error: {expected}"


def test_a_device_without_openvino_skips_with_the_install_command() -> None:
    info = DeviceInfo(uri="ssh://pi@board", hostname="board", arch="aarch64", os="Linux",
                      cpu_model=None, cores=4, ram_bytes=None, python="3.11", governor=None,
                      temperature_c=None, runtimes={"numpy": "2.2.0"})
    with pytest.raises(CaseSkipped) as skipped:
        _check_supported(OpenVINOBackend(), info, info.uri, "/usr/bin/python3")
    assert str(skipped.value) == (
        "openvino is not installed on ssh://pi@board; install it there with: "
        "/usr/bin/python3 -m pip install 'openvino>=2024.6'")
    armv7 = DeviceInfo(**{**info.__dict__, "arch": "armv7l"})
    with pytest.raises(CaseSkipped, match="no wheels for 32-bit ARM"):
        _check_supported(OpenVINOBackend(), armv7, info.uri, "/usr/bin/python3")


def ir_of(onnx_path: Path, out: Path, *, fp16: bool) -> Artifact:
    """``onnx_path`` converted by OpenVINO to an IR directory in Ultralytics' layout."""
    out.mkdir()
    ov.save_model(ov.convert_model(str(onnx_path)), str(out / "model.xml"),
                  compress_to_fp16=fp16)
    return Artifact(path=out, format="openvino", sha256="0" * 64, size_bytes=1)


def test_ir_reader_gives_input_and_the_precision_of_the_weights(
        tmp_path: Path, make_onnx: Any) -> None:
    onnx_path = make_onnx("conv", size=64)
    fp32 = describe_ir(ir_of(onnx_path, tmp_path / "a_openvino_model", fp16=False))
    assert fp32.input_name == "images" and fp32.input_shape == (1, 3, 64, 64)
    assert fp32.imgsz == (64, 64) and fp32.precision == "fp32"
    fp16 = describe_ir(ir_of(onnx_path, tmp_path / "b_openvino_model", fp16=True))
    assert fp16.precision == "fp16"  # f16 constants -> Convert -> Convolution
    shutil.copy(tmp_path / "a_openvino_model" / "model.xml", tmp_path / "b_openvino_model" /
                "other.xml")
    with pytest.raises(CaseError, match=r"holds 2 \.xml files; it needs exactly one"):
        describe_ir(fp16)


def test_formats_it_cannot_make_are_skipped_with_what_to_pass(tmp_path: Path) -> None:
    tflite = Artifact(path=ASSETS / "shapes-yolov8n.tflite", format="tflite", sha256="0" * 64,
                      size_bytes=1)
    with pytest.raises(CaseSkipped, match=r"pass the \.pt or \.onnx it came from"):
        OpenVINOBackend().export(tflite, tmp_path, imgsz=None)


@pytest.mark.slow
@pytest.mark.export
def test_pt_is_exported_to_a_static_fp32_ir_at_640(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    pt = tmp_path / "shapes-yolov8n.pt"  # Ultralytics writes next to the weights
    shutil.copy(ASSETS / "shapes-yolov8n.pt", pt)
    assert main(["run", "-m", str(pt), "--imgsz", "640", "-b", "openvino", "--threads", "2",
                 "--warmup", "1", "-n", "3", "--images", "8", "-o", str(tmp_path / "o")]) == 0
    case = cases(tmp_path / "o")["openvino"]
    assert case["status"] == "ok", case["reason"]
    art = case["artifact"]
    ir = Path(art["path"])
    assert art["format"] == "openvino" and ir.name == "source_openvino_model"
    assert sorted(p.name for p in ir.iterdir()) == ["metadata.yaml", "source.bin",
                                                    "source.xml"]
    assert art["input_shape"] == [1, 3, 640, 640] and art["precision"] == "fp32"
    assert 'shape="1,3,640,640"' in (ir / "source.xml").read_text()  # static
    assert "quantize: 32" in (ir / "metadata.yaml").read_text()  # asked for fp32
    assert art["converter"].startswith("Ultralytics format='openvino'") and \
        f"openvino {ov.__version__.split('-')[0]}" in art["converter"]
    fid = case["accuracy"]["fidelity"]
    assert fid["reference"].startswith("PyTorch ") and fid["within_tolerance"] is True
    assert fid["detection_agreement"] == 1.0
    details = case["runtime"]["details"]
    assert details["model_format"] == "OpenVINO IR" and details["inference_precision"] == "f32"
    assert details["reshaped_to_input"] == "no (static)"
