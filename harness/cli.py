"""The ``edgebench`` command: parse, call, print.

Exit codes: 0 every case ok or skipped; 1 some case failed; 2 a usage or input error (one
sentence on stderr, no traceback unless ``--debug``); 130 interrupted (SIGINT);
143 terminated (SIGTERM). An interrupted run's report is saved, marked ``interrupted``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import check_output_dir, matrix_from_options
from .errors import UserError
from .plugin_manager import collect_registry, make_plugin_manager
from .records import CaseResult, Status

if TYPE_CHECKING:
    from .compare import Thresholds
    from .config import Matrix
    from .records import Artifact, RunReport


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgebench",
        description="Benchmark YOLOv8-class detectors on edge runtimes and devices.")
    parser.add_argument("--version", action="version", version=f"edgebench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--disable", action="append", metavar="PLUGIN",
                        help="do not load this plugin (entry-point name); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="benchmark models on backends and devices")
    run.add_argument("--model", "-m", action="append", type=Path,
                     help=".onnx (used as is) or .pt (exported with Ultralytics); repeatable; "
                          "default: the embedded shapes YOLOv8n")
    run.add_argument("--baseline-model", type=Path, metavar="MODEL",
                     help="measure this model too, side by side with the others (repeats "
                          "interleaved), and gate their cases against its own with the "
                          "-c file's [gate] thresholds: exit 1 on a regression; writes "
                          "compare.md in the run dir (use --repeats 5 or more)")
    run.add_argument("--backend", "-b", action="append",
                     help="backend name(s), comma-separated or repeated; default: every "
                          "backend usable here")
    run.add_argument("--device", "-d", action="append",
                     help="device URI(s): local (default), ssh://user@host, adb://serial")
    run.add_argument("--config", "-c", type=Path,
                     help="matrix file (TOML, see examples/nightly.toml); flags override it")
    run.add_argument("--warmup", type=int, help="warm-up iterations (10)")
    run.add_argument("--warmup-s", type=float,
                     help="also warm up for at least this many seconds (0)")
    run.add_argument("--iterations", "-n", type=int, help="timed iterations, at least (100)")
    run.add_argument("--min-duration", type=float,
                     help="time for at least this many seconds too (0)")
    run.add_argument("--threads", type=int, action="append",
                     help="runtime threads; repeat for a threads axis (default: runtime's own)")
    run.add_argument("--backend-option", action="append", metavar="BACKEND.KEY=VALUE",
                     help="a backend's runner option, e.g. ncnn.fp16_storage=true; "
                          "repeatable (a wrong key lists the backend's options)")
    run.add_argument("--repeats", type=int,
                     help="runner processes per case, interleaved with the other cases; the "
                          "gate tests on their medians (1; nightly: 5)")
    run.add_argument("--imgsz", metavar="N|H,W",
                     help="input size for .pt exports and dynamic-shape models: one side, or "
                          "height,width as Ultralytics orders them (e.g. 256,320)")
    run.add_argument("--timeout", type=float, help="per-case timeout, s (600)")
    run.add_argument("--cooldown", type=float, help="pause before each case, s (0)")
    run.add_argument("--max-temperature", type=float,
                     help="wait before each case until the device is at most this hot, °C")
    run.add_argument("--data", type=Path,
                     help="evaluation data: a data.yaml (YOLO layout), a COCO instances .json, "
                          "or a folder of images (fidelity only); default: the embedded "
                          "shapes val split")
    run.add_argument("--images", type=int, help="evaluate on the first N images only")
    run.add_argument("--compress", action="append", metavar="PIPELINE",
                     help="compressed variants to run next to fp32: comma-separated, steps "
                          "chained with '+', e.g. int8,prune:0.3+int8 (see 'edgebench "
                          "plugins' for the steps)")
    run.add_argument("--train-data", type=Path,
                     help="data.yaml whose train split calibrates and fine-tunes (default: "
                          "--data when it is a data.yaml, else the embedded shapes dataset)")
    run.add_argument("--conf", type=float,
                     help="score threshold for mAP (0.001, as Ultralytics val)")
    run.add_argument("--iou", type=float, help="NMS IoU threshold (0.7)")
    run.add_argument("--no-accuracy", action="store_true",
                     help="latency and memory only: skip the accuracy pass")
    run.add_argument("--output", "-o", type=Path,
                     help="results dir (edgebench-results); each run writes "
                          "RUN_ID/report.{json,md,html} in it")
    run.add_argument("--resume", type=Path, metavar="REPORT",
                     help="finish that run (its report.json or run dir): run only the cases "
                          "it lacks or holds as failed, with the same flags / -c file as it "
                          "had; the combined report replaces it")
    run.add_argument("--retries", type=int,
                     help="retries of a case cut by a lost connection (3); measurement "
                          "failures are never retried")
    run.add_argument("--retry-backoff", type=float,
                     help="seconds before the first retry, doubling after (5)")

    compress = sub.add_parser("compress", help="make a compressed model without benchmarking")
    compress.add_argument("model", type=Path, help="the .pt (or .onnx) to compress")
    compress.add_argument("pipeline", help="steps chained with '+', e.g. prune:0.3+int8")
    compress.add_argument("--backend", "-b",
                          help="the backend whose format quantization steps produce")
    compress.add_argument("--imgsz", type=int, help="input size of exports (320)")
    compress.add_argument("--train-data", type=Path,
                          help="data.yaml whose train split calibrates and fine-tunes "
                               "(default: the embedded shapes dataset)")
    compress.add_argument("--output", "-o", type=Path, required=True,
                          help="where to copy the compressed model (file or directory)")

    compare = sub.add_parser(
        "compare", help="compare a run with a baseline; exit 1 on a regression")
    compare.add_argument("baseline", help="report.json, a run dir, 'previous' or 'last'")
    compare.add_argument("current", nargs="?", default="last",
                         help="report.json, a run dir or 'last' (default)")
    compare.add_argument("--results", type=Path, default=Path("edgebench-results"),
                         help="where 'last'/'previous' look (edgebench-results)")
    compare.add_argument("--config", "-c", type=Path, help="matrix file: its [gate] table")
    compare.add_argument("--latency-threshold", type=float,
                         help="relative latency change that matters (0.05)")
    compare.add_argument("--map-threshold", type=float,
                         help="mAP50-95 change that matters, points (0.5)")
    compare.add_argument("--alpha", type=float,
                         help="significance level of the samples test (0.002)")
    compare.add_argument("--alpha-repeats", type=float,
                         help="significance level of the repeats test (0.01)")
    compare.add_argument("--noise-factor", type=float,
                         help="latency threshold >= this x the case's noise: scatter of "
                              "repeats, run-to-run change in --results (3)")
    compare.add_argument("--fail-on-no-overlap", action="store_true",
                         help="exit 1 (not 0 with a warning) when no case is in both runs")
    compare.add_argument("--output", "-o", type=Path, help="also write the table here")

    history = sub.add_parser("history", help="a metric over the runs in a results dir")
    history.add_argument("--results", type=Path, default=Path("edgebench-results"))
    history.add_argument("--case", default="", help="only cases whose key contains this")
    history.add_argument("--metric", default="p50_ms",
                         help="p50_ms (default), p90_ms, peak_rss_mib, map50_95, map50")
    history.add_argument("--html", type=Path, help="also write a plot to this HTML file")

    export = sub.add_parser("export", help="convert a report for other tools")
    export.add_argument("report", type=Path, help="report.json or a run dir")
    export.add_argument("--format", choices=["pytest-benchmark"], default="pytest-benchmark")
    export.add_argument("--output", "-o", type=Path, required=True)

    sub.add_parser("plugins", help="list plugins and whether each is usable here")

    devices = sub.add_parser(
        "devices", help="list devices, whether each is reachable, and its fingerprint")
    devices.add_argument("--device", "-d", action="append",
                         help="device URI(s), as for 'run' (default: the matrix file's, "
                              "else local)")
    devices.add_argument("--config", "-c", type=Path,
                         help="matrix file: list the devices of its [run] table")
    devices.add_argument("--accept-new-host-keys", action="store_true",
                         help="record the host key of SSH devices not yet in known_hosts "
                              "(check the printed fingerprint); changed keys stay refused")
    devices.add_argument("--json", action="store_true", help="print JSON")
    return parser


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = make_plugin_manager(disabled=_split(args.disable))
    registry = collect_registry(pm)
    rows = [("kind", "name", "distribution", "version", "plugin", "usable here")]
    for reg in registry.all():
        reason = reg.unavailable_reason()
        usable = "yes" if reason is None else f"no: {reason}"
        if reg.hooks:
            usable += f" (hooks: {', '.join(reg.hooks)})"
        rows.append((reg.kind.value, reg.name, reg.distribution or "–", reg.version or "–",
                     reg.plugin, usable))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    blocked = sorted(_split(args.disable))
    if blocked:
        print(f"disabled: {', '.join(blocked)}")
    return 0


def _imgsz_flag(text: str | None) -> object:
    from .input_size import IMGSZ_EXPECT, parse_imgsz

    if text is None:
        return None
    try:
        return parse_imgsz(text)
    except ValueError:
        raise UserError(f"--imgsz must be {IMGSZ_EXPECT}; got {text!r}.") from None


def run_flags(args: argparse.Namespace) -> dict[str, object]:
    """The flags of ``run`` as matrix options; ``None`` where not given."""
    return {
        "models": tuple(args.model) if args.model else None,
        "baseline_model": args.baseline_model,
        "backends": _split(args.backend) or None,
        "devices": _split(args.device) or None,
        "data": args.data, "images": args.images, "imgsz": _imgsz_flag(args.imgsz),
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
    from .matrix_file import parse_backend_option

    out: dict[str, dict[str, object]] = {}
    for text in values or ():
        backend, key, value = parse_backend_option(text)
        out.setdefault(backend, {})[key] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from .compare import MIN_REPEATS
    from .matrix_file import MatrixFile, check_flags, merged
    from .resume import load_previous
    from .retry import RetryPolicy
    from .runner import Session

    flags = run_flags(args)
    check_flags(flags)
    file_values = MatrixFile(args.config).values if args.config else {}
    values = merged(file_values, flags)
    matrix = matrix_from_options(values, disabled=_split(args.disable))
    previous, run_dir = load_previous(args.resume) if args.resume else (None, None)
    pm = make_plugin_manager(disabled=matrix.disabled_plugins)
    registry = collect_registry(pm)
    session = Session(matrix, pm, registry, argv=sys.argv[1:],
                      run_id=previous.run_id if previous else None,
                      retry=RetryPolicy(values["retries"], values["retry_backoff_s"]))
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
    progress = _progress(len(sources) * len(session.variants.pipelines)
                         * len(session.backends) * len(matrix.devices)
                         * len(matrix.all_settings))
    session.on_case = progress.update_case
    try:
        report = session.run(output_dir, sources, resume=previous,
                             baseline_model=baseline if measured_alone else None)
    finally:
        progress.close()
        session.close()
    from .reports.markdown import render_markdown

    print(render_markdown(report))
    print(f"report: {output_dir / 'report.json'}", file=sys.stderr)
    failed = any(r.status is Status.FAILED for r in report.cases)
    if baseline is not None:
        return _gate_side_by_side(report, baseline, values, output_dir) or int(failed)
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


def _gate_side_by_side(report: RunReport, baseline: str, values: dict[str, Any],
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
    comparison = side_by_side(report, baseline, _thresholds(values), name=report.run_id)
    text = render_comparison(comparison)
    print(text)
    atomic_write_text(output_dir / "compare.md", text)
    regressed = comparison.of(Verdict.REGRESSED)
    if regressed:
        print(f"edgebench: {len(regressed)} case(s) regressed against the baseline model "
              f"{baseline}.", file=sys.stderr)
        return 1
    return 0


def _thresholds(values: dict[str, Any]) -> Thresholds:
    from .compare import Thresholds

    return Thresholds(latency=values["latency_threshold"],
                      map_points=values["map_threshold"], alpha=values["alpha"],
                      alpha_repeats=values["alpha_repeats"],
                      noise_factor=values["noise_factor"])


class _progress:
    """A progress bar over cases on stderr (silent when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True,
                        disable=None, desc="edgebench")

    def update_case(self, result: CaseResult) -> None:
        p50 = f"{result.latency.p50_ms:.2f} ms" if result.latency else result.status.value
        self.bar.set_postfix_str(f"{result.case.backend}@{result.case.device}: {p50}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def cmd_compress(args: argparse.Namespace) -> int:
    from .pipeline import load_source
    from .variants import compress_model

    registry = collect_registry(make_plugin_manager(disabled=_split(args.disable)))
    artifact, notes = compress_model(load_source(args.model), args.pipeline, registry,
                                     backend=args.backend, imgsz=args.imgsz,
                                     train_data=args.train_data, output=args.output)
    for note in notes:
        print(f"  {note}")
    print(f"{artifact.path} ({artifact.format}, {artifact.size_bytes / 2**20:.1f} MiB, "
          f"sha256 {artifact.sha256[:12]})")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    import json

    from .matrix_file import MatrixFile
    from .probe import probe_devices
    from .records import to_json_dict

    pm = make_plugin_manager(disabled=_split(args.disable))
    registry = collect_registry(pm)
    configured = MatrixFile(args.config).values.get("devices", ()) if args.config else ()
    uris = _split(args.device) or tuple(configured) or ("local",)
    found = probe_devices(uris, pm, registry, accept_new_host_keys=args.accept_new_host_keys,
                          on_message=lambda m: print(m, file=sys.stderr))
    from .devices.transport import redact  # an unusable URI may hold a password

    found = [(uri if info else redact(uri), info, error) for uri, info, error in found]
    if args.json:
        print(json.dumps([{"uri": uri, "reachable": info is not None, "error": error,
                           "device": to_json_dict(info) if info else None}
                          for uri, info, error in found], indent=2))
    for uri, info, error in [] if args.json else found:
        if info is None:
            print(f"{uri}  UNREACHABLE: {error}")
            continue
        ram = f"{info.ram_bytes / 2**30:.1f} GiB" if info.ram_bytes else "? RAM"
        temp = f"{info.temperature_c:.0f} °C" if info.temperature_c is not None else "n/a"
        runtimes = ", ".join(f"{k} {v}" for k, v in sorted(info.runtimes.items())) or "none"
        print(f"{uri}  reachable\n"
              f"  {info.cpu_model or '?'} ({info.arch}, {info.cores or '?'} cores, {ram}), "
              f"{info.os}, Python {info.python or 'none'}\n"
              f"  governor {info.governor or 'n/a'}, temperature {temp}; runtimes: {runtimes}")
    return 0 if all(info is not None for _, info, _ in found) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import Verdict, compare_reports
    from .history import host_fingerprint, load_runs, resolve_report
    from .matrix_file import MatrixFile, check_flags, merged
    from .reports.comparison import render_comparison
    from .reports.json_report import load_report

    flags = {"latency_threshold": args.latency_threshold, "map_threshold": args.map_threshold,
             "alpha": args.alpha, "alpha_repeats": args.alpha_repeats,
             "noise_factor": args.noise_factor}
    check_flags(flags)
    values = merged(MatrixFile(args.config).values if args.config else {}, flags)
    thresholds = _thresholds(values)
    current_path = resolve_report(args.current, args.results)
    baseline_path = resolve_report(args.baseline, args.results, exclude=current_path)
    current = load_report(current_path)
    history = [run.report for run in (load_runs(args.results) if args.results.is_dir() else ())
               if run.path.resolve() != current_path.resolve()
               and run.report.created_at <= current.created_at
               and host_fingerprint(run.report.host) == host_fingerprint(current.host)]
    comparison = compare_reports(load_report(baseline_path), current, thresholds,
                                 baseline_name=str(baseline_path),
                                 current_name=str(current_path), history=history)
    text = render_comparison(comparison)
    print(text)
    if args.output:
        from .reports.writer import atomic_write_text

        atomic_write_text(args.output, text)
    if comparison.overlapping == 0:
        print(f"edgebench: warning: {baseline_path} and {current_path} have no case in "
              "common; nothing was compared.", file=sys.stderr)
        return 1 if args.fail_on_no_overlap else 0
    regressed = comparison.of(Verdict.REGRESSED)
    if regressed:
        print(f"edgebench: {len(regressed)} case(s) regressed.", file=sys.stderr)
        return 1
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .history import METRICS, load_runs, render_history, series

    data = series(load_runs(args.results), args.metric, args.case)
    print(render_history(data, args.metric))
    if args.html:
        from .reports.html import render_history_html
        from .reports.writer import atomic_write_text

        plot = {k: [(p.run_id, p.value) for p in v] for k, v in data.items()}
        atomic_write_text(args.html, render_history_html(
            f"edgebench history: {METRICS[args.metric][0]}", plot, METRICS[args.metric][0]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .reports.json_report import load_report
    from .reports.pytest_benchmark import to_pytest_benchmark
    from .reports.writer import atomic_write_text

    path = args.report / "report.json" if args.report.is_dir() else args.report
    atomic_write_text(args.output, to_pytest_benchmark(load_report(path)))
    print(f"wrote {args.output}", file=sys.stderr)
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
