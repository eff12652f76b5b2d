"""``report.md``: a table for terminals and pull-request comments."""

from __future__ import annotations

from typing import ClassVar

from ..accuracy import AccuracySettings
from ..contracts import Reporter
from ..hookspecs import Register, hookimpl
from ..records import Accuracy, CaseResult, Fidelity, RunReport, Status
from .tradeoffs import tradeoff_markdown

MIB = 1024 * 1024


def _mib(value: int | None) -> str:
    return f"{value / MIB:.1f}" if value is not None else "–"


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


AGREEMENT_CONF = AccuracySettings().agreement_conf
NO_REFERENCE_DETECTIONS = "†"
"""Marks an agreement not measured: the reference detected nothing (see
:func:`no_reference_detections`)."""


def pipeline_label(r: CaseResult) -> str:
    """The compression pipeline, or for an uncompressed model its precision read from the
    graph (``fp32`` when unknown): the case id's field, also for a case not measured."""
    return r.pipeline_label()


def input_size(r: CaseResult) -> str:
    """``HxW`` the model ran at (see ``CaseResult.input_hw``), ``–`` when unknown."""
    hw = r.input_hw()
    return f"{hw[0]}×{hw[1]}" if hw is not None else "–"


def no_reference_detections(fid: Fidelity | None) -> bool:
    """The detection agreement was not measured because the float reference has no
    detection at the agreement threshold on the evaluated images (e.g. random weights):
    only the raw outputs were compared. Not a failure, and not a pass of that check."""
    return (fid is not None and fid.detection_agreement is None
            and fid.reference_detections == 0 and fid.box_max_abs_px is not None)


def no_reference_detections_note() -> str:
    return (f"{NO_REFERENCE_DETECTIONS} the float reference has no detection at score ≥ "
            f"{AGREEMENT_CONF:g} on these images: agreement not measured, raw outputs "
            "compared (max abs diff).")


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
             input_size(r), r.case.backend, r.case.device, threads_label(r), r.status.value]
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
    cells += [_score(acc.map50_95 if acc else None), _score(acc.map50 if acc else None),
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


NO_CI_NOTE = ("¹ No 95 % interval of the median: with fewer than 6 samples no pair of order "
              "statistics covers the median with 95 % probability ([min, max] of 5 covers "
              "93.75 %); run more iterations (-n).")


def render_markdown(report: RunReport) -> str:
    lines = [f"# edgebench run {report.run_id}", "",
             f"edgebench {report.tool_version}, report schema {report.schema_version}, "
             f"state **{report.state.value}**, started {report.created_at}.", ""]
    if report.baseline_model:
        lines += [f"Side by side: `{report.baseline_model}` is the baseline model "
                  f"(`--baseline-model`), measured in this run to gate the others (see "
                  f"`compare.md`); night-to-night comparisons and the history leave it out.", ""]
    lines += evaluation_lines(report)
    lines += busy_lines(report)
    lines.append(HEADER)
    lines += [result_row(r) for r in report.cases]
    if any(r.latency is not None and r.latency.cpu_p50_ms is not None for r in report.cases):
        lines += ["", "CPU p50: the median CPU time of the runner process (all its threads) "
                  "per inference; busy neighbours stretch the wall times, hardly this."]
    if any(r.latency is not None and r.latency.median_ci95_ms is None for r in report.cases):
        lines += ["", NO_CI_NOTE]
    batched = [r for r in report.cases if r.latency is not None and r.latency.batch > 1]
    if batched:
        lines += ["", "Batch: a model with a static batch of B runs B images per inference; "
                  "its latency figures are per inference (per batch), with the median per "
                  "image (p50 / B) and images/s (B / p50) in brackets."]
    lines += tradeoff_markdown(report)
    problems = [r for r in report.cases if r.status is not Status.OK]
    if problems:
        lines += ["", "## Not measured", ""]
        lines += [f"- `{r.case.id}`: **{r.status.value}**: {r.reason}" for r in problems]
    qualified = [r for r in report.cases if r.accuracy is not None and r.accuracy.reason]
    if qualified:
        lines += ["", "## Accuracy notes", ""]
        lines += [f"- `{r.case.id}`: accuracy **{r.accuracy.status.value}**: "
                  f"{r.accuracy.reason}" for r in qualified if r.accuracy is not None]
    left_out: dict[tuple[str, int], dict[str, str]] = {}
    for r in report.cases:
        if r.accuracy is not None and r.accuracy.left_out:
            key = (r.accuracy.dataset, r.accuracy.images)
            left_out.setdefault(key, dict(r.accuracy.left_out))
    if left_out:
        lines += ["", "## Images left out", "",
                  "Corrupt or unreadable images (and images whose label file Ultralytics "
                  "rejects) are left out of the accuracy figures, as Ultralytics' val() "
                  "leaves them out:", ""]
        for (dataset, kept), images in left_out.items():
            lines.append(f"- `{dataset}`: {len(images)} of {kept + len(images)} images "
                         "left out:")
            lines += [f"  - `{path}`: {why}" for path, why in sorted(images.items())]
    noted = [r for r in report.cases if r.notes]
    if noted:
        lines += ["", "## Notes", ""]
        for r in noted:
            lines.append(f"- `{r.case.id}`:")
            lines += [f"  - {note}" for note in r.notes]
    refs = sorted({r.accuracy.fidelity.reference for r in report.cases
                   if r.accuracy is not None and r.accuracy.fidelity is not None})
    if refs:
        lines += ["", "Agreement: share of the float reference's detections (score ≥ 0.25) "
                  "matched at IoU ≥ 0.5 with the same class; max abs diff: of raw outputs. "
                  f"Reference: {'; '.join(refs)}."]
    if any(r.accuracy is not None and no_reference_detections(r.accuracy.fidelity)
           for r in report.cases):
        lines += ["", no_reference_detections_note()]
    devices = {r.device.uri: r.device for r in report.cases if r.device is not None}
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
    return "\n".join(lines) + "\n"


class MarkdownReporter(Reporter):
    name: ClassVar[str] = "markdown"
    filename: ClassVar[str] = "report.md"

    def render(self, report: RunReport) -> str:
        return render_markdown(report)


@hookimpl
def edgebench_register_reporters(register: Register) -> None:
    register(MarkdownReporter)
