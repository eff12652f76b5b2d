"""``report.md``: a table for terminals and pull-request comments."""

from __future__ import annotations

from typing import ClassVar

from ..contracts import Reporter
from ..hookspecs import Register, hookimpl
from ..records import Accuracy, CaseResult, Place, RunReport, Status
from .notes import NO_CI_NOTE as NO_CI_NOTE  # its home is .notes; kept importable here
from .notes import (
    NO_REFERENCE_DETECTIONS,
    cached_mark,
    footnotes,
    no_reference_detections,
    preamble,
    section_markdown,
    sections,
)
from .tradeoffs import tradeoff_markdown

MIB = 1024 * 1024


def _mib(value: int | None) -> str:
    return f"{value / MIB:.1f}" if value is not None else "–"


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


def pipeline_label(r: CaseResult) -> str:
    """The compression pipeline, or for an uncompressed model its precision read from the
    graph (``fp32`` when unknown): the case id's field, also for a case not measured."""
    return r.pipeline_label()


def input_size(r: CaseResult) -> str:
    """``HxW`` the model ran at (see ``CaseResult.input_hw``), ``–`` when unknown."""
    hw = r.input_hw()
    return f"{hw[0]}×{hw[1]}" if hw is not None else "–"


def _evaluation_set(acc: Accuracy) -> str:
    left = f", {len(acc.left_out)} left out" if acc.left_out else ", none left out"
    content = f", content {acc.dataset_fingerprint[:8]}" if acc.dataset_fingerprint else ""
    return (f"`{acc.dataset}`: {acc.images} images evaluated{left}, conf {acc.conf:g}, "
            f"IoU {acc.iou:g}{content}")


def evaluation_sets(report: RunReport) -> dict[str, int]:
    """Each evaluation set the run's accuracy figures are of (dataset, images evaluated,
    left out, conf / IoU, content fingerprint), with its number of cases."""
    sets: dict[str, int] = {}
    for r in report.cases:
        acc = r.accuracy
        if acc is not None and (acc.images or acc.status is not Status.SKIPPED):
            text = _evaluation_set(acc)
            sets[text] = sets.get(text, 0) + 1
    return sets


def evaluation_lines(report: RunReport) -> list[str]:
    """The line (or list) naming what the accuracy figures were measured on."""
    sets = evaluation_sets(report)
    if len(sets) == 1:
        return [f"Accuracy measured on {next(iter(sets))}; input size per case: the "
                "`input` column (H×W).", ""]
    if sets:
        return ["Accuracy measured on (input size per case: the `input` column, H×W):", "",
                *(f"- {text} ({n} case{'s' if n > 1 else ''})" for text, n in sets.items()),
                ""]
    return []


def device_label(r: CaseResult) -> str:
    """The case's device URI, and the farm's board it ran on when the URI stands for any
    of several (``labgrid://?board=rpi5&count=2 → rpi5-3``)."""
    place = r.device.place if r.device is not None else None
    return f"{r.case.device} → {place.name}" if place is not None else r.case.device


def place_line(place: Place) -> str:
    """One line on a farm's board: name, tags, host, farm and the time waited for it."""
    tags = ", ".join(f"{k}={v}" for k, v in sorted(place.tags.items())) or "no tags"
    host = f" on {place.host}" if place.host else ""
    farm = f" from {place.farm}" if place.farm else ""
    return (f"place `{place.name}` ({tags}){host}{farm}; waited {place.waited_s:.1f} s for "
            "it")


def threads_label(r: CaseResult) -> str:
    """The threads the runtime really used (``RuntimeInfo.threads``), with what was asked
    when it differs; ``auto (?)`` when the runtime ran on its default and cannot tell, the
    asked count or ``auto`` for a case not measured."""
    asked = r.case.settings.threads
    used = r.runtime.threads if r.runtime is not None else None
    if used is not None:
        return str(used) if asked is None or asked == used else f"{used} (asked {asked})"
    if r.runtime is not None and asked is None:
        return "auto (?)"
    return str(asked) if asked else "auto"


BUSY_HEADLINE = ("Warning: the device had fewer spare cores than the threads these cases "
                 "ran (other processes kept it busy during their timed loops); their latency "
                 "figures are inflated.")


def busy_cases(report: RunReport) -> list[tuple[str, str]]:
    """(case id, warning) of each case whose device was busy enough to distort its figures
    (``CaseLoad.busy_warning``, see :mod:`edgebench.load`)."""
    return [(r.case.id, r.load.busy_warning) for r in report.cases
            if r.load is not None and r.load.busy_warning]


def busy_lines(report: RunReport) -> list[str]:
    """:func:`busy_cases` as Markdown: a bold headline and one item per case."""
    busy = busy_cases(report)
    if not busy:
        return []
    return [f"**{BUSY_HEADLINE}**", "", *(f"- `{cid}`: {why}" for cid, why in busy), ""]


