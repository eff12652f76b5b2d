"""Model I/O variants (issue 14): symbolic dims, non-square inputs, fp16 I/O, fp16 weights.

Each variant is made here from the embedded ``.pt`` by Ultralytics or ONNX Runtime's float16
converter (``tests/io_variants.py``), run by ``edgebench run`` on every backend that can make
its format, and checked against Ultralytics' own ``val()`` on the same file and images (the
oracle), the float reference (agreement) and the precision its graph holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgebench.cli import main
from edgebench.datasets import embedded_val_yaml
from edgebench.ultralytics_offline import ultralytics_offline_env

pytestmark = [pytest.mark.slow, pytest.mark.export]

IMAGES = 40
"""Images of the embedded val split used by both edgebench and val() (the first, by name)."""
LITERT_FROM_ONNX = ("a .tflite cannot be made from an .onnx here: that needs onnx2tf and "
                    "TensorFlow, which edgebench does not install; pass the .pt it came from "
                    "(exported with litert-torch) or a .tflite")
NO_REFERENCE = ("no agreement check: no float reference: the model was given only as {fmt}; "
                "pass its .pt or .onnx too for the agreement check")
KINDS = ("dynamic", "dynamic-hw", "dynamic-batch", "rect-onnx", "rect-ncnn", "rect-litert",
         "half-onnx", "half-ncnn", "half-litert", "fp16-io", "pt640")

VAL = """
import json, sys
from ultralytics import YOLO
out = {}
for key, model, imgsz in json.loads(sys.argv[1]):
    m = YOLO(model, task="detect").val(data=sys.argv[2], imgsz=imgsz, batch=1, conf=0.001,
                                       iou=0.7, device="cpu", plots=False, verbose=False,
                                       project=sys.argv[3], name=key)
    out[key] = float(m.box.map)
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    return {**os.environ, **ultralytics_offline_env()}


@pytest.fixture(scope="session")
def io_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant, made in one subprocess (one torch import)."""
    root = tmp_path_factory.mktemp("io-variants")
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("io_variants.py")),
                           str(root), *KINDS], env=_env(), capture_output=True, text=True,
                          timeout=1200, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads(done.stdout.strip().splitlines()[-1])
    return {kind: Path(path) for kind, path in made.items()}


@pytest.fixture(scope="session")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data.yaml of the first IMAGES val images of the embedded dataset (links)."""
    source = embedded_val_yaml()
    data = yaml.safe_load(source.read_text())
    base = Path(data["path"])
    root = tmp_path_factory.mktemp("io-subset")
    images = sorted((base / data["val"]).iterdir())[:IMAGES]
    for folder in ("images/val", "labels/val"):
        (root / folder).mkdir(parents=True)
    for image in images:
        (root / "images/val" / image.name).symlink_to(image)
        label = base / "labels/val" / f"{image.stem}.txt"
        (root / "labels/val" / label.name).symlink_to(label)
    out = root / "data.yaml"
    out.write_text(yaml.safe_dump({"path": str(root), "train": "images/val",
                                   "val": "images/val", "names": data["names"]}))
    return out


