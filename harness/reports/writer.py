"""Keeping the report on disk current: atomic writes after every case, reporters at the end."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from ..contracts import Reporter
from ..errors import UserError
from ..records import CaseResult, RunReport, RunState
from .json_report import JsonReporter


def utc_now(timespec: str = "seconds") -> str:
    """Now in UTC, ISO 8601 (``2026-12-01T10:46:16+00:00``; ``timespec="milliseconds"``:
    ``2026-12-01T10:46:16.123+00:00``)."""
    return datetime.now(UTC).isoformat(timespec=timespec)


class WriteFailed(UserError):
    """A file could not be written (``path``; ``why``: the system's words, e.g. "No space
    left on device"); its previous version is intact."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"could not write {path} ({why}); the previous version of the file "
                         "is intact.")
        self.path = path
        self.why = why


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Raises :class:`WriteFailed` naming the file when the disk is full or the dir not
    writable; the previous content of ``path`` is then left untouched.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteFailed(path, str(exc.strerror or exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteFailed(path, str(exc.strerror or exc)) from None


class ReportNotSaved(UserError):
    """A report file could not be written at the end of a run (disk full, read-only, no
    permission): the message names the file and where the whole report is; ``report`` is
    the finished report, every measured case, for the terminal's table."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class ReportWriter:
    """Holds the run's report and rewrites ``report.json`` each time a case finishes.

    Thread-safe: devices run concurrently and each adds its results. When a write fails
    (disk full, directory made read-only), the file on disk keeps its previous complete
    version, the run goes on, and the next case tries again; :meth:`finish` raises
    :class:`ReportNotSaved` (with the whole report) if the report still cannot be written,
    after saving it to the temp dir instead (named in the message), or if another report
    file (Markdown, HTML) cannot be written.
    """

    def __init__(self, report: RunReport, output_dir: Path, reporters: Iterable[Reporter]):
        self._report = report
        self._lock = threading.Lock()
        self.output_dir = output_dir
        self._json = JsonReporter()
        self._reporters = [r for r in reporters if r.name != self._json.name]
        self.saved_cases = 0
        """How many cases the report on disk holds."""
        self.unsaved: UserError | None = None
        """Why the last write failed (``None``: the file on disk is current)."""
        self._save(strict=True)

    @property
    def report(self) -> RunReport:
        with self._lock:
            return self._report

    @property
    def json_path(self) -> Path:
        return self.output_dir / self._json.filename

    def add(self, result: CaseResult) -> None:
        with self._lock:
            self._report = self._report.with_case(result)
            self._save()

    def device_failed(self, reason: str) -> None:
        """Record that a device stopped early (``RunReport.device_failures``), once."""
        with self._lock:
            if reason in self._report.device_failures:
                return
            self._report = dataclasses.replace(
                self._report, device_failures=(*self._report.device_failures, reason))
            self._save()

    def order(self, case_ids: list[str]) -> None:
        """Put the cases in the order of ``case_ids`` (the plan's; cases finish in another
        order on several devices, and a repeat replaces its case); cases not named keep
        their places in front (a resumed run's kept cases)."""
        rank = {case_id: i for i, case_id in enumerate(case_ids)}
        with self._lock:
            cases = sorted(self._report.cases, key=lambda c: rank.get(c.case.id, -1))
            if list(cases) != list(self._report.cases):
                self._report = dataclasses.replace(self._report, cases=tuple(cases))
                self._save()

    def finish(self, state: RunState) -> list[Path]:
        """Mark the run finished (or interrupted), write every reporter's file."""
        with self._lock:
            self._report = dataclasses.replace(self._report, state=state,
                                               finished_at=utc_now())
            self._save()
            if self.unsaved is not None:
                raise ReportNotSaved(self._unsaved_error(self.unsaved), self._report)
            written = [self.json_path]
            failed: list[WriteFailed] = []
            for reporter in self._reporters:
                path = self.output_dir / reporter.filename
                try:
                    atomic_write_text(path, reporter.render(self._report))
                except WriteFailed as exc:
                    failed.append(exc)
                    continue
                written.append(path)
            if failed:
                names = " and ".join(exc.path.name for exc in failed)
                raise ReportNotSaved(
                    f"could not write {names} in {self.output_dir} ({failed[0].why}); "
                    f"{self.json_path.name} there holds every measured case "
                    f"({len(self._report.cases)}).", self._report)
            return written

    def _save(self, *, strict: bool = False) -> None:
        try:
            atomic_write_text(self.json_path, self._json.render(self._report))
        except UserError as exc:
            if strict:
                raise
            self.unsaved = exc
            return
        self.unsaved = None
        self.saved_cases = len(self._report.cases)

    def _unsaved_error(self, exc: UserError) -> str:
        """The sentence for a report that cannot be written where it belongs, after saving
        it in the temp dir (one more place the measurements can survive)."""
        total = len(self._report.cases)
        fallback = Path(tempfile.gettempdir()) / f"edgebench-{self._report.run_id}-report.json"
        try:
            atomic_write_text(fallback, self._json.render(self._report))
            saved = f"the whole report ({total} cases) is in {fallback}"
        except UserError:
            saved = f"it could not be saved in {fallback.parent} either"
        return (f"{str(exc).rstrip('.')} and holds {self.saved_cases} of the run's {total} "
                f"cases; {saved}.")
