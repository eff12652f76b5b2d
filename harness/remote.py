"""One runner invocation on a device: push what it needs, run it, pull what it wrote.

Every failure is a :class:`CaseError` of one sentence; a failure of the link to the device
is a :class:`~edgebench.retry.ConnectionLost` that says in which phase it happened (``push of
the model``, ``timed loop``, ``pull of the result``), which the run retries. The runner's
result JSON comes from the device and is checked before the host uses it: a malformed one
fails the case, it never crashes the harness.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .cache import artifact_files, sha256_file
from .contracts import Device
from .errors import CaseError
from .fingerprint import DeviceAgent
from .retry import ConnectionLost, RunnerTimedOut, last_phase


@dataclass(frozen=True)
class RunnerJob:
    """What to run: a runner script on a model, timed on one input, optionally the batch."""

    runner: Path
    model: Path
    """A model file, or a directory artifact whose files are all pushed."""
    model_key: str
    """Content hash: the model is pushed once per device under this name."""
    inputs: Path
    accuracy_inputs: Path | None
    request: dict[str, Any]
    timeout_s: float


@dataclass(frozen=True)
class RunnerOutcome:
    raw: dict[str, Any]
    """The runner's result JSON (see ``edgebench_agent.measure``), checked by
    :func:`check_result`."""
    outputs: list[list[np.ndarray]] | None
    """Per accuracy input (an image, or a group of a static batch: see
    :mod:`edgebench.batching`), the model's outputs in order; ``None`` without an accuracy
    pass."""


class Pusher:
    """Pushes each file once per device (models and tensors are large; Pis are slow), and
    remembers what each pushed file must hash to (the runner checks before loading)."""

    def __init__(self) -> None:
        self._pushed: dict[tuple[str, str], tuple[str, int]] = {}

    def once(self, device: Device, local: Path, remote: PurePosixPath) -> PurePosixPath:
        key = (device.uri, str(remote))
        if key not in self._pushed:
            device.push(local, remote)
            self._pushed[key] = (sha256_file(local), local.stat().st_size)
        return remote

    def expected(self, device: Device, remote: PurePosixPath) -> tuple[str, int]:
        """``(sha256, size)`` of the file pushed to ``remote``."""
        return self._pushed[(device.uri, str(remote))]

    def forget(self, uri: str) -> None:
        """Push everything again on ``uri`` (after a lost connection: files may be gone or
        half-written)."""
        for key in [k for k in self._pushed if k[0] == uri]:
            del self._pushed[key]


def push_model(device: Device, pusher: Pusher, model: Path, stem: PurePosixPath
               ) -> tuple[PurePosixPath, list[PurePosixPath]]:
    """Push a model file as ``<stem><suffix>``, or every file of a directory artifact
    (ncnn's ``.param`` + ``.bin``) into the directory ``<stem>``; return the remote path
    and the remote files."""
    if not model.is_dir():
        remote = pusher.once(device, model, stem.with_name(stem.name + model.suffix))
        return remote, [remote]
    files = [pusher.once(device, f, stem.joinpath(*f.relative_to(model).parts))
             for f in artifact_files(model)]
    return stem, files


def run_job(device: Device, agent: DeviceAgent, job: RunnerJob, pusher: Pusher
            ) -> RunnerOutcome:
    """Run ``job`` on ``device``; raise :class:`CaseError` with one sentence on failure."""
    phase = ["push of the runner"]
    try:
        return _run_job(device, agent, job, pusher, phase)
    except ConnectionLost as exc:
        if exc.during is None:
            exc.during = (last_phase(exc.output) or "runner start") if phase[0] == "run" \
                else phase[0]
        raise
    except RunnerTimedOut as exc:
        where = last_phase(exc.output)
        raise CaseError(f"timed out after {exc.timeout_s:g} s"
                        + (f" in the {where}" if where else "")
                        + "; the runner was killed") from None


def _run_job(device: Device, agent: DeviceAgent, job: RunnerJob, pusher: Pusher,
             phase: list[str]) -> RunnerOutcome:
    work = device.workdir
    phase[0] = "push of the agent"
    _ = agent.path  # the runner imports the agent from its own directory
    phase[0] = "push of the runner"
    runner = pusher.once(device, job.runner, work / job.runner.name)
    phase[0] = "push of the model"
    model, model_files = push_model(device, pusher, job.model, work / "models" / job.model_key)
    phase[0] = "push of the inputs"
    inputs = pusher.once(device, job.inputs, work / "inputs" / _unique_name(job.inputs))
    request = {**job.request, "model": str(model), "inputs": str(inputs)}
    request["verify"] = {str(f): list(pusher.expected(device, f)) for f in model_files}
    tag = f"{time.time_ns() % 10**12:012d}"
    remote_outputs = work / f"outputs-{tag}.npz"
    if job.accuracy_inputs is not None:
        batch = pusher.once(device, job.accuracy_inputs,
                            work / "inputs" / _unique_name(job.accuracy_inputs))
        request["accuracy"] = {"inputs": str(batch), "out": str(remote_outputs)}
    remote_request = work / f"request-{tag}.json"
    remote_result = work / f"result-{tag}.json"
    with tempfile.TemporaryDirectory(prefix="edgebench-job-") as tmp:
        local_request = Path(tmp) / "request.json"
        local_request.write_text(json.dumps(request))
        phase[0] = "push of the request"
        device.push(local_request, remote_request)
        phase[0] = "run"
        done = device.run([device.python, str(runner), "--request", str(remote_request),
                           "--out", str(remote_result)], timeout_s=job.timeout_s)
        phase[0] = "pull of the result"
        local_result = Path(tmp) / "result.json"
        try:
            device.pull(remote_result, local_result)
            raw = json.loads(local_result.read_text(), parse_constant=_no_constant)
        except ConnectionLost:
            raise
        except (CaseError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [str(exc)]
            raise CaseError(f"the runner exited with code {done.returncode} and no "
                            f"result: {tail[0][:300]}") from None
        if isinstance(raw, dict) and isinstance(raw.get("error"), dict):
            err = raw["error"]
            message = f"{err.get('phase', 'run')} failed: {str(err.get('message'))[:500]}"
            if err.get("phase") == "verify":  # a copy went wrong: push it all again
                raise ConnectionLost(str(err.get("message"))[:500], during="push of the model",
                                     what="copy corrupted")
            raise CaseError(message)
        check_result(raw)
        outputs = None
        if job.accuracy_inputs is not None and "skipped" not in raw.get("accuracy", {}):
            phase[0] = "pull of the outputs"
            local_outputs = Path(tmp) / "outputs.npz"
            device.pull(remote_outputs, local_outputs)
            outputs = _read_outputs(local_outputs)
    return RunnerOutcome(raw, outputs)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def check_result(raw: Any) -> None:
    """Raise :class:`CaseError` unless ``raw`` is a runner result the host can use: the
    fields ``runner._result_from_raw`` reads, with the types it expects."""
    def bad(what: str) -> CaseError:
        return CaseError(f"the runner's result is malformed: {what}")

    if not isinstance(raw, dict):
        raise bad("not a JSON object")
    samples = raw.get("samples_ns")
    if not isinstance(samples, list) or not samples or not all(map(_is_count, samples)):
        raise bad("samples_ns is not a non-empty list of non-negative integers")
    cpu = raw.get("cpu_samples_ns", [])
    if not isinstance(cpu, list) or not all(map(_is_count, cpu)) or (
            cpu and len(cpu) != len(samples)):
        raise bad("cpu_samples_ns is not a list of non-negative integers, one per sample")
    warmup = raw.get("warmup_ns", [])
    if not isinstance(warmup, list) or not all(map(_is_count, warmup)):
        raise bad("warmup_ns is not a list of non-negative integers")
    for key in ("init_ns", "first_inference_ns"):
        if not _is_count(raw.get(key)):
            raise bad(f"{key} is not a non-negative integer")
    for key in ("rss_baseline_bytes", "rss_before_load_bytes", "rss_after_load_bytes",
                "peak_rss_bytes"):
        if raw.get(key) is not None and not _is_count(raw[key]):
            raise bad(f"{key} is not a non-negative integer")
    rt = raw.get("runtime")
    if not isinstance(rt, dict) or not isinstance(rt.get("name"), str) \
            or not isinstance(rt.get("version"), str):
        raise bad("runtime has no name and version")
    if rt.get("threads") is not None and not _is_int(rt["threads"]):
        raise bad("runtime.threads is not an integer")
    if not isinstance(rt.get("providers", []), list) \
            or not all(isinstance(p, str) for p in rt.get("providers", [])):
        raise bad("runtime.providers is not a list of strings")
    details = rt.get("details", {})
    if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
        raise bad("runtime.details is not an object of strings")
    if rt.get("delegation") is not None:
        from .record_json import from_json_dict
        from .records import Delegation

        try:
            from_json_dict(Delegation, rt["delegation"])
        except (ValueError, TypeError) as exc:
            raise bad(f"runtime.delegation: {exc}") from None
    outputs = raw.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise bad("outputs is not a list of objects")
    accuracy = raw.get("accuracy", {})
    if not isinstance(accuracy, dict):
        raise bad("accuracy is not an object")
    if any(isinstance(v, float) and not math.isfinite(v) for v in raw.values()):
        raise bad("a number is not finite")


def _unique_name(path: Path) -> str:
    """A device-side file name that differs whenever the host file does: input files of
    different datasets / sizes share names (``batch.npz``) in differently keyed dirs."""
    return f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}-{path.name}"


def _read_outputs(path: Path) -> list[list[np.ndarray]]:
    """The accuracy pass's outputs: ``IMAGE_OUTPUT`` keys; anything else is malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files, key=lambda k: tuple(int(p) for p in k.split("_")))
            by_image: dict[int, list[np.ndarray]] = {}
            for key in keys:
                image, _ = key.split("_")
                by_image.setdefault(int(image), []).append(data[key])
    except (OSError, ValueError, EOFError) as exc:
        raise CaseError(f"the runner's outputs are malformed: {exc}") from None
    return [by_image[i] for i in sorted(by_image)]
