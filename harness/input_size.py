"""Model input sizes: ``--imgsz`` (one side, or height and width) and the size a model
declares.

Ultralytics' order is (height, width): ``export(imgsz=(256, 320))`` makes a 256-high,
320-wide input, and its exports record ``imgsz: [256, 320]`` (ONNX ``metadata_props``,
ncnn ``metadata.yaml``, TFLite metadata). A single number means a square input.
"""

from __future__ import annotations

import ast
import re

ImgSz = int | tuple[int, int]
"""One side (square) or (height, width), pixels."""

DEFAULT_HW = (640, 640)
"""Ultralytics' default size, for a model with symbolic spatial dims and no declared size."""
STRIDE = 32
"""The largest stride of a YOLO detection head: every input side is a multiple of it."""

IMGSZ_EXPECT = (f"a size >= {STRIDE} that is a multiple of {STRIDE} (the model's largest "
                "stride), as N or H,W")


def hw(imgsz: ImgSz | None) -> tuple[int, int] | None:
    """(height, width) of ``imgsz``; ``None`` for ``None``."""
    if imgsz is None:
        return None
    if isinstance(imgsz, int):
        return imgsz, imgsz
    return int(imgsz[0]), int(imgsz[1])


def parse_imgsz(value: object) -> ImgSz:
    """``320``, ``"320"``, ``"256,320"``, ``"256x320"``, ``[256, 320]`` -> ``320`` or
    ``(256, 320)`` (a square pair becomes one int). Raises ``ValueError`` when ``value`` is
    none of these or a side is not a multiple of 32 of at least 32."""
    sides: list[object]
    if isinstance(value, str):
        sides = [s for s in re.split(r"[,x×\s]+", value.strip().strip("[]()")) if s]
    elif isinstance(value, (list, tuple)):
        sides = list(value)
    else:
        sides = [value]
    if not 1 <= len(sides) <= 2:
        raise ValueError(value)
    out: list[int] = []
    for side in sides:
        if isinstance(side, bool):
            raise ValueError(value)
        if isinstance(side, str):
            if not side.strip().isdigit():
                raise ValueError(value)
            side = int(side)
        if not isinstance(side, int) or side < STRIDE or side % STRIDE:
            raise ValueError(value)
        out.append(side)
    if len(out) == 1 or out[0] == out[1]:
        return out[0]
    return out[0], out[1]


def imgsz_arg(imgsz: ImgSz) -> str:
    """``320`` or ``256,320``: ``imgsz`` as a command-line argument."""
    size = hw(imgsz)
    assert size is not None
    return str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"


def declared_hw(value: object) -> tuple[int, int] | None:
    """The (height, width) a model's metadata declares: ``320``, ``[256, 320]``, or their
    text (``"[256, 320]"``, as ONNX ``metadata_props`` hold it); ``None`` when it is none of
    these."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return declared_hw(value[0])
    return None


def input_hw(shape: tuple[int, ...] | None, imgsz: ImgSz | None,
             declared: tuple[int, int] | None) -> tuple[int, int]:
    """The (height, width) to feed a model whose input has ``shape`` (NCHW, ``-1`` for a
    symbolic dim, ``None`` when unknown): its static spatial dims; each symbolic one from
    ``imgsz`` (``--imgsz``), else from ``declared`` (the size the model records, e.g.
    Ultralytics' ``imgsz`` metadata or a checkpoint's training size), else Ultralytics'
    default 640."""
    fallback = hw(imgsz) or declared or DEFAULT_HW
    dims = shape if shape is not None and len(shape) == 4 else (1, 3, -1, -1)
    h, w = int(dims[2]), int(dims[3])
    return (h if h > 0 else fallback[0], w if w > 0 else fallback[1])
