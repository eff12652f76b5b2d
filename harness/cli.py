"""The ``edgebench`` command: parse (``cli_parser.py``), build the one validated
:class:`~edgebench.config.Matrix` of the run (``config.load_matrix``), call, print.
``run`` is here; the other sub-commands are in ``commands.py``.

Exit codes: 0 every case ok or skipped; 1 some case failed; 2 a usage or input error (one
sentence on stderr, no traceback unless ``--debug``); 130 interrupted (SIGINT);
143 terminated (SIGTERM). An interrupted run's report is saved, marked ``interrupted``.
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
from .errors import UserError
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
    from .resume import load_previous
    from .runner import Session

    started = time.perf_counter()
    matrix = load_matrix(run_flags(args), args.config, disabled=split_list(args.disable))
    previous, run_dir = load_previous(args.resume) if args.resume else (None, None)
    pm = make_plugin_manager(disabled=matrix.disabled_plugins)
    registry = collect_registry(pm)
    progress = Progress(accuracy=matrix.accuracy is not None)
    session = Session(matrix, pm, registry, argv=sys.argv[1:],
                      run_id=previous.run_id if previous else None,
                      retry=matrix.retry, progress=progress)
    sources = session.sources()  # fail fast on bad model files, before any device work
    session.variants.check(sources)  # and on compression that cannot work
    baseline, sources = _side_by_side_sources(matrix, sources)
    measured_alone = len(sources) == len(matrix.models)  # not as a model of the run too
    if baseline is not None and matrix.settings.repeats < MIN_REPEATS:
        print(f"edgebench: warning: with --repeats {matrix.settings.repeats} the side-by-side "
              f"gate tests the raw samples, blind to the process-to-process noise; use "
              f"--repeats {MIN_REPEATS} or more.", file=sys.stderr)
    if matrix.accuracy is None and matrix.data is not None:
        print(f"edgebench: warning: with --no-accuracy the dataset {matrix.data} is not "
              "evaluated; the timed loop runs on the first embedded val image, as without "
              "--data.", file=sys.stderr)
    output_dir = check_output_dir(run_dir or matrix.output_dir / session.run_id)
    try:
        report = session.run(output_dir, sources, resume=previous,
                             baseline_model=baseline if measured_alone else None)
    finally:
        progress.close()
        session.close()
    from .reports.markdown import render_markdown

    print(render_markdown(report), flush=True)
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
        print(f"edgebench: {len(regressed)} case(s) regressed against the baseline model "
              f"{baseline}.", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "devices": cmd_devices,
            "compare": cmd_compare, "history": cmd_history, "export": cmd_export,
            "compress": cmd_compress}


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: save the partial report, clean the devices."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[args.command](args)
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


if __name__ == "__main__":
    sys.exit(main())
