"""Which image files an evaluation uses, and the size their labels are scaled by.

The rules are Ultralytics' (``ultralytics/data/utils.py`` 8.4: ``IMG_FORMATS``,
``check_image``, ``exif_size``), so a dataset holds the same images here as in its ``val()``:

- a file is an image by its suffix (:data:`IMAGE_SUFFIXES`, case-insensitive);
- it is left out (corrupt) when PIL cannot identify it, ``Image.verify()`` fails (a
  truncated PNG), either side is under 10 px, its format is not an image format, or it is
  a JPEG without its end marker (``FF D9``) that PIL cannot decode in full (a JPEG cut
  short). Ultralytics re-saves a JPEG whose end marker is missing but whose data decode
  (bytes after the marker, as some cameras write); edgebench never writes into the user's
  dataset: it keeps the file and decodes it as it is, which OpenCV does in full;
- its size is the size after EXIF orientation (5-8 swap width and height), which is the
  size of the pixels :func:`edgebench.preprocess.read_image` decodes, so labels and pixels
  share one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".avif", ".bmp", ".dng", ".heic", ".heif", ".jp2", ".jpeg", ".jpg", ".mpo",
                  ".png", ".tif", ".tiff", ".webp")
"""Ultralytics' ``IMG_FORMATS`` as suffixes."""
_FORMATS = {s[1:] for s in IMAGE_SUFFIXES} | {"jpeg2000"}
_MIN_SIDE = 10  # Ultralytics: "image size <10 pixels"
_ORIENTATION = 274  # EXIF tag


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on one image file: its oriented size, or why it is left out."""

    width: int
    height: int
    problem: str | None = None
    """Why the image is left out (corrupt, truncated, not an image); ``None``: usable."""
    note: str | None = None
    """Something worth a warning that does not leave the image out."""


def is_image(path: Path) -> bool:
    """Whether ``path`` counts as an image by its suffix (as Ultralytics' ``IMG_FORMATS``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_image(path: Path) -> ImageCheck:
    """Ultralytics' ``check_image`` without its side effect (it rewrites some JPEGs).

    Never raises for a bad file: the reason comes back in ``ImageCheck.problem``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return ImageCheck(0, 0, "empty file (0 bytes)")
    except OSError as exc:
        return ImageCheck(0, 0, f"cannot be read ({exc.strerror or type(exc).__name__})")
    _register_heif()
    try:
        with Image.open(path) as im:
            im.verify()
            fmt = (im.format or "").lower()
            width, height = _exif_size(im, path)
    except (UnidentifiedImageError, ImportError):
        # ImportError: once Ultralytics is imported in the same process, PIL's HEIF hook asks
        # for pi_heif on any file it cannot identify
        return ImageCheck(0, 0, "not an image PIL can identify")
    except Exception as exc:  # PIL raises many types for a corrupt file
        return ImageCheck(0, 0, f"corrupt image ({_describe(exc)})")
    if width < _MIN_SIDE or height < _MIN_SIDE:
        return ImageCheck(width, height, f"image size {width}x{height} is under {_MIN_SIDE} px")
    if fmt not in _FORMATS:
        return ImageCheck(width, height, f"its format {fmt.upper() or 'unknown'} is not an "
                                         "image format Ultralytics reads")
    note = None
    if fmt in ("jpg", "jpeg"):
        with path.open("rb") as f:
            f.seek(-2, 2)
            ends_well = f.read() == b"\xff\xd9"
        if not ends_well:
            try:
                with Image.open(path) as im:
                    ImageOps.exif_transpose(im).load()
            except Exception as exc:
                return ImageCheck(width, height, f"truncated JPEG ({_describe(exc)})")
            note = ("JPEG without its end marker at the end of the file, decoded in full "
                    "(Ultralytics re-saves such a file; edgebench leaves it as it is)")
    return ImageCheck(width, height, None, note)


def _exif_size(im: object, path: Path) -> tuple[int, int]:
    """Ultralytics' ``exif_size``: (width, height) after EXIF orientation. For JPEG, MPO,
    PNG and AVIF orientations 5-8 swap the sides; other formats (WebP, TIFF) are decoded,
    as their handling varies between OpenCV and Pillow versions."""
    from PIL import Image

    assert isinstance(im, Image.Image)
    size = (int(im.size[0]), int(im.size[1]))
    try:
        exif = im.tag_v2 if im.format == "TIFF" else im.getexif()  # type: ignore[attr-defined]
        if exif.get(_ORIENTATION) in {5, 6, 7, 8}:
            if im.format in {"JPEG", "MPO", "PNG", "AVIF"}:
                return size[1], size[0]
            from .preprocess import decode_image

            decoded = decode_image(path)
            if decoded is not None:
                return int(decoded.shape[1]), int(decoded.shape[0])
    except Exception:  # as Ultralytics: an unreadable EXIF block leaves the size as stored
        pass
    return size


def _register_heif() -> None:
    """Let PIL open HEIC/HEIF when ``pi-heif`` is installed (Ultralytics installs it on
    demand; without it such files are left out as not identifiable, as in Ultralytics
    offline)."""
    try:
        from pi_heif import register_heif_opener  # type: ignore[import-not-found]
    except ImportError:
        return
    register_heif_opener()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
