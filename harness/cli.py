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

from . import __version__
from .accuracy import AccuracySettings
from .config import DEFAULT_MODEL, Matrix, check_output_dir, make_settings
from .errors import UserError
from .plugin_manager import collect_registry, make_plugin_manager
from .records import CaseResult, Status


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
    run.add_argument("--backend", "-b", action="append",
                     help="backend name(s), comma-separated or repeated; default: every "
                          "backend usable here")
    run.add_argument("--device", "-d", action="append",
                     help="device URI(s): local (default), ssh://user@host, adb://serial")
    run.add_argument("--warmup", type=int, default=10, help="warm-up iterations (10)")
    run.add_argument("--warmup-s", type=float, default=0.0,
                     help="also warm up for at least this many seconds (0)")
    run.add_argument("--iterations", "-n", type=int, default=100,
                     help="timed iterations, at least (100)")
    run.add_argument("--min-duration", type=float, default=0.0,
                     help="time for at least this many seconds too (0)")
    run.add_argument("--threads", type=int, help="runtime threads (default: runtime's own)")
    run.add_argument("--imgsz", type=int,
                     help="input size for .pt exports and dynamic-shape models")
    run.add_argument("--timeout", type=float, default=600.0, help="per-case timeout, s (600)")
    run.add_argument("--data", type=Path,
                     help="evaluation data: a data.yaml (YOLO layout), a COCO instances .json, "
                          "or a folder of images (fidelity only); default: the embedded "
                          "shapes val split")
    run.add_argument("--images", type=int, help="evaluate on the first N images only")
    run.add_argument("--conf", type=float, default=0.001,
                     help="score threshold for mAP (0.001, as Ultralytics val)")
    run.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (0.7)")
    run.add_argument("--no-accuracy", action="store_true",
                     help="latency and memory only: skip the accuracy pass")
    run.add_argument("--output", "-o", type=Path, default=Path("edgebench-results"),
                     help="output dir; each run writes RUN_ID/report.{json,md} in it")

    sub.add_parser("plugins", help="list plugins and whether each is usable here")

    devices = sub.add_parser(
        "devices", help="list devices, whether each is reachable, and its fingerprint")
    devices.add_argument("--device", "-d", action="append",
                         help="device URI(s), as for 'run' (default: local)")
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
        rows.append((reg.kind.value, reg.name, reg.distribution or "–", reg.version or "–",
                     reg.plugin, "yes" if reason is None else f"no: {reason}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    blocked = sorted(_split(args.disable))
    if blocked:
        print(f"disabled: {', '.join(blocked)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import Session

    settings = make_settings(warmup=args.warmup, warmup_s=args.warmup_s,
                             iterations=args.iterations, min_duration_s=args.min_duration,
                             threads=args.threads, timeout_s=args.timeout)
    if args.imgsz is not None and args.imgsz < 32:
        raise UserError(f"--imgsz must be at least 32, got {args.imgsz}.")
    if not 0.0 <= args.conf < 1.0:
        raise UserError(f"--conf must be in [0, 1), got {args.conf}.")
    if not 0.0 < args.iou <= 1.0:
        raise UserError(f"--iou must be in (0, 1], got {args.iou}.")
    if args.images is not None and args.images < 1:
        raise UserError(f"--images must be at least 1, got {args.images}.")
    accuracy = None if args.no_accuracy else AccuracySettings(conf=args.conf, iou=args.iou)
    matrix = Matrix(
        data=args.data,
        images=args.images,
        accuracy=accuracy,
        models=tuple(args.model or (DEFAULT_MODEL,)),
        backends=_split(args.backend),
        devices=_split(args.device) or ("local",),
        settings=settings,
        imgsz=args.imgsz,
        output_dir=args.output,
        disabled_plugins=_split(args.disable),
    )
    pm = make_plugin_manager(disabled=matrix.disabled_plugins)
    registry = collect_registry(pm)
    session = Session(matrix, pm, registry, argv=sys.argv[1:])
    output_dir = check_output_dir(matrix.output_dir / session.run_id)
    sources = session.sources()  # fail fast on bad model files, before any device work
    progress = _progress(len(matrix.models) * len(session.backends) * len(matrix.devices))
    session.on_case = progress.update_case
    try:
        report = session.run(output_dir, sources)
    finally:
        progress.close()
        session.close()
    from .reports.markdown import render_markdown

    print(render_markdown(report))
    print(f"report: {output_dir / 'report.json'}", file=sys.stderr)
    return 1 if any(r.status is Status.FAILED for r in report.cases) else 0


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


def cmd_devices(args: argparse.Namespace) -> int:
    import json

    from .records import to_json_dict
    from .runner import probe_devices

    pm = make_plugin_manager(disabled=_split(args.disable))
    registry = collect_registry(pm)
    uris = _split(args.device) or ("local",)
    found = probe_devices(uris, pm, registry, accept_new_host_keys=args.accept_new_host_keys,
                          on_message=lambda m: print(m, file=sys.stderr))
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


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "devices": cmd_devices}


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
