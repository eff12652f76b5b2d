"""edgebench vs Ultralytics ``benchmark()``: wall time cold and warm, mAP, and where
edgebench's time goes (issue 19).

Both tools get the same ``.pt`` (a copy of ``harness/assets/shapes-yolov8n.pt`` in a
temporary directory: Ultralytics writes its exports next to it), the same formats (ONNX,
LiteRT, ncnn; edgebench backends ``onnxruntime,litert,ncnn``), the same images (the
embedded val split, ``edgebench.datasets.embedded_val_yaml()``, 100 images, passed to both
as that ``data.yaml``), 320 px, CPU. Each tool runs as its own subprocess in Ultralytics'
offline environment (``edgebench.ultralytics_offline.ultralytics_offline_env()``), and its
wall time is that subprocess's, from start to exit (Python start-up and imports included).

- **Ultralytics**: one process that calls ``ultralytics.utils.benchmarks.benchmark(
  model=PT, data=YAML, imgsz=320, device="cpu", format=F)`` for each format in turn (one
  torch import, as a user's script would), each exporting, predicting once and running
  ``val()`` on the images.
- **edgebench**: ``edgebench run -m PT --imgsz 320 -b onnxruntime,litert,ncnn --data YAML``
  at its defaults (100 timed iterations after 10 warm-up, accuracy on every image).

Cold and warm:

- *cold*: a fresh copy of the ``.pt`` in a fresh directory for each tool, and a fresh
  ``EDGEBENCH_CACHE`` for edgebench: both export everything.
- *warm*: the same run again on the same directory. edgebench keeps its cache (exports,
  references, evaluation tensors). Ultralytics has no cache: ``benchmark()`` re-exports
  every format over the exported files it left next to the ``.pt``; its warm run reuses only
  what the OS and its dataset label cache (``labels/val.cache``) keep.

A round runs Ultralytics cold, edgebench cold, Ultralytics warm, edgebench warm; every other
round puts edgebench first in each pair, so a drift of the (shared) machine falls on both.
The figures are the per-round ratios edgebench / Ultralytics, their median and their spread
(min–max), with the 1-minute load average sampled during every run.

Where edgebench's time goes: its stderr is not a terminal, so it logs one timestamped
line per step (``harness/progress.py``); this script stamps each line as it arrives
(monotonic clock, ms) and splits the run's wall time into phases that sum to it:
start-up + planning, host steps (exports, references, evaluation tensors: each host
interval is given to the cache entry, ``EDGEBENCH_CACHE/<kind>/<key>``, finished next in
it), per case the runner's load, warm-up, timed loop and the rest of the runner process
(its start-up, the batch load, the accuracy inference pass), the host's accuracy
evaluation, time between cases, report writing and exit. The share of the wall time
outside the runners (wall minus the union of the runner processes' intervals, from the
``runner started`` line to the runner's phase lines) is issue 19's "a warm default
``edgebench run`` spends less than 30 % of its wall time outside the runners".

CPU time: each run's user + system seconds, its whole process tree (export workers,
converters, runners: ``getrusage(RUSAGE_CHILDREN)`` before and after, one run at a time).
No schedule finishes a run sooner than its CPU seconds ÷ the cores, so edgebench's cold CPU
÷ cores ÷ Ultralytics' cold wall is the lowest cold ratio any overlap can reach here.

    .venv/bin/python benchmarks/vs_ultralytics.py [--rounds 3] [--json out.json]
    .venv/bin/python benchmarks/vs_ultralytics.py --edgebench-only   # no Ultralytics runs
    .venv/bin/python benchmarks/vs_ultralytics.py --quick            # a fast check (~1 min)

Needs ``edgebench[onnxruntime,litert,ncnn,export]`` (torch, Ultralytics, litert-torch,
pnnx). Progress goes to stderr, the Markdown tables to stdout. Exit 0 when every run
succeeded, 1 when a run failed (its stderr tail is printed), 2 on a wrong argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgebench.agent.edgebench_agent import usable_cores
from edgebench.progress import QUIET_S  # a host step's line comes this long after it began

REPO = Path(__file__).resolve().parent.parent
PT = REPO / "harness" / "assets" / "shapes-yolov8n.pt"
IMGSZ = 320
FORMATS = {"onnxruntime": "onnx", "litert": "litert", "ncnn": "ncnn"}
"""edgebench backend -> Ultralytics ``benchmark(format=...)`` (8.4 names LiteRT ``litert``)."""
MAP_TOLERANCE = 0.002
"""Issue 19: edgebench's and Ultralytics' mAP50-95 must agree to this."""
OUTSIDE_TARGET = 0.30
"""Issue 19: a warm run spends less than this share of its wall time outside the runners."""
TIMEOUT_S = 3600.0
SKIP_CACHE_KINDS = frozenset({"locks", "ultralytics"})
"""Cache dirs whose entries are not a piece of work (a lock file; Ultralytics' settings)."""

ULTRALYTICS_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from ultralytics import __version__
from ultralytics.utils.benchmarks import benchmark
out = {"version": __version__, "import_s": time.perf_counter() - t0, "formats": {}}
pt, data, imgsz = sys.argv[1], sys.argv[2], int(sys.argv[3])
for fmt in sys.argv[4].split(","):
    t = time.perf_counter()
    df = benchmark(model=pt, data=data, imgsz=imgsz, device="cpu", format=fmt)
    row = {str(k).strip(): v for k, v in df.row(0, named=True).items()}
    out["formats"][fmt] = {"wall_s": time.perf_counter() - t, "row": row}
print("VS_ULTRALYTICS " + json.dumps(out), flush=True)
"""

LINE = re.compile(r"^(\d\d:\d\d:\d\d) \[(\d+)/(\d+)\] (.*)$")
CASE = re.compile(r"^(?P<label>.*? t\S+ @\S+(?: repeat \d+/\d+)?): (?P<what>.*)$")
RUNNER_PHASES = ("load", "warm-up", "timed loop")
FINISHED = re.compile(r"^edgebench: finished in ([\d.]+) s")


class BenchError(Exception):
    """A run failed or gave no usable figure; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Line:
    """One stderr line of a run, stamped on arrival: ``t`` s after the process started."""

    t: float
    text: str


@dataclasses.dataclass(frozen=True)
class Captured:
    """One subprocess run: its lines, wall time (s, start to exit), exit code, the epoch
    time it started (to place cache entries' mtimes on its clock), the 1-minute load
    averages sampled while it ran, and the CPU time (user + system, s) of it and every
    process under it that was waited for (``getrusage(RUSAGE_CHILDREN)`` before and after:
    one run at a time, so the difference is this run's tree; export workers, converters and
    runners included)."""

    argv: tuple[str, ...]
    lines: tuple[Line, ...]
    stdout: str
    wall_s: float
    returncode: int
    t0_epoch: float
    loadavg: tuple[float, ...]
    cpu_s: float

    @property
    def load(self) -> float:
        """The mean 1-minute load average during the run."""
        return statistics.fmean(self.loadavg) if self.loadavg else os.getloadavg()[0]

    @property
    def how(self) -> str:
        """``exited 1``, or that the timeout killed it."""
        if self.returncode < 0 and self.wall_s >= TIMEOUT_S:
            return f"was killed after the {TIMEOUT_S:.0f} s timeout"
        return f"exited {self.returncode}"

    def tail(self, n: int = 25) -> str:
        return "\n".join(line.text for line in self.lines[-n:]) or self.stdout[-3000:]


def run_captured(argv: Sequence[str], env: dict[str, str], cwd: Path,
                 timeout_s: float = TIMEOUT_S, echo: bool = False) -> Captured:
    """Run ``argv``; stamp every stderr line on arrival (``time.perf_counter``, relative to
    the start); sample the load average every 0.5 s. ``echo``: copy lines to our stderr."""
    lines: list[Line] = []
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0 = _children_cpu_s()
    t0_epoch, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    sampler.start()
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()  # type: ignore
                                                        ), daemon=True)
    reader.start()
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            now = time.perf_counter() - t0
            for text in raw.rstrip("\n").split("\r"):
                lines.append(Line(now, text))
                if echo and text.strip():
                    print(f"    {text}", file=sys.stderr, flush=True)
        code = proc.wait()
    except BaseException:  # interrupted: take the run down with us
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
        done.set()
    wall = time.perf_counter() - t0
    reader.join()
    sampler.join()
    return Captured(tuple(argv), tuple(lines), "".join(out), wall, code, t0_epoch,
                    tuple(loads), _children_cpu_s() - cpu0)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- edgebench's phases ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CaseTimes:
    """One repeat of one case on the run's clock (s): runner started, runner returned (its
    phase lines), accuracy evaluated (``None`` without accuracy), status line; and what the
    runner reported it spent loading, warming up and in the timed loop (s)."""

    label: str
    started: float
    returned: float
    evaluated: float | None
    ended: float
    load_s: float
    warmup_s: float
    timed_s: float


