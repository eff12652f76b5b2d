"""The output of native benchmark binaries, read: ``onnxruntime_perf_test``,
``benchmark_model`` (TFLite/LiteRT) and ``benchncnn``, as :class:`Summary` figures in
milliseconds, and a summary as the report's :class:`edgebench.records.LatencyStats`.

Pure text in, records out: the tools themselves are run by :mod:`edgebench.devices.native`.
The committed real outputs under ``tests/fixtures/native/`` are the oracle of these parsers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgebench.records import LatencyStats, PeakBasis
from edgebench.stats import median_ci_ranks

NS_PER_MS = 1e6


@dataclass(frozen=True)
class Summary:
    """A native tool's own numbers, normalised to milliseconds (``None``: not printed)."""

    tool: str
    count: int
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    peak_memory_bytes: int | None = None


class ParseError(ValueError):
    """The tool's output lacks a figure edgebench needs; the message names the figure and
    quotes the output's last lines."""


#
# The formats, with a committed real output of each under tests/fixtures/native/ (each with
# a .source file saying where it came from):
#
# benchmark_model   TF 1.x: "count=..." lines, "Average inference timings in us: Warmup: W,
#                   Init: I, no stats: A" (later "..., Inference: A"); TF 2.x: "Inference
#                   timings in us: Init: I, First inference: F, Warmup (avg): W, Inference
#                   (avg): A", memory as "Peak memory footprint (MB): init=.. overall=.."
#                   then "Memory footprint delta from the start of the tool (MB): ..." and,
#                   with --report_peak_memory_footprint, "Overall peak memory footprint
#                   (MB) via periodic monitoring: M"; newer builds prefix every line with
#                   "INFO: " and some add "p5=.. median=.. p95=.." to the statistics.
# onnxruntime_      2019: "Total iterations:N", "Average time cost:X ms", "Min Latency is
# perf_test         Xsec"; 2020 on: "Total inference requests: N", "Average inference time
#                   cost: X ms" (2024 on: "... cost total: X ms"), "Session creation time
#                   cost", "Peak working set size", with -s "Min Latency: X s", "P50 Latency:
#                   X s", ...; -m times and -m duration print the same summary.
# benchncnn         "NAME  min = X  max = Y  avg = Z" (ms) after a "loop_count = N" header
#                   (four or five "key = value" lines), maybe after GPU or CPU-frequency
#                   lines.
#
# Lines are compared with surrounding blanks and a TFLite log-level prefix removed; a line
# that matches no pattern is ignored. The figures a case needs (count and mean; for
# benchmark_model also min and max) are required: without them ParseError.

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_ABSURD = 1e12
_LOG_PREFIX = re.compile(r"^(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG):\s*")


def _lines(text: str) -> list[str]:
    """The output's lines: surrounding blanks and a leading ``INFO: `` (or another TFLite
    log level) removed."""
    return [_LOG_PREFIX.sub("", line.strip()) for line in text.splitlines()]


