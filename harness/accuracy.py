"""Accuracy of what ran on the device: decode the YOLOv8 head, NMS, mAP, fidelity.

The device returns raw outputs; everything here runs on the host. Decoding and NMS follow
Ultralytics (``ultralytics.utils.nms.non_max_suppression``: candidates above ``conf``,
multi-label, class-offset greedy NMS at ``iou``, at most ``max_det``); mAP comes from
pycocotools' ``COCOeval`` in :mod:`edgebench.coco`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .preprocess import Letterbox
from .records import Fidelity, Tolerance

MAX_WH = 7680.0  # class offset for batched NMS, as Ultralytics


@dataclass(frozen=True)
class AccuracySettings:
    conf: float = 0.001
    """Score threshold for mAP (Ultralytics val uses 0.001)."""
    iou: float = 0.7
    max_det: int = 300
    agreement_conf: float = 0.25
    """Score threshold for detection-level agreement (a deployment threshold)."""


@dataclass(frozen=True)
class Detections:
    """Detections of one image in original-image pixels."""

    boxes: np.ndarray  # (n, 4) x1 y1 x2 y2
    scores: np.ndarray  # (n,)
    classes: np.ndarray  # (n,) int


def head_problem(shape: Sequence[int], input_hw: tuple[int, int],
                 n_classes: int | None = None) -> str | None:
    """Why an output of ``shape`` is not a YOLOv8 detection head, or ``None`` if it is.

    A YOLOv8 head gives (1, 4 + nc, A) with A anchors over strides 8, 16 and 32.
    """
    h, w = input_hw
    anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
    if len(shape) != 3 or shape[0] != 1 or anchors not in (shape[1], shape[2]):
        return (f"output shape {list(shape)} is not a YOLOv8 detection head "
                f"(1, 4 + classes, {anchors}) for a {h}x{w} input")
    channels = shape[1] if shape[2] == anchors else shape[2]
    if channels <= 4:
        return f"output shape {list(shape)} has no class scores"
    if n_classes is not None and channels - 4 != n_classes:
        return f"the model predicts {channels - 4} classes but the dataset has {n_classes}"
    return None


def canonical(output: np.ndarray, input_hw: tuple[int, int],
              boxes_normalised: bool | None = None) -> np.ndarray:
    """(4 + nc, A) with boxes in input pixels, whatever the layout the backend produced.

    Handles (1, A, 4 + nc) (transposed) and boxes normalised to [0, 1] by the input size
    (LiteRT exports). ``boxes_normalised=None`` detects the latter: every box centre
    within [0, 1.5] cannot be a pixel coordinate of a real detection grid.
    """
    h, w = input_hw
    anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
    out = np.asarray(output, dtype=np.float32)
    out = out.reshape(out.shape[-2:]) if out.ndim == 3 else out
    if out.shape[0] == anchors and out.shape[1] != anchors:
        out = out.T
    if boxes_normalised is None:
        boxes_normalised = bool(np.abs(out[:2]).max(initial=0.0) <= 1.5)
    if boxes_normalised:
        out = out.copy()
        out[[0, 2]] *= w
        out[[1, 3]] *= h
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        ih = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = iw * ih
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode(out: np.ndarray, box: Letterbox, *, conf: float, iou: float, max_det: int,
           multi_label: bool = True) -> Detections:
    """Canonical head output of one image -> detections in original-image pixels."""
    scores_all = out[4:].T  # (A, nc)
    xywh = out[:4].T
    candidates = scores_all.max(axis=1) > conf
    xywh, scores_all = xywh[candidates], scores_all[candidates]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    if multi_label and scores_all.shape[1] > 1:
        i, j = np.nonzero(scores_all > conf)
        boxes, scores, classes = xyxy[i], scores_all[i, j], j
    else:
        classes = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(classes)), classes]
        keep = scores > conf
        boxes, scores, classes = xyxy[keep], scores[keep], classes[keep]
    if len(scores) > 30000:
        top = np.argsort(-scores, kind="stable")[:30000]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    kept = nms(boxes + classes[:, None] * MAX_WH, scores, iou)[:max_det]
    boxes, scores, classes = boxes[kept], scores[kept], classes[kept]
    # undo the letterbox, clip to the image
    boxes = (boxes - [box.pad_left, box.pad_top, box.pad_left, box.pad_top]) / box.ratio
    h, w = box.orig_hw
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return Detections(boxes.astype(np.float64), scores.astype(np.float64),
                      classes.astype(np.int64))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (br - tl).clip(0).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9))


def match_detections(ref: Detections, cand: Detections, iou: float = 0.5
                     ) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of one image's detections: each reference box, highest
    score first, takes the unused candidate box of the same class with the highest IoU, if
    that IoU is ``iou`` or more. Returns the (reference index, candidate index) pairs."""
    if not len(ref.scores) or not len(cand.scores):
        return []
    ious = box_iou(ref.boxes, cand.boxes)
    ious[ref.classes[:, None] != cand.classes[None, :]] = 0.0
    used = np.zeros(len(cand.scores), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for r in np.argsort(-ref.scores, kind="stable"):
        row = np.where(used, 0.0, ious[r])
        best = int(row.argmax())
        if row[best] >= iou:
            used[best] = True
            pairs.append((int(r), best))
    return pairs


def detection_agreement(reference: Sequence[Detections], candidate: Sequence[Detections],
                        iou: float = 0.5) -> tuple[float | None, int]:
    """Share of reference boxes matched by a candidate box (:func:`match_detections`); and
    the number of reference boxes."""
    total = sum(len(ref.scores) for ref in reference)
    matched = sum(len(match_detections(ref, cand, iou))
                  for ref, cand in zip(reference, candidate))
    return (matched / total if total else None), total


def output_fidelity(reference_name: str, reference: Sequence[np.ndarray],
                    candidate: Sequence[np.ndarray], ref_dets: Sequence[Detections],
                    cand_dets: Sequence[Detections], *, head: bool,
                    agreement_conf: float = 0.25) -> Fidelity:
    """Raw-output differences (boxes and scores apart for a detection head) and agreement.

    Boxes are also compared on the anchors the reference scores at ``agreement_conf`` or
    more (the boxes that become detections): background anchors' boxes are meaningless and
    swing by pixels under mere fp16 rounding, so the agreement check judges these."""
    ref = np.concatenate([np.ravel(r) for r in reference])
    cand = np.concatenate([np.ravel(c) for c in candidate])
    if ref.shape != cand.shape:
        raise ValueError(f"outputs have {cand.size} values, the reference {ref.size}")
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    box_max = box_mean = score_max = score_mean = det_box_max = None
    if head:
        det_box = [np.abs(r[:4] - c[:4])[:, r[4:].max(axis=0) >= agreement_conf].ravel()
                   for r, c in zip(reference, candidate)]
        det_box_d = np.concatenate(det_box) if det_box else np.zeros(0)
        det_box_max = float(det_box_d.max()) if det_box_d.size else 0.0
        box_d = np.concatenate([np.abs(r[:4] - c[:4]).ravel()
                                for r, c in zip(reference, candidate)])
        score_d = np.concatenate([np.abs(r[4:] - c[4:]).ravel()
                                  for r, c in zip(reference, candidate)])
        box_max, box_mean = float(box_d.max()), float(box_d.mean())
        score_max, score_mean = float(score_d.max()), float(score_d.mean())
    agreement, n_ref = detection_agreement(ref_dets, cand_dets) if head else (None, 0)
    return Fidelity(reference=reference_name, max_abs=float(diff.max()),
                    mean_abs=float(diff.mean()), box_max_abs_px=box_max,
                    detection_box_max_abs_px=det_box_max,
                    box_mean_abs_px=box_mean, score_max_abs=score_max,
                    score_mean_abs=score_mean, detection_agreement=agreement,
                    reference_detections=n_ref)


# -- the agreement check: how far a conversion may move the outputs ----------------------

FP32_TOLERANCE = Tolerance(
    box_max_abs_px=0.02, score_max_abs=1e-4, min_detection_agreement=0.99, raw_max_rel=1e-3,
    basis="fp32: measured here on the embedded YOLOv8n, 100 val images, 320 and 640 px, "
          "against PyTorch: ONNX Runtime, LiteRT and ncnn within 0.005 px on boxes and 1e-5 "
          "on scores, agreement 1.0; fp16 weights move detection boxes by 0.1 px and scores "
          "by 7e-3, so they fail it")
"""An fp32 artifact on any runtime: well above fp32 rounding, below what fp16 weights (a
pnnx default) or a broken conversion do. Boxes are judged on the anchors that become
detections (``Fidelity.detection_box_max_abs_px``)."""

FP16_TOLERANCE = Tolerance(
    box_max_abs_px=1.0, score_max_abs=0.03, min_detection_agreement=0.95, raw_max_rel=2e-2,
    basis="fp16 weights or arithmetic: fp16 weights measured here at 0.1 px on detection "
          "boxes and 7.5e-3 on scores (100 val images, 320 px); fp16 arithmetic (ARMv8.2+, "
          "Vulkan) could not be measured on this x86 host, hence the wider margin")
"""fp16 storage or arithmetic (ncnn's fp16 options, fp16 weights)."""


def precision_tolerance(precision: str | None) -> Tolerance | None:
    """The agreement tolerance of an uncompressed artifact of ``precision`` (read from its
    graph, see :mod:`edgebench.precision`): fp32 (or unknown) -> :data:`FP32_TOLERANCE`,
    fp16 -> :data:`FP16_TOLERANCE`; int8 and mixed -> ``None`` (judged by their mAP, as
    compressed artifacts are)."""
    if precision in (None, "fp32"):
        return FP32_TOLERANCE
    if precision == "fp16":
        return FP16_TOLERANCE
    return None


def check_tolerance(fidelity: Fidelity, tolerance: Tolerance | None,
                    reference: Sequence[np.ndarray]) -> Fidelity:
    """``fidelity`` with the tolerance and whether the outputs are within it."""
    import dataclasses

    if tolerance is None:
        return fidelity
    return dataclasses.replace(fidelity, tolerance=tolerance, within_tolerance=not
                               tolerance_problems(fidelity, tolerance, reference))


def tolerance_problems(fidelity: Fidelity, tolerance: Tolerance,
                       reference: Sequence[np.ndarray]) -> list[str]:
    """The figures outside ``tolerance``, as phrases (empty: within)."""
    problems: list[str] = []
    if fidelity.detection_box_max_abs_px is not None and fidelity.score_max_abs is not None:
        if fidelity.detection_box_max_abs_px > tolerance.box_max_abs_px:
            problems.append(f"boxes of detections differ by up to "
                            f"{fidelity.detection_box_max_abs_px:.3g} px "
                            f"(tolerance {tolerance.box_max_abs_px:g})")
        if fidelity.score_max_abs > tolerance.score_max_abs:
            problems.append(f"scores differ by up to {fidelity.score_max_abs:.3g} "
                            f"(tolerance {tolerance.score_max_abs:g})")
        agreement = fidelity.detection_agreement
        if agreement is not None and agreement < tolerance.min_detection_agreement:
            problems.append(f"only {agreement:.1%} of the reference's "
                            f"{fidelity.reference_detections} detections are matched "
                            f"(tolerance {tolerance.min_detection_agreement:.0%})")
        return problems
    scale = max((float(np.abs(r).max(initial=0.0)) for r in reference), default=0.0)
    if fidelity.max_abs > tolerance.raw_max_rel * max(scale, 1e-12):
        problems.append(f"outputs differ by up to {fidelity.max_abs:.3g}, "
                        f"{fidelity.max_abs / max(scale, 1e-12):.2g} of their largest value "
                        f"(tolerance {tolerance.raw_max_rel:g})")
    return problems
