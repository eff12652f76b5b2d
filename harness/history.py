"""Run history: every run's ``report.json`` under a results directory, read back in order.

``edgebench run`` writes ``RESULTS/<run-id>/report.json``; that directory of versioned JSON
files is the history. Cases are keyed across runs by :func:`edgebench.comparability.match_key`
(model name, pipeline, backend, device, threads); each point also carries the model hash
and the device fingerprint with the input size (and, for mAP, the evaluation set), so a
change of any shows in the series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .comparability import match_key
from .errors import UserError
from .records import CaseResult, DeviceInfo, RunReport, Status
from .reports.json_report import load_report

METRICS: dict[str, tuple[str, Callable[[CaseResult], float | None]]] = {
    "p50_ms": ("median latency, ms", lambda r: r.latency.p50_ms if r.latency else None),
    "p90_ms": ("p90 latency, ms", lambda r: r.latency.p90_ms if r.latency else None),
    "peak_rss_mib": ("peak RSS, MiB", lambda r: r.memory.peak_rss_bytes / 2**20
                     if r.memory and r.memory.peak_rss_bytes else None),
    "map50_95": ("mAP50-95", lambda r: r.accuracy.map50_95 if r.accuracy else None),
    "map50": ("mAP50", lambda r: r.accuracy.map50 if r.accuracy else None),
}


@dataclass(frozen=True)
class StoredRun:
    path: Path
    report: RunReport


@dataclass(frozen=True)
class Point:
    run_id: str
    created_at: str
    value: float | None
    model: str
    fingerprint: str

    @property
    def started(self) -> datetime:
        """The run's start time (:func:`start_time` of ``created_at``)."""
        return start_time(self.created_at)


def start_time(created_at: str) -> datetime:
    """A report's ``created_at`` (ISO 8601) as an aware datetime; one without a zone is
    taken as UTC, one that does not parse sorts first."""
    try:
        when = datetime.fromisoformat(created_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def host_fingerprint(info: DeviceInfo) -> str:
    return f"{info.arch}/{info.cpu_model}/{info.cores}c/{info.hostname}"


def load_runs(results: Path) -> list[StoredRun]:
    """Every readable report under ``results``, by start time (``created_at`` as a time,
    so zone offsets and directory names do not reorder runs; ties by run id). Unreadable
    ones are skipped with a warning on stderr, so one corrupt file does not hide the
    rest."""
    import sys

    if not results.is_dir():
        raise UserError(f"results directory {results} does not exist; pass --results.")
    runs = []
    for path in sorted(results.glob("*/report.json")):
        try:
            runs.append(StoredRun(path, load_report(path)))
        except UserError as exc:
            print(f"edgebench: warning: skipped {exc}", file=sys.stderr)
    runs.sort(key=lambda r: (start_time(r.report.created_at), r.report.run_id))
    return runs


def resolve_report(spec: str, results: Path, *, exclude: Path | None = None) -> Path:
    """A report path from ``spec``: a file, a run directory, ``last`` (newest run) or
    ``previous`` (the newest run before ``exclude`` on the same host)."""
    if spec in ("last", "previous"):
        runs = [r for r in load_runs(results) if r.report.state.value == "complete"]
        if exclude is not None:
            current = next((r for r in runs if r.path.resolve() == exclude.resolve()), None)
            if current is not None:
                host = host_fingerprint(current.report.host)
                runs = [r for r in runs if r.path.resolve() != exclude.resolve()
                        and host_fingerprint(r.report.host) == host
                        and start_time(r.report.created_at)
                        <= start_time(current.report.created_at)]
        if spec == "previous" and exclude is None:
            runs = runs[:-1]
        if not runs:
            raise UserError(f"no earlier complete run on this host under {results}.")
        return runs[-1].path
    path = Path(spec)
    if path.is_dir():
        path = path / "report.json"
    return path


def series(runs: list[StoredRun], metric: str, case_filter: str = ""
           ) -> dict[str, list[Point]]:
    """Per case key, the metric over runs (``None`` where the case did not measure it)."""
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}.")
    get = METRICS[metric][1]
    out: dict[str, list[Point]] = {}
    for run in runs:
        for result in run.report.tracked_cases():
            key = match_key(result)
            if case_filter and case_filter not in key:
                continue
            value = get(result) if result.status is Status.OK else None
            fp = host_fingerprint(result.device) if result.device else "?"
            if result.runtime:
                fp += f"/{result.runtime.name} {result.runtime.version}"
            hw = result.input_hw()  # a size change shows in the series, as in compare
            if hw is not None:
                fp += f"/{hw[0]}x{hw[1]}"
            acc = result.accuracy
            if metric.startswith("map") and acc is not None:  # the set the mAP is of
                fp += (f"/{acc.dataset_fingerprint[:8] if acc.dataset_fingerprint else acc.dataset}"
                       f" {acc.images} images conf {acc.conf:g} iou {acc.iou:g}")
            out.setdefault(key, []).append(Point(run.report.run_id, run.report.created_at,
                                                 value, result.case.model, fp))
    return out


def render_history(data: dict[str, list[Point]], metric: str) -> str:
    label = METRICS[metric][0]
    lines = [f"# edgebench history: {label}", ""]
    for key, points in sorted(data.items()):
        lines += [f"## `{key}`", "", f"| run | started | {label} | model | fingerprint |",
                  "|---|---|---:|---|---|"]
        previous_fp = None
        for p in points:
            value = f"{p.value:.4g}" if p.value is not None else "–"
            fp = p.fingerprint if p.fingerprint != previous_fp else "〃"
            lines.append(f"| {p.run_id} | {p.created_at} | {value} | {p.model} | {fp} |")
            previous_fp = p.fingerprint
        lines.append("")
    if not data:
        lines.append("No matching cases.")
    return "\n".join(lines) + "\n"
