"""The records of an evaluation dataset: its images, their ground truth, the images left
out and why, and (COCO layout) the user's own annotation file. Loaders: ``datasets.py``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class GroundTruth:
    """Boxes of one image in pixels (x1, y1, x2, y2) with class ids (0-based indices into
    ``Dataset.class_names``). ``crowd[i]`` marks a COCO ``iscrowd`` region (empty: none):
    detections on it are ignored by pycocotools, neither true nor false positives."""

    boxes: tuple[tuple[float, float, float, float], ...]
    classes: tuple[int, ...]
    crowd: tuple[bool, ...] = ()


@dataclass(frozen=True)
class EvalImage:
    path: Path
    width: int
    """Width in pixels after EXIF orientation (the decoded image's)."""
    height: int
    truth: GroundTruth | None
    coco_id: int | None = None
    """The image's id in the user's COCO annotation file (COCO layout only)."""


@dataclass(frozen=True)
class LeftOut:
    """An image the evaluation leaves out, and why (corrupt, truncated, a broken label)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class CocoSource:
    """The user's own COCO annotation file, which pycocotools scores against as it is."""

    annotation_file: Path
    category_ids: tuple[int, ...]
    """The category id of each class index (the file's categories sorted by id)."""


@dataclass(frozen=True)
class Dataset:
    """An ordered list of images, with ground truth when ``labelled``."""

    name: str
    class_names: tuple[str, ...]
    images: tuple[EvalImage, ...]
    labelled: bool
    left_out: tuple[LeftOut, ...] = ()
    """Images of the evaluated range left out, with the reason (the report names them)."""
    coco: CocoSource | None = None

    def first(self, n: int | None) -> Dataset:
        """The first ``n`` evaluated images (the order is sorted by path). ``left_out`` is
        kept as is: pass ``limit`` to :func:`load_dataset` to check only the first ``n``."""
        if n is None:
            return self
        if n < 1:
            raise UserError(f"--images must be at least 1, got {n}.")
        return Dataset(self.name, self.class_names, self.images[:n], self.labelled,
                       self.left_out, self.coco)

    def fingerprint(self) -> str:
        """Hash of the images' content, sizes and labels and of the class names: keys the
        tensor cache and identifies the evaluation set in comparisons. Not the dataset's
        path: the same files copied elsewhere are the same set."""
        digest = hashlib.sha256(repr((self.class_names, self.labelled)).encode())
        for image in self.images:
            digest.update(hashlib.sha256(image.path.read_bytes()).digest())
            digest.update(repr((image.width, image.height, image.truth)).encode())
        return digest.hexdigest()[:24]
