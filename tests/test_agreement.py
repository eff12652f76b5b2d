"""The agreement check: every converted model is compared with the float reference on the
same images, and a conversion outside its backend's tolerance fails its case with the
figures. Also: what each backend does with sources it cannot convert, and bad model files."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from runner_utils import default_backends

from edgebench.accuracy import FP16_TOLERANCE, FP32_TOLERANCE, check_tolerance, tolerance_problems
from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.contracts import resolve_options
from edgebench.errors import UserError
from edgebench.plugins.backends.litert.plugin import LiteRTBackend
from edgebench.plugins.backends.mnn.plugin import WINOGRAD_TOLERANCE
from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
from edgebench.records import Fidelity

FAST = ["--warmup", "1", "-n", "3", "--images", "6"]


def report(out: Path) -> dict:  # type: ignore[type-arg]
    (path,) = out.glob("*/report.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def cases(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["case"]["backend"]: c for c in report(out)["cases"]}


def test_every_backend_agrees_with_the_reference_in_the_default_run(tmp_path: Path) -> None:
    assert main(["run", "-o", str(tmp_path), *FAST]) == 0
    found = cases(tmp_path)
    assert set(found) == default_backends()
    for name, case in found.items():
        fid = case["accuracy"]["fidelity"]
        assert case["status"] == "ok", (name, case["reason"])
        assert fid["reference"].startswith("onnxruntime ") and "optimisations off" in \
            fid["reference"]
        assert fid["within_tolerance"] is True
        if name == "mnn":  # MNN's default Winograd convolution: its own measured tolerance
            assert fid["tolerance"]["basis"] == WINOGRAD_TOLERANCE.basis
            assert fid["score_max_abs"] < 2e-3
            continue
        assert fid["tolerance"]["box_max_abs_px"] == FP32_TOLERANCE.box_max_abs_px
        # measured: ~1e-3 px and ~1e-6 (see FP32_TOLERANCE.basis)
        assert fid["detection_box_max_abs_px"] < 0.01, name
        assert fid["score_max_abs"] < 2e-5, name
        assert fid["detection_agreement"] == 1.0 and fid["reference_detections"] > 20
        assert case["accuracy"]["map50_95"] > 0.6
    assert found["litert"]["artifact"]["format"] == "tflite"
    assert found["ncnn"]["artifact"]["format"] == "ncnn"
    for name in ("litert", "ncnn"):  # the committed exports, with their provenance
        assert "committed, see shapes-yolov8n.json" in found[name]["artifact"]["converter"]


def test_a_box_normalisation_bug_fails_the_case_with_the_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A LiteRT model read as if its boxes were in pixels (they are divided by the input
    size): the run goes on, the case fails, the figures are in the reason."""
    monkeypatch.setattr(LiteRTBackend, "boxes_normalised", False)
    assert main(["run", "-o", str(tmp_path), *FAST, "-b", "litert"]) == 1
    case = cases(tmp_path)["litert"]
    assert case["status"] == "failed"
    assert case["reason"].startswith("the tflite model disagrees with the float reference "
                                     "beyond the litert tolerance: boxes of detections differ "
                                     "by up to ")
    assert "(tolerance 0.02)" in case["reason"] and "detections are matched" in case["reason"]
    assert case["accuracy"]["fidelity"]["within_tolerance"] is False
    assert case["latency"]["n"] == 3  # what was measured is kept


@pytest.mark.slow
@pytest.mark.export
def test_silent_fp16_weights_fail_the_fp32_tolerance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_onnx: Path) -> None:
    """pnnx writes fp16 weights unless told otherwise: a converter that did so silently is
    caught by the precision read from the graph (labelled fp16, never fp32, with a note)
    and judged by the fp16 tolerance; its outputs are outside the fp32 one."""
    from edgebench.pipeline import load_source
    from edgebench.plugins.backends.ncnn.pnnx import onnx_to_ncnn

    fp16 = onnx_to_ncnn(load_source(embedded_onnx), imgsz=None, fp16_weights=True)
    assert "fp16 weights" in (fp16.converter or "")
    silent = dataclasses.replace(fp16, converter="pnnx, default options")
    monkeypatch.setattr(NcnnBackend, "export", lambda self, source, workdir, imgsz: silent)
    assert main(["run", "-o", str(tmp_path / "silent"), *FAST, "-b", "ncnn"]) == 0
    case = cases(tmp_path / "silent")["ncnn"]
    assert case["case"]["id"].split("|")[1] == "fp16" and case["artifact"]["precision"] == "fp16"
    assert ("the ncnn model holds fp16 weights, its source shapes-yolov8n.onnx fp32 (pnnx, "
            "default options)") in case["notes"]
    fid = case["accuracy"]["fidelity"]
    assert fid["score_max_abs"] > FP32_TOLERANCE.score_max_abs
    assert fid["tolerance"]["score_max_abs"] == FP16_TOLERANCE.score_max_abs

    monkeypatch.setattr(NcnnBackend, "export", lambda self, source, workdir, imgsz: fp16)
    assert main(["run", "-o", str(tmp_path / "declared"), *FAST, "-b", "ncnn"]) == 0
    fid = cases(tmp_path / "declared")["ncnn"]["accuracy"]["fidelity"]
    assert fid["within_tolerance"] is True
    assert fid["tolerance"]["score_max_abs"] == FP16_TOLERANCE.score_max_abs


