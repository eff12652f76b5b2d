"""The compression core: pipeline syntax, option checks, stage order, the registry, and a
compressed variant running next to fp32 through the normal matrix, with speed-up and mAP
delta in the report. The step here is a small real ONNX transform (weights rounded to
fp16 precision) registered as a plugin, as a third party would."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edgebench import hookimpl
from edgebench.compression import parse_step, resolve_pipelines
from edgebench.config import Matrix
from edgebench.contracts import CompressionContext, Compressor, Stage, compressor_stage
from edgebench.errors import PluginError, UserError
from edgebench.pipeline import cached_export, describe_onnx
from edgebench.plugin_manager import PluginKind, collect_registry, make_plugin_manager
from edgebench.records import Artifact, RunReport, RunSettings, Status
from edgebench.reports.markdown import render_markdown
from edgebench.reports.tradeoffs import baseline_id, tradeoffs
from edgebench.runner import Session


class RoundWeights(Compressor):
    """Round every float initializer to fp16 precision (kept as float32): a real change of
    the model with a tiny effect on its outputs."""

    name: ClassVar[str] = "roundw"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "weights rounded to fp16 precision"
    option_defaults: ClassVar[Mapping[str, Any]] = {"bits": 16, "keep_bias": False}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"bits": (16,)}
    primary_option: ClassVar[str | None] = "bits"

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        pass

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        import onnx
        from onnx import numpy_helper

        def produce(out: Path) -> None:
            proto = onnx.load(model.path)
            for init in proto.graph.initializer:
                array = numpy_helper.to_array(init)
                if array.dtype == np.float32 and (array.ndim > 1 or not options["keep_bias"]):
                    init.CopyFrom(numpy_helper.from_array(
                        array.astype(np.float16).astype(np.float32), init.name))
            onnx.save(proto, str(out / "model.onnx"))
            (out / "artifact.json").write_text(json.dumps({"file": "model.onnx"}))

        path, _ = cached_export(model, "roundw", dict(options), produce)
        return describe_onnx(path, source=model)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return ("float weights rounded to fp16 precision",)


class Sharpen(Compressor):
    """A MODEL-stage step (on the .pt); only its place in pipelines is exercised here."""

    name: ClassVar[str] = "sharpen"
    target: ClassVar[str] = "pt"
    summary: ClassVar[str] = "test"
    option_defaults: ClassVar[Mapping[str, Any]] = {"ratio": 0.3}
    primary_option: ClassVar[str | None] = "ratio"

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        if not 0 < options["ratio"] < 1:
            raise UserError(f"sharpen ratio must be in (0, 1), got {options['ratio']}.")

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        raise AssertionError("not run in these tests")


def _plugin(*classes: type[Compressor]) -> types.SimpleNamespace:
    def edgebench_register_compressors(register):  # type: ignore[no-untyped-def]
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(
        edgebench_register_compressors=hookimpl(edgebench_register_compressors))


def _registry(*classes: type[Compressor]):  # type: ignore[no-untyped-def]
    pm = make_plugin_manager(extra_plugins=[("test-compressors", _plugin(*classes))])
    return pm, collect_registry(pm)


def test_stage_follows_target() -> None:
    assert compressor_stage(Sharpen) is Stage.MODEL
    assert compressor_stage(RoundWeights) is Stage.FORMAT


def test_pipeline_syntax_and_canonical_labels() -> None:
    _, registry = _registry(RoundWeights, Sharpen)
    pipelines = resolve_pipelines(["roundw,sharpen:0.5+roundw:bits=16", "roundw"], registry)
    assert [p.label for p in pipelines] == ["roundw", "sharpen:ratio=0.5+roundw:bits=16"]
    assert parse_step("sharpen:0.3:x=true") == ("sharpen", [(None, 0.3), ("x", True)])
    (p,) = resolve_pipelines(["sharpen:1"], registry)  # an int where a float is expected
    assert p.steps[0].options == (("ratio", 1.0),)


@pytest.mark.parametrize("text, message", [
    ("quantum", "unknown compression step 'quantum'; known steps: "),
    ("roundw:bits=8", "option 'bits' must be one of 16; got 8"),
    ("roundw:keep_bias=maybe", "option 'keep_bias' must be a bool, got 'maybe'"),
    ("roundw:depth=3", "has no option 'depth'; its options are bits, keep_bias"),
    ("roundw+sharpen", "'sharpen' changes the PyTorch model and cannot follow 'roundw'"),
    ("roundw+roundw", "'roundw' appears twice in one pipeline"),
    ("roundw,,sharpen", "has an empty variant"),
    (":3", "has no name"),
    ("sharpen:0.3:ratio=0.4", "sets option 'ratio' twice"),
])
def test_bad_pipelines_are_one_sentence(text: str, message: str) -> None:
    _, registry = _registry(RoundWeights, Sharpen)
    with pytest.raises(UserError, match="^.*" + _escape(message)):
        resolve_pipelines([text], registry)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_one_name_for_several_formats_but_not_twice_for_one() -> None:
    class RoundTflite(RoundWeights):
        target: ClassVar[str] = "tflite"

    _, registry = _registry(RoundWeights, RoundTflite)
    assert {"roundw/onnx", "roundw/tflite"} <= set(registry.of(PluginKind.COMPRESSOR))
    with pytest.raises(PluginError, match="'roundw/onnx' is registered by both"):
        pm = make_plugin_manager(extra_plugins=[("a", _plugin(RoundWeights)),
                                                ("b", _plugin(RoundWeights))])
        collect_registry(pm)


def _session(tmp_path: Path, model: Path, compress: tuple[str, ...],
             backends: tuple[str, ...] = ("onnxruntime",), images: int = 10) -> Session:
    pm, registry = _registry(RoundWeights, Sharpen)
    matrix = Matrix(models=(model,), backends=backends, compress=compress, images=images,
                    settings=RunSettings(warmup_iterations=2, iterations=20),
                    output_dir=tmp_path)
    return Session(matrix, pm, registry)


def _run(session: Session, tmp_path: Path) -> RunReport:
    (tmp_path / "out").mkdir(exist_ok=True)
    try:
        return session.run(tmp_path / "out")
    finally:
        session.close()


def test_variant_runs_next_to_fp32_with_speedup_and_map_delta(
        tmp_path: Path, embedded_onnx: Path) -> None:
    report = _run(_session(tmp_path, embedded_onnx, ("roundw",),
                           backends=("onnxruntime", "litert")), tmp_path)
    by_id = {r.case.id: r for r in report.cases}
    assert len(report.cases) == 4  # fp32 and roundw on each backend
    variant = next(r for r in report.cases
                   if r.case.pipeline == ("roundw",) and r.case.backend == "onnxruntime")
    assert variant.status is Status.OK, variant.reason
    assert variant.artifact is not None and variant.artifact.pipeline == ("roundw",)
    assert "roundw: float weights rounded to fp16 precision" in variant.notes
    base = by_id[baseline_id(variant.case)]
    assert base.case.pipeline == () and base.status is Status.OK
    assert variant.artifact.sha256 != base.artifact.sha256  # type: ignore[union-attr]
    assert variant.accuracy is not None and base.accuracy is not None
    assert abs(variant.accuracy.map50_95 - base.accuracy.map50_95) < 0.02  # type: ignore[operator]
    # no roundw for LiteRT's format: skipped with the reason, the rest measured
    tfl = next(r for r in report.cases
               if r.case.pipeline == ("roundw",) and r.case.backend == "litert")
    assert tfl.status is Status.SKIPPED
    assert tfl.reason == "no 'roundw' compressor for the tflite format (it exists for: onnx)"
    rows = {r.case_id: r for r in tradeoffs(report)}
    row = rows[variant.case.id]
    assert row.speedup == pytest.approx(base.latency.p50_ms / variant.latency.p50_ms)  # type: ignore[union-attr]
    assert row.map_delta_points == pytest.approx(
        (variant.accuracy.map50_95 - base.accuracy.map50_95) * 100)  # type: ignore[operator]
    assert rows[base.case.id].speedup == pytest.approx(1.0)
    assert any(r.on_front for r in rows.values())
    md = render_markdown(report)
    assert "## Compression: speed-up and mAP delta versus fp32" in md
    assert "| roundw | onnxruntime | local |" in md and "### Pareto front" in md
    assert "  - roundw: float weights rounded to fp16 precision" in md


def test_model_step_needs_a_pytorch_model(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    session = _session(tmp_path, make_onnx(), ("sharpen:0.3",))
    with pytest.raises(UserError, match=r"'sharpen' changes the PyTorch model, and conv.onnx "
                                        r"is onnx; pass the .pt"):
        _run(session, tmp_path)
    assert not (tmp_path / "out" / "report.json").exists()  # refused before any work


@pytest.mark.export
def test_step_checks_run_before_any_work(tmp_path: Path, embedded_onnx: Path) -> None:
    pytest.importorskip("ultralytics")  # the embedded ONNX's .pt is used for MODEL steps
    session = _session(tmp_path, embedded_onnx, ("sharpen:1.5",))
    with pytest.raises(UserError, match=r"sharpen ratio must be in \(0, 1\), got 1.5"):
        _run(session, tmp_path)


def test_compression_needs_a_train_split(tmp_path: Path, embedded_onnx: Path) -> None:
    from edgebench.variants import train_data_of

    images = tmp_path / "imgs"
    images.mkdir()
    with pytest.raises(UserError, match=r"not a YOLO data\.yaml; pass one with --train-data"):
        train_data_of(Matrix(data=images, compress=("roundw",)))
    yaml = tmp_path / "data.yaml"
    yaml.write_text("path: .\nval: imgs\nnames: [a]\n")
    ctx = CompressionContext(source=None, data_yaml=yaml, imgsz=320,  # type: ignore[arg-type]
                             workdir=tmp_path)
    with pytest.raises(UserError, match="has no 'train' split"):
        ctx.train_images(4)
    yaml.write_text("path: .\ntrain: imgs\nval: imgs\nnames: [a]\n")
    with pytest.raises(UserError, match=r"the train split of .* has no images"):
        ctx.train_images(4)


def test_embedded_train_split_is_not_the_val_split(tmp_path: Path) -> None:
    ctx = CompressionContext(source=None, data_yaml=None, imgsz=320,  # type: ignore[arg-type]
                             workdir=tmp_path)
    images = ctx.train_images(8)
    assert len(images) == 8 and all("/train/" in str(p) for p in images)
    assert len(ctx.train_images()) == 600


def test_model_step_missing_its_tools_says_so(tmp_path: Path, embedded_onnx: Path) -> None:
    class NoTorch(Sharpen):
        @classmethod
        def host_unavailable_reason(cls) -> str | None:
            return "torch is not installed: pip install 'edgebench[export]'"

    pm, registry = _registry(RoundWeights, NoTorch)
    matrix = Matrix(models=(embedded_onnx,), backends=("onnxruntime",),
                    compress=("sharpen:0.3",), output_dir=tmp_path)
    session = Session(matrix, pm, registry)
    try:
        with pytest.raises(UserError, match=r"^compression step 'sharpen' cannot run here: "
                                            r"sharpen for pt is unavailable: torch is not "
                                            r"installed"):
            session.variants.check(session.sources())
    finally:
        session.close()
