"""ncnn precision steps: fp16 (weights from pnnx, fp16 flags carried to the runner by the
model) and int8 (registered, unavailable here, with the reason)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quantize_fixtures import context, onnx_source, small_yaml, val_set
from runner_utils import run_device_runner

from edgebench.compression import Step, compressor_for
from edgebench.errors import CaseSkipped
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
from edgebench.plugins.compression import host_eval
from edgebench.plugins.compression.quantize_ncnn import NcnnFp16, NcnnInt8
from edgebench.precision import artifact_precision

pytest.importorskip("ncnn")
__all__ = ["onnx_source", "small_yaml", "val_set"]  # fixtures


def outputs_of(tmp_path: Path, model: Path, val_set) -> tuple[dict, list]:  # type: ignore[no-untyped-def, type-arg]
    batch = tmp_path / "batch.npz"
    np.savez(batch, **{str(i): t for i, t in enumerate(val_set.tensors)})  # type: ignore[arg-type]
    code, result = run_device_runner(NcnnBackend(), tmp_path, model, {"in0": val_set.tensors[0]},
                                     threads=1, accuracy={"inputs": str(batch),
                                                          "out": str(tmp_path / "out.npz")})
    assert code == 0, result
    with np.load(tmp_path / "out.npz") as out:
        return result, [out[f"{i}_0"] for i in range(len(val_set.tensors))]


@pytest.mark.export
def test_fp16_halves_the_weights_and_turns_fp16_on_in_the_runner(
        tmp_path, onnx_source, small_yaml, val_set) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pnnx")
    ctx = context(onnx_source, small_yaml, tmp_path)
    fp32 = NcnnBackend().export(onnx_source, tmp_path, imgsz=320)
    art = NcnnFp16().apply(fp32, dict(NcnnFp16.option_defaults), ctx)
    folder = art.path
    declared = json.loads((folder / "edgebench.json").read_text())
    assert declared == {"input_shape": [1, 3, 320, 320], "fp16_storage": True,
                        "fp16_arithmetic": True}
    assert art.size_bytes < fp32.size_bytes * 0.6  # fp16 weights
    assert fp32.precision == "fp32" and artifact_precision(folder, "ncnn") == "fp16"
    result, outputs = outputs_of(tmp_path, folder, val_set)
    details = result["runtime"]["details"]
    assert details["fp16_storage"] == "on" and details["fp16_arithmetic"] == "on"
    fp32_map = host_eval.onnx_map(onnx_source.path, val_set)
    got = host_eval.map_of_outputs(outputs, val_set, host_eval.AccuracySettings(),
                                   boxes_normalised=False)
    assert abs(fp32_map - got) < 0.005, (fp32_map, got)  # measured: +0.1 pt on 100 images
    assert any("fp16 (pnnx fp16=1)" in n for n in NcnnFp16().notes(art))


def test_int8_is_registered_but_unavailable_with_the_reason() -> None:
    registry = collect_registry(make_plugin_manager())
    assert "ncnn2table" in (NcnnInt8.host_unavailable_reason() or "")
    with pytest.raises(CaseSkipped, match="int8 for ncnn is unavailable: .*ncnn2table "
                                          r"\(calibration table\) and ncnn2int8"):
        compressor_for(Step("int8"), "ncnn", registry)
    assert compressor_for(Step("int8"), "onnx", registry).__name__ == "OnnxInt8"
