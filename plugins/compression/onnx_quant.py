"""ONNX Runtime int8 quantization shared by the ONNX steps (``int8``, ``dynamic``,
``mixed``): ORT availability, node naming, the detection head's tail found from the graph,
calibration into ORT's cache file and QDQ quantization with nodes kept float.

Why the head's tail stays float: a YOLOv8 head concatenates boxes (0..imgsz pixels) and
class scores (0..1) into one output tensor, so one int8 scale for both rounds every score to
zero (naive QDQ: mAP 0.0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgebench.errors import CaseError
from edgebench.records import Artifact

from .calibration import CalibrationReader
from .head_tail import head_tail

ORT_HINT = "pip install 'edgebench[onnxruntime]'"
ACTIVATION_TYPES = ("uint8", "int8")


def ort_unavailable() -> str | None:
    """Why ONNX Runtime quantization cannot work here (onnxruntime missing), or ``None``."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime is not installed: {ORT_HINT}"
    return None


def ort_version() -> str:
    """The installed ONNX Runtime version (part of the cache keys and the converter note)."""
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


def head_tail_nodes(model: Any) -> list[str]:
    """The head's nodes that int8 would break (:func:`.head_tail.head_tail`): the DFL
    (everything downstream of a Softmax, its fixed Conv included) and every non-Conv node
    downstream of which no feature Conv is left (reshapes, concats, sigmoid, box decoding).
    Empty for a graph without Conv."""
    nodes = list(model.graph.node)
    producers = {out: i for i, n in enumerate(nodes) for out in n.output}
    inputs = [[producers[name] for name in n.input if name in producers] for n in nodes]
    tail = head_tail([n.op_type for n in nodes], inputs, is_conv=lambda op: op == "Conv",
                     softmax={"Softmax"})
    return [nodes[i].name for i in tail]


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
    with quiet():
        quantize_static(str(model_path), str(cache.with_suffix(".probe.onnx")), reader,
                        calibration_cache_path=str(cache))
    cache.with_suffix(".probe.onnx").unlink(missing_ok=True)


def quantize_qdq(model: Any, dst: Path, cache: Path, *, exclude: Sequence[str],
                 per_channel: bool, activations: str) -> None:
    """Write the QDQ int8 model of ``model`` (named nodes) with the cached ranges; nodes in
    ``exclude`` stay float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    act = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    with quiet():
        quantize_static(model, str(dst), None, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=act,
                        weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                        calibration_cache_path=str(cache))


class quiet:
    """ORT's quantizer logs a pre-processing hint per call at WARNING; keep the bars clean."""

    def __enter__(self) -> None:
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self.level)


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
