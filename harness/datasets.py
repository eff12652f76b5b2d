"""Evaluation datasets: Ultralytics YOLO layout, COCO layout, or a folder of unlabelled images.

Everything is validated when loaded, with errors that name the file (and line) at fault:
a missing directory, an image without a label file, a class id out of range, a box outside
the image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_EDGE_TOLERANCE = 1e-3  # normalised coordinates may overshoot [0, 1] by rounding


@dataclass(frozen=True)
class GroundTruth:
    """Boxes of one image in pixels (x1, y1, x2, y2) with class ids."""

    boxes: tuple[tuple[float, float, float, float], ...]
    classes: tuple[int, ...]


@dataclass(frozen=True)
class EvalImage:
    path: Path
    width: int
    height: int
    truth: GroundTruth | None


@dataclass(frozen=True)
class Dataset:
    """An ordered list of images, with ground truth when ``labelled``."""

    name: str
    class_names: tuple[str, ...]
    images: tuple[EvalImage, ...]
    labelled: bool

    def first(self, n: int | None) -> Dataset:
        """The first ``n`` images (deterministic: the order is sorted by path)."""
        if n is None:
            return self
        if n < 1:
            raise UserError(f"--images must be at least 1, got {n}.")
        return Dataset(self.name, self.class_names, self.images[:n], self.labelled)

    def fingerprint(self) -> str:
        """Hash of the images' content, sizes and labels: keys the tensor cache."""
        digest = hashlib.sha256(self.name.encode())
        for image in self.images:
            digest.update(hashlib.sha256(image.path.read_bytes()).digest())
            digest.update(repr((image.width, image.height, image.truth)).encode())
        return digest.hexdigest()[:24]


def embedded_val_yaml() -> Path:
    """``data.yaml`` of the embedded shapes dataset's val split (generated once, cached).

    The train split is left out (``n_train=0``): evaluation needs only val, whose images
    are the same as in the full dataset (each image has its own seed).
    """
    from .shapes import default_shapes_dataset

    return default_shapes_dataset(n_train=0)


def load_dataset(path: Path | None) -> Dataset:
    """``None``: the embedded shapes val split. A ``data.yaml`` (or a dir holding one): YOLO
    layout. A COCO instances ``.json`` (or a dir holding ``annotations/instances_*.json``):
    COCO layout. Any other directory of images: unlabelled (fidelity only)."""
    if path is None:
        return load_yolo(embedded_val_yaml(), name="embedded shapes val")
    if not path.exists():
        raise UserError(f"dataset {path} does not exist; pass a data.yaml, a COCO instances "
                        ".json or a directory of images to --data.")
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return load_yolo(path)
        if path.suffix == ".json":
            return load_coco(path)
        raise UserError(f"dataset {path} is neither a data.yaml nor a COCO .json file.")
    if (path / "data.yaml").is_file():
        return load_yolo(path / "data.yaml")
    coco = sorted((path / "annotations").glob("instances_*.json"))
    if coco:
        return load_coco(coco[0])
    return load_unlabelled(path)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            return int(width), int(height)
    except Exception as exc:
        raise UserError(f"{path} is not a readable image ({type(exc).__name__}).") from None


def _images_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UserError(f"image directory {directory} does not exist.")
    images = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"image directory {directory} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)}).")
    return images


