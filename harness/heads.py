"""Which output of an Ultralytics model is what, for every detector family, and decoding it.

Two layouts exist (``ultralytics/nn/modules/head.py``, ``engine/exporter.py``, 8.4):

- **anchors**: ``(1, 4 + nc + extra, A)`` (or transposed), one column per anchor over the
  strides 8, 16, 32 (A = 2100 at 320x320): boxes as centre x, y, width, height in input
  pixels (divided by the input size in LiteRT exports), then nc sigmoid class scores, then the
  task's extra channels: 32 mask coefficients (segment, with a second output, the mask
  prototypes (1, 32, H/4, W/4)), ``kpt_shape`` keypoint values (pose), one angle (OBB).
  YOLOv5u, v8, v9, v10, 11, 12 and YOLO26 all export this by default; it needs NMS.
- **detections**: ``(1, K, 6 + extra)`` rows of x1 y1 x2 y2 score class (then the same extra
  channels), K = ``max_det`` (300), score-ordered, zero rows after the last detection. The
  end-to-end one-to-one head (YOLOv10, YOLO26 with ``nms=False``) and any export with
  ``nms=True`` (NMS in the graph, its ``conf`` (0.25 by default) baked in). No NMS follows;
  Ultralytics keeps the rows scoring above ``conf`` (``ultralytics.utils.nms``, end2end
  branch), as :func:`decode_rows` does.

Segmentation and pose boxes are boxes: their box part is decoded and scored, the mask
coefficients and keypoints are left out. OBB (rotated boxes) and RT-DETR are not decoded: their
accuracy is skipped with the reason, their latency is still measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .accuracy import Detections, canonical, decode, detection_agreement, match_detections
from .model_metadata import ModelMetadata
from .preprocess import Letterbox
from .records import Fidelity

ANCHOR_STRIDES = ((8, 16, 32), (8, 16, 32, 64), (4, 8, 16, 32))
"""Detection strides of the shipped configs: P3-P5 (default), P3-P6 (``-p6``), P2-P5
(``-p2``)."""

OBB_REASON = ("the model is an oriented-box (OBB) model: its rotated boxes have no box mAP "
              "against axis-aligned labels, so edgebench measures its latency and memory only")
RTDETR_REASON = ("the model is an RT-DETR (RTDETRDecoder head), which edgebench does not "
                 "decode: it takes a stretched, not letterboxed, input (Ultralytics' "
                 "RTDETRPredictor), so edgebench measures its latency and memory only")


@dataclass(frozen=True)
class HeadLayout:
    """How to read a model's outputs (see the module docstring)."""

    kind: str
    """``"anchors"`` (needs NMS), ``"detections"`` (rows after NMS / end-to-end) or
    ``"rtdetr"`` (rows of centre x, y, w, h normalised to the input, score, class; Ultralytics
    8.4's RT-DETR export) or ``"obb"`` (an anchor head whose boxes are rotated): these two are
    read only to compare them with their reference, never scored."""
    task: str
    """``detect``, ``segment`` or ``pose``."""
    classes: int | None
    """Class count (``None``: a detections layout without metadata; class ids are read)."""
    extra: int
    """Channels after the class scores (mask coefficients, keypoint values)."""
    anchors_last: bool = True
    """Anchors layout: anchors on the last axis (``(1, C, A)``), else ``(1, A, C)``."""
    from_metadata: bool = False

    @property
    def scored(self) -> bool:
        """Its boxes are axis-aligned boxes: it gets a box mAP."""
        return self.kind in ("anchors", "detections")

    def describe(self) -> str:
        what = {"segment": " mask coefficients", "pose": " keypoint values"}.get(self.task, "")
        extra = f" + {self.extra}{what}" if self.extra else ""
        if self.kind == "anchors":
            return f"{self.task} head, 4 box + {self.classes} class{extra} channels per anchor"
        if self.kind == "obb":
            return f"OBB head, 4 box + {self.classes} class + 1 angle channels per anchor"
        if self.kind == "rtdetr":
            return "RT-DETR rows, cx cy w h (normalised) score class"
        return f"{self.task} detections after NMS, x1 y1 x2 y2 score class{extra} per row"


