"""The runner protocol: the request the host sends a device-side runner and the result the
runner sends back, as typed records with their JSON (wire) form.

The one definition both sides use: the host builds a :class:`RunnerRequest`
(``edgebench.remote.runner_request``) and reads a :class:`RunnerResult`; the agent
(``edgebench_agent.py``) reads the request and writes the result. This file is copied to
the device next to the agent, so it must stay self-contained: the standard library only,
Python 3.8+ syntax.

Wire form (JSON objects; keys absent = the default). Request::

    {"model": PATH, "inputs": PATH, "warmup_iterations": 10, "warmup_s": 0.0,
     "iterations": 100, "min_duration_s": 0.0, "threads": null, "options": {...},
     "verify": {PATH: [SHA256, BYTES]}, "accuracy": {"inputs": PATH, "out": PATH},
     "test_delay_s": 0.0, "test_slowdown": 0.0}

A runner script's ``import_runtime(request)`` and ``load(runtime, request, inputs)`` get the
request in this wire form (a dict), as they always have. Result::

    {"protocol": 1, "rss_baseline_bytes": B, "rss_before_load_bytes": B,
     "rss_after_load_bytes": B, "peak_rss_bytes": B, "init_ns": NS,
     "first_inference_ns": NS, "warmup_ns": [NS...], "samples_ns": [NS...],
     "cpu_samples_ns": [NS...],
     "runtime": {"name": S, "version": S, "threads": N, "providers": [S...],
                 "details": {S: S}, "delegation": {...}},
     "outputs": [{"shape": [N...], "dtype": S, "finite": BOOL}],
     "accuracy": {"images": N, "seconds": S} | {"skipped": WHY},
     "load": {"window_s": S, "cores": N, "busy_cpu_s": S, "own_cpu_s": S,
              "other_cpu_s": S, "loadavg_1m_before": X, "loadavg_1m_after": X,
              "source": S, "started_before_end_s": S, "ended_before_end_s": S},
     "error": {"phase": S, "message": S, "traceback": S}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Mapping, Optional, Tuple

PROTOCOL = 1
"""The result's ``protocol`` number (the agent's ``AGENT_PROTOCOL``)."""


class ProtocolError(ValueError):
    """A request or result that does not have the protocol's fields and types; the message
    says which field (``"samples_ns is not a non-empty list of non-negative integers"``)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _counts(raw: Mapping[str, Any], key: str, *, non_empty: bool = False
            ) -> Optional[Tuple[int, ...]]:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or (non_empty and not value) \
            or not all(_is_count(v) for v in value):
        raise ProtocolError("%s is not a %slist of non-negative integers"
                            % (key, "non-empty " if non_empty else ""))
    return tuple(value)


def _count(raw: Mapping[str, Any], key: str) -> Optional[int]:
    value = raw.get(key)
    if value is not None and not _is_count(value):
        raise ProtocolError("%s is not a non-negative integer" % key)
    return value


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if not _is_number(value):
        raise ProtocolError("%s is not a finite number" % key)
    return float(value)


def _object(raw: Mapping[str, Any], key: str) -> Dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError("%s is not an object" % key)
    return value


@dataclass(frozen=True)
class AccuracyRequest:
    """The untimed accuracy pass: run every input of ``inputs`` (on the device: the
    accuracy batch, a ``.npy`` of (K, B, 3, H, W) uint8 pixels, each inference's input
    being its pixels / 255 in float32; or a ``.npz`` of float32 tensors, keys ``0``, ``1``,
    ...) and save the outputs to ``out`` (``.npz``, keys ``INPUT_OUTPUT``)."""

    inputs: str
    out: str


