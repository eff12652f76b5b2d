"""``edgebench run --resume REPORT``: finish a run that was cut short or had failures.

The settings are the run's own: with no flag that changes a figure (and no ``-c`` file), the
run is finished with the settings its report records (``RunReport.settings``); with any,
the command's settings must equal the recorded ones in every field that changes a figure
(``measured_settings.compared_fields``: models, backends, devices, iterations, warm-up,
accuracy, data, images, thresholds, threads, options, compression, repeats, input size ...),
or the resume is refused, naming each difference, before any slow work (exit 2). So every
case of the finished report was measured with the settings and ``argv`` it records.

Every case of that matrix that the previous report holds as ``ok`` or ``skipped``
is kept as it was measured; the cases it does not hold (the run was interrupted, the host
died) or holds as ``failed`` run again. The combined report replaces the previous one in its
run dir (same run id: the run is finished, not repeated), atomically after every case as
always; a case run again says so in its notes, with the reason it had failed.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .measured_settings import NOT_FIGURES, and_join, describe, differences, matrix_flags
from .records import CaseResult, MatrixSettings, RunReport, Status
from .reports.json_report import load_report

if TYPE_CHECKING:
    from .config import Matrix
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


def command(argv: Sequence[str]) -> str:
    """``argv`` as one shell command line: ``edgebench run -d 'local?python=/p&tmpdir=/t'``
    (each argument quoted where a shell would split or expand it)."""
    return shlex.join(("edgebench", *argv))


def _recorded(previous: RunReport) -> MatrixSettings:
    """The settings ``previous`` records; :class:`UserError` for a report that has none."""
    if previous.settings is None:
        raise UserError(f"--resume: run {previous.run_id} was written by edgebench "
                        f"{previous.tool_version}, which did not record its settings, so its "
                        f"cases and this run's could differ unseen; start a new run "
                        f"({command(previous.argv)}).")
    return previous.settings


def resume_matrix(previous: RunReport, flags: Mapping[str, Any], config: Path | None, *,
                  disabled: tuple[str, ...] = ()) -> Matrix:
    """The matrix of ``edgebench run --resume``: the run's own recorded settings when the
    command gives no flag that changes a figure and no ``-c`` file (flags in
    :data:`~edgebench.measured_settings.NOT_FIGURES`, such as ``--retries``, still apply);
    else the command's (:func:`refuse_other_settings` then compares them).

    ``flags``: the command's matrix options as ``cli.run_flags`` gives them (``None``: not
    given). Raises :class:`UserError` for a report that records no settings.
    """
    from .config import load_matrix

    recorded = _recorded(previous)
    given = {k for k, v in flags.items() if v is not None and v != {}}
    if config is not None or given - set(NOT_FIGURES):
        return load_matrix(flags, config, disabled=disabled)
    own = matrix_flags(recorded)
    own.update({k: flags[k] for k in given})
    return load_matrix(own, None, disabled=disabled)


def refuse_other_options(previous: RunReport, matrix: Matrix) -> None:
    """:func:`refuse_other_settings` for what ``matrix`` says before anything is loaded
    (no dataset, no model hashed, no compression checked: those can take minutes); the
    backends only when named. Call it first, and the other once the models are loaded."""
    from .measured_settings import RESOLVED, measured_settings

    before = _recorded(previous)
    now = measured_settings(matrix, matrix.backends or before.backends, (), None)
    refuse_other_settings(previous, dataclasses.replace(
        now, **{name: getattr(before, name) for name in RESOLVED}))


def refuse_other_settings(previous: RunReport, now: MatrixSettings) -> None:
    """Raise :class:`UserError` (exit 2) naming every setting that changes a figure in
    which ``now`` (this command's) differs from what ``previous`` measured with."""
    before = _recorded(previous)
    changed = differences(before, now)
    if not changed:
        return
    was = and_join([describe(before, name) for name in changed])
    asks = and_join([describe(now, name) for name in changed])
    raise UserError(f"--resume: run {previous.run_id} measured {was}; this command asks "
                    f"{asks}. Resume with the same settings (or none: the run's own are "
                    f"used), or start a new run.")


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
        raise UserError(f"the report to resume (run {previous.run_id}) has no case of this "
                        f"run's matrix; pass the same flags or -c file as that run (it ran: "
                        f"{command(previous.argv)}).")
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
    """The report a resumed run starts from: this run's host, versions, state and settings
    (equal to the previous run's in all that changes a figure: :func:`refuse_other_settings`);
    the previous run's id, start time and argv; the cases it keeps."""
    return dataclasses.replace(fresh, run_id=previous.run_id, created_at=previous.created_at,
                               argv=previous.argv, cases=kept)
