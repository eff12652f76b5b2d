"""The device-side ONNX Runtime runner, run as the harness runs it: a separate process."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend


def run_runner(tmp_path: Path, model: Path, inputs: dict[str, np.ndarray],
               **request: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = {"warmup_iterations": 3, "iterations": 20, **request}
    return run_device_runner(OnnxRuntimeBackend(), tmp_path, model, inputs, **request)  # type: ignore[arg-type]


def test_runner_on_embedded_model(tmp_path: Path, embedded_onnx: Path) -> None:
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    code, result = run_runner(tmp_path, embedded_onnx, {"images": x}, threads=1,
                              min_duration_s=0.0)
    assert code == 0, result
    assert len(result["samples_ns"]) == 20 and len(result["warmup_ns"]) == 3
    assert all(isinstance(s, int) and s > 0 for s in result["samples_ns"])
    assert result["init_ns"] > 0 and result["first_inference_ns"] > 0
    assert 0 < result["rss_baseline_bytes"] <= result["rss_before_load_bytes"]
    assert result["rss_after_load_bytes"] > result["rss_before_load_bytes"]
    assert result["peak_rss_bytes"] >= result["rss_after_load_bytes"]
    rt = result["runtime"]
    assert rt["name"] == "onnxruntime" and rt["threads"] == 1
    assert rt["providers"] == ["CPUExecutionProvider"]
    import onnxruntime

    assert rt["version"] == onnxruntime.__version__
    out = result["outputs"][0]
    assert out["shape"][0] == 1 and out["shape"][2] == 2100 and out["finite"]


def test_min_duration_extends_the_loop(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    x = np.zeros((1, 3, 32, 32), np.float32)
    code, result = run_runner(tmp_path, model, {"images": x}, iterations=5,
                              min_duration_s=0.3, warmup_iterations=0, warmup_s=0.1)
    assert code == 0, result
    assert len(result["samples_ns"]) > 100  # a 25 us model: thousands in 0.3 s
    assert sum(result["samples_ns"]) >= 0.3e9 * 0.9
    assert len(result["warmup_ns"]) >= 1


def test_timed_loop_runs_until_the_minimum_duration() -> None:
    """Both minimums hold, and the samples (inference and the CPU-clock reads around it,
    not the loop's bookkeeping) cover the duration."""
    from edgebench.agent import edgebench_agent

    def infer() -> None:
        time.sleep(0.01)

    samples, cpu = edgebench_agent._timed_loop(infer, 5, 0.3, 0.0)
    assert len(samples) == len(cpu) > 5
    assert sum(samples) >= 0.3e9 * 0.95
    assert all(c < s for c, s in zip(cpu, samples, strict=True))  # sleeping is not CPU time
    samples, _ = edgebench_agent._timed_loop(infer, 40, 0.05, 0.0)
    assert len(samples) == 40  # the iteration minimum outlasts a short duration


def test_wrong_input_shape_is_one_sentence(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    code, result = run_runner(tmp_path, model, {"images": np.zeros((1, 3, 64, 64), np.float32)})
    assert code == 1
    assert result["error"]["phase"] == "load"
    assert result["error"]["message"] == (
        "input 'images' has shape [1, 3, 64, 64] but the model accepts [1, 3, 32, 32]")


def test_unloadable_model_is_reported(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("bad_op", size=32)
    code, result = run_runner(tmp_path, model, {"images": np.zeros((1, 3, 32, 32), np.float32)})
    assert code == 1 and result["error"]["phase"] == "load"
    assert result["error"]["message"].startswith("ONNX Runtime could not load the model")


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_are_applied(tmp_path: Path, make_onnx, threads: int) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    code, result = run_runner(tmp_path, model, {"images": np.zeros((1, 3, 32, 32), np.float32)},
                              threads=threads)
    assert code == 0
    assert result["runtime"]["details"]["intra_op_num_threads"] == str(threads)
