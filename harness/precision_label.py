"""The precision label of a model from the types of its weights and I/O: the one rule every
format reader (``precision.py`` for ONNX and ncnn, ``tflite_info.py``) applies."""

from __future__ import annotations

from collections.abc import Iterable

PRECISIONS = ("fp32", "fp16", "int8", "mixed")


def label_precision(weights: Iterable[str], io: Iterable[str] = ()) -> str | None:
    """The label of a model whose weights have the precisions ``weights`` and whose inputs
    and outputs have ``io`` (``"fp32"``, ``"fp16"``, ``"int8"``, ...)."""
    kinds = set(weights)
    if not kinds:
        return None
    if len(kinds) > 1:
        return "mixed"
    (kind,) = kinds
    if kind not in PRECISIONS:
        return "mixed"
    if kind == "fp32" and "fp16" in set(io):
        return "mixed"
    return kind
