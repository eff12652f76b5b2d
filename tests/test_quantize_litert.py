"""LiteRT quantization of the embedded model's committed fp32 ``.tflite``: int8 (w8a8),
dynamic (w8a32), w8a16 and fp16 weights, each loaded by LiteRT and scored on val images."""

from __future__ import annotations

import pytest
from quantize_fixtures import (
    N_TRAIN,
    apply,
    context,
    no_train_yaml,
    onnx_source,
    small_yaml,
    val_set,
)

from edgebench.errors import UserError
from edgebench.plugins.backends.litert.plugin import LiteRTBackend
from edgebench.plugins.compression import host_eval
from edgebench.plugins.compression.quantize_litert import (
    LiteRTDynamic,
    LiteRTFp16,
    LiteRTInt8,
    LiteRTW8A16,
)
from edgebench.tflite_info import tflite_precision

pytest.importorskip("ai_edge_litert")
pytest.importorskip("ai_edge_quantizer")
__all__ = ["onnx_source", "small_yaml", "val_set"]  # fixtures

# Measured on the full val split (100 images, 100 calibration images): fp32 0.821, fp16
# +0.0, w8a32 -0.6, w8a16 -0.5, int8 with the head tail float -0.4, int8 with the head
# quantized too (Ultralytics' recipe as is) -5.9 points. Tolerances for 20 val images and
# 16 calibration images, with room for the small sets:
TOLERANCE_PTS = {"fp16": 0.5, "w8a32": 2.0, "w8a16": 2.0, "int8": 2.0, "int8-naive": 12.0}
pytestmark = pytest.mark.export  # ai-edge-quantizer


@pytest.fixture(scope="module")
def fp32(onnx_source, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The committed fp32 export, as the LiteRT backend hands it to a FORMAT step."""
    return LiteRTBackend().export(onnx_source, tmp_path_factory.mktemp("litert"), imgsz=320)


@pytest.fixture(scope="module")
def fp32_map(fp32, val_set) -> float:  # type: ignore[no-untyped-def]
    return host_eval.tflite_map(host_eval.TfliteModel(fp32.path), val_set)


@pytest.mark.parametrize(("cls", "scheme", "options"), [
    (LiteRTInt8, "int8", {"calibration": 16}),
    (LiteRTInt8, "int8-naive", {"calibration": 16, "keep_head_float": False}),
    (LiteRTDynamic, "w8a32", {}),
    (LiteRTFp16, "fp16", {}),
])
def test_quantized_tflite_loads_and_keeps_map(tmp_path, onnx_source, small_yaml, val_set, fp32,
                                              fp32_map, cls, scheme, options) -> None:  # type: ignore[no-untyped-def]
    art = apply(cls, fp32, context(onnx_source, small_yaml, tmp_path), **options)
    assert art.format == "tflite" and art.input_shape == (1, 3, 320, 320)
    if scheme in ("fp16", "int8-naive"):  # read from the graph, never "fp32"
        assert tflite_precision(art.path) == scheme.removesuffix("-naive")
    assert art.size_bytes < fp32.size_bytes * (0.6 if scheme == "fp16" else 0.35)
    got = host_eval.tflite_map(host_eval.TfliteModel(art.path), val_set)
    assert fp32_map - got < TOLERANCE_PTS[scheme] / 100, (scheme, fp32_map, got)
    notes = cls().notes(art)
    if scheme == "int8":
        assert any("calibrated on 16 train images" in n for n in notes)
        assert any("31 nodes kept float" in n for n in notes)  # the head tail and DFL
    if scheme == "int8-naive":
        assert any("0 nodes kept float" in n for n in notes)


@pytest.mark.slow
def test_w8a16_runs_on_reference_kernels(tmp_path, onnx_source, small_yaml, val_set, fp32,
                                         fp32_map) -> None:  # type: ignore[no-untyped-def]
    """int16 activations have no XNNPACK kernels: right, but ~1 s per 320 px image here."""
    art = apply(LiteRTW8A16, fp32, context(onnx_source, small_yaml, tmp_path), calibration=8)
    got = host_eval.tflite_map(host_eval.TfliteModel(art.path), val_set)
    assert fp32_map - got < TOLERANCE_PTS["w8a16"] / 100, (fp32_map, got)


def test_calibration_is_checked(tmp_path, onnx_source, small_yaml) -> None:  # type: ignore[no-untyped-def]
    ctx = context(onnx_source, small_yaml, tmp_path)
    for cls in (LiteRTInt8, LiteRTW8A16):
        with pytest.raises(UserError, match="calibration=0 is too few"):
            cls().check({"calibration": 0}, ctx)
        with pytest.raises(UserError, match=f"the train split has {N_TRAIN}"):
            cls().check({"calibration": N_TRAIN + 1}, ctx)
    with pytest.raises(UserError, match="no 'train' split"):
        LiteRTInt8().check({"calibration": 16},
                           context(onnx_source, no_train_yaml(tmp_path, small_yaml), tmp_path))
    LiteRTDynamic().check({}, context(onnx_source, no_train_yaml(tmp_path, small_yaml),
                                      tmp_path))  # needs no data
