"""Is the regression gate trustworthy on this machine? Measured, not assumed.

Runs the same case (embedded model, ONNX Runtime, local) again and again, in rounds of
three runs: A, A' (identical) and B (the runner made 10 % slower with the agent's
test-only ``test_slowdown``). Reports

(a) the coefficient of variation of the run medians (A and A' runs),
   each run measuring the case in ``--repeats`` runner processes (the gate tests on them),
(b) A/A: how many of the A vs A' comparisons the gate flags (goal 0 of N),
(c) A/B: how many of the A vs B comparisons it calls a regression (goal N of N).

    python benchmarks/gate_validity.py [--rounds 10] [--iterations 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from edgebench.compare import Thresholds, Verdict, compare_case, match_key
from edgebench.config import DEFAULT_MODEL, Matrix, make_settings
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.records import CaseResult
from edgebench.runner import Session


def one_run(matrix: Matrix, out: Path, slowdown: float) -> CaseResult:
    pm = make_plugin_manager()
    session = Session(matrix, pm, collect_registry(pm),
                      test_options={"test_slowdown": slowdown} if slowdown else None)
    out.mkdir(parents=True)
    try:
        (result,) = session.run(out).cases
    finally:
        session.close()
    assert result.latency is not None, result.reason
    return result


def _quantile_ratios(a: CaseResult, a2: CaseResult, b: CaseResult) -> str:
    """A'/A and B/A at a few quantiles: which statistic is steadiest between runs."""
    import numpy as np

    def q(r: CaseResult, p: float) -> float:
        return float(np.percentile(r.latency.samples_ns, p))  # type: ignore[union-attr]

    return ", ".join(f"p{p}: A'/A {q(a2, p) / q(a, p):.3f} B/A {q(b, p) / q(a, p):.3f}"
                     for p in (5, 25, 50))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--slowdown", type=float, default=0.10)
    parser.add_argument("--repeats", type=int, default=5,
                        help="runner processes per run; the gate tests on their medians")
    args = parser.parse_args()
    matrix = Matrix(models=(DEFAULT_MODEL,), backends=("onnxruntime",), accuracy=None,
                    settings=make_settings(warmup=args.warmup, iterations=args.iterations,
                                           threads=args.threads, repeats=args.repeats))
    thresholds = Thresholds()
    medians, aa, ab = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            a = one_run(matrix, Path(tmp) / f"a{i}", 0.0)
            a2 = one_run(matrix, Path(tmp) / f"a2{i}", 0.0)
            b = one_run(matrix, Path(tmp) / f"b{i}", args.slowdown)
            medians += [a.latency.p50_ms, a2.latency.p50_ms]  # type: ignore[union-attr]
            same = compare_case(match_key(a), a, a2, thresholds)
            slow = compare_case(match_key(a), a, b, thresholds)
            aa.append(same)
            ab.append(slow)
            q = _quantile_ratios(a, a2, b)
            print(f"round {i + 1} ({same.test}): A {a.latency.p50_ms:.3f} ms, A' "  # type: ignore[union-attr]
                  f"{a2.latency.p50_ms:.3f} ms (ratio {same.ratio:.3f}, p {same.p_value:.1e}, "  # type: ignore[union-attr]
                  f"{same.verdict.value}), B {b.latency.p50_ms:.3f} ms "  # type: ignore[union-attr]
                  f"(ratio {slow.ratio:.3f}, p {slow.p_value:.1e}, {slow.verdict.value}); "
                  f"{q}", flush=True)
    cv = statistics.stdev(medians) / statistics.mean(medians)
    flagged = sum(c.verdict is not Verdict.UNCHANGED for c in aa)
    caught = sum(c.verdict is Verdict.REGRESSED for c in ab)
    print(f"\n(a) CV of the run medians: {cv * 100:.2f} % over {len(medians)} runs "
          f"({args.repeats} repeats x {args.iterations} iterations each, threads "
          f"{args.threads})")
    print(f"(b) A/A: {flagged} of {len(aa)} identical comparisons flagged (goal 0)")
    print(f"(c) A/B: {caught} of {len(ab)} +{args.slowdown * 100:.0f} % slowdowns caught "
          f"(goal {len(ab)})")
    print(f"gate: latency > {thresholds.latency * 100:g} %, significant (Welch on repeat "
          f"medians p < {thresholds.alpha_repeats:g}, or Mann-Whitney on samples p < "
          f"{thresholds.alpha:g} with fewer than 3 repeats), ratio 95 % CI beyond 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
