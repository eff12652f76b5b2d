"""Running a matrix: prepare artifacts on the host, run cases on devices, keep the report.

Devices run concurrently (one thread each); the cases of one device run strictly one after
another. Every finished case is saved to ``report.json`` before the next one starts.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pluggy

from . import __version__
from .accuracy import AccuracySettings, precision_tolerance, tolerance_problems
from .batching import static_batch
from .config import Matrix, device_scheme
from .contracts import Backend, Device, NativeRunner
from .datasets import load_dataset
from .errors import CaseError, CaseSkipped, ModelDataMismatch, UserError
from .evaluation import (
    AccuracyBatch,
    Reference,
    batched,
    evaluate,
    make_reference,
    prepare_batch,
)
from .fingerprint import DeviceAgent
from .hookspecs import hookimpl
from .input_size import ImgSz, hw, input_hw
from .model_metadata import ModelMetadata, read_metadata
from .pipeline import cache_root, load_source, torch_reference
from .plugin_manager import PluginKind, Registry
from .precision import with_precision
from .records import (
    SCHEMA_VERSION,
    Accuracy,
    Artifact,
    Case,
    CaseResult,
    Delegation,
    DeviceInfo,
    MemoryStats,
    RunReport,
    RunState,
    RuntimeInfo,
    Status,
    Tolerance,
    from_json_dict,
)
from .remote import Pusher, RunnerJob, run_job
from .repeats import combine
from .reports.writer import ReportWriter, utc_now
from .resume import combined_start, split
from .retry import ConnectionLost, Retrier, RetryPolicy, connected
from .stats import latency_stats, per_image
from .variants import ModelVariant, Variants

ProgressCallback = Callable[[CaseResult], None]


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


TestOptions = Mapping[str, float] | Callable[[Case], Mapping[str, float]]
"""Test-only runner-request knobs: for every case, or a function of the case."""


def select_backends(matrix: Matrix, registry: Registry) -> list[str]:
    """The backends to run: the named ones, or every one usable on this host."""
    local_only = all(device_scheme(d) == "local" for d in matrix.devices)
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
    limit = getattr(backend, "max_batch", None)
    size = static_batch(model.input_shape)
    if limit is None or size <= limit:
        return
    runs = "one image" if limit == 1 else f"at most {limit} images"
    raise CaseSkipped(f"{backend.name} runs {runs} per inference but {model.path.name} "
                      f"has a static batch of {size}; export the model with batch={limit} for "
                      f"{backend.name}")


def model_label(artifact: Artifact) -> str:
    return f"{artifact.path.stem}@{artifact.sha256[:8]}"


def case_id(model: str, pipeline: tuple[str, ...], backend: str, device: str,
            threads: int | None, options: Mapping[str, Any] | None = None,
            precision: str | None = None) -> str:
    """``model|pipeline|backend|device|tN``, plus ``|key=value,...`` for backend options
    the run set (so two option variants of one backend are two cases). An uncompressed
    model's pipeline field is its precision read from the graph (``fp32`` when unknown)."""
    parts = [model, "+".join(pipeline) or precision or "fp32", backend, device,
             f"t{threads or 'auto'}"]
    if options:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(options.items())))
    return "|".join(parts)


def backend_tolerance(backend: Backend, artifact: Artifact | None,
                      runtime: RuntimeInfo | None) -> Tolerance | None:
    """The agreement tolerance the backend declares for this artifact and runtime setup;
    backends that declare none get the one of the artifact's precision for uncompressed
    artifacts (:func:`edgebench.accuracy.precision_tolerance`)."""
    if artifact is None:
        return None
    declare = getattr(backend, "tolerance", None)
    if callable(declare):
        declared = declare(artifact, runtime)
        return declared if isinstance(declared, Tolerance) else None
    return None if artifact.pipeline else precision_tolerance(artifact.precision)


def size_notes(artifact: Artifact, imgsz: ImgSz | None, fed: tuple[int, int]
               ) -> tuple[str, ...]:
    """A note when the input size was guessed: symbolic height/width, no ``--imgsz`` and no
    size recorded in the model (Ultralytics' default 640 is used, as its predict does); or
    when ``--imgsz`` asked for another size than the model's static input, which is what
    runs (``fed``: the (height, width) fed)."""
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


