"""Export a run in pytest-benchmark's JSON format (``pytest-benchmark compare`` reads it).

Each ok case becomes one benchmark named after the case, its timed samples (seconds) as
``stats.data``, the statistics computed by pytest-benchmark's own ``Stats`` class, and the
case's device, runtime and accuracy in ``extra_info``.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from ..errors import UserError
from ..records import RunReport, Status
from .markdown import pipeline_label


def _stats(samples_s: list[float]) -> dict[str, Any]:
    try:
        from pytest_benchmark.stats import Stats
    except ImportError:
        raise UserError("exporting for pytest-benchmark needs it installed: "
                        "pip install pytest-benchmark.") from None
    stats: Any = Stats()  # type: ignore[no-untyped-call]
    for s in samples_s:
        stats.update(s)
    out: dict[str, Any] = stats.as_dict()
    out["data"] = samples_s
    out["iterations"] = 1
    return out


def to_pytest_benchmark(report: RunReport) -> str:
    benchmarks = []
    for r in report.cases:
        if r.status is not Status.OK or r.latency is None:
            continue
        name = r.case.id.replace("|", "-").replace("@", "-")
        extra: dict[str, Any] = {
            "edgebench_case": r.case.id, "backend": r.case.backend, "device": r.case.device,
            "pipeline": pipeline_label(r),
            "threads": r.case.settings.threads,
        }
        if r.latency.batch > 1:  # the stats are per inference of the whole batch
            extra["batch"] = r.latency.batch
            extra["per_image_p50_ms"] = r.latency.per_image_p50_ms
            extra["images_per_s"] = r.latency.images_per_s
        if r.runtime:
            extra["runtime"] = f"{r.runtime.name} {r.runtime.version}"
        if r.memory and r.memory.peak_rss_bytes:
            extra["peak_rss_bytes"] = r.memory.peak_rss_bytes
        if r.accuracy and r.accuracy.map50_95 is not None:
            extra["map50_95"] = r.accuracy.map50_95
            extra["map50"] = r.accuracy.map50
        benchmarks.append({
            "group": r.case.model, "name": name, "fullname": f"edgebench::{name}",
            "params": None, "param": None, "extra_info": extra,
            "options": {"disable_gc": True, "timer": "perf_counter_ns", "min_rounds": 1,
                        "max_time": 0, "min_time": 0, "warmup": r.case.settings.warmup_iterations},
            "stats": _stats([s / 1e9 for s in r.latency.samples_ns]),
        })
    host = report.host
    doc = {
        "machine_info": {
            "node": host.hostname or "", "processor": host.cpu_model or "",
            "machine": host.arch, "python_compiler": "", "python_implementation": "CPython",
            "python_implementation_version": host.python or "",
            "python_version": host.python or "", "python_build": ["", ""],
            "release": platform.release(), "system": platform.system(),
            "cpu": {"brand_raw": host.cpu_model or "", "count": host.cores or 0},
        },
        "commit_info": {"id": report.run_id, "time": report.created_at,
                        "author_time": report.created_at, "dirty": False,
                        "project": "edgebench", "branch": ""},
        "benchmarks": benchmarks,
        "datetime": report.created_at,
        "version": "5.1.0",
    }
    return json.dumps(doc, indent=1) + "\n"
