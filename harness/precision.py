"""The numeric precision of a model, read from its graph (not from how it was named).

``fp32`` / ``fp16`` / ``int8`` / ``mixed`` (``None``: could not be read). The label comes from
the weights of the layers that carry the model's arithmetic (convolutions, fully-connected
layers, matrix products) and from the model's input and output types:

- every such weight in one type and the I/O float32 or the same type: that type (``fp16``
  weights with float32 I/O, Ultralytics ``half=True``, is ``fp16``);
- weights of several types, or float32 weights with fp16 I/O: ``mixed``.

ONNX: the weight initializers (followed back through ``DequantizeLinear``, ``Cast`` and the
like) and the graph's I/O element types. TFLite: :func:`edgebench.tflite_info.tflite_precision`.
ncnn: the storage tag of each weight blob in the ``.bin`` (ncnn's ``ModelBinFromDataReader``:
``0`` float32, ``0x01306B47`` float16, ``0x000D4B38`` int8) and ``int8_scale_term`` in the
``.param``.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

from .precision_label import label_precision
from .records import Artifact
from .tflite_info import tflite_precision


def artifact_precision(path: Path, fmt: str) -> str | None:
    """The precision of the model at ``path`` in format ``fmt`` (onnx, tflite, ncnn);
    ``None`` for other formats (``.pt``: fp32 unless it says otherwise) or an unreadable
    file."""
    if fmt == "onnx":
        import onnx

        try:
            return onnx_precision(onnx.load(str(path), load_external_data=False))
        except Exception:
            return None
    if fmt == "tflite":
        return tflite_precision(path)
    if fmt == "ncnn":
        return ncnn_precision(path)
    return None


# -- ONNX ------------------------------------------------------------------------------

_ONNX_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 2: "int8", 3: "int8", 6: "int32",
               7: "int64", 21: "int8", 22: "int8"}
"""TensorProto.DataType -> precision family (uint8/int8/uint4/int4 weights: ``int8``)."""
_ONNX_WEIGHTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1),
                 "QLinearConv": (3,), "ConvInteger": (1,), "QLinearMatMul": (0, 3),
                 "MatMulInteger": (0, 1)}
"""Op type -> the inputs that may be its weights (a constant behind them)."""
_PASS_THROUGH = {"DequantizeLinear", "Cast", "Identity", "Transpose", "Reshape", "Squeeze",
                 "Unsqueeze", "QuantizeLinear"}


def onnx_precision(model: Any) -> str | None:
    """The precision of an ``onnx.ModelProto`` (see the module docstring)."""
    graph = model.graph
    constants = {i.name: i.data_type for i in graph.initializer}
    producers = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t.data_type
        for out in node.output:
            producers[out] = node

    def constant_type(name: str) -> int | None:
        for _ in range(8):  # DequantizeLinear(Cast(...)) chains are short
            if name in constants:
                return int(constants[name])
            node = producers.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                return None
            name = node.input[0]
        return None

    weights = set()
    for node in graph.node:
        for index in _ONNX_WEIGHTS.get(node.op_type, ()):
            if index < len(node.input):
                kind = constant_type(node.input[index])
                if kind is not None:
                    weights.add(_ONNX_TYPES.get(kind, "other"))
    init_names = set(constants)
    io = {_ONNX_TYPES.get(v.type.tensor_type.elem_type, "other")
          for v in [*graph.input, *graph.output] if v.name not in init_names}
    return label_precision(weights, io)


# -- ncnn ------------------------------------------------------------------------------

_NCNN_TAGS = {0: "fp32", 0x0002C056: "fp32", 0x01306B47: "fp16", 0x000D4B38: "int8"}
_NCNN_NO_WEIGHTS = frozenset((
    "Input", "Split", "Concat", "Swish", "Sigmoid", "ReLU", "HardSwish", "HardSigmoid", "Mish",
    "BinaryOp", "UnaryOp", "Pooling", "Interp", "Reshape", "Permute", "Slice", "Crop",
    "Softmax", "Eltwise", "Flatten", "Padding", "Clip", "Noop", "ExpandDims", "Squeeze",
    "Tile", "Cast", "Dropout", "GELU", "TanH", "Erf", "Reduction", "ShuffleChannel",
    "PixelShuffle", "ELU", "Exp", "Log", "Power", "Threshold", "ArgMax", "TopK", "Gather"))


def _ncnn_params(tokens: list[str]) -> dict[int, str]:
    params = {}
    for token in tokens:
        key, _, value = token.partition("=")
        try:
            params[int(key)] = value
        except ValueError:
            continue
    return params


def ncnn_precision(model: Path) -> str | None:
    """The precision of an ncnn model (a directory with one ``.param`` and its ``.bin``, or
    the ``.param``): walks the ``.param``'s layers in order, as ncnn loads them, reading
    each weight blob's storage tag from the ``.bin`` (convolutions, depthwise and transposed
    convolutions, inner products; ``MemoryData`` is raw float32 and skipped). Stops at a layer
    type it does not know the weights of, labelling what it read so far."""
    params = sorted(model.glob("*.param")) if model.is_dir() else [model]
    if len(params) != 1 or not params[0].with_suffix(".bin").is_file():
        return None
    try:
        lines = params[0].read_text().splitlines()[2:]
        data = params[0].with_suffix(".bin").read_bytes()
    except (OSError, UnicodeDecodeError):
        return None
    weights: set[str] = set()
    at = 0
    for line in lines:
        tokens = line.split()
        if len(tokens) < 4:
            continue
        layer = tokens[0]
        p = _ncnn_params(tokens[4 + int(tokens[2]) + int(tokens[3]):])
        if layer in _NCNN_NO_WEIGHTS:
            continue
        if layer == "MemoryData":
            dims = [int(p.get(k, "0")) for k in (0, 1, 11, 2)]
            count = 1
            for d in dims:
                count *= d if d else 1
            at += 4 * count
            continue
        conv = layer in ("Convolution", "ConvolutionDepthWise", "Deconvolution",
                         "DeconvolutionDepthWise")
        if not conv and layer != "InnerProduct":
            break  # weights this walker does not know the layout of
        if int(p.get(8, "0")):
            weights.add("int8")
            break  # int8 layers carry scale blobs whose layout differs per layer type
        size = int(p.get(6 if conv else 2, "0"))
        bias = int(p.get(5 if conv else 1, "0"))
        if at + 4 > len(data):
            return None
        (tag,) = struct.unpack_from("<I", data, at)
        kind = _NCNN_TAGS.get(tag)
        if kind is None:
            weights.add("other")
            break
        weights.add(kind)
        width = {"fp32": 4 * size, "fp16": 2 * size, "int8": size}[kind]
        at += 4 + (width + 3) // 4 * 4
        at += 4 * int(p.get(0, "0")) if bias else 0
    return label_precision(weights)


def with_precision(artifact: Artifact) -> Artifact:
    """``artifact`` with its :attr:`~edgebench.records.Artifact.precision` read from the
    graph when it does not have one yet (any backend's format this module reads)."""
    if artifact.precision is not None:
        return artifact
    found = artifact_precision(artifact.path, artifact.format)
    return dataclasses.replace(artifact, precision=found) if found else artifact
