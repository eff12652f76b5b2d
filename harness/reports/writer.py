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


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Raises :class:`UserError` naming the file when the disk is full or the dir not writable;
    the previous content of ``path`` is then left untouched.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
        raise UserError(f"could not write {path} ({exc.strerror or exc}); the previous "
                        "version of the file is intact.") from None


class ReportWriter:
    """Holds the run's report and rewrites ``report.json`` each time a case finishes.

    Thread-safe: devices run concurrently and each adds its results.
    """

    def __init__(self, report: RunReport, output_dir: Path, reporters: Iterable[Reporter]):
        self._report = report
        self._lock = threading.Lock()
        self.output_dir = output_dir
        self._json = JsonReporter()
        self._reporters = [r for r in reporters if r.name != self._json.name]
        self._save()

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

    def finish(self, state: RunState) -> list[Path]:
        """Mark the run finished (or interrupted), write every reporter's file."""
        with self._lock:
            self._report = dataclasses.replace(self._report, state=state,
                                               finished_at=utc_now())
            self._save()
            written = [self.json_path]
            for reporter in self._reporters:
                path = self.output_dir / reporter.filename
                atomic_write_text(path, reporter.render(self._report))
                written.append(path)
            return written

    def _save(self) -> None:
        atomic_write_text(self.json_path, self._json.render(self._report))