@dataclasses.dataclass(frozen=True)
class Phases:
    """Where one run's wall time went: ``seconds`` per phase (in order; they sum to
    ``wall_s`` up to the clamping of the runner's own figures), the runners' time (the
    union of their intervals) and the share of the wall outside them."""

    wall_s: float
    seconds: dict[str, float]
    runner_s: float
    cases: tuple[CaseTimes, ...]
    reported_wall_s: float | None

    @property
    def outside_share(self) -> float:
        return (self.wall_s - self.runner_s) / self.wall_s


def _seconds(detail: str) -> float:
    """``82 ms`` -> 0.082; ``1 iteration, 0.05 s`` -> 0.05 (the runner's figure)."""
    found = re.search(r"([\d.]+) (ms|s)\)?$", detail.strip())
    if found is None:
        return 0.0
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def parse_cases(lines: Iterable[Line]) -> tuple[list[CaseTimes], list[float], float | None,
                                                  float | None]:
    """The cases' times, the host steps' start times (a host step is logged
    :data:`QUIET_S` after it began), when the ``finished`` line came and the wall time it
    states, from a run's stamped stderr lines."""
    open_: dict[str, dict[str, Any]] = {}
    cases: list[CaseTimes] = []
    hosts: list[float] = []
    finished: float | None = None
    stated: float | None = None
    for line in lines:
        end = FINISHED.match(line.text)
        if end:
            finished, stated = line.t, float(end.group(1))
            continue
        m = LINE.match(line.text)
        if not m:
            continue
        body = m.group(4)
        c = CASE.match(body)
        if c is None:
            hosts.append(line.t - QUIET_S)
            continue
        label, what = c.group("label"), c.group("what")
        if what == "runner started":
            open_[label] = {"started": line.t, "load": 0.0, "warm-up": 0.0, "timed loop": 0.0}
            continue
        case = open_.get(label)
        if case is None:
            continue  # a case recorded without running (its device failed)
        name, _, detail = what.partition(" (")
        if name in RUNNER_PHASES:
            case.setdefault("returned", line.t)
            case[name] = _seconds(detail)
        elif name == "accuracy":
            case["evaluated"] = line.t
        else:  # the status line: ok, p50 ... / failed: ... / skipped: ...
            del open_[label]
            returned = case.get("returned", line.t)
            cases.append(CaseTimes(label, case["started"], returned, case.get("evaluated"),
                                   line.t, case["load"], case["warm-up"], case["timed loop"]))
    return cases, hosts, finished, stated


