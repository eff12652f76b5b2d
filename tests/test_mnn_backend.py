"""The MNN backend end to end with the real ``mnn`` wheel: the embedded model converted by
MNN's own converter next to ONNX Runtime (agreement and mAP against the same float
reference), the runner's settings as the session reports them, the converter's weight
quantization, and the bad inputs (an unknown option, a model the converter rejects)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.accuracy import FP32_TOLERANCE
from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.pipeline import load_source
from edgebench.plugins.backends.mnn.convert import to_mnn
from edgebench.plugins.backends.mnn.mnnconvert import error_line
from edgebench.plugins.backends.mnn.plugin import WINOGRAD_TOLERANCE, MnnBackend

pytest.importorskip("MNN")
FAST = ["--warmup", "1", "-n", "3", "--images", "10"]


def cases(out: Path) -> dict[str, dict[str, Any]]:
    (report,) = out.glob("*/report.json")
    return {"/".join((c["case"]["backend"], *c["case"]["pipeline"])): c
            for c in json.loads(report.read_text())["cases"]}


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run: ONNX Runtime and MNN fp32, and MNN's int8-weights step, 10 val images."""
    out = tmp_path_factory.mktemp("mnn-run")
    main(["run", "-o", str(out), "-b", "onnxruntime,mnn", "--threads", "1",
          "--compress", "int8-weights", *FAST])
    return cases(out)


def test_embedded_model_agrees_with_onnxruntime(embedded_run: dict[str, dict[str, Any]]
                                                ) -> None:
    ort, mnn = embedded_run["onnxruntime"], embedded_run["mnn"]
    assert ort["status"] == "ok" and mnn["status"] == "ok", mnn["reason"]
    art = mnn["artifact"]
    assert art["format"] == "mnn" and art["path"].endswith("model.mnn")
    assert art["converter"].startswith("mnnconvert (mnn ") and "from ONNX" in art["converter"]
    assert art["input_shape"] == [1, 3, 320, 320] and art["precision"] == "fp32"
    fid = mnn["accuracy"]["fidelity"]
    assert fid["detection_agreement"] == 1.0 and fid["within_tolerance"] is True
    assert fid["tolerance"]["basis"] == WINOGRAD_TOLERANCE.basis  # winograd=on by default
    assert fid["score_max_abs"] < 2e-3  # measured: 6.7e-4 on 100 images
    assert abs(mnn["accuracy"]["map50_95"] - ort["accuracy"]["map50_95"]) < 0.005
    rt = mnn["runtime"]
    assert rt["name"] == "mnn" and rt["threads"] == 1
    details = rt["details"]
    # the report keeps details as text
    assert details["num_threads"] == "1" and details["threads_default"] == "as requested"
    assert details["api"] == "Interpreter/Session" and details["backend"] == "CPU"
    assert details["precision"] == "normal" and details["memory"] == "normal"
    assert details["compute"].startswith("fp32")


def test_int8_weights_is_a_quarter_of_the_size_and_keeps_the_map(
        embedded_run: dict[str, dict[str, Any]]) -> None:
    fp32, q8 = embedded_run["mnn"], embedded_run["mnn/int8-weights"]
    assert q8["status"] == "ok", q8["reason"]
    assert q8["artifact"]["precision"] == "int8"
    assert q8["artifact"]["size_bytes"] < 0.3 * fp32["artifact"]["size_bytes"]
    assert q8["artifact"]["converter"].endswith("from MNN, int8 weights")
    # judged by its mAP (no float tolerance); measured on 100 images: see the README
    assert q8["accuracy"]["fidelity"]["within_tolerance"] is None
    assert abs(q8["accuracy"]["map50_95"] - fp32["accuracy"]["map50_95"]) < 0.01
    assert any("decodes the int8 weights to fp32" in n for n in q8["notes"])
    assert embedded_run["onnxruntime/int8-weights"]["status"] == "skipped"


def test_runner_threads_winograd_and_dynamic_int8(tmp_path: Path,
                                                  embedded_onnx: Path) -> None:
    """What the session says it runs with: the threads asked for (MNN's 4 when none),
    ``winograd=off`` bringing MNN within the fp32 tolerance's score limit, and int8 weights
    kept int8 in memory with ``memory=low`` (MNN's dynamic quantization)."""
    import onnxruntime as ort

    model = MnnBackend().export(load_source(embedded_onnx), tmp_path, imgsz=None).path
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    np.savez(tmp_path / "batch.npz", **{"0": x})  # type: ignore[arg-type]
    accuracy = {"inputs": str(tmp_path / "batch.npz"), "out": str(tmp_path / "out.npz")}
    ref = ort.InferenceSession(str(embedded_onnx)).run(None, {"images": x})[0]
    for threads, expected in ((2, 2), (None, 4)):
        work = tmp_path / f"t{threads}"
        work.mkdir()
        code, result = run_device_runner(MnnBackend(), work, model,
                                         {"images": x}, threads=threads, iterations=3,
                                         options={"winograd": "off"}, accuracy=accuracy)
        assert code == 0, result
        details = result["runtime"]["details"]
        assert result["runtime"]["threads"] == expected and details["num_threads"] == str(expected)
        assert details["winograd"].startswith("off")
        with np.load(tmp_path / "out.npz") as out:
            assert np.abs(out["0_0"][:, 4:] - ref[:, 4:]).max() < FP32_TOLERANCE.score_max_abs
    q8 = to_mnn(MnnBackend().export(load_source(embedded_onnx), tmp_path, imgsz=None),
                weight_bits=8)
    memory_mb = {}
    for memory in ("normal", "low"):
        work = tmp_path / f"q8-{memory}"
        work.mkdir()
        code, result = run_device_runner(MnnBackend(), work, q8.path, {"images": x},
                                         threads=1, iterations=3, options={"memory": memory})
        assert code == 0, result
        assert result["runtime"]["details"]["memory"] == memory
        memory_mb[memory] = float(result["runtime"]["details"]["session_memory_mb"])
    assert memory_mb["low"] < memory_mb["normal"] / 3  # measured: 7.7 vs 49.6 MB


