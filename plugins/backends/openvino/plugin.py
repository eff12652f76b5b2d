"""OpenVINO backend: runs ``.onnx`` models as they are and OpenVINO IR, on the CPU by default,
in f32 unless told otherwise.

Where the model comes from:

- an ``.onnx`` (given with ``--model``, or the embedded one): run as is; OpenVINO reads ONNX
  directly, so nothing is converted on the host and the host needs no OpenVINO for it;
- a ``.pt``: Ultralytics ``format='openvino'`` (fp32, static shape at ``--imgsz``, batch 1),
  cached by content hash;
- OpenVINO IR made by a compression step (``format`` ``"openvino"``).

**The IR artifact convention** (every producer of format ``openvino`` follows it, e.g. the
NNCF int8 compressor): the artifact's path is a *directory* in Ultralytics' layout,
``<stem>_openvino_model/``, holding exactly one ``<stem>.xml`` and its ``<stem>.bin`` and
optionally Ultralytics' ``metadata.yaml`` (class names, stride, imgsz, read by the core as
for ncnn's model directories). The whole directory is pushed to the device; the runner
loads its one ``.xml``. :func:`describe_ir` fills in the artifact's input name, shape and
precision from the ``.xml``.

Options (``--backend-option openvino.KEY=VALUE``, see ``openvino_runner.py``): ``device``,
``inference_precision`` (``f32``; ``bf16``/``f16`` where the device's
``OPTIMIZATION_CAPABILITIES`` list them), ``performance_hint`` (``latency``/``throughput``)
and ``num_streams`` (``0``: the hint's choice); threads are the run's ``--threads``
(``INFERENCE_NUM_THREADS``). What the compiled model really uses is read back and reported in
``runtime.details``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.accuracy import FP16_TOLERANCE, precision_tolerance
from edgebench.contracts import Backend, resolve_options
from edgebench.errors import CaseError, CaseSkipped, UserError
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz
from edgebench.pipeline import export_with_ultralytics
from edgebench.precision_label import label_precision
from edgebench.records import Artifact, DeviceInfo, RunSettings, RuntimeInfo, Tolerance

__all__ = ["BF16_TOLERANCE", "OpenVINOBackend", "describe_ir", "ir_xml"]


BF16_TOLERANCE = Tolerance(
    box_max_abs_px=1.5, score_max_abs=0.05, min_detection_agreement=0.95, raw_max_rel=0.1,
    basis="bf16 arithmetic (OpenVINO inference_precision=bf16, AVX512-BF16 CPU), measured "
          "here on the embedded YOLOv8n, 100 val images, against the fp32 reference: "
          "detection boxes 0.44 px at 320 and 0.61 px at 640, scores 0.020, agreement "
          "0.998 and 1.0, the largest raw difference 4.2 % of the largest output (an anchor "
          "no detection uses); bf16 keeps 8 mantissa bits, so errors grow with the "
          "coordinates, hence the margin")
"""OpenVINO computing in bf16: its rounding (2^-9 relative) moves a 640 px box coordinate
by up to about 1.25 px from the output's own rounding alone, far beyond the fp32 tolerance
and a little beyond fp16's measured figures."""


class OpenVINOBackend(Backend):
    """OpenVINO Runtime: ONNX read directly or IR, explicit precision, hint, streams, threads."""

    name: ClassVar[str] = "openvino"
    formats: ClassVar[tuple[str, ...]] = ("onnx", "openvino")
    runtime_modules: ClassVar[tuple[str, ...]] = ("openvino",)
    install_hint: ClassVar[str] = "pip install 'edgebench[openvino]'"
    device_requirements: ClassVar[tuple[str, ...]] = ("openvino>=2024.6",)
    max_batch: ClassVar[int | None] = None
    """Any static batch: the runner compiles the model for its own input shape."""
    compression_format: ClassVar[str | None] = "openvino"
    """Its FORMAT compression steps are OpenVINO's (``int8``: NNCF, writing IR), also when
    the export is an ``.onnx`` run as is."""
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "device": "CPU", "inference_precision": "f32", "performance_hint": "latency",
        "num_streams": 0}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "inference_precision": ("f32", "bf16", "f16"),
        "performance_hint": ("latency", "throughput")}

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed: pip install 'edgebench[openvino]'"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "onnx":
            return source
        if source.format == "openvino":
            return describe_ir(source)
        if source.format == "pt":
            if importlib.util.find_spec("openvino") is None:
                raise CaseSkipped("making OpenVINO IR from a .pt needs openvino on the host "
                                  "(Ultralytics format='openvino'): pip install "
                                  "'edgebench[openvino,export]'")
            return describe_ir(export_with_ultralytics(source, "openvino", workdir,
                                                       imgsz=imgsz))
        raise CaseSkipped(f"OpenVINO runs .onnx and OpenVINO IR; a {source.format} model "
                          "cannot be converted to them here: pass the .pt or .onnx it came "
                          "from")

    def runner(self) -> Path:
        return Path(__file__).with_name("openvino_runner.py")

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        options = resolve_options(self, settings)
        if options["num_streams"] < 0:
            raise UserError(f"backend 'openvino' option 'num_streams' must be 0 (the "
                            f"performance hint's choice) or more, got {options['num_streams']}.")
        if not options["device"]:
            raise UserError("backend 'openvino' option 'device' must name a device (CPU, "
                            "GPU, NPU...), got an empty string.")
        return options

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        if info.arch in ("armv6l", "armv7l"):
            return "OpenVINO publishes no wheels for 32-bit ARM; use a 64-bit OS"
        return None

    def tolerance(self, artifact: Artifact, runtime: RuntimeInfo | None) -> Tolerance | None:
        """The tolerance of the model's precision read from its graph, widened to the
        arithmetic the compiled model really used (``runtime.details``'s
        ``inference_precision``): :data:`BF16_TOLERANCE` for bf16,
        :data:`edgebench.accuracy.FP16_TOLERANCE` for f16. Compressed artifacts are judged
        by their mAP."""
        if artifact.pipeline:
            return None
        base = precision_tolerance(artifact.precision)
        used = runtime.details.get("inference_precision") if runtime is not None else None
        arithmetic = {"bf16": BF16_TOLERANCE, "f16": FP16_TOLERANCE}.get(used or "f32")
        if base is None or arithmetic is None:
            return base
        return max(base, arithmetic, key=lambda t: t.box_max_abs_px)


