"""Fast checks of the model I/O pieces: --imgsz parsing and refusals, and the precision read
from the graph (ONNX Runtime's own float16 converter and quantizer as the makers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.input_size import declared_hw, input_hw, parse_imgsz
from edgebench.precision import artifact_precision
from edgebench.precision_label import label_precision


@pytest.mark.parametrize("text,expected", [
    ("320", 320), ("256,320", (256, 320)), ("256x320", (256, 320)), ([256, 320], (256, 320)),
    ("320,320", 320), (640, 640)])
def test_imgsz_is_one_side_or_height_width(text: object, expected: object) -> None:
    assert parse_imgsz(text) == expected


@pytest.mark.parametrize("text", ["250,320", "16", "256,320,3", "w,h", "", "0", "-320"])
def test_bad_imgsz_flag_is_refused_in_one_sentence(text: str, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    assert main(["run", "--imgsz", text, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("edgebench: error: --imgsz must be a size >= 32 that is a multiple of 32 "
                   f"(the model's largest stride), as N or H,W; got {text!r}.")


def test_bad_imgsz_in_matrix_file_is_refused_in_one_sentence(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text("[run]\nimgsz = [256, 300]\n")
    assert main(["run", "-c", str(matrix), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"edgebench: error: {matrix}:2: [run] imgsz must be a size >= 32 that is a "
                   "multiple of 32 (the model's largest stride), as N or H,W (e.g. 320 or "
                   "[256, 320]), got [256, 300].")


def test_symbolic_dims_come_from_imgsz_then_the_model() -> None:
    assert input_hw((-1, 3, -1, -1), (256, 320), (320, 320)) == (256, 320)
    assert input_hw((-1, 3, -1, -1), None, (320, 320)) == (320, 320)
    assert input_hw((1, 3, 256, 320), 640, None) == (256, 320)  # static dims win
    assert input_hw(None, None, None) == (640, 640)  # Ultralytics' default
    assert declared_hw("[256, 320]") == (256, 320) and declared_hw(320) == (320, 320)


def test_committed_exports_are_fp32() -> None:
    assert artifact_precision(ASSETS / "shapes-yolov8n.onnx", "onnx") == "fp32"
    assert artifact_precision(ASSETS / "shapes-yolov8n.tflite", "tflite") == "fp32"
    assert artifact_precision(ASSETS / "shapes-yolov8n_ncnn_model", "ncnn") == "fp32"


def test_precision_of_onnx_runtimes_own_conversions(make_onnx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ORT's float16 converter (with and without fp32 I/O) and its int8 quantizer."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import float16

    model = make_onnx("conv", size=64)
    for keep_io in (True, False):
        out = tmp_path / f"fp16-{keep_io}.onnx"
        onnx.save(float16.convert_float_to_float16(onnx.load(str(model)),
                                                   keep_io_types=keep_io), str(out))
        assert artifact_precision(out, "onnx") == "fp16"
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(model), str(int8), weight_type=QuantType.QInt8)
    assert artifact_precision(int8, "onnx") == "int8"


def test_labels() -> None:
    assert label_precision({"fp32"}, {"fp16"}) == "mixed"
    assert label_precision({"fp16"}, {"fp32"}) == "fp16"
    assert label_precision({"fp16", "int8"}) == "mixed"
    assert label_precision(set()) is None


def _dynamic_conv(path: Path, metadata: dict[str, str]) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, "h", "w"])
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    model = helper.make_model(helper.make_graph([helper.make_node("Conv", ["images", "w"],
                                                                  ["y"])], "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("metadata,flags,fed,note", [
    ({}, [], [1, 3, 640, 640], True),
    ({}, ["--imgsz", "64,96"], [1, 3, 64, 96], False),
    ({"imgsz": "[96, 64]"}, [], [1, 3, 96, 64], False)])
def test_symbolic_size_comes_from_imgsz_then_metadata_else_640_with_a_note(
        metadata: dict[str, str], flags: list[str], fed: list[int], note: bool,
        tmp_path: Path) -> None:
    import json

    model = _dynamic_conv(tmp_path / "dyn.onnx", metadata)
    assert main(["run", "-m", str(model), "-b", "onnxruntime", "--no-accuracy", "-n", "2",
                 "--warmup", "0", "--images", "1", "-o", str(tmp_path / "out"), *flags]) == 0
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["status"] == "ok"
    expected = ("input size 640x640 is Ultralytics' default: the model declares no size; "
                "pass the size it was trained at with --imgsz")
    assert (expected in case["notes"]) is note
    # the inputs the run letterboxed, cached as tensors/<dataset>-<H>x<W>
    tensors = Path(os.environ["EDGEBENCH_CACHE"]) / "tensors"
    assert any(d.name.endswith(f"-{fed[2]}x{fed[3]}") for d in tensors.iterdir())
