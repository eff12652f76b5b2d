"""The ``edgebench`` command line: its sub-commands and their flags (argparse)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from . import __version__


def split_list(values: Sequence[str] | None) -> tuple[str, ...]:
    """``["a,b", "c"]`` (a repeated, comma-separated flag) -> ``("a", "b", "c")``."""
    out: list[str] = []
    for value in values or ():
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command; ``run``'s flags are the matrix options of
    ``matrix_file.OPTIONS`` (``cli.run_flags`` maps them)."""
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
                     help="device URI(s): local (default), ssh://user@host, adb://serial, "
                          "labgrid://place or labgrid://?board=TAG&count=N")
    run.add_argument("--config", "-c", type=Path,
                     help="matrix file (TOML, see examples/nightly.toml); flags override it")
    run.add_argument("--warmup", type=int, help="warm-up iterations (10)")
    run.add_argument("--warmup-s", type=float,
                     help="also warm up for at least this many seconds (0)")
    run.add_argument("--iterations", "-n", type=int, help="timed iterations, at least (100)")
    run.add_argument("--min-duration", type=float,
                     help="time for at least this many seconds too (0)")
    run.add_argument("--threads", type=int, action="append",
                     help="runtime threads; repeat for a threads axis (default: the "
                          "runtime's own, except litert: every usable core; the report's "
                          "runtime threads_default says which)")
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
    run.add_argument("--fresh", action="store_true",
                     help="run every accuracy pass, even where an earlier run measured the "
                          "same artifact, runtime, data and device (its mAP is reused "
                          "otherwise, marked in the report); refreshes the cache")
    run.add_argument("--output", "-o", type=Path,
                     help="results dir (edgebench-results); each run writes "
                          "RUN_ID/report.{json,md,html} in it")
    run.add_argument("--resume", type=Path, metavar="REPORT",
                     help="finish that run (its report.json or run dir): run only the cases "
                          "it lacks or holds as failed, with the settings it recorded (flags "
                          "or -c that change a figure must equal them, else exit 2); the "
                          "combined report replaces it")
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
    compare.add_argument("--results", type=Path,
                         help="where 'last'/'previous' look (default: the matrix file's "
                              "[run] output with -c, else edgebench-results)")
    compare.add_argument("--config", "-c", type=Path,
                         help="matrix file: its [gate] table, and its [run] output as --results")
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
    history.add_argument("--results", type=Path,
                         help="the results dir (default: the matrix file's [run] output with "
                              "-c, else edgebench-results)")
    history.add_argument("--config", "-c", type=Path,
                         help="matrix file: its [run] output as --results")
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
