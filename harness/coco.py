"""mAP with pycocotools' ``COCOeval``: the numbers are the reference tool's, not computed here.

A COCO-layout dataset is scored against the user's own annotation file, loaded by
pycocotools as it is: its image ids, category ids (non-contiguous ones such as COCO's 80 of
90), crowd regions (detections on them are ignored) and areas. A YOLO-layout dataset is
written into an in-memory COCO first (category id = class index + 1, area = box area).
Only the evaluated images count (``params.imgIds``): ``--images N`` and left-out images
are not scored as misses.

A class without ground truth in the evaluated images has no AP (pycocotools marks it -1):
it is absent from the per-class figures, and the means are over the classes that have some,
as pycocotools' ``summarize`` and Ultralytics' ``ap_per_class`` do.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .dataset_records import Dataset

if TYPE_CHECKING:
    from .accuracy import Detections

MAX_DETS = (1, 10, 300)
"""COCOeval's maxDets: 300, Ultralytics' ``max_det``, instead of the default 100."""


@dataclass(frozen=True)
class MapResult:
    map50_95: float | None
    """Mean over the classes with ground truth; ``None`` when no class has any."""
    map50: float | None
    per_class_map50_95: dict[str, float]
    """Only the classes with ground truth in the evaluated images."""
    per_class_map50: dict[str, float]
    detections: int


def coco_map(dataset: Dataset, detections: Sequence[Detections]) -> MapResult:
    """mAP50-95 and mAP50 (and per class) of ``detections`` (one per ``dataset.images``, in
    original-image pixels) with pycocotools' COCOeval, area range "all", 300 detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if dataset.coco is not None:
            gt = COCO(str(dataset.coco.annotation_file))
            image_ids = [int(im.coco_id) for im in dataset.images if im.coco_id is not None]
            if len(image_ids) != len(dataset.images):
                raise ValueError("a COCO-layout image has no id in its annotation file")
            category_ids = list(dataset.coco.category_ids)
        else:
            gt = COCO()
            gt.dataset = _in_memory_gt(dataset)
            gt.createIndex()
            image_ids = list(range(1, len(dataset.images) + 1))
            category_ids = list(range(1, len(dataset.class_names) + 1))
    results: list[dict[str, Any]] = []
    for image_id, det in zip(image_ids, detections):
        for (x1, y1, x2, y2), score, cls in zip(det.boxes, det.scores, det.classes):
            results.append({"image_id": image_id, "category_id": category_ids[int(cls)],
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                            "score": float(score)})
    if not results:  # loadRes cannot take an empty list; every class with truth scores 0
        with_truth = _classes_with_truth(gt, image_ids, category_ids)
        zeros = {dataset.class_names[k]: 0.0 for k in with_truth}
        nothing = 0.0 if with_truth else None
        return MapResult(nothing, nothing, dict(zeros), dict(zeros), 0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.params.catIds = category_ids
        ev.params.maxDets = list(MAX_DETS)
        ev.evaluate()
        ev.accumulate()
    # precision[T, R, K, A, M]: IoU thresholds, recall points, classes (in catIds order),
    # areas (0 = all), max detections (-1 = 300). -1 marks a class without ground truth.
    precision = ev.eval["precision"]

    def per_class(t_slice: slice | int) -> dict[str, float]:
        out = {}
        for k, name in enumerate(dataset.class_names):
            p = precision[t_slice, :, k, 0, -1]
            p = p[p > -1]
            if p.size:
                out[name] = float(p.mean())
        return out

    def mean(p: np.ndarray) -> float | None:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else None

    return MapResult(mean(precision[:, :, :, 0, -1]), mean(precision[0, :, :, 0, -1]),
                     per_class(slice(None)), per_class(0), len(results))


def _in_memory_gt(dataset: Dataset) -> dict[str, Any]:
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for image_id, image in enumerate(dataset.images, 1):
        images.append({"id": image_id, "width": image.width, "height": image.height,
                       "file_name": image.path.name})
        if image.truth is None:
            raise ValueError(f"{image.path} has no ground truth")
        crowd = image.truth.crowd or (False,) * len(image.truth.boxes)
        for (x1, y1, x2, y2), cls, is_crowd in zip(image.truth.boxes, image.truth.classes,
                                                   crowd):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cls + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": int(is_crowd)})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(dataset.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _classes_with_truth(gt: Any, image_ids: list[int], category_ids: list[int]) -> list[int]:
    """Class indices with a non-crowd ground-truth box in the evaluated images (the classes
    COCOeval gives an AP)."""
    wanted = set(image_ids)
    present = {a["category_id"] for a in gt.dataset.get("annotations", [])
               if a["image_id"] in wanted and not a.get("iscrowd", 0)}
    return [k for k, c in enumerate(category_ids) if c in present]
