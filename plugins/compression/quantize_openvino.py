"""OpenVINO int8 with NNCF post-training quantization (``int8`` for the ``openvino`` format).

``nncf.quantize`` inserts FakeQuantize nodes into the float ``ov.Model`` (read from the
backend's IR directory, or converted from an ``.onnx`` with ``ov.convert_model``), with
ranges measured on real train images (never the val images mAP is measured on), then
applies bias correction; OpenVINO's CPU plugin runs the FakeQuantize'd convolutions as int8
kernels. By default the detection head's tail stays float, found from the graph by the same
rule as the ONNX and LiteRT steps (:mod:`.head_tail`): the DFL and every non-convolution node
after the last feature convolutions. Those nodes go to NNCF as an ``IgnoredScope`` by name.

The output is an Ultralytics-style IR directory ``<stem>_openvino_model/`` holding
``<stem>.xml``, ``<stem>.bin`` (float constants kept fp32: ``compress_to_fp16=False``) and
the source's ``metadata.yaml``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import logging
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from edgebench.batching import static_batch
from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export, exported_artifact
from edgebench.plugins.backends.openvino.plugin import describe_ir, ir_xml
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, quantization_notes
from .calibration import check_calibration, images_fingerprint, input_hw, tensors
from .head_tail import head_tail

NNCF_HINT = "pip install 'edgebench[nncf]'"
PRESETS = ("mixed", "performance")
"""NNCF presets: ``mixed`` = symmetric int8 weights, asymmetric activations (SiLU outputs
reach below zero; Ultralytics' own OpenVINO int8 export uses it); ``performance`` =
symmetric both (NNCF's default)."""
IR_SUFFIX = "_openvino_model"
_CONVS = frozenset({"Convolution", "GroupConvolution"})
_NOT_OPS = frozenset({"Parameter", "Result"})
_QUANTIZED = frozenset({"FakeQuantize", "FakeConvert"})


def versions() -> dict[str, str]:
    """The installed NNCF and OpenVINO versions (cache key, converter note)."""
    import nncf
    import openvino

    return {"nncf": str(nncf.__version__), "openvino": str(openvino.__version__).split("-")[0]}


# -- the model ----------------------------------------------------------------------------


def read_float_model(model: Artifact) -> Any:
    """The ``ov.Model`` of an ``.onnx`` or an IR; :class:`CaseError` for another format or a
    model that is already quantized."""
    import openvino as ov

    if model.format == "onnx":
        graph = ov.convert_model(str(model.path))
    elif model.format == "openvino":
        graph = ov.Core().read_model(str(ir_xml(model.path)))
    else:
        raise CaseError(f"int8 for openvino got a {model.format} model")
    quantized = {op.get_type_name() for op in graph.get_ops()} & _QUANTIZED
    if quantized:
        raise CaseError(f"int8: {model.path.name} is already quantized (it has "
                        f"{', '.join(sorted(quantized))}); quantize the float model once")
    return graph


def head_tail_ops(graph: Any) -> list[str]:
    """Friendly names of the ``ov.Model``'s head tail (:func:`.head_tail.head_tail` with
    Convolution / GroupConvolution as convolutions and Softmax starting the DFL); parameters,
    results and constants left out, with what computes on constants only (the ``Convert``
    that decompresses an fp16 IR's weights)."""
    ops = list(graph.get_ordered_ops())  # topological order
    index = {op.get_friendly_name(): i for i, op in enumerate(ops)}
    inputs = [[index[i.get_source_output().get_node().get_friendly_name()]
               for i in op.inputs()] for op in ops]
    types = [op.get_type_name() for op in ops]
    constant: set[int] = set()
    for i, feeding in enumerate(inputs):
        if types[i] == "Constant" or (feeding and all(j in constant for j in feeding)):
            constant.add(i)
    tail = head_tail(types, inputs, is_conv=_CONVS.__contains__, softmax={"Softmax"})
    return [ops[i].get_friendly_name() for i in tail
            if types[i] not in _NOT_OPS and i not in constant]


def fake_quantized_ops(xml: Path) -> dict[str, list[str]]:
    """For an IR: the friendly names of the ops fed (directly) by a FakeQuantize, by op
    type. A node missing here computes on float inputs."""
    import openvino as ov

    fed: dict[str, list[str]] = {}
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize"
               for i in op.inputs()):
            fed.setdefault(op.get_type_name(), []).append(op.get_friendly_name())
    return fed


class CalibrationData:
    """The calibration images as NNCF iterates them (once per algorithm): (B, 3, H, W)
    float32 in [0, 1], letterboxed as for inference; B = the model's static batch (the
    last group padded with repeats, as for ONNX Runtime's calibration)."""

    def __init__(self, images: Sequence[Path], hw: tuple[int, int], batch: int) -> None:
        self.images, self.hw, self.batch = list(images), hw, batch

    def __iter__(self) -> Iterator[Any]:
        import numpy as np

        from edgebench.batching import groups

        if self.batch == 1:
            yield from tensors(self.images, self.hw, progress=False, what="calibrating")
            return
        loaded = list(tensors(self.images, self.hw, progress=False, what="calibrating"))
        for group in groups(len(loaded), self.batch):
            yield np.concatenate([loaded[i] for i in group])

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


def quantize(graph: Any, data: CalibrationData, *, ignored: Sequence[str], preset: str,
             fast_bias_correction: bool, progress: bool) -> Any:
    """``nncf.quantize`` on every batch of ``data``; ops named in ``ignored`` stay float
    (NNCF refuses a name its graph lacks, so a stale name is an error, not a no-op). NNCF's
    progress bars go to stderr with ``progress``, nowhere without."""
    import nncf

    presets = {"mixed": nncf.QuantizationPreset.MIXED,
               "performance": nncf.QuantizationPreset.PERFORMANCE}
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
        return nncf.quantize(graph, nncf.Dataset(data), preset=presets[preset],
                             target_device=nncf.TargetDevice.CPU, subset_size=len(data),
                             fast_bias_correction=fast_bias_correction,
                             ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored
                             else None)


def write_metadata(model: Artifact, target: Path) -> None:
    """Ultralytics' ``metadata.yaml`` next to the IR: copied from the source IR directory,
    or made from an ``.onnx``'s ``metadata_props`` (values as Python literals, read as
    Ultralytics reads them); nothing when the source has none."""
    if model.format == "openvino":
        found = (model.path if model.path.is_dir() else model.path.parent) / "metadata.yaml"
        if found.exists():
            shutil.copyfile(found, target / "metadata.yaml")
        return
    import onnx
    import yaml

    props = {p.key: p.value for p in onnx.load(str(model.path),
                                               load_external_data=False).metadata_props}
    if not props:
        return
    data: dict[str, object] = {}
    for key, value in props.items():
        try:
            data[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            data[key] = value
    (target / "metadata.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


# -- the step -----------------------------------------------------------------------------


class OpenVinoInt8(Compressor):
    """Static int8 for OpenVINO with NNCF, calibrated on train images; head tail float."""

    name: ClassVar[str] = "int8"
    target: ClassVar[str] = "openvino"
    summary: ClassVar[str] = ("int8 for OpenVINO: NNCF post-training quantization "
                              "calibrated on train images; the detection head's tail and DFL "
                              "kept float")
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "calibration": 100, "keep_head_float": True, "preset": "mixed",
        "fast_bias_correction": True}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"preset": PRESETS}
    primary_option: ClassVar[str | None] = "calibration"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        missing = [m for m in ("openvino", "nncf") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed: {NNCF_HINT}"
        return None

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        check_calibration(self.name, int(options["calibration"]), context)

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        graph = read_float_model(model)  # a wrong or quantized model: before calibrating
        images = check_calibration(self.name, int(options["calibration"]), context)
        hw = input_hw(model.input_shape, context.imgsz)
        have = versions()
        key: dict[str, object] = {**options, "images": images_fingerprint(images),
                                  **have, "hw": list(hw)}

        def produce(out: Path) -> None:
            kept = head_tail_ops(graph) if options["keep_head_float"] else []
            data = CalibrationData(images, hw, static_batch(model.input_shape))
            quantized = quantize(graph, data, ignored=kept, preset=str(options["preset"]),
                                 fast_bias_correction=bool(options["fast_bias_correction"]),
                                 progress=context.progress)
            stem = context.source.path.stem  # the user's model (an export may be "source")
            target = out / f"{stem}{IR_SUFFIX}"
            target.mkdir()
            import openvino as ov

            ov.save_model(quantized, str(target / f"{stem}.xml"),
                          compress_to_fp16=False)
            write_metadata(model, target)
            bias = "fast" if options["fast_bias_correction"] else "full"
            (out / "artifact.json").write_text(json.dumps({
                "file": target.name, "format": "openvino", "imgsz": list(hw),
                "input_name": model.input_name, "gflops": model.gflops,
                "converter": f"nncf {have['nncf']} quantize (openvino {have['openvino']}; "
                             f"{options['preset']} preset, int8 weights and activations, "
                             f"{bias} bias correction)",
                **have, "preset": options["preset"],
                "calibration_images": len(images), "calibration_split": "train",
                "kept_float": kept}))

        path, meta = cached_export(model, "openvino-int8", key, produce)
        # input and precision read from the IR as the backend reads any IR (the DFL's
        # convolution keeps fp32 weights: "mixed", as the ONNX step's QDQ model)
        return describe_ir(exported_artifact(path, "openvino", model, meta))

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return quantization_notes(artifact_meta(artifact.path))


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(OpenVinoInt8)
