"""One runner invocation on a device: push what it needs, run it, pull what it wrote.

Every failure is a :class:`CaseError` of one sentence; a failure of the link to the device
is a :class:`~edgebench.retry.ConnectionLost` that says in which phase it happened (``push of
the model``, ``timed loop``, ``pull of the result``), which the run retries. The runner's
result JSON comes from the device and is checked before the host uses it: a malformed one
fails the case, it never crashes the harness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .agent.edgebench_protocol import (
    MESSAGE_LIMIT,
    AccuracyRequest,
    ProtocolError,
    RunnerRequest,
    RunnerResult,
)
from .cache import artifact_files, sha256_file
from .contracts import Device
from .errors import CaseError
from .fingerprint import DeviceAgent
from .records import RunSettings
from .retry import ConnectionLost, RunnerTimedOut, last_phase


def runner_request(settings: RunSettings, options: Mapping[str, Any],
                   test_options: Mapping[str, float] | None = None) -> RunnerRequest:
    """The request of a case measured with ``settings`` and the backend's resolved runner
    ``options`` (``Backend.runner_options``): the one place the host turns settings into a
    :class:`RunnerRequest`. The paths (model, inputs, files to verify, accuracy pass) are
    filled in by :func:`run_job` once pushed. ``test_options``: test-only knobs
    (``test_delay_s``, ``test_slowdown``); another name raises ``ProtocolError``."""
    request = RunnerRequest(
        warmup_iterations=settings.warmup_iterations, warmup_s=settings.warmup_s,
        iterations=settings.iterations, min_duration_s=settings.min_duration_s,
        threads=settings.threads, options=dict(options))
    return request.with_test_options(test_options) if test_options else request


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
    request: RunnerRequest
    """Settings and options (see :func:`runner_request`); :func:`run_job` adds the paths."""
    timeout_s: float
    owner: str = ""
    """Who wrote the runner, for messages (``the runner of backend 'x' (plugin ...)``);
    ``""``: not said."""


@dataclass(frozen=True)
class RunnerOutcome:
    """What one runner invocation returned."""

    result: RunnerResult
    """The runner's result (see ``edgebench_agent.measure``), checked by
    :func:`check_result`."""
    outputs: list[list[np.ndarray]] | None
    """Per accuracy input (an image, or a group of a static batch: see
    :mod:`edgebench.batching`), the model's outputs in order; ``None`` without an accuracy
    pass."""


class Pusher:
    """Pushes each file once per device (models and tensors are large; Pis are slow), and
    remembers what each pushed file must hash to (the runner checks before loading)."""

    def __init__(self) -> None:
        self._pushed: dict[tuple[Device, str], tuple[str, int]] = {}
        """By entered device, not URI: the devices of a URI that stands for several boards
        (``Device.slots``) each get their own copy."""

    def once(self, device: Device, local: Path, remote: PurePosixPath) -> PurePosixPath:
        """Push ``local`` to ``remote`` on ``device`` unless it was pushed there already;
        return ``remote``."""
        key = (device, str(remote))
        if key not in self._pushed:
            device.push(local, remote)
            self._pushed[key] = (sha256_file(local), local.stat().st_size)
        return remote

    def expected(self, device: Device, remote: PurePosixPath) -> tuple[str, int]:
        """``(sha256, size)`` of the file pushed to ``remote``."""
        return self._pushed[(device, str(remote))]

    def forget(self, device: Device) -> None:
        """Push everything again on ``device`` (after a lost connection: files may be gone
        or half-written; or it was left)."""
        for key in [k for k in self._pushed if k[0] is device]:
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
    tag = f"{time.time_ns() % 10**12:012d}"
    remote_outputs = work / f"outputs-{tag}.npz"
    accuracy = None
    if job.accuracy_inputs is not None:
        batch = pusher.once(device, job.accuracy_inputs,
                            work / "inputs" / _unique_name(job.accuracy_inputs))
        accuracy = AccuracyRequest(inputs=str(batch), out=str(remote_outputs))
    request = dataclasses.replace(
        job.request, model=str(model), inputs=str(inputs), accuracy=accuracy,
        verify={str(f): pusher.expected(device, f) for f in model_files})
    remote_request = work / f"request-{tag}.json"
    remote_result = work / f"result-{tag}.json"
    with tempfile.TemporaryDirectory(prefix="edgebench-job-") as tmp:
        local_request = Path(tmp) / "request.json"
        local_request.write_text(json.dumps(request.to_json()))
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
            tail = (done.stderr or done.stdout).strip().splitlines()[-30:] or [str(exc)]
            raise CaseError(f"the runner exited with code {done.returncode} and no "
                            f"result: {chr(10).join(tail)[-MESSAGE_LIMIT:]}") from None
        if isinstance(raw, dict) and isinstance(raw.get("error"), dict):
            err = raw["error"]
            message = (f"{err.get('phase', 'run')} failed: "
                       f"{str(err.get('message'))[:MESSAGE_LIMIT + 100]}")
            if err.get("phase") == "verify":  # a copy went wrong: push it all again
                raise ConnectionLost(str(err.get("message"))[:500], during="push of the model",
                                     what="copy corrupted")
            missing = _missing_module(err)
            if missing is not None:
                raise RuntimeMissing(message, missing)
            raise CaseError(message)
        result = check_result(raw, job.owner)
        outputs = None
        if job.accuracy_inputs is not None and (
                result.accuracy is None or result.accuracy.skipped is None):
            phase[0] = "pull of the outputs"
            local_outputs = Path(tmp) / "outputs.npz"
            device.pull(remote_outputs, local_outputs)
            outputs = _read_outputs(local_outputs)
    return RunnerOutcome(result, outputs)


class RuntimeMissing(CaseError):
    """The runner could not import a module (its runtime) on the device: ``module``."""

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message)
        self.module = module


_NO_MODULE = re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'")


def _missing_module(err: Mapping[str, Any]) -> str | None:
    """The module a runner failed to import in its ``import`` phase, or ``None``."""
    found = _NO_MODULE.match(str(err.get("message", "")))
    return found.group(1) if found and err.get("phase") == "import" else None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_result(raw: Any, owner: str = "") -> RunnerResult:
    """The runner's result from its JSON, checked: the fields the host computes from, with
    the types it expects (:meth:`RunnerResult.from_json`) and a delegation summary that is
    a :class:`~edgebench.records.Delegation`. Raises :class:`CaseError` ("the runner's
    result is malformed: <field> (<owner>)") otherwise; ``owner`` names who wrote the
    runner (:attr:`RunnerJob.owner`)."""
    whose = f" ({owner})" if owner else ""
    try:
        result = RunnerResult.from_json(raw)
    except ProtocolError as exc:
        raise CaseError(f"the runner's result is malformed: {exc}{whose}") from None
    delegation = result.runtime.delegation if result.runtime is not None else None
    if delegation is not None:
        from .record_json import from_json_dict
        from .records import Delegation

        try:
            from_json_dict(Delegation, dict(delegation))
        except (ValueError, TypeError) as exc:
            raise CaseError(f"the runner's result is malformed: runtime.delegation: "
                            f"{exc}{whose}") from None
    return result


def _unique_name(path: Path) -> str:
    """A device-side file name that differs whenever the host file does: input files of
    different datasets / sizes share names (``batch.npy``) in differently keyed dirs."""
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
