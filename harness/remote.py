"""One runner invocation on a device: push what it needs, run it, pull what it wrote."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .contracts import Device
from .errors import CaseError
from .fingerprint import DeviceAgent
from .pipeline import artifact_files


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
    """The runner's result JSON (see ``edgebench_agent.measure``)."""
    outputs: list[list[np.ndarray]] | None
    """Per accuracy image, the model's outputs in order; ``None`` without an accuracy pass."""


class Pusher:
    """Pushes each file once per device (models and tensors are large; Pis are slow)."""

    def __init__(self) -> None:
        self._pushed: set[tuple[str, str]] = set()

    def once(self, device: Device, local: Path, remote: PurePosixPath) -> PurePosixPath:
        key = (device.uri, str(remote))
        if key not in self._pushed:
            device.push(local, remote)
            self._pushed.add(key)
        return remote


def push_model(device: Device, pusher: Pusher, model: Path, stem: PurePosixPath
               ) -> PurePosixPath:
    """Push a model file as ``<stem><suffix>``, or every file of a directory artifact
    (ncnn's ``.param`` + ``.bin``) into the directory ``<stem>``; return the remote path."""
    if not model.is_dir():
        return pusher.once(device, model, stem.with_name(stem.name + model.suffix))
    for f in artifact_files(model):
        pusher.once(device, f, stem.joinpath(*f.relative_to(model).parts))
    return stem


def run_job(device: Device, agent: DeviceAgent, job: RunnerJob, pusher: Pusher
            ) -> RunnerOutcome:
    """Run ``job`` on ``device``; raise :class:`CaseError` with one sentence on failure."""
    work = device.workdir
    _ = agent.path  # the runner imports the agent from its own directory
    runner = pusher.once(device, job.runner, work / job.runner.name)
    model = push_model(device, pusher, job.model, work / "models" / job.model_key)
    inputs = pusher.once(device, job.inputs, work / "inputs" / _unique_name(job.inputs))
    request = {**job.request, "model": str(model), "inputs": str(inputs)}
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
        device.push(local_request, remote_request)
        done = device.run([device.python, str(runner), "--request", str(remote_request),
                           "--out", str(remote_result)], timeout_s=job.timeout_s)
        local_result = Path(tmp) / "result.json"
        try:
            device.pull(remote_result, local_result)
            raw = json.loads(local_result.read_text())
        except (CaseError, ValueError) as exc:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [str(exc)]
            raise CaseError(f"the runner exited with code {done.returncode} and no "
                            f"result: {tail[0]}") from None
        if "error" in raw:
            err = raw["error"]
            raise CaseError(f"{err.get('phase', 'run')} failed: {err.get('message')}")
        outputs = None
        if job.accuracy_inputs is not None and "skipped" not in raw.get("accuracy", {}):
            local_outputs = Path(tmp) / "outputs.npz"
            device.pull(remote_outputs, local_outputs)
            outputs = _read_outputs(local_outputs)
    return RunnerOutcome(raw, outputs)


def _unique_name(path: Path) -> str:
    """A device-side file name that differs whenever the host file does: input files of
    different datasets / sizes share names (``batch.npz``) in differently keyed dirs."""
    import hashlib

    return f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}-{path.name}"


def _read_outputs(path: Path) -> list[list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        keys = sorted(data.files, key=lambda k: tuple(int(p) for p in k.split("_")))
        by_image: dict[int, list[np.ndarray]] = {}
        for key in keys:
            image = int(key.split("_")[0])
            by_image.setdefault(image, []).append(data[key])
    return [by_image[i] for i in sorted(by_image)]