def ultralytics_val(models: list[tuple[str, Path, Any]], data: Path, work: Path
                    ) -> dict[str, float]:
    """mAP50-95 of Ultralytics' own val() on each (key, model file, imgsz)."""
    spec = json.dumps([[key, str(path), imgsz] for key, path, imgsz in models])
    done = subprocess.run([sys.executable, "-c", VAL, spec, str(data), str(work / "val")],
                          env=_env(), capture_output=True, text=True, timeout=1200, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(model: Path, backends: str, out: Path, data: Path, *extra: str) -> dict[str, Any]:
    """``edgebench run``; the cases by backend."""
    code = main(["run", "-m", str(model), "-b", backends, "-n", "3", "--warmup", "1",
                 "--data", str(data), "-o", str(out), *extra])
    assert code in (0, 1)
    (report,) = out.glob("*/report.json")
    return {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}


def check_case(case: dict[str, Any], precision: str, oracle: float,
               agreement: str | None = "reference") -> None:
    """ok, the precision label (in the case id and the artifact), mAP within 0.01 of val()
    and agreement 1.000 with the float reference (or the reason there is none)."""
    assert case["status"] == "ok", case["reason"]
    assert case["artifact"]["precision"] == precision
    assert case["case"]["id"].split("|")[1] == precision
    acc = case["accuracy"]
    fid = acc["fidelity"]
    if agreement == "reference":
        assert fid["detection_agreement"] == 1.0, fid
        assert fid["within_tolerance"] is True
        assert fid["tolerance"]["basis"].startswith(precision)
    else:
        assert fid is None and acc["reason"] == agreement
    ours = acc["map50_95"]
    print(f"{case['case']['id']}: edgebench {ours:.4f}, val() {oracle:.4f}")
    assert abs(ours - oracle) < 0.01


@pytest.fixture(scope="session")
def oracle(io_models: dict[str, Path], subset: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, float]:
    """val() on every variant file, at the size the file was made for."""
    square, rect = [320, 320], [256, 320]
    sizes = {"dynamic": square, "dynamic-hw": square, "dynamic-batch": square,
             "rect-onnx": rect, "rect-ncnn": rect, "rect-litert": rect, "half-onnx": square,
             "half-ncnn": square, "half-litert": square, "fp16-io": square}
    models = [(k, io_models[k], sizes[k]) for k in sizes]
    return ultralytics_val(models, subset, tmp_path_factory.mktemp("io-val"))


@pytest.mark.parametrize("kind", ["dynamic", "dynamic-hw", "dynamic-batch"])
def test_symbolic_dims_take_the_models_own_size(kind: str, io_models: dict[str, Path],
                                                subset: Path, oracle: dict[str, float],
                                                tmp_path: Path) -> None:
    """No --imgsz: the size Ultralytics recorded in the ONNX (320), batch 1; on ONNX Runtime
    and through pnnx to ncnn. LiteRT cannot be made from an .onnx: skipped, saying so."""
    cases = run(io_models[kind], "onnxruntime,ncnn,litert", tmp_path, subset)
    for backend in ("onnxruntime", "ncnn"):
        check_case(cases[backend], "fp32", oracle[kind])
    assert cases["ncnn"]["artifact"]["input_shape"] == [1, 3, 320, 320]
    assert cases["litert"]["status"] == "skipped"
    assert cases["litert"]["reason"] == LITERT_FROM_ONNX


def test_symbolic_dims_take_imgsz(io_models: dict[str, Path], subset: Path,
                                  oracle: dict[str, float], tmp_path: Path) -> None:
    """--imgsz 256,320 (height, width) sets the symbolic dims, on export (pnnx) too. The
    oracle is val() of the static 256x320 export of the same weights: val() runs a dynamic
    ONNX only at the size in its metadata (320), whatever imgsz it is given."""
    cases = run(io_models["dynamic"], "onnxruntime,ncnn", tmp_path, subset,
                "--imgsz", "256,320")
    for backend in ("onnxruntime", "ncnn"):
        check_case(cases[backend], "fp32", oracle["rect-onnx"])
    assert cases["ncnn"]["artifact"]["input_shape"] == [1, 3, 256, 320]


def test_non_square_exports_of_a_pt(subset: Path, tmp_path: Path) -> None:
    """A .pt exported at --imgsz 256,320 for every backend: the 256x320 input, letterbox and
    box mapping, checked against the PyTorch reference and against val() of each export."""
    pt = tmp_path / "shapes.pt"
    pt.write_bytes(_embedded_pt().read_bytes())
    cases = run(pt, "onnxruntime,ncnn,litert", tmp_path / "eb", subset, "--imgsz", "256,320")
    theirs = ultralytics_val([(b, Path(c["artifact"]["path"]), [256, 320])
                              for b, c in cases.items()], subset, tmp_path)
    for backend in ("onnxruntime", "ncnn", "litert"):
        check_case(cases[backend], "fp32", theirs[backend])
        assert cases[backend]["artifact"]["input_shape"] == [1, 3, 256, 320]


def test_non_square_onnx_given_directly(io_models: dict[str, Path], subset: Path,
                                        oracle: dict[str, float], tmp_path: Path) -> None:
    """Ultralytics' 256x320 .onnx passed with -m: run as is, and through pnnx to ncnn at
    its own size (no --imgsz); LiteRT cannot be made from it."""
    cases = run(io_models["rect-onnx"], "onnxruntime,ncnn,litert", tmp_path, subset)
    for backend in ("onnxruntime", "ncnn"):
        check_case(cases[backend], "fp32", oracle["rect-onnx"])
        assert cases[backend]["artifact"]["input_shape"] == [1, 3, 256, 320]
    assert cases["litert"]["status"] == "skipped"
    assert cases["litert"]["reason"] == LITERT_FROM_ONNX


@pytest.mark.parametrize("kind,backend,fmt", [("rect-ncnn", "ncnn", "ncnn"),
                                              ("rect-litert", "litert", "tflite")])
def test_non_square_files_given_directly(kind: str, backend: str, fmt: str,
                                         io_models: dict[str, Path], subset: Path,
                                         oracle: dict[str, float], tmp_path: Path) -> None:
    """Ultralytics' 256x320 ncnn model (metadata.yaml imgsz: [256, 320]) and .tflite passed
    with -m: the size is read from the model, not --imgsz or a square default."""
    cases = run(io_models[kind], backend, tmp_path, subset)
    check_case(cases[backend], "fp32", oracle[kind], NO_REFERENCE.format(fmt=fmt))
    assert cases[backend]["artifact"]["input_shape"] == [1, 3, 256, 320]


@pytest.mark.parametrize("kind", ["fp16-io", "half-onnx"])
def test_fp16_onnx_on_onnxruntime_and_ncnn(kind: str, io_models: dict[str, Path],
                                           subset: Path, oracle: dict[str, float],
                                           tmp_path: Path) -> None:
    """fp16 I/O (float16 converter, keep_io_types=False) and fp16 weights with float32 I/O
    (Ultralytics half=True: the same converter with keep_io_types=True): labelled fp16 from
    the graph, judged by the fp16 tolerance; ncnn keeps the fp16 weights (pnnx fp16=1)."""
    cases = run(io_models[kind], "onnxruntime,ncnn,litert", tmp_path, subset)
    for backend in ("onnxruntime", "ncnn"):
        check_case(cases[backend], "fp16", oracle[kind])
    assert cases["onnxruntime"]["runtime"]["details"]["input_dtype"] == (
        "float16" if kind == "fp16-io" else "float32")
    assert cases["litert"]["status"] == "skipped"
    assert cases["litert"]["reason"] == LITERT_FROM_ONNX
    assert cases["litert"]["case"]["id"].split("|")[1] == "fp16"  # from the source's graph


@pytest.mark.parametrize("kind,backend,fmt", [("half-ncnn", "ncnn", "ncnn"),
                                              ("half-litert", "litert", "tflite")])
def test_fp16_weights_given_directly(kind: str, backend: str, fmt: str,
                                     io_models: dict[str, Path], subset: Path,
                                     oracle: dict[str, float], tmp_path: Path) -> None:
    """Ultralytics half=True ncnn (pnnx fp16 weights) and a LiteRT model with fp16 weights
    (Ultralytics refuses half=True for LiteRT; ai-edge-quantizer's float16 casting)."""
    cases = run(io_models[kind], backend, tmp_path, subset)
    check_case(cases[backend], "fp16", oracle[kind], NO_REFERENCE.format(fmt=fmt))


def test_pt_trained_at_640_exports_at_640(io_models: dict[str, Path], subset: Path,
                                          tmp_path: Path) -> None:
    """No --imgsz: a .pt whose train_args say 640 is exported and fed at 640 (not 320, not
    the ONNX's), and its mAP is val()'s on that export at 640."""
    cases = run(io_models["pt640"], "onnxruntime", tmp_path / "eb", subset)
    case = cases["onnxruntime"]
    assert case["artifact"]["input_shape"] == [1, 3, 640, 640]
    theirs = ultralytics_val([("pt640", Path(case["artifact"]["path"]), 640)], subset,
                             tmp_path)
    check_case(case, "fp32", theirs["pt640"])


def _embedded_pt() -> Path:
    from edgebench.config import ASSETS

    return ASSETS / "shapes-yolov8n.pt"
