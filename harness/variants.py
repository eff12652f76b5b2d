"""The compressed variants of a run, built on the host before any device work.

For each source model and compression pipeline, the MODEL steps (pruning, distillation) run
once on the PyTorch model; then, per backend, the export of that model gets the pipeline's
FORMAT steps (quantization). Problems become the reason of the affected cases, never of the
whole run; bad options and impossible pipelines are refused before any long work starts.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from .compression import (
    CompressionPipeline,
    apply_steps,
    check_steps,
    compressor_for,
    resolve_pipelines,
)
from .config import Matrix
from .contracts import CompressionContext
from .errors import CaseError, CaseSkipped, UserError
from .input_size import hw
from .pipeline import committed_pytorch
from .plugin_manager import Registry
from .records import Artifact

UNCOMPRESSED = CompressionPipeline(())


@dataclass(frozen=True)
class ModelVariant:
    """A source model after a pipeline's MODEL steps, or why it could not be made."""

    pipeline: CompressionPipeline
    source: Artifact | None
    pytorch: Artifact | None
    error: str | None = None
    skip: str | None = None
    notes: tuple[str, ...] = ()


def train_data_of(matrix: Matrix) -> Path | None:
    """The data.yaml whose train split calibrates and fine-tunes (``None``: embedded)."""
    if matrix.train_data is not None:
        return matrix.train_data
    data = matrix.data
    if data is None:
        return None
    if data.is_file() and data.suffix in (".yaml", ".yml"):
        return data
    if data.is_dir() and (data / "data.yaml").is_file():
        return data / "data.yaml"
    raise UserError(f"compression calibrates and fine-tunes on a train split, and {data} is "
                    "not a YOLO data.yaml; pass one with --train-data.")


