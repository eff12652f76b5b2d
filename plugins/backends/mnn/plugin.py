"""MNN backend: runs ``.mnn`` models with the ``mnn`` wheel (``import MNN``) on the CPU.

Where the ``.mnn`` comes from:

- an ``.onnx``: the ``mnn`` wheel's own converter (``mnnconvert -f ONNX``, see
  :mod:`.mnnconvert`), cached by content hash; a model it rejects fails the case with
  ``converting … failed (exit 1): <the converter's last error line>``;
- a ``.pt``: Ultralytics' ONNX export first, then the same converter.

Options (``runner_options``; the semantics are in ``mnn_runner.py``): ``backend`` (``CPU``
only), ``precision`` (``normal``; ``high``, ``low``: fp16 arithmetic on ARMv8.2+ CPUs,
no effect on x86), ``memory`` (``normal``; ``low``: dynamic int8 compute for a model with
converter-quantized weights, see the ``int8-weights`` compressor). Threads: the run's, else
MNN's default of 4.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.accuracy import FP16_TOLERANCE
from edgebench.contracts import Backend, resolve_options
from edgebench.errors import CaseSkipped
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz
from edgebench.pipeline import export_with_ultralytics
from edgebench.records import Artifact, DeviceInfo, RunSettings, RuntimeInfo, Tolerance

from .convert import to_mnn

WINOGRAD_TOLERANCE = Tolerance(
    box_max_abs_px=0.2, score_max_abs=3e-3, min_detection_agreement=0.99, raw_max_rel=2e-3,
    basis="MNN fp32 with Winograd convolution (winograd=on, MNN's default): measured here on "
          "the embedded YOLOv8n, 100 val images, threads 1 and 2: scores within 6.7e-4, "
          "boxes of detections within 0.009 px, raw outputs within 0.06 px at 320 (against "
          "ONNX Runtime) and 3.9e-4, 0.014 px, 0.12 px at 640 from the .pt (against PyTorch); "
          "agreement 1.0 and the same mAP in both. With winograd=off MNN is within the fp32 "
          "tolerance; fp16 weights move scores by 7e-3, ten times more")
"""MNN's default convolution picks Winograd transforms for 3x3 kernels, which round more
than direct convolution: above :data:`edgebench.accuracy.FP32_TOLERANCE`'s scores, well
below what fp16 does."""

MNN_BACKENDS = ("CPU",)
"""The MNN backends edgebench runs. MNN also has OpenCL, Vulkan, Metal, CUDA..., which the
PyPI wheel is not built with."""


class MnnBackend(Backend):
    """MNN's Interpreter/Session API on the CPU, fp32 unless ``precision=low`` on an fp16 CPU."""

    name: ClassVar[str] = "mnn"
    formats: ClassVar[tuple[str, ...]] = ("mnn",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("MNN",)
    install_hint: ClassVar[str] = "pip install 'edgebench[mnn]'"
    device_requirements: ClassVar[tuple[str, ...]] = ("mnn",)
    boxes_normalised: ClassVar[bool | None] = False
    max_batch: ClassVar[int | None] = None
    """Any static batch: the session takes the model's own input shape."""
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "backend": "CPU", "precision": "normal", "memory": "normal", "winograd": "on"}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "backend": MNN_BACKENDS, "precision": ("normal", "high", "low"),
        "memory": ("normal", "high", "low"), "winograd": ("on", "off")}

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("MNN") is None:
            return f"MNN is not installed: {cls.install_hint}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "mnn":
            return source
        if source.format == "pt":  # via Ultralytics' ONNX export; provenance: the .pt
            onnx = export_with_ultralytics(source, "onnx", workdir, imgsz=imgsz)
            return dataclasses.replace(to_mnn(onnx), source_sha256=source.sha256)
        if source.format == "onnx":
            return to_mnn(source)
        raise CaseSkipped(f"MNN runs .mnn models made from an .onnx or a .pt; a "
                          f"{source.format} model cannot be converted to one here")

    def runner(self) -> Path:
        return Path(__file__).with_name("mnn_runner.py")

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        return resolve_options(self, settings)

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        return None

    def tolerance(self, artifact: Artifact, runtime: RuntimeInfo | None) -> Tolerance | None:
        """Of an uncompressed fp32 model: fp16's when the runner reports fp16 compute
        (``precision=low`` on an fp16 CPU), :data:`WINOGRAD_TOLERANCE` when Winograd
        convolution was on (MNN's default), else fp32's; compressed artifacts are judged by
        their mAP (``None``)."""
        tolerance = super().tolerance(artifact, runtime)
        details = runtime.details if runtime is not None else {}
        if tolerance is None:
            return None
        if str(details.get("compute", "")).startswith("fp16"):
            return FP16_TOLERANCE
        if str(details.get("winograd", "on")).startswith("on"):
            return WINOGRAD_TOLERANCE
        return tolerance


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(MnnBackend)