@dataclass(frozen=True)
class RunnerRequest:
    """What one runner process measures (paths are on the device).

    ``warmup_iterations``/``warmup_s`` and ``iterations``/``min_duration_s``: the warm-up and
    the timed loop each run until both their count and their duration (seconds) are
    reached; ``threads``: the runtime's thread count (``None``: its default); ``options``:
    the backend's runner options (``Backend.runner_options``); ``verify``: the sha256 and
    size in bytes every pushed model file must have; ``accuracy``: the accuracy pass, if
    any; ``test_delay_s`` (a sleep per iteration, seconds) and ``test_slowdown`` (a
    busy-wait of that fraction of each inference) are test-only knobs.
    """

    model: str = ""
    inputs: str = ""
    warmup_iterations: int = 0
    warmup_s: float = 0.0
    iterations: int = 1
    min_duration_s: float = 0.0
    threads: Optional[int] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    verify: Mapping[str, Tuple[str, int]] = field(default_factory=dict)
    accuracy: Optional[AccuracyRequest] = None
    test_delay_s: float = 0.0
    test_slowdown: float = 0.0

    def with_test_options(self, test_options: Mapping[str, float]) -> RunnerRequest:
        """A copy with the test-only knobs set (``{"test_delay_s": 0.5}``); raises
        :class:`ProtocolError` for a name that is not one."""
        unknown = sorted(set(test_options) - {"test_delay_s", "test_slowdown"})
        if unknown:
            raise ProtocolError("unknown test option(s) %s" % ", ".join(unknown))
        return replace(self, test_delay_s=float(test_options.get("test_delay_s", 0.0)),
                       test_slowdown=float(test_options.get("test_slowdown", 0.0)))

    def to_json(self) -> Dict[str, Any]:
        """The wire form (a JSON object); ``accuracy`` is absent without an accuracy pass."""
        out: Dict[str, Any] = {
            "model": self.model, "inputs": self.inputs,
            "warmup_iterations": self.warmup_iterations, "warmup_s": self.warmup_s,
            "iterations": self.iterations, "min_duration_s": self.min_duration_s,
            "threads": self.threads, "options": dict(self.options),
            "verify": {path: list(v) for path, v in self.verify.items()},
            "test_delay_s": self.test_delay_s, "test_slowdown": self.test_slowdown,
        }
        if self.accuracy is not None:
            out["accuracy"] = {"inputs": self.accuracy.inputs, "out": self.accuracy.out}
        return out

    @classmethod
    def from_json(cls, raw: Any) -> RunnerRequest:
        """The request from its wire form; absent keys take their defaults. Raises
        :class:`ProtocolError` naming the field for a key that is not one or a value of the
        wrong type (a misspelt field would otherwise measure the wrong thing silently)."""
        if not isinstance(raw, dict):
            raise ProtocolError("the request is not a JSON object")
        known = set(f.name for f in fields(cls))
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ProtocolError("unknown request field(s) %s" % ", ".join(unknown))
        for key in ("model", "inputs"):
            if not isinstance(raw.get(key, ""), str):
                raise ProtocolError("%s is not a path" % key)
        for key in ("warmup_iterations", "iterations"):
            if not _is_count(raw.get(key, 0)):
                raise ProtocolError("%s is not a non-negative integer" % key)
        threads = raw.get("threads")
        if threads is not None and not _is_count(threads):
            raise ProtocolError("threads is not a non-negative integer or null")
        verify = _object(raw, "verify")
        for path, expected in verify.items():
            if not (isinstance(expected, list) and len(expected) == 2
                    and isinstance(expected[0], str) and _is_count(expected[1])):
                raise ProtocolError("verify[%r] is not [sha256, size]" % path)
        accuracy = raw.get("accuracy")
        if accuracy is not None and not (
                isinstance(accuracy, dict) and isinstance(accuracy.get("inputs"), str)
                and isinstance(accuracy.get("out"), str)):
            raise ProtocolError("accuracy is not {\"inputs\": PATH, \"out\": PATH}")
        return cls(
            model=raw.get("model", ""), inputs=raw.get("inputs", ""),
            warmup_iterations=raw.get("warmup_iterations", 0),
            warmup_s=_number(raw, "warmup_s", 0.0), iterations=raw.get("iterations", 1),
            min_duration_s=_number(raw, "min_duration_s", 0.0), threads=threads or None,
            options=_object(raw, "options"),
            verify={path: (v[0], v[1]) for path, v in verify.items()},
            accuracy=AccuracyRequest(accuracy["inputs"], accuracy["out"]) if accuracy
            else None,
            test_delay_s=_number(raw, "test_delay_s", 0.0),
            test_slowdown=_number(raw, "test_slowdown", 0.0))


