"""Export from one source: a .pt to ONNX, LiteRT and ncnn with Ultralytics (cached by
content hash), checked against PyTorch itself; an ONNX alone to ncnn with pnnx; an NHWC
.tflite (onnx2tf's layout) run from the host's NCHW tensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebench.cache import sha256_file
from edgebench.cli import main
from edgebench.config import ASSETS

pytestmark = [pytest.mark.slow, pytest.mark.export]


def entries(folder: Path) -> list[Path]:
    """The cache entries in ``folder``, not their lock files (``.<entry>.lock``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


PT = ASSETS / "shapes-yolov8n.pt"
FAST = ["--warmup", "1", "-n", "3", "--images", "8"]


def cases(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    (report,) = out.glob("*/report.json")
    return {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}


def test_pt_exports_to_every_format_once_and_each_agrees_with_pytorch(
        tmp_path: Path, isolated_cache: Path) -> None:
    args = ["run", "-m", str(PT), "--imgsz", "160", "-b", "onnxruntime,litert,ncnn,mnn,openvino",
            *FAST]
    assert main([*args, "-o", str(tmp_path / "first")]) == 0
    found = cases(tmp_path / "first")
    assert set(found) == {"onnxruntime", "litert", "ncnn", "mnn", "openvino"}
    formats = {"onnxruntime": "onnx", "litert": "tflite", "ncnn": "ncnn", "mnn": "mnn",
               "openvino": "openvino"}
    tools = {"onnxruntime": "onnxslim", "litert": "litert-torch", "ncnn": "pnnx",
             "openvino": "openvino"}
    for name, case in found.items():
        art, fid = case["artifact"], case["accuracy"]["fidelity"]
        assert case["status"] == "ok", (name, case["reason"])
        assert art["format"] == formats[name] and art["source_sha256"] == sha256_file(PT)
        assert art["input_shape"] == [1, 3, 160, 160] and art["gflops"] > 0.1
        assert fid["reference"].startswith("PyTorch ") and "shapes-yolov8n.pt" in \
            fid["reference"]
        assert fid["within_tolerance"] is True and fid["detection_agreement"] == 1.0
        if name == "mnn":  # MNN's converter on the ONNX export; Winograd's own tolerance
            assert art["converter"].startswith("mnnconvert (mnn ")
            assert fid["score_max_abs"] < 2e-3
            continue
        assert art["converter"].startswith("Ultralytics format=") and tools[name] in \
            art["converter"]
        # the ONNX export too is a conversion, checked against PyTorch like the others
        assert fid["detection_box_max_abs_px"] < 0.01 and fid["score_max_abs"] < 2e-5
    ncnn_dir = Path(found["ncnn"]["artifact"]["path"])
    assert sorted(p.name for p in ncnn_dir.iterdir()) == [
        "edgebench.json", "metadata.yaml", "model.ncnn.bin", "model.ncnn.param"]
    exports = entries(isolated_cache / "exports")
    stamps = {p: (p / "artifact.json").stat().st_mtime_ns for p in exports}

    assert main([*args, "-o", str(tmp_path / "second")]) == 0
    assert entries(isolated_cache / "exports") == exports  # cache hits
    assert {p: (p / "artifact.json").stat().st_mtime_ns for p in exports} == stamps
    second = cases(tmp_path / "second")
    for name in found:
        assert second[name]["artifact"]["sha256"] == found[name]["artifact"]["sha256"]

    # An .onnx alone (here: the export above, copied): ncnn via pnnx, no LiteRT.
    onnx = tmp_path / "alone.onnx"
    shutil.copy(found["onnxruntime"]["artifact"]["path"], onnx)
    assert main(["run", "-m", str(onnx), *FAST, "-o", str(tmp_path / "onnx")]) == 0
    alone = cases(tmp_path / "onnx")
    assert alone["litert"]["status"] == "skipped" and "onnx2tf" in alone["litert"]["reason"]
    ncnn = alone["ncnn"]
    assert ncnn["status"] == "ok" and ncnn["artifact"]["converter"].startswith("pnnx ")
    assert ncnn["artifact"]["input_shape"] == [1, 3, 160, 160]
    fid = ncnn["accuracy"]["fidelity"]
    assert fid["reference"].startswith("onnxruntime ") and fid["within_tolerance"] is True
    assert fid["detection_box_max_abs_px"] < 0.01


def test_nhwc_tflite_gets_the_host_tensor_transposed(tmp_path: Path) -> None:
    """onnx2tf writes NHWC models; the runner transposes the host's NCHW tensor for them."""
    pytest.importorskip("litert_torch")
    import litert_torch
    import torch

    class NhwcDetector(torch.nn.Module):  # (1, H, W, 3) -> (1, 8, A): a tiny conv "head"
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x.permute(0, 3, 1, 2))
            return torch.sigmoid(y.flatten(2))

    model = NhwcDetector().eval()
    sample = torch.rand(1, 64, 64, 3)
    path = tmp_path / "nhwc.tflite"
    litert_torch.convert(model, (sample,)).export(str(path))

    from edgebench.plugins.backends.litert.plugin import tflite_input

    assert tflite_input(path)[1] == (1, 64, 64, 3)
    from test_litert_runner import run_runner

    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    np.savez(tmp_path / "batch.npz", **{"0": x})  # type: ignore[arg-type]
    code, result = run_runner(tmp_path, path, {"images": x}, iterations=2,
                              accuracy={"inputs": str(tmp_path / "batch.npz"),
                                        "out": str(tmp_path / "out.npz")})
    assert code == 0, result
    assert result["runtime"]["details"]["input_layout"] == "NHWC"
    with np.load(tmp_path / "out.npz") as out:
        got = out["0_0"]
    want = model(torch.from_numpy(x).permute(0, 2, 3, 1)).detach().numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5