class Variants:
    """The run's pipelines (the uncompressed one first) and the artifacts they produce."""

    def __init__(self, matrix: Matrix, registry: Registry, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir
        self.pipelines: tuple[CompressionPipeline, ...] = (
            UNCOMPRESSED, *resolve_pipelines(matrix.compress, registry))
        size = hw(matrix.imgsz)
        self.imgsz = max(size) if size else 320  # the training / calibration size
        self.train_data = train_data_of(matrix) if matrix.compress else None
        self._models: dict[tuple[str, str], ModelVariant] = {}
        self._checked: list[str] = []

    @property
    def compressed(self) -> bool:
        return len(self.pipelines) > 1

    def context(self, source: Artifact, pytorch: Artifact | None) -> CompressionContext:
        return CompressionContext(source=source, data_yaml=self.train_data, imgsz=self.imgsz,
                                  workdir=self.workdir, progress=True,
                                  pytorch=pytorch)

    def check(self, sources: list[Artifact]) -> None:
        """Refuse, before any work, what cannot work: MODEL steps on a model with no
        ``.pt`` behind it, and every step's own checks (calibration set size...)."""
        if not self.compressed or self._checked == [s.sha256 for s in sources]:
            return
        for pipeline in self.pipelines:
            for step in pipeline.model_steps(self.registry):
                try:  # a MODEL step that cannot run here is refused up front, not skipped
                    compressor_for(step, "pt", self.registry)
                except CaseSkipped as exc:
                    raise UserError(f"compression step {step.name!r} cannot run here: "
                                    f"{exc}.") from None
        for source in sources:
            pytorch = committed_pytorch(source)
            for pipeline in self.pipelines:
                steps = pipeline.model_steps(self.registry)
                if steps and pytorch is None:
                    raise UserError(f"compression step {steps[0].name!r} changes the PyTorch "
                                    f"model, and {source.path.name} is "
                                    f"{source.format}; pass the .pt (--model model.pt).")
            check_steps(self.pipelines[1:], self.registry, self.context(source, pytorch))
        self._checked = [s.sha256 for s in sources]

    def model_variant(self, source: Artifact, pipeline: CompressionPipeline) -> ModelVariant:
        """``source`` after the pipeline's MODEL steps (done once per source and pipeline)."""
        key = (source.sha256, pipeline.label)
        if key not in self._models:
            self._models[key] = self._make_model_variant(source, pipeline)
        return self._models[key]

    def _make_model_variant(self, source: Artifact, pipeline: CompressionPipeline
                            ) -> ModelVariant:
        pytorch = committed_pytorch(source)
        steps = pipeline.model_steps(self.registry)
        if not steps:
            return ModelVariant(pipeline, source, pytorch)
        assert pytorch is not None  # check() refused this
        _announce(pipeline.label, source.path.name)
        try:
            model, notes = apply_steps(pytorch, steps, "pt", self.registry,
                                       self.context(pytorch, pytorch))
        except CaseSkipped as exc:
            return ModelVariant(pipeline, None, None, skip=str(exc))
        except (CaseError, UserError) as exc:
            return ModelVariant(pipeline, None, None,
                                error=f"compression {pipeline.label} failed: {exc}")
        return ModelVariant(pipeline, model, model, notes=notes)

    def format_variant(self, exported: Artifact, variant: ModelVariant,
                       target: str | None = None) -> tuple[Artifact, tuple[str, ...]]:
        """The backend's export of ``variant.source`` after the pipeline's FORMAT steps,
        those registered for ``target`` (the backend's
        :attr:`~edgebench.contracts.Backend.compression_format`; ``None``: the export's
        format). Raises :class:`CaseSkipped` / :class:`CaseError` for the cases of this
        backend."""
        steps = variant.pipeline.format_steps(self.registry)
        if not steps:
            return exported, variant.notes
        assert variant.source is not None
        target = target or exported.format
        for step in steps:  # a step missing for this format: skipped before any work
            compressor_for(step, target, self.registry)
        _announce(variant.pipeline.label, exported.path.name)
        try:
            artifact, notes = apply_steps(exported, steps, target, self.registry,
                                          self.context(variant.source, variant.pytorch))
        except UserError as exc:
            raise CaseError(f"compression {variant.pipeline.label} failed: {exc}") from None
        return artifact, variant.notes + notes


def _announce(label: str, model: str) -> None:
    print(f"edgebench: compressing {model}: {label}", file=sys.stderr, flush=True)


def compress_model(source: Artifact, pipeline_text: str, registry: Registry, *,
                   backend: str | None, imgsz: int | None, train_data: Path | None,
                   output: Path) -> tuple[Artifact, tuple[str, ...]]:
    """``edgebench compress``: one pipeline on one model, copied to ``output``."""
    import shutil
    import tempfile

    from .plugin_manager import PluginKind
    from .plugin_results import exported as checked_export

    pipelines = resolve_pipelines([pipeline_text], registry)
    if len(pipelines) != 1:
        raise UserError(f"edgebench compress takes one pipeline, got {len(pipelines)} "
                        f"({pipeline_text!r}); chain steps with '+', not ','.")
    if pipelines[0].format_steps(registry) and backend is None:
        raise UserError(f"{pipelines[0].format_steps(registry)[0].name!r} works on a "
                        "backend's format; pass --backend (e.g. onnxruntime).")
    matrix = Matrix(models=(source.path,), imgsz=imgsz, compress=(pipeline_text,),
                    train_data=train_data)
    with tempfile.TemporaryDirectory(prefix="edgebench-compress-") as tmp:
        variants = Variants(matrix, registry, Path(tmp))
        variants.check([source])
        variant = variants.model_variant(source, variants.pipelines[1])
        if variant.error or variant.skip:
            raise UserError(f"{variant.error or variant.skip}.")
        assert variant.source is not None
        artifact, notes = variant.source, variant.notes
        if backend is not None:
            reg = registry.get(PluginKind.BACKEND, backend)
            chosen = reg.cls()
            try:
                exported = checked_export(reg, chosen, variant.source, Path(tmp),
                                          imgsz=imgsz)
                artifact, notes = variants.format_variant(exported, variant,
                                                          chosen.compression_format)
            except (CaseError, CaseSkipped) as exc:
                raise UserError(f"{pipeline_text} for {backend} failed: {exc}.") from None
    built = artifact.path
    if output.exists() and output.is_dir() and not built.is_dir():
        output = output / built.name
    output.parent.mkdir(parents=True, exist_ok=True)
    if built.is_dir():
        shutil.copytree(built, output, dirs_exist_ok=True)
    else:
        shutil.copyfile(built, output)
    return dataclasses.replace(artifact, path=output.resolve()), notes
