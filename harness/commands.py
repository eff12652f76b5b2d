"""The sub-commands of ``edgebench`` other than ``run`` (``cli.py``): plugins, compress,
devices, compare, history, export. Each takes the parsed arguments and returns the exit
code; errors a user can cause are :class:`~edgebench.errors.UserError` (``cli.main``
prints them in one sentence, exit 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_parser import split_list
from .plugin_manager import collect_registry, make_plugin_manager


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugin_listing import render_plugins

    pm = make_plugin_manager(disabled=split_list(args.disable))
    print(render_plugins(collect_registry(pm), split_list(args.disable)))
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from .pipeline import load_source
    from .variants import compress_model

    registry = collect_registry(make_plugin_manager(disabled=split_list(args.disable)))
    artifact, notes = compress_model(load_source(args.model), args.pipeline, registry,
                                     backend=args.backend, imgsz=args.imgsz,
                                     train_data=args.train_data, output=args.output)
    for note in notes:
        print(f"  {note}")
    print(f"{artifact.path} ({artifact.format}, {artifact.size_bytes / 2**20:.1f} MiB, "
          f"sha256 {artifact.sha256[:12]})")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """Probe every device (each board of a ``count=N`` farm URI: ``URI → PLACE``) and print
    its fingerprint; 1 when one could not be reached or probed."""
    import json

    from .config import load_matrix
    from .probe import probe_devices
    from .record_json import to_json_dict
    from .redaction import redact  # an unusable URI may hold a password

    pm = make_plugin_manager(disabled=split_list(args.disable))
    registry = collect_registry(pm)
    uris = load_matrix({"devices": split_list(args.device) or None}, args.config).devices
    found = probe_devices(uris, pm, registry, accept_new_host_keys=args.accept_new_host_keys,
                          on_message=lambda m: print(m, file=sys.stderr))
    found = [(uri if info else redact(uri), info, error) for uri, info, error in found]
    if args.json:
        print(json.dumps([{"uri": uri, "reachable": info is not None, "error": error,
                           "device": to_json_dict(info) if info else None}
                          for uri, info, error in found], indent=2))
    for uri, info, error in [] if args.json else found:
        if info is None:
            print(f"{uri}  UNREACHABLE: {error}")
            continue
        if info.place is not None:  # one of the boards a farm URI stands for
            uri = f"{uri} → {info.place.name}"
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
    from .config import load_matrix
    from .history import host_fingerprint, load_runs, resolve_report
    from .reports.comparison import render_comparison
    from .reports.json_report import load_report

    flags = {"latency_threshold": args.latency_threshold, "map_threshold": args.map_threshold,
             "alpha": args.alpha, "alpha_repeats": args.alpha_repeats,
             "noise_factor": args.noise_factor}
    matrix = load_matrix(flags, args.config)
    thresholds = matrix.gate
    args.results = results_dir(args.results, args.config, matrix.output_dir)
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


def results_dir(given: Path | None, config: Path | None, output_dir: Path) -> Path:
    """Where ``compare``/``history`` find the runs: ``--results``, else the matrix file's
    ``[run] output`` when ``-c`` names one (the directory ``edgebench run -c`` wrote to),
    else ``edgebench-results``."""
    if given is not None:
        return given
    return output_dir if config is not None else Path("edgebench-results")


def cmd_history(args: argparse.Namespace) -> int:
    from .config import load_matrix
    from .history import METRICS, load_runs, render_history, series

    if args.results is None:
        output_dir = load_matrix({}, args.config).output_dir if args.config else Path()
        args.results = results_dir(None, args.config, output_dir)
    data = series(load_runs(args.results), args.metric, args.case)
    print(render_history(data, args.metric))
    if args.html:
        from .reports.html import render_history_html
        from .reports.writer import atomic_write_text

        plot = {k: [(p.started, p.value) for p in v] for k, v in data.items()}
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
