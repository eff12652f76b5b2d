"""How much does the harness add to what it measures?

Compares, side by side and interleaved (A B A B ...), the median ONNX Runtime latency of the
embedded model as reported by ``edgebench run`` (device-side runner in its own process)
with a bare ``time.perf_counter_ns()`` loop around ``session.run`` in this process, same
model, same input tensor, same thread setting. Target: within 1 %.

    python benchmarks/timing_overhead.py [--rounds 5] [--iterations 200] [--threads 1]

The machine is noisy: only the ratio of medians measured in the same rounds means anything.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def bare_median_ms(model: Path, inputs: Path, iterations: int, warmup: int,
                   threads: int | None) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model), sess_options=so,
                                   providers=["CPUExecutionProvider"])
    with np.load(inputs) as data:
        feeds = {k: data[k] for k in data.files}
    names = [o.name for o in session.get_outputs()]
    for _ in range(warmup):
        session.run(names, feeds)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        session.run(names, feeds)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def harness_median_ms(session_factory, out: Path) -> float:  # type: ignore[no-untyped-def]
    session = session_factory()
    out.mkdir(parents=True)
    try:
        report = session.run(out)
    finally:
        session.close()
    (case,) = report.cases
    assert case.latency is not None, case.reason
    return case.latency.p50_ms


def main() -> int:
    from edgebench.config import DEFAULT_MODEL, load_matrix
    from edgebench.plugin_manager import collect_registry, make_plugin_manager
    from edgebench.runner import Session

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    matrix = load_matrix({"models": (DEFAULT_MODEL,), "backends": ("onnxruntime",),
                          "warmup": args.warmup, "iterations": args.iterations,
                          "threads": (args.threads,) if args.threads else None,
                          "accuracy": False})
    pm = make_plugin_manager()
    registry = collect_registry(pm)

    def factory() -> Session:
        return Session(matrix, pm, registry)

    probe = factory()
    (plan,) = probe.plan(probe.sources())
    assert plan.batch is not None
    inputs = Path(tempfile.mkdtemp()) / "inputs.npz"
    inputs.write_bytes(plan.batch.timing_input.read_bytes())  # the tensor the harness pushes
    probe.close()

    harness, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            # ABBA order, so that a drift within a round favours neither side
            def measure_harness(i: int = i) -> None:
                harness.append(harness_median_ms(factory, Path(tmp) / f"h{i}"))

            def measure_bare() -> None:
                bare.append(bare_median_ms(DEFAULT_MODEL, inputs, args.iterations,
                                           args.warmup, args.threads))

            for step in ((measure_harness, measure_bare) if i % 2 == 0
                         else (measure_bare, measure_harness)):
                step()
            print(f"round {i + 1}: harness p50 {harness[-1]:.3f} ms, "
                  f"bare loop p50 {bare[-1]:.3f} ms, ratio {harness[-1] / bare[-1]:.4f}")
    ratios = [h / b for h, b in zip(harness, bare)]
    print(f"median of per-round ratios (harness / bare): {statistics.median(ratios):.4f} "
          f"({(statistics.median(ratios) - 1) * 100:+.2f} %), "
          f"harness median {statistics.median(harness):.3f} ms, "
          f"bare median {statistics.median(bare):.3f} ms, "
          f"{args.rounds} rounds x {args.iterations} iterations, threads {args.threads or 'auto'}")
    loop_ns = timing_loop_cost_ns()
    print(f"the runner's timing loop itself (a no-op in place of inference): {loop_ns:.0f} ns "
          f"per sample = {loop_ns / (statistics.median(bare) * 1e6) * 100:.4f} % of the "
          "median inference")
    return 0


def timing_loop_cost_ns() -> float:
    """Median cost of one iteration of the device agent's timed loop around a no-op."""
    from edgebench.agent import edgebench_agent as agent

    return float(statistics.median(agent._timed_loop(lambda: None, 200_000, 0.0, 0.0)[0]))


if __name__ == "__main__":
    raise SystemExit(main())
