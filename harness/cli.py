"""The ``edgebench`` command: parse (``cli_parser.py``), build the one validated
:class:`~edgebench.config.Matrix` of the run (``config.load_matrix``), call, print.
``run`` is here; the other sub-commands are in ``commands.py``.

Exit codes: 0 every case ok or skipped; 1 some case failed; 2 a usage or input error (one
sentence on stderr, no traceback unless ``--debug``); 130 interrupted (SIGINT);
143 terminated (SIGTERM); 141 stdout closed early (``| head``), quietly. An interrupted
run's report is saved, marked ``interrupted``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_parser import build_parser, split_list
from .commands import cmd_compare, cmd_compress, cmd_devices, cmd_export, cmd_history, cmd_plugins
from .config import check_output_dir, load_matrix
from .errors import UserError, sentence
from .plugin_manager import collect_registry, make_plugin_manager
from .records import Status

if TYPE_CHECKING:
    from .compare import Thresholds
    from .config import Matrix
    from .records import Artifact, RunReport

__all__ = ["build_parser", "main", "run_flags"]


def run_flags(args: argparse.Namespace) -> dict[str, object]:
    """The flags of ``run`` as matrix options (``matrix_file.OPTIONS``), as given: ``None``
    where not given; checked and converted by ``config.load_matrix``."""
    return {
        "models": tuple(args.model) if args.model else None,
        "baseline_model": args.baseline_model,
        "backends": split_list(args.backend) or None,
        "devices": split_list(args.device) or None,
        "data": args.data, "images": args.images, "imgsz": args.imgsz,
        "output": args.output,
        "warmup": args.warmup, "warmup_s": args.warmup_s, "iterations": args.iterations,
        "min_duration_s": args.min_duration,
        "threads": tuple(args.threads) if args.threads else None, "repeats": args.repeats,
        "timeout_s": args.timeout, "cooldown_s": args.cooldown,
        "max_temperature_c": args.max_temperature,
        "accuracy": False if args.no_accuracy else None, "conf": args.conf, "iou": args.iou,
        "backend_options": _backend_options(args.backend_option),
        "compress": tuple(args.compress) if args.compress else None,
        "retries": args.retries, "retry_backoff_s": args.retry_backoff,
        "train_data": args.train_data,
        "fresh": True if args.fresh else None,
    }


def _backend_options(values: Sequence[str] | None) -> dict[str, dict[str, object]]:
    from .options import parse_backend_option

    out: dict[str, dict[str, object]] = {}
    for text in values or ():
        backend, key, value = parse_backend_option(text)
        out.setdefault(backend, {})[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from .compare import MIN_REPEATS
    from .progress import Progress
    from .resume import load_previous, refuse_other_options, refuse_other_settings, resume_matrix
    from .runner import Session

    started = time.perf_counter()
    previous, run_dir = load_previous(args.resume) if args.resume else (None, None)
    if previous is not None:  # the run's own settings, or the command's (compared below)
        matrix = resume_matrix(previous, run_flags(args), args.config,
                               disabled=split_list(args.disable))
        refuse_other_options(previous, matrix)  # before loading data, models, compression
    else:
        matrix = load_matrix(run_flags(args), args.config, disabled=split_list(args.disable))
    pm = make_plugin_manager(disabled=matrix.disabled_plugins)
    registry = collect_registry(pm)
    progress = Progress(accuracy=matrix.accuracy is not None)
    session = Session(matrix, pm, registry, argv=args.argv,
                      run_id=previous.run_id if previous else None,
                      retry=matrix.retry, progress=progress)
    given = session.sources()  # fail fast on bad model files, before any device work
    baseline, sources = _side_by_side_sources(matrix, given)
    measured_alone = len(sources) == len(matrix.models)  # not as a model of the run too
    if previous is not None:  # before any export: the report must not mix settings
        refuse_other_settings(previous, session.measured(
            sources, baseline if measured_alone else None))
    session.variants.check(given)  # and on compression that cannot work
    if baseline is not None and matrix.settings.repeats < MIN_REPEATS:
        print(f"edgebench: warning: with --repeats {matrix.settings.repeats} the side-by-side "
              f"gate tests the raw samples, blind to the process-to-process noise; use "
              f"--repeats {MIN_REPEATS} or more.", file=sys.stderr)
    if matrix.accuracy is None and matrix.data is not None:
        print(f"edgebench: warning: with --no-accuracy the dataset {matrix.data} is not "
              "evaluated; the timed loop runs on the first embedded val image, as without "
              "--data.", file=sys.stderr)
    output_dir = check_output_dir(run_dir or matrix.output_dir / session.run_id)
    from .reports.writer import ReportNotSaved

    unsaved: ReportNotSaved | None = None
    try:
        report = session.run(output_dir, sources, resume=previous,
                             baseline_model=baseline if measured_alone else None)
    except ReportNotSaved as exc:  # disk full, read-only: show what was measured anyway
        report, unsaved = exc.report, exc
    finally:
        progress.close()
        session.close()
    from .reports.markdown import render_markdown

    print(render_markdown(report), flush=True)
    if unsaved is not None:
        print(f"edgebench: error: {unsaved}", file=sys.stderr)
        return unsaved.exit_code
    progress.finished(time.perf_counter() - started, session.written)
    failed = any(r.status is Status.FAILED for r in report.cases)
    if baseline is not None:
        return _gate_side_by_side(report, baseline, matrix.gate, output_dir) or int(failed)
    return int(failed)


def _side_by_side_sources(matrix: Matrix, sources: list[Artifact]
                          ) -> tuple[str | None, list[Artifact]]:
    """The model label of ``--baseline-model`` (``sources[0]``) and the sources to run
    (the baseline's stays first when it is measured as a model of its own).

    A model with the baseline's name and content is the nightly case where the model did
    not change: it is measured once, as the baseline, and the other models (if any) are
    gated against it. (A copy under another name is an A/A check: both are measured.)"""
    from .planning import model_label

    if matrix.baseline_model is None:
        return None, sources
    label = model_label(sources[0])
    same = [str(model) for model, source in zip(matrix.models[1:], sources[1:], strict=True)
            if model_label(source) == label]
    if not same:
        return label, sources
    print(f"edgebench: {same[0]} is identical to --baseline-model {matrix.baseline_model} "
          f"(same name and content): it is measured once, as the baseline.", file=sys.stderr)
    return label, sources[1:]


def _gate_side_by_side(report: RunReport, baseline: str, thresholds: Thresholds,
                       output_dir: Path) -> int:
    """Print and save (compare.md) the side-by-side gate; 1 on a regression."""
    from .compare import Verdict, side_by_side
    from .reports.comparison import render_comparison
    from .reports.writer import atomic_write_text

    if all(r.case.model == baseline for r in report.cases):
        text = (f"Nothing to gate side by side: the only model is the baseline model "
                f"{baseline} (same name and content), measured once.\n")
        print(text, end="")
        atomic_write_text(output_dir / "compare.md", text)
        return 0
    comparison = side_by_side(report, baseline, thresholds, name=report.run_id)
    text = render_comparison(comparison)
    print(text)
    atomic_write_text(output_dir / "compare.md", text)
    regressed = comparison.of(Verdict.REGRESSED)
    if regressed:
        print(sentence(f"edgebench: {len(regressed)} case(s) regressed against the baseline "
                       f"model {baseline}."), file=sys.stderr)
        return 1
    return 0


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "devices": cmd_devices,
            "compare": cmd_compare, "history": cmd_history, "export": cmd_export,
            "compress": cmd_compress}


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: save the partial report, clean the devices."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (``poll`` reports an error on it)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file descriptor
        return False


def _flush_stdout() -> bool:
    """Flush stdout now, where a reader gone away (``| head``) can be handled, not in the
    interpreter's exit; ``False`` when it has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return False
    return True


def _stdout_gone() -> int:
    """After the reader of stdout went away (``edgebench devices | head -1``): point stdout
    at /dev/null so the interpreter's last flush cannot fail again, and return 141, the
    status of a process ended by SIGPIPE (128 + 13), as the shell reports for ``yes | head``.
    This follows the note on SIGPIPE in Python's ``signal`` documentation."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, a usage error: printed; its reader may be gone (| head)
        if _flush_stdout():
            raise
        return _stdout_gone()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the report's argv
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = COMMANDS[args.command](args)
        return code if _flush_stdout() else _stdout_gone()
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return _stdout_gone()
    except UserError as exc:
        if args.debug:
            raise
        print(f"edgebench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        name = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"edgebench: {name}; the partial report is saved.", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if argv is None:  # the program's own command line: the process ends next
            _skip_final_collection()


def _skip_final_collection() -> None:
    """Move every object to the collector's permanent generation, so that the interpreter's
    exit frees them by reference count alone instead of tracing them all again in its final
    collections: about 0.3 s less at the end of a run with matplotlib, labgrid and paramiko
    loaded (2 vCPUs, 2026-12-01). Cycles are left to the operating system, as at any exit;
    ``atexit`` handlers (temporary dirs) and the flush of stdout and stderr still run."""
    import gc

    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