@dataclass(frozen=True)
class RuntimeReport:
    """The runtime that ran the model: name and version, the threads it was given
    (``None``: its default), its execution providers, free-form details (strings) and, for a
    runtime with delegates, the delegation summary (``{"delegate": name,
    "nodes_delegated": n, "nodes_total": n, "partitions": n, "fallback_ops": {op: n}}``,
    checked by the host against ``edgebench.records.Delegation``)."""

    name: str
    version: str
    threads: Optional[int] = None
    providers: Tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)
    delegation: Optional[Mapping[str, Any]] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire form; ``delegation`` is absent when there is none."""
        out: Dict[str, Any] = {"name": self.name, "version": self.version,
                               "threads": self.threads, "providers": list(self.providers),
                               "details": dict(self.details)}
        if self.delegation is not None:
            out["delegation"] = dict(self.delegation)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> RuntimeReport:
        """Raises :class:`ProtocolError` naming the malformed field."""
        if not isinstance(raw, dict):
            raise ProtocolError("runtime is missing or not an object")
        for key in ("name", "version"):
            if not isinstance(raw.get(key), str):
                raise ProtocolError("runtime.%s is missing or not a string" % key)
        threads = raw.get("threads")
        if threads is not None and not _is_int(threads):
            raise ProtocolError("runtime.threads is not an integer")
        providers = raw.get("providers", [])
        if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
            raise ProtocolError("runtime.providers is not a list of strings")
        details = raw.get("details", {})
        if not isinstance(details, dict) or not all(isinstance(v, str)
                                                    for v in details.values()):
            raise ProtocolError("runtime.details is not an object of strings")
        delegation = raw.get("delegation")
        if delegation is not None and not isinstance(delegation, dict):
            raise ProtocolError("runtime.delegation is not an object")
        return cls(raw["name"], raw["version"], threads, tuple(providers), dict(details),
                   delegation or None)


@dataclass(frozen=True)
class OutputSummary:
    """One output of the first inference: its shape, numpy dtype name and whether every
    value is finite (``False``: NaN or infinity, the case fails)."""

    shape: Tuple[int, ...] = ()
    dtype: str = ""
    finite: bool = True

    def to_json(self) -> Dict[str, Any]:
        """The wire form."""
        return {"shape": list(self.shape), "dtype": self.dtype, "finite": self.finite}

    @classmethod
    def from_json(cls, raw: Any) -> OutputSummary:
        """Raises :class:`ProtocolError` for a value that is not an output summary."""
        if not isinstance(raw, dict):
            raise ProtocolError("outputs is not a list of objects")
        shape, dtype, finite = raw.get("shape", []), raw.get("dtype", ""), raw.get("finite", True)
        if not isinstance(shape, list) or not all(_is_int(d) for d in shape) \
                or not isinstance(dtype, str) or not isinstance(finite, bool):
            raise ProtocolError("an output is not {shape: [int], dtype: str, finite: bool}")
        return cls(tuple(shape), dtype, finite)


@dataclass(frozen=True)
class AccuracyPass:
    """What the accuracy pass did: ``images`` run in ``seconds`` (wall), or why it was
    ``skipped``."""

    images: Optional[int] = None
    seconds: Optional[float] = None
    skipped: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire form: ``{"skipped": why}`` or ``{"images": n, "seconds": s}``."""
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {"images": self.images, "seconds": self.seconds}

    @classmethod
    def from_json(cls, raw: Any) -> AccuracyPass:
        """Raises :class:`ProtocolError` for a value that is not an accuracy summary."""
        if not isinstance(raw, dict):
            raise ProtocolError("accuracy is not an object")
        skipped = raw.get("skipped")
        images, seconds = raw.get("images"), raw.get("seconds")
        if skipped is not None and not isinstance(skipped, str):
            raise ProtocolError("accuracy.skipped is not a string")
        if images is not None and not _is_count(images):
            raise ProtocolError("accuracy.images is not a non-negative integer")
        if seconds is not None and not _is_number(seconds):
            raise ProtocolError("accuracy.seconds is not a finite number")
        return cls(images, None if seconds is None else float(seconds), skipped)


