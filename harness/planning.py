"""Planning a run on the host: which backends run, the cases of the matrix and, for each,
the artifact, the inputs and the float reference the device side needs.

Everything slow a user's mistake could waste is refused here, before any device is used:
a bad backend option or name is a :class:`UserError`, a model whose classes are not the
dataset's a :class:`ModelDataMismatch`.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import plugin_results
from .batching import static_batch
from .compression import CompressionPipeline
from .config import Matrix, device_scheme
from .contracts import Backend, resolve_options
from .datasets import load_dataset
from .errors import CaseError, CaseSkipped, ModelDataMismatch, UserError, sentence
from .evaluation import AccuracyBatch, Reference, batched, prepare_batch
from .host_jobs import HostJobs, Step, host_jobs
from .identity import UNCOMPRESSED, CaseKey, options_label
from .input_size import ImgSz, hw, input_hw
from .model_metadata import ModelMetadata, read_metadata
from .pipeline import cache_root, load_source
from .plugin_manager import PluginKind, Registry
from .precision import with_precision
from .progress import PhaseListener, Silent, planned_steps
from .records import Artifact, Case
from .references import FloatReferences
from .variants import ModelVariant, Variants


@dataclass(frozen=True)
class CasePlan:
    """What the host prepared for one case: artifact, inputs and reference, or why not."""

    case: Case
    backend: Backend
    artifact: Artifact | None
    batch: AccuracyBatch | None
    reference: Reference | None = None
    reference_problem: str | None = None
    error: str | None = None
    skip: str | None = None
    """Why this case cannot exist here (e.g. the format cannot be made from the source)."""
    notes: tuple[str, ...] = ()
    """Facts about how the artifact was made (compression steps), copied into the result."""
    metadata: ModelMetadata | None = None
    """The model's own Ultralytics metadata (task, class names, ...): how its head is read."""
    plugin: str = ""
    """Who provides the backend, for messages (:attr:`Registration.label`)."""


def select_backends(matrix: Matrix, registry: Registry) -> list[str]:
    """The backends to run: the named ones, or every one usable on this host.

    Raises :class:`UserError` when a named backend cannot run here and every device is
    local, or when no backend is usable at all.
    """
    # the host's own interpreter only: local?python=PATH runs another one, with its own runtimes
    local_only = all(device_scheme(d) == "local" and "?" not in d for d in matrix.devices)
    if matrix.backends:
        for name in matrix.backends:
            reg = registry.get(PluginKind.BACKEND, name)
            reason = reg.unavailable_reason()
            if reason and local_only:
                raise UserError(f"backend {name!r} cannot run here: {reason}.")
        return list(matrix.backends)
    usable = [name for name, reg in registry.of(PluginKind.BACKEND).items()
              if not local_only or reg.unavailable_reason() is None]
    if not usable:
        hints = "; ".join(f"{n}: {r.unavailable_reason()}"
                          for n, r in registry.of(PluginKind.BACKEND).items())
        raise UserError(f"no backend is usable on this host ({hints or 'none installed'}).")
    return usable


def refuse_batch(backend: Backend, model: Artifact) -> None:
    """Raise :class:`CaseSkipped` (one sentence: the batch and what to do) when ``model``
    has a static batch larger than the backend's declared ``max_batch`` (see
    :class:`~edgebench.contracts.Backend`); backends that declare none run any batch."""
    limit = backend.max_batch
    size = static_batch(model.input_shape)
    if limit is None or size <= limit:
        return
    runs = "one image" if limit == 1 else f"at most {limit} images"
    raise CaseSkipped(f"{backend.name} runs {runs} per inference but {model.path.name} "
                      f"has a static batch of {size}; export the model with batch={limit} for "
                      f"{backend.name}")


def model_label(artifact: Artifact) -> str:
    """The model's label in case ids and reports: ``stem@sha8`` (file stem, first 8 hex
    digits of its content hash)."""
    return f"{artifact.path.stem}@{artifact.sha256[:8]}"


