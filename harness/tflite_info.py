"""Reading a ``.tflite`` on the host without a runtime: its input and its weight precision.

The file is a FlatBuffer of the TFLite schema (``tensorflow/lite/schema/schema.fbs``); only
the tables used here are read: ``Model`` (1: operator_codes, 2: subgraphs), ``OperatorCode``
(0: deprecated_builtin_code, 3: builtin_code), ``SubGraph`` (0: tensors, 1: inputs,
2: outputs, 3: operators), ``Tensor`` (0: shape, 1: type, 3: name) and ``Operator``
(0: opcode_index, 1: inputs, 2: outputs).
"""

from __future__ import annotations

import struct
from pathlib import Path

from .precision_label import label_precision

TENSOR_TYPES = {0: "fp32", 1: "fp16", 2: "int32", 3: "int8", 4: "int64", 7: "int16", 9: "int8",
                10: "fp64", 17: "int8", 18: "bf16"}
"""TensorType -> precision family (uint8 and int4 weights count as int8: integer weights)."""
WEIGHT_OPS = {3: 1, 4: 1, 9: 1, 67: 1}
"""BuiltinOperator -> index of its weight input: CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, TRANSPOSE_CONV (its input 1)."""
DEQUANTIZE = 6


class _Reader:
    def __init__(self, buf: bytes) -> None:
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise ValueError("no TFL3 identifier")
        self.buf = buf

    def table(self, pos: int) -> tuple[int, int, int]:
        vtable = pos - struct.unpack_from("<i", self.buf, pos)[0]
        return pos, vtable, int(struct.unpack_from("<H", self.buf, vtable)[0])

    def field(self, tab: tuple[int, int, int], index: int) -> int | None:
        pos, vtable, vsize = tab
        if 4 + 2 * index >= vsize:
            return None
        offset = int(struct.unpack_from("<H", self.buf, vtable + 4 + 2 * index)[0])
        return pos + offset if offset else None

    def deref(self, at: int) -> int:
        return at + int(struct.unpack_from("<I", self.buf, at)[0])

    def vector(self, at: int | None) -> tuple[int, int]:
        if at is None:
            return 0, 0
        start = self.deref(at)
        return start + 4, int(struct.unpack_from("<I", self.buf, start)[0])

    def ints(self, at: int | None, fmt: str = "i") -> tuple[int, ...]:
        start, count = self.vector(at)
        return struct.unpack_from(f"<{count}{fmt}", self.buf, start) if count else ()

    def tables(self, at: int | None) -> list[tuple[int, int, int]]:
        start, count = self.vector(at)
        return [self.table(self.deref(start + 4 * i)) for i in range(count)]

    def scalar(self, tab: tuple[int, int, int], index: int, fmt: str, default: int = 0) -> int:
        at = self.field(tab, index)
        return int(struct.unpack_from(f"<{fmt}", self.buf, at)[0]) if at is not None \
            else default

    def subgraph(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        model = self.table(self.deref(0))
        subgraphs = self.tables(self.field(model, 2))
        if not subgraphs:
            raise ValueError("no subgraphs")
        return model, subgraphs[0]


def tflite_input(path: Path) -> tuple[str, tuple[int, ...]]:
    """Name and shape of the first input of the first subgraph, read from the flatbuffer
    (schema: Model.subgraphs[0].inputs[0] -> SubGraph.tensors[i].shape / .name).
    Raises ``ValueError`` / ``struct.error`` / ``IndexError`` on a file that is not one."""
    reader = _Reader(path.read_bytes())
    _, subgraph = reader.subgraph()
    inputs = reader.ints(reader.field(subgraph, 1))
    if not inputs:
        raise ValueError("no inputs")
    tensors = reader.tables(reader.field(subgraph, 0))
    if not 0 <= inputs[0] < len(tensors):
        raise ValueError("input tensor index out of range")
    tensor = tensors[inputs[0]]
    shape = reader.ints(reader.field(tensor, 0))
    name = ""
    name_at = reader.field(tensor, 3)
    if name_at is not None:
        start, count = reader.vector(name_at)
        name = reader.buf[start:start + count].decode("utf-8", "replace")
    return name, tuple(int(d) for d in shape)


def tflite_precision(path: Path) -> str | None:
    """``fp32`` / ``fp16`` / ``int8`` / ``mixed`` from the tensor types of the weights of the
    conv, depthwise-conv, fully-connected and transpose-conv operators (through
    a ``DEQUANTIZE`` of a constant, as fp16- and int8-weight exports store them) and of the
    model's inputs and outputs (see :func:`edgebench.precision_label.label_precision`); ``None``
    when the file has no such operator or cannot be read."""
    try:
        reader = _Reader(path.read_bytes())
        model, subgraph = reader.subgraph()
        codes = [max(reader.scalar(c, 0, "b"), reader.scalar(c, 3, "i"))
                 for c in reader.tables(reader.field(model, 1))]
        types = [reader.scalar(t, 1, "b") for t in reader.tables(reader.field(subgraph, 0))]
        operators = [(codes[reader.scalar(op, 0, "I")], reader.ints(reader.field(op, 1)),
                      reader.ints(reader.field(op, 2)))
                     for op in reader.tables(reader.field(subgraph, 3))]
        io = [types[i] for f in (1, 2) for i in reader.ints(reader.field(subgraph, f))]
    except (ValueError, struct.error, IndexError):
        return None
    dequantized = {outs[0]: ins[0] for code, ins, outs in operators
                   if code == DEQUANTIZE and ins and outs}
    weights = set()
    for code, ins, _ in operators:
        index = WEIGHT_OPS.get(code)
        if index is None or len(ins) <= index or ins[index] < 0:
            continue
        tensor = dequantized.get(ins[index], ins[index])
        weights.add(TENSOR_TYPES.get(types[tensor], "other"))
    return label_precision(weights, {TENSOR_TYPES.get(t, "other") for t in io})