MESSAGE_LIMIT = 4000
"""Characters of a :class:`RunnerError` message: a runtime's cause is often on its last
lines (OpenVINO), so the runner sends the whole message up to this length."""


@dataclass(frozen=True)
class LoadReading:
    """The machine's CPU load during the timed loop (``edgebench_readings.cpu_load``):
    the loop's ``window_s``; ``cores`` online; CPU seconds of the whole machine
    (``busy_cpu_s``), of the runner (``own_cpu_s``) and of every other process
    (``other_cpu_s``); the 1-minute load average at the loop's start and end; the
    ``source`` (``/proc/stat`` or ``psutil``); when the loop started and ended, in seconds
    before the result was written (the host lines its own readings up with them).
    ``None`` where the device cannot tell."""

    window_s: float = 0.0
    cores: Optional[int] = None
    busy_cpu_s: Optional[float] = None
    own_cpu_s: Optional[float] = None
    other_cpu_s: Optional[float] = None
    loadavg_1m_before: Optional[float] = None
    loadavg_1m_after: Optional[float] = None
    source: Optional[str] = None
    started_before_end_s: Optional[float] = None
    ended_before_end_s: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, raw: Any) -> LoadReading:
        """Raises :class:`ProtocolError` naming a field that is not a finite number (or
        null); unknown keys are ignored (a newer agent may read more)."""
        if not isinstance(raw, dict):
            raise ProtocolError("load is not an object")
        values: Dict[str, Any] = {}
        for f in fields(cls):
            value = raw.get(f.name)
            if f.name == "source":
                if value is not None and not isinstance(value, str):
                    raise ProtocolError("load.source is not a string")
            elif f.name == "cores":
                if value is not None and not _is_count(value):
                    raise ProtocolError("load.cores is not a non-negative integer")
            elif value is not None and not _is_number(value):
                raise ProtocolError("load.%s is not a finite number" % f.name)
            elif value is not None:
                value = float(value)
            if value is not None:
                values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class RunnerError:
    """Why a runner failed: the phase it was in (``verify``, ``import``, ``inputs``,
    ``load``, ``first inference``, ``warm-up``, ``timed loop``, ``accuracy pass``), the
    message (whole, up to :data:`MESSAGE_LIMIT` characters: a runtime's cause may be on
    its last line), and the device-side traceback of an unexpected exception."""

    phase: str
    message: str
    traceback: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire form; ``traceback`` is absent when there is none."""
        out = {"phase": self.phase, "message": self.message}
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return out


@dataclass(frozen=True)
class RunnerResult:
    """What one runner process measured (every time in nanoseconds, memory in bytes).

    Fields the runner did not reach (it failed, or the device has no ``/proc``) are
    ``None``. ``samples_ns``/``cpu_samples_ns``: wall and process-CPU time of each timed
    iteration; ``warmup_ns``: each warm-up iteration; ``init_ns``: the model load;
    ``rss_*``: resident set size before anything, before and after the load; ``peak_*``:
    its high-water mark.
    """

    protocol: int = PROTOCOL
    rss_baseline_bytes: Optional[int] = None
    rss_before_load_bytes: Optional[int] = None
    init_ns: Optional[int] = None
    rss_after_load_bytes: Optional[int] = None
    runtime: Optional[RuntimeReport] = None
    first_inference_ns: Optional[int] = None
    outputs: Optional[Tuple[OutputSummary, ...]] = None
    warmup_ns: Optional[Tuple[int, ...]] = None
    samples_ns: Optional[Tuple[int, ...]] = None
    cpu_samples_ns: Optional[Tuple[int, ...]] = None
    peak_rss_bytes: Optional[int] = None
    accuracy: Optional[AccuracyPass] = None
    load: Optional[LoadReading] = None
    error: Optional[RunnerError] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire form: the fields that are set (``None`` ones absent), the memory
        readings of the phases reached always (``null`` where unreadable)."""
        out: Dict[str, Any] = {
            "protocol": self.protocol, "rss_baseline_bytes": self.rss_baseline_bytes,
            "rss_before_load_bytes": self.rss_before_load_bytes, "init_ns": self.init_ns,
            "rss_after_load_bytes": self.rss_after_load_bytes,
            "runtime": self.runtime.to_json() if self.runtime is not None else None,
            "first_inference_ns": self.first_inference_ns,
            "outputs": [o.to_json() for o in self.outputs] if self.outputs is not None
            else None,
            "warmup_ns": self.warmup_ns, "samples_ns": self.samples_ns,
            "cpu_samples_ns": self.cpu_samples_ns, "peak_rss_bytes": self.peak_rss_bytes,
            "accuracy": self.accuracy.to_json() if self.accuracy is not None else None,
            "load": self.load.to_json() if self.load is not None else None,
            "error": self.error.to_json() if self.error is not None else None,
        }
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()
                if v is not None or k.startswith("rss_")}

    @classmethod
    def from_json(cls, raw: Any) -> RunnerResult:
        """The result of a runner that finished (no ``error``), checked: the timings the
        host computes statistics from must be there with their types. Raises
        :class:`ProtocolError` naming the first malformed field."""
        if not isinstance(raw, dict):
            raise ProtocolError("not a JSON object")
        if any(isinstance(v, float) and not math.isfinite(v) for v in raw.values()):
            raise ProtocolError("a number is not finite")
        samples = _counts(raw, "samples_ns", non_empty=True)
        if samples is None:
            raise ProtocolError("samples_ns is not a non-empty list of non-negative integers")
        cpu = _counts(raw, "cpu_samples_ns") or ()
        if cpu and len(cpu) != len(samples):
            raise ProtocolError("cpu_samples_ns is not a list of non-negative integers, one "
                                "per sample")
        for key in ("init_ns", "first_inference_ns"):
            if not _is_count(raw.get(key)):
                raise ProtocolError("%s is not a non-negative integer" % key)
        outputs = raw.get("outputs", [])
        if not isinstance(outputs, list):
            raise ProtocolError("outputs is not a list of objects")
        accuracy = raw.get("accuracy")
        load = raw.get("load")
        protocol = raw.get("protocol", PROTOCOL)
        if not _is_int(protocol):
            raise ProtocolError("protocol is not an integer")
        return cls(
            protocol=protocol,
            rss_baseline_bytes=_count(raw, "rss_baseline_bytes"),
            rss_before_load_bytes=_count(raw, "rss_before_load_bytes"),
            init_ns=raw["init_ns"],
            rss_after_load_bytes=_count(raw, "rss_after_load_bytes"),
            runtime=RuntimeReport.from_json(raw.get("runtime")),
            first_inference_ns=raw["first_inference_ns"],
            outputs=tuple(OutputSummary.from_json(o) for o in outputs),
            warmup_ns=_counts(raw, "warmup_ns") or (),
            samples_ns=samples, cpu_samples_ns=cpu,
            peak_rss_bytes=_count(raw, "peak_rss_bytes"),
            accuracy=AccuracyPass.from_json(accuracy) if accuracy is not None else None,
            load=LoadReading.from_json(load) if load is not None else None)
