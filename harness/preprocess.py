"""Host-side preprocessing, the same as Ultralytics does for YOLOv8 inference.

Letterbox to the model's input size (aspect kept, grey 114 padding, centred), BGR to RGB,
HWC to CHW, divide by 255, float32, batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed into the model input (to map boxes back)."""

    ratio: float
    pad_left: int
    pad_top: int
    orig_hw: tuple[int, int]


def letterbox(image_bgr: np.ndarray, new_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to ``new_hw``, as Ultralytics' ``LetterBox``."""
    import cv2

    h, w = image_bgr.shape[:2]
    r = min(new_hw[0] / h, new_hw[1] / w)
    new_unpad = (max(round(w * r), 1), max(round(h * r), 1))
    dw = (new_hw[1] - new_unpad[0]) / 2
    dh = (new_hw[0] - new_unpad[1]) / 2
    if (w, h) != new_unpad:
        image_bgr = cv2.resize(image_bgr, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE,) * 3)
    return padded, Letterbox(ratio=r, pad_left=left, pad_top=top, orig_hw=(h, w))


def read_image(path: Path) -> np.ndarray:
    """An image as BGR uint8; raise :class:`UserError` when it cannot be decoded."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path} is not an image OpenCV can read.")
    return np.asarray(image, dtype=np.uint8)


def to_tensor(letterboxed_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (1, 3, H, W) RGB float32 in [0, 1]."""
    rgb = letterboxed_bgr[:, :, ::-1].transpose(2, 0, 1)
    return (np.ascontiguousarray(rgb, dtype=np.float32) / 255.0)[None]


def image_tensor(path: Path, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The model input for one image file."""
    padded, box = letterbox(read_image(path), input_hw)
    return to_tensor(padded), box