def result_row(r: CaseResult) -> str:
    lat, mem, art = r.latency, r.memory, r.artifact
    cells = [r.case.model, pipeline_label(r), (art.precision if art else None) or "–",
             input_size(r), r.case.backend, device_label(r), threads_label(r), r.status.value]
    if lat is not None:
        ci = lat.median_ci95_ms
        p50, rate = _ms(lat.p50_ms), f"{lat.throughput_ips:.1f}"
        if lat.batch > 1 and lat.per_image_p50_ms is not None and lat.images_per_s is not None:
            p50 += f" (batch {lat.batch}: {lat.per_image_p50_ms:.2f}/image)"
            rate += f" ({lat.images_per_s:.1f} images/s)"
        cells += [p50, f"{ci[0]:.2f}–{ci[1]:.2f}" if ci is not None else "–¹",
                  _ms(lat.p90_ms), _ms(lat.p99_ms), _ms(lat.cpu_p50_ms), rate, str(lat.n)]
    else:
        cells += ["–"] * 7
    cells += [_mib(mem.peak_rss_bytes if mem else None),
              _mib(mem.load_delta_bytes if mem else None),
              _mib(art.size_bytes if art else None)]
    acc = r.accuracy
    fid = acc.fidelity if acc else None
    cells += [_score(acc.map50_95 if acc else None) + cached_mark(acc),
              _score(acc.map50 if acc else None) + cached_mark(acc),
              NO_REFERENCE_DETECTIONS if no_reference_detections(fid)
              else _score(fid.detection_agreement if fid else None),
              f"{fid.max_abs:.1e}" if fid else "–"]
    return "| " + " | ".join(cells) + " |"


def _score(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "–"


HEADER = (
    "| model | pipeline | precision | input | backend | device | threads | status | p50 ms | "
    "median 95% CI | "
    "p90 ms | p99 ms | CPU p50 ms | inf/s | n | peak RSS MiB | load Δ MiB | size MiB | "
    "mAP50-95 | mAP50 | agreement | max abs diff |\n"
    "|" + "---|" * 8 + "---:|" * 14
)


def render_markdown(report: RunReport) -> str:
    lines = [f"# edgebench run {report.run_id}", "",
             f"edgebench {report.tool_version}, report schema {report.schema_version}, "
             f"state **{report.state.value}**, started {report.created_at}.", ""]
    for note in preamble(report):
        lines += [note, ""]
    lines += evaluation_lines(report)
    lines += busy_lines(report)
    lines.append(HEADER)
    lines += [result_row(r) for r in report.cases]
    for note in footnotes(report):  # the same notes as report.html (see .notes)
        lines += ["", note]
    lines += tradeoff_markdown(report)
    for section in sections(report):
        lines += section_markdown(section)
    devices = {(r.device.uri, r.device.place.name if r.device.place else None): r.device
               for r in report.cases if r.device is not None}
    if devices:
        lines += ["", "## Devices", ""]
        for info in devices.values():
            ram = f"{info.ram_bytes / 2**30:.1f} GiB" if info.ram_bytes else "?"
            temp = f"{info.temperature_c:.0f} °C" if info.temperature_c is not None else "n/a"
            runtimes = ", ".join(f"{k} {v}" for k, v in sorted(info.runtimes.items()))
            lines.append(
                f"- `{info.uri}`: {info.cpu_model or '?'} ({info.arch}, {info.cores} cores, "
                f"{ram}), {info.os}, Python {info.python}, governor {info.governor or 'n/a'}, "
                f"temperature {temp}; {runtimes}")
            if info.place is not None:
                lines.append(f"  - {place_line(info.place)}")
    lines += peak_lines(report)
    return "\n".join(lines) + "\n"


def peak_lines(report: RunReport) -> list[str]:
    """The "Compute peak" section: per measured case, its achieved GFLOP/s, its share of
    the peak and what that peak rests on (table entry, cores, clock and its source; see
    :mod:`edgebench.peak`), or why the peak is unknown."""
    rows = [(r, r.latency) for r in report.cases if r.latency is not None
            and r.latency.gflops_per_s and r.latency.peak is not None]
    if not rows:
        return []
    lines = ["", "## Compute peak", ""]
    for r, lat in rows:
        assert lat.gflops_per_s is not None and lat.peak is not None
        unit = "GFLOP/s" if lat.peak.precision == "fp32" else "GOP/s"
        share = f"peak share {lat.peak_share:.2f} of " if lat.peak_share is not None else ""
        lines.append(f"- `{r.case.id}`: {lat.gflops_per_s:.1f} {unit}; {share}"
                     f"{lat.peak.label()}")
    return lines


class MarkdownReporter(Reporter):
    name: ClassVar[str] = "markdown"
    filename: ClassVar[str] = "report.md"

    def render(self, report: RunReport) -> str:
        return render_markdown(report)


@hookimpl
def edgebench_register_reporters(register: Register) -> None:
    register(MarkdownReporter)
