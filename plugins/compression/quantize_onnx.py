"""ONNX int8 with ONNX Runtime's quantization tools: static QDQ (``int8``) and dynamic
weights-only (``dynamic``).

``int8`` calibrates activation ranges on real train images (never the val images mAP is
measured on) and writes a QDQ model. By default the detection head's tail stays in float:
a YOLOv8 head concatenates boxes (0..imgsz pixels) and class scores (0..1) into one output
tensor, so one int8 scale for both rounds every score to zero (naive QDQ: mAP 0.0). What
stays float is found from the graph, not by name: every non-Conv node after the last
feature convolutions (reshapes, concatenations, sigmoid, box decoding) and the DFL
(the softmax and its fixed convolution).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.batching import static_batch
from edgebench.contracts import CompressionContext, Compressor
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export, exported_artifact
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, quantization_notes
from .calibration import check_calibration, images_fingerprint, input_hw
from .onnx_quant import (
    ACTIVATION_TYPES,
    calibrate,
    head_tail_nodes,
    named_model,
    ort_unavailable,
    ort_version,
    quantize_qdq,
    quiet,
    require_onnx,
)

# -- the steps ----------------------------------------------------------------------------


class OnnxInt8(Compressor):
    """Static int8 (QDQ) with ONNX Runtime, calibrated on train images; head tail float."""

    name: ClassVar[str] = "int8"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = ("static int8 QDQ (ONNX Runtime), calibrated on train images; "
                              "the detection head's tail and DFL kept float")
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "calibration": 100, "per_channel": False, "keep_head_float": True,
        "activations": "uint8"}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"activations": ACTIVATION_TYPES}
    primary_option: ClassVar[str | None] = "calibration"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return ort_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        check_calibration(self.name, int(options["calibration"]), context)

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        require_onnx(self.name, model)
        images = check_calibration(self.name, int(options["calibration"]), context)
        hw = input_hw(model.input_shape, context.imgsz)
        key: dict[str, object] = {**options, "images": images_fingerprint(images),
                                  "ort": ort_version(), "hw": list(hw)}

        def produce(out: Path) -> None:
            src = model.path
            graph = named_model(src)
            kept = head_tail_nodes(graph) if options["keep_head_float"] else []
            cache = out / "calibration.json"
            calibrate(src, model.input_name or graph.graph.input[0].name, images, hw, cache,
                      progress=context.progress, batch=static_batch(model.input_shape))
            quantize_qdq(graph, out / "model.onnx", cache, exclude=kept,
                         per_channel=bool(options["per_channel"]),
                         activations=str(options["activations"]))
            (out / "artifact.json").write_text(json.dumps({
                "file": "model.onnx", "format": "onnx",
                "converter": f"onnxruntime {ort_version()} quantize_static (QDQ, "
                             f"{options['activations']} activations, int8 weights"
                             f"{', per channel' if options['per_channel'] else ''})",
                "calibration_images": len(images), "calibration_split": "train",
                "kept_float": kept}))

        path, meta = cached_export(model, "onnx-int8", key, produce)
        return exported_artifact(path, "onnx", model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return quantization_notes(artifact_meta(artifact.path))


class OnnxDynamic(Compressor):
    """Dynamic quantization with ONNX Runtime: int8 weights, activations quantized on the
    fly per inference; no calibration."""

    name: ClassVar[str] = "dynamic"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = ("dynamic int8 (ONNX Runtime): int8 weights, activation ranges "
                              "computed per inference, no calibration (ConvInteger: measured "
                              "5x slower than fp32 on x86)")
    option_defaults: ClassVar[Mapping[str, Any]] = {"per_channel": False}

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return ort_unavailable()

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        require_onnx(self.name, model)
        key: dict[str, object] = {**options, "ort": ort_version()}

        def produce(out: Path) -> None:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            src = out / "source.onnx"
            shutil.copyfile(model.path, src)
            with quiet():
                quantize_dynamic(str(src), str(out / "model.onnx"),
                                 per_channel=bool(options["per_channel"]),
                                 weight_type=QuantType.QInt8)
            src.unlink()
            (out / "artifact.json").write_text(json.dumps({
                "file": "model.onnx", "format": "onnx",
                "converter": f"onnxruntime {ort_version()} quantize_dynamic (int8 weights"
                             f"{', per channel' if options['per_channel'] else ''})"}))

        path, meta = cached_export(model, "onnx-dynamic", key, produce)
        return exported_artifact(path, "onnx", model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return quantization_notes(artifact_meta(artifact.path))


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(OnnxInt8)
    register(OnnxDynamic)
