"""What distillation adds: a pruned student fine-tuned with and without the teacher.

One ``edgebench run`` of the embedded ``.pt`` on ONNX Runtime with four variants side by
side: the uncompressed model (the teacher), the student as pruned (``prune:R:epochs=0``),
the student fine-tuned ``E`` epochs without a teacher (``+finetune:E``) and the same
training with the teacher (``+distill:E``). Same data, epochs, seed and batch in both arms,
so the difference of their mAP50-95 on the 100 val images is the teacher's contribution.
With several ``--seeds`` each arm is trained once per seed and the gain is given per seed.
Besides the run's latencies (cases one after another), each ONNX model is timed again on the
host interleaved with the others (``--threads``, ``--rounds``), which is steadier on a busy
machine; the distilled and fine-tuned students have the same graph, so only noise separates
their speeds.

    python benchmarks/distillation.py [--ratio 0.5] [--epochs 5] [--seeds 0,1] [-o DIR]

Trains on the host CPU (3-15 min per arm at 320 px on 600 images on 2 shared cores);
cached, so a rerun only measures. Needs ``edgebench[onnxruntime,export]`` (torch-pruning).

Measured (2-core Xeon, shared; 5 epochs at 320 on the 600 train images, mAP50-95 on the 100
val images; teacher: the uncompressed embedded YOLOv8n, 0.821; latency: ONNX Runtime, 1
thread, interleaved):

========  ===========  ==============  ==============  ===============  =============
prune     GFLOPs       pruned as is    + finetune      + distill        gain (points)
========  ===========  ==============  ==============  ===============  =============
0.3       2.05 → 0.99  0.003           0.789 / 0.793   0.792 / 0.793    +0.3 / +0.0
0.5       2.05 → 0.53  0.000           0.558 / 0.566   0.635 / 0.638    +7.8 / +7.2
========  ===========  ==============  ==============  ===============  =============

(seeds 0 / 1.) Speed: 17.0-17.7 ms fp32, 13.6-13.8 ms at 0.3 (1.24×), 7.1 ms at 0.5 (2.48×);
distilled and fine-tuned students have the same graph and time within 2 %. At 0.3, five
epochs of plain fine-tuning already recover nearly all of the teacher's mAP and the teacher
adds nothing measurable; at 0.5 it adds 7-8 points (12 points of mAP50), far above the
seed-to-seed spread (under 1 point).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgebench.cli import main as edgebench
from edgebench.config import ASSETS


def variants(ratio: float, epochs: int, seeds: list[int], extra: str) -> list[str]:
    student = f"prune:{ratio:g}:epochs=0"
    out = [student]
    for seed in seeds:
        out += [f"{student}+finetune:epochs={epochs}:seed={seed}{extra}",
                f"{student}+distill:epochs={epochs}:seed={seed}{extra}"]
    return out


def run(pipelines: list[str], iterations: int, repeats: int, output: Path) -> dict[str, Any]:
    argv = ["run", "-m", str(ASSETS / "shapes-yolov8n.pt"), "-b", "onnxruntime",
            "--compress", ",".join(pipelines), "-n", str(iterations), "--warmup", "20",
            "--repeats", str(repeats), "-o", str(output)]
    t0 = time.perf_counter()
    code = edgebench(argv)
    print(f"edgebench {' '.join(argv)}: exit {code}, {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    (report,) = output.glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _label(case: dict[str, Any]) -> str:
    return "+".join(case["case"].get("pipeline") or ()) or "fp32"


def _step(label: str, name: str) -> dict[str, str]:
    for step in label.split("+"):
        parts = step.split(":")
        if parts[0] == name:
            return dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return {}


def _note(case: dict[str, Any], text: str) -> str:
    """The case's first note containing ``text``, without its step-label prefix."""
    for note in case["notes"]:
        if text in note:
            return str(note).split(": ", 1)[-1]
    return ""