def test_tolerance_of_raw_outputs_is_relative() -> None:
    fid = Fidelity(reference="r", max_abs=0.1, mean_abs=0.01)
    ref = [np.array([100.0, -200.0])]
    assert tolerance_problems(fid, FP32_TOLERANCE, ref) == []  # 0.1 / 200 = 5e-4 <= 1e-3
    assert check_tolerance(fid, None, ref).within_tolerance is None


def test_raw_outputs_outside_tolerance() -> None:
    fid = Fidelity(reference="r", max_abs=5.0, mean_abs=1.0)
    (problem,) = tolerance_problems(fid, FP32_TOLERANCE, [np.array([10.0])])
    assert problem == "outputs differ by up to 5, 0.5 of their largest value (tolerance 0.001)"
    assert check_tolerance(fid, FP32_TOLERANCE, [np.array([10.0])]).within_tolerance is False


def test_onnx_source_cannot_become_tflite_here(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    assert main(["run", "-o", str(tmp_path), *FAST, "-m", str(model), "-b", "litert"]) == 0
    case = cases(tmp_path)["litert"]
    assert case["status"] == "skipped"
    assert case["reason"] == ("a .tflite cannot be made from an .onnx here: that needs onnx2tf "
                              "and TensorFlow, which edgebench does not install; pass the .pt "
                              "it came from (exported with litert-torch) or a .tflite")


def test_param_without_bin_fails_its_case_and_the_run_goes_on(tmp_path: Path) -> None:
    model = tmp_path / "lonely.param"
    shutil.copy(ASSETS / "shapes-yolov8n_ncnn_model" / "model.ncnn.param", model)
    code = main(["run", "-o", str(tmp_path / "out"), *FAST, "-m", str(model)])
    assert code == 1
    found = cases(tmp_path / "out")
    assert found["ncnn"]["status"] == "failed"
    assert found["ncnn"]["reason"] == ("lonely.param has no weights: lonely.bin is not next to "
                                       "it (ncnn needs both files)")
    assert found["onnxruntime"]["status"] == "skipped"
    assert "cannot make onnx from a ncnn model" in found["onnxruntime"]["reason"]
    assert found["litert"]["status"] == "skipped"


def test_garbage_tflite_fails_its_case(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 100)
    assert main(["run", "-o", str(tmp_path / "out"), *FAST, "-m", str(bad),
                 "-b", "litert"]) == 1
    case = cases(tmp_path / "out")["litert"]
    assert case["status"] == "failed"
    assert case["reason"] == "broken.tflite is not a valid .tflite model (no TFL3 identifier)"


def test_models_given_in_a_runtime_format_run_without_a_reference(tmp_path: Path) -> None:
    """The committed ncnn directory and .tflite as --model: benchmarked, mAP measured, and
    the report says why there is no agreement check."""
    code = main(["run", "-o", str(tmp_path), *FAST, "-m", str(ASSETS / "shapes-yolov8n.tflite"),
                 "-m", str(ASSETS / "shapes-yolov8n_ncnn_model"), "-b", "litert,ncnn"])
    assert code == 0
    by = {(c["case"]["backend"], c["artifact"]["format"] if c["artifact"] else None): c
          for c in report(tmp_path)["cases"]}
    for key in (("litert", "tflite"), ("ncnn", "ncnn")):
        case = by[key]
        assert case["status"] == "ok" and case["artifact"]["input_shape"] == [1, 3, 320, 320]
        assert case["accuracy"]["map50_95"] > 0.6
        assert case["accuracy"]["reason"].startswith(
            "no agreement check: no float reference: the model was given only as ")
    skipped = [c for c in report(tmp_path)["cases"] if c["status"] == "skipped"]
    assert len(skipped) == 2  # litert cannot run ncnn, nor ncnn tflite


def test_backend_options_are_checked() -> None:
    ask = SimpleNamespace
    assert resolve_options(NcnnBackend(), ask(backend_options={}))["fp16_storage"] is False
    got = resolve_options(NcnnBackend(), ask(backend_options={
        "ncnn": {"fp16_storage": "on", "vulkan": "off"}}))
    assert got == {"fp16_storage": True, "fp16_arithmetic": False, "packing": True,
                   "vulkan": "off", "wait_policy": "passive"}
    with pytest.raises(UserError, match="backend 'ncnn' has no option 'fp32'; its options "
                                        "are fp16_arithmetic, fp16_storage, packing, vulkan, "
                                        "wait_policy"):
        resolve_options(NcnnBackend(), ask(backend_options={"ncnn": {"fp32": True}}))
    with pytest.raises(UserError, match="option 'vulkan' must be one of auto, on, off"):
        resolve_options(NcnnBackend(), ask(backend_options={"ncnn": {"vulkan": "gpu"}}))
    with pytest.raises(UserError, match="option 'xnnpack' must be a bool"):
        resolve_options(LiteRTBackend(), ask(backend_options={"litert": {"xnnpack": 3}}))
