"""Reusing a case's accuracy pass: the same artifact, runtime and data on the same device
give the same outputs, so their mAP and agreement are not measured again.

Each accuracy result a run measures (the whole :class:`~edgebench.records.Accuracy`, with
the runtime the runner reported) is stored under ``<cache root>/accuracy/`` keyed by
everything that can change the outputs or their evaluation (:func:`accuracy_key`):

- the artifact's sha256 and format;
- the backend, the versions the device's probe read of its runtime modules and numpy, and
  every resolved runner option plus the requested threads. All options are in the key,
  not only those known to change numerics (ONNX Runtime's graph optimisation level, ncnn's
  fp16 storage and arithmetic, LiteRT's XNNPACK, OpenVINO's inference precision do; a
  thread count can too: XNNPACK and ONNX Runtime split reductions by thread), so an option
  that does not change them costs a re-measurement, never a wrong figure;
- the evaluated images (``Dataset.fingerprint``: content, sizes, labels), the input size,
  the images per inference and the tensor file's name (the batch format);
- the evaluation: conf, IoU, max detections, the agreement threshold, the float
  reference (its name and a hash of its outputs, or why there is none), the backend's box
  convention, :data:`EVALUATION_VERSION`, edgebench's version and pycocotools';
- the device fingerprint: architecture, OS (with the kernel), CPU model, its SIMD flags,
  the core count and the Python version. Not the hostname: two names for one machine
  share entries, and a reinstalled board with the same name does not.

After the timed run (which then has no accuracy pass) the runtime the runner reports
(name, version, threads, providers, details such as the delegate's coverage: the runtime's
build as far as it tells) must equal the stored one, else the pass runs after all
(:meth:`CachedAccuracy.reuse` returns ``None``). The agreement is judged again with the
tolerance the backend declares now.

Entries are written under a lock with an atomic rename; an entry that cannot be read,
parsed or whose stored key is not the one looked up is ignored (the pass runs and
rewrites it). ``edgebench run --fresh`` looks nothing up and rewrites every entry it
measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accuracy import AccuracySettings, check_tolerance
from .record_json import from_json_dict, to_json_dict
from .records import Accuracy, CachedFrom, DeviceInfo, RuntimeInfo, Status, Tolerance
from .redaction import redact

if TYPE_CHECKING:
    from .contracts import Backend
    from .evaluation import AccuracyBatch, Reference
    from .records import Artifact

EVALUATION_VERSION = 1
"""Bump on any change to what the host computes from a runner's outputs (head decoding,
NMS, mAP, fidelity, letterboxing of the images): every cached result is then measured
again."""

ENTRY_FORMAT = "edgebench-accuracy-cache-1"


@dataclass(frozen=True)
class AccuracyKey:
    """What a cached accuracy result is keyed by (see the module docstring): ``fields``
    (JSON values) and their ``digest`` (hex sha256 of their canonical JSON)."""

    fields: Mapping[str, Any]
    digest: str


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON (tuples as lists, non-JSON values as their ``str``)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def reference_identity(reference: Reference | None, problem: str | None) -> dict[str, Any]:
    """The float reference as a key part: what computed it (its name, not where this run got
    it: computed or read from the reference cache) and the sha256 of its outputs (shape,
    dtype, bytes of each image's), or why there is none."""
    if reference is None:
        return {"none": problem or "no reference"}
    digest = hashlib.sha256()
    for out in reference.outputs:
        digest.update(f"{out.dtype.str}{out.shape}".encode())
        digest.update(memoryview(out.tobytes()))
    return {"name": reference.name, "outputs_sha256": digest.hexdigest()}


def device_identity(info: DeviceInfo, runtime_modules: tuple[str, ...]) -> dict[str, Any]:
    """The device fingerprint as a key part: what can change a runtime's numerics there
    (CPU model, SIMD flags, cores, architecture, OS and kernel, Python, the versions of the
    backend's runtime modules and numpy). Not the hostname, temperature, clock or load."""
    return {"arch": info.arch, "os": info.os, "cpu_model": info.cpu_model,
            "cpu_flags": sorted(info.cpu_flags), "cores": info.cores, "python": info.python,
            "runtimes": {m: info.runtimes.get(m) for m in (*runtime_modules, "numpy")}}


def accuracy_key(*, artifact: Artifact, backend: Backend, runner_options: Mapping[str, Any],
                 threads: int | None, batch: AccuracyBatch, settings: AccuracySettings,
                 reference: Reference | None, reference_problem: str | None,
                 info: DeviceInfo, reference_id: Mapping[str, Any] | None = None
                 ) -> AccuracyKey:
    """The key of one case's accuracy pass on the device ``info`` describes. ``reference_id``:
    :func:`reference_identity` already computed (it hashes the reference's outputs)."""
    from . import __version__
    from .evaluation import _library

    fields = _canonical({
        "evaluation_version": EVALUATION_VERSION, "edgebench": __version__,
        "library": _library(),
        "artifact": {"sha256": artifact.sha256, "format": artifact.format},
        "backend": backend.name, "boxes_normalised": backend.boxes_normalised,
        "runner_options": dict(runner_options), "threads": threads,
        "data": {"fingerprint": batch.dataset_fingerprint or batch.dataset.fingerprint(),
                 "images": len(batch.dataset.images), "input_hw": list(batch.input_hw),
                 "batch": batch.batch, "tensors": batch.tensors.name,
                 "input_name": batch.input_name},
        "evaluation": {"conf": settings.conf, "iou": settings.iou, "max_det": settings.max_det,
                       "agreement_conf": settings.agreement_conf},
        "reference": dict(reference_id) if reference_id is not None
        else reference_identity(reference, reference_problem),
        "device": device_identity(info, tuple(backend.runtime_modules)),
    })
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return AccuracyKey(fields, hashlib.sha256(text.encode()).hexdigest())


@dataclass(frozen=True)
class CachedAccuracy:
    """A stored accuracy result: what was measured, with what runtime, and by which run."""

    accuracy: Accuracy
    runtime: Mapping[str, Any]
    """The runtime the runner reported then (``RuntimeInfo`` as JSON)."""
    cached_from: CachedFrom

    def reuse(self, runtime: RuntimeInfo | None, tolerance: Tolerance | None,
              reference: Reference | None) -> Accuracy | None:
        """The stored accuracy for a case whose runner now reported ``runtime``, marked
        ``cached_from`` and its agreement judged against ``tolerance`` (the backend's,
        now); ``None`` when the runtime differs from the stored one's in anything it
        reports (then the pass must run)."""
        if runtime is None or _canonical(to_json_dict(runtime)) != self.runtime:
            return None
        t0 = time.perf_counter()
        fidelity = self.accuracy.fidelity
        if fidelity is not None:
            fidelity = dataclasses.replace(fidelity, tolerance=None, within_tolerance=None)
            if reference is not None:  # the same reference (the key): where this run got it
                fidelity = dataclasses.replace(fidelity, reference=reference.described)
            fidelity = check_tolerance(fidelity, tolerance,
                                       reference.outputs if reference is not None else [])
        return dataclasses.replace(self.accuracy, fidelity=fidelity,
                                   cached_from=self.cached_from,
                                   host_seconds=time.perf_counter() - t0)


class AccuracyCache:
    """The accuracy results under ``root`` (``<cache root>/accuracy``), for one run
    (``run_id``). With ``fresh``, :meth:`lookup` finds nothing (every pass runs) and
    :meth:`store` still rewrites the entries."""

    def __init__(self, root: Path, run_id: str, *, fresh: bool = False) -> None:
        self.root = root
        self.run_id = run_id
        self.fresh = fresh
        self._references: dict[int, tuple[Reference, dict[str, Any]]] = {}

    def key(self, *, artifact: Artifact, backend: Backend, runner_options: Mapping[str, Any],
            threads: int | None, batch: AccuracyBatch, settings: AccuracySettings,
            reference: Reference | None, reference_problem: str | None,
            info: DeviceInfo) -> AccuracyKey:
        """:func:`accuracy_key`, hashing each reference's outputs once per run."""
        ref_id = None
        if reference is not None:
            known = self._references.get(id(reference))
            if known is None or known[0] is not reference:
                known = (reference, reference_identity(reference, None))
                self._references[id(reference)] = known
            ref_id = known[1]
        return accuracy_key(artifact=artifact, backend=backend, runner_options=runner_options,
                            threads=threads, batch=batch, settings=settings,
                            reference=reference, reference_problem=reference_problem,
                            info=info, reference_id=ref_id)

    def path(self, key: AccuracyKey) -> Path:
        """The entry's file: ``<root>/<2 hex>/<digest>.json``."""
        return self.root / key.digest[:2] / f"{key.digest}.json"

    def lookup(self, key: AccuracyKey) -> CachedAccuracy | None:
        """The stored result for ``key``; ``None`` with ``fresh``, when there is none, or
        when the entry is unreadable, corrupt or stored under another key."""
        if self.fresh:
            return None
        try:
            raw = json.loads(self.path(key).read_text())
            if not isinstance(raw, dict) or raw.get("format") != ENTRY_FORMAT \
                    or raw.get("key") != key.fields:
                return None
            accuracy = from_json_dict(Accuracy, raw["accuracy"])
            source = from_json_dict(CachedFrom, raw["cached_from"])
            runtime = raw["runtime"]
            if accuracy.status is not Status.OK or not isinstance(runtime, dict):
                return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return CachedAccuracy(accuracy, runtime, source)

    def store(self, key: AccuracyKey, accuracy: Accuracy, runtime: RuntimeInfo,
              device_uri: str, measured_at: str) -> None:
        """Keep ``accuracy`` (measured by this run on ``device_uri``, its case started at
        ``measured_at``, with ``runtime``) under ``key``, replacing any entry; only a
        result whose status is ``ok``. Never raises: a cache that cannot be written
        costs a re-measurement next time, nothing else."""
        if accuracy.status is not Status.OK or accuracy.cached_from is not None:
            return
        entry = {
            "format": ENTRY_FORMAT, "key": key.fields,
            "accuracy": to_json_dict(accuracy), "runtime": _canonical(to_json_dict(runtime)),
            "cached_from": to_json_dict(CachedFrom(run_id=self.run_id, measured_at=measured_at,
                                                   device=redact(device_uri))),
        }
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _locked(target.with_suffix(".lock")):
                tmp = target.with_name(f".{target.stem}-{os.getpid()}-{time.time_ns()}.tmp")
                try:
                    tmp.write_text(json.dumps(entry, sort_keys=True))
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
        except OSError:
            return


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) across processes, where ``fcntl`` exists."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps entries whole
        yield
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
