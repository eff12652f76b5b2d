"""Models with a static batch > 1: images grouped to the batch, outputs split back per image.

A model exported with a static batch of B (Ultralytics ``export(batch=B)``) takes exactly B
images per inference. The timed loop feeds it B images; the accuracy pass feeds it the
dataset's images B at a time, in order, the last group padded with copies of its last image;
:func:`split_outputs` turns the outputs back into one per image (each with a batch axis of
1, as a batch-1 model's) and drops the padding, so decoding, mAP and the agreement with the
float reference see the same per-image outputs as for a batch-1 model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
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


def group_tensors(per_image: Path, size: int, out: Path) -> int:
    """Write ``out`` (``.npz``, keys ``"0".."K-1"``, each (size, 3, H, W)) from ``per_image``
    (keys ``"0".."N-1"``, each (1, 3, H, W)), grouped by :func:`groups`, written atomically.
    Returns K, the number of groups."""
    with np.load(per_image, allow_pickle=False) as data:
        count = len(data.files)
        arrays = {str(k): np.concatenate([data[str(i)] for i in group], axis=0)
                  for k, group in enumerate(groups(count, size))}
    tmp = out.with_name(f".{out.stem}-{os.getpid()}.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out)
    return len(arrays)


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
