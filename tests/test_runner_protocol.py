"""The runner request/result record (``edgebench_protocol``): the host builds the request
from the run settings, the real ONNX Runtime runner reads it and writes the result, which
reads back into the same record; a malformed request fails in the ``request`` phase."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from runner_utils import run_device_runner

from edgebench.agent.edgebench_protocol import (
    AccuracyRequest,
    ProtocolError,
    RunnerRequest,
    RunnerResult,
)
from edgebench.errors import CaseError
from edgebench.fingerprint import AGENT_FILES
from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend
from edgebench.records import RunSettings
from edgebench.remote import check_result, runner_request


def test_device_side_files_parse_as_python_38() -> None:
    """Python's own parser at 3.8's grammar: no 3.9+ syntax in what is pushed."""
    for path in AGENT_FILES:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def test_request_from_settings_is_the_wire_form_runners_read() -> None:
    settings = RunSettings(warmup_iterations=4, warmup_s=0.5, iterations=30,
                           min_duration_s=2.0, threads=3, timeout_s=9.0)
    request = runner_request(settings, {"graph_optimization_level": "basic"},
                             {"test_delay_s": 0.25})
    wire = request.to_json()
    assert {k: wire[k] for k in ("warmup_iterations", "warmup_s", "iterations",
                                 "min_duration_s", "threads", "options", "test_delay_s")} == {
        "warmup_iterations": 4, "warmup_s": 0.5, "iterations": 30, "min_duration_s": 2.0,
        "threads": 3, "options": {"graph_optimization_level": "basic"}, "test_delay_s": 0.25}
    assert "accuracy" not in wire  # absent without an accuracy pass, as before
    placed = dataclasses.replace(request, model="/w/m.onnx", inputs="/w/i.npz",
                                 verify={"/w/m.onnx": ("ab" * 32, 123)},
                                 accuracy=AccuracyRequest("/w/b.npz", "/w/o.npz"))
    again = json.loads(json.dumps(placed.to_json()))
    assert again["verify"] == {"/w/m.onnx": ["ab" * 32, 123]}
    assert again["accuracy"] == {"inputs": "/w/b.npz", "out": "/w/o.npz"}
    assert RunnerRequest.from_json(again) == placed
    with pytest.raises(ProtocolError, match="unknown test option"):
        runner_request(settings, {}, {"test_sleep": 1.0})


def test_minimal_request_takes_the_defaults() -> None:
    request = RunnerRequest.from_json({"model": "m.onnx", "inputs": "i.npz"})
    assert (request.warmup_iterations, request.iterations, request.threads,
            request.options, request.accuracy) == (0, 1, None, {}, None)
    for bad, field in [({"iterations": "5"}, "iterations"), ({"threads": -1}, "threads"),
                       ({"warmup_s": float("nan")}, "warmup_s"),
                       ({"verify": {"m": ["x"]}}, "verify")]:
        with pytest.raises(ProtocolError, match=field):
            RunnerRequest.from_json(bad)


def test_real_runner_result_reads_back_into_the_record(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    x = np.zeros((1, 3, 32, 32), np.float32)
    code, raw = run_device_runner(OnnxRuntimeBackend(), tmp_path, model, {"images": x},
                                  warmup_iterations=1, iterations=5, threads=1)
    assert code == 0, raw
    result = check_result(raw)
    assert result.samples_ns is not None and len(result.samples_ns) == 5
    assert result.runtime is not None and result.runtime.name == "onnxruntime"
    assert result.outputs is not None and result.outputs[0].finite
    assert result.to_json() == raw  # the record holds every field the runner wrote
    assert RunnerResult.from_json(result.to_json()) == result


def test_misspelt_request_field_fails_in_the_request_phase(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    """A field the agent does not know would otherwise be ignored and the case measured
    with the default (``iteration=500`` running 1 iteration): it is refused instead."""
    model = make_onnx("conv", size=32)
    code, raw = run_device_runner(OnnxRuntimeBackend(), tmp_path, model,
                                  {"images": np.zeros((1, 3, 32, 32), np.float32)},
                                  iteration=500)
    assert code == 1
    assert raw["error"] == {"phase": "request", "message": "the request is malformed: "
                                                           "unknown request field(s) iteration"}
    assert "samples_ns" not in raw


def test_malformed_result_is_one_sentence() -> None:
    with pytest.raises(CaseError, match=r"^the runner's result is malformed: samples_ns"):
        check_result({"init_ns": 1, "first_inference_ns": 1, "samples_ns": [],
                      "runtime": {"name": "x", "version": "1"}})