def cache_entries(cache: Path, t0_epoch: float, wall_s: float) -> list[tuple[float, str]]:
    """``(t, kind)`` of every cache entry (``cache/<kind>/<entry>``) finished during the
    run: ``t`` is the entry's newest file's mtime on the run's clock."""
    found: list[tuple[float, str]] = []
    if not cache.is_dir():
        return found
    for kind in sorted(p for p in cache.iterdir() if p.is_dir()):
        if kind.name in SKIP_CACHE_KINDS:
            continue
        for entry in kind.iterdir():
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            if not files:
                continue
            t = max(p.stat().st_mtime for p in files) - t0_epoch
            if 0.0 <= t <= wall_s:
                found.append((t, kind.name))
    return sorted(found)


HOST_KIND = {"exports": "exports", "references": "references", "tensors": "evaluation tensors",
             "datasets": "dataset"}


def phases(run: Captured, cache: Path | None) -> Phases:
    """Split ``run``'s wall time into phases (see the module docstring); ``cache``: the
    run's ``EDGEBENCH_CACHE`` (its entries' mtimes split the host steps by kind)."""
    cases, hosts, finished, stated = parse_cases(run.lines)
    if not cases:
        raise BenchError("no case of the edgebench run started a runner; its stderr ends:\n"
                         + run.tail())
    wall = run.wall_s
    entries = cache_entries(cache, run.t0_epoch, wall) if cache is not None else []
    first_runner = min(c.started for c in cases)
    last_case = max(c.ended for c in cases)
    host_start = min([h for h in hosts if h < first_runner] or [first_runner])
    host_start = max(0.0, host_start)
    seconds: dict[str, float] = {"start-up + planning": host_start}
    order = ["exports", "references", "evaluation tensors", "dataset"]
    for name in order:
        seconds[name] = 0.0
    # The host steps before the first runner: each interval up to a cache entry's
    # completion goes to that entry's kind; what follows the last one is "host steps, other".
    t = host_start
    for when, kind in entries:
        if when <= t or when > first_runner:
            continue
        name = HOST_KIND.get(kind, kind)
        seconds[name] = seconds.get(name, 0.0) + when - t
        t = when
    seconds["host steps, other (cached look-ups, checks)"] = max(0.0, first_runner - t)
    runner = {"runner: load": 0.0, "runner: warm-up": 0.0, "runner: timed loop": 0.0,
              "runner: start-up, batch load, accuracy inference": 0.0}
    evaluation = 0.0
    for c in cases:
        span = c.returned - c.started
        measured = min(span, c.load_s + c.warmup_s + c.timed_s)
        scale = measured / (c.load_s + c.warmup_s + c.timed_s or 1.0)
        runner["runner: load"] += c.load_s * scale
        runner["runner: warm-up"] += c.warmup_s * scale
        runner["runner: timed loop"] += c.timed_s * scale
        runner["runner: start-up, batch load, accuracy inference"] += span - measured
        if c.evaluated is not None:
            evaluation += c.evaluated - c.returned
    seconds.update(runner)
    seconds["accuracy evaluation (host)"] = evaluation
    runner_union = _union([(c.started, c.returned) for c in cases])
    eval_union = _union([(c.returned, c.evaluated) for c in cases if c.evaluated is not None])
    busy = _union([(c.started, c.evaluated if c.evaluated is not None else c.returned)
                   for c in cases])
    # between the first runner and the last case's end: what neither a runner nor an
    # evaluation covered (recording results, the next case's set-up, host work)
    seconds["between cases"] = max(0.0, (last_case - first_runner) - busy)
    if runner_union + eval_union > busy + 1e-9:  # concurrent devices: runners overlap
        seconds["overlap (concurrent cases)"] = -(runner_union + eval_union - busy)
    end = finished if finished is not None else wall
    seconds["report writing"] = max(0.0, end - last_case)
    seconds["exit"] = max(0.0, wall - end)
    seconds = {k: v for k, v in seconds.items() if v or k in order[:2] or k.startswith("runner")}
    return Phases(wall, seconds, runner_union, tuple(cases), stated)


