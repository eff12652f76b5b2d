"""Device-side code shared by every runner: the timing loop, the accuracy pass, the result.

This file is copied to the device next to a backend's runner script, with the two files it
imports (``edgebench_protocol.py``: the request/result record; ``edgebench_readings.py``:
the fingerprint probe and memory/temperature readings), and must stay self-contained: the
standard library and numpy only (numpy only inside the runner path),
Python 3.8+. The harness runs it on the device in its own process (and imports
only :func:`probe` for the host's own fingerprint):

    python3 edgebench_agent.py probe --module onnxruntime --module numpy
    python3 <backend>_runner.py --request request.json --out result.json

A runner script defines two functions and hands them to :func:`main`:

    def import_runtime(request): ...          # import the runtime, return it
    def load(runtime, request, inputs): ...   # load the model, return a Loaded

The result JSON (``--out``) is written atomically; on failure it carries
``{"error": {"phase": ..., "message": ...}}`` and the process exits 1. While it runs, the
runner prints ``edgebench-phase: PHASE`` on stdout as it enters each phase (verify, import,
inputs, load, first inference, warm-up, timed loop, accuracy pass), so a host whose
connection drops knows how far it got.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import replace
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

if TYPE_CHECKING or __package__:  # imported by the harness
    from . import edgebench_protocol as protocol
    from .edgebench_readings import (  # re-exported: runners and the host use them
        _module_version as _module_version,
    )
    from .edgebench_readings import (
        cpu_load as cpu_load,
    )
    from .edgebench_readings import (
        cpu_snapshot as cpu_snapshot,
    )
    from .edgebench_readings import (
        peak_rss_bytes as peak_rss_bytes,
    )
    from .edgebench_readings import (
        probe as probe,
    )
    from .edgebench_readings import (
        rss_bytes as rss_bytes,
    )
    from .edgebench_readings import (
        temperature_c as temperature_c,
    )
else:  # a script on the device: the protocol and the readings were copied next to it
    import edgebench_protocol as protocol
    from edgebench_readings import (  # re-exported: runners and the host use them
        _module_version as _module_version,
    )
    from edgebench_readings import (
        cpu_load as cpu_load,
    )
    from edgebench_readings import (
        cpu_snapshot as cpu_snapshot,
    )
    from edgebench_readings import (
        peak_rss_bytes as peak_rss_bytes,
    )
    from edgebench_readings import (
        probe as probe,
    )
    from edgebench_readings import (
        rss_bytes as rss_bytes,
    )
    from edgebench_readings import (
        temperature_c as temperature_c,
    )

AGENT_PROTOCOL = protocol.PROTOCOL

# ----------------------------------------------------------------------------- results


def write_json_atomic(path: str, data: Any) -> None:
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Loaded:
    """What a runner's ``load`` returns.

    ``infer()`` runs the model on the request's timing input (bound once, so the timed loop
    measures inference only); ``predict(array)`` runs it on another input tensor (float32
    NCHW, as the timing input) and returns its outputs as numpy arrays (the accuracy pass);
    it must not keep ``array`` after it returns (the agent refills that buffer for the next
    input: :func:`accuracy_inputs`). ``runtime`` is (name, version).
    ``delegation`` (optional): ``{"delegate": name, "nodes_delegated": n, "nodes_total": n,
    "partitions": n, "fallback_ops": {op: count}}`` for a runtime with delegates.
    """

    def __init__(self, infer: Callable[[], Any], runtime: Tuple[str, str],
                 threads: Optional[int] = None, providers: Sequence[str] = (),
                 details: Optional[Dict[str, Any]] = None,
                 predict: Optional[Callable[[Any], Sequence[Any]]] = None,
                 delegation: Optional[Dict[str, Any]] = None) -> None:
        self.infer = infer
        self.predict = predict
        self.runtime = runtime
        self.threads = threads
        self.providers = list(providers)
        self.details = dict(details or {})
        self.delegation = delegation


class RunnerFailure(Exception):
    """A failure with a phase, reported to the host as one sentence."""

    def __init__(self, phase: str, message: str) -> None:
        Exception.__init__(self, message)
        self.phase = phase
        self.message = message


def first_line(exc: BaseException) -> str:
    """An exception as one short sentence: its first non-empty line, or its type. Only for
    messages whose first line is the cause (an ImportError); a runtime's error goes whole
    (:func:`full_message`)."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def full_message(exc: BaseException, prefix: str = "") -> str:
    """An exception's whole message (``prefix`` first), blank lines dropped, its type when
    empty; at most ``edgebench_protocol.MESSAGE_LIMIT`` characters (its first quarter and
    its end). The host keeps it as the case's reason and shows one line of it in tables."""
    lines = [line.rstrip() for line in (prefix + str(exc)).strip().splitlines()
             if line.strip()]
    text = "\n".join(lines) or prefix + type(exc).__name__
    if len(text) > protocol.MESSAGE_LIMIT:
        head = protocol.MESSAGE_LIMIT // 4
        tail = protocol.MESSAGE_LIMIT - head - 40
        text = "%s\n[... %d characters ...]\n%s" % (
            text[:head], len(text) - head - tail, text[-tail:])
    return text


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def os_threads() -> Optional[int]:
    """Threads of this process now (entries of ``/proc/self/task``), or None without
    ``/proc``. A runner counts them before and after a runtime builds its thread pool to
    report the pool's size when the runtime itself does not say it."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def single_input(inputs: Dict[str, Any]) -> Any:
    """The one tensor of a timing input file (runners of single-input image models)."""
    if len(inputs) != 1:
        raise RunnerFailure("inputs", "expected one input tensor, the request has %d (%s)"
                            % (len(inputs), ", ".join(sorted(inputs))))
    return next(iter(inputs.values()))


def load_inputs(path: str) -> Dict[str, Any]:
    """The input tensors saved by the host with numpy.savez, as {name: array}."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _timed_loop(infer: Callable[[], Any], min_iterations: int, min_duration_s: float,
                delay_s: float, slowdown: float = 0.0) -> Tuple[List[int], List[int]]:
    """Time ``infer`` until both ``min_iterations`` and ``min_duration_s`` are reached.

    Returns the wall time of each iteration and the CPU time the process spent in it (all
    its threads): other processes on a shared machine stretch the first, hardly the second.
    ``delay_s`` (a fixed sleep) and ``slowdown`` (a busy-wait of that fraction of each
    inference) are test-only options that make a runner hang or run measurably slower.
    """
    perf, cpu = time.perf_counter_ns, time.process_time_ns
    samples: List[int] = []
    cpu_samples: List[int] = []
    append, append_cpu = samples.append, cpu_samples.append
    deadline = perf() + int(min_duration_s * 1e9)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < min_iterations or perf() < deadline:
            # The CPU-clock reads are inside the wall window: a read is a system call, where
            # the scheduler preempts a process whose slice ran out, so reads between windows
            # would move preemption out of the wall samples (~5 % of the time under load).
            t0 = perf()
            c0 = cpu()
            infer()
            if delay_s:
                time.sleep(delay_s)
            if slowdown:
                spent = perf() - t0
                target = t0 + int(spent * (1.0 + slowdown))
                while perf() < target:  # busy-wait: sleep() is too coarse for a few ms
                    pass
            c1 = cpu()
            append(perf() - t0)
            append_cpu(c1 - c0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, cpu_samples


def _describe_outputs(outputs: Any) -> Tuple[protocol.OutputSummary, ...]:
    import numpy as np

    described: List[protocol.OutputSummary] = []
    for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        arr = np.asarray(out)
        described.append(protocol.OutputSummary(
            shape=tuple(int(d) for d in arr.shape), dtype=str(arr.dtype),
            finite=bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True))
    return tuple(described)


def accuracy_inputs(path: str) -> Tuple[int, Iterator[Any]]:
    """The accuracy pass's inputs: (how many, each inference's float32 (B, 3, H, W) input
    in order).

    A ``.npy`` is the accuracy batch the host ships: (K, B, 3, H, W) uint8 letterboxed RGB
    pixels, memory-mapped; each input is its pixels divided by 255 in float32 (the host's
    ``edgebench.batching.normalise``, bit for bit), written into one reused buffer just
    before it runs, so the float batch is never in memory at once. ``predict`` must not
    keep its argument after it returns. A ``.npz`` (keys ``"0".."K-1"``, float32 tensors:
    the format before) is read one key at a time."""
    import numpy as np

    if not path.endswith(".npy"):
        data = np.load(path, allow_pickle=False)
        keys = sorted(data.files, key=int)

        def each_key() -> Iterator[Any]:
            with data:
                for key in keys:
                    yield data[key]

        return len(keys), each_key()
    pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    if pixels.dtype != np.uint8 or pixels.ndim != 5 or pixels.shape[2] != 3:
        raise RunnerFailure("accuracy pass", "%s is not an accuracy batch ((K, B, 3, H, W) "
                            "uint8): %s %s" % (os.path.basename(path), list(pixels.shape),
                                               pixels.dtype))
    scratch = np.empty(pixels.shape[1:], dtype=np.float32)
    scale = np.float32(255)

    def each_inference() -> Iterator[Any]:
        for group in pixels:
            yield np.divide(group, scale, out=scratch, dtype=np.float32)

    return len(pixels), each_inference()


def _accuracy_pass(loaded: Loaded, inputs_path: str, out_path: str) -> protocol.AccuracyPass:
    """Run every input of ``inputs_path`` (:func:`accuracy_inputs`, in order) and save the
    outputs (``INPUT_OUTPUT`` keys), untimed."""
    import numpy as np

    assert loaded.predict is not None
    count, inputs = accuracy_inputs(inputs_path)
    outputs: Dict[str, Any] = {}
    t0 = time.perf_counter()
    for key, x in enumerate(inputs):
        for j, out in enumerate(loaded.predict(x)):
            outputs["%d_%d" % (key, j)] = np.array(out)
    seconds = time.perf_counter() - t0
    tmp = "%s.tmp.%d.npz" % (out_path, os.getpid())
    np.savez(tmp, **outputs)
    os.replace(tmp, out_path)
    return protocol.AccuracyPass(images=count, seconds=seconds)


PHASE_MARK = "edgebench-phase:"


def announce(phase: str) -> None:
    """Tell the host (on stdout, flushed) which phase the runner is in."""
    sys.stdout.write("%s %s\n" % (PHASE_MARK, phase))
    sys.stdout.flush()


def verify_files(expected: Mapping[str, Tuple[str, int]]) -> None:
    """Check pushed files against ``{path: [sha256, size]}``: a copy cut short or corrupted
    on the way fails here, with what differs, instead of as a confusing load error."""
    for path, (sha256, size) in sorted(expected.items()):
        try:
            actual_size = os.path.getsize(path)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise RunnerFailure("verify", "%s is missing on the device (%s)"
                                % (os.path.basename(path), exc.strerror or exc)) from None
        if actual_size != size or digest.hexdigest() != sha256:
            raise RunnerFailure(
                "verify", "%s on the device differs from the host's copy (%d of %d bytes, "
                "sha256 %s..., expected %s...): the copy was cut short or corrupted"
                % (os.path.basename(path), actual_size, size, digest.hexdigest()[:12],
                   str(sha256)[:12]))


def measure(import_runtime: Callable[[Dict[str, Any]], Any],
            load: Callable[[Any, Dict[str, Any], Dict[str, Any]], Loaded],
            request: protocol.RunnerRequest) -> protocol.RunnerResult:
    """Run the whole measurement for one request. A failure in any phase is the result's
    ``error`` (with the fields measured until then), never an exception. The runner's
    functions get the request in its wire form (a dict: see ``edgebench_protocol``)."""
    wire = request.to_json()
    result = protocol.RunnerResult(protocol=AGENT_PROTOCOL, rss_baseline_bytes=rss_bytes())
    loop: Optional[Tuple[Dict[str, Any], Dict[str, Any]]] = None
    phase = "verify"
    try:
        announce(phase)
        verify_files(request.verify)
        phase = "import"
        announce(phase)
        runtime = import_runtime(wire)
        phase = "inputs"
        announce(phase)
        inputs = load_inputs(request.inputs)
        result = replace(result, rss_before_load_bytes=rss_bytes())
        phase = "load"
        announce(phase)
        t0 = time.perf_counter_ns()
        loaded = load(runtime, wire, inputs)
        result = replace(result, init_ns=time.perf_counter_ns() - t0,
                         rss_after_load_bytes=rss_bytes(), runtime=protocol.RuntimeReport(
                             name=loaded.runtime[0], version=loaded.runtime[1],
                             threads=loaded.threads, providers=tuple(loaded.providers),
                             details={k: str(v) for k, v in loaded.details.items()},
                             delegation=loaded.delegation))
        phase = "first inference"
        announce(phase)
        t0 = time.perf_counter_ns()
        outputs = loaded.infer()
        result = replace(result, first_inference_ns=time.perf_counter_ns() - t0,
                         outputs=_describe_outputs(outputs))
        delay_s, slowdown = request.test_delay_s, request.test_slowdown
        phase = "warm-up"
        announce(phase)
        warmup, _ = _timed_loop(loaded.infer, request.warmup_iterations, request.warmup_s,
                                delay_s, slowdown)
        phase = "timed loop"
        announce(phase)
        load_before = cpu_snapshot()
        samples, cpu_samples = _timed_loop(loaded.infer, max(1, request.iterations),
                                           request.min_duration_s, delay_s, slowdown)
        loop = (load_before, cpu_snapshot())
        result = replace(result, warmup_ns=tuple(warmup), samples_ns=tuple(samples),
                         cpu_samples_ns=tuple(cpu_samples), peak_rss_bytes=peak_rss_bytes())
        if request.accuracy is not None and loaded.predict is None:
            result = replace(result, accuracy=protocol.AccuracyPass(
                skipped="the runner gives no outputs for other inputs (its Loaded has no "
                        "predict)"))
        elif request.accuracy is not None:
            phase = "accuracy pass"
            announce(phase)
            result = replace(result, accuracy=_accuracy_pass(
                loaded, request.accuracy.inputs, request.accuracy.out))
    except RunnerFailure as exc:
        result = replace(result, error=protocol.RunnerError(exc.phase, exc.message))
    except MemoryError:
        result = replace(result, error=protocol.RunnerError(phase, "out of memory"))
    except Exception as exc:
        result = replace(result, error=protocol.RunnerError(
            phase, full_message(exc, "%s: " % type(exc).__name__),
            traceback.format_exc()[-4000:]))
    if loop is not None:
        result = replace(result, load=_load_reading(*loop))
    return result


def _load_reading(before: Dict[str, Any], after: Dict[str, Any]) -> protocol.LoadReading:
    """The machine's load over the timed loop (``before``/``after``: ``cpu_snapshot``),
    with the loop's start and end in seconds before now (the result is written next)."""
    now = time.monotonic()
    reading = cpu_load(before, after)
    return protocol.LoadReading.from_json(dict(
        reading, started_before_end_s=now - before["t"], ended_before_end_s=now - after["t"]))


def main(import_runtime: Callable[[Dict[str, Any]], Any],
         load: Callable[[Any, Dict[str, Any], Dict[str, Any]], Loaded],
         argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of a runner script: read the request (``--request``, a
    :class:`RunnerRequest` in wire form), measure, write the :class:`RunnerResult`
    (``--out``); exit 1 when the result is an error (a malformed request is one too, in the
    ``request`` phase)."""
    parser = argparse.ArgumentParser(description="edgebench device-side runner")
    parser.add_argument("--request", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.request) as f:
        raw = json.load(f)
    try:
        request = protocol.RunnerRequest.from_json(raw)
    except protocol.ProtocolError as exc:
        result = protocol.RunnerResult(protocol=AGENT_PROTOCOL, error=protocol.RunnerError(
            "request", "the request is malformed: %s" % exc))
    else:
        result = measure(import_runtime, load, request)
    write_json_atomic(args.out, result.to_json())
    return 1 if result.error is not None else 0


def _cli(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="edgebench device agent")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="print the device fingerprint as JSON")
    p.add_argument("--module", action="append", default=[])
    sub.add_parser("temperature", help="print the hottest thermal zone as JSON")
    args = parser.parse_args(argv)
    if args.command == "probe":
        print(json.dumps({"protocol": AGENT_PROTOCOL, "probe": probe(args.module)}))
    else:
        print(json.dumps({"temperature_c": temperature_c()}))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
