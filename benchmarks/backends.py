"""ONNX Runtime vs LiteRT vs ncnn on the embedded model at 320 and 640 px, in one run.

One ``edgebench run`` with two sources: the embedded ONNX (static 320 input; LiteRT and
ncnn use its committed exports) and the embedded ``.pt`` exported at ``--imgsz 640`` to all
three formats (cached). Cases run one after another on the local host, so their medians
are comparable; the table adds each case's peak RSS and its agreement with the float
reference (ORT with graph optimisations off at 320, PyTorch at 640).

    python benchmarks/backends.py [-n 200] [--threads N] [-o DIR]

Needs ``edgebench[onnxruntime,litert,ncnn,export]`` (torch for the 640 exports).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edgebench.cli import main as edgebench
from edgebench.config import ASSETS


def run(iterations: int, threads: int | None, output: Path) -> dict:  # type: ignore[type-arg]
    argv = ["run", "-m", str(ASSETS / "shapes-yolov8n.onnx"),
            "-m", str(ASSETS / "shapes-yolov8n.pt"), "--imgsz", "640",
            "-n", str(iterations), "--warmup", "20", "-o", str(output)]
    if threads:
        argv += ["--threads", str(threads)]
    t0 = time.perf_counter()
    code = edgebench(argv)
    print(f"edgebench {' '.join(argv)}: exit {code}, {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    (report,) = output.glob("*/report.json")
    return json.loads(report.read_text())  # type: ignore[no-any-return]


def table(report: dict) -> str:  # type: ignore[type-arg]
    rows = ["| input | backend | status | p50 ms | median 95% CI | peak RSS MiB | load Δ MiB "
            "| mAP50-95 | det. box Δ px | score Δ | agreement |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def order(c: dict) -> list:  # type: ignore[type-arg]
        shape = (c["artifact"] or {}).get("input_shape") or [0] * 4
        return [*shape[2:], c["case"]["backend"]]

    cases = sorted(report["cases"], key=order)
    for c in cases:
        shape = (c["artifact"] or {}).get("input_shape") or ["?"] * 4
        lat, mem, acc = c["latency"], c["memory"] or {}, c["accuracy"] or {}
        fid = acc.get("fidelity") or {}
        cells = [f"{shape[2]}×{shape[3]}", c["case"]["backend"], c["status"]]
        ci = lat["median_ci95_ms"] if lat else None
        cells += [f"{lat['p50_ms']:.2f}", "{:.2f}–{:.2f}".format(*ci) if ci else "–"] \
            if lat else ["–", "–"]
        cells += [f"{mem['peak_rss_bytes'] / 2**20:.0f}" if mem.get("peak_rss_bytes") else "–",
                  f"{mem['load_delta_bytes'] / 2**20:.0f}" if mem.get("load_delta_bytes")
                  else "–"]
        cells += [f"{acc['map50_95']:.3f}" if acc.get("map50_95") is not None else "–",
                  f"{fid['detection_box_max_abs_px']:.1e}" if fid else "–",
                  f"{fid['score_max_abs']:.1e}" if fid else "–",
                  f"{fid['detection_agreement']:.3f}" if fid else "–"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--iterations", type=int, default=200)
    parser.add_argument("--threads", type=int)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.iterations, args.threads, args.output or Path(tmp))
        print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