def _union(spans: Iterable[tuple[float, float | None]]) -> float:
    """Total length (s) of the union of ``spans``."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted((a, b) for a, b in spans if b is not None):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total


# -- the runs ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    backends: tuple[str, ...]
    edgebench_only: bool
    extra: tuple[str, ...]
    """Further ``edgebench run`` flags (``--quick``: ``-n 3 --warmup 1 --images 10``)."""
    echo: bool


@dataclasses.dataclass(frozen=True)
class EdgebenchRun:
    wall_s: float
    load: float
    cpu_s: float
    phases: Phases
    map50_95: dict[str, float]
    report: Path


@dataclasses.dataclass(frozen=True)
class UltralyticsRun:
    wall_s: float
    load: float
    cpu_s: float
    map50_95: dict[str, float]
    version: str


def offline_env() -> dict[str, str]:
    from edgebench.ultralytics_offline import ultralytics_offline_env

    env = {**os.environ, **ultralytics_offline_env()}
    env.pop("EDGEBENCH_CACHE", None)
    return env


def fresh_pt(directory: Path) -> Path:
    """A copy of the embedded ``.pt`` in ``directory`` (created): never export from
    ``harness/assets``."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(PT, directory / PT.name))


def edgebench_argv(pt: Path, data: Path, output: Path, settings: Settings) -> list[str]:
    return [sys.executable, "-m", "edgebench.cli", "run", "-m", str(pt),
            "--imgsz", str(IMGSZ), "-b", ",".join(settings.backends), "--data", str(data),
            "-o", str(output), *settings.extra]


