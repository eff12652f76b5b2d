"""A dataset in Ultralytics' YOLO layout (a ``data.yaml``), read as Ultralytics reads it:
``check_det_dataset``, ``get_img_files``, ``img2label_paths`` and ``verify_image_label``
(``ultralytics/data``, 8.4); see ``datasets.py`` for the rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .dataset_images import finish, images_in, named, usable
from .dataset_records import Dataset, EvalImage, GroundTruth, LeftOut
from .errors import UserError
from .image_files import IMAGE_SUFFIXES, is_image


def read_yaml(path: Path) -> dict[str, Any]:
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
        return images_in(directory)
    except UserError:
        return []


def load_yolo(data_yaml: Path, *, split: str = "val", name: str | None = None,
              limit: int | None = None) -> Dataset:
    """Ultralytics layout: ``data.yaml`` with ``path``, ``val`` (images: folder, .txt list,
    or a list of either) and ``names`` (see the module docstring for the rules)."""
    data = read_yaml(data_yaml)
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
        check = usable(image_path, left_out, notes)
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
                     f"images without objects (as in Ultralytics): {named(background)}")
    dataset_name = name or str(data_yaml)
    finish(dataset_name, len(candidates), images, left_out, notes)
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