def size_notes(artifact: Artifact, imgsz: ImgSz | None, fed: tuple[int, int]
               ) -> tuple[str, ...]:
    """A note when the input size was guessed: symbolic height/width, no ``--imgsz`` and no
    size recorded in the model (Ultralytics' default 640 is used, as its predict does); or
    when ``--imgsz`` asked for another size than the model's static input, which is what
    runs (``fed``: the (height, width) fed, pixels)."""
    asked = hw(imgsz)
    if asked is not None and asked != fed:
        return (f"--imgsz {asked[0]}x{asked[1]} is not used: the model's input is static at "
                f"{fed[0]}×{fed[1]} (height×width), which is what runs; --imgsz applies only "
                "to symbolic dims and .pt exports",)
    shape = artifact.input_shape
    symbolic = shape is None or len(shape) != 4 or shape[2] <= 0 or shape[3] <= 0
    if not symbolic or imgsz is not None or artifact.imgsz is not None:
        return ()
    return (f"input size {fed[0]}x{fed[1]} is Ultralytics' default: the model declares no "
            "size; pass the size it was trained at with --imgsz",)


def precision_notes(artifact: Artifact, source: Artifact) -> tuple[str, ...]:
    """A note when an uncompressed conversion changed the precision its graph holds (e.g. a
    converter that wrote fp16 weights for an fp32 model): the case is labelled and judged
    by the artifact's own precision, and this says where it came from."""
    made = artifact.precision
    given = source.precision or ("fp32" if source.format == "pt" else None)
    if artifact.pipeline or made is None or given is None or made == given:
        return ()
    return (f"the {artifact.format} model holds {made} weights, its source "
            f"{source.path.name} {given} ({artifact.converter or 'converted'})",)


