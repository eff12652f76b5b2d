"""What compression buys and costs: each variant against the uncompressed (fp32) case with
the same model, backend, device and settings, and the latency-vs-mAP Pareto front.

Derived from the report's cases only (no numbers of its own), so a report loaded from disk
gives the same tables as the run that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..identity import UNCOMPRESSED, CaseKey
from ..records import Case, CaseResult, RunReport, Status
from .labels import model_names


@dataclass(frozen=True)
class Tradeoff:
    """One measured case, next to its fp32 baseline when that was measured too."""

    case_id: str
    model: str
    variant: str
    backend: str
    device: str
    p50_ms: float
    map50_95: float | None
    size_bytes: int | None
    speedup: float | None
    """fp32 median latency / this one (> 1: faster)."""
    map_delta_points: float | None
    """(this mAP50-95 - fp32's) x 100."""
    size_ratio: float | None
    on_front: bool = False
    """On its device's latency-vs-mAP Pareto front (no case is both faster and better)."""
    number: int = 0
    """Its row in the results table (from 1), as the plots number it."""
    model_name: str = ""
    """The model's short name (:func:`edgebench.reports.labels.model_names`)."""


def baseline_id(case: Case) -> str:
    """The id of the fp32 case a variant compares with (its variant field ``fp32``)."""
    return CaseKey.of(case).replace(variant=UNCOMPRESSED).id


def _without_variant(case: Case) -> CaseKey:
    """The case's identity but its variant: the cell it shares with its fp32 baseline."""
    return CaseKey.of(case).replace(variant="")


def _map(r: CaseResult) -> float | None:
    return r.accuracy.map50_95 if r.accuracy is not None else None


def tradeoffs(report: RunReport) -> list[Tradeoff]:
    """Every measured case with its speed-up and mAP delta versus fp32; empty when the run
    has no compressed variant."""
    measured = [r for r in report.cases if r.status is Status.OK and r.latency is not None]
    if not any(r.case.pipeline for r in report.cases):
        return []
    # the uncompressed case of the same model, backend, device and settings (its id names
    # its precision, fp32 or what its graph holds)
    baselines = {_without_variant(r.case): r for r in measured if not r.case.pipeline}
    numbers = {r.case.id: i for i, r in enumerate(report.cases, start=1)}
    names = model_names(report.cases)
    rows = []
    for r in measured:
        assert r.latency is not None
        base = baselines.get(_without_variant(r.case))
        speedup = map_delta = size_ratio = None
        if base is not None and base.latency is not None:
            speedup = base.latency.p50_ms / r.latency.p50_ms
            ours, theirs = _map(r), _map(base)
            if ours is not None and theirs is not None:
                map_delta = (ours - theirs) * 100
            if r.artifact is not None and base.artifact is not None and base.artifact.size_bytes:
                size_ratio = r.artifact.size_bytes / base.artifact.size_bytes
        rows.append(Tradeoff(
            case_id=r.case.id, model=r.case.model, variant="+".join(r.case.pipeline)
            or UNCOMPRESSED, backend=r.case.backend, device=r.case.device,
            p50_ms=r.latency.p50_ms, map50_95=_map(r),
            size_bytes=r.artifact.size_bytes if r.artifact else None,
            speedup=speedup, map_delta_points=map_delta, size_ratio=size_ratio,
            number=numbers[r.case.id], model_name=names[r.case.model]))
    return mark_fronts(rows)


MAP_TIE = 5e-4
"""mAP50-95 differences below this are ties on the front: half the last digit the reports
print (3 decimals), and well above the 1e-5 floating-point noise between runtimes running
one model. Without it a slower backend whose mAP is 0.00004 higher joins the front."""


def pareto_mask(points: Sequence[tuple[float, float | None]]) -> list[bool]:
    """For each (latency, mAP) point: on the Pareto front, i.e. no other point has
    lower-or-equal latency and higher-or-equal mAP with one of them strictly better (mAP
    within :data:`MAP_TIE` counts as equal). A point without mAP is never on it (and
    beats none)."""
    def beats(other: tuple[float, float | None], this: tuple[float, float]) -> bool:
        (lat, acc), (other_lat, other_acc) = this, other
        if other_acc is None or other_lat > lat or other_acc < acc - MAP_TIE:
            return False
        return other_lat < lat or other_acc > acc + MAP_TIE

    return [acc is not None and not any(
        beats(other, (lat, acc)) for j, other in enumerate(points) if j != i)
        for i, (lat, acc) in enumerate(points)]


def mark_fronts(rows: Sequence[Tradeoff]) -> list[Tradeoff]:
    """Set ``on_front`` per device (see :func:`pareto_mask`)."""
    import dataclasses

    out = list(rows)
    for device in {row.device for row in rows}:
        index = [i for i, row in enumerate(rows) if row.device == device]
        mask = pareto_mask([(rows[i].p50_ms, rows[i].map50_95) for i in index])
        for i, front in zip(index, mask, strict=True):
            out[i] = dataclasses.replace(rows[i], on_front=front)
    return out


def _f(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "–"


TRADEOFF_HEADER = ("| # | model | variant | backend | device | p50 ms | speed-up vs fp32 | "
                   "mAP50-95 | Δ mAP (points) | size vs fp32 | Pareto |\n"
                   "|--:|---|---|---|---|---:|---:|---:|---:|---:|:-:|")
"""Rows in the results table's order; ``#`` is the case's row there."""


def tradeoff_cells(row: Tradeoff) -> list[str]:
    return [str(row.number), row.model_name, row.variant, row.backend, row.device,
            f"{row.p50_ms:.2f}",
            _f(row.speedup, ".2f") + ("×" if row.speedup is not None else ""),
            _f(row.map50_95, ".3f"), _f(row.map_delta_points, "+.2f"),
            _f(row.size_ratio, ".2f") + ("×" if row.size_ratio is not None else ""),
            "★" if row.on_front else ""]


TRADEOFF_NOTE = ("Same model, backend, device and settings; speed-up is the ratio of medians "
                 "(> 1: faster); ★: on the device's latency-vs-mAP Pareto front.")


def front_lines(rows: Sequence[Tradeoff]) -> list[str]:
    """Per device, its front from fastest to slowest (Markdown inline text)."""
    lines = []
    for device in sorted({r.device for r in rows}):
        front = sorted((r for r in rows if r.device == device and r.on_front),
                       key=lambda r: r.p50_ms)
        lines.append(f"`{device}`: " + " → ".join(
            f"{r.variant} on {r.backend} ({r.p50_ms:.2f} ms, {_f(r.map50_95, '.3f')})"
            for r in front))
    return lines


FRONT_HEADING = "Pareto front (latency vs mAP50-95)"


def tradeoff_markdown(report: RunReport) -> list[str]:
    """The compression section of ``report.md`` (empty without compressed variants)."""
    rows = tradeoffs(report)
    if not rows:
        return []
    lines = ["", "## Compression: speed-up and mAP delta versus fp32", "", TRADEOFF_NOTE, "",
             TRADEOFF_HEADER]
    lines += ["| " + " | ".join(tradeoff_cells(r)) + " |" for r in rows]
    lines += ["", f"### {FRONT_HEADING}", ""]
    lines += [f"- {line}" for line in front_lines(rows)]
    return lines
