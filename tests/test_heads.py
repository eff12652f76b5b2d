"""Head layouts from shapes and metadata (fast; the real exports are in test_head_variants)."""

from __future__ import annotations

import numpy as np

from edgebench.heads import OBB_REASON, RTDETR_REASON, canonical_head, decode_rows, head_layout
from edgebench.model_metadata import ModelMetadata, from_mapping
from edgebench.preprocess import Letterbox

HW = (320, 320)
A = 2100


def meta(**fields: object) -> ModelMetadata | None:
    base = {"task": "detect", "head": "Detect", "names": "{0: 'a', 1: 'b', 2: 'c', 3: 'd'}",
            "args": "{'nms': None}", "end2end": "False"}
    return from_mapping({**base, **{k: str(v) for k, v in fields.items()}}, "test")


def test_layouts_with_metadata() -> None:
    seg = head_layout([(1, 40, A), (1, 32, 80, 80)], HW, meta(task="segment", head="Segment"))
    assert seg[0] is not None and (seg[0].classes, seg[0].extra) == (4, 32)
    pose = head_layout([(1, 59, A)], HW, meta(task="pose", head="Pose", kpt_shape=[17, 3]))
    assert pose[0] is not None and (pose[0].classes, pose[0].extra) == (4, 51)
    e2e = head_layout([(1, 300, 6)], HW, meta(end2end=True))
    assert e2e[0] is not None and e2e[0].kind == "detections" and e2e[0].classes == 4
    seg_e2e = head_layout([(1, 300, 38), (1, 32, 80, 80)], HW, meta(task="segment",
                                                                    head="Segment26"))
    assert seg_e2e[0] is not None and seg_e2e[0].kind == "detections"
    obb, why = head_layout([(1, 9, A)], HW, meta(task="obb", head="OBB"))
    assert why == OBB_REASON and obb is not None and (obb.kind, obb.classes) == ("obb", 4)
    assert head_layout([(1, 12, A)], HW, meta(task="obb", head="OBB")) == (None, OBB_REASON)
    assert head_layout([(1, 300, 6)], HW, meta(head="RTDETRDecoder"))[1] == RTDETR_REASON
    # the head's class names the task even when the task field says detect
    assert head_layout([(1, 40, A), (1, 32, 80, 80)], HW, meta(head="Segment"))[0] is not None


def test_layouts_without_metadata() -> None:
    det = head_layout([(1, A, 8)], HW, None)[0]
    assert det is not None and (det.classes, det.anchors_last) == (4, False)
    seg = head_layout([(1, 40, A), (1, 32, 80, 80)], HW, None)[0]
    assert seg is not None and (seg.task, seg.classes) == ("segment", 4)
    layout, problem = head_layout([(1, 300, 38)], HW, None)
    assert layout is None and problem is not None and "cannot tell which columns" in problem
    layout, problem = head_layout([(1, 1000)], HW, None)
    assert layout is None and "is not a YOLO detection head" in (problem or "")


def test_metadata_class_count_must_fit_the_output() -> None:
    layout, problem = head_layout([(1, 84, A)], HW, meta())
    assert layout is None and problem == (
        "output shape [1, 84, 2100] has 84 channels per anchor, but a detect head with the 4 "
        "classes of its metadata and 0 extra channels has 8")


def test_rows_decode_without_nms_and_normalised_rows() -> None:
    rows = np.zeros((300, 6), np.float32)
    rows[0] = [0.1, 0.1, 0.5, 0.5, 0.9, 2]  # normalised (legacy onnx2tf TFLite)
    rows[1] = [0.1, 0.1, 0.5, 0.5, 0.8, 2]  # a duplicate: kept, the model did NMS
    layout = head_layout([(1, 300, 6)], HW, meta(end2end=True))[0]
    assert layout is not None
    canon = canonical_head([rows[None]], layout, HW, None)
    assert np.allclose(canon[0, :4], [32, 32, 160, 160])
    det = decode_rows(canon, Letterbox(0.5, 0, 10, (620, 640)), conf=0.25, max_det=300)
    assert len(det.scores) == 2 and det.classes.tolist() == [2, 2]
    assert np.allclose(det.boxes[0], [64, 44, 320, 300])


def test_obb_boxes_denormalised_for_the_agreement_check() -> None:
    """A LiteRT OBB output has its boxes divided by the input size; its canonical form (for
    comparing it with the PyTorch reference) is in pixels, the angle left out."""
    layout = head_layout([(1, 9, A)], HW, meta(task="obb", head="OBB"))[0]
    assert layout is not None
    raw = np.zeros((1, 9, A), np.float32)
    raw[0, :4] = 0.5
    raw[0, 8] = 1.2  # the angle
    canon = canonical_head([raw], layout, HW, True)
    assert canon.shape == (8, A) and np.allclose(canon[:4], 160.0)
