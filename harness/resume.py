"""``edgebench run --resume REPORT``: finish a run that was cut short or had failures.

The matrix is the one given now (pass the same flags or ``-c`` file as the run being
resumed). Every case of that matrix that the previous report holds as ``ok`` or ``skipped``
is kept as it was measured; the cases it does not hold (the run was interrupted, the host
died) or holds as ``failed`` run again. The combined report replaces the previous one in its
run dir (same run id: the run is finished, not repeated), atomically after every case as
always; a case run again says so in its notes, with the reason it had failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .records import CaseResult, RunReport, Status
from .reports.json_report import load_report

if TYPE_CHECKING:
    from .planning import CasePlan

DONE = (Status.OK, Status.SKIPPED)


def report_path(given: Path) -> Path:
    """``report.json`` of ``given`` (the file itself or its run dir)."""
    path = given / "report.json" if given.is_dir() else given
    if not path.is_file():
        raise UserError(f"--resume {given}: no report.json there; give the report.json (or "
                        "the run dir) of the run to finish.")
    return path


def load_previous(given: Path) -> tuple[RunReport, Path]:
    """The report to resume (upgraded to the current schema) and its run dir."""
    path = report_path(given)
    return load_report(path), path.parent


def split(previous: RunReport, plans: Sequence[CasePlan]
          ) -> tuple[tuple[CaseResult, ...], list[CasePlan]]:
    """``(kept, to_run)``: the previous results that stay, and the plans that run again.

    Kept: every previous case that is ``ok`` or ``skipped`` (also one not in this matrix,
    it was measured in this run) and every previous case this matrix does not run again.
    To run: the plans whose case the previous report lacks or holds as ``failed``; those
    that had failed carry a note saying so.
    """
    planned = {p.case.id for p in plans}
    before = {r.case.id: r for r in previous.cases}
    if before and not planned & set(before):
        argv = " ".join(previous.argv) or "(no arguments)"
        raise UserError(f"the report to resume (run {previous.run_id}) has no case of this "
                        f"run's matrix; pass the same flags or -c file as that run (it ran: "
                        f"edgebench {argv}).")
    to_run: list[CasePlan] = []
    for plan in plans:
        old = before.get(plan.case.id)
        if old is not None and old.status in DONE:
            continue
        if old is not None:
            note = f"run again by --resume: it had failed ({old.reason})"
            plan = dataclasses.replace(plan, notes=(*plan.notes, note))
        to_run.append(plan)
    again = {p.case.id for p in to_run}
    kept = tuple(r for r in previous.cases if r.case.id not in again)
    return kept, to_run


def combined_start(previous: RunReport, fresh: RunReport, kept: tuple[CaseResult, ...]
                   ) -> RunReport:
    """The report a resumed run starts from: this run's host, versions and state; the
    previous run's id, start time and argv; the cases it keeps."""
    return dataclasses.replace(fresh, run_id=previous.run_id, created_at=previous.created_at,
                               argv=previous.argv, cases=kept)
