"""The progress of one run: one display that counts steps, not cases.

A step is a host phase (a model's compression; a backend's export of a model, with its
format compression and calibration) or a device phase of one repeat of one case (``load``,
``warm-up``, ``timed loop``, and on the first repeat with accuracy on, ``accuracy``). The
total is known before any work (:func:`planned_steps`), so the count reaches it when the
last phase of the last repeat ends, never earlier.

On a terminal: a tqdm bar on stderr whose total is that step count. Elsewhere (CI logs):
one line per step on stderr (a host step once it has run :data:`QUIET_S`),
``21:40:03 [3/12] onnxruntime t2 @local: timed loop (100 iterations, 1.25 s)``, no
carriage returns. Device threads report concurrently; every
update holds one lock, so lines never interleave.

The device phases are reported when the runner returns (a device's
:meth:`~edgebench.contracts.Device.run` gives its output at the end), with what the runner
measured in each; the line ``runner started`` says when the device work began.

The core calls a :class:`PhaseListener`: :class:`Silent` (the default) or
:class:`Progress` (``edgebench run``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

from .records import Status

if TYPE_CHECKING:
    from .agent.edgebench_protocol import RunnerResult
    from .records import Case, CaseResult, RunSettings

QUIET_S = 1.0
"""A host step is logged (in a non-TTY) once it has run this long (s)."""
DEVICE_PHASES = ("load", "warm-up", "timed loop")
"""The device phases of every repeat of a case, in order."""
ACCURACY = "accuracy"
"""The device phase after the timed loop on a case's first repeat when accuracy is on (the
runner's accuracy pass and the host's evaluation of its outputs)."""


def case_steps(settings: RunSettings, accuracy: bool) -> int:
    """The steps of one case: ``repeats`` × :data:`DEVICE_PHASES`, plus :data:`ACCURACY`
    once (accuracy is measured on the first repeat only) when ``accuracy``."""
    return settings.repeats * len(DEVICE_PHASES) + int(accuracy)


def planned_steps(sources: int, pipelines: Sequence[bool], backends: int, devices: int,
                  all_settings: Iterable[RunSettings], accuracy: bool) -> int:
    """Every step of a run of ``sources`` models × ``pipelines`` (``True`` for a pipeline
    with model steps: one compression step per model) × ``backends`` (one export step per
    model, pipeline and backend) × ``devices`` × settings (:func:`case_steps`)."""
    per_case = sum(case_steps(s, accuracy) for s in all_settings)
    units = sources * len(pipelines) * backends
    return sources * sum(pipelines) + units + units * devices * per_case


class PhaseListener(Protocol):
    """What the core tells the progress display; called from any thread."""

    def planned(self, steps: int, models: int) -> None:
        """The run has ``steps`` steps (:func:`planned_steps`) over ``models`` models."""

    def drop(self, cases: Iterable[Case]) -> None:
        """These cases are not run (``--resume`` keeps their results)."""

    def host_step(self, subject: str, what: str) -> contextlib.AbstractContextManager[None]:
        """A host step (``export for onnxruntime``) of ``subject`` (a model), as a context:
        announced on entry, counted on exit."""

    def repeat_started(self, case: Case, repeat: int) -> None:
        """Repeat ``repeat`` (0-based) of ``case`` starts on its device."""

    def phase(self, case: Case, name: str, detail: str = "") -> None:
        """``case``'s current repeat finished phase ``name`` (:data:`DEVICE_PHASES`,
        :data:`ACCURACY`); ``detail``: what it did (``100 iterations, 1.25 s``)."""

    def runner_phases(self, case: Case, result: RunnerResult) -> None:
        """The phases a runner went through, with what it measured in each."""

    def repeat_finished(self, result: CaseResult, repeat: int) -> None:
        """Repeat ``repeat`` of the case ended (its steps not reached count as done)."""

    def recorded(self, result: CaseResult) -> None:
        """A result went into the report (one that never ran: its device failed)."""


class Silent:
    """A :class:`PhaseListener` that shows nothing."""

    def planned(self, steps: int, models: int) -> None:
        return None

    def drop(self, cases: Iterable[Case]) -> None:
        return None

    def host_step(self, subject: str, what: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def repeat_started(self, case: Case, repeat: int) -> None:
        return None

    def phase(self, case: Case, name: str, detail: str = "") -> None:
        return None

    def runner_phases(self, case: Case, result: RunnerResult) -> None:
        return None

    def repeat_finished(self, result: CaseResult, repeat: int) -> None:
        return None

    def recorded(self, result: CaseResult) -> None:
        return None


def runner_details(result: RunnerResult) -> list[tuple[str, str]]:
    """``(phase, detail)`` of every phase a runner's result shows it went through, in
    order: load (``init_ns``), warm-up (``warmup_ns``), timed loop (``samples_ns``)."""
    out: list[tuple[str, str]] = []
    if result.init_ns is not None:
        out.append(("load", f"{result.init_ns / 1e6:.0f} ms"))
    warmup = result.warmup_ns or ()
    out.append(("warm-up", f"{_iterations(len(warmup))}, {sum(warmup) / 1e9:.2f} s"))
    samples = result.samples_ns or ()
    out.append(("timed loop", f"{_iterations(len(samples))}, {sum(samples) / 1e9:.2f} s"))
    return out


def _iterations(n: int) -> str:
    return f"{n} iteration" + ("" if n == 1 else "s")


def _report_order(path: object) -> tuple[int, str]:
    """JSON, Markdown, HTML, then any other reporter's file."""
    suffix = str(path).rsplit(".", 1)[-1]
    order = {"json": 0, "md": 1, "html": 2}
    return order.get(suffix, 3), str(path)


