"""Every Ultralytics detector family and head option, decoded as Ultralytics decodes it.

Random-weight models have meaningless mAP, so edgebench's decoding of each exported file is
compared box by box with Ultralytics' own predictions (``YOLO(file).predict``) on the same
file and the same letterboxed tensors; the trained embedded model exported with
``nms=True`` is compared with Ultralytics' ``val()`` on the same file and images. Then
``edgebench run`` on every file: every case measured, seg/pose scored on their boxes, OBB and
RT-DETR skipped with the reason, ncnn refusing end-to-end graphs up front.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from head_fixtures import build_models, ultralytics_predictions
from test_accuracy_vs_ultralytics import ultralytics_val

from edgebench.batching import float_inputs
from edgebench.cache import cache_root
from edgebench.cli import main
from edgebench.datasets import load_dataset
from edgebench.evaluation import head_outputs, prepare_batch
from edgebench.heads import OBB_REASON, RTDETR_REASON, decode_head
from edgebench.model_metadata import read_metadata
from edgebench.preprocess import Letterbox

pytestmark = [pytest.mark.slow, pytest.mark.export]

IMGSZ = 320
NAMES = ["circle", "square", "triangle", "star"]
CONF, IOU = 0.001, 0.7
"""Ultralytics val()'s thresholds: random weights score low, so this keeps detections."""
EMBEDDED_PT = Path(__file__).parents[1] / "harness" / "assets" / "shapes-yolov8n.pt"

ONNX = {"format": "onnx", "imgsz": IMGSZ}
DECODED = {
    # label: how it is made (the default export of every family: per-anchor head + NMS)
    "yolov5nu": {"cfg": "yolov5nu.yaml", "export": ONNX},
    "yolov8n": {"cfg": "yolov8n.yaml", "export": ONNX},
    "yolov9t": {"cfg": "yolov9t.yaml", "export": ONNX},
    "yolov10n": {"cfg": "yolov10n.yaml", "export": ONNX},
    "yolo11n": {"cfg": "yolo11n.yaml", "export": ONNX},
    "yolo12n": {"cfg": "yolo12n.yaml", "export": ONNX},
    "yolo26n": {"cfg": "yolo26n.yaml", "export": ONNX},
    # end-to-end (NMS-free one-to-one head): (1, 300, 6) rows, no NMS
    "yolo26n-e2e": {"cfg": "yolo26n.yaml", "export": {**ONNX, "nms": False}},
    "yolov10n-e2e": {"cfg": "yolov10n.yaml", "export": {**ONNX, "nms": False}},
    # NMS in the graph: (1, 300, 6) rows; conf as low as val's, so random weights keep rows
    "yolov8n-nms": {"cfg": "yolov8n.yaml", "export": {**ONNX, "nms": True, "conf": CONF}},
    # seg (4 + nc + 32 channels, and the mask prototypes) and pose (4 + nc + 51)
    "yolo11n-seg": {"cfg": "yolo11n-seg.yaml", "export": ONNX},
    "yolo11n-pose": {"cfg": "yolo11n-pose.yaml", "export": ONNX},
    "yolo26n-seg-e2e": {"cfg": "yolo26n-seg.yaml", "export": {**ONNX, "nms": False}},
    # LiteRT (litert-torch): end-to-end rows in pixels, anchors normalised
    "yolo26n-e2e-tflite": {"cfg": "yolo26n.yaml",
                           "export": {"format": "litert", "imgsz": IMGSZ, "nms": False}},
}
SKIPPED = {
    "yolo11n-obb": {"cfg": "yolo11n-obb.yaml", "export": ONNX},
    "rtdetr": {"cfg": "yolov8n-rtdetr.yaml", "export": ONNX},
}
TRAINED = {"shapes-nms": {"pt": str(EMBEDDED_PT), "export": {**ONNX, "nms": True}}}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("heads"), NAMES,
                        {**DECODED, **SKIPPED, **TRAINED})


