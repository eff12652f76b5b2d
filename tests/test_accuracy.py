"""Decoding, NMS, un-letterboxing, mAP against an independent library, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgebench.accuracy import (
    Detections,
    canonical,
    decode,
    detection_agreement,
    head_problem,
    nms,
)
from edgebench.coco import coco_map
from edgebench.datasets import Dataset, EvalImage, GroundTruth
from edgebench.preprocess import Letterbox, letterbox

HW = (64, 64)
ANCHORS = 8 * 8 + 4 * 4 + 2 * 2  # strides 8, 16, 32 on 64x64


def head_with(boxes_xywh: list[tuple[float, float, float, float]],
              scores: list[list[float]]) -> np.ndarray:
    """A (1, 4 + nc, A) head output with the given anchors filled, the rest empty."""
    nc = len(scores[0])
    out = np.zeros((1, 4 + nc, ANCHORS), np.float32)
    out[0, :4, :] = 1.0
    for a, (box, sc) in enumerate(zip(boxes_xywh, scores)):
        out[0, :4, a] = box
        out[0, 4:, a] = sc
    return out


def test_head_problem() -> None:
    assert head_problem((1, 8, ANCHORS), HW) is None
    assert head_problem((1, ANCHORS, 8), HW) is None
    assert "not a YOLOv8 detection head" in head_problem((1, 1000), HW)  # type: ignore[operator]
    assert "predicts 4 classes but the dataset has 3" in head_problem(  # type: ignore[operator]
        (1, 8, ANCHORS), HW, n_classes=3)


def test_canonical_layouts() -> None:
    out = head_with([(32, 32, 10, 20)], [[0.9, 0.1]])
    ref = canonical(out, HW)
    assert ref.shape == (6, ANCHORS) and ref[0, 0] == 32
    assert np.array_equal(canonical(out.transpose(0, 2, 1), HW), ref)  # (1, A, 4 + nc)
    normalised = out.copy()
    normalised[0, [0, 2]] /= 64
    normalised[0, [1, 3]] /= 64
    assert np.allclose(canonical(normalised, HW), ref)  # LiteRT-style boxes / imgsz
    assert np.allclose(canonical(normalised, HW, boxes_normalised=True), ref)


def test_nms_greedy() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float64)
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]


def test_decode_undoes_the_letterbox_and_keeps_classes_apart() -> None:
    # a 128 x 64 (w x h) image letterboxed into 64 x 64: ratio 0.5, padded 16 px top/bottom
    image = np.zeros((64, 128, 3), np.uint8)
    padded, box = letterbox(image, HW)
    assert padded.shape == (64, 64, 3) and box == Letterbox(0.5, 0, 16, (64, 128))
    out = canonical(head_with(
        [(32, 32, 20, 10), (32.5, 32, 20, 10), (32, 32, 20, 10), (10, 40, 4, 4)],
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.6], [0.0005, 0.0]]), HW)
    det = decode(out, box, conf=0.001, iou=0.7, max_det=300)
    # the overlapping class-0 box is suppressed; the same box as class 1 is kept;
    # the 0.0005 one is below conf
    assert sorted(det.classes.tolist()) == [0, 1]
    first = det.boxes[det.classes == 0][0]
    assert first == pytest.approx([(22 - 0) / 0.5, (27 - 16) / 0.5, (42 - 0) / 0.5,
                                   (37 - 16) / 0.5])
    assert det.scores[det.classes == 0][0] == pytest.approx(0.9)


def test_decode_multi_label() -> None:
    out = canonical(head_with([(32, 32, 20, 20)], [[0.5, 0.4]]), HW)
    box = Letterbox(1.0, 0, 0, HW)
    assert len(decode(out, box, conf=0.3, iou=0.7, max_det=300).scores) == 2
    assert len(decode(out, box, conf=0.3, iou=0.7, max_det=300, multi_label=False).scores) == 1


def test_decode_clips_to_the_image() -> None:
    out = canonical(head_with([(2, 2, 10, 10)], [[0.9]]), HW)
    det = decode(out, Letterbox(1.0, 0, 0, HW), conf=0.1, iou=0.7, max_det=300)
    assert det.boxes[0].tolist() == [0, 0, 7, 7]


def random_case(seed: int) -> tuple[Dataset, list[Detections]]:
    """Ground truth and noisy detections (some misses, false positives, wrong classes)."""
    rng = np.random.default_rng(seed)
    images, dets = [], []
    for i in range(12):
        w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 0.6, (n, 2)) * [w, h]
        wh = rng.uniform(0.1, 0.4, (n, 2)) * [w, h]
        boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
        classes = rng.integers(0, 3, n)
        images.append(EvalImage(Path(f"im{i}.png"), w, h, GroundTruth(
            tuple(tuple(float(v) for v in b) for b in boxes), tuple(int(c) for c in classes))))
        keep = rng.random(n) > 0.2
        pred = boxes[keep] + rng.normal(0, 6, (int(keep.sum()), 4))
        pred_cls = np.where(rng.random(int(keep.sum())) > 0.1, classes[keep], 2)
        fp = rng.integers(0, 3)
        fp_xy = rng.uniform(0, 0.5, (fp, 2)) * [w, h]
        pred = np.concatenate([pred, np.concatenate([fp_xy, fp_xy + 40], 1)])
        pred[:, [0, 2]] = pred[:, [0, 2]].clip(0, w)
        pred[:, [1, 3]] = pred[:, [1, 3]].clip(0, h)
        pred_cls = np.concatenate([pred_cls, rng.integers(0, 3, fp)])
        dets.append(Detections(pred, rng.uniform(0.05, 1.0, len(pred)), pred_cls.astype(int)))
    return Dataset("random", ("a", "b", "c"), tuple(images), True), dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_an_independent_library(tmp_path: Path, seed: int) -> None:
    """Our numbers (pycocotools in memory) vs faster-coco-eval on COCO JSON files."""
    from faster_coco_eval import COCO, COCOeval_faster

    dataset, dets = random_case(seed)
    ours = coco_map(dataset, dets)

    gt = {"images": [], "annotations": [], "categories": [
        {"id": 7 + k, "name": n} for k, n in enumerate(dataset.class_names)]}
    results = []
    for i, (im, det) in enumerate(zip(dataset.images, dets)):
        gt["images"].append({"id": 1000 + i, "width": im.width, "height": im.height,
                             "file_name": im.path.name})
        assert im.truth is not None
        for (x1, y1, x2, y2), c in zip(im.truth.boxes, im.truth.classes):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": 1000 + i,
                                      "category_id": 7 + c, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                      "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for b, s, c in zip(det.boxes, det.scores, det.classes):
            results.append({"image_id": 1000 + i, "category_id": 7 + int(c), "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                     float(b[3] - b[1])]})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    coco_dt = coco_gt.loadRes(str(tmp_path / "dt.json"))
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a: None)
    ev.params.maxDets = [1, 10, 300]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ours.map50_95 == pytest.approx(ev.stats[0], abs=1e-4)
    assert ours.map50 == pytest.approx(ev.stats[1], abs=1e-4)
    assert 0.05 < ours.map50_95 < 0.95  # a case with something to get wrong
    per_class = ev.eval["precision"][:, :, :, 0, -1]
    for k, name in enumerate(dataset.class_names):
        p = per_class[:, :, k]
        assert ours.per_class_map50_95[name] == pytest.approx(p[p > -1].mean(), abs=1e-4)


def test_perfect_detections_score_one() -> None:
    dataset, _ = random_case(5)
    perfect = [Detections(np.array(im.truth.boxes), np.ones(len(im.truth.boxes)),  # type: ignore[union-attr]
                          np.array(im.truth.classes)) for im in dataset.images]  # type: ignore[union-attr]
    result = coco_map(dataset, perfect)
    assert result.map50_95 == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)


def test_detection_agreement() -> None:
    ref = [Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0.9, 0.8]),
                      np.array([0, 1]))]
    same = detection_agreement(ref, ref)
    assert same == (1.0, 2)
    shifted = [Detections(np.array([[1, 1, 11, 11], [20, 20, 30, 30]], float),
                          np.array([0.9, 0.8]), np.array([0, 0]))]  # second has a wrong class
    assert detection_agreement(ref, shifted) == (0.5, 2)
    assert detection_agreement(ref, [Detections(np.zeros((0, 4)), np.zeros(0),
                                                np.zeros(0, int))]) == (0.0, 2)