def agreement_verdict(result: CaseResult) -> CaseResult:
    """Fail a case whose outputs are outside its tolerance, with the figures: a conversion
    that changed the model is not benchmarked silently. The measurements are kept."""
    acc = result.accuracy
    fid = acc.fidelity if acc is not None else None
    if fid is None or fid.within_tolerance is not False or fid.tolerance is None:
        return result
    assert acc is not None and fid.tolerance is not None
    ref = [np.zeros(1, np.float32)]
    problems = tolerance_problems(fid, fid.tolerance, ref) if fid.box_max_abs_px is not None \
        else [f"outputs differ by up to {fid.max_abs:.3g} (tolerance "
              f"{fid.tolerance.raw_max_rel:g} of the reference's largest value)"]
    fmt = result.artifact.format if result.artifact is not None else "model"
    return dataclasses.replace(
        result, status=Status.FAILED,
        reason=f"the {fmt} model disagrees with the float reference beyond the "
               f"{result.case.backend} tolerance: {'; '.join(problems)}")


class CaseExecutor:
    """The core's implementation of ``edgebench_run_case`` for one run.

    Registered in the plugin manager for the run's duration, so plugins can wrap it.
    """

    def __init__(self, plans: dict[str, CasePlan], accuracy: AccuracySettings | None,
                 test_options: TestOptions | None = None,
                 retrier: Retrier | None = None) -> None:
        self.plans = plans
        self.accuracy = accuracy
        self.test_options = test_options or {}
        self.retrier = retrier or Retrier(RetryPolicy(retries=0))
        self._evaluated: set[str] = set()
        """Cases whose accuracy was measured (on their first repeat)."""
        self.agents: dict[str, DeviceAgent] = {}
        self.infos: dict[str, DeviceInfo] = {}
        self.pusher = Pusher()

    @hookimpl(trylast=True)
    def edgebench_run_case(self, case: Case, device: Device) -> CaseResult:
        plan = self.plans[case.id]
        info = self.infos[device.uri]
        started, t0 = utc_now(), time.perf_counter()
        base = CaseResult(case=case, status=Status.FAILED, device=info,
                          artifact=plan.artifact, started_at=started)
        result = self.retrier.run(lambda: self._attempt(plan, device, base), base, device,
                                  lambda: self._recover(device))
        return dataclasses.replace(result, wall_s=round(time.perf_counter() - t0, 3),
                                   notes=plan.notes + result.notes)

    def _recover(self, device: Device) -> None:
        """After a reconnect: push everything again, to the work dir the device has now."""
        self.pusher.forget(device.uri)
        self.agents[device.uri] = device_agent(device)

    def _attempt(self, plan: CasePlan, device: Device, base: CaseResult) -> CaseResult:
        """One attempt at the case; a lost connection raises (the retrier decides)."""
        info = self.infos[device.uri]
        try:
            if plan.skip is not None:
                raise CaseSkipped(plan.skip)
            if plan.error is not None:
                raise CaseError(plan.error)
            native = _native_runner(device, plan.backend.name)
            if native is None:
                _check_python(device, plan.backend.name)
                self._check_supported(plan.backend, info, device.uri)
            throttled_before = _throttling(device)
            if native is not None:
                result = self._measure_native(native, plan, device, info, base)
            else:
                result = self._measure(plan, device, info, base)
            result = thermal_notes(result, throttled_before, _throttling(device))
        except CaseSkipped as exc:
            result = dataclasses.replace(base, status=Status.SKIPPED, reason=str(exc))
        except ConnectionLost:
            raise
        except CaseError as exc:
            result = dataclasses.replace(base, reason=str(exc))
        return result

    @staticmethod
    def _check_supported(backend: Backend, info: DeviceInfo, uri: str) -> None:
        reason = backend.unsupported_reason(info)
        if reason:
            raise CaseSkipped(reason)
        if not any(m in info.runtimes for m in backend.runtime_modules):
            module = " or ".join(backend.runtime_modules)
            raise CaseSkipped(f"{module} is not installed on {uri} ({backend.install_hint})")

    def _measure(self, plan: CasePlan, device: Device, info: DeviceInfo,
                 base: CaseResult) -> CaseResult:
        assert plan.artifact is not None and plan.batch is not None
        agent = self.agents[device.uri]
        settings = plan.case.settings
        job = RunnerJob(
            runner=plan.backend.runner(), model=plan.artifact.path,
            model_key=plan.artifact.sha256[:16], inputs=plan.batch.timing_input,
            accuracy_inputs=plan.batch.tensors
            if self.accuracy is not None and plan.case.id not in self._evaluated else None,
            request={"warmup_iterations": settings.warmup_iterations,
                     "warmup_s": settings.warmup_s, "iterations": settings.iterations,
                     "min_duration_s": settings.min_duration_s, "threads": settings.threads,
                     "options": dict(plan.backend.runner_options(settings)),
                     **(self.test_options(plan.case) if callable(self.test_options)
                        else self.test_options)},
            timeout_s=settings.timeout_s)
        temperature_before = agent.temperature()
        first_repeat = plan.case.id not in self._evaluated
        outcome = run_job(device, agent, job, self.pusher)
        self._evaluated.add(plan.case.id)
        result = self._result_from_raw(outcome.raw, plan, info, base, temperature_before,
                                       agent.temperature())
        if not first_repeat:
            return result  # accuracy was measured on the first repeat
        if (outcome.outputs is not None and self.accuracy is not None
                and result.status is Status.OK):
            accuracy = evaluate(plan.batch, outcome.outputs, self.accuracy,
                                reference=plan.reference,
                                reference_problem=plan.reference_problem,
                                boxes_normalised=getattr(plan.backend, "boxes_normalised",
                                                         None),
                                tolerance=backend_tolerance(plan.backend, plan.artifact,
                                                            result.runtime),
                                metadata=plan.metadata)
            result = dataclasses.replace(result, accuracy=accuracy)
            result = agreement_verdict(result)
        elif self.accuracy is not None and result.status is Status.OK:
            reason = outcome.raw.get("accuracy", {}).get("skipped", "no outputs returned")
            result = dataclasses.replace(result, accuracy=Accuracy(
                status=Status.SKIPPED, reason=reason, dataset=plan.batch.dataset.name,
                images=0, labelled=plan.batch.dataset.labelled,
                dataset_fingerprint=plan.batch.dataset_fingerprint,
                input_hw=plan.batch.input_hw))
        return result

    def _measure_native(self, native: NativeRunner, plan: CasePlan, device: Device,
                        info: DeviceInfo, base: CaseResult) -> CaseResult:
        """A case measured by the device's native benchmark binary (no Python there)."""
        assert plan.artifact is not None and plan.batch is not None
        agent = self.agents[device.uri]
        temp_before = agent.temperature()
        measured = native.measure(device, plan.artifact, plan.batch.timing_input,
                                  plan.case.settings, info)
        measured = dataclasses.replace(measured, latency=per_image(measured.latency,
                                                                   plan.batch.batch))
        temp_after = agent.temperature()
        if temp_before is not None:
            info = dataclasses.replace(info, temperature_c=temp_before)
        notes = measured.notes
        if self.accuracy is not None:
            notes += (f"accuracy not measured: {native.tool} returns no outputs",)
        return dataclasses.replace(base, status=Status.OK, device=info, runtime=measured.runtime,
                                   latency=measured.latency, memory=measured.memory,
                                   temperature_after_c=temp_after, notes=base.notes + notes)

    @staticmethod
    def _result_from_raw(raw: dict[str, Any], plan: CasePlan, info: DeviceInfo,
                         base: CaseResult, temp_before: float | None,
                         temp_after: float | None) -> CaseResult:
        assert plan.artifact is not None
        latency = latency_stats(
            raw["samples_ns"], warmup_ns=raw.get("warmup_ns", ()),
            init_ns=raw["init_ns"], first_inference_ns=raw["first_inference_ns"],
            gflops=plan.artifact.gflops, peak_gflops=info.peak_gflops_estimate(),
            cpu_samples_ns=raw.get("cpu_samples_ns", ()),
            batch=plan.batch.batch if plan.batch is not None else 1)
        before, after = raw.get("rss_before_load_bytes"), raw.get("rss_after_load_bytes")
        memory = MemoryStats(
            rss_baseline_bytes=raw.get("rss_baseline_bytes"),
            rss_before_load_bytes=before,
            rss_after_load_bytes=after,
            load_delta_bytes=after - before if before is not None and after is not None
            else None,
            peak_rss_bytes=raw.get("peak_rss_bytes"))
        rt = raw["runtime"]
        runtime = RuntimeInfo(name=rt["name"], version=rt["version"], threads=rt.get("threads"),
                              providers=tuple(rt.get("providers", ())),
                              details=rt.get("details", {}),
                              delegation=from_json_dict(Delegation, rt["delegation"])
                              if rt.get("delegation") else None)
        nonfinite = [i for i, o in enumerate(raw.get("outputs", [])) if not o.get("finite", True)]
        if nonfinite:
            return dataclasses.replace(
                base, runtime=runtime, latency=latency, memory=memory,
                reason=f"the model ran but output {nonfinite[0]} holds NaN or infinity")
        if temp_before is not None:
            info = dataclasses.replace(info, temperature_c=temp_before)
        return dataclasses.replace(base, status=Status.OK, device=info, runtime=runtime,
                                   latency=latency, memory=memory,
                                   temperature_after_c=temp_after)


