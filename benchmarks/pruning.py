"""Pruning on the embedded YOLOv8n at 320 on ONNX Runtime: fp32, ``sparsify`` (unstructured),
``prune`` before and after fine-tuning, in one interleaved run.

One ``edgebench run`` of the embedded ``.pt`` with ``--compress
sparsify:A,prune:R:epochs=0,prune:R:epochs=N``: every variant is exported to ONNX through
the normal export path, the cases' runner processes are interleaved (``--repeats``) so the
medians are side by side, and mAP50-95 is edgebench's own on the 100 embedded val images.
Parameters, GFLOPs and sparsity come from the steps' ``artifact.json`` in the cache; the
``prune`` step also records Ultralytics' val mAP of the pruned model before fine-tuning.

    nice python benchmarks/pruning.py [--epochs 10] [--ratio 0.3] [--amount 0.5] \\
        [--repeats 5] [-n 100] [--threads 1] [-o DIR]

Fine-tuning runs on the 600 embedded train images (about a minute per epoch at 320 on two
idle cores); results are cached, so a second run only measures. Needs ``edgebench[export,
onnxruntime]``.

Measured (2-core Xeon shared with other jobs, ONNX Runtime 1.32 CPU, 1 thread, 5
interleaved repeats x 100 iterations, ``--epochs 10``; medians move ±10 % between runs):

| variant | params | GFLOPs | zero weights | p50 ms | vs fp32 | mAP50-95 |
|---|---:|---:|---:|---:|---:|---:|
| fp32 | 3,011,628 | 2.021 | – | 41.19 | 1.00× | 0.821 |
| sparsify:0.5 | 3,011,628 | 2.021 | 50.0 % | 43.82 | 1.06× | 0.759 |
| prune:0.3:epochs=0 | 1,452,292 | 0.970 | – | 33.64 | 0.82× | 0.003 |
| prune:0.3:epochs=10 | 1,452,292 | 0.970 | – | 36.51 | 0.89× | 0.838 |

Sparsity gives no speed on a dense runtime; pruning 30 % of the channels halves params and
FLOPs, needs fine-tuning (0.003 before, 0.838 after 10 epochs, 1089 s on the loaded box),
and is ~15 % faster at 320 (the two pruned rows are the same network). The fine-tuned
model beats fp32 because it has trained 10 epochs more (fp32 had 20); fine-tuning the
unpruned model as long is the fair control. ``prune:0.3:round_to=8`` (channel counts
multiples of 8; prunes a little more, 0.794 GFLOPs) ran at 0.73× of fp32 in a separate run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgebench.cache import cache_root
from edgebench.cli import main as edgebench
from edgebench.config import ASSETS


def run(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    variants = [f"sparsify:{args.amount}", f"prune:{args.ratio}:epochs=0",
                f"prune:{args.ratio}:epochs={args.epochs}"]
    argv = ["run", "-m", str(ASSETS / "shapes-yolov8n.pt"), "-b", "onnxruntime",
            "--imgsz", "320", "--compress", ",".join(variants), "--repeats",
            str(args.repeats), "-n", str(args.iterations), "--warmup", "20",
            "-o", str(output)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    code = edgebench(argv)
    print(f"edgebench {' '.join(argv)}: exit {code}, {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    (report,) = output.glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def step_meta() -> dict[str, dict[str, Any]]:
    """The MODEL steps' ``artifact.json`` in the cache, by the sha256 of their ``.pt``."""
    from edgebench.cache import sha256_file

    found: dict[str, dict[str, Any]] = {}
    for meta_file in (cache_root() / "exports").glob("*/artifact.json"):
        meta = json.loads(meta_file.read_text())
        if meta.get("file") == "model.pt" and (meta_file.parent / "model.pt").is_file():
            found[sha256_file(meta_file.parent / "model.pt")] = meta
    return found


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(report: dict[str, Any]) -> str:
    metas = step_meta()
    cases = [c for c in report["cases"] if c["latency"]]
    base = next(c for c in cases if not c["case"]["pipeline"])
    base_p50 = base["latency"]["p50_ms"]
    rows = ["| variant | params | GFLOPs (ONNX) | zero weights | p50 ms | median 95% CI | "
            "latency vs fp32 | mAP50-95 | Ultralytics val mAP before → after FT | "
            "fine-tune s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in sorted(cases, key=lambda c: c["latency"]["p50_ms"], reverse=True):
        meta = metas.get((c["artifact"] or {}).get("source_sha256") or "", {})
        lat, acc = c["latency"], c["accuracy"] or {}
        params = meta.get("params_after") or meta.get("params") or 3011628
        before, after = meta.get("map50_95_before_finetune"), meta.get("map50_95_after_finetune")
        cells = ["+".join(c["case"]["pipeline"]) or "fp32", f"{params:,}",
                 _fmt(c["artifact"].get("gflops"), ".3f"),
                 _fmt(meta.get("sparsity"), ".1%"), f"{lat['p50_ms']:.2f}",
                 ("{:.2f}–{:.2f}".format(*lat["median_ci95_ms"]) if lat["median_ci95_ms"] else "–"),
                 f"{lat['p50_ms'] / base_p50:.2f}×", _fmt(acc.get("map50_95"), ".3f"),
                 f"{before:.3f} → {after:.3f}" if before is not None and after is not None
                 else "–", _fmt(meta.get("finetune_seconds"), ".0f")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-n", "--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args, args.output or Path(tmp))
        print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
