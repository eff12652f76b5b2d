"""The reference cache: a float reference's raw outputs, computed once per content key.

A float reference (the ``.pt`` run by PyTorch, an ``.onnx`` run by ONNX Runtime with graph
optimisations off) depends only on what :class:`ReferenceKey` holds: the source's sha256,
the content hash of the evaluated tensors (not their path), the kind of reference, the
versions of the tools that compute it, the hash of the code that drives them, and the
options that change its outputs (thread count, graph optimisation level, input size,
batch). Two runs with the same key get the same outputs, so the second one reads them.

An entry is the directory ``cache_root()/references/<key digest>/`` holding
``outputs.npz`` (``"<tensor>_<output>"`` arrays, float32 as computed) and ``entry.json``
(the key, the reference's description, the sha256 of ``outputs.npz``, when and how long it
took to compute). It is written into a staging directory and renamed into place, under a
file lock (``<key digest>.lock``, ``fcntl.flock``, released by the OS if the process dies),
so two runs filling the same entry compute it once and never read half of it. An entry that
does not validate (unreadable ``entry.json``, another key, a hash mismatch: a truncated or
modified ``outputs.npz``) is moved aside and recomputed, never trusted.

Only the raw outputs are cached: decoding them (thresholds, head layout) happens on every
run, so the accuracy settings are not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .cache import cache_root, sha256_file

__all__ = ["REFERENCE_CACHE_VERSION", "CachedReference", "ReferenceKey", "cached_reference",
           "code_sha256", "tool_versions"]

REFERENCE_CACHE_VERSION = 1
"""Bumped when the entry layout changes; part of every key."""

Outputs = list[list[np.ndarray]]
"""Per input tensor (``"0".."N-1"``), its outputs (each with the tensor's batch axis)."""
Computed = tuple[str, Outputs]
"""What a reference computation returns: (its description, its outputs)."""


@dataclass(frozen=True)
class ReferenceKey:
    """Everything a float reference's outputs depend on.

    ``kind``: ``"pytorch"`` or ``"onnxruntime"``. ``source_sha256``: the model's content
    hash (``Artifact.sha256``). ``tensors_sha256``: :func:`edgebench.cache.sha256_file` of
    the evaluated tensors. ``tools``: name -> version of the computing tools (and
    ``code`` -> :func:`code_sha256` of the code driving them). ``options``: anything else
    that changes the outputs (``threads``, ``graph_optimization_level``, ``input_hw``,
    ``batch``), JSON values.
    """

    kind: str
    source_sha256: str
    tensors_sha256: str
    tools: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The key as stored in ``entry.json`` (JSON-normalised: tuples become lists)."""
        loaded: dict[str, Any] = json.loads(json.dumps(
            {"v": REFERENCE_CACHE_VERSION, "kind": self.kind, "source": self.source_sha256,
             "tensors": self.tensors_sha256, "tools": dict(self.tools),
             "options": dict(self.options)}, sort_keys=True))
        return loaded

    def digest(self) -> str:
        """24 hex digits of the sha256 of :meth:`payload`: the entry's directory name."""
        text = json.dumps(self.payload(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CachedReference:
    """A reference's outputs and where they came from."""

    name: str
    """The reference's description (tool, versions, model), as its computation gave it."""
    outputs: Outputs
    cached: bool
    """``True``: read from an entry written earlier (by an earlier run, or by a concurrent
    one this run waited for); ``False``: computed by this call."""
    entry: Path
    computed_at: str
    """When the outputs were computed, ISO 8601 UTC."""
    compute_s: float
    """Wall seconds the computation took (then, for a cached entry)."""

    def origin(self) -> str:
        """One phrase for the report: ``computed by this run (12.3 s)`` or ``read from the
        reference cache (computed 2026-12-01T02:40:11Z)``."""
        if self.cached:
            return f"read from the reference cache (computed {self.computed_at})"
        return f"computed by this run ({self.compute_s:.1f} s), now in the reference cache"


def cached_reference(key: ReferenceKey, compute: Callable[[], Computed],
                     root: Path | None = None) -> CachedReference:
    """``compute()`` once per ``key``: the stored outputs when a valid entry exists under
    ``root`` (default ``cache_root() / "references"``), else computed, stored and returned.

    Concurrent callers with the same key (threads or processes) serialise on the entry's
    file lock: one computes, the others then read its entry. Errors of ``compute`` (e.g.
    :class:`edgebench.errors.CaseError`) propagate and store nothing. A cache that cannot
    be written (read-only, full disk) still returns the computed outputs.
    """
    folder = root if root is not None else cache_root() / "references"
    digest = key.digest()
    entry = folder / digest
    hit = _read(entry, key, discard=False)  # no lock: a complete entry never changes
    if hit is not None:
        return hit
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return _compute(key, compute, entry)
    with _locked(folder / f"{digest}.lock"):
        hit = _read(entry, key, discard=True)  # filled by another process meanwhile?
        if hit is not None:
            return hit
        computed = _compute(key, compute, entry)
        try:
            _store(entry, key, computed)
        except OSError:
            pass  # unwritable cache: this run still has its reference
        return computed


def tool_versions(*names: str) -> dict[str, str]:
    """Installed distribution versions (``importlib.metadata``, no import of the tool);
    ``"not installed"`` for a missing one."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def code_sha256(files: Iterable[Path]) -> str:
    """16 hex digits of the sha256 over ``files``' names and contents, in the given order:
    the code computing a reference, so that changing it is a cache miss."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()[:16]


# -- internals ---------------------------------------------------------------------------


def _compute(key: ReferenceKey, compute: Callable[[], Computed], entry: Path
             ) -> CachedReference:
    started = time.perf_counter()
    name, outputs = compute()
    return CachedReference(name=name, outputs=outputs, cached=False, entry=entry,
                           computed_at=_now(), compute_s=time.perf_counter() - started)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # an unwritable cache: no lock, and _store fails quietly too
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(entry: Path, key: ReferenceKey, *, discard: bool) -> CachedReference | None:
    """The entry's outputs if it is complete and is ``key``'s, else ``None``. With
    ``discard`` (only under the entry's lock), an entry that exists but does not validate
    is moved aside, to be recomputed."""
    meta_path, data_path = entry / "entry.json", entry / "outputs.npz"
    if not entry.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if (not isinstance(meta, dict) or meta.get("key") != key.payload()
                or sha256_file(data_path) != meta.get("outputs_sha256")):
            raise ValueError("does not match its key or its hash")
        outputs = _load_outputs(data_path, int(meta["tensors"]))
        return CachedReference(name=str(meta["name"]), outputs=outputs, cached=True,
                               entry=entry, computed_at=str(meta["computed_at"]),
                               compute_s=float(meta["compute_s"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        if discard:
            _discard(entry)
        return None


def _discard(entry: Path) -> None:
    """Move a bad entry out of the way (atomic rename, then delete), so that no reader
    sees it and the next writer can rename its own into place."""
    aside = entry.with_name(f".bad-{entry.name}-{os.getpid()}-{time.time_ns()}")
    try:
        entry.rename(aside)
    except OSError:
        return  # already moved or replaced by another process
    shutil.rmtree(aside, ignore_errors=True)


def _load_outputs(path: Path, tensors: int) -> Outputs:
    with np.load(path, allow_pickle=False) as data:
        by_tensor: dict[int, list[np.ndarray]] = {}
        for name in sorted(data.files, key=lambda k: tuple(int(p) for p in k.split("_"))):
            by_tensor.setdefault(int(name.split("_")[0]), []).append(data[name])
    if sorted(by_tensor) != list(range(tensors)):
        raise ValueError(f"holds {len(by_tensor)} of {tensors} tensors")
    return [by_tensor[i] for i in range(tensors)]


def _store(entry: Path, key: ReferenceKey, computed: CachedReference) -> None:
    """Write the entry into a staging directory next to it and rename it into place."""
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}-"))
    try:
        data_path = staging / "outputs.npz"
        arrays = {f"{i}_{j}": np.asarray(o) for i, per in enumerate(computed.outputs)
                  for j, o in enumerate(per)}
        np.savez(data_path, **arrays)  # type: ignore[arg-type]
        (staging / "entry.json").write_text(json.dumps({
            "key": key.payload(), "name": computed.name,
            "outputs_sha256": sha256_file(data_path), "tensors": len(computed.outputs),
            "computed_at": computed.computed_at, "compute_s": round(computed.compute_s, 3)},
            indent=1))
        if entry.exists():  # a bad entry _read could not move (another process's)
            _discard(entry)
        staging.rename(entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
