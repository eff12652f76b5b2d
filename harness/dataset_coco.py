"""A dataset in COCO layout: an instances ``.json`` and its images, scored by pycocotools
against the user's own file (:class:`~edgebench.dataset_records.CocoSource`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .dataset_images import finish, usable
from .dataset_records import CocoSource, Dataset, EvalImage, GroundTruth, LeftOut
from .errors import UserError


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
        check = usable(path, left_out, notes)
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
    finish(str(instances), len(candidates), images, left_out, notes)
    return Dataset(name=str(instances), class_names=names, images=tuple(images),
                   labelled=True, left_out=tuple(left_out),
                   coco=CocoSource(instances.resolve(), tuple(int(c["id"]) for c in categories)))
