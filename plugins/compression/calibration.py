"""Calibration and held-out images for the quantization steps, taken from the TRAIN split.

Static quantization measures activation ranges on real images, and the mixed-precision
search measures mAP on images it was not calibrated on. Both come from the dataset's train
split, never from the val images the report's mAP uses: calibration takes the first
``count`` train images (sorted by name), the search's held-out set the last ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgebench.contracts import CompressionContext
from edgebench.errors import UserError

MIN_CALIBRATION = 8
"""Fewer images than this give activation ranges from a handful of scenes: refused."""


def check_calibration(step: str, count: int, context: CompressionContext,
                      held_out: int = 0) -> list[Path]:
    """The ``count`` calibration images (and room for ``held_out`` more after them), or a
    one-sentence :class:`UserError`: no train split, too few or too many asked for."""
    if count < MIN_CALIBRATION:
        raise UserError(f"{step}: calibration={count} is too few; calibrate on at least "
                        f"{MIN_CALIBRATION} train images (e.g. {step}:calibration=100).")
    images = context.train_images()
    if count + held_out > len(images):
        extra = f" plus {held_out} held-out images for the search" if held_out else ""
        raise UserError(f"{step}: calibration={count}{extra} needs {count + held_out} train "
                        f"images but the train split has {len(images)}; ask for fewer.")
    return list(images[:count])


def images_fingerprint(images: Sequence[Path]) -> str:
    """Content hash of a list of images: part of a quantized model's cache key."""
    digest = hashlib.sha256(b"edgebench-images-v1\0")
    for path in images:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def input_hw(shape: Sequence[int] | None, imgsz: int) -> tuple[int, int]:
    """The model's (H, W): its static input shape, else the context's square size."""
    if shape and len(shape) == 4 and shape[2] > 0 and shape[3] > 0:
        return int(shape[2]), int(shape[3])
    return imgsz, imgsz


def tensors(images: Sequence[Path], hw: tuple[int, int], *, progress: bool,
            what: str) -> Iterator[Any]:
    """Each image letterboxed exactly as for inference: (1, 3, H, W) float32 in [0, 1]."""
    from tqdm import tqdm

    from edgebench.preprocess import image_tensor

    for path in tqdm(images, desc=what, unit="img", disable=not progress, leave=False):
        yield image_tensor(path, hw)[0]


class CalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` over the calibration images."""

    def __init__(self, input_name: str, images: Sequence[Path], hw: tuple[int, int], *,
                 progress: bool, batch: int = 1) -> None:
        """``batch``: the model's static batch; the images are fed that many at a time
        (:func:`edgebench.batching.groups`: the last group padded with repeats, which leave
        min/max ranges unchanged)."""
        self.input_name = input_name
        self.images = list(images)
        self.hw = hw
        self.progress = progress
        self.batch = batch
        self._it: Iterator[Any] | None = None

    def get_next(self) -> dict[str, Any] | None:
        if self._it is None:
            self._it = self._inputs()
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def _inputs(self) -> Iterator[Any]:
        each = tensors(self.images, self.hw, progress=self.progress, what="calibrating")
        if self.batch == 1:
            yield from each
            return
        import numpy as np

        from edgebench.batching import groups

        loaded = list(each)
        for group in groups(len(loaded), self.batch):
            yield np.concatenate([loaded[i] for i in group])

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)
