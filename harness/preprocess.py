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


def decode_image(path: Path) -> np.ndarray | None:
    """An image as (H, W, 3) BGR uint8 as Ultralytics' ``imread`` decodes it, or ``None``.

    From ``ultralytics/utils/patches.py`` (8.4): the file's bytes go to ``cv2.imdecode``
    with ``IMREAD_COLOR``, which applies EXIF orientation (``cv2.imread`` cannot read an
    EXIF-rotated TIFF); a TIFF is decoded page by page and its first colour page kept;
    AVIF/HEIC/HEIF go through PIL (EXIF-aware); 16-bit data keep their high byte; grey and
    alpha images become 3-channel BGR.
    """
    import cv2

    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if not data.size:
        return None
    image = None
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        ok, frames = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
        if ok and frames and frames[0].ndim == 3:
            image = frames[0][..., :3]
    if image is None and suffix in (".avif", ".heic", ".heif"):
        image = _decode_pil(path)
    if image is None:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image.astype(np.uint16) >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image, dtype=np.uint8)


def _decode_pil(path: Path) -> np.ndarray | None:
    import cv2
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im, ImageOps.exif_transpose(im) as upright:
            return np.asarray(cv2.cvtColor(np.asarray(upright.convert("RGB")),
                                           cv2.COLOR_RGB2BGR))
    except Exception:
        return None


def read_image(path: Path) -> np.ndarray:
    """:func:`decode_image`, raising :class:`UserError` when the file cannot be decoded."""
    image = decode_image(path)
    if image is None:
        raise UserError(f"{path} is not an image OpenCV can read.")
    return image


def to_tensor(letterboxed_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (1, 3, H, W) RGB float32 in [0, 1]."""
    rgb = letterboxed_bgr[:, :, ::-1].transpose(2, 0, 1)
    return (np.ascontiguousarray(rgb, dtype=np.float32) / 255.0)[None]


def image_tensor(path: Path, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The model input for one image file."""
    padded, box = letterbox(read_image(path), input_hw)
    return to_tensor(padded), box
