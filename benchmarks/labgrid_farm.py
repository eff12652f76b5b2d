"""Scheduling across labgrid places: wall time of ``count=2`` against the total case time ÷ 2.

Starts the test suite's real labgrid lab (tests/labgrid_lab.py: a ``labgrid-coordinator``,
two ``labgrid-exporter`` processes, two private sshd "boards" on this host), then runs, in
interleaved rounds, the issue-16 done-when command::

    edgebench run -d "labgrid://?board=shapes-pi&count=2" -b onnxruntime --threads 1,2

and the same matrix at ``count=1``. For every run it prints the wall time, the sum of the
cases' own wall times (``CaseResult.wall_s``: load, warm-up, timed loop and accuracy pass on the
board), the case phase (first case start to last case end), the ratios ``wall / (sum / 2)``
and ``case phase / (sum / 2)``, and the run's time outside the cases: from process start to
the first case (start-up, planning, reserving, connecting, probing) and from the last case's
end to exit (leaving the boards, the report); then the medians over the rounds.

    python benchmarks/labgrid_farm.py [--rounds 3] [-- EXTRA edgebench ARGS]

Both boards share this machine's CPUs, so two cases at once slow each other; on real boards
each case has its own CPU. Needs ``edgebench[labgrid,onnxruntime]`` and ``sshd``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"


def _case_spans(report: dict[str, Any]) -> list[tuple[float, float]]:
    """Each case's (start, end), epoch s (``started_at`` is to the millisecond)."""
    spans = []
    for case in report["cases"]:
        if case.get("started_at") and case.get("wall_s") is not None:
            start = datetime.fromisoformat(case["started_at"]).timestamp()
            spans.append((start, start + case["wall_s"]))
    return spans


def _run(lab: Any, uri: str, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edgebench.cli", "run", "-o", str(out), "-d", uri,
           "-b", "onnxruntime", "--threads", "1", "--threads", "2", *extra]
    t0_epoch, started = time.time(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **lab.env}, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"edgebench failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(next(out.glob("*/report.json")).read_text())
    statuses = [c["status"] for c in report["cases"]]
    if set(statuses) != {"ok"}:
        raise SystemExit(f"not every case ok: {statuses}")
    total = sum(c["wall_s"] for c in report["cases"])
    places = sorted({c["device"]["place"]["name"] for c in report["cases"]})
    spans = _case_spans(report)
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return {"wall": wall, "sum": total, "phase": last - first, "places": places,
            "before": first - t0_epoch, "after": t0_epoch + wall - last,
            "acquired": lab.acquired_places()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more edgebench run arguments (after --)")
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from labgrid_lab import LabgridLab  # the tests' own lab: real coordinator and exporters
    from test_labgrid_device import board_options

    with tempfile.TemporaryDirectory(prefix="edgebench-labgrid-bench-") as tmp:
        root = Path(tmp)
        lab = LabgridLab(root / "lab").start()
        try:
            options = board_options(lab, root)
            rows: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for r in range(args.rounds):
                for count in (2, 1):
                    uri = f"labgrid://?board=shapes-pi&count={count}&{options}"
                    row = _run(lab, uri, root / f"out-{r}-{count}", args.extra)
                    rows[count].append(row)
                    half = row["sum"] / 2
                    print(f"round {r + 1} count={count}: wall {row['wall']:.1f} s, cases "
                          f"{row['sum']:.1f} s in all, case phase {row['phase']:.1f} s, "
                          f"wall/(sum/2) {row['wall'] / half:.2f}, "
                          f"phase/(sum/2) {row['phase'] / half:.2f}, before the first case "
                          f"{row['before']:.2f} s, after the last {row['after']:.2f} s, "
                          f"places {row['places']}, "
                          f"acquired after: {row['acquired'] or 'none'}", flush=True)
            print()
            print("| count | wall s | case sum s | case phase s | wall ÷ (sum ÷ 2) "
                  "| phase ÷ (sum ÷ 2) | before the first case s | after the last case s |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for count in (2, 1):
                med = {k: statistics.median(row[k] for row in rows[count])
                       for k in ("wall", "sum", "phase", "before", "after")}
                ratio = statistics.median(row["wall"] / (row["sum"] / 2) for row in rows[count])
                phase = statistics.median(row["phase"] / (row["sum"] / 2)
                                          for row in rows[count])
                print(f"| {count} | {med['wall']:.1f} | {med['sum']:.1f} | {med['phase']:.1f} "
                      f"| {ratio:.2f} | {phase:.2f} | {med['before']:.2f} "
                      f"| {med['after']:.2f} |")
            print(f"\nmedians of {args.rounds} interleaved rounds; load average "
                  f"{os.getloadavg()[0]:.2f} at the end")
        finally:
            lab.close()


if __name__ == "__main__":
    main()
