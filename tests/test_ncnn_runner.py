"""The ncnn backend's device-side runner on the committed ncnn export of the embedded model,
run as the harness runs it (a separate process, the model directory pushed whole)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.config import ASSETS
from edgebench.plugins.backends.ncnn.plugin import NcnnBackend

pytest.importorskip("ncnn")
MODEL = ASSETS / "shapes-yolov8n_ncnn_model"


def run_runner(tmp_path: Path, model: Path, inputs: dict[str, np.ndarray],
               **request: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = {"warmup_iterations": 2, "iterations": 10, **request}
    return run_device_runner(NcnnBackend(), tmp_path, model, inputs, **request)  # type: ignore[arg-type]


def image(size: int = 320) -> np.ndarray:
    return np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)


def copy_model(tmp_path: Path, *names: str) -> Path:
    target = tmp_path / "model"
    target.mkdir()
    for name in names:
        shutil.copy(MODEL / name, target / name)
    return target


def test_runner_measures_the_committed_model(tmp_path: Path, embedded_onnx: Path) -> None:
    import ncnn
    import onnxruntime as ort

    x = image()
    np.savez(tmp_path / "batch.npz", **{"0": x})  # type: ignore[arg-type]
    code, result = run_runner(tmp_path, MODEL, {"in0": x}, threads=1,
                              accuracy={"inputs": str(tmp_path / "batch.npz"),
                                        "out": str(tmp_path / "out.npz")})
    assert code == 0, result
    assert len(result["samples_ns"]) == 10 and result["init_ns"] > 0
    assert result["peak_rss_bytes"] >= result["rss_after_load_bytes"] > 0
    rt = result["runtime"]
    assert rt["name"] == "ncnn" and rt["version"] == ncnn.__version__ and rt["threads"] == 1
    details = rt["details"]
    assert details["fp16_storage"] == "off" and details["fp16_arithmetic"] == "off"
    assert details["packing_layout"] == "on"
    assert details["input_shape_check"] == "against [1, 3, 320, 320]"
    if ncnn.get_gpu_count() == 0:
        assert details["vulkan"] == "off: no Vulkan GPU found" and rt["providers"] == ["cpu"]
    assert result["outputs"] == [{"shape": [1, 8, 2100], "dtype": "float32", "finite": True}]
    with np.load(tmp_path / "out.npz") as out:
        got = out["0_0"][0]
    ref = ort.InferenceSession(str(embedded_onnx)).run(None, {"images": x})[0][0]
    assert np.abs(got[4:] - ref[4:]).max() < 1e-4
    confident = ref[4:].max(axis=0) >= 0.01
    assert np.abs(got[:4, confident] - ref[:4, confident]).max() < 0.02


def test_options_reach_ncnn(tmp_path: Path) -> None:
    code, result = run_runner(tmp_path, MODEL, {"in0": image()}, iterations=2,
                              options={"fp16_storage": True, "fp16_arithmetic": True,
                                       "packing": False, "vulkan": "off"})
    assert code == 0, result
    details = result["runtime"]["details"]
    assert details["fp16_storage"] == "on" and details["fp16_arithmetic"] == "on"
    assert details["packing_layout"] == "off" and details["vulkan"] == "off (requested)"


def test_vulkan_on_without_a_gpu_is_one_sentence(tmp_path: Path) -> None:
    import ncnn

    if ncnn.get_gpu_count():
        pytest.skip("this host has a Vulkan GPU")
    code, result = run_runner(tmp_path, MODEL, {"in0": image()}, options={"vulkan": "on"})
    assert code == 1
    assert result["error"] == {"phase": "load",
                               "message": "vulkan=on but ncnn finds no Vulkan GPU here"}


def test_param_without_its_bin(tmp_path: Path) -> None:
    model = copy_model(tmp_path, "model.ncnn.param")
    code, result = run_runner(tmp_path, model, {"in0": image()})
    assert code == 1
    assert result["error"]["message"] == ("model.ncnn.param has no weights: model.ncnn.bin is "
                                          "not next to it (ncnn needs both files)")


def test_garbage_param_and_truncated_bin(tmp_path: Path) -> None:
    model = copy_model(tmp_path, "model.ncnn.bin")
    (model / "model.ncnn.param").write_text("not a param file\n")
    code, result = run_runner(tmp_path, model, {"in0": image()})
    assert code == 1 and result["error"]["message"].startswith(
        "ncnn could not parse model.ncnn.param")
    model2 = tmp_path / "m2"
    model2.mkdir()
    shutil.copy(MODEL / "model.ncnn.param", model2)
    (model2 / "model.ncnn.bin").write_bytes((MODEL / "model.ncnn.bin").read_bytes()[:50_000])
    code, result = run_runner(tmp_path, model2, {"in0": image()})
    assert code == 1 and result["error"]["message"].startswith(
        "ncnn could not read the weights model.ncnn.bin")


def test_an_input_size_the_model_was_not_exported_for(tmp_path: Path) -> None:
    """ncnn would compute garbage silently; the declared input shape catches it."""
    code, result = run_runner(tmp_path, MODEL, {"in0": image(640)})
    assert code == 1
    assert result["error"]["message"] == ("input 'in0' has shape [1, 3, 640, 640] but the "
                                          "model accepts [1, 3, 320, 320]")