def interleaved_ms(report: dict[str, Any], threads: int, rounds: int) -> dict[str, float]:
    """Median latency of each case's ONNX model with ONNX Runtime on the host, measured
    interleaved (every model in turn, ``rounds`` times): the box's drift hits all alike,
    unlike the run's cases, which run one after another."""
    import numpy as np

    from edgebench.plugins.compression.host_eval import median_latencies_ms, session

    labels, runners = [], []
    for c in report["cases"]:
        artifact = c.get("artifact") or {}
        if c["status"] != "ok" or artifact.get("format") != "onnx":
            continue
        sess = session(artifact["path"], threads)
        shape = [d if d > 0 else 320 for d in artifact["input_shape"]]
        feed = {sess.get_inputs()[0].name: np.random.default_rng(0).random(
            shape, dtype=np.float32)}
        labels.append(_label(c))
        runners.append(lambda sess=sess, feed=feed: sess.run(None, feed))
    return dict(zip(labels, median_latencies_ms(runners, rounds=rounds, per_round=20)))


def table(report: dict[str, Any], interleaved: dict[str, float]) -> str:
    cases = [c for c in report["cases"] if c["status"] == "ok"]
    base = next((c for c in cases if _label(c) == "fp32"), None)
    rows = ["| variant | GFLOPs | p50 ms | speed-up vs fp32 | interleaved ms | speed-up | "
            "mAP50-95 | mAP50 | training s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ref = interleaved.get("fp32")
    for c in cases:
        label, acc, lat = _label(c), c["accuracy"] or {}, c["latency"] or {}
        speed = (f"{base['latency']['p50_ms'] / lat['p50_ms']:.2f}×"
                 if base and lat else "–")
        note = _note(c, "GFLOPs at").replace("GFLOPs at 320: ", "GFLOPs ")
        trained = _note(c, " epochs at ")
        seconds = trained.rsplit("(", 1)[-1].split(" s)")[0] if trained else "–"
        mine = interleaved.get(label)
        host = (f"{mine:.2f} | {ref / mine:.2f}×" if mine and ref else "– | –")
        rows.append(f"| {label} | {note} | {lat.get('p50_ms', float('nan')):.2f} | {speed} | "
                    f"{host} | {acc.get('map50_95', float('nan')):.3f} | "
                    f"{acc.get('map50', float('nan')):.3f} | {seconds} |")
    return "\n".join(rows)


def gains(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Per seed: (seed, mAP50-95 fine-tuned, mAP50-95 distilled)."""
    by_arm: dict[tuple[str, str], float] = {}
    for c in report["cases"]:
        label = _label(c)
        for arm in ("finetune", "distill"):
            opts = _step(label, arm)
            if opts and c["status"] == "ok" and c["accuracy"]:
                by_arm[(opts.get("seed", "0"), arm)] = c["accuracy"]["map50_95"]
    seeds = sorted({seed for seed, _ in by_arm})
    return [(s, by_arm[(s, "finetune")], by_arm[(s, "distill")]) for s in seeds
            if (s, "finetune") in by_arm and (s, "distill") in by_arm]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=0.5, help="prune ratio of the student")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--images", type=int, default=0, help="train images (0: all 600)")
    parser.add_argument("-n", "--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads of the interleaved latency (1)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of the interleaved latency (0: skip it)")
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--report", type=Path, help="tabulate this report.json, no new run")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = f":images={args.images}" if args.images else ""
    pipelines = variants(args.ratio, args.epochs, seeds, extra)
    output = args.output or Path(tempfile.mkdtemp(prefix="edgebench-distill-"))
    report = (json.loads(args.report.read_text()) if args.report
              else run(pipelines, args.iterations, args.repeats, output))
    interleaved = interleaved_ms(report, args.threads, args.rounds) if args.rounds else {}
    print(table(report, interleaved))
    rows = gains(report)
    for seed, finetuned, distilled in rows:
        print(f"seed {seed}: mAP50-95 fine-tuned {finetuned:.3f}, distilled {distilled:.3f}, "
              f"gain {100 * (distilled - finetuned):+.1f} points")
    if len(rows) > 1:
        print(f"median gain over {len(rows)} seeds: "
              f"{100 * statistics.median(d - f for _, f, d in rows):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