def run_edgebench(pt: Path, data: Path, cache: Path, output: Path,
                  settings: Settings) -> EdgebenchRun:
    """One ``edgebench run`` with ``EDGEBENCH_CACHE=cache``; its report's cases must all be
    ok with an mAP, else :class:`BenchError`."""
    env = {**offline_env(), "EDGEBENCH_CACHE": str(cache)}
    before = set(output.glob("*/report.json"))
    run = run_captured(edgebench_argv(pt, data, output, settings), env, pt.parent,
                       echo=settings.echo)
    reports = sorted(set(output.glob("*/report.json")) - before)
    if run.returncode != 0 or not reports:
        raise BenchError(f"edgebench run {run.how} "
                         f"({' '.join(run.argv[2:])}); its stderr ends:\n{run.tail()}")
    report = json.loads(reports[-1].read_text())
    maps: dict[str, float] = {}
    for case in report["cases"]:
        backend = case["case"]["backend"]
        acc = case.get("accuracy") or {}
        if case["status"] != "ok" or acc.get("map50_95") is None:
            raise BenchError(f"edgebench case {case['case']['id']} is {case['status']}"
                             f" (accuracy {acc.get('status')}): "
                             f"{case.get('reason') or acc.get('reason')}; report {reports[-1]}")
        maps[backend] = float(acc["map50_95"])
    missing = set(settings.backends) - set(maps)
    if missing:
        raise BenchError(f"edgebench's report {reports[-1]} has no case for "
                         f"{', '.join(sorted(missing))}")
    return EdgebenchRun(run.wall_s, run.load, run.cpu_s, phases(run, cache), maps, reports[-1])


def run_ultralytics(pt: Path, data: Path, settings: Settings) -> UltralyticsRun:
    """One process calling Ultralytics ``benchmark()`` per format on ``pt`` (its exports
    land next to it); every format must succeed, else :class:`BenchError`."""
    formats = [FORMATS[b] for b in settings.backends]
    argv = [sys.executable, "-c", ULTRALYTICS_SCRIPT, str(pt), str(data), str(IMGSZ),
            ",".join(formats)]
    run = run_captured(argv, offline_env(), pt.parent, echo=settings.echo)
    result = next((json.loads(line[len("VS_ULTRALYTICS "):])
                   for line in run.stdout.splitlines() if line.startswith("VS_ULTRALYTICS ")),
                  None)
    if run.returncode != 0 or result is None:
        raise BenchError(f"Ultralytics benchmark() {run.how}; its output ends:\n"
                         + run.tail())
    maps: dict[str, float] = {}
    for backend, fmt in zip(settings.backends, formats, strict=True):
        row = result["formats"][fmt]["row"]
        key = next((k for k in row if k.startswith("metrics/mAP50-95")), None)
        status = next((v for k, v in row.items() if k.startswith("Status")), "?")
        if key is None or row[key] in (None, "-") or "✅" not in str(status):
            raise BenchError(f"Ultralytics benchmark(format={fmt!r}) failed (status {status}): "
                             f"{row}; its output ends:\n{run.tail()}")
        maps[backend] = float(row[key])
    return UltralyticsRun(run.wall_s, run.load, run.cpu_s, maps, result["version"])


@dataclasses.dataclass
class Round:
    edgebench: dict[str, EdgebenchRun] = dataclasses.field(default_factory=dict)
    ultralytics: dict[str, UltralyticsRun] = dataclasses.field(default_factory=dict)


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} vs_ultralytics: {text}", file=sys.stderr, flush=True)


def one_round(index: int, work: Path, data: Path, settings: Settings) -> Round:
    """Round ``index``: cold then warm, each an Ultralytics and an edgebench run, the
    order within each pair alternating between rounds."""
    out = Round()
    base = work / f"round{index + 1}"
    u_pt = None if settings.edgebench_only else fresh_pt(base / "ultralytics")
    e_pt = fresh_pt(base / "edgebench")
    cache = base / "edgebench-cache"
    tools = ["ultralytics", "edgebench"] if index % 2 == 0 else ["edgebench", "ultralytics"]
    for temp in ("cold", "warm"):
        for tool in tools:
            if tool == "ultralytics" and u_pt is not None:
                say(f"round {index + 1}/{settings.rounds}: Ultralytics benchmark() {temp}, "
                    f"load {os.getloadavg()[0]:.2f}")
                u = out.ultralytics[temp] = run_ultralytics(u_pt, data, settings)
                say(f"  Ultralytics {temp}: {u.wall_s:.1f} s (load {u.load:.2f})")
            elif tool == "edgebench":
                say(f"round {index + 1}/{settings.rounds}: edgebench run {temp}, "
                    f"load {os.getloadavg()[0]:.2f}")
                e = out.edgebench[temp] = run_edgebench(e_pt, data, cache, base / "results",
                                                        settings)
                say(f"  edgebench {temp}: {e.wall_s:.1f} s (load {e.load:.2f}, "
                    f"{e.phases.outside_share:.0%} outside the runners)")
    return out


