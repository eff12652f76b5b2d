"""Fuzzing what the harness reads from outside: native-runner output, runner result JSON from
a device, matrix files, device URIs and reports. Each may only fail with its documented
error (ParseError, CaseError, UserError), never crash the harness.

Inputs are built from the real formats (lines of each tool's output, valid reports and
results with one part replaced) so that the fuzzing gets past the first check.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgebench.devices import adb_target, ssh_target
from edgebench.devices.native_parsers import (
    ParseError,
    parse_benchmark_model,
    parse_benchncnn,
    parse_perf_test,
    parse_perf_test_samples,
    summary_latency,
)
from edgebench.errors import CaseError, UserError
from edgebench.execution import result_from_runner
from edgebench.matrix_file import TABLES, MatrixFile
from edgebench.options import OPTIONS, parse_backend_option
from edgebench.record_json import from_json_dict, to_json_dict
from edgebench.records import (
    CaseResult,
    DeviceInfo,
    RunReport,
)
from edgebench.remote import check_result
from edgebench.reports.json_report import load_report, render_json, report_from_dict

FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMBER = st.one_of(st.integers(-10**12, 10**12).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["nan", "inf", "-0", "1e999", "0x10", "", "1.2.3"]))
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


# -- native runners ---------------------------------------------------------------------------

LINE_TEMPLATES = [
    "count={} first={} curr={} min={} max={} avg={} std={}",
    "count={} curr={}(all same)",
    "count={} first={} curr={} min={} max={} avg={} std={} p5={} median={} p95={}",
    "Inference timings in us: Init: {}, First inference: {}, Warmup (avg): {}, "
    "Inference (avg): {}",
    "Overall peak memory footprint (MB) via periodic monitoring: {}",
    "Memory footprint delta from the start of the tool (MB): init={} overall={}",
    "loop_count = {}", "  yolov8n  min = {}  max = {}  avg = {}",
    "Total inference requests: {}", "Runs: {}", "Average inference time cost total: {} ms",
    "Average inference time cost: {} ms", "Min Latency: {} s", "Max Latency: {} s",
    "P50 Latency: {} s", "P90 Latency: {} s", "P99 Latency: {} s",
    "Session creation time cost: {} s", "First inference time cost: {} ms",
    "Peak working set size: {} bytes", "model.onnx,{},{},{},{}",
]


@st.composite
def tool_output(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            template = draw(st.sampled_from(LINE_TEMPLATES))
            numbers = [draw(NUMBER) for _ in range(template.count("{}"))]
            lines.append(template.format(*numbers))
        else:
            lines.append(draw(st.text(max_size=40)))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


@FUZZ
@given(tool_output(), st.one_of(st.none(), st.floats(0.001, 100)),
       st.one_of(st.none(), st.floats(0.001, 1e4)), st.one_of(st.none(), st.integers(1, 1000)))
def test_native_parsers(text: str, gflops: float | None, peak: float | None,
                        loops: int | None) -> None:
    samples = parse_perf_test_samples(text)
    assert all(math.isfinite(s) and s >= 0 for s in samples)
    for parse in (parse_perf_test, parse_benchmark_model,
                  lambda t: parse_benchncnn(t, loops)):
        try:
            summary = parse(text)
        except ParseError:
            continue
        latency, notes = summary_latency(summary, gflops, peak)
        assert notes and latency.n == summary.count


# -- runner results from a device -------------------------------------------------------------

VALID_RESULT: dict[str, Any] = {
    "protocol": 1, "rss_baseline_bytes": 1, "rss_before_load_bytes": 2,
    "rss_after_load_bytes": 3, "init_ns": 10, "first_inference_ns": 20,
    "runtime": {"name": "onnxruntime", "version": "1.0", "threads": 2, "providers": ["CPU"],
                "details": {"a": "b"},
                "delegation": {"delegate": "x", "nodes_delegated": 1, "nodes_total": 2,
                               "partitions": 1, "fallback_ops": {"op": 1}}},
    "outputs": [{"shape": [1, 2], "dtype": "float32", "finite": True}],
    "warmup_ns": [5, 6], "samples_ns": [7, 8, 9], "cpu_samples_ns": [6, 7, 8], "peak_rss_bytes": 4,
    "accuracy": {"images": 1, "seconds": 0.1},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    value = copy.deepcopy(value)
    if not path:
        return new
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    value = valid
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(value)))
        value = _replaced(value, path, draw(JSONISH), draw(st.booleans()))
    return value


_INFO = DeviceInfo(uri="local", hostname=None, arch="x86_64", os="Linux", cpu_model=None,
                   cores=2, ram_bytes=None, python=None, governor=None, temperature_c=None,
                   cpu_max_mhz=2000.0, cpu_flags=("avx2", "fma"))


@FUZZ
@given(mutated(VALID_RESULT))
def test_runner_result_from_a_device(raw: Any) -> None:
    try:
        measured = check_result(raw)
    except CaseError as exc:
        assert str(exc).startswith("the runner's result is malformed: ")
        return
    from edgebench.records import Case, RunSettings, Status

    case = Case(id="c", model="m", backend="onnxruntime", device="local",
                settings=RunSettings())
    base = CaseResult(case=case, status=Status.FAILED)
    plan = SimpleNamespace(artifact=SimpleNamespace(gflops=1.0, precision=None), batch=None)
    result = result_from_runner(measured, plan, _INFO, base,  # type: ignore[arg-type]
                                None, None)
    assert result.latency is not None and result.latency.n == len(raw["samples_ns"])
    json.dumps(to_json_dict(result), allow_nan=False)  # it can be written to the report


# -- the matrix file --------------------------------------------------------------------------

TOML_VALUE = st.one_of(
    st.integers(-5, 10**6).map(str), st.sampled_from(["nan", "inf", "-inf", "0.0", "1e9"]),
    st.floats(-1e6, 1e6).map(repr), st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(['"~nosuchuser/x"', '"a\\u0000b"', '"/"', '""', '"ssh://[::1"']),
    st.lists(st.integers(-3, 8).map(str), max_size=3).map(lambda v: f"[{', '.join(v)}]"),
    st.lists(st.text(max_size=6).map(json.dumps), max_size=3)
    .map(lambda v: f"[{', '.join(v)}]"),
    st.just("{ fp16_storage = true }"), st.just("[[1], [2]]"))
KEYS = st.sampled_from(sorted({*OPTIONS, "enabled", "fp16_storage", "bogus", "threads"}))


@st.composite
def matrix_text(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        table = draw(st.sampled_from([*TABLES, "backend_options.ncnn", "runn", "gate.x"]))
        lines.append(f"[{table}]")
        for key in draw(st.lists(KEYS, max_size=4, unique=True)):
            lines.append(f"{key} = {draw(TOML_VALUE)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(matrix_text())
@example('[run]\ndata = "~nosuchuser-edgebench/x"\n')
@example('[run]\noutput = "a\\u0000b"\n')
@example("[settings]\ntimeout_s = inf\n")
@example("[settings]\nmin_duration_s = nan\n")
def test_matrix_file_loader(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nightly.toml"
        path.write_text(text, errors="surrogatepass")
        try:
            values = MatrixFile(path).values
        except UserError as exc:
            assert str(exc).startswith(str(path))
            return
    for name, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), f"{name} = {value} was accepted"


@FUZZ
@given(st.text(max_size=60))
def test_backend_option_and_device_uris(text: str) -> None:
    for parse in (parse_backend_option, ssh_target.parse_uri, adb_target.parse_uri,
                  lambda t: ssh_target.parse_uri("ssh://" + t),
                  lambda t: adb_target.parse_uri("adb://" + t)):
        try:
            parse(text)
        except UserError:
            pass


# -- reports ----------------------------------------------------------------------------------


def _valid_report() -> dict[str, Any]:
    from edgebench.records import Case, LatencyStats, MemoryStats, RunSettings, RunState, Status

    latency = LatencyStats((1, 2), (3,), 4, 5, 2, 1.0, 1.5, 2.0, 2.0, 1.5, 0.5, 2.0,
                           (1.0, 2.0), 666.0)
    case = CaseResult(case=Case(id="m|fp32|onnxruntime|local|t1", model="m",
                                backend="onnxruntime", device="local",
                                settings=RunSettings(threads=1)),
                      status=Status.OK, device=_INFO, latency=latency,
                      memory=MemoryStats(1, 2, 3, 1, 4), notes=("a",))
    report = RunReport(schema_version=2, tool_version="0", run_id="r", created_at="t",
                       state=RunState.COMPLETE, host=_INFO, argv=("run",), cases=(case,))
    data: dict[str, Any] = json.loads(render_json(report))
    return data


VALID_REPORT = _valid_report()


@FUZZ
@given(mutated(VALID_REPORT))
def test_report_loader_on_damaged_reports(data: Any) -> None:
    try:
        report = report_from_dict(data, "report.json")
    except UserError as exc:
        assert str(exc).startswith("report.json ")
        return
    assert from_json_dict(RunReport, to_json_dict(report)) == report


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 mutated(VALID_REPORT).map(lambda d: json.dumps(d).encode()),
                 st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
                 st.just(json.dumps(VALID_REPORT).replace("1.5", "NaN").encode()),
                 st.just(json.dumps(VALID_REPORT).encode()[:-40])))
def test_report_loader_on_files(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        path.write_bytes(raw)
        try:
            report = load_report(path)
        except UserError as exc:
            assert str(path) in str(exc) and len(str(exc).splitlines()) == 1
            return
    render_json(report)  # whatever loads can be written back (a resumed run does)
