"""The float reference on the host: what every converted model's outputs are checked
against (the agreement share and tolerance of :mod:`edgebench.evaluation`). Its raw
outputs are kept in the reference cache (:mod:`edgebench.reference_cache`), keyed by
content, so a second run with the same model, tensors and tools reads them."""

from __future__ import annotations

from pathlib import Path

from .cache import sha256_file
from .config import Matrix
from .datasets import Dataset
from .errors import CaseError, ModelDataMismatch
from .evaluation import AccuracyBatch, Reference, batched, make_reference, prepare_batch
from .fingerprint import DeviceAgent
from .model_metadata import ModelMetadata
from .pipeline import cache_root, torch_reference
from .plugin_manager import PluginKind, Registry
from .records import Artifact, RunSettings
from .reference_cache import (
    Computed,
    ReferenceKey,
    cached_reference,
    code_sha256,
    tool_versions,
)
from .remote import Pusher, RunnerJob, run_job, runner_request

ReferenceOrWhy = tuple[Reference | None, str | None]
"""``(reference, None)``, or ``(None, why there is none)``."""

TORCH_REFERENCE_THREADS = 1
"""torch threads of the PyTorch reference. Measured (benchmarks/reference_threads.py,
docs/measurements.md "Float reference threads"): on a shared 2-core Zen 3 VM at load 4-5,
1 thread took 0.20-0.33 of the default's (both cores') time, which the other jobs' load
turns into a 60-125 s wait."""
ONNX_REFERENCE_THREADS = 1
"""ONNX Runtime intra-op threads of the ONNX reference. Measured as above: 0.40-0.59 of the
default's time under load."""
ONNX_REFERENCE_OPTIMISATION = "disable"
"""Graph optimisation level of the ONNX reference: off, so ONNX Runtime's fusions are not
part of what every conversion is checked against."""


class FloatReferences:
    """The float reference of each source model, got once per source and tensors.

    ``dataset`` is the run's dataset (its class names are checked against the model's).
    """

    def __init__(self, matrix: Matrix, registry: Registry, dataset: Dataset) -> None:
        self.matrix = matrix
        self.registry = registry
        self.dataset = dataset
        self._references: dict[tuple[str, str], ReferenceOrWhy] = {}

    def reference_for(self, source: Artifact, batch: AccuracyBatch,
                      metadata: ModelMetadata | None = None) -> ReferenceOrWhy:
        """The float reference's outputs on ``batch``: the ``.pt`` itself run by PyTorch (in
        a subprocess) for a ``.pt`` source, so its ONNX export is checked like every other
        conversion; the ONNX run by ONNX Runtime on the host with graph optimisations off
        for an ``.onnx`` source; none for a model given only in a runtime's format. Read
        from the reference cache when an earlier run computed the same thing
        (:func:`torch_reference_key`, :func:`onnx_reference_key`); the reference's name ends
        with where it came from (``; computed by this run ...`` or ``; read from the
        reference cache (computed <UTC time>)``).

        Raises :class:`ModelDataMismatch` when the model's class count is not the labelled
        dataset's; a reference that fails on the host is ``(None, why)``.
        """
        if self.matrix.accuracy is None:
            return None, "accuracy is off"
        if source.format not in ("pt", "onnx"):
            return None, (f"no float reference: the model was given only as {source.format}; "
                          "pass its .pt or .onnx too for the agreement check")
        key = (source.sha256, str(batch.tensors))
        if key not in self._references:
            try:
                computed = self._cached(source, batch, metadata)
            except CaseError as exc:
                computed = None, f"the float reference failed on the host: {exc}"
            if computed[0] is not None:
                self._check_classes(computed[0], source.path.name, metadata)
            self._references[key] = computed
        return self._references[key]

    def _cached(self, source: Artifact, batch: AccuracyBatch,
                metadata: ModelMetadata | None) -> ReferenceOrWhy:
        """The reference from the reference cache, computed when it is not there; its
        name says which (:meth:`CachedReference.origin`)."""
        assert self.matrix.accuracy is not None
        if source.format == "pt":
            got = cached_reference(
                torch_reference_key(source, batch, TORCH_REFERENCE_THREADS),
                lambda: torch_reference(source, batch.tensors,
                                        threads=TORCH_REFERENCE_THREADS))
        else:
            ort = self.registry.of(PluginKind.BACKEND).get("onnxruntime")
            reason = ort.unavailable_reason() if ort else "the onnxruntime plugin is disabled"
            if ort is None or reason:
                return None, f"no float reference on the host: {reason}"
            got = cached_reference(
                onnx_reference_key(ort.cls().runner(), source, batch, ONNX_REFERENCE_THREADS),
                lambda: onnx_reference(self.registry, source, batch,
                                       threads=ONNX_REFERENCE_THREADS,
                                       timeout_s=self.matrix.settings.timeout_s))
        return make_reference(got.name, batch, got.outputs, self.matrix.accuracy,
                              metadata, origin=got.origin()), None

    def _check_classes(self, reference: Reference, model: str,
                       metadata: ModelMetadata | None) -> None:
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