# -- the tables --------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``min–max`` of ``values`` (one value when they are all equal in ``fmt``)."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}–{high}"


def wall_table(rounds: Sequence[Round], edgebench_only: bool) -> str:
    if edgebench_only:
        rows = ["| round | edgebench cold s | edgebench warm s | load cold | load warm |",
                "|---|---:|---:|---:|---:|"]
        for i, r in enumerate(rounds, 1):
            c, w = r.edgebench["cold"], r.edgebench["warm"]
            rows.append(f"| {i} | {c.wall_s:.1f} | {w.wall_s:.1f} | {c.load:.2f} "
                        f"| {w.load:.2f} |")
        cold = [r.edgebench["cold"].wall_s for r in rounds]
        warm = [r.edgebench["warm"].wall_s for r in rounds]
        rows.append(f"| **median** | **{_median(cold):.1f}** | **{_median(warm):.1f}** "
                    "| | |")
        return "\n".join(rows)
    rows = ["| round | Ultralytics cold s | edgebench cold s | **cold ratio** "
            "| Ultralytics warm s | edgebench warm s | **warm ratio** "
            "| load U cold | load eb cold | load U warm | load eb warm |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios: dict[str, list[float]] = {"cold": [], "warm": []}
    for i, r in enumerate(rounds, 1):
        cells = [str(i)]
        for temp in ("cold", "warm"):
            u, e = r.ultralytics[temp], r.edgebench[temp]
            ratios[temp].append(e.wall_s / u.wall_s)
            cells += [f"{u.wall_s:.1f}", f"{e.wall_s:.1f}", f"{ratios[temp][-1]:.2f}"]
        for temp in ("cold", "warm"):
            cells += [f"{r.ultralytics[temp].load:.2f}", f"{r.edgebench[temp].load:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    med = ["**median**"]
    for temp in ("cold", "warm"):
        med += [f"{_median([r.ultralytics[temp].wall_s for r in rounds]):.1f}",
                f"{_median([r.edgebench[temp].wall_s for r in rounds]):.1f}",
                f"**{_median(ratios[temp]):.2f}** ({_spread(ratios[temp])})"]
    med += [f"{_median([r.ultralytics[t].load for r in rounds]):.2f}" if tool == "u" else
            f"{_median([r.edgebench[t].load for r in rounds]):.2f}"
            for t in ("cold", "warm") for tool in ("u", "e")]
    rows.append("| " + " | ".join(med) + " |")
    rows.append("")
    rows.append(f"edgebench / Ultralytics wall, median of {len(rounds)} rounds (min–max): "
                f"cold **{_median(ratios['cold']):.2f}** ({_spread(ratios['cold'])}), "
                f"warm **{_median(ratios['warm']):.2f}** ({_spread(ratios['warm'])}); "
                "issue 19 wants cold ≤ 0.75, warm ≤ 0.3 on a quiet box.")
    return "\n".join(rows)


def map_table(rounds: Sequence[Round], backends: Sequence[str], edgebench_only: bool) -> str:
    rows = ["| format (backend) | edgebench mAP50-95 | Ultralytics mAP50-95 | max |Δ| |",
            "|---|---:|---:|---:|"]
    worst = 0.0
    for b in backends:
        eb = [r.edgebench[t].map50_95[b] for r in rounds for t in ("cold", "warm")]
        if edgebench_only:
            rows.append(f"| {FORMATS[b]} ({b}) | {_spread(eb, '{:.4f}')} | – | – |")
            continue
        ul = [r.ultralytics[t].map50_95[b] for r in rounds for t in ("cold", "warm")]
        diff = max(abs(x - y) for x in eb for y in ul)
        worst = max(worst, diff)
        rows.append(f"| {FORMATS[b]} ({b}) | {_spread(eb, '{:.4f}')} | {_spread(ul, '{:.4f}')} "
                    f"| {diff:.4f} |")
    if not edgebench_only:
        verdict = "within" if worst <= MAP_TOLERANCE else "**outside**"
        rows += ["", f"Max mAP50-95 difference, any format, any run: **{worst:.4f}** "
                 f"({verdict} the issue's {MAP_TOLERANCE}; Ultralytics prints 4 decimals)."]
    return "\n".join(rows)


def phase_table(rounds: Sequence[Round]) -> str:
    names: list[str] = []
    for r in rounds:
        for t in ("cold", "warm"):
            names += [n for n in r.edgebench[t].phases.seconds if n not in names]
    rows = ["| edgebench phase | cold s (median) | cold share | warm s (median) | warm share |",
            "|---|---:|---:|---:|---:|"]
    walls = {t: _median([r.edgebench[t].phases.wall_s for r in rounds]) for t in ("cold", "warm")}
    for name in names:
        cells = [name]
        for t in ("cold", "warm"):
            v = _median([r.edgebench[t].phases.seconds.get(name, 0.0) for r in rounds])
            cells += [f"{v:.2f}", f"{v / walls[t]:.0%}"]
        rows.append("| " + " | ".join(cells) + " |")
    sums = {t: _median([sum(r.edgebench[t].phases.seconds.values()) for r in rounds])
            for t in ("cold", "warm")}
    rows.append(f"| sum of phases | {sums['cold']:.2f} | | {sums['warm']:.2f} | |")
    rows.append(f"| wall (process) | {walls['cold']:.2f} | 100% | {walls['warm']:.2f} | 100% |")
    outside = {t: [r.edgebench[t].phases.outside_share for r in rounds] for t in ("cold", "warm")}
    warm_ok = "meets" if _median(outside["warm"]) < OUTSIDE_TARGET else "**misses**"
    rows += ["", "Share of the wall time outside the runners (wall − union of the runner "
             "processes' intervals), median (min–max): cold "
             f"{_median(outside['cold']):.0%} ({_spread(outside['cold'], '{:.0%}')}), "
             f"**warm {_median(outside['warm']):.0%}** "
             f"({_spread(outside['warm'], '{:.0%}')}): {warm_ok} the issue's < "
             f"{OUTSIDE_TARGET:.0%} for a warm run."]
    return "\n".join(rows)


def cpu_table(rounds: Sequence[Round], edgebench_only: bool) -> str:
    """CPU time (user + system, the whole process tree) per tool, and what it bounds: on
    the cores this process may use (``usable_cores``: the affinity mask, which the tools it
    starts inherit) no schedule finishes a run sooner than its CPU seconds ÷ cores,
    so ``edgebench cold CPU ÷ cores ÷ Ultralytics cold wall`` is the lowest cold ratio any
    overlap of edgebench's work can reach here (it still must keep its timed loops alone)."""
    cores = usable_cores()
    tools = ["edgebench"] if edgebench_only else ["Ultralytics", "edgebench"]
    rows = ["| tool | cold CPU s | cold wall s | cold CPU ÷ wall | warm CPU s | warm wall s |",
            "|---|---:|---:|---:|---:|---:|"]
    for tool in tools:
        runs = {t: [r.ultralytics[t] if tool == "Ultralytics" else r.edgebench[t]
                    for r in rounds] for t in ("cold", "warm")}
        cpu = {t: [x.cpu_s for x in runs[t]] for t in runs}
        wall = {t: [x.wall_s for x in runs[t]] for t in runs}
        use = [c / w for c, w in zip(cpu["cold"], wall["cold"], strict=True)]
        rows.append(f"| {tool} | {_median(cpu['cold']):.1f} ({_spread(cpu['cold'], '{:.1f}')})"
                    f" | {_median(wall['cold']):.1f} | {_median(use):.2f} cores "
                    f"| {_median(cpu['warm']):.1f} | {_median(wall['warm']):.1f} |")
    if not edgebench_only:
        bound = [r.edgebench["cold"].cpu_s / cores / r.ultralytics["cold"].wall_s
                 for r in rounds]
        rows += ["", f"Lowest cold ratio the CPU work allows on these {cores} cores "
                 f"(edgebench cold CPU s ÷ {cores} ÷ Ultralytics cold wall s), median "
                 f"(min–max): **{_median(bound):.2f}** ({_spread(bound)})."]
    return "\n".join(rows)


def header(settings: Settings, data: Path, rounds: Sequence[Round], start_load: str,
           end_load: str) -> str:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    version = next((r.ultralytics["cold"].version for r in rounds if r.ultralytics), "–")
    return "\n".join([
        f"## edgebench vs Ultralytics benchmark() — {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- edgebench commit {commit or 'unknown'}; Ultralytics {version}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        f"- model: a copy of {PT.relative_to(REPO)} at {IMGSZ} px, CPU; data: {data}; "
        f"formats: {', '.join(f'{FORMATS[b]} ({b})' for b in settings.backends)}",
        f"- edgebench flags: {' '.join(settings.extra) or 'defaults'}; {len(rounds)} "
        "round(s), interleaved; cold = fresh .pt copy and fresh EDGEBENCH_CACHE; warm = the "
        "same again (edgebench keeps its cache; Ultralytics re-exports over its files)",
        f"- uptime at start: {start_load}",
        f"- uptime at end: {end_load}",
        "- load columns: mean 1-minute load average sampled during each run (2 CPUs: above "
        "~1 the tools share the cores with others)",
    ])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report(settings: Settings, data: Path, rounds: Sequence[Round], start_load: str) -> str:
    return "\n\n".join([
        header(settings, data, rounds, start_load, uptime()),
        "### Wall time (s), per round", wall_table(rounds, settings.edgebench_only),
        "### mAP50-95 (100 images unless --images)",
        map_table(rounds, settings.backends, settings.edgebench_only),
        "### CPU time (s, user + system, each tool's whole process tree)",
        cpu_table(rounds, settings.edgebench_only),
        "### Where edgebench's time goes", phase_table(rounds)])


def as_json(rounds: Sequence[Round]) -> list[dict[str, Any]]:
    def conv(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, dict):
            return {k: conv(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [conv(v) for v in obj]
        return str(obj) if isinstance(obj, Path) else obj
    return [conv(r) for r in rounds]


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("-b", "--backends", default=",".join(FORMATS),
                        help=f"edgebench backends ({','.join(FORMATS)})")
    parser.add_argument("--edgebench-only", action="store_true",
                        help="skip the Ultralytics runs (edgebench's phases only)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: --edgebench-only, 1 round, -b onnxruntime, "
                        "edgebench at -n 3 --warmup 1 --images 10")
    parser.add_argument("--edgebench-args", default="",
                        help="further edgebench run flags, e.g. '-n 50 --images 20'")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", type=Path,
                        help="work in this directory and keep it (default: a temp dir)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="echo both tools' stderr")
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = [b for b in backends if b not in FORMATS]
    if unknown or not backends:
        parser.error(f"unknown backend(s) {', '.join(unknown) or '(none)'}: choose from "
                     f"{', '.join(FORMATS)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    extra = tuple(args.edgebench_args.split())
    if args.quick:
        return Settings(1 if args.rounds == 3 else args.rounds, ("onnxruntime",), True,
                        ("-n", "3", "--warmup", "1", "--images", "10", *extra),
                        args.verbose), args
    return Settings(args.rounds, backends, args.edgebench_only, extra, args.verbose), args


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if not PT.is_file():
        print(f"vs_ultralytics: {PT} is missing; run from an edgebench checkout with its "
              "assets (git lfs pull if they are pointers).", file=sys.stderr)
        return 2
    from edgebench.datasets import embedded_val_yaml

    data = embedded_val_yaml()
    start_load = uptime()
    say(f"{settings.rounds} round(s), backends {','.join(settings.backends)}, data {data}; "
        f"{start_load}")
    rounds: list[Round] = []
    work = args.keep or Path(tempfile.mkdtemp(prefix="vs-ultralytics-"))
    code = 0
    try:
        for i in range(settings.rounds):
            rounds.append(one_round(i, work, data, settings))
            if args.json:  # every round as it ends: an interrupted benchmark keeps them
                args.json.write_text(json.dumps(as_json(rounds), indent=1))
    except BenchError as exc:
        print(f"vs_ultralytics: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("vs_ultralytics: interrupted", file=sys.stderr)
        code = 130
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if rounds:
        print(report(settings, data, rounds, start_load))
        if args.json:
            args.json.write_text(json.dumps(as_json(rounds), indent=1))
    elif code == 0:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
