"""The images of a dataset: found (as Ultralytics globs them), checked one by one (the one
image-check step of every loader: corrupt, truncated or non-image files are left out with
the reason), warned about; and a folder of unlabelled images as a dataset (fidelity only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .dataset_records import Dataset, EvalImage, LeftOut
from .errors import UserError
from .image_files import IMAGE_SUFFIXES, ImageCheck, check_image, is_image

MAX_NAMED_WARNINGS = 10
"""stderr names this many images per warning; the report names all."""


def warn(message: str) -> None:
    """Print one ``edgebench: warning:`` line on stderr."""
    print(f"edgebench: warning: {message}", file=sys.stderr)


def named(items: list[str]) -> str:
    """The first :data:`MAX_NAMED_WARNINGS` of ``items``, and how many more there are."""
    shown = ", ".join(items[:MAX_NAMED_WARNINGS])
    more = len(items) - MAX_NAMED_WARNINGS
    return shown + (f" and {more} more" if more > 0 else "")


def finish(name: str, candidates: int, images: list[EvalImage], left_out: list[LeftOut],
            notes: list[str]) -> None:
    """Warn about left-out images and notes; refuse a dataset with no image left."""
    for note in notes:
        warn(note)
    if left_out:
        warn(f"{name}: left out {len(left_out)} of {candidates} images (the report names "
              f"them all): " + named([f"{lo.path} ({lo.reason})" for lo in left_out]))
    if not images:
        first = left_out[0] if left_out else None
        why = f" ({first.path}: {first.reason})" if first else ""
        raise UserError(f"every one of the {candidates} images of {name} was left out as "
                        f"corrupt or unreadable{why}; fix or replace the files.")


def images_in(directory: Path) -> list[Path]:
    """Image files under ``directory``, recursively, hidden files and folders skipped (as
    Ultralytics' ``glob('**/*.*')``), sorted by path string."""
    if not directory.is_dir():
        raise UserError(f"image directory {directory} does not exist.")
    images = sorted((Path(root) / f for root, dirs, files in os.walk(directory)
                     for f in files if not f.startswith(".") and is_image(Path(f))
                     and not any(part.startswith(".")
                                 for part in Path(root).relative_to(directory).parts)),
                    key=str)
    if not images:
        raise UserError(f"image directory {directory} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)}).")
    return images


def usable(path: Path, left_out: list[LeftOut], notes: list[str]) -> ImageCheck | None:
    """:func:`check_image` of ``path``: ``None`` (and ``path`` added to ``left_out`` with the
    reason) when Ultralytics would leave it out; else its check, any warning added to
    ``notes``."""
    check = check_image(path)
    if check.problem:
        left_out.append(LeftOut(path, check.problem))
        return None
    if check.note:
        notes.append(f"{path}: {check.note}")
    return check


def load_unlabelled(directory: Path, *, limit: int | None = None) -> Dataset:
    """The images under ``directory`` (the first ``limit``), without ground truth: a
    dataset for the fidelity check only. Raises :class:`UserError` when none is usable."""
    candidates = images_in(directory)[:limit]
    images: list[EvalImage] = []
    left_out: list[LeftOut] = []
    notes: list[str] = []
    for path in candidates:
        check = usable(path, left_out, notes)
        if check is None:
            continue
        images.append(EvalImage(path, check.width, check.height, truth=None))
    finish(str(directory), len(candidates), images, left_out, notes)
    return Dataset(name=str(directory), class_names=(), images=tuple(images), labelled=False,
                   left_out=tuple(left_out))
