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

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .image_files import IMAGE_SUFFIXES as IMAGE_SUFFIXES  # re-exported (compression.py)
from .image_files import ImageCheck, check_image, is_image

_MAX_NAMED_WARNINGS = 10  # stderr names this many images per warning; the report names all


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


def _warn(message: str) -> None:
    print(f"edgebench: warning: {message}", file=sys.stderr)


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED_WARNINGS])
    more = len(items) - _MAX_NAMED_WARNINGS
    return shown + (f" and {more} more" if more > 0 else "")


def _finish(name: str, candidates: int, images: list[EvalImage], left_out: list[LeftOut],
            notes: list[str]) -> None:
    """Warn about left-out images and notes; refuse a dataset with no image left."""
    for note in notes:
        _warn(note)
    if left_out:
        _warn(f"{name}: left out {len(left_out)} of {candidates} images (the report names "
              f"them all): " + _named([f"{lo.path} ({lo.reason})" for lo in left_out]))
    if not images:
        first = left_out[0] if left_out else None
        why = f" ({first.path}: {first.reason})" if first else ""
        raise UserError(f"every one of the {candidates} images of {name} was left out as "
                        f"corrupt or unreadable{why}; fix or replace the files.")


def _images_in(directory: Path) -> list[Path]:
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



def _usable(path: Path, left_out: list[LeftOut], notes: list[str]) -> ImageCheck | None:
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
    candidates = _images_in(directory)[:limit]
    images: list[EvalImage] = []
    left_out: list[LeftOut] = []
    notes: list[str] = []
    for path in candidates:
        check = _usable(path, left_out, notes)
        if check is None:
            continue
        images.append(EvalImage(path, check.width, check.height, truth=None))
    _finish(str(directory), len(candidates), images, left_out, notes)
    return Dataset(name=str(directory), class_names=(), images=tuple(images), labelled=False,
                   left_out=tuple(left_out))


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path} is not readable YAML ({type(exc).__name__}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not an Ultralytics data.yaml (no mapping at top level).")
    return data


def _class_names(data: dict[str, Any], data_yaml: Path) -> tuple[str, ...]:
    """``names`` (list or mapping) or ``nc`` alone, as Ultralytics' ``check_det_dataset``."""
    names_raw, nc = data.get("names"), data.get("nc")
    if names_raw is None:
        if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
            return tuple(f"class_{i}" for i in range(nc))
        raise UserError(f"{data_yaml} has no 'names' list or mapping (nor an integer 'nc').")
    if isinstance(names_raw, list):
        names = {i: str(n) for i, n in enumerate(names_raw)}
    elif isinstance(names_raw, dict):
        try:
            names = {int(k): str(v) for k, v in names_raw.items()}
        except (TypeError, ValueError):
            raise UserError(f"{data_yaml} 'names' has keys that are not class indices.") \
                from None
    else:
        raise UserError(f"{data_yaml} has no 'names' list or mapping.")
    if not names or sorted(names) != list(range(len(names))):
        raise UserError(f"{data_yaml} 'names' must number classes 0..n-1 without gaps.")
    if nc is not None and nc != len(names):
        raise UserError(f"{data_yaml} has {len(names)} 'names' but 'nc: {nc}'; make them "
                        "match.")
    return tuple(names[i] for i in range(len(names)))


def _dataset_root(data: dict[str, Any], data_yaml: Path, split_value: object) -> Path:
    """The ``path:`` root. Ultralytics takes a relative ``path:`` from the working directory
    when it exists there (else from its settings' datasets_dir); edgebench takes the first of
    the working directory and the data.yaml's folder under which the split exists."""
    raw = data.get("path")
    if not raw:
        return data_yaml.parent.resolve()
    root = Path(str(raw))
    if root.is_absolute():
        return root
    candidates = [Path.cwd() / root, data_yaml.parent / root]
    first = str(split_value[0] if isinstance(split_value, list) and split_value
                else split_value)
    for candidate in candidates:
        if (candidate / first).exists() or (
                first.startswith("../") and (candidate / first[3:]).exists()):
            return candidate.resolve()
    return candidates[-1].resolve()


def _split_sources(value: object, root: Path, data_yaml: Path, split: str) -> list[Path]:
    """``val:`` as paths: one string or a list, each relative to the root; a string starting
    with ``../`` that does not exist is retried without it (as Ultralytics)."""
    if isinstance(value, str):
        path = (root / value).resolve()
        if not path.exists() and value.startswith("../"):
            path = (root / value[3:]).resolve()
        sources = [path]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        sources = [(root / v).resolve() for v in value]
    else:
        raise UserError(f"{data_yaml} {split!r} must be a path or a list of paths.")
    for source in sources:
        if not source.exists():
            raise UserError(f"{data_yaml}: the {split!r} images {source} do not exist.")
    return sources


def _image_files(sources: list[Path]) -> list[Path]:
    """Ultralytics' ``get_img_files``: folders recursively, ``.txt`` lists (UTF-8, ``./``
    lines relative to the list, other relative lines to the working directory); filtered by
    suffix, sorted by path string."""
    files: list[str] = []
    for source in sources:
        if source.is_dir():
            files += [str(p) for p in _images_in_or_none(source)]
            continue
        try:
            lines = source.read_text(encoding="utf-8-sig").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{source} is neither an image folder nor a readable .txt list "
                            f"of images ({type(exc).__name__}).") from None
        parent = str(source.parent) + os.sep
        files += [x.replace("./", parent, 1) if x.startswith("./") else x for x in lines]
    return sorted((Path(f) for f in files if is_image(Path(f))), key=str)


