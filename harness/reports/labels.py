"""Short, numbered case labels for the report's plots and key tables.

Every plot numbers its cases by their row in the results table (1 = first row, failed and
skipped rows counted too), so one number names one case everywhere. A label holds only what
tells the report's cases apart: the model (its ``@sha8`` only when two models share a
name), the pipeline and the backend; the device only when the report has more than one,
the threads only when they differ (the number the runtime really used, not ``auto``),
the input size, backend options and batch only when they differ or matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..identity import options_label
from ..records import CaseResult

MAX_MODEL_CHARS = 28
"""Model names longer than this are shortened in the middle (``yolov8n-…-rtx``); the full
name is in the key table's ``title`` attribute and in the results table."""


@dataclass(frozen=True)
class CaseLabel:
    """One case's label: ``number`` (its results-table row, from 1), ``short`` (what the
    plots print), ``full`` (the case id, for tooltips and keys)."""

    number: int
    short: str
    full: str

    @property
    def numbered(self) -> str:
        return f"{self.number}  {self.short}"


def threads_used(r: CaseResult) -> int | None:
    """The thread count the runtime reported using, else the one asked for, else ``None``
    (the runtime's default, not reported)."""
    if r.runtime is not None and r.runtime.threads:
        return r.runtime.threads
    return r.case.settings.threads or None


def shorten(text: str, limit: int = MAX_MODEL_CHARS) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (an ellipsis marks the
    cut), so both a model family prefix and a distinguishing suffix stay visible."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2 + (limit - 1) % 2
    tail = limit - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def model_names(cases: Sequence[CaseResult]) -> dict[str, str]:
    """Per model label (``stem@sha8``), its short name: the stem (with ``@sha8`` only when
    two models share it), shortened by :func:`shorten`."""
    stems: dict[str, set[str]] = {}
    for r in cases:
        stems.setdefault(r.case.model.split("@")[0], set()).add(r.case.model)
    return {model: shorten(stem if len(models) == 1 else model)
            for stem, models in stems.items() for model in models}


def case_labels(cases: Sequence[CaseResult]) -> list[CaseLabel]:
    """Labels for ``cases`` in their order (the results table's), numbered from 1."""
    names = model_names(cases)

    def varies(get: object) -> bool:
        return len({get(r) for r in cases}) > 1  # type: ignore[operator]

    many_devices = varies(lambda r: r.case.device)
    # threads differ: two known counts differ, or the run asked for more than one count
    # (a runtime that does not report its count is not a difference by itself)
    many_threads = (len({threads_used(r) for r in cases} - {None}) > 1
                    or varies(lambda r: r.case.settings.threads))
    many_sizes = varies(lambda r: r.input_hw())
    many_options = varies(
        lambda r: (r.case.backend, options_label(r.case.settings.backend_options.get(
            r.case.backend))))
    out = []
    for number, r in enumerate(cases, start=1):
        parts = [names[r.case.model], r.pipeline_label(), r.case.backend]
        options = options_label(r.case.settings.backend_options.get(r.case.backend))
        if many_options and options:
            parts.append(shorten(options))
        hw = r.input_hw()
        if many_sizes and hw is not None:
            parts.append(f"{hw[0]}×{hw[1]}")
        if many_devices:
            parts.append(f"on {r.case.device}")
        if many_threads:
            threads = threads_used(r)
            parts.append(f"{threads} thread{'s' if threads != 1 else ''}" if threads
                         else "default threads")
        batch = r.latency.batch if r.latency is not None else 1
        if batch > 1:
            parts.append(f"batch {batch}")
        out.append(CaseLabel(number, " ".join(parts), r.case.id))
    return out
