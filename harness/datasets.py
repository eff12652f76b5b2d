"""Evaluation datasets: Ultralytics YOLO layout, COCO layout, or a folder of unlabelled images.

Which images and boxes a dataset holds follows the reference tools, so a figure here is the
figure they give on the same files:

- YOLO layout: Ultralytics' ``check_det_dataset``, ``get_img_files``, ``img2label_paths``
  and ``verify_image_label`` (``ultralytics/data``, 8.4): ``val:`` a folder, a ``.txt``
  list of images (``./`` lines relative to the list) or a list of either; an image without
  a label file is a background image (warned); duplicate label rows are removed; a segment
  (polygon) row becomes its bounding box; a pose row (``kpt_shape`` in data.yaml) keeps
  its box; an image whose label file breaks a rule (columns, class range, coordinates
  beyond 1.01 or below -0.01) is left out with the reason, as Ultralytics does;
- every image is checked as :func:`edgebench.image_files.check_image` says (corrupt,
  truncated or non-image files are left out, named in :attr:`Dataset.left_out`), and its
  size is the size after EXIF orientation, the size of the pixels the model sees;
- COCO layout: scored by pycocotools against the user's own annotation file
  (:class:`CocoSource`), so crowd regions, areas, image and category ids are the file's.

A dataset or split that cannot be used at all is a :class:`UserError` naming the file at
fault; so is a dataset whose every image is left out.
"""

from __future__ import annotations

from pathlib import Path

from .dataset_coco import coco_image_roots, load_coco
from .dataset_images import load_unlabelled
from .dataset_records import CocoSource, Dataset, EvalImage, GroundTruth, LeftOut
from .dataset_yolo import load_yolo
from .dataset_yolo import read_yaml as _yaml
from .errors import UserError
from .image_files import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "CocoSource", "Dataset", "EvalImage", "GroundTruth", "LeftOut",
           "_yaml", "coco_image_roots", "embedded_val_yaml", "load_coco", "load_dataset",
           "load_unlabelled", "load_yolo"]
"""Re-exported: the records and loaders are imported from here; ``_yaml`` (now
``dataset_yolo.read_yaml``) and ``IMAGE_SUFFIXES`` by ``compression.py`` and a plugin."""


def embedded_val_yaml() -> Path:
    """``data.yaml`` of the embedded shapes dataset's val split (generated once, cached).

    The train split is left out (``n_train=0``): evaluation needs only val, whose images
    are the same as in the full dataset (each image has its own seed).
    """
    from .shapes import default_shapes_dataset

    return default_shapes_dataset(n_train=0)


def load_dataset(path: Path | None, *, limit: int | None = None) -> Dataset:
    """``None``: the embedded shapes val split. A ``data.yaml`` (or a dir holding one): YOLO
    layout. A COCO instances ``.json`` (or a dir holding ``annotations/instances_*.json``):
    COCO layout. Any other directory of images: unlabelled (fidelity only).

    ``limit``: evaluate the first ``limit`` images (sorted by path; ``--images``); only these
    are checked, and left-out ones among them are not replaced by later images.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--images must be at least 1, got {limit}.")
    if path is None:
        return load_yolo(embedded_val_yaml(), name="embedded shapes val", limit=limit)
    if not path.exists():
        raise UserError(f"dataset {path} does not exist; pass a data.yaml, a COCO instances "
                        ".json or a directory of images to --data.")
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return load_yolo(path, limit=limit)
        if path.suffix == ".json":
            return load_coco(path, limit=limit)
        raise UserError(f"dataset {path} is neither a data.yaml nor a COCO .json file.")
    if (path / "data.yaml").is_file():
        return load_yolo(path / "data.yaml", limit=limit)
    coco = sorted((path / "annotations").glob("instances_*.json"))
    if coco:
        return load_coco(coco[0], limit=limit)
    return load_unlabelled(path, limit=limit)