def torch_reference_key(source: Artifact, batch: AccuracyBatch, threads: int | None
                        ) -> ReferenceKey:
    """The cache key of :func:`edgebench.pipeline.torch_reference` of ``source`` on
    ``batch``: torch, Ultralytics and numpy versions, the worker's code
    (``ultralytics_export.py``), the thread count."""
    return ReferenceKey(
        kind="pytorch", source_sha256=source.sha256,
        tensors_sha256=sha256_file(batch.tensors),
        tools={**tool_versions("torch", "ultralytics", "numpy"),
               "code": code_sha256([Path(__file__).with_name("ultralytics_export.py")])},
        options={"threads": threads, "input_hw": list(batch.input_hw), "batch": batch.batch})


def onnx_reference_key(runner: Path, source: Artifact, batch: AccuracyBatch,
                       threads: int | None) -> ReferenceKey:
    """The cache key of :func:`onnx_reference`: the onnxruntime and numpy versions, the
    runner's and the agent's code, the thread count, the graph optimisation level, the
    input name, size and batch."""
    agent_files = sorted((Path(__file__).parent / "agent").glob("*.py"))
    return ReferenceKey(
        kind="onnxruntime", source_sha256=source.sha256,
        tensors_sha256=sha256_file(batch.tensors),
        tools={**tool_versions("onnxruntime", "numpy"),
               "code": code_sha256([runner, *agent_files])},
        options={"threads": threads, "graph_optimization_level": ONNX_REFERENCE_OPTIMISATION,
                 "input_name": source.input_name, "input_hw": list(batch.input_hw),
                 "batch": batch.batch})


def onnx_reference(registry: Registry, onnx_source: Artifact, batch: AccuracyBatch, *,
                   threads: int | None, timeout_s: float) -> Computed:
    """The ONNX source run once by the onnxruntime plugin's own runner on the local device,
    graph optimisations off, at ``threads`` intra-op threads (``None``: ONNX Runtime's
    default, one per physical core), on every tensor of ``batch``. Computed on every call
    (the caller caches it). Returns (its description, per tensor its outputs). Raises
    :class:`CaseError` when it fails; the onnxruntime plugin must be available."""
    import importlib.metadata

    ort = registry.of(PluginKind.BACKEND).get("onnxruntime")
    assert ort is not None
    how_many = (f"{threads} intra-op thread{'s' if threads > 1 else ''}" if threads
                else "its default threads")
    name = (f"onnxruntime {importlib.metadata.version('onnxruntime')} on the host, "
            f"graph optimisations off, {how_many}, {onnx_source.path.name}")
    # the timing input keyed by the ONNX's own input name (the batch may be another
    # backend's, e.g. LiteRT's serving_default_args_0), as many images as the batch's
    own = batched(prepare_batch(batch.dataset, onnx_source.input_name or "images",
                                batch.input_hw, cache_root()), batch.batch)
    settings = RunSettings(warmup_iterations=0, iterations=1, threads=threads,
                           timeout_s=timeout_s)
    job = RunnerJob(runner=ort.cls().runner(), model=onnx_source.path,
                    model_key=onnx_source.sha256[:16], inputs=own.timing_input,
                    accuracy_inputs=batch.tensors,
                    request=runner_request(settings, {
                        "graph_optimization_level": ONNX_REFERENCE_OPTIMISATION}),
                    timeout_s=timeout_s)
    local = registry.get(PluginKind.DEVICE, "local").cls("local")
    with local as device:
        outcome = run_job(device, DeviceAgent(device), job, Pusher())
    assert outcome.outputs is not None
    return name, outcome.outputs
