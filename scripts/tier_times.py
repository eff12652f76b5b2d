"""Measure a test tier on a busy box and estimate its wall time on a quiet one (Linux only).

As a pytest plugin it appends one JSON line per test to ``$TIER_TIMES_OUT`` (default
``tier-times.jsonl``): wall time, CPU time of pytest itself and of its reaped child
processes, and the main thread's time on a CPU and waiting runnable for one (run-queue
delay, from ``/proc/self/task/<tid>/schedstat``); all in seconds::

    PYTHONPATH=scripts .venv/bin/python -m pytest -m "not slow" -p tier_times

As a script it sums such a file::

    python scripts/tier_times.py tier-times.jsonl

A test's quiet-box time is estimated as its wall time less the main thread's run-queue delay,
less its child processes' CPU time times the main thread's delay-per-CPU-second (the same
contention assumed for the children), and never under half its CPU time (2 vCPUs). Not seen:
the CPU of processes that detach from pytest (the adb server). See docs/testing.md.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_MAIN_TID = threading.get_native_id()


def _snapshot() -> tuple[float, float, float, float, float]:
    """(monotonic s, own CPU s, children CPU s, main thread on-CPU s, run-queue delay s)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    on_cpu, waited, _ = Path(f"/proc/self/task/{_MAIN_TID}/schedstat").read_text().split()
    return (time.monotonic(), own.ru_utime + own.ru_stime,
            children.ru_utime + children.ru_stime, int(on_cpu) / 1e9, int(waited) / 1e9)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    before = _snapshot()
    yield
    wall, own, children, on_cpu, waited = (b - a for a, b in zip(before, _snapshot()))
    record = {"id": item.nodeid, "wall": wall, "cpu_self": own, "cpu_children": children,
              "main_run": on_cpu, "main_rq": waited,
              "markers": sorted({m.name for m in item.iter_markers()})}
    with open(os.environ.get("TIER_TIMES_OUT", "tier-times.jsonl"), "a") as out:
        out.write(json.dumps(record) + "\n")


def summary(rows: list[dict[str, Any]]) -> str:
    """The totals and the quiet-box estimate of one run's records, as text."""
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu_self"] + r["cpu_children"] for r in rows)
    on_cpu = sum(r["main_run"] for r in rows)
    delay_per_cpu_s = sum(r["main_rq"] for r in rows) / on_cpu if on_cpu else 0.0
    quiet = sum(max(r["wall"] - r["main_rq"] - delay_per_cpu_s * r["cpu_children"],
                    (r["cpu_self"] + r["cpu_children"]) / 2) for r in rows)
    return (f"{len(rows)} tests: {wall:.0f} s of test wall time, {cpu:.0f} s CPU; "
            f"quiet-box estimate {quiet:.0f} s ({quiet / 60:.1f} min)")


if __name__ == "__main__":
    lines = Path(sys.argv[1]).read_text().splitlines()
    print(summary([json.loads(line) for line in lines if line]))
