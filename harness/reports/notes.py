"""The notes both reports print: one list, so ``report.md`` and ``report.html`` cannot drift.

A note is Markdown inline text (```code```, ``**bold**``); :func:`inline_html` renders it
for the page. To add a footnote, write a function ``(report) -> str | None`` (``None``:
the note does not apply to this report) and append it to :data:`FOOTNOTES`; both reports
print it under the results table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..accuracy import AccuracySettings
from ..reasons import summary
from ..records import Accuracy, Fidelity, RunReport, Status

AGREEMENT_CONF = AccuracySettings().agreement_conf
NO_REFERENCE_DETECTIONS = "†"
"""Marks an agreement not measured: the reference detected nothing (see
:func:`no_reference_detections`)."""

CACHED_ACCURACY = "‡"
"""Marks a mAP reused from an earlier run's accuracy pass (see :func:`cached_accuracy_note`)."""

NO_CI_NOTE = ("¹ No 95 % interval of the median: with fewer than 6 samples no pair of order "
              "statistics covers the median with 95 % probability ([min, max] of 5 covers "
              "93.75 %); run more iterations (-n).")


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


def cached_mark(acc: Accuracy | None) -> str:
    """:data:`CACHED_ACCURACY` for an accuracy reused from an earlier run, else ``""``."""
    return CACHED_ACCURACY if acc is not None and acc.cached_from is not None else ""


def cached_accuracy_note(report: RunReport) -> str | None:
    """The runs (with their date and device) whose accuracy passes this report reuses."""
    sources = sorted({(a.cached_from.run_id, a.cached_from.measured_at[:10],
                       a.cached_from.device) for r in report.cases
                      if (a := r.accuracy) is not None and a.cached_from is not None})
    if not sources:
        return None
    runs = "; ".join(f"`{run}` ({day}, `{device}`)" for run, day, device in sources)
    plural = "s" if len(sources) > 1 else ""
    return (f"{CACHED_ACCURACY} mAP and agreement from the accuracy pass of run{plural} "
            f"{runs}: same artifact, runtime, options, data and device; `--fresh` measures "
            "them again.")


def _cpu_note(report: RunReport) -> str | None:
    if any(r.latency is not None and r.latency.cpu_p50_ms is not None for r in report.cases):
        return ("CPU p50: the median CPU time of the runner process (all its threads) per "
                "inference; busy neighbours stretch the wall times, hardly this.")
    return None


def _no_ci_note(report: RunReport) -> str | None:
    if any(r.latency is not None and r.latency.median_ci95_ms is None for r in report.cases):
        return NO_CI_NOTE
    return None


def _batch_note(report: RunReport) -> str | None:
    if any(r.latency is not None and r.latency.batch > 1 for r in report.cases):
        return ("Batch: a model with a static batch of B runs B images per inference; its "
                "latency figures are per inference (per batch), with the "
                "median per image (p50 / B) and images/s (B / p50) in brackets.")
    return None


def _agreement_note(report: RunReport) -> str | None:
    refs = sorted({r.accuracy.fidelity.reference for r in report.cases
                   if r.accuracy is not None and r.accuracy.fidelity is not None})
    if not refs:
        return None
    return ("Agreement: share of the float reference's detections (score ≥ 0.25) matched at "
            "IoU ≥ 0.5 with the same class; max abs diff: of raw outputs. "
            f"Reference: {'; '.join(refs)}.")


def _no_reference_note(report: RunReport) -> str | None:
    if any(r.accuracy is not None and no_reference_detections(r.accuracy.fidelity)
           for r in report.cases):
        return no_reference_detections_note()
    return None


FOOTNOTES: tuple[Callable[[RunReport], str | None], ...] = (
    _cpu_note, _no_ci_note, _batch_note, _agreement_note, _no_reference_note,
    cached_accuracy_note)
"""The notes under the results table, in order (see the module docstring)."""


def footnotes(report: RunReport) -> list[str]:
    """The :data:`FOOTNOTES` that apply to ``report`` (Markdown inline text)."""
    return [text for note in FOOTNOTES if (text := note(report)) is not None]


def preamble(report: RunReport) -> list[str]:
    """Notes above the results table (Markdown inline text)."""
    if not report.baseline_model:
        return []
    return [f"Side by side: `{report.baseline_model}` is the baseline model "
            f"(`--baseline-model`), measured in this run to gate the others (see "
            f"`compare.md`); night-to-night comparisons and the history leave it out."]


@dataclass(frozen=True)
class Section:
    """A titled list below the tables: each item is (text, sub-items), Markdown inline."""

    title: str
    items: tuple[tuple[str, tuple[str, ...]], ...]
    intro: str | None = None


def sections(report: RunReport) -> list[Section]:
    """Not measured, accuracy notes, images left out, devices that failed and per-case
    notes (those that apply), in the order both reports print them."""
    out = []
    problems = [r for r in report.cases if r.status is not Status.OK]
    if problems:
        out.append(Section("Not measured", tuple(
            (f"`{r.case.id}`: **{r.status.value}**: {summary(r.reason or '')}", ())
            for r in problems)))
    qualified = [(r, r.accuracy) for r in report.cases
                 if r.accuracy is not None and r.accuracy.reason]
    if qualified:
        out.append(Section("Accuracy notes", tuple(
            (f"`{r.case.id}`: accuracy **{acc.status.value}**: {acc.reason}", ())
            for r, acc in qualified)))
    left_out: dict[tuple[str, int], dict[str, str]] = {}
    for r in report.cases:
        if r.accuracy is not None and r.accuracy.left_out:
            key = (r.accuracy.dataset, r.accuracy.images)
            left_out.setdefault(key, dict(r.accuracy.left_out))
    if left_out:
        out.append(Section(
            "Images left out",
            tuple((f"`{dataset}`: {len(images)} of {kept + len(images)} images left out:",
                   tuple(f"`{path}`: {why}" for path, why in sorted(images.items())))
                  for (dataset, kept), images in left_out.items()),
            intro="Corrupt or unreadable images (and images whose label file Ultralytics "
                  "rejects) are left out of the accuracy figures, as Ultralytics' val() "
                  "leaves them out:"))
    if report.device_failures:
        out.append(Section("Devices that failed", tuple(
            (f"**failed**: {reason}", ()) for reason in report.device_failures),
            intro="These devices stopped before the run ended: the other devices of the "
                  "same URI took the cases left, and a case no device could run is under "
                  "Not measured."))
    noted = [r for r in report.cases if r.notes]
    if noted:
        out.append(Section("Notes", tuple((f"`{r.case.id}`:", tuple(r.notes))
                                          for r in noted)))
    return out


def section_markdown(section: Section) -> list[str]:
    lines = ["", f"## {section.title}", ""]
    if section.intro:
        lines += [section.intro, ""]
    for text, sub in section.items:
        lines.append(f"- {text}")
        lines += [f"  - {s}" for s in sub]
    return lines


def section_html(section: Section) -> str:
    intro = f"<p>{inline_html(section.intro)}</p>" if section.intro else ""
    items = "".join(
        f"<li>{inline_html(text)}"
        + ("<ul>" + "".join(f"<li>{inline_html(s)}</li>" for s in sub) + "</ul>" if sub
           else "") + "</li>" for text, sub in section.items)
    return f"<h2>{html.escape(section.title)}</h2>{intro}<ul>{items}</ul>"


_CODE = re.compile(r"`([^`]*)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline_html(text: str) -> str:
    """Markdown inline text (```code```, ``**bold**``) as escaped HTML."""
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<b>\1</b>", out)