class Planner:
    """Builds the :class:`CasePlan` of every case of ``matrix`` (host work only).

    ``workdir``: where exports and compressed variants are written (the caller removes it).
    Raises :class:`UserError` at construction for a backend option naming a backend not in
    the run, or a backend that cannot run here (:func:`select_backends`).
    """

    def __init__(self, matrix: Matrix, registry: Registry, workdir: Path) -> None:
        self.matrix = matrix
        self.registry = registry
        self.workdir = workdir
        self.backends = select_backends(matrix, registry)
        for settings in matrix.all_settings:
            for name in settings.backend_options:
                if name not in self.backends:
                    raise UserError(f"--backend-option names backend {name!r}, which is not "
                                    f"in this run (backends: {', '.join(self.backends)}).")
            for name in self.backends:  # a bad option of any backend: exit 2 before any export
                reg = registry.get(PluginKind.BACKEND, name)
                resolve_options(reg.cls(), settings)
                try:
                    plugin_results.runner_options(reg, reg.cls(), settings)
                except CaseError:
                    pass  # the plugin's own bug: its cases fail with the sentence (plan)
        self.variants = Variants(matrix, registry, workdir)
        # With accuracy off the dataset only gives the timed input (its first image): the
        # embedded val images then, as in a run without --data; --data is not read at all.
        self.dataset = load_dataset(matrix.data if matrix.accuracy is not None else None,
                                    limit=matrix.images)
        self.references = FloatReferences(matrix, registry, self.dataset)
        self._metadata: dict[str, ModelMetadata | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self.progress: PhaseListener = Silent()
        """Told of every host step (compression, export) and of the run's step count."""
        self.cases_per_device = 0
        """Cases each device of the matrix gets (set by :meth:`start`)."""
        self.host = HostJobs(host_jobs())
        """The run's host steps, side by side (:mod:`edgebench.host_jobs`): each job has an
        export worker (:mod:`edgebench.export_worker`) for its Ultralytics exports and
        PyTorch references, started on first need."""
        self._lock = threading.Lock()
        """Guards what the host steps share: the batch files, metadata, warnings."""

    def close(self) -> None:
        """Stop the host's jobs and their export workers (killed if a step is still in
        progress: Ctrl-C, or a host error)."""
        self.host.close(abort=True)

    def sources(self) -> list[Artifact]:
        """The matrix's models, loaded (hashed, inspected) as source artifacts."""
        return [load_source(path) for path in self.matrix.models]

    def plan(self, sources: list[Artifact]) -> list[CasePlan]:
        """Export every source (and each compressed variant of it) for every backend,
        prepare inputs and the float reference; one plan per case, in matrix order.

        Per-backend problems become failed or skipped plans; a class-count mismatch between
        the model and the dataset, or a compression pipeline that cannot work, is a
        :class:`UserError`, raised before anything runs.
        """
        return [plan for group in self.start(sources) for plan in group]

    def start(self, sources: list[Artifact]) -> Iterator[list[CasePlan]]:
        """:meth:`plan` as it goes: checks the compression pipelines
        (:class:`UserError` now) and tells the progress the run's step count, then returns
        an iterator over the plans of each host step (a model's export for one backend: its
        cases on every device and setting), in the order :meth:`plan` returns them; the
        steps themselves run :attr:`host`'s jobs at a time (``host_jobs.py``).
        :attr:`cases_per_device` is set on return. Iterating raises what :meth:`plan`
        raises, when its step meets it (:class:`ModelDataMismatch`)."""
        self.variants.check(sources)
        compressed = [bool(p.model_steps(self.registry)) for p in self.variants.pipelines]
        self.progress.planned(planned_steps(
            len(sources), compressed, len(self.backends), len(self.matrix.devices),
            self.matrix.all_settings, self.matrix.accuracy is not None), len(sources))
        self.cases_per_device = (len(sources) * len(compressed) * len(self.backends)
                                 * len(self.matrix.all_settings))
        return self._groups(sources, compressed)

    def _groups(self, sources: list[Artifact], compressed: list[bool]
                ) -> Iterator[list[CasePlan]]:
        """The host steps, :attr:`host`'s jobs at a time, yielded in plan order: a model's
        compression runs in this thread (with a job's worker), each backend's export step
        in a job. A step's error is raised when its turn to be yielded comes."""
        pending: deque[Step[list[CasePlan]]] = deque()
        try:
            for source in sources:
                label = model_label(source)
                for pipeline, steps in zip(self.variants.pipelines, compressed, strict=True):
                    if steps:  # a compression takes a while: hand over what is ready
                        while pending and pending[0].done():
                            yield pending.popleft().result()
                        with self.host.worker(), self.progress.host_step(
                                label, f"compression {pipeline.label}"):
                            variant = self.variants.model_variant(source, pipeline)
                    else:
                        variant = self.variants.model_variant(source, pipeline)
                    for name in self.backends:
                        pending.append(self.host.submit(functools.partial(
                            self._backend_step, label, variant, name, pipeline)))
            while pending:
                yield pending.popleft().result()
        except BaseException:
            self.host.abort()  # Ctrl-C or a host error: no step outlives it
            raise

    def _backend_step(self, label: str, variant: ModelVariant, name: str,
                      pipeline: CompressionPipeline) -> list[CasePlan]:
        with self.progress.host_step(label, self._export_step(name, pipeline)):
            return self._plan_backend(label, variant, name)

    def _export_step(self, backend: str, pipeline: CompressionPipeline) -> str:
        """What a backend's host step of a model does: ``export for ncnn``, ``+
        compression int8`` (format steps: quantization with its calibration)."""
        steps = pipeline.format_steps(self.registry)
        return f"export for {backend}" + (f" + compression {pipeline.label}" if steps else "")

    def _plan_backend(self, label: str, variant: ModelVariant, name: str) -> list[CasePlan]:
        reg = self.registry.get(PluginKind.BACKEND, name)
        backend: Backend = reg.cls()
        artifact: Artifact | None = None
        batch: AccuracyBatch | None = None
        reference: tuple[Reference | None, str | None] = (None, None)
        error, skip, notes = variant.error, variant.skip, variant.notes
        metadata: ModelMetadata | None = None
        try:  # a bad backend option (UserError): exit 2, now; a plugin's bug: its cases fail
            for settings in self.matrix.all_settings:
                resolve_options(backend, settings)  # whatever its runner_options() does
                plugin_results.runner_options(reg, backend, settings)
            plugin_results.runner_script(reg, backend)
        except CaseError as exc:
            error = error or str(exc)
        try:
            if variant.source is not None and error is None:
                refuse_batch(backend, variant.source)  # before any conversion
                artifact = plugin_results.exported(reg, backend, variant.source,
                                                   self.workdir, imgsz=self.matrix.imgsz)
                artifact, notes = self.variants.format_variant(
                    artifact, variant, backend.compression_format)
                refuse_batch(backend, artifact)  # a format whose batch only its backend reads
                artifact = with_precision(artifact)
                with self._lock:  # one thread makes a batch file, the others read it
                    batch = batched(self._batch_for(artifact),
                                    static_batch(artifact.input_shape))
                    notes += self._size_notes(label, artifact, batch)
                    metadata = self._metadata_for(artifact, variant.source)
                notes += precision_notes(artifact, variant.source)
                reference = self.references.reference_for(variant.source, batch, metadata)
        except ModelDataMismatch:
            raise
        except CaseSkipped as exc:
            skip = str(exc)
        except (UserError, CaseError) as exc:
            error = str(exc)
        pipeline = tuple(step.label for step in variant.pipeline.steps)
        precision = artifact.precision if artifact is not None else (
            variant.source.precision if variant.source is not None else None)
        plans = []
        for uri in self.matrix.devices:
            for settings in self.matrix.all_settings:
                key = CaseKey(model=label, variant="+".join(pipeline) or precision or UNCOMPRESSED,
                              backend=name, device=uri, threads=settings.threads,
                              options=options_label(settings.backend_options.get(name)))
                case = Case(id=key.id, model=label, backend=name, device=uri,
                            settings=settings, pipeline=pipeline)
                plans.append(CasePlan(case, backend, artifact, batch, *reference,
                                      error=error, skip=skip, notes=notes, metadata=metadata,
                                      plugin=reg.label))
        return plans

    def _size_notes(self, label: str, artifact: Artifact, batch: AccuracyBatch
                    ) -> tuple[str, ...]:
        """:func:`size_notes`, and an unused ``--imgsz`` said once per model on stderr."""
        sized = size_notes(artifact, self.matrix.imgsz, batch.input_hw)
        for note in sized:
            if note.startswith("--imgsz") and (label, note) not in self._warned:
                self._warned.add((label, note))
                print(sentence(f"edgebench: warning: {label}: {note}."), file=sys.stderr)
        return sized

    def _batch_for(self, artifact: Artifact) -> AccuracyBatch:
        """The dataset letterboxed to the artifact's input size (cached)."""
        size = input_hw(artifact.input_shape, self.matrix.imgsz, artifact.imgsz)
        return prepare_batch(self.dataset, artifact.input_name or "images", size, cache_root())

    def _metadata_for(self, artifact: Artifact, source: Artifact) -> ModelMetadata | None:
        """The Ultralytics metadata of ``artifact``, else of its source, else of another
        artifact made from the same source (a ``.pt`` carries none readable without torch;
        its exports do; a pnnx conversion of an ONNX keeps none)."""
        found = read_metadata(artifact.path)
        if source.sha256 not in self._metadata or self._metadata[source.sha256] is None:
            self._metadata[source.sha256] = found or read_metadata(source.path)
        return found or self._metadata[source.sha256]
