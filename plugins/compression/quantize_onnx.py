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
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from edgebench.batching import static_batch
from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export, exported_artifact
from edgebench.records import Artifact

from .calibration import CalibrationReader, check_calibration, images_fingerprint, input_hw

ORT_HINT = "pip install 'edgebench[onnxruntime]'"
ACTIVATION_TYPES = ("uint8", "int8")


def ort_unavailable() -> str | None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime is not installed: {ORT_HINT}"
    return None


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


# -- the graph: node names and the detection head's tail ----------------------------------


def named_model(path: Path) -> Any:
    """The ONNX model with every node named (ORT's include/exclude lists go by name)."""
    import onnx

    model = onnx.load(str(path))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def _consumers(model: Any) -> dict[str, list[int]]:
    by_tensor: dict[str, list[int]] = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            by_tensor.setdefault(name, []).append(i)
    return by_tensor


def _reaches(model: Any, starts: Sequence[int]) -> set[int]:
    """Indices of the nodes downstream of ``starts`` (included)."""
    consumers = _consumers(model)
    seen: set[int] = set()
    todo = list(starts)
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for out in model.graph.node[i].output:
            todo.extend(consumers.get(out, ()))
    return seen


def head_tail_nodes(model: Any) -> list[str]:
    """The head's nodes that int8 would break: the DFL (everything downstream of a Softmax,
    its fixed Conv included) and every non-Conv node downstream of which no feature Conv is
    left (reshapes, concats, sigmoid, box decoding). Empty for a graph without Conv."""
    nodes = list(model.graph.node)
    softmaxes = [i for i, n in enumerate(nodes) if n.op_type == "Softmax"]
    dfl = _reaches(model, softmaxes)
    feature_convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv" and i not in dfl]
    if not feature_convs:
        return []
    # a node is "before a feature conv" when one of the feature convs is downstream of it
    producers = {out: i for i, n in enumerate(nodes) for out in n.output}
    before: set[int] = set()
    todo = list(feature_convs)
    while todo:
        i = todo.pop()
        for name in nodes[i].input:
            j = producers.get(name)
            if j is not None and j not in before:
                before.add(j)
                todo.append(j)
    tail = [n.name for i, n in enumerate(nodes)
            if i in dfl or (n.op_type != "Conv" and i not in before and i not in feature_convs)]
    return tail


# -- calibration and quantization ---------------------------------------------------------


def calibrate(model_path: Path, input_name: str, images: Sequence[Path], hw: tuple[int, int],
              cache: Path, *, progress: bool, batch: int = 1) -> None:
    """Activation ranges (min/max over the images) into ORT's calibration cache file, so
    every QDQ variant of the model reuses one calibration (``quantize_static`` writes the
    cache as it quantizes; the model it writes here is thrown away). ``batch``: the
    model's static batch (images fed that many at a time).

    Runs in this process, not under the converter limits (:mod:`edgebench.limits`): the
    reader letterboxes one image at a time and ORT's MinMax calibrater keeps per-tensor
    ranges, so memory follows the model, not the calibration count (measured on the embedded
    model at 320 px, ORT 1.32: peak RSS 259, 266 and 284 MiB for 8, 32 and 96 images)."""
    from onnxruntime.quantization import quantize_static

    reader = CalibrationReader(input_name, images, hw, progress=progress, batch=batch)
    with _quiet():
        quantize_static(str(model_path), str(cache.with_suffix(".probe.onnx")), reader,
                        calibration_cache_path=str(cache))
    cache.with_suffix(".probe.onnx").unlink(missing_ok=True)


def quantize_qdq(model: Any, dst: Path, cache: Path, *, exclude: Sequence[str],
                 per_channel: bool, activations: str) -> None:
    """Write the QDQ int8 model of ``model`` (named nodes) with the cached ranges; nodes in
    ``exclude`` stay float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    act = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    with _quiet():
        quantize_static(model, str(dst), None, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=act,
                        weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                        calibration_cache_path=str(cache))


class _quiet:
    """ORT's quantizer logs a pre-processing hint per call at WARNING; keep the bars clean."""

    def __enter__(self) -> None:
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self.level)


def artifact_meta(path: Path) -> dict[str, Any]:
    """The ``artifact.json`` written next to a compressed artifact ({} when none)."""
    meta = Path(path).parent / "artifact.json"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def require_onnx(step: str, model: Artifact) -> None:
    """A float ONNX model, or :class:`CaseError` (another format, or already quantized)."""
    if model.format != "onnx":
        raise CaseError(f"{step} for onnx got a {model.format} model")
    import onnx

    ops = {n.op_type for n in onnx.load(model.path, load_external_data=False).graph.node}
    quantized = ops & {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                       "ConvInteger", "MatMulInteger"}
    if quantized:
        raise CaseError(f"{step}: {model.path.name} is already quantized (it has "
                        f"{', '.join(sorted(quantized))}); quantize the float model once")


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
    primary_option: ClassVar[str | None] = None

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return ort_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        return None

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        require_onnx(self.name, model)
        key: dict[str, object] = {**options, "ort": ort_version()}

        def produce(out: Path) -> None:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            src = out / "source.onnx"
            shutil.copyfile(model.path, src)
            with _quiet():
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


def quantization_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Report lines from a quantized artifact's ``artifact.json``."""
    notes: list[str] = []
    if meta.get("converter"):
        notes.append(f"made by {meta['converter']}")
    if meta.get("calibration_images"):
        notes.append(f"calibrated on {meta['calibration_images']} "
                     f"{meta.get('calibration_split', 'train')} images (not the val images "
                     "of the mAP)")
    kept = meta.get("kept_float")
    if kept is not None:
        notes.append(f"{len(kept)} nodes kept float" + (f": {_short(kept)}" if kept else ""))
    return tuple(notes)


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(OnnxInt8)
    register(OnnxDynamic)
