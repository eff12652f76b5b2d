"""LiteRT (``.tflite``) quantization: ``int8`` (int8 weights and activations, calibrated),
``dynamic`` (w8a32: int8 weights, float activations), ``w8a16`` (int8 weights, int16
activations, calibrated) and ``fp16`` (fp16 weights).

What the installed tools can make, read from Ultralytics 8.4.190's exporter
(``Exporter.export_litert`` -> ``ultralytics/utils/export/litert.py: torch2litert``):
``format='litert'`` converts with litert-torch to an fp32 ``.tflite`` (boxes divided by the
input size, so that one int8 scale holds boxes and scores), then for ``quantize=8``,
``'w8a16'`` and ``'w8a32'`` runs ai-edge-quantizer on that file with the recipes
``static_wi8_ai8``, ``static_wi8_ai16`` and ``dynamic_wi8_afp32`` (the static ones keep the
graph's input and output float). Ultralytics refuses ``quantize=16`` for LiteRT (it is not in
``FP16_FORMATS``: "LiteRT runs an FP32 model in FP16 at runtime").

These steps apply exactly that second half to the backend's fp32 ``.tflite`` (the committed
export or the one made from the ``.pt``), so quantizing needs neither torch nor a re-export,
and calibrate on the project's own letterboxed train images. One departure: ``int8``
keeps the detection head's tail and DFL float by default (``keep_head_float``, found from
the graph as for ONNX): measured here, Ultralytics' plain recipe loses 5.9 mAP50-95 points
on the embedded model, the head kept float 0.4, at about the same speed. ``fp16`` uses
ai-edge-quantizer's FLOAT_CASTING (fp16 Conv/FullyConnected weights, dequantized at load),
which Ultralytics does not offer: the compute stays fp32 on a CPU unless the runtime is told
to force fp16 (XNNPACK on ARMv8.2+).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export, exported_artifact
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, quantization_notes
from .calibration import check_calibration, images_fingerprint, input_hw, tensors
from .head_tail import head_tail

INSTALL = "pip install 'edgebench[export]'"


def quantizer_unavailable() -> str | None:
    for module in ("ai_edge_quantizer", "ai_edge_litert"):
        if importlib.util.find_spec(module) is None:
            return f"{module.replace('_', '-')} is not installed: {INSTALL}"
    return None


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def signature_input(path: Path) -> tuple[str, str, tuple[int, ...]]:
    """(signature key, input name, input shape) of the model's only signature."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_path=str(path))
    signatures = interp.get_signature_list()
    if len(signatures) != 1:
        raise CaseError(f"{path.name} has {len(signatures)} signatures; calibrating needs "
                        "exactly one (as litert-torch writes)")
    key, spec = next(iter(signatures.items()))
    if len(spec["inputs"]) != 1:
        raise CaseError(f"{path.name} has {len(spec['inputs'])} inputs; edgebench quantizes "
                        "single-image models")
    runner = interp.get_signature_runner(key)
    shape = tuple(int(d) for d in runner.get_input_details()[spec["inputs"][0]]["shape"])
    return key, spec["inputs"][0], shape


def calibration_samples(path: Path, images: list[Path], hw: tuple[int, int], *,
                        progress: bool) -> dict[str, list[dict[str, Any]]]:
    """The images in the model's own input layout (NCHW from litert-torch, else NHWC),
    as many per sample as the model's static batch (:func:`edgebench.batching.groups`)."""
    import numpy as np

    from edgebench.batching import groups, static_batch

    key, name, shape = signature_input(path)
    nhwc = len(shape) == 4 and shape[3] == 3 and shape[1] != 3
    each = list(tensors(images, hw, progress=progress, what="calibration images"))
    grouped = [np.concatenate([each[i] for i in group])
               for group in groups(len(each), static_batch(shape))]
    samples = [{name: t.transpose(0, 2, 3, 1) if nhwc else t} for t in grouped]
    return {key: samples}


