"""Export a run in pytest-benchmark's JSON format (``pytest-benchmark compare`` reads it).

Each ok case becomes one benchmark named after the case, its timed samples (seconds) as
``stats.data``, the statistics computed by pytest-benchmark's method, and the
case's device, runtime and accuracy in ``extra_info``. The statistics are computed here as
pytest-benchmark's ``Stats`` does, so exporting needs no pytest-benchmark installed.
"""

from __future__ import annotations

import json
import platform
import statistics
from bisect import bisect_left, bisect_right
from typing import Any

from ..records import RunReport, Status
from .markdown import pipeline_label


def _stats(samples_s: list[float]) -> dict[str, Any]:
    """The ``stats`` of one benchmark as pytest-benchmark writes it: the fields of its
    ``pytest_benchmark.stats.Stats.as_dict`` (5.x; computed as that class does: sample
    standard deviation, quartiles by Wikipedia's methods 3 (odd n) and 2 (even n), Tukey
    fences at 1.5 IQR), then ``data`` and ``iterations``. Written here so the export needs
    no pytest-benchmark (only its test extra installs it); ``tests/test_small_fixes.py``
    checks every field against its ``Stats``."""
    data = list(samples_s)
    ordered = sorted(data)
    n = len(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    iqr_outliers = sum(1 for v in data if v < low or v > high)
    total = sum(data)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": n,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[0] if n == 1 else ordered[bisect_left(ordered, low)],
        "hd15iqr": ordered[bisect_right(ordered, high) - 1],
        "ops": n / total if total else 0, "total": total,
        "data": data, "iterations": 1,
    }


def _quartiles(ordered: list[float]) -> tuple[float, float]:
    """Q1 and Q3 of sorted data as pytest-benchmark computes them
    (https://en.wikipedia.org/wiki/Quartile#Computing_methods, methods 3 and 2)."""
    n = len(ordered)
    if n == 1:
        return ordered[0], ordered[0]
    if n % 2 == 0:
        return statistics.median(ordered[: n // 2]), statistics.median(ordered[n // 2:])
    k, r = divmod(n, 4)
    if r == 1:
        return (0.25 * ordered[k - 1] + 0.75 * ordered[k],
                0.75 * ordered[3 * k] + 0.25 * ordered[3 * k + 1])
    return (0.75 * ordered[k] + 0.25 * ordered[k + 1],
            0.25 * ordered[3 * k + 1] + 0.75 * ordered[3 * k + 2])


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