def _images_in_or_none(directory: Path) -> list[Path]:
    try:
        return _images_in(directory)
    except UserError:
        return []


def load_yolo(data_yaml: Path, *, split: str = "val", name: str | None = None,
              limit: int | None = None) -> Dataset:
    """Ultralytics layout: ``data.yaml`` with ``path``, ``val`` (images: folder, .txt list,
    or a list of either) and ``names`` (see the module docstring for the rules)."""
    data = _yaml(data_yaml)
    if split == "val" and "val" not in data and "validation" in data:
        data["val"] = data["validation"]
    names = _class_names(data, data_yaml)
    channels = data.get("channels", 3)
    if channels != 3:
        raise UserError(f"{data_yaml} has 'channels: {channels}'; edgebench evaluates "
                        "3-channel (colour) datasets only.")
    kpt_shape = data.get("kpt_shape")
    nkpt, ndim = (int(kpt_shape[0]), int(kpt_shape[1])) \
        if isinstance(kpt_shape, list) and len(kpt_shape) == 2 else (0, 0)
    if not data.get(split):
        raise UserError(f"{data_yaml} has no {split!r} split.")
    root = _dataset_root(data, data_yaml, data[split])
    sources = _split_sources(data[split], root, data_yaml, split)
    all_files = _image_files(sources)
    if not all_files:
        raise UserError(f"{data_yaml}: the {split!r} split ({', '.join(map(str, sources))}) "
                        f"holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    candidates = all_files[:limit]
    images: list[EvalImage] = []
    left_out: list[LeftOut] = []
    notes: list[str] = []
    background: list[str] = []
    for image_path in candidates:
        check = _usable(image_path, left_out, notes)
        if check is None:
            continue
        label = _label_path(image_path)
        if not label.is_file():
            background.append(str(image_path))
            truth = GroundTruth((), ())
        else:
            try:
                truth, note = _read_yolo_label(label, len(names), (nkpt, ndim),
                                               check.width, check.height)
            except _BadLabel as exc:
                left_out.append(LeftOut(image_path, f"label {label}: {exc}"))
                continue
            if note:
                notes.append(f"{label}: {note}")
        images.append(EvalImage(image_path, check.width, check.height, truth))
    if background:
        notes.append(f"{len(background)} images have no label file and count as background "
                     f"images without objects (as in Ultralytics): {_named(background)}")
    dataset_name = name or str(data_yaml)
    _finish(dataset_name, len(candidates), images, left_out, notes)
    return Dataset(name=dataset_name, class_names=names, images=tuple(images),
                   labelled=True, left_out=tuple(left_out))


def _label_path(image: Path) -> Path:
    """Ultralytics' ``img2label_paths``: the last ``/images/`` becomes ``/labels/`` and the
    suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


class _BadLabel(Exception):
    """A label file that makes Ultralytics leave its image out."""


def _segments_to_xywh(segments: list[np.ndarray]) -> np.ndarray:
    """Ultralytics' ``segments2boxes``: each polygon's bounding box as (cx, cy, w, h)."""
    xyxy = np.array([[s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()]
                     for s in segments], dtype=np.float32).reshape(-1, 4)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)


def _read_yolo_label(label: Path, n_classes: int, kpt_shape: tuple[int, int], width: int,
                     height: int) -> tuple[GroundTruth, str | None]:
    """Ultralytics' ``verify_image_label`` for a detection task: (boxes in pixels, clipped to
    the image as its validator's ``scale_boxes`` clips them; a note such as duplicates
    removed). Raises :class:`_BadLabel` with Ultralytics' reason when the image is left out."""
    nkpt, ndim = kpt_shape
    try:
        text = label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _BadLabel(f"not readable as UTF-8 text ({type(exc).__name__})") from None
    rows = [x.split() for x in text.strip().splitlines() if x.strip()]
    if nkpt:
        rows = [x[:5] if len(x) == 5 + nkpt * ndim else x for x in rows]
    segments: list[np.ndarray] = []
    try:
        if any(len(x) > 6 for x in rows):
            if any(len(x) == 5 for x in rows):
                raise _BadLabel("labels mix segment and detection rows")
            classes = np.array([x[0] for x in rows], dtype=np.float32)
            segments = [np.array(x[1:], dtype=np.float32).reshape(-1, 2) for x in rows]
            lb = np.concatenate((classes.reshape(-1, 1), _segments_to_xywh(segments)), 1)
        else:
            lb = np.array(rows, dtype=np.float32)
    except ValueError as exc:
        raise _BadLabel(f"rows are not numbers of one length ({exc})") from None
    note = None
    if len(lb):
        if lb.ndim != 2 or lb.shape[1] != 5:
            raise _BadLabel(f"labels require 5 columns, {lb.shape[-1]} columns detected")
        points = lb[:, 1:]
        if points.max() > 1.01:
            raise _BadLabel("non-normalized or out of bounds coordinates "
                            f"{points[points > 1.01].tolist()}")
        if not (lb.min() >= 0 or (lb.min() >= -0.01 and lb[:, 3:5].min() >= 0)):
            raise _BadLabel(f"negative label values {lb[lb < 0].tolist()}")
        if not (lb[:, 0] % 1 == 0).all():
            raise _BadLabel(f"non-integer class labels {lb[:, 0][lb[:, 0] % 1 != 0].tolist()}")
        if lb[:, 0].max() >= n_classes:
            raise _BadLabel(f"class {int(lb[:, 0].max())} exceeds the dataset's "
                            f"{n_classes} classes (0-{n_classes - 1})")
        _, keep = np.unique(lb, axis=0, return_index=True)
        if len(keep) < len(lb) and segments:  # distinct polygons can share a class and box
            keys = np.array([c.tobytes() + s.tobytes() for c, s in zip(lb[:, 0], segments)],
                            dtype=object)
            _, keep = np.unique(keys, return_index=True)
        if len(keep) < len(lb):
            note = f"{len(lb) - len(keep)} duplicate labels removed (as Ultralytics)"
            lb = lb[np.sort(keep)]
    xywh = lb[:, 1:].astype(np.float64) if len(lb) else np.zeros((0, 4))
    x1 = ((xywh[:, 0] - xywh[:, 2] / 2) * width).clip(0, width)
    y1 = ((xywh[:, 1] - xywh[:, 3] / 2) * height).clip(0, height)
    x2 = ((xywh[:, 0] + xywh[:, 2] / 2) * width).clip(0, width)
    y2 = ((xywh[:, 1] + xywh[:, 3] / 2) * height).clip(0, height)
    boxes = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in zip(x1, y1, x2, y2))
    classes_out = tuple(int(c) for c in (lb[:, 0] if len(lb) else ()))
    return GroundTruth(boxes, classes_out), note