class Session:
    """One ``edgebench run``: builds the plans, drives the devices, keeps the report."""

    def __init__(
        self,
        matrix: Matrix,
        pm: pluggy.PluginManager,
        registry: Registry,
        *,
        argv: Sequence[str] = (),
        on_case: ProgressCallback | None = None,
        run_id: str | None = None,
        test_options: TestOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``test_options`` go into every runner request (or, given a function of the case,
        into that case's): test-only knobs of the device agent (``test_delay_s``: sleep per
        iteration; ``test_slowdown``: +x per iteration).
        ``retry``: how connection-level failures are retried (see ``retry.py``)."""
        self.matrix = matrix
        self.pm = pm
        self.registry = registry
        self.argv = tuple(argv)
        self.on_case = on_case
        self.test_options = test_options or {}
        self.retry = retry or RetryPolicy()
        self.run_id = run_id or (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                                 + f"-{secrets.token_hex(2)}")
        self.backends = select_backends(matrix, registry)
        for settings in matrix.all_settings:
            for name in settings.backend_options:
                if name not in self.backends:
                    raise UserError(f"--backend-option names backend {name!r}, which is not "
                                    f"in this run (backends: {', '.join(self.backends)}).")
        for uri in matrix.devices:
            check_uri = getattr(registry.get(PluginKind.DEVICE, device_scheme(uri)).cls,
                                "check_uri", None)
            if check_uri is not None:
                check_uri(uri)  # a bad device URI fails now, before any export
        self._tmp = tempfile.TemporaryDirectory(prefix="edgebench-host-")
        self.variants = Variants(matrix, registry, Path(self._tmp.name))
        self._stop = threading.Event()
        self._entered: dict[str, Device] = {}
        self._errors: list[BaseException] = []
        self._references: dict[tuple[str, str], tuple[Reference | None, str | None]] = {}
        self._metadata: dict[str, ModelMetadata | None] = {}
        self._warned: set[tuple[str, str]] = set()
        # With accuracy off the dataset only gives the timed input (its first image): the
        # embedded val images then, as in a run without --data; --data is not read at all.
        self.dataset = load_dataset(matrix.data if matrix.accuracy is not None else None,
                                    limit=matrix.images)

    def close(self) -> None:
        self._tmp.cleanup()

    # -- host side -----------------------------------------------------------------------

    def sources(self) -> list[Artifact]:
        return [load_source(path) for path in self.matrix.models]

    def plan(self, sources: list[Artifact]) -> list[CasePlan]:
        """Export every source (and each compressed variant of it) for every backend,
        prepare inputs and the float reference.

        Per-backend problems become failed plans; a class-count mismatch between the
        model and the dataset, or a compression pipeline that cannot work, is a
        :class:`UserError`, raised before anything runs.
        """
        self.variants.check(sources)
        plans: list[CasePlan] = []
        for source in sources:
            label = model_label(source)
            for pipeline in self.variants.pipelines:
                variant = self.variants.model_variant(source, pipeline)
                for name in self.backends:
                    plans += self._plan_backend(label, variant, name)
        return plans

    def _plan_backend(self, label: str, variant: ModelVariant, name: str) -> list[CasePlan]:
        backend: Backend = self.registry.get(PluginKind.BACKEND, name).cls()
        for settings in self.matrix.all_settings:
            backend.runner_options(settings)  # a bad backend option: exit 2, now
        artifact: Artifact | None = None
        batch: AccuracyBatch | None = None
        reference: tuple[Reference | None, str | None] = (None, None)
        error, skip, notes = variant.error, variant.skip, variant.notes
        metadata: ModelMetadata | None = None
        try:
            if variant.source is not None:
                refuse_batch(backend, variant.source)  # before any conversion
                artifact = backend.export(variant.source, Path(self._tmp.name),
                                          imgsz=self.matrix.imgsz)
                artifact, notes = self.variants.format_variant(artifact, variant)
                refuse_batch(backend, artifact)  # a format whose batch only its backend reads
                artifact = with_precision(artifact)
                batch = batched(self._batch_for(artifact), static_batch(artifact.input_shape))
                sized = size_notes(artifact, self.matrix.imgsz, batch.input_hw)
                for note in sized:
                    if note.startswith("--imgsz") and (label, note) not in self._warned:
                        self._warned.add((label, note))  # once per model, on the terminal
                        print(f"edgebench: warning: {label}: {note}.", file=sys.stderr)
                notes += sized
                notes += precision_notes(artifact, variant.source)
                metadata = self._metadata_for(artifact, variant.source)
                reference = self._reference_for(variant.source, batch, metadata)
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
                case = Case(id=case_id(label, pipeline, name, uri, settings.threads,
                                       settings.backend_options.get(name), precision),
                            model=label, backend=name, device=uri, settings=settings,
                            pipeline=pipeline)
                plans.append(CasePlan(case, backend, artifact, batch, *reference,
                                      error=error, skip=skip, notes=notes, metadata=metadata))
        return plans

    def _batch_for(self, artifact: Artifact) -> AccuracyBatch:
        """The dataset letterboxed to the artifact's input size (cached)."""
        hw = input_hw(artifact.input_shape, self.matrix.imgsz, artifact.imgsz)
        return prepare_batch(self.dataset, artifact.input_name or "images", hw, cache_root())

    def _metadata_for(self, artifact: Artifact, source: Artifact) -> ModelMetadata | None:
        """The Ultralytics metadata of ``artifact``, else of its source, else of another
        artifact made from the same source (a ``.pt`` carries none readable without torch;
        its exports do; a pnnx conversion of an ONNX keeps none)."""
        found = read_metadata(artifact.path)
        if source.sha256 not in self._metadata or self._metadata[source.sha256] is None:
            self._metadata[source.sha256] = found or read_metadata(source.path)
        return found or self._metadata[source.sha256]

    def _reference_for(self, source: Artifact, batch: AccuracyBatch,
                       metadata: ModelMetadata | None = None
                       ) -> tuple[Reference | None, str | None]:
        """The float reference's outputs on ``batch``, computed once per source and input
        size: the ``.pt`` itself run by PyTorch (in a subprocess) for a ``.pt`` source, so its
        ONNX export is checked like every other conversion; the ONNX run by ONNX Runtime on
        the host with graph optimisations off for an ``.onnx`` source; none for a model given
        only in a runtime's format."""
        if self.matrix.accuracy is None:
            return None, "accuracy is off"
        if source.format not in ("pt", "onnx"):
            return None, (f"no float reference: the model was given only as {source.format}; "
                          "pass its .pt or .onnx too for the agreement check")
        key = (source.sha256, str(batch.tensors))
        if key not in self._references:
            try:
                computed = (self._torch_reference(source, batch, metadata)
                            if source.format == "pt"
                            else self._compute_reference(source, batch, metadata))
            except CaseError as exc:
                computed = None, f"the float reference failed on the host: {exc}"
            if computed[0] is not None:
                self._check_classes(computed[0], source.path.name, metadata)
            self._references[key] = computed
        return self._references[key]

    def _torch_reference(self, source: Artifact, batch: AccuracyBatch,
                         metadata: ModelMetadata | None = None
                         ) -> tuple[Reference | None, str | None]:
        assert self.matrix.accuracy is not None
        name, outputs = torch_reference(source, batch.tensors)
        return make_reference(name, batch, outputs, self.matrix.accuracy, metadata), None

    def _check_classes(self, reference: Reference, model: str,
                       metadata: ModelMetadata | None = None) -> None:
        """A model whose class count (from its metadata or its head) is not the dataset's
        cannot be scored on it: :class:`ModelDataMismatch` before anything runs."""
        layout = reference.layout
        if (not self.dataset.labelled or layout is None or layout.classes is None
                or not layout.scored):  # not scored: its classes do not matter
            return
        nc, n_data = layout.classes, len(self.dataset.class_names)
        if nc != n_data:
            how = "" if metadata is not None else (
                f" (it carries no Ultralytics metadata, so its output was read as 4 box and "
                f"{nc} class channels)")
            raise ModelDataMismatch(
                f"{model} predicts {nc} classes but the dataset {self.dataset.name} has "
                f"{n_data}{how}; pass the dataset the model was trained on (--data), "
                "--no-accuracy (latency and memory only) or a folder of images as --data "
                "(agreement with the float reference only).")

    def _compute_reference(self, onnx_source: Artifact, batch: AccuracyBatch,
                           metadata: ModelMetadata | None = None
                           ) -> tuple[Reference | None, str | None]:
        assert self.matrix.accuracy is not None
        ort = self.registry.of(PluginKind.BACKEND).get("onnxruntime")
        reason = ort.unavailable_reason() if ort else "the onnxruntime plugin is disabled"
        if ort is None or reason:
            return None, f"no float reference on the host: {reason}"
        import importlib.metadata

        name = (f"onnxruntime {importlib.metadata.version('onnxruntime')} on the host, "
                f"graph optimisations off, {onnx_source.path.name}")
        # the timing input keyed by the ONNX's own input name (the batch may be another
        # backend's, e.g. LiteRT's serving_default_args_0), as many images as the batch's
        own = batched(prepare_batch(batch.dataset, onnx_source.input_name or "images",
                                    batch.input_hw, cache_root()), batch.batch)
        job = RunnerJob(runner=ort.cls().runner(), model=onnx_source.path,
                        model_key=onnx_source.sha256[:16], inputs=own.timing_input,
                        accuracy_inputs=batch.tensors,
                        request={"warmup_iterations": 0, "iterations": 1, "threads": None,
                                 "options": {"graph_optimization_level": "disable"}},
                        timeout_s=self.matrix.settings.timeout_s)
        local = self.registry.get(PluginKind.DEVICE, "local").cls("local")
        with local as device:
            outcome = run_job(device, DeviceAgent(device), job, Pusher())
        assert outcome.outputs is not None
        return make_reference(name, batch, outcome.outputs, self.matrix.accuracy,
                              metadata), None

    # -- device side ---------------------------------------------------------------------

    def run(self, output_dir: Path, sources: list[Artifact] | None = None,
            resume: RunReport | None = None, baseline_model: str | None = None) -> RunReport:
        """Run everything (or, with ``resume``, what that report lacks or holds as failed:
        see ``resume.py``); the report on disk is current after every case.
        ``baseline_model``: the label of a source measured only as the side-by-side
        baseline, recorded in the report (see :meth:`RunReport.tracked_cases`)."""
        from .agent import edgebench_agent

        plans = self.plan(sources if sources is not None else self.sources())
        host = _host_info(edgebench_agent.probe(["numpy"]))
        report = RunReport(schema_version=SCHEMA_VERSION, tool_version=__version__,
                           run_id=self.run_id, created_at=utc_now(), state=RunState.RUNNING,
                           host=host, argv=self.argv, versions=_host_versions(),
                           baseline_model=baseline_model)
        if resume is not None:
            kept, plans = split(resume, plans)
            report = combined_start(resume, report, kept)
        reporters = [reg.cls() for reg in self.registry.of(PluginKind.REPORTER).values()
                     if reg.unavailable_reason() is None]
        writer = ReportWriter(report, output_dir, reporters)
        self.writer = writer
        executor = CaseExecutor({p.case.id: p for p in plans}, self.matrix.accuracy,
                                self.test_options, Retrier(self.retry, self._stop))
        self.pm.register(executor, name="edgebench.core-runner")
        by_device: dict[str, list[CasePlan]] = {}
        for p in plans:
            by_device.setdefault(p.case.device, []).append(p)
        threads = [threading.Thread(target=self._run_device, name=f"device {uri}", daemon=True,
                                    args=(uri, device_plans, executor, writer))
                   for uri, device_plans in by_device.items()]
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)  # wakes up for Ctrl-C
        except KeyboardInterrupt:
            self._stop.set()
            for device in list(self._entered.values()):
                device.abort()
            for t in threads:
                t.join(timeout=30)  # each device thread cleans its work dir
            writer.finish(RunState.INTERRUPTED)
            raise
        finally:
            self.pm.unregister(executor)
        if self._errors:
            raise self._errors[0]
        writer.finish(RunState.COMPLETE)
        self.pm.hook.edgebench_session_finished(report=writer.report)
        return writer.report

    def _run_device(self, uri: str, plans: list[CasePlan], executor: CaseExecutor,
                    writer: ReportWriter) -> None:
        try:
            self._run_device_cases(uri, plans, executor, writer)
        except BaseException as exc:  # a bug: surface it in the main thread
            self._errors.append(exc)

    def _run_device_cases(self, uri: str, plans: list[CasePlan], executor: CaseExecutor,
                          writer: ReportWriter) -> None:
        device_cls = self.registry.get(PluginKind.DEVICE, device_scheme(uri)).cls
        modules = tuple(sorted({m for p in plans for m in p.backend.runtime_modules}))
        try:
            with connected(lambda: device_cls(uri), self.retry, self._stop) as device:
                self._entered[uri] = device
                agent = device_agent(device)
                executor.agents[uri] = agent
                executor.infos[uri] = agent.probe((*modules, "numpy"), self.pm)
                peak = executor.infos[uri].peak_gflops_estimate()
                combined: dict[str, CaseResult] = {}
                for repeat in range(max(p.case.settings.repeats for p in plans)):
                    # repeats interleave, every other round backwards (1 2 3 3 2 1 1 2 3):
                    # a drift of the machine over the run falls on every case alike
                    for plan in plans if repeat % 2 == 0 else plans[::-1]:
                        if repeat >= plan.case.settings.repeats:
                            continue
                        if self._stop.is_set():
                            return
                        result = self.pm.hook.edgebench_run_case(case=plan.case,
                                                                 device=device)
                        if self._stop.is_set():
                            return  # interrupted mid-case: not a measurement
                        result = combine(combined.get(plan.case.id), result, peak_gflops=peak)
                        combined[plan.case.id] = result
                        if repeat == 0:
                            self._record(result, writer)
                        else:
                            writer.add(result)  # replaces the case, repeats so far
        except (CaseError, OSError, UserError) as exc:
            if self._stop.is_set():
                return
            done = {r.case.id for r in writer.report.cases}
            for plan in plans:
                if plan.case.id not in done:
                    self._record(CaseResult(case=plan.case, status=Status.FAILED,
                                            reason=f"device {uri}: {exc}",
                                            artifact=plan.artifact), writer)
        finally:
            self._entered.pop(uri, None)

    def _record(self, result: CaseResult, writer: ReportWriter) -> None:
        writer.add(result)
        self.pm.hook.edgebench_case_finished(result=result)
        if self.on_case is not None:
            self.on_case(result)