def _ending(text: str, count: int = 3) -> str:
    """The output's last non-blank lines, quoted, for an error message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the output was empty"
    return "the output ends with: " + " / ".join(
        repr(line if len(line) <= 160 else line[:157] + "...") for line in lines[-count:])


def _value(raw: str | None) -> float | None:
    if raw is None:
        return None
    value = float(raw)
    # no tool prints a time or count of 1e12 or more: such a value is garbage, not a figure
    return value if math.isfinite(value) and abs(value) < _ABSURD else None


def _last(pattern: str, lines: list[str], group: int = 1) -> float | None:
    """The number in ``group`` of the last line that starts with ``pattern``."""
    regex = re.compile(pattern)
    for line in reversed(lines):
        match = regex.match(line)
        if match:
            return _value(match.group(group))
    return None


def parse_perf_test_samples(text: str) -> list[float]:
    """Per-iteration latencies in seconds from ``onnxruntime_perf_test``'s result file.

    One line per run: ``model_name,seconds,peak_working_set,cpu_usage,run_index``; newer
    versions append a blank line and the ``Min Latency: ... s`` statistics, ignored here.
    """
    samples: list[float] = []
    for line in text.splitlines():
        parts = line.rsplit(",", 4)
        if len(parts) != 5:
            continue
        try:
            seconds = float(parts[1])
            int(parts[4])
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            samples.append(seconds)
    return samples


def parse_perf_test(stdout: str) -> Summary:
    """``onnxruntime_perf_test``'s console summary (latencies in s, averages in ms), of every
    version listed above. Min and max are its "Min/Max Latency" lines when printed (``-s``),
    else the mean (the runner takes its latency from the result file, not from these).

    Raises :class:`ParseError` without a request count or a mean."""
    lines = _lines(stdout)
    count = _last(r"Total inference requests:\s*" + _NUM, lines)
    for other in (r"Runs:\s*" + _NUM, r"Total iterations:\s*" + _NUM):
        count = count if count is not None else _last(other, lines)
    mean = _last(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms", lines)
    if mean is None:
        mean = _last(r"Average time cost:\s*" + _NUM + r"\s*ms", lines)
    if count is None or mean is None:
        missing = "request count ('Total inference requests')" if count is None \
            else "mean ('Average inference time cost')"
        raise ParseError(f"no {missing}; {_ending(stdout)}")
    if count < 1:
        raise ParseError(f"no timed run: 'Total inference requests' is {count:g}; "
                         f"{_ending(stdout)}")

    def latency_ms(name: str) -> float | None:
        seconds = _last(name + r" Latency(?::| is)\s*" + _NUM + r"\s*s", lines)
        return seconds * 1e3 if seconds is not None else None

    lo, hi = latency_ms("Min"), latency_ms("Max")
    init = _last(r"Session creation time cost:\s*" + _NUM + r"\s*s", lines)
    peak = _last(r"Peak working set size:\s*" + _NUM, lines)
    return Summary(
        tool="onnxruntime_perf_test", count=int(count),
        min_ms=lo if lo is not None else mean, max_ms=hi if hi is not None else mean,
        mean_ms=mean, median_ms=latency_ms("P50"), p90_ms=latency_ms("P90"),
        p99_ms=latency_ms("P99"), init_ms=init * 1e3 if init is not None else None,
        first_ms=_last(r"First inference time cost:\s*" + _NUM + r"\s*ms", lines),
        peak_memory_bytes=int(peak) if peak is not None else None)


_TFLITE_STAT = re.compile(
    r"count=(\d+)(?: first=" + _NUM + r")? curr=" + _NUM + r"(\(all same\))?"
    r"(?: min=" + _NUM + r" max=" + _NUM + r" avg=" + _NUM + r" std=" + _NUM + r")?"
    r"(?: p5=" + _NUM + r" median=" + _NUM + r" p95=" + _NUM + r")?")


def parse_benchmark_model(stdout: str) -> Summary:
    """TFLite/LiteRT ``benchmark_model`` output (microseconds), of every version listed above.

    The timed loop's statistics are the ``count=...`` line after the second "Running
    benchmark for ..." line (the first announces the warm-up; the op-profiling summary's
    "Timings (microseconds): count=..." line is another measurement and is not used). An
    output without "Running benchmark" lines (a bare statistics line) uses its last
    ``count=`` line. Peak memory is "Overall peak memory footprint ... via periodic
    monitoring" when printed, else the ``overall=`` of the memory-footprint line (the tool's
    growth in RSS from its start, MiB).

    Raises :class:`ParseError` when the timed loop's statistics are missing (the tool stopped
    before or during it) or unreadable; the message quotes the output's last lines.
    """
    lines = _lines(stdout)
    stats = [(i, m) for i, m in ((i, _TFLITE_STAT.match(line)) for i, line in enumerate(lines))
             if m]
    starts = [i for i, line in enumerate(lines) if line.startswith("Running benchmark for")]
    if len(starts) == 1:
        raise ParseError(f"no timed loop: only the warm-up's 'Running benchmark' line; "
                         f"{_ending(stdout)}")
    if len(starts) >= 2:
        stats = [(i, m) for i, m in stats if i > starts[1]][:1]
    if not stats:
        raise ParseError(f"no 'count=... min=... max=... avg=...' line for the timed loop; "
                         f"{_ending(stdout)}")
    m = stats[-1][1]
    count, curr = int(m.group(1)), _value(m.group(3))
    lo: float | None
    hi: float | None
    mean: float | None
    std: float | None
    if m.group(4) and curr is not None:  # "(all same)": every run took `curr`
        lo = hi = mean = curr
        std = 0.0
    elif m.group(5) is not None:
        lo, hi, mean, std = (_value(m.group(k)) for k in (5, 6, 7, 8))
    elif count == 1 and curr is not None:
        lo = hi = mean = curr
        std = 0.0
    else:
        raise ParseError(f"unreadable statistics line {m.group(0)!r}; {_ending(stdout)}")
    if lo is None or hi is None or mean is None or count < 1:
        raise ParseError(f"unreadable statistics line {m.group(0)!r}; {_ending(stdout)}")
    median = _value(m.group(10))
    init = _last(r"(?:Average )?[Ii]nference timings in us:.*?\bInit: " + _NUM, lines)
    first = _last(r"Inference timings in us:.*?\bFirst inference: " + _NUM, lines)
    peak_mb = _last(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM,
                    lines)
    if peak_mb is None:
        peak_mb = _last(r"(?:Memory footprint delta from the start of the tool|Peak memory "
                        r"footprint) \(MB\): init=" + _NUM + r" overall=" + _NUM, lines, 2)
    us = 1e-3
    return Summary(
        tool="benchmark_model", count=count, min_ms=lo * us, max_ms=hi * us, mean_ms=mean * us,
        std_ms=std * us if std is not None else None,
        median_ms=median * us if median is not None else None,
        init_ms=init * us if init is not None else None,
        first_ms=first * us if first is not None else None,
        peak_memory_bytes=int(peak_mb * 1024 * 1024) if peak_mb is not None else None)


_NCNN_LINE = re.compile(r"(\S.*?)\s+min =\s*" + _NUM + r"\s+max =\s*" + _NUM
                        + r"\s+avg =\s*" + _NUM)


def parse_benchncnn(stdout: str, loop_count: int | None = None) -> Summary:
    """``benchncnn`` output: ``NAME  min = X  max = Y  avg = Z`` in milliseconds (the last
    such line: edgebench runs one model); the count is its ``loop_count = N`` header, else
    ``loop_count``. Raises :class:`ParseError` without such a line, quoting the output's
    last lines."""
    lines = _lines(stdout)
    found = [m for m in map(_NCNN_LINE.match, lines) if m]
    figures = [_value(found[-1].group(k)) for k in (2, 3, 4)] if found else []
    if not found:
        raise ParseError(f"no 'NAME  min = ...  max = ...  avg = ...' line; {_ending(stdout)}")
    lo, hi, mean = figures
    if lo is None or hi is None or mean is None:
        raise ParseError(f"unreadable line {found[-1].group(0)!r}; {_ending(stdout)}")
    declared = _last(r"loop_count = " + _NUM, lines)
    count = int(declared) if declared is not None else (loop_count or 0)
    if count < 1:
        raise ParseError(f"no run count: no 'loop_count = N' line and no loop count given; "
                         f"{_ending(stdout)}")
    return Summary(tool="benchncnn", count=count, min_ms=lo, max_ms=hi, mean_ms=mean)


def summary_latency(summary: Summary, gflops: float | None, peak_gflops: float | None,
                    peak: PeakBasis | None = None) -> tuple[LatencyStats, tuple[str, ...]]:
    """LatencyStats from a summary-only tool, and the note that says what was filled in.
    The peak share is of ``peak`` (the case's, :func:`edgebench.peak.case_peak`) when
    given, else of ``peak_gflops``."""
    if peak is not None:
        peak_gflops = peak.gops
    p50 = summary.median_ms if summary.median_ms is not None else summary.mean_ms
    p90 = summary.p90_ms if summary.p90_ms is not None else summary.max_ms
    p99 = summary.p99_ms if summary.p99_ms is not None else summary.max_ms
    filled = [name for name, value in (("p50 (its mean)", summary.median_ms),
                                       ("p90 and p99 (its max, an upper bound)", summary.p99_ms))
              if value is None]
    note = (f"latency from {summary.tool}'s own summary of {summary.count} runs: no "
            "per-iteration samples" + (f"; {'; '.join(filled)}" if filled else "")
            + ("; median interval = [min, max]" if summary.count >= 1
               and median_ci_ranks(summary.count) else
               f"; no median interval: [min, max] of {summary.count} runs covers under 95 %"))
    gflops_per_s = gflops / (p50 / 1e3) if gflops and p50 > 0 else None
    return LatencyStats(
        samples_ns=(), warmup_ns=(),
        init_ns=int((summary.init_ms or 0.0) * NS_PER_MS),
        first_inference_ns=int((summary.first_ms or 0.0) * NS_PER_MS),
        n=summary.count, min_ms=summary.min_ms, p50_ms=p50, p90_ms=p90, p99_ms=p99,
        mean_ms=summary.mean_ms, std_ms=summary.std_ms if summary.std_ms is not None else 0.0,
        max_ms=summary.max_ms, median_ci95_ms=(summary.min_ms, summary.max_ms)
        if median_ci_ranks(summary.count) else None,
        throughput_ips=1e3 / p50 if p50 > 0 else 0.0, gflops_per_s=gflops_per_s,
        peak_share=gflops_per_s / peak_gflops if gflops_per_s and peak_gflops else None,
        peak=peak if gflops_per_s else None,
    ), (note,)