def coco_image_roots(instances: Path) -> list[Path]:
    """Where the images of a COCO instances file are looked up, in this order; an image's
    ``file_name`` (which may hold a sub-path such as ``val2017/x.jpg``, or be absolute) is
    joined to each. With ``root = instances.parent.parent`` and ``split`` the file's name
    without ``instances_`` (``val2017``):

    - ``root/images/split``: Ultralytics' coco.yaml layout (``coco/images/val2017``);
    - ``root/split``: the official COCO download and pycocotools' examples
      (``coco/annotations/instances_val2017.json`` next to ``coco/val2017/``);
    - ``root/images``, ``instances.parent/images``, ``instances.parent`` (Roboflow-style
      ``valid/_annotations.coco.json`` beside its images), and ``root`` itself (a
      ``file_name`` relative to the dataset root).
    """
    root, split = instances.parent.parent, instances.stem.removeprefix("instances_")
    roots = [root / "images" / split, root / split, root / "images",
             instances.parent / "images", instances.parent, root]
    return list(dict.fromkeys(roots))


def load_coco(instances: Path, *, limit: int | None = None) -> Dataset:
    """COCO layout: an instances JSON; images found under :func:`coco_image_roots` (the
    official ``coco/val2017/``, Ultralytics' ``coco/images/val2017/``, ...). Scored against
    this very file (:class:`CocoSource`): crowd regions, areas, image and category ids are
    the file's."""
    try:
        data = json.loads(instances.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{instances} is not readable COCO JSON ({type(exc).__name__}).") \
            from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise UserError(f"{instances} is not a COCO instances file (needs images, "
                        "annotations and categories).")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if not categories:
        raise UserError(f"{instances} lists no categories.")
    cat_index = {c["id"]: i for i, c in enumerate(categories)}
    names = tuple(str(c["name"]) for c in categories)
    roots = coco_image_roots(instances)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) for v in bbox)
                or not isinstance(ann.get("area"), (int, float)) or "iscrowd" not in ann
                or "image_id" not in ann):
            raise UserError(f"{instances}: annotation {ann.get('id')} lacks an image_id, a "
                            "bbox of 4 numbers, an area or iscrowd, which pycocotools needs "
                            "to score against the file.")
        if ann.get("category_id") not in cat_index:
            raise UserError(f"{instances}: annotation {ann.get('id')} has category "
                            f"{ann.get('category_id')}, which is not in categories.")
        by_image.setdefault(ann["image_id"], []).append(ann)
    listed = sorted(data["images"], key=lambda i: str(i["file_name"]))
    if not listed:
        raise UserError(f"{instances} lists no images.")
    candidates = listed[:limit]
    images: list[EvalImage] = []
    left_out: list[LeftOut] = []
    notes: list[str] = []
    for info in candidates:
        path = next((r / info["file_name"] for r in roots if (r / info["file_name"]).is_file()),
                    None)
        if path is None:
            raise UserError(f"{instances} lists image {info['file_name']!r}, which is in none "
                            f"of {', '.join(str(r) for r in roots)}.")
        check = _usable(path, left_out, notes)
        if check is None:
            continue
        width, height = int(info["width"]), int(info["height"])
        if (check.width, check.height) != (width, height):
            raise UserError(f"{instances} says image {info['file_name']} is {height}×{width} "
                            f"(height×width) but it is {check.height}×{check.width} (after "
                            "EXIF orientation), so boxes and detections would be in different "
                            "frames; correct its width and height in the file.")
        boxes, classes, crowd = [], [], []
        for ann in by_image.get(info["id"], []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w < 0 or h < 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
                raise UserError(f"{instances}: annotation {ann.get('id')} has a box outside "
                                f"image {info['file_name']} ({height}×{width}, height×width).")
            boxes.append((x, y, x + w, y + h))
            classes.append(cat_index[ann["category_id"]])
            crowd.append(bool(ann.get("iscrowd", 0)))
        truth = GroundTruth(tuple(boxes), tuple(classes), tuple(crowd) if any(crowd) else ())
        images.append(EvalImage(path, width, height, truth, coco_id=int(info["id"])))
    _finish(str(instances), len(candidates), images, left_out, notes)
    return Dataset(name=str(instances), class_names=names, images=tuple(images),
                   labelled=True, left_out=tuple(left_out),
                   coco=CocoSource(instances.resolve(), tuple(int(c["id"]) for c in categories)))