def _host_info(fields: dict[str, Any]) -> DeviceInfo:
    from .records import from_json_dict

    known = {f.name for f in dataclasses.fields(DeviceInfo)}
    return from_json_dict(DeviceInfo, {"uri": "host", **{k: v for k, v in fields.items()
                                                          if k in known}})


def _host_versions() -> dict[str, str]:
    import platform

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "pluggy": pluggy.__version__}
    try:
        import onnx

        versions["onnx"] = onnx.__version__
    except ImportError:
        pass
    return versions


# -- the device side: agents, native runners, thermal state ------------------------------

HOT_START_C = 70.0
"""A case that starts at or above this CPU temperature is flagged "started hot"."""


def device_agent(device: Device) -> DeviceAgent:
    """The device's own agent when it has one (a phone without Python fingerprints itself
    with its shell), else the Python agent."""
    make = getattr(device, "agent", None)
    agent = make() if callable(make) else None
    return agent if isinstance(agent, DeviceAgent) else DeviceAgent(device)


def _native_runner(device: Device, backend: str) -> NativeRunner | None:
    get = getattr(device, "native_runner", None)
    runner = get(backend) if callable(get) else None
    return runner if isinstance(runner, NativeRunner) else None


def _check_python(device: Device, backend: str) -> None:
    if not device.python:
        raise CaseSkipped(
            f"{device.uri} has no Python for the {backend} runner; give the device URI a "
            "native runner built for its ABI (onnxruntime_perf_test=PATH, benchmark_model=PATH "
            "or benchncnn=PATH) or a Python (python=PATH)")