def load_unlabelled(directory: Path) -> Dataset:
    images = tuple(EvalImage(p, *_image_size(p), truth=None) for p in _images_in(directory))
    return Dataset(name=str(directory), class_names=(), images=images, labelled=False)


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path} is not readable YAML ({type(exc).__name__}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an Ultralytics data.yaml (no mapping at top level).")
    return data


def load_yolo(data_yaml: Path, *, split: str = "val", name: str | None = None) -> Dataset:
    """Ultralytics layout: ``data.yaml`` with ``path``, ``val`` (images dir) and ``names``."""
    data = _yaml(data_yaml)
    names_raw = data.get("names")
    if isinstance(names_raw, dict):
        names = tuple(str(names_raw[k]) for k in sorted(names_raw))
    elif isinstance(names_raw, list):
        names = tuple(str(n) for n in names_raw)
    else:
        raise UserError(f"{data_yaml} has no 'names' list or mapping.")
    root = Path(str(data.get("path") or data_yaml.parent))
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    if split not in data:
        raise UserError(f"{data_yaml} has no {split!r} split.")
    images_dir = root / str(data[split])
    images = []
    for image_path in _images_in(images_dir):
        label = _label_path(image_path)
        width, height = _image_size(image_path)
        if not label.is_file():
            raise UserError(f"image {image_path} has no label file {label} (an image without "
                            "objects needs an empty one).")
        images.append(EvalImage(image_path, width, height,
                                _read_yolo_label(label, len(names), width, height)))
    return Dataset(name=name or str(data_yaml), class_names=names, images=tuple(images),
                   labelled=True)


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read_yolo_label(label: Path, n_classes: int, width: int, height: int) -> GroundTruth:
    boxes, classes = [], []
    for lineno, line in enumerate(label.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label}:{lineno}"
        if len(fields) != 5:
            raise UserError(f"{where} has {len(fields)} fields; a YOLO label line is "
                            "'class cx cy w h'.")
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise UserError(f"{where} is not 'class cx cy w h' with numbers.") from None
        if not 0 <= cls < n_classes:
            raise UserError(f"{where} has class {cls}, outside the dataset's {n_classes} "
                            f"classes (0..{n_classes - 1}).")
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if (w <= 0 or h <= 0 or min(x1, y1) < -_EDGE_TOLERANCE
                or max(x2, y2) > 1 + _EDGE_TOLERANCE):
            raise UserError(f"{where} has a box outside the image (normalised "
                            f"x1={x1:.3f} y1={y1:.3f} x2={x2:.3f} y2={y2:.3f}).")
        boxes.append((max(x1, 0.0) * width, max(y1, 0.0) * height,
                      min(x2, 1.0) * width, min(y2, 1.0) * height))
        classes.append(cls)
    return GroundTruth(tuple(boxes), tuple(classes))


def load_coco(instances: Path) -> Dataset:
    """COCO layout: an instances JSON; images in the JSON's sibling ``images`` dir (or the
    dir named like the JSON's split, or next to the JSON)."""
    try:
        data = json.loads(instances.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{instances} is not readable COCO JSON ({type(exc).__name__}).") \
            from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise UserError(f"{instances} is not a COCO instances file (needs images, "
                        "annotations and categories).")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(categories)}
    names = tuple(str(c["name"]) for c in categories)
    roots = [instances.parent.parent / "images", instances.parent / "images", instances.parent]
    split = instances.stem.removeprefix("instances_")
    roots.insert(0, instances.parent.parent / "images" / split)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = []
    for info in sorted(data["images"], key=lambda i: i["file_name"]):
        path = next((r / info["file_name"] for r in roots if (r / info["file_name"]).is_file()),
                    None)
        if path is None:
            raise UserError(f"{instances} lists image {info['file_name']!r}, which is in none "
                            f"of {', '.join(str(r) for r in roots)}.")
        width, height = int(info["width"]), int(info["height"])
        boxes, classes = [], []
        for ann in by_image.get(info["id"], []):
            if ann.get("iscrowd"):
                continue
            if ann["category_id"] not in cat_index:
                raise UserError(f"{instances}: annotation {ann.get('id')} has category "
                                f"{ann['category_id']}, which is not in categories.")
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
                raise UserError(f"{instances}: annotation {ann.get('id')} has a box outside "
                                f"image {info['file_name']} ({width}x{height}).")
            boxes.append((x, y, x + w, y + h))
            classes.append(cat_index[ann["category_id"]])
        images.append(EvalImage(path, width, height, GroundTruth(tuple(boxes), tuple(classes))))
    if not images:
        raise UserError(f"{instances} lists no images.")
    return Dataset(name=str(instances), class_names=names, images=tuple(images),
                   labelled=True)
