"""Models with a static batch > 1: images grouped to the batch, outputs split back per image.

A model exported with a static batch of B (Ultralytics ``export(batch=B)``) takes exactly B
images per inference. The timed loop feeds it B images; the accuracy pass feeds it the
dataset's images B at a time, in order, the last group padded with copies of its last image;
:func:`split_outputs` turns the outputs back into one per image (each with a batch axis of
1, as a batch-1 model's) and drops the padding, so decoding, mAP and the agreement with the
float reference see the same per-image outputs as for a batch-1 model.

The accuracy batch on disk (:func:`write_batch`) is one uncompressed ``.npy`` of the
letterboxed pixels, (K, B, 3, H, W) uint8 RGB: K inferences of B images (B = 1 for a batch-1
model). It is what the host pushes and what the device agent memory-maps; each inference's
float32 input is its pixels divided by 255 (:func:`normalise`), made just before it runs, so
the runners see exactly the float32 tensors ``preprocess.to_tensor`` makes (the same
letterbox, ``/ 255.0`` in float32), at a quarter of the bytes of a float32 batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def static_batch(input_shape: Sequence[Any] | None) -> int:
    """Images per inference of a model whose NCHW (or NHWC) input has ``input_shape``: its
    first dimension when static (a number > 0), else 1 (a symbolic batch, ``-1``, ``None``
    or a name such as ONNX Runtime's ``"batch"``, runs one image at a time)."""
    if input_shape is None or len(input_shape) == 0:
        return 1
    try:
        first = int(input_shape[0])
    except (TypeError, ValueError):
        return 1
    return first if first > 0 else 1


def run_per_image(run: Callable[[np.ndarray], np.ndarray], tensors: Sequence[np.ndarray],
                  size: int) -> list[np.ndarray]:
    """``run`` (one model output for one input) on ``tensors`` (each (1, 3, H, W)) grouped
    ``size`` at a time by :func:`groups`, its output split back per image (each (1, ...)):
    for host-side evaluation of a model with a static batch of ``size``."""
    if size == 1:
        return [run(t) for t in tensors]
    outputs = [[run(np.concatenate([tensors[i] for i in group]))]
               for group in groups(len(tensors), size)]
    return [per[0] for per in split_outputs(outputs, size, len(tensors))]


def groups(images: int, size: int) -> list[list[int]]:
    """The image indices of each inference: ``size`` at a time, in order; the last group
    padded with its last image, so every group has ``size`` entries. ``ceil(images / size)``
    groups."""
    if size < 1 or images < 0:
        raise ValueError(f"cannot group {images} images {size} at a time")
    out = []
    for start in range(0, images, size):
        group = list(range(start, min(start + size, images)))
        out.append(group + [group[-1]] * (size - len(group)))
    return out


BATCH_SUFFIX = ".npy"
"""The suffix of an accuracy batch file (:func:`write_batch`); the device agent reads a
``.npz`` of float32 tensors (the format before) by its suffix too."""


def normalise(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels (any shape) -> float32 in [0, 1]: ``pixels / 255`` computed in float32,
    bit for bit what ``preprocess.to_tensor`` gives (``float32(pixels) / 255.0``: IEEE
    division is correctly rounded, so every one of the 256 values maps to one float32).
    ``out``: a float32 array of the same shape to write into (no allocation)."""
    result: np.ndarray = np.divide(pixels, np.float32(255), out=out, dtype=np.float32)
    return result


def write_batch(path: Path, pixels: np.ndarray) -> None:
    """Write the accuracy batch ``pixels`` ((K, B, 3, H, W) uint8, RGB, letterboxed) to
    ``path`` (``.npy``) atomically. Raises ``ValueError`` for another dtype or rank."""
    if pixels.dtype != np.uint8 or pixels.ndim != 5 or pixels.shape[2] != 3:
        raise ValueError(f"an accuracy batch is (K, B, 3, H, W) uint8, not "
                         f"{list(pixels.shape)} {pixels.dtype}")
    tmp = path.with_name(f".{path.stem}-{os.getpid()}-{time.time_ns()}{BATCH_SUFFIX}")
    np.save(tmp, np.ascontiguousarray(pixels), allow_pickle=False)
    tmp.replace(path)


def read_batch(path: Path) -> np.ndarray:
    """The accuracy batch at ``path``, memory-mapped read-only: (K, B, 3, H, W) uint8.
    Raises ``ValueError`` when the file is not one (another dtype or rank)."""
    pixels: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    if pixels.dtype != np.uint8 or pixels.ndim != 5 or pixels.shape[2] != 3:
        raise ValueError(f"{path} is not an accuracy batch ((K, B, 3, H, W) uint8): "
                         f"{list(pixels.shape)} {pixels.dtype}")
    return pixels


def float_inputs(path: Path) -> Iterator[np.ndarray]:
    """Each inference's float32 input (B, 3, H, W) of the accuracy batch at ``path``, in
    order, as the device agent makes them (:func:`normalise`); a new array each. Reads the
    float32 ``.npz`` of the format before too (keys ``"0".."K-1"``), as the agent does."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            for key in sorted(data.files, key=int):
                yield data[key]
        return
    for pixels in read_batch(path):
        yield normalise(pixels)


def group_tensors(per_image: Path, size: int, out: Path) -> int:
    """Write the accuracy batch ``out`` ((K, size, 3, H, W)) from the batch ``per_image``
    ((N, 1, 3, H, W)), grouped by :func:`groups`, written atomically (:func:`write_batch`).
    Returns K, the number of groups."""
    pixels = read_batch(per_image)
    if pixels.shape[1] != 1:
        raise ValueError(f"{per_image} is already grouped {pixels.shape[1]} to an inference")
    index = groups(len(pixels), size)
    write_batch(out, pixels[:, 0][np.asarray(index, dtype=np.intp).reshape(-1, size)])
    return len(index)


def split_outputs(outputs: Sequence[Sequence[np.ndarray]], size: int, images: int
                  ) -> list[list[np.ndarray]]:
    """Per inference of ``size`` images (grouped by :func:`groups`), its outputs, each
    (size, ...) -> per image, its outputs, each (1, ...), for the ``images`` real images in
    order; the padding's outputs are dropped.

    Raises ``ValueError`` naming the output when the count of inferences is not
    ``ceil(images / size)`` or an output's first axis is not ``size`` (an output that does
    not hold one slice per image cannot be told apart by image).
    """
    if size == 1:
        return [list(per) for per in outputs]
    expected = math.ceil(images / size)
    if len(outputs) != expected:
        raise ValueError(f"{len(outputs)} batched inferences returned outputs; {images} "
                         f"images in batches of {size} need {expected}")
    per_image: list[list[np.ndarray]] = []
    for k, per in enumerate(outputs):
        for j, out in enumerate(per):
            shape = np.shape(out)
            if not shape or shape[0] != size:
                raise ValueError(f"output {j} has shape {list(shape)}, not a first axis of "
                                 f"{size} (one slice per image of the batch)")
        for i in range(min(size, images - k * size)):
            per_image.append([np.asarray(out)[i:i + 1] for out in per])
    return per_image