def _throttling(device: Device) -> str | None:
    read = getattr(device, "throttling", None)
    state = read() if callable(read) else None
    return state if isinstance(state, str) else None


def thermal_notes(result: CaseResult, throttled_before: str | None,
                  throttled_after: str | None) -> CaseResult:
    """Flag a case that started hot or ran throttled: its numbers are not the device's best."""
    notes: list[str] = []
    before = result.device.temperature_c if result.device is not None else None
    if before is not None and before >= HOT_START_C:
        notes.append(f"started hot ({before:.0f} °C)")
    if throttled_before or throttled_after:
        when = "throughout" if throttled_before and throttled_after else (
            "at the start" if throttled_before else "by the end")
        notes.append(f"throttled {when}: {throttled_after or throttled_before}")
    if not notes:
        return result
    return dataclasses.replace(result, notes=(*result.notes, *notes))


def probe_devices(uris: Sequence[str], pm: pluggy.PluginManager, registry: Registry, *,
                  accept_new_host_keys: bool = False,
                  on_message: Callable[[str], None] | None = None,
                  ) -> list[tuple[str, DeviceInfo | None, str | None]]:
    """Connect to each device (concurrently) and fingerprint it: ``(uri, info, error)``.

    With ``accept_new_host_keys``, device classes that check host keys first record the key
    of a host they do not know yet (never a changed one).
    """
    modules = tuple(sorted({m for reg in registry.of(PluginKind.BACKEND).values()
                            for m in getattr(reg.cls, "runtime_modules", ())} | {"numpy"}))
    results: dict[str, tuple[DeviceInfo | None, str | None]] = {}

    def one(uri: str) -> None:
        try:
            cls = registry.get(PluginKind.DEVICE, device_scheme(uri)).cls
            check = getattr(cls, "check_uri", None)
            if check is not None:
                check(uri)
            accept = getattr(cls, "accept_new_host_key", None)
            if accept_new_host_keys and accept is not None:
                message = accept(uri)
                if on_message is not None:
                    on_message(f"{uri}: {message}")
            with cls(uri) as device:
                results[uri] = (device_agent(device).probe(modules, pm), None)
        except (CaseError, UserError, OSError) as exc:
            results[uri] = (None, str(exc))

    threads = [threading.Thread(target=one, args=(uri,), daemon=True) for uri in uris]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [(uri, *results.get(uri, (None, "no answer"))) for uri in uris]