def case_label(case: Case, with_model: bool) -> str:
    """``onnxruntime t2 @local`` (``tauto`` for the runtime's own threads), with the model
    and pipeline in front when ``with_model`` or the case is compressed."""
    head = [case.model] if with_model else []
    if case.pipeline:
        head.append("+".join(case.pipeline))
    threads = case.settings.threads if case.settings.threads is not None else "auto"
    return " ".join([*head, f"{case.backend} t{threads} @{case.device}"])


class Progress:
    """The display of ``edgebench run`` (a :class:`PhaseListener`): a tqdm bar when
    ``stream`` is a terminal, else timestamped lines. Close it with :meth:`close`."""

    def __init__(self, *, accuracy: bool, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        """``accuracy``: whether the run measures accuracy (:data:`ACCURACY` steps);
        ``stream``: default stderr; ``tty``: default whether ``stream`` is a terminal."""
        self.accuracy = accuracy
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._lock = threading.RLock()
        self.total = 0
        self.done = 0
        self._models = 1
        self._repeat: dict[str, int] = {}
        """The running repeat of each started case (by id)."""
        self._left: dict[str, int] = {}
        """Steps not yet counted of each case (by id)."""
        self._bar: object | None = None

    # -- what the core reports ---------------------------------------------------------

    def planned(self, steps: int, models: int) -> None:
        with self._lock:
            self.total += steps
            self._models = max(self._models, models)
            self._refresh_total()

    def drop(self, cases: Iterable[Case]) -> None:
        with self._lock:
            for case in cases:
                self.total -= case_steps(case.settings, self._accuracy(case))
                self._left[case.id] = 0
            self._refresh_total()

    @contextlib.contextmanager
    def host_step(self, subject: str, what: str) -> Iterator[None]:
        """Logged once it has run :data:`QUIET_S` (a cached export is counted silently, and
        a user's error found in it stays the only line on stderr)."""
        with self._lock:
            index = self.done + 1
        timer = threading.Timer(QUIET_S, self._say, (f"{subject}: {what}", index))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with self._lock:
                self._advance(1, f"{subject}: {what}")

    def repeat_started(self, case: Case, repeat: int) -> None:
        with self._lock:
            self._repeat[case.id] = repeat
            self._left.setdefault(case.id, case_steps(case.settings, self._accuracy(case)))
            self._say(f"{self._label(case, repeat)}: runner started", self.done + 1)

    def phase(self, case: Case, name: str, detail: str = "") -> None:
        with self._lock:
            if self._left.get(case.id, 0) <= 0:
                return
            self._left[case.id] -= 1
            text = f"{self._label(case, self._repeat.get(case.id))}: {name}" + (
                f" ({detail})" if detail else "")
            self._say(text, self.done + 1)
            self._advance(1, text)

    def runner_phases(self, case: Case, result: RunnerResult) -> None:
        for name, detail in runner_details(result):
            self.phase(case, name, detail)

    def repeat_finished(self, result: CaseResult, repeat: int) -> None:
        case = result.case
        with self._lock:
            left = self._left.get(case.id, 0)
            last = repeat + 1 >= case.settings.repeats
            owed = left if last else max(0, left - self._after(case, repeat))
            self._left[case.id] = left - owed
            how = result.status.value
            if result.latency is not None:
                how += f", p50 {result.latency.p50_ms:.2f} ms"
            if result.reason and owed:
                how += f": {result.reason.splitlines()[0][:200]}"
            text = f"{self._label(case, repeat)}: {how}"
            self._advance(owed, text)
            self._say(text, self.done, failed=result.status is not Status.OK)

    def recorded(self, result: CaseResult) -> None:
        with self._lock:
            if result.case.id in self._repeat or result.case.id in self._left:
                return  # a repeat already counted it
            self._left[result.case.id] = 0
            owed = case_steps(result.case.settings, self._accuracy(result.case))
            text = f"{self._label(result.case, None)}: {result.status.value}"
            if result.reason:
                text += f": {result.reason.splitlines()[0][:200]}"
            self._advance(owed, text)
            self._say(text, self.done, failed=result.status is not Status.OK)

    # -- the run's end -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._tqdm().close()
                self._bar = None

    def finished(self, wall_s: float, paths: Sequence[object]) -> None:
        """The last lines: the run's wall time (s) and the report's files (JSON, Markdown,
        HTML, then others)."""
        self.close()
        lines = [f"edgebench: finished in {wall_s:.1f} s"]
        lines += [f"report: {p}" for p in sorted(paths, key=_report_order)]
        with self._lock:
            print("\n".join(lines), file=self.stream, flush=True)

    # -- inside --------------------------------------------------------------------------

    def _accuracy(self, case: Case) -> bool:
        return self.accuracy

    def _after(self, case: Case, repeat: int) -> int:
        """Steps of ``case`` after repeat ``repeat`` (0-based)."""
        return (case.settings.repeats - repeat - 1) * len(DEVICE_PHASES)

    def _label(self, case: Case, repeat: int | None) -> str:
        label = case_label(case, self._models > 1)
        if repeat is not None and case.settings.repeats > 1:
            label += f" repeat {repeat + 1}/{case.settings.repeats}"
        return label

    def _tqdm(self) -> tqdm_type:
        from tqdm import tqdm

        if self._bar is None:
            sized = _columns(self.stream) > 0  # a pty of size 0 (script, CI): 80 columns
            self._bar = tqdm(total=self.total, unit="step", file=self.stream,
                             dynamic_ncols=sized, ncols=None if sized else 80,
                             desc="edgebench", mininterval=0)  # every step shows
        assert isinstance(self._bar, tqdm)
        return self._bar

    def _refresh_total(self) -> None:
        if self.tty:
            bar = self._tqdm()
            bar.total = self.total
            bar.refresh()

    def _advance(self, steps: int, text: str) -> None:
        self.done += steps
        if self.tty:
            bar = self._tqdm()
            bar.set_postfix_str(text[:60], refresh=False)
            bar.update(steps)

    def _say(self, text: str, index: int, *, failed: bool = False) -> None:
        if self.tty:
            if failed:  # above the bar
                self._tqdm().write(f"edgebench: {text}", file=self.stream)
            return
        with self._lock:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} [{min(index, self.total)}/{self.total}] {text}", file=self.stream,
                  flush=True)


def _columns(stream: TextIO) -> int:
    """The terminal's width (0 when unknown)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


if TYPE_CHECKING:
    from tqdm import tqdm as tqdm_type
