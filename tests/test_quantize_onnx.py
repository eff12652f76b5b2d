"""ONNX Runtime int8 (static QDQ) and dynamic quantization of the embedded YOLOv8n,
calibrated on real train images, scored with the project's own decoding and mAP."""

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

from edgebench.compression import CompressionPipeline, Step, apply_steps, check_steps
from edgebench.errors import UserError
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.plugins.compression import host_eval
from edgebench.plugins.compression.onnx_quant import head_tail_nodes, named_model
from edgebench.plugins.compression.quantize_onnx import OnnxDynamic, OnnxInt8

pytest.importorskip("onnxruntime")
__all__ = ["onnx_source", "small_yaml", "val_set"]  # fixtures

TOLERANCE_PTS = 2.0
"""int8 with the head tail float, 16 calibration images, 20 val images: measured -0.4 pt on
the full val split with 100 calibration images; 2 points leaves room for the small sets."""


@pytest.fixture(scope="module")
def fp32_map(onnx_source, val_set) -> float:  # type: ignore[no-untyped-def]
    return host_eval.onnx_map(onnx_source.path, val_set)


def test_head_tail_is_the_dfl_and_the_decoding(onnx_source) -> None:  # type: ignore[no-untyped-def]
    graph = named_model(onnx_source.path)
    tail = set(head_tail_nodes(graph))
    ops = {n.name: n.op_type for n in graph.graph.node}
    assert "/model.22/dfl/Softmax" in tail and "/model.22/dfl/conv/Conv" in tail
    assert "/model.22/Concat_3" in tail  # the output: boxes and scores in one tensor
    assert all(ops[n] != "Conv" or "/dfl/" in n for n in tail)  # no feature conv kept float
    assert not any(n.startswith("/model.21/") for n in tail)


def test_int8_keeps_map_and_is_a_qdq_model(tmp_path, onnx_source, small_yaml, val_set,
                                           fp32_map) -> None:  # type: ignore[no-untyped-def]
    import onnx

    art = apply(OnnxInt8, onnx_source, context(onnx_source, small_yaml, tmp_path),
                calibration=16)
    ops = {n.op_type for n in onnx.load(art.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert art.format == "onnx" and art.size_bytes < onnx_source.size_bytes / 2
    got = host_eval.onnx_map(art.path, val_set)
    assert fp32_map - got < TOLERANCE_PTS / 100, (fp32_map, got)
    notes = OnnxInt8().notes(art)
    assert any("calibrated on 16 train images" in n for n in notes)
    assert any("24 nodes kept float" in n for n in notes)


def test_naive_int8_loses_the_scores(tmp_path, onnx_source, small_yaml, val_set) -> None:  # type: ignore[no-untyped-def]
    """Boxes (0..320 px) and scores (0..1) share the output tensor: one int8 scale rounds
    every score to zero. This is why the head tail stays float by default."""
    art = apply(OnnxInt8, onnx_source, context(onnx_source, small_yaml, tmp_path),
                calibration=16, keep_head_float=False)
    assert host_eval.onnx_map(art.path, val_set) < 0.05


@pytest.mark.slow
def test_dynamic_and_per_channel(tmp_path, onnx_source, small_yaml, val_set, fp32_map) -> None:  # type: ignore[no-untyped-def]
    ctx = context(onnx_source, small_yaml, tmp_path)
    dyn = apply(OnnxDynamic, onnx_source, ctx)
    assert fp32_map - host_eval.onnx_map(dyn.path, val_set) < TOLERANCE_PTS / 100
    pc = apply(OnnxInt8, onnx_source, ctx, calibration=16, per_channel=True)
    assert fp32_map - host_eval.onnx_map(pc.path, val_set) < TOLERANCE_PTS / 100
    assert "per channel" in (pc.converter or "")


@pytest.mark.parametrize(("count", "message"), [
    (0, "calibration=0 is too few"),
    (7, "calibration=7 is too few"),
    (N_TRAIN + 1, f"the train split has {N_TRAIN}"),
])
def test_bad_calibration_counts_are_refused(tmp_path, onnx_source, small_yaml, count,
                                            message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match=message):
        OnnxInt8().check({**OnnxInt8.option_defaults, "calibration": count},
                         context(onnx_source, small_yaml, tmp_path))


def test_no_train_split_is_refused(tmp_path, onnx_source, small_yaml) -> None:  # type: ignore[no-untyped-def]
    ctx = context(onnx_source, no_train_yaml(tmp_path, small_yaml), tmp_path)
    with pytest.raises(UserError, match="no 'train' split"):
        OnnxInt8().check(dict(OnnxInt8.option_defaults), ctx)


def test_through_the_registry(tmp_path, onnx_source, small_yaml) -> None:  # type: ignore[no-untyped-def]
    """The entry point registers it; the pipeline machinery checks and applies it, and the
    result is cached (the second apply makes nothing new)."""
    registry = collect_registry(make_plugin_manager())
    ctx = context(onnx_source, small_yaml, tmp_path)
    pipeline = CompressionPipeline((Step("int8", (("calibration", 8),)),))
    check_steps([pipeline], registry, ctx)
    first, notes = apply_steps(onnx_source, pipeline.steps, "onnx", registry, ctx)
    again, _ = apply_steps(onnx_source, pipeline.steps, "onnx", registry, ctx)
    assert first.pipeline == ("int8:calibration=8",) and first.sha256 == again.sha256
    assert first.path == again.path
    assert "int8:calibration=8: calibrated on 8 train images (not the val images of the " \
        "mAP)" in notes


def test_an_already_quantized_model_is_refused(tmp_path, onnx_source, small_yaml) -> None:  # type: ignore[no-untyped-def]
    from edgebench.errors import CaseError

    ctx = context(onnx_source, small_yaml, tmp_path)
    dyn = apply(OnnxDynamic, onnx_source, ctx)
    with pytest.raises(CaseError, match=r"already quantized .*DynamicQuantizeLinear"):
        apply(OnnxInt8, dyn, ctx, calibration=8)