# -- reading an IR's .xml on the host (no runtime needed) --------------------------------

_WEIGHTED = {"Convolution": (1,), "GroupConvolution": (1,), "ConvolutionBackpropData": (1,),
             "GroupConvolutionBackpropData": (1,), "MatMul": (0, 1)}
"""Op type -> the inputs that may be its weights (a constant behind them)."""
_PASS_THROUGH = {"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze",
                 "Squeeze"}
"""What lies between a weight constant and its op: decompression (fp16 or int8 weights ->
Convert, Subtract zero point, Multiply scale) and layout changes; followed by input 0."""
_CONST_TYPES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i8": "int8",
                "u8": "int8", "i4": "int8", "u4": "int8"}
_PORT_TYPES = {"FP32": "fp32", "FP16": "fp16", "BF16": "bf16"}


def ir_xml(path: Path) -> Path:
    """The ``.xml`` of an IR artifact: ``path`` itself, or the one ``.xml`` in a directory.
    :class:`CaseError` when there is not exactly one or its ``.bin`` is missing."""
    xml = path
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if len(found) != 1:
            raise CaseError(f"the OpenVINO model directory {path.name} holds {len(found)} "
                            ".xml files; it needs exactly one (with its .bin)")
        xml = found[0]
    if not xml.with_suffix(".bin").is_file():
        raise CaseError(f"{xml.name} has no weights: {xml.with_suffix('.bin').name} is not "
                        "next to it (OpenVINO IR needs both files)")
    return xml


def describe_ir(source: Artifact) -> Artifact:
    """``source`` (format ``openvino``, see the module docstring) with its input name and
    shape (NCHW as the harness feeds it; ``-1`` for a dynamic dimension), that size as
    ``imgsz`` when static, and the precision of its weights: the element type of the
    constant behind each convolution's and matrix product's weight input (``i8``/``u8``, or
    a ``FakeQuantize`` on the way: ``int8``), labelled with the graph's I/O types by
    :func:`edgebench.precision_label.label_precision` as the ONNX and ncnn readers do.
    :class:`CaseError` when the ``.xml`` cannot be read or has no single input."""
    xml = ir_xml(source.path)
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise CaseError(f"{xml.name} is not a readable OpenVINO IR .xml ({exc})") from None
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    producer = {(e.get("to-layer"), e.get("to-port")): e.get("from-layer")
                for e in root.iter("edge")}
    params = [layer for layer in layers.values() if layer.get("type") == "Parameter"]
    if len(params) != 1:
        raise CaseError(f"{xml.name} has {len(params)} inputs; edgebench runs single-input "
                        "image models")
    (param,) = params
    data = param.find("data")
    dims = (data.get("shape", "") if data is not None else "").split(",")
    shape = tuple(int(d) if d.strip().isdigit() else -1 for d in dims if d.strip())
    port = param.find("output/port")
    names = port.get("names", "") if port is not None else ""
    input_name = names.split(",")[0] if names else param.get("name")
    size = (shape[2], shape[3]) if len(shape) == 4 and min(shape[2:]) > 0 else None

    def input_ids(layer: ET.Element) -> list[str | None]:
        return [p.get("id") for p in layer.findall("input/port")]

    def weight_type(layer_id: str | None) -> str | None:
        for _ in range(8):  # Multiply(Subtract(Convert(Const))) chains are short
            layer = layers.get(layer_id or "")
            if layer is None:
                return None
            kind = layer.get("type")
            if kind == "Const":
                found = layer.find("data")
                element = found.get("element_type", "") if found is not None else ""
                return _CONST_TYPES.get(element, "other")
            if kind == "FakeQuantize":
                return "int8"
            ports = input_ids(layer)
            if kind not in _PASS_THROUGH or not ports:
                return None
            layer_id = producer.get((layer.get("id"), ports[0]))
        return None

    weights = set()
    for layer in layers.values():
        ports = input_ids(layer)
        for index in _WEIGHTED.get(layer.get("type", ""), ()):
            if index < len(ports):
                kind = weight_type(producer.get((layer.get("id"), ports[index])))
                if kind is not None:
                    weights.add(kind)
    io = {_PORT_TYPES.get(p.get("precision", ""), "other")
          for layer in layers.values() if layer.get("type") in ("Parameter", "Result")
          for p in layer.iter("port")}
    return dataclasses.replace(source, input_name=input_name, input_shape=shape or None,
                               imgsz=size or source.imgsz,
                               precision=label_precision(weights, io))


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(OpenVINOBackend)
