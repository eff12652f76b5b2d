"""Records round-trip through JSON; the committed schema is current and validates reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from edgebench.errors import UserError
from edgebench.record_json import from_json_dict, to_json_dict
from edgebench.records import (
    SCHEMA_VERSION,
    Artifact,
    Case,
    CaseResult,
    CpuCores,
    DeviceInfo,
    MemoryStats,
    RunReport,
    RunSettings,
    RunState,
    RuntimeInfo,
    Status,
)
from edgebench.reports.json_report import load_report, render_json
from edgebench.schema import SCHEMA_PATH, report_schema
from edgebench.stats import latency_stats

INFO = DeviceInfo(uri="local", hostname="h", arch="x86_64", os="Linux", cpu_model="cpu",
                  cores=2, ram_bytes=1 << 30, python="3.11.7", governor=None,
                  temperature_c=None, cpu_max_mhz=2600.0, cpu_flags=("avx2", "fma"),
                  runtimes={"onnxruntime": "1.20.0"})


def sample_report() -> RunReport:
    case = Case(id="m|fp32|onnxruntime|local|tauto", model="m", backend="onnxruntime",
                device="local", settings=RunSettings())
    ok = CaseResult(
        case=case, status=Status.OK, device=INFO,
        artifact=Artifact(path=Path("/m.onnx"), format="onnx", sha256="ab" * 32, size_bytes=10,
                          input_name="images", input_shape=(1, 3, 32, 32), gflops=0.1),
        runtime=RuntimeInfo(name="onnxruntime", version="1.20.0", threads=None,
                            providers=("CPUExecutionProvider",), details={"k": "v"}),
        latency=latency_stats([1_000_000, 2_000_000, 3_000_000], gflops=0.1),
        memory=MemoryStats(1, 2, 3, 1, 4), started_at="2026-01-01T00:00:00+00:00", wall_s=1.0)
    failed = CaseResult(case=dataclasses.replace(case, id="x"), status=Status.FAILED,
                        reason="load failed: boom")
    return RunReport(schema_version=SCHEMA_VERSION, tool_version="0.1.0", run_id="r",
                     created_at="2026-01-01T00:00:00+00:00", state=RunState.COMPLETE,
                     host=INFO, argv=("run",), cases=(ok, failed))


def test_round_trip() -> None:
    report = sample_report()
    data = json.loads(render_json(report))
    assert from_json_dict(RunReport, data) == report


def test_committed_schema_is_current() -> None:
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == report_schema(), (
        "regenerate: python -m edgebench.schema > harness/schema/report.schema.json")


def test_report_validates_against_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(render_json(sample_report())), schema,
                        cls=jsonschema.Draft202012Validator)


def test_schema_rejects_unknown_fields_and_wrong_types() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    data = json.loads(render_json(sample_report()))
    data["cases"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    data = json.loads(render_json(sample_report()))
    data["cases"][0]["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_with_case_replaces_same_id() -> None:
    report = sample_report()
    again = dataclasses.replace(report.cases[1], reason="other")
    updated = report.with_case(again)
    assert len(updated.cases) == 2 and updated.cases[-1].reason == "other"


def test_from_json_dict_names_the_bad_field() -> None:
    data = to_json_dict(sample_report())
    data["cases"][0]["latency"]["n"] = "many"
    with pytest.raises(ValueError, match=r"cases\[0\]\.latency\.n"):
        from_json_dict(RunReport, data)


def test_load_report_refuses_newer_schema(tmp_path: Path) -> None:
    data = to_json_dict(sample_report())
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="newer than this edgebench"):
        load_report(path)


@pytest.mark.parametrize("content", ["", "{\"schema_version\": 1, ", "[1, 2]", "{}"])
def test_load_report_corrupt_files_name_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(UserError, match=r"broken\.json"):
        load_report(path)


def test_load_report_reads_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(render_json(sample_report()))
    assert load_report(path) == sample_report()


def test_peak_estimate() -> None:
    # No CPU identity (an older report) or a clock only from /proc/cpuinfo: no peak, not
    # a guess from the SIMD flags (the table and its tests: tests/test_peak.py).
    assert INFO.peak_gflops_estimate() is None
    zen4 = dataclasses.replace(INFO, cpu_cores=(CpuCores("x86:AuthenticAMD:25:17:1:AMD EPYC", 2),),
                               cpu_clock_source="probe", cpu_max_mhz=3650.0)
    assert zen4.peak_gflops_estimate() == pytest.approx(2 * 3.65 * 32)
    assert dataclasses.replace(zen4, cpu_clock_source="/proc/cpuinfo").peak_gflops_estimate() \
        is None