def test_unknown_option_and_other_backend_list_the_valid_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", str(tmp_path), "-b", "mnn",
                 "--backend-option", "mnn.threads=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "edgebench: error: backend 'mnn' has no option 'threads'; its options are backend, "
        "memory, precision, winograd.")
    assert main(["run", "-o", str(tmp_path), "-b", "mnn",
                 "--backend-option", "mnn.backend=OPENCL"]) == 2
    assert "option 'backend' must be one of CPU; got 'OPENCL'" in capsys.readouterr().err


def test_a_model_the_converter_rejects_fails_with_its_error_line(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("DFT", ["images"], ["output0"])], "g", [x],
                              [y])
    model = tmp_path / "dft.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(model))
    assert main(["run", "-o", str(tmp_path / "out"), "-m", str(model), "-b", "mnn",
                 "--no-accuracy", "-n", "3", "--warmup", "1"]) == 1
    case = cases(tmp_path / "out")["mnn"]
    assert case["status"] == "failed"
    assert case["reason"] == ("converting dft.onnx to MNN with mnnconvert failed (exit 1): "
                              "These Op Not Support: ONNX::DFT")


def test_error_line_names_the_cause_not_the_closing_line() -> None:
    garbage = ("Start to Convert Other Model Format To MNN Model..., target version: 3.6\n"
               "[18:11:07] :35: Check failed: success ==> read onnx model failed: g.onnx\n"
               "[ERROR] Model file is not onnx model.\n"
               "[ERROR] Convert error, please check your file format.\n")
    assert error_line(garbage) == "Model file is not onnx model."
    assert error_line("") == "no output"


@pytest.mark.slow
@pytest.mark.export
def test_pt_at_640_through_onnx(tmp_path: Path) -> None:
    """The ``.pt``: Ultralytics' ONNX export, then MNN's converter; checked against PyTorch."""
    pytest.importorskip("ultralytics")
    pt = tmp_path / "shapes-yolov8n.pt"
    shutil.copy(ASSETS / "shapes-yolov8n.pt", pt)  # Ultralytics writes next to the .pt
    assert main(["run", "-o", str(tmp_path / "out"), "-m", str(pt), "--imgsz", "640",
                 "-b", "onnxruntime,mnn", "--threads", "2", *FAST]) == 0
    found = cases(tmp_path / "out")
    ort, mnn = found["onnxruntime"], found["mnn"]
    assert mnn["status"] == "ok", mnn["reason"]
    assert mnn["artifact"]["input_shape"] == [1, 3, 640, 640]
    assert mnn["accuracy"]["fidelity"]["reference"].startswith("PyTorch ")
    assert mnn["accuracy"]["fidelity"]["detection_agreement"] == 1.0
    assert abs(mnn["accuracy"]["map50_95"] - ort["accuracy"]["map50_95"]) < 0.005


@pytest.mark.parametrize("banner", [
    "import os\nos.write(1, b'native banner\\n')\n",
    # what MNN really does: libc's printf, buffered in a pipe until fflush or exit
    "import ctypes\nctypes.CDLL(None).printf(b'native banner\\n')\n",
], ids=["write", "buffered-printf"])
def test_probe_survives_a_runtime_that_prints_on_import(tmp_path: Path, banner: str) -> None:
    """MNN prints the CPU's features from native code on import; the probe's JSON on stdout
    must stay whole (the agent imports runtimes with fd 1 pointed at fd 2 and flushes libc's
    buffer before pointing it back; over SSH the banner otherwise came after the JSON)."""
    import os
    import subprocess
    import sys

    from edgebench.fingerprint import AGENT_FILES

    for script in AGENT_FILES:
        shutil.copy(script, tmp_path / script.name)
    (tmp_path / "noisy.py").write_text(banner + "__version__ = '1.2'\n")
    done = subprocess.run([sys.executable, str(tmp_path / "edgebench_agent.py"), "probe",
                           "--module", "noisy"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["probe"]["runtimes"] == {"noisy": "1.2"}
    assert "native banner" in done.stderr


def test_host_reads_the_probe_among_what_a_runtime_prints_after_it() -> None:
    """Text a runtime prints after the probe's JSON (at exit, or libc's buffer flushed late,
    as MNN's banner over SSH) is skipped; stdout without the JSON is one sentence."""
    from edgebench.errors import CaseError
    from edgebench.fingerprint import _probe_fields

    line = json.dumps({"protocol": 1, "probe": {"arch": "x86_64"}})
    assert _probe_fields(f"banner\n{line}\nThe device supports: i8sdot:0\n", "ssh://b") == {
        "arch": "x86_64"}
    with pytest.raises(CaseError, match=r"the device probe on ssh://b printed no readable"):
        _probe_fields("The device supports: i8sdot:0\n", "ssh://b")