@pytest.fixture(scope="session")
def batch() -> Any:
    return prepare_batch(load_dataset(None).first(6), "images", (IMGSZ, IMGSZ), cache_root())


@pytest.fixture(scope="session")
def predictions(models: dict[str, Path], batch: Any,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chosen = {k: models[k] for k in DECODED}
    return ultralytics_predictions(chosen, batch.tensors,
                                   CONF, IOU, tmp_path_factory.mktemp("predict") / "p.npz")


def _raw_outputs(path: Path, tensors: Path) -> list[list[np.ndarray]]:
    """The file's raw outputs on every tensor, run by its own runtime."""
    images = list(float_inputs(tensors))
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        outs = []
        for im in images:
            interpreter.set_tensor(inp["index"], im)
            interpreter.invoke()
            outs.append([interpreter.get_tensor(o["index"])
                         for o in interpreter.get_output_details()])
        return outs
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [list(session.run(None, {"images": im})) for im in images]


@pytest.mark.parametrize("label", list(DECODED))
def test_decoding_matches_ultralytics_predict(label: str, models: dict[str, Path], batch: Any,
                                              predictions: dict[str, Any]) -> None:
    """edgebench's decoding (head layout from the file's own metadata, canonical form,
    NMS or none) of the file's raw outputs == Ultralytics' predict on the same file and
    tensors: same number of boxes, each matched one-to-one to a box of the same class whose
    corners are within 0.01 px and whose score is within 1e-4 (corners, not IoU: YOLO26's
    box regression can give inverted boxes, which both keep as they are)."""
    path = models[label]
    metadata = read_metadata(path)
    assert metadata is not None, f"{path.name} carries no Ultralytics metadata"
    backend_normalises = path.suffix == ".tflite"  # as the LiteRT backend declares
    canon, layout, problem = head_outputs(batch, _raw_outputs(path, batch.tensors),
                                          backend_normalises or None, metadata)
    assert layout is not None, problem
    identity = [Letterbox(1.0, 0, 0, (IMGSZ, IMGSZ)) for _ in canon]
    ours = decode_head(layout, canon, identity, conf=CONF, iou=IOU, max_det=300,
                       multi_label=False)  # Ultralytics predict: one label per box
    total = 0
    for i, det in enumerate(ours):
        boxes = predictions[f"{label}/{i}/boxes"]
        scores = predictions[f"{label}/{i}/scores"]
        classes = predictions[f"{label}/{i}/classes"].astype(np.int64)
        assert len(det.scores) == len(scores), (
            f"{label} image {i}: edgebench {len(det.scores)} boxes, Ultralytics {len(scores)}")
        total += len(scores)
        if not len(scores):
            continue
        far = np.abs(boxes.astype(np.float64)[:, None] - det.boxes[None]).max(axis=2)
        far[classes[:, None] != det.classes[None, :]] = np.inf
        far[np.abs(scores[:, None] - det.scores[None, :]) >= 1e-4] = np.inf
        used = np.zeros(len(det.scores), dtype=bool)
        for r in np.argsort(-scores, kind="stable"):
            row = np.where(used, np.inf, far[r])
            best = int(row.argmin())
            assert row[best] <= 0.01, (
                f"{label} image {i}: Ultralytics' box {boxes[r]} (class {classes[r]}, score "
                f"{scores[r]:.5f}) has no match in edgebench's")
            used[best] = True
    print(f"{label}: {layout.describe()}; {total} boxes on {len(ours)} images, all matched")
    assert total > 0, f"{label}: no detections at conf {CONF}; the comparison proves nothing"


def _cases(out: Path) -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for report in out.glob("*/report.json"):
        for case in json.loads(report.read_text())["cases"]:
            cases[case["case"]["id"]] = case
    return cases


def test_edgebench_run_every_family(models: dict[str, Path], tmp_path: Path) -> None:
    """One ``edgebench run`` over every ONNX: each case measured; detectors, seg and pose
    scored (box mAP) with the agreement check (on anchors, or on detections for rows)
    passing; OBB and RT-DETR measured with their accuracy skipped for the reason, word for
    word. ONNX Runtime runs unoptimised and at one thread, as the reference: random weights
    are no smooth trained model, and the fusions move yolov9t's boxes by up to 0.4 px, a
    second thread's split reductions by 0.04 px, beyond the fp32 tolerance measured on
    trained models; what is checked here is the reading of the head."""
    onnx = {k: v for k, v in models.items() if v.suffix == ".onnx" and k not in TRAINED}
    argv = ["run", "-o", str(tmp_path), "-b", "onnxruntime", "--images", "10", "-n", "3",
            "--warmup", "1", "--threads", "1",
            "--backend-option", "onnxruntime.graph_optimization_level=disable"]
    for path in onnx.values():
        argv += ["-m", str(path)]
    code = main(argv)
    cases = _cases(tmp_path)
    assert len(cases) == len(onnx)
    by_file = {}
    for case in cases.values():
        assert case["latency"]["p50_ms"] > 0 and case["memory"]["peak_rss_bytes"] > 0
        by_file[case["artifact"]["sha256"]] = case
    from edgebench.cache import sha256_file

    for label, path in onnx.items():
        case = by_file[sha256_file(path)]
        if label == "rtdetr" and case["status"] == "failed":
            # a random RT-DETR keeps 300 of its 2100 queries, all scoring 0.44-0.69, densely:
            # thread-count rounding swaps a few at the boundary between reference and case,
            # and its agreement check (on its decoded rows) says so
            assert case["reason"].startswith(
                "the onnx model disagrees with the float reference beyond the onnxruntime "
                "tolerance: only "), case["reason"]
            assert case["accuracy"]["fidelity"]["detection_agreement"] > 0.9
        else:
            assert case["status"] == "ok", (label, case.get("reason"))
    assert code == (1 if any(c["status"] == "failed" for c in cases.values()) else 0)

    for label, path in onnx.items():
        acc = by_file[sha256_file(path)]["accuracy"]
        if label == "yolo11n-obb":
            assert acc["status"] == "skipped"
            assert acc["reason"] == f"{OBB_REASON}; latency is still reported"
        elif label == "rtdetr":
            assert acc["status"] == "skipped"
            assert acc["reason"] == f"{RTDETR_REASON}; latency is still reported"
        else:
            assert acc["status"] == "ok", (label, acc["reason"])
            assert acc["map50_95"] is not None
            assert acc["fidelity"]["within_tolerance"] is True, (label, acc["fidelity"])
            if "seg" in label:
                assert acc["reason"] == "box mAP of a segment model (its masks are not scored)"
            if "pose" in label:
                assert acc["reason"] == "box mAP of a pose model (its keypoints are not scored)"
        print(f"{label}: accuracy {acc['status']}, mAP50-95 {acc.get('map50_95')}, "
              f"p50 {by_file[sha256_file(path)]['latency']['p50_ms']:.1f} ms")


def test_other_backends(models: dict[str, Path], tmp_path: Path) -> None:
    """LiteRT runs the end-to-end .tflite and scores it; ncnn runs a seg model converted
    from ONNX with pnnx (metadata carried over from the source) and refuses an end-to-end
    ONNX up front, in one sentence."""
    argv = ["run", "-o", str(tmp_path), "-b", "litert", "-b", "ncnn", "--images", "10",
            "-n", "3", "--warmup", "1", "-m", str(models["yolo26n-e2e-tflite"]),
            "-m", str(models["yolo11n-seg"]), "-m", str(models["yolo26n-e2e"])]
    code = main(argv)
    cases = list(_cases(tmp_path).values())
    (tflite,) = [c for c in cases if c["case"]["backend"] == "litert" and c["status"] == "ok"]
    assert tflite["accuracy"]["status"] == "ok" and tflite["accuracy"]["map50_95"] is not None
    ncnn = [c for c in cases if c["case"]["backend"] == "ncnn"]
    (seg,) = [c for c in ncnn if c["status"] != "skipped"]
    assert seg["accuracy"]["reason"] == "box mAP of a segment model (its masks are not scored)"
    fidelity = seg["accuracy"]["fidelity"]
    assert fidelity["detection_agreement"] == 1.0 and fidelity["reference_detections"] > 0
    if seg["status"] == "failed":
        # random weights drift by a few hundredths of a pixel through pnnx, beyond the fp32
        # tolerance measured on trained models (0.02 px); the head was read right
        assert seg["reason"].startswith("the ncnn model disagrees with the float reference "
                                        "beyond the ncnn tolerance: boxes of detections "
                                        "differ by up to 0.0"), seg["reason"]
    assert code == (1 if seg["status"] == "failed" else 0)
    refused = [c for c in ncnn if c["status"] == "skipped"
               and "end-to-end (NMS-free) head" in (c.get("reason") or "")]
    assert len(refused) == 1
    assert refused[0]["reason"] == (
        "ncnn cannot run model.onnx: it was exported with the end-to-end (NMS-free) head, "
        "whose TopK ncnn lacks; export it again with nms left unset (the default; not "
        "nms=False), or pass the .pt (Ultralytics exports ncnn without that branch)")


def test_nms_export_map_matches_ultralytics_val(models: dict[str, Path],
                                                tmp_path: Path) -> None:
    """The trained embedded model exported with nms=True (rows of detections, conf 0.25
    baked in): edgebench's mAP50-95 within 0.01 of Ultralytics val() on the same file and
    the same 100 images."""
    path = models["shapes-nms"]
    assert main(["run", "-o", str(tmp_path / "eb"), "-b", "onnxruntime", "-m", str(path),
                 "-n", "3", "--warmup", "1"]) == 0
    (case,) = _cases(tmp_path / "eb").values()
    ours = case["accuracy"]
    theirs = ultralytics_val(path, tmp_path)
    print(f"nms=True: edgebench mAP50-95 {ours['map50_95']:.4f} mAP50 {ours['map50']:.4f}; "
          f"Ultralytics val {theirs['map50_95']:.4f} / {theirs['map50']:.4f}")
    assert ours["status"] == "ok"
    assert theirs["map50_95"] > 0.5  # the trained model: a meaningful figure
    assert abs(ours["map50_95"] - theirs["map50_95"]) < 0.01
    assert abs(ours["map50"] - theirs["map50"]) < 0.01


@pytest.mark.parametrize(("metadata", "how", "fix"), [
    ({"task": "detect", "args": "{'nms': True}", "end2end": "False"},
     "NMS built in (nms=True)", "without nms=True"),
    ({"task": "detect", "args": "{'nms': False}", "end2end": "True"},
     "the end-to-end (NMS-free) head", "with nms left unset (the default; not nms=False)"),
])
def test_ncnn_refusal_of_post_nms_exports_says_how_to_export(
        metadata: dict[str, str], how: str, fix: str, tmp_path: Path) -> None:
    """Refused before pnnx, from the model's Ultralytics metadata (a stand-in graph: the
    refusal reads only the metadata); the sentence says which export option to change."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    model = helper.make_model(helper.make_graph([helper.make_node("Conv", ["images", "w"],
                                                                  ["y"])], "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert main(["run", "-m", str(path), "-b", "ncnn", "--no-accuracy", "-n", "2",
                 "--warmup", "0", "-o", str(tmp_path / "out")]) == 0
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["status"] == "skipped"
    assert case["reason"] == (
        f"ncnn cannot run m.onnx: it was exported with {how}, whose TopK ncnn lacks; export "
        f"it again {fix}, or pass the .pt (Ultralytics exports ncnn without that branch)")
