"""Threads and machine load: ONNX Runtime and ncnn on the embedded model, quiet and loaded.

For each load (none, one busy core, two busy cores: Python busy-loop processes started next
to the run), one ``edgebench run`` per thread setting (the runtime's default, 1, the
physical cores) and idle policy measures ONNX Runtime and ncnn on the embedded 320 px
model: idle workers spinning (ORT ``spinning=true``, ncnn ``wait_policy=active``) or
sleeping (``spinning=false``, ``wait_policy=passive``). Prints one Markdown table: p50, p99
and the spread (p90 / p10) per case, with the other processes' cores the case recorded.

    python benchmarks/threads_load.py [-n 100] [-o DIR]

Needs ``edgebench[onnxruntime,ncnn]``; a 2-core box takes about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgebench.config import ASSETS


def _busy(stop: Any) -> None:
    while not stop.is_set():
        pass


def _physical_cores() -> int:
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def run(threads: int | None, iterations: int, output: Path, spin: bool
        ) -> dict:  # type: ignore[type-arg]
    argv = [sys.executable, "-m", "edgebench.cli", "run", "-m",
            str(ASSETS / "shapes-yolov8n.onnx"), "-b", "onnxruntime,ncnn", "-n",
            str(iterations), "--warmup", "20", "--no-accuracy", "-o", str(output),
            "--backend-option", f"onnxruntime.spinning={'true' if spin else 'false'}",
            "--backend-option", f"ncnn.wait_policy={'active' if spin else 'passive'}"]
    if threads:
        argv += ["--threads", str(threads)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    report = max(output.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(report.read_text())  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("-o", type=Path, default=None)
    args = parser.parse_args()
    out = args.o or Path(tempfile.mkdtemp(prefix="edgebench-threads-"))
    physical = _physical_cores()
    rows = ["| load | backend | idle workers | threads asked | threads used | p50 ms | p99 ms "
            "| p90/p10 | other CPU (cores) |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for busy in (0, 1, 2):
        stop = multiprocessing.Event()
        procs = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(busy)]
        for p in procs:
            p.start()
        time.sleep(1.0 if busy else 0.0)
        try:
            for threads in (None, 1, physical):
                for spin in (True, False):
                    policy = "spin" if spin else "sleep"
                    report = run(threads, args.n, out / f"b{busy}-t{threads}-{policy}", spin)
                    for c in report["cases"]:
                        lat = c["latency"]
                        if lat is None:
                            continue
                        samples = sorted(lat["samples_ns"])
                        p10 = samples[len(samples) // 10] / 1e6
                        load = (c.get("load") or {}).get("device") or {}
                        other = load.get("other_cpu_cores")
                        used = (c["runtime"] or {}).get("threads")
                        other_text = f"{other:.2f}" if other is not None else "–"
                        rows.append(
                            f"| {busy} busy core(s) | {c['case']['backend']} | {policy} "
                            f"| {threads or 'default'} | {used if used is not None else '?'} "
                            f"| {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} "
                            f"| {lat['p90_ms'] / p10:.2f} "
                            f"| {other_text} |")
                        print(rows[-1], flush=True)
        finally:
            stop.set()
            for p in procs:
                p.join()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
