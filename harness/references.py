"""The float reference on the host: what every converted model's outputs are checked
against (the agreement share and tolerance of :mod:`edgebench.evaluation`)."""

from __future__ import annotations

from .config import Matrix
from .datasets import Dataset
from .errors import CaseError, ModelDataMismatch
from .evaluation import AccuracyBatch, Reference, batched, make_reference, prepare_batch
from .fingerprint import DeviceAgent
from .model_metadata import ModelMetadata
from .pipeline import cache_root, torch_reference
from .plugin_manager import PluginKind, Registry
from .records import Artifact, RunSettings
from .remote import Pusher, RunnerJob, run_job, runner_request

ReferenceOrWhy = tuple[Reference | None, str | None]
"""``(reference, None)``, or ``(None, why there is none)``."""


class FloatReferences:
    """The float reference of each source model, computed once per source and input size.

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
        for an ``.onnx`` source; none for a model given only in a runtime's format.

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
                computed = (self._torch_reference(source, batch, metadata)
                            if source.format == "pt"
                            else self._onnx_reference(source, batch, metadata))
            except CaseError as exc:
                computed = None, f"the float reference failed on the host: {exc}"
            if computed[0] is not None:
                self._check_classes(computed[0], source.path.name, metadata)
            self._references[key] = computed
        return self._references[key]

    def _torch_reference(self, source: Artifact, batch: AccuracyBatch,
                         metadata: ModelMetadata | None) -> ReferenceOrWhy:
        assert self.matrix.accuracy is not None
        name, outputs = torch_reference(source, batch.tensors)
        return make_reference(name, batch, outputs, self.matrix.accuracy, metadata), None

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

    def _onnx_reference(self, onnx_source: Artifact, batch: AccuracyBatch,
                        metadata: ModelMetadata | None) -> ReferenceOrWhy:
        """The ONNX source run once by the onnxruntime plugin's own runner on the local
        device, graph optimisations off."""
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
        settings = RunSettings(warmup_iterations=0, iterations=1, threads=None,
                               timeout_s=self.matrix.settings.timeout_s)
        job = RunnerJob(runner=ort.cls().runner(), model=onnx_source.path,
                        model_key=onnx_source.sha256[:16], inputs=own.timing_input,
                        accuracy_inputs=batch.tensors,
                        request=runner_request(settings,
                                               {"graph_optimization_level": "disable"}),
                        timeout_s=settings.timeout_s)
        local = self.registry.get(PluginKind.DEVICE, "local").cls("local")
        with local as device:
            outcome = run_job(device, DeviceAgent(device), job, Pusher())
        assert outcome.outputs is not None
        return make_reference(name, batch, outcome.outputs, self.matrix.accuracy,
                              metadata), None
