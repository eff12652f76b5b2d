"""The LiteRT backend's device-side runner on the committed .tflite of the embedded model,
run as the harness runs it (a separate process), and the host-side .tflite reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.config import ASSETS
from edgebench.plugins.backends.litert.plugin import LiteRTBackend, tflite_input

pytest.importorskip("ai_edge_litert")
TFLITE = ASSETS / "shapes-yolov8n.tflite"


def run_runner(tmp_path: Path, model: Path, inputs: dict[str, np.ndarray],
               **request: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = {"warmup_iterations": 2, "iterations": 10, **request}
    return run_device_runner(LiteRTBackend(), tmp_path, model, inputs, **request)  # type: ignore[arg-type]


def image() -> np.ndarray:
    return np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)


def test_runner_measures_and_reports_the_delegate(tmp_path: Path) -> None:
    code, result = run_runner(tmp_path, TFLITE, {"images": image()}, threads=1)
    assert code == 0, result
    assert len(result["samples_ns"]) == 10 and len(result["warmup_ns"]) == 2
    assert result["init_ns"] > 0 and result["first_inference_ns"] > 0
    assert result["rss_after_load_bytes"] > result["rss_before_load_bytes"]
    assert result["peak_rss_bytes"] >= result["rss_after_load_bytes"]
    rt = result["runtime"]
    import ai_edge_litert

    assert rt["name"] == "ai-edge-litert" and rt["version"] == ai_edge_litert.__version__
    assert rt["threads"] == 1 and rt["providers"] == ["XNNPACK"]
    assert rt["details"]["input_layout"] == "NCHW"
    d = rt["delegation"]
    # YOLOv8n from litert-torch: 256 nodes; XNNPACK takes all but the two nearest-neighbour
    # upsamples, which split the graph into 3 partitions.
    assert d["delegate"] == "XNNPACK" and d["nodes_total"] == 256
    assert d["nodes_delegated"] + sum(d["fallback_ops"].values()) == d["nodes_total"]
    assert d["partitions"] == 1 + sum(d["fallback_ops"].values())
    assert d["fallback_ops"] == {"RESIZE_NEAREST_NEIGHBOR": 2}
    assert result["outputs"] == [{"shape": [1, 8, 2100], "dtype": "float32", "finite": True}]


def test_without_xnnpack_every_node_runs_on_builtin_kernels(tmp_path: Path) -> None:
    code, result = run_runner(tmp_path, TFLITE, {"images": image()}, threads=1,
                              iterations=2, options={"xnnpack": False})
    assert code == 0, result
    rt = result["runtime"]
    assert rt["providers"] == ["builtin kernels"] and "delegation" not in rt
    assert rt["details"]["xnnpack"] == "off"


def test_default_threads_are_every_usable_core(tmp_path: Path) -> None:
    import os

    code, result = run_runner(tmp_path, TFLITE, {"images": image()}, iterations=2)
    assert code == 0, result
    assert result["runtime"]["threads"] == len(os.sched_getaffinity(0))


def test_outputs_agree_with_the_onnx_export(tmp_path: Path, embedded_onnx: Path) -> None:
    """Both are exports of the same .pt; LiteRT's boxes come out divided by the input size."""
    import onnxruntime as ort

    from edgebench.batching import float_inputs
    from edgebench.datasets import load_dataset
    from edgebench.evaluation import prepare_batch

    batch = prepare_batch(load_dataset(None).first(3), "images", (320, 320), tmp_path)
    x = next(float_inputs(batch.tensors))
    session = ort.InferenceSession(str(embedded_onnx))
    ref = session.run(None, {"images": x})[0][0]
    work = tmp_path / "w"
    code, result = run_runner(work.parent, TFLITE, {"images": x}, iterations=1,
                              accuracy={"inputs": str(batch.tensors),
                                        "out": str(tmp_path / "out.npz")})
    assert code == 0, result
    with np.load(tmp_path / "out.npz") as out:
        got = out["0_0"][0].copy()
    got[[0, 2]] *= 320
    got[[1, 3]] *= 320
    confident = ref[4:].max(axis=0) >= 0.25
    assert confident.sum() > 10
    assert np.abs(got[:4, confident] - ref[:4, confident]).max() < 0.02
    assert np.abs(got[4:] - ref[4:]).max() < 1e-4


def test_unloadable_model_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, result = run_runner(tmp_path, bad, {"images": image()})
    assert code == 1 and result["error"]["phase"] == "load"
    assert result["error"]["message"].startswith("LiteRT could not load bad.tflite: ")
    assert "\n" not in result["error"]["message"]


def test_wrong_input_shape_is_one_sentence(tmp_path: Path) -> None:
    x = np.zeros((1, 3, 64, 64), np.float32)
    code, result = run_runner(tmp_path, TFLITE, {"images": x})
    assert code == 1
    assert result["error"] == {
        "phase": "load", "message": "input 'serving_default_args_0' has shape [1, 3, 64, 64] "
                                    "but the model accepts [1, 3, 320, 320]"}


def test_a_runtime_that_is_not_installed_is_named(tmp_path: Path) -> None:
    try:  # tflite-runtime has no numpy-2 build: absent here
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite-runtime is installed here")
    except ImportError:
        pass
    code, result = run_runner(tmp_path, TFLITE, {"images": image()},
                              options={"runtime": "tflite-runtime"})
    assert code == 1 and result["error"]["phase"] == "import"
    assert result["error"]["message"].startswith(
        "no LiteRT runtime could be imported (tflite-runtime: ")


def test_tflite_input_is_read_on_the_host_without_a_runtime() -> None:
    assert tflite_input(TFLITE) == ("serving_default_args_0", (1, 3, 320, 320))


def test_not_a_tflite_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"garbage!" * 4)
    with pytest.raises(ValueError, match="TFL3"):
        tflite_input(bad)
