"""Repeats: one case measured in several runner processes, spread over the run.

Run-to-run noise on a shared machine (another process, a thermal swing) moves a whole
run's samples together; no test on the samples of one run can see it. Measuring each case
``repeats`` times, interleaved with the other cases (every other round backwards,
A B B A A B ..., so a drift of the machine over the run falls on all cases alike), gives
one median per repeat: their spread is the between-run noise, and
:mod:`edgebench.compare` tests on them.
"""

from __future__ import annotations

import dataclasses

from .load import worst
from .records import CaseResult, MemoryStats, Status
from .stats import latency_stats


def _max(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def combine(previous: CaseResult | None, new: CaseResult, *, peak_gflops: float | None = None
            ) -> CaseResult:
    """``previous`` (the repeats so far) plus one more repeat.

    Samples are pooled; ``repeat_medians_ms`` gets one median per repeat; memory keeps the
    highest readings, the load the busiest repeat's; the first repeat's accuracy and
    first-inference numbers stay. A failed repeat fails the case but keeps what the other
    repeats measured. The peak share is of the first repeat's peak (``LatencyStats.peak``:
    the case's threads and precision), ``peak_gflops`` only where it recorded none.
    """
    if previous is None:
        if new.latency is None:
            return new
        cpu = new.latency.cpu_p50_ms
        return dataclasses.replace(new, latency=dataclasses.replace(
            new.latency, repeat_medians_ms=(new.latency.p50_ms,),
            repeat_cpu_medians_ms=(cpu,) if cpu is not None else ()))
    if new.status is not Status.OK or new.latency is None or previous.latency is None:
        if previous.status is Status.OK and new.status is not Status.OK:
            n = len(previous.latency.repeat_medians_ms) + 1 if previous.latency else 2
            return dataclasses.replace(previous, status=new.status,
                                       reason=f"repeat {n}: {new.reason}",
                                       notes=(*previous.notes, *new.notes))
        return previous
    old, cur = previous.latency, new.latency
    pooled = latency_stats(
        (*old.samples_ns, *cur.samples_ns), warmup_ns=old.warmup_ns, init_ns=old.init_ns,
        first_inference_ns=old.first_inference_ns,
        gflops=previous.artifact.gflops if previous.artifact else None,
        peak_gflops=peak_gflops, peak=old.peak,
        cpu_samples_ns=(*old.cpu_samples_ns, *cur.cpu_samples_ns)
        if old.cpu_samples_ns and cur.cpu_samples_ns else (), batch=old.batch)
    cpu_medians = (*old.repeat_cpu_medians_ms, cur.cpu_p50_ms) \
        if old.repeat_cpu_medians_ms and cur.cpu_p50_ms is not None else ()
    latency = dataclasses.replace(pooled, repeat_medians_ms=(*old.repeat_medians_ms,
                                                             cur.p50_ms),
                                  repeat_cpu_medians_ms=cpu_medians)
    memory = previous.memory
    if memory is not None and new.memory is not None:
        memory = MemoryStats(
            rss_baseline_bytes=memory.rss_baseline_bytes,
            rss_before_load_bytes=memory.rss_before_load_bytes,
            rss_after_load_bytes=_max(memory.rss_after_load_bytes,
                                      new.memory.rss_after_load_bytes),
            load_delta_bytes=_max(memory.load_delta_bytes, new.memory.load_delta_bytes),
            peak_rss_bytes=_max(memory.peak_rss_bytes, new.memory.peak_rss_bytes))
    notes = tuple(dict.fromkeys((*previous.notes, *new.notes)))
    wall = (previous.wall_s or 0.0) + (new.wall_s or 0.0)
    return dataclasses.replace(previous, latency=latency, memory=memory, notes=notes,
                               load=worst(previous.load, new.load),
                               temperature_after_c=new.temperature_after_c, wall_s=wall)