def anchor_counts(input_hw: tuple[int, int]) -> dict[int, tuple[int, ...]]:
    """Anchor count -> strides, for each stride set of :data:`ANCHOR_STRIDES`."""
    h, w = input_hw
    return {sum((h // s) * (w // s) for s in strides): strides for strides in ANCHOR_STRIDES}


def head_layout(shapes: Sequence[Sequence[int]], input_hw: tuple[int, int],
                metadata: ModelMetadata | None) -> tuple[HeadLayout | None, str | None]:
    """The layout of outputs of ``shapes`` (per output, batch first) for an ``input_hw``
    input, using the model's own ``metadata`` where it has any; or ``(None, why not)``.
    An RT-DETR or OBB model gives both: a layout to compare it with its reference, and why
    it is not scored.

    Without metadata: one output is a detector (4 + nc channels per anchor, or 6 columns per
    detection row); two outputs, the second (1, nm, h, w), a segmentation model.
    """
    task = _task(metadata)
    if metadata is not None and metadata.head == "RTDETRDecoder":
        # not scored, but its rows are compared with the reference's on their own terms
        rt_shape = tuple(int(d) for d in shapes[0]) if len(shapes) == 1 else ()
        nc_rt = len(metadata.names) if metadata.names else None
        layout = HeadLayout("rtdetr", "detect", nc_rt, 0, True, True) \
            if len(rt_shape) == 3 and rt_shape[0] == 1 and rt_shape[2] == 6 else None
        return layout, RTDETR_REASON
    if task == "obb":
        # not scored; read like an anchor head (4 + nc + 1 angle) to compare it with its
        # reference: boxes (denormalised where the backend normalises) and class scores
        obb = tuple(int(d) for d in shapes[0]) if len(shapes) == 1 else ()
        nc_obb = len(metadata.names) if metadata is not None and metadata.names else 0
        counts_obb = anchor_counts(input_hw)
        if nc_obb and len(obb) == 3 and obb[0] == 1 and (obb[1] in counts_obb) != (
                obb[2] in counts_obb) and 4 + nc_obb + 1 in (obb[1], obb[2]):
            return HeadLayout("obb", "obb", nc_obb, 1, obb[2] in counts_obb, True), OBB_REASON
        return None, OBB_REASON
    if task is not None and task not in ("detect", "segment", "pose"):
        return None, f"the model is an Ultralytics {task} model, which predicts no boxes"
    shapes = [tuple(int(d) for d in s) for s in shapes]
    proto = shapes[1] if len(shapes) == 2 and len(shapes[1]) == 4 else None
    if task is None:
        task = "segment" if proto is not None else "detect"
    if task == "segment" and proto is None:
        return None, (f"the model has {len(shapes)} outputs; a segmentation model has two "
                      "(detections, mask prototypes (1, 32, h, w))")
    if task != "segment" and len(shapes) != 1:
        return None, f"the model has {len(shapes)} outputs; a YOLO detection head has one"
    expected: int | None = 0
    if task == "segment":
        assert proto is not None
        expected = proto[1]
    elif task == "pose":
        kpt = metadata.kpt_shape if metadata is not None else None
        expected = kpt[0] * kpt[1] if kpt else None
    nc_meta = len(metadata.names) if metadata is not None and metadata.names else None
    first = shapes[0]
    counts = anchor_counts(input_hw)
    h, w = input_hw
    default_anchors = next(iter(counts))
    if len(first) != 3 or first[0] != 1:
        return None, (f"output shape {list(first)} is not a YOLO detection head "
                      f"(1, 4 + classes, {default_anchors}) for a {h}x{w} input")
    from_meta = metadata is not None
    rows_first = metadata is not None and metadata.post_nms and first[2] >= 6
    if not rows_first and (first[2] in counts or first[1] in counts):
        anchors_last = first[2] in counts
        channels = first[1] if anchors_last else first[2]
        if expected is None:  # pose without kpt_shape: the class count decides
            expected = channels - 4 - nc_meta if nc_meta else None
            if expected is None or expected <= 0:
                return None, ("the model is a pose model but its metadata gives no kpt_shape;"
                              " edgebench cannot tell its class scores from its keypoints")
        nc = channels - 4 - expected
        if nc_meta is not None and nc != nc_meta:
            return None, (f"output shape {list(first)} has {channels} channels per anchor, but "
                          f"a {task} head with the {nc_meta} classes of its metadata and "
                          f"{expected} extra channels has {4 + nc_meta + expected}")
        if nc < 1:
            return None, f"output shape {list(first)} has no class scores"
        return HeadLayout("anchors", task, nc, expected, anchors_last, from_meta), None
    if first[2] >= 6:
        extra = first[2] - 6
        if expected is None:
            expected = extra
        if extra != expected:
            hint = ("" if metadata is not None else "; without Ultralytics metadata edgebench "
                    "cannot tell which columns are what (export it with Ultralytics)")
            return None, (f"output shape {list(first)} is neither a YOLO head (1, 4 + classes,"
                          f" {default_anchors}) for a {h}x{w} input nor {task} detection rows "
                          f"(1, N, {6 + expected}){hint}")
        return HeadLayout("detections", task, nc_meta, extra, True, from_meta), None
    return None, (f"output shape {list(first)} is not a YOLO detection head "
                  f"(1, 4 + classes, {default_anchors}) for a {h}x{w} input")


def _task(metadata: ModelMetadata | None) -> str | None:
    """The task whose head made the outputs: the head's class name decides where it names
    one (``Segment26``, ``Pose``, ``OBB``...), else the ``task`` field."""
    if metadata is None:
        return None
    head = metadata.head or ""
    for marker, task in (("OBB", "obb"), ("Segment", "segment"), ("Pose", "pose")):
        if marker in head:
            return task
    return metadata.task


def canonical_head(outputs: Sequence[np.ndarray], layout: HeadLayout,
                   input_hw: tuple[int, int], boxes_normalised: bool | None) -> np.ndarray:
    """One image's outputs in canonical form, boxes in input pixels, extras dropped.

    anchors: (4 + nc, A), centre-size boxes then class scores (see
    :func:`edgebench.accuracy.canonical`); detections: (K, 6), x1 y1 x2 y2 score class. Rows
    of detections are taken as normalised when every box of a scoring row lies within
    [0, 1.5] (legacy onnx2tf TFLite; litert-torch's end-to-end output is in pixels, as
    Ultralytics' LiteRT backend notes), whatever the backend declares for anchor heads.
    """
    out = np.asarray(outputs[0], dtype=np.float32)
    out = out.reshape(out.shape[-2:]) if out.ndim == 3 else out
    if layout.kind in ("anchors", "obb"):
        if not layout.anchors_last:
            out = out.T
        assert layout.classes is not None
        return canonical(np.ascontiguousarray(out), input_hw, boxes_normalised)[
            :4 + layout.classes]
    rows = np.array(out[:, :6], dtype=np.float32)
    if layout.kind == "rtdetr":  # RTDETRValidator.postprocess: xywh2xyxy * input size
        h, w = input_hw
        xy, wh = rows[:, :2].copy(), rows[:, 2:4].copy()
        rows[:, :2], rows[:, 2:4] = xy - wh / 2, xy + wh / 2
        rows[:, [0, 2]] *= w
        rows[:, [1, 3]] *= h
        return rows
    scoring = rows[:, 4] > 0
    if scoring.any() and np.abs(rows[scoring, :4]).max() <= 1.5:
        h, w = input_hw
        rows[:, [0, 2]] *= w
        rows[:, [1, 3]] *= h
    return rows


def _to_original(boxes: np.ndarray, box: Letterbox) -> np.ndarray:
    """Input-pixel xyxy boxes -> original-image pixels, clipped (Ultralytics scale_boxes)."""
    boxes = (boxes - [box.pad_left, box.pad_top, box.pad_left, box.pad_top]) / box.ratio
    h, w = box.orig_hw
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return np.asarray(boxes, dtype=np.float64)


def decode_rows(rows: np.ndarray, box: Letterbox, *, conf: float, max_det: int) -> Detections:
    """(K, 6) detection rows of one image -> the rows scoring above ``conf`` (first
    ``max_det``), in original-image pixels; no NMS (the model did it)."""
    kept = rows[rows[:, 4] > conf][:max_det].astype(np.float64)
    return Detections(_to_original(kept[:, :4].copy(), box), kept[:, 4].copy(),
                      np.rint(kept[:, 5]).astype(np.int64))


def decode_head(layout: HeadLayout, canon: Sequence[np.ndarray],
                letterboxes: Sequence[Letterbox], *, conf: float, iou: float, max_det: int,
                multi_label: bool = True) -> list[Detections]:
    """Detections of every image from canonical outputs (see :func:`canonical_head`); an
    OBB's as axis-aligned boxes of its rotated boxes' centre and sides (for the agreement
    check only)."""
    if layout.kind in ("anchors", "obb"):
        return [decode(o, lb, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
                for o, lb in zip(canon, letterboxes)]
    return [decode_rows(o, lb, conf=conf, max_det=max_det) for o, lb in zip(canon, letterboxes)]


def detections_fidelity(reference_name: str, reference: Sequence[np.ndarray],
                        candidate: Sequence[np.ndarray], ref_dets: Sequence[Detections],
                        cand_dets: Sequence[Detections],
                        letterboxes: Sequence[Letterbox]) -> Fidelity:
    """Agreement of a case whose outputs are detection rows (or whose reference's are): on
    the detections themselves, not the raw rows, whose order swaps with near-equal scores.

    Each reference detection (at the agreement threshold) is matched to the candidate's
    detection of the same class with the highest IoU (one-to-one, by reference score);
    ``detection_agreement`` is the share matched at IoU >= 0.5; box (input pixels) and score
    differences are those of matched pairs. ``max_abs``/``mean_abs`` are of the raw outputs
    when they have the same shape (informational), else of the matched boxes.
    """
    box_d: list[float] = []
    score_d: list[float] = []
    for ref, cand, lb in zip(ref_dets, cand_dets, letterboxes):
        for r, c in match_detections(ref, cand):
            box_d.append(float(np.abs(ref.boxes[r] - cand.boxes[c]).max() * lb.ratio))
            score_d.append(abs(float(ref.scores[r] - cand.scores[c])))
    agreement, n_ref = detection_agreement(ref_dets, cand_dets)
    box_max = max(box_d, default=0.0)
    score_max = max(score_d, default=0.0)
    ref_flat = np.concatenate([np.ravel(r) for r in reference]) if reference else np.zeros(0)
    cand_flat = np.concatenate([np.ravel(c) for c in candidate]) if candidate else np.zeros(0)
    if ref_flat.shape == cand_flat.shape and ref_flat.size:
        diff = np.abs(ref_flat.astype(np.float64) - cand_flat.astype(np.float64))
        max_abs, mean_abs = float(diff.max()), float(diff.mean())
    else:
        max_abs, mean_abs = box_max, float(np.mean(box_d)) if box_d else 0.0
    return Fidelity(reference=reference_name, max_abs=max_abs, mean_abs=mean_abs,
                    box_max_abs_px=box_max, box_mean_abs_px=float(np.mean(box_d))
                    if box_d else 0.0, detection_box_max_abs_px=box_max,
                    score_max_abs=score_max,
                    score_mean_abs=float(np.mean(score_d)) if score_d else 0.0,
                    detection_agreement=agreement, reference_detections=n_ref)
