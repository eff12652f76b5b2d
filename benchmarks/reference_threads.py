"""Float reference threads: the PyTorch and the ONNX reference at 1, 2 and the default thread
count, quiet and loaded.

Each measurement is the harness's own computation, uncached, on the embedded model's
validation images at 320 px: :func:`edgebench.pipeline.torch_reference` (the
``ultralytics_export --predict`` subprocess: import torch and Ultralytics, load the
``.pt``, run every image; ``--threads N`` or torch's default) and
:func:`edgebench.references.onnx_reference` (the onnxruntime runner on the local device,
graph optimisations off; ``intra_op_num_threads`` N or ONNX Runtime's default). For each
load (N Python busy-loop processes started next to it), ``--rounds`` rounds; in each round
every (reference, threads) runs once, in an order rotated from round to round
(interleaved). Prints one Markdown table: median wall seconds, min-max, and the ratio to
the default's median in the same load, with the load averages (``os.getloadavg``) before
each load.

    python benchmarks/reference_threads.py [--rounds 3] [--loads 0,1,2] [--images 100]

Needs ``edgebench[export,onnxruntime]``. Uses ``$EDGEBENCH_CACHE`` (set it to a private dir)
for the prepared tensors only; nothing is read from the reference cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgebench.config import ASSETS
from edgebench.datasets import embedded_val_yaml, load_dataset
from edgebench.evaluation import prepare_batch
from edgebench.pipeline import cache_root, load_source, torch_reference
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.references import onnx_reference


def _busy(stop: Any) -> None:
    while not stop.is_set():
        pass


def _loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", default="0,1,2", help="busy-loop processes, comma-separated")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--kinds", default="pytorch,onnxruntime")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgebench-refthreads-"))
    pt = work / "shapes-yolov8n.pt"
    shutil.copy2(ASSETS / "shapes-yolov8n.pt", pt)  # never run from harness/assets
    pt_source, onnx_source = load_source(pt), load_source(ASSETS / "shapes-yolov8n.onnx")
    dataset = load_dataset(embedded_val_yaml(), limit=args.images)
    batch = prepare_batch(dataset, "images", (320, 320), cache_root())
    registry = collect_registry(make_plugin_manager())

    runs: dict[str, Callable[[int | None], object]] = {
        "pytorch": lambda t: torch_reference(pt_source, batch.tensors, threads=t),
        "onnxruntime": lambda t: onnx_reference(registry, onnx_source, batch, threads=t,
                                                timeout_s=600),
    }
    kinds = [k for k in args.kinds.split(",") if k]
    settings = [(kind, threads) for kind in kinds for threads in (1, 2, None)]
    rows = ["| load (busy loops) | load avg before | reference | threads | median s "
            "| min-max s | / default |", "|---|---|---|---|---:|---:|---:|"]
    for busy in (int(b) for b in args.loads.split(",")):
        before = _loadavg()
        stop = multiprocessing.Event()
        procs = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(busy)]
        for p in procs:
            p.start()
        times: dict[tuple[str, int | None], list[float]] = {s: [] for s in settings}
        try:
            time.sleep(1.0 if busy else 0.0)
            for r in range(args.rounds):
                order = settings[r % len(settings):] + settings[:r % len(settings)]
                for kind, threads in order:
                    t0 = time.perf_counter()
                    runs[kind](threads)
                    times[(kind, threads)].append(time.perf_counter() - t0)
                    print(f"load {busy} round {r} {kind} threads={threads}: "
                          f"{times[(kind, threads)][-1]:.2f} s", flush=True)
        finally:
            stop.set()
            for p in procs:
                p.join()
        for kind, threads in settings:
            got = times[(kind, threads)]
            default = statistics.median(times[(kind, None)])
            med = statistics.median(got)
            rows.append(f"| {busy} | {before} | {kind} | {threads or 'default'} | {med:.2f} "
                        f"| {min(got):.2f}-{max(got):.2f} | {med / default:.2f} |")
    print("\n".join(rows))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