_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def head_tail_scopes(path: Path) -> list[str]:
    """The ai-edge-quantizer scopes (output tensor names + ``;``) of the detection head's
    tail: the DFL (everything downstream of a SOFTMAX, its fixed conv included) and every
    non-conv op downstream of which no feature conv is left (reshapes, concatenations, box
    decoding, the score sigmoid): :func:`.head_tail.head_tail`, as for ONNX and OpenVINO."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(model_path=str(path))
    ops = interp._get_ops_details()
    names = {int(t["index"]): str(t["name"]) for t in interp.get_tensor_details()}
    producer = {int(t): k for k, op in enumerate(ops) for t in op["outputs"]}
    inputs = [[producer[int(t)] for t in op["inputs"] if int(t) in producer] for op in ops]
    tail = head_tail([str(op["op_name"]) for op in ops], inputs,
                     is_conv=_CONVS.__contains__, softmax={"SOFTMAX"})
    return [";".join(names[int(t)] for t in ops[k]["outputs"]) + ";" for k in tail]


def quantize_tflite(src: Path, dst: Path, scheme: str,
                    samples: dict[str, list[dict[str, Any]]] | None,
                    keep_float: list[str] | None = None) -> str:
    """Write ``dst`` quantized with ``scheme``; return the recipe's description. Ops whose
    scope is in ``keep_float`` stay float (static schemes)."""
    import re

    from ai_edge_quantizer import qtyping, quantizer, recipe

    qt = quantizer.Quantizer(str(src))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a size summary
        if scheme == "fp16":
            for op in (qtyping.TFLOperationName.CONV_2D,
                       qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
                       qtyping.TFLOperationName.FULLY_CONNECTED):
                qt.update_quantization_recipe(
                    regex=".*", operation_name=op,
                    algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
                    op_config=qtyping.OpQuantizationConfig(
                        weight_tensor_config=qtyping.TensorQuantizationConfig(
                            num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                        compute_precision=qtyping.ComputePrecision.FLOAT,
                        explicit_dequantize=True))
            qt.quantize().export_model(str(dst), overwrite=True)
            return "FLOAT_CASTING fp16 weights (Conv, DepthwiseConv, FullyConnected)"
        if scheme == "w8a32":
            qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            qt.quantize().export_model(str(dst), overwrite=True)
            return "dynamic_wi8_afp32 (Ultralytics quantize='w8a32')"
        assert samples is not None
        static = recipe.static_wi8_ai8() if scheme == "int8" else recipe.static_wi8_ai16()
        qt.load_quantization_recipe(static)
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            qt.update_quantization_recipe(regex=".*", operation_name=op,
                                          algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        if keep_float:
            qt.update_quantization_recipe(
                regex="^(?:" + "|".join(re.escape(s) for s in keep_float) + ")$",
                operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        result = qt.calibrate(samples)
        qt.quantize(calibration_result=result).export_model(str(dst), overwrite=True)
    return (("static_wi8_ai8 (Ultralytics quantize=8)" if scheme == "int8"
             else "static_wi8_ai16 (Ultralytics quantize='w8a16')") + ", fp32 input/output"
            + (f", {len(keep_float)} head-tail ops float" if keep_float else ""))


class _LiteRTQuantizer(Compressor):
    """Shared body: ``scheme`` picks the recipe; calibrated schemes take ``calibration``."""

    name: ClassVar[str]
    target: ClassVar[str] = "tflite"
    summary: ClassVar[str]
    scheme: ClassVar[str]
    calibrated: ClassVar[bool]
    option_defaults: ClassVar[Mapping[str, Any]]
    primary_option: ClassVar[str | None]

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return quantizer_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        if self.calibrated:
            check_calibration(self.name, int(options["calibration"]), context)

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        if model.format != "tflite":
            raise CaseError(f"{self.name} for tflite got a {model.format} model")
        images = (check_calibration(self.name, int(options["calibration"]), context)
                  if self.calibrated else [])
        hw = input_hw(model.input_shape, context.imgsz)
        key: dict[str, object] = {**options, "scheme": self.scheme,
                                  "quantizer": _version("ai-edge-quantizer"), "hw": list(hw)}
        if images:
            key["images"] = images_fingerprint(images)

        def produce(out: Path) -> None:
            src = model.path
            recipe, kept = quantize_in_subprocess(
                src, out / "model.tflite", self.scheme, images, hw,
                keep_head_float=bool(options.get("keep_head_float")),
                progress=context.progress)
            meta: dict[str, Any] = {
                "file": "model.tflite", "format": "tflite", "imgsz": hw[0],
                "input_name": model.input_name, "gflops": model.gflops,
                "converter": f"ai-edge-quantizer {_version('ai-edge-quantizer')} {recipe}"}
            if images:
                meta.update(calibration_images=len(images), calibration_split="train",
                            kept_float=[k.rstrip(";").rsplit("/", 1)[-1] for k in kept])
            (out / "artifact.json").write_text(json.dumps(meta))

        path, meta = cached_export(model, f"tflite-{self.scheme}", key, produce)
        artifact = exported_artifact(path, "tflite", model, meta)
        from edgebench.plugins.backends.litert.plugin import describe_tflite

        return describe_tflite(artifact)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return quantization_notes(artifact_meta(artifact.path))


class LiteRTInt8(_LiteRTQuantizer):
    name: ClassVar[str] = "int8"
    summary: ClassVar[str] = ("full int8 LiteRT (int8 weights and activations, fp32 I/O), "
                              "calibrated on train images: Ultralytics' quantize=8 recipe; "
                              "the detection head's tail and DFL kept float")
    scheme: ClassVar[str] = "int8"
    calibrated: ClassVar[bool] = True
    option_defaults: ClassVar[Mapping[str, Any]] = {"calibration": 100,
                                                    "keep_head_float": True}
    primary_option: ClassVar[str | None] = "calibration"


class LiteRTW8A16(_LiteRTQuantizer):
    name: ClassVar[str] = "w8a16"
    summary: ClassVar[str] = ("LiteRT int8 weights + int16 activations, calibrated on train "
                              "images (Ultralytics' quantize='w8a16'); no XNNPACK kernels: "
                              "runs on LiteRT's reference kernels")
    scheme: ClassVar[str] = "w8a16"
    calibrated: ClassVar[bool] = True
    option_defaults: ClassVar[Mapping[str, Any]] = {"calibration": 100,
                                                    "keep_head_float": False}
    primary_option: ClassVar[str | None] = "calibration"


class LiteRTDynamic(_LiteRTQuantizer):
    name: ClassVar[str] = "dynamic"
    summary: ClassVar[str] = ("LiteRT w8a32: int8 weights, float activations (dynamic range, "
                              "Ultralytics' quantize='w8a32'); no calibration")
    scheme: ClassVar[str] = "w8a32"
    calibrated: ClassVar[bool] = False
    option_defaults: ClassVar[Mapping[str, Any]] = {}


class LiteRTFp16(_LiteRTQuantizer):
    name: ClassVar[str] = "fp16"
    summary: ClassVar[str] = ("LiteRT fp16 weights (ai-edge-quantizer float casting); fp32 "
                              "compute unless the runtime forces fp16")
    scheme: ClassVar[str] = "fp16"
    calibrated: ClassVar[bool] = False
    option_defaults: ClassVar[Mapping[str, Any]] = {}


# -- the quantizer runs in a limited subprocess --------------------------------------------
#
# ai-edge-quantizer's calibrate() takes the whole calibration set as in-memory arrays (it
# lists the data set to count it), so its memory grows with calibration x H x W (100 images
# at 640: 0.5 GB; 1000 at 1280: 20 GB). It runs in a child process under the host's memory
# and time limits (edgebench.limits), so a large calibration fails its case in one sentence
# instead of exhausting the host.

QUANTIZE_TIME_S = 3600.0


def quantize_in_subprocess(src: Path, dst: Path, scheme: str, images: list[Path],
                           hw: tuple[int, int], *, keep_head_float: bool, progress: bool
                           ) -> tuple[str, list[str]]:
    """:func:`quantize_tflite` (with :func:`calibration_samples` and
    :func:`head_tail_scopes`) in a child Python under :func:`edgebench.limits.run_limited`.
    Returns (the recipe's description, the scopes kept float). :class:`CaseError` with the
    worker's own sentence when it fails, or the limit's sentence when it passes one."""
    import sys
    import tempfile

    from edgebench.limits import run_limited

    with tempfile.TemporaryDirectory(prefix="edgebench-quantize-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({
            "src": str(src), "dst": str(dst), "scheme": scheme,
            "images": [str(p) for p in images], "hw": list(hw),
            "keep_head_float": keep_head_float, "progress": progress}))
        done = run_limited([sys.executable, "-m", "edgebench.plugins.compression.quantize_litert",
                            str(request), str(result)],
                           f"quantizing {src.name} to {scheme} with ai-edge-quantizer",
                           time_s=QUANTIZE_TIME_S, stream=progress)
        answer: dict[str, Any] = json.loads(result.read_text()) if result.is_file() else {}
    if "error" in answer:
        raise CaseError(str(answer["error"]))
    if done.returncode != 0 or "recipe" not in answer:
        lines = [ln for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        raise CaseError(f"quantizing {src.name} to {scheme} with ai-edge-quantizer failed "
                        f"(exit {done.returncode}): "
                        f"{lines[-1].strip() if lines else 'see the output above'}")
    return str(answer["recipe"]), [str(k) for k in answer["kept"]]


def _worker(request_path: Path, result_path: Path) -> int:
    """(In the child.) Read the request, quantize, write {"recipe", "kept"} or {"error"}."""
    request = json.loads(request_path.read_text())
    src, scheme = Path(request["src"]), str(request["scheme"])
    try:
        images = [Path(p) for p in request["images"]]
        hw = (int(request["hw"][0]), int(request["hw"][1]))
        samples = (calibration_samples(src, images, hw, progress=bool(request["progress"]))
                   if images else None)
        kept = head_tail_scopes(src) if request["keep_head_float"] else []
        recipe = quantize_tflite(src, Path(request["dst"]), scheme, samples, kept)
    except CaseError as exc:
        result_path.write_text(json.dumps({"error": str(exc)}))
        return 1
    except Exception as exc:  # the quantizer raises bare errors on unknown graphs
        result_path.write_text(json.dumps({
            "error": f"ai-edge-quantizer could not make {scheme} from {src.name}: "
                     f"{type(exc).__name__}: {exc}"}))
        return 1
    result_path.write_text(json.dumps({"recipe": recipe, "kept": kept}))
    return 0


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    for cls in (LiteRTInt8, LiteRTDynamic, LiteRTW8A16, LiteRTFp16):
        register(cls)


if __name__ == "__main__":
    import sys

    sys.exit(_worker(Path(sys.argv[1]), Path(sys.argv[2])))
