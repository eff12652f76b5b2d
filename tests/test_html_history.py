"""``edgebench history --html`` plots runs in time order (the runs' start times, not their
directory names or which series saw a run first), leaves empty series out, and reads
right in a browser."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from edgebench.cli import main
from edgebench.records import Case, CaseResult, RunReport, RunSettings, Status
from edgebench.reports.json_report import render_json
from edgebench.stats import latency_stats

# (directory name, created_at, p50 of series "steady", p50 of "late", "late" present)
# directory names (and created_at as strings) sort a, b, c, d; the times sort d, b, a, c
# (b's 10:00+02:00 is 08:00 UTC, an hour before a)
RUNS = [
    ("a-run", "2026-11-03T09:00:00+00:00", 12.0, 30.0),
    ("b-run", "2026-11-03T10:00:00+02:00", 11.0, None),
    ("c-run", "2026-11-04T09:00:00+00:00", 13.0, 31.0),
    ("d-run", "2026-11-01T09:00:00+00:00", 10.0, None),
]


def case(backend: str, samples_ms: float | None) -> CaseResult:
    c = Case(id=f"shapes-yolov8n@00c00603|fp32|{backend}|local|t1",
             model="shapes-yolov8n@00c00603", backend=backend, device="local",
             settings=RunSettings(threads=1))
    if samples_ms is None:
        return CaseResult(case=c, status=Status.FAILED, reason="load failed: boom")
    rng = np.random.default_rng(int(samples_ms))
    ns = [int(samples_ms * 1e6 * (1 + 0.01 * v)) for v in rng.standard_normal(20)]
    return CaseResult(case=c, status=Status.OK, latency=latency_stats(ns))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_html_report_plots import synthetic

    root = tmp_path_factory.mktemp("history")
    template = synthetic(1)
    for name, created, steady, late in RUNS:
        cases = [case("onnxruntime", steady), case("ncnn", None)]  # ncnn never measured
        if late is not None:
            cases.insert(0, case("litert", late))  # "late" is the first series a run shows
        report: RunReport = dataclasses.replace(template, run_id=name, created_at=created,
                                                cases=tuple(cases))
        (root / name).mkdir()
        (root / name / "report.json").write_text(render_json(report))
    return root


def series_x(page: str) -> dict[str, list[float]]:
    """Per ``series-k`` group of the SVG, the x coordinates of its line's vertices."""
    out = {}
    for gid, body in re.findall(r'<g id="(series-\d+)">(.*?)</g>', page, re.S):
        d = re.search(r'<path d="([^"]*)"', body)
        assert d, body[:300]
        out[gid] = [float(x) for x, _ in re.findall(r"(-?[\d.]+) (-?[\d.]+)", d.group(1))]
    return out


def test_history_html_is_in_time_order_without_empty_series(
        results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "history.html"
    assert main(["history", "--results", str(results), "--html", str(out)]) == 0
    text = capsys.readouterr().out
    # the Markdown lists the runs by start time too (b at 08:00Z, before a at 09:00Z)
    steady = text.split("onnxruntime|local|t1`")[1].split("##")[0]
    assert re.findall(r"\| (\w)-run \|", steady) == ["d", "b", "a", "c"]
    page = out.read_text()
    lines = series_x(page)
    assert len(lines) == 2, lines  # the never-measured ncnn series is not drawn
    for gid, xs in lines.items():
        assert xs == sorted(xs) and len(set(xs)) == len(xs), (gid, xs)
    assert sorted(len(xs) for xs in lines.values()) == [2, 4]
    litert, steady_x = sorted(lines.values(), key=len)
    # the late series sits at the last two runs' times on the same time axis
    assert litert == steady_x[2:]
    legend = re.findall(r"<!-- (.*?) -->", page)
    assert any("ncnn" in t for t in legend) is False
    assert "Not plotted (no value in any run)" in page and "ncnn|local|t1" in page


def test_history_page_in_chromium(results: Path, tmp_path: Path) -> None:
    from test_html_report_plots import check_in_browser

    out = tmp_path / "history.html"
    assert main(["history", "--results", str(results), "--html", str(out)]) == 0
    check_in_browser(out, tmp_path, "history", plots=1)


def test_history_figure_texts_do_not_overlap() -> None:
    from datetime import UTC, datetime, timedelta

    from edgebench.reports.plots import history_figure, overlapping_texts

    start = datetime(2026, 11, 1, tzinfo=UTC)
    series: dict[str, list[tuple[datetime, float | None]]] = {
        f"yolov8n-retail-shelf-detector|fp32|backend{k}|local|t4": [
            (start + timedelta(days=d), 10.0 + k + d % 3) for d in range(30)]
        for k in range(12)}
    fig = history_figure(series, "median latency, ms")
    assert overlapping_texts(fig) == []
