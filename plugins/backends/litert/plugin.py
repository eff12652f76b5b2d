"""LiteRT (TensorFlow Lite) backend: runs ``.tflite`` models with ``ai-edge-litert`` or
``tflite-runtime``, the XNNPACK delegate on by default.

Where the ``.tflite`` comes from:

- a ``.tflite`` given with ``--model``: run as is;
- a ``.pt``: Ultralytics ``format='litert'`` (litert-torch, no TensorFlow), cached by content
  hash. Its input stays NCHW and its boxes come out divided by the input size
  (``boxes_normalised``), as Ultralytics' own LiteRT backend expects;
- the embedded ONNX: the committed export of the same ``.pt`` (``harness/assets``);
- any other ``.onnx``: not possible here. ONNX -> TFLite needs onnx2tf and TensorFlow
  (about 2 GB, no numpy-2 build of the combination Ultralytics pins), which edgebench does
  not install; the case is skipped and says so.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.accuracy import precision_tolerance
from edgebench.contracts import Backend, resolve_options
from edgebench.errors import CaseError, CaseSkipped
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz
from edgebench.pipeline import export_with_ultralytics, prebuilt_export
from edgebench.records import Artifact, DeviceInfo, RunSettings, RuntimeInfo, Tolerance
from edgebench.tflite_info import tflite_input, tflite_precision

__all__ = ["LiteRTBackend", "describe_tflite", "tflite_input"]

EXPORT_HINT = "pip install 'edgebench[export]'"


class LiteRTBackend(Backend):
    """LiteRT interpreter, XNNPACK delegate (configurable), every usable core by default."""

    name: ClassVar[str] = "litert"
    formats: ClassVar[tuple[str, ...]] = ("tflite",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("ai_edge_litert", "tflite_runtime")
    install_hint: ClassVar[str] = ("pip install 'edgebench[litert]' (ai-edge-litert; or "
                                   "tflite-runtime where numpy < 2)")
    boxes_normalised: ClassVar[bool | None] = True
    max_batch: ClassVar[int | None] = None
    """Any static batch (a batch-2 Ultralytics export runs as one (2, 3, H, W) input)."""
    option_defaults: ClassVar[Mapping[str, Any]] = {"runtime": "auto", "xnnpack": True}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "runtime": ("auto", "ai-edge-litert", "tflite-runtime")}

    def device_install_requirements(self, info: DeviceInfo) -> tuple[str, ...]:
        """What to install on a device with this Python and numpy, keeping its numpy:

        - numpy < 2 and Python 3.8-3.11: ``tflite-runtime`` (its last release, 2.14, is
          built for numpy 1 and has wheels for those Pythons only; what many Raspberry Pi
          images run);
        - numpy < 2 on another Python: ``ai-edge-litert 'numpy<2'`` (a plain install
          upgrades numpy to 2 through its ml-dtypes dependency; pinned, ai-edge-litert 2.3
          runs on numpy 1.26: checked on x86_64, Python 3.11);
        - else (numpy 2, or none yet): ``ai-edge-litert``.
        """
        numpy = info.runtimes.get("numpy")
        if numpy and _major_minor(numpy)[0] < 2:
            if (3, 8) <= _major_minor(info.python) <= (3, 11):
                return ("tflite-runtime",)
            return ("ai-edge-litert", "numpy<2")
        return ("ai-edge-litert",)

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if not any(importlib.util.find_spec(m) for m in cls.runtime_modules):
            return f"neither ai-edge-litert nor tflite-runtime is installed: {cls.install_hint}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "tflite":
            return describe_tflite(source)
        if source.format == "pt":
            if importlib.util.find_spec("litert_torch") is None:
                raise CaseSkipped("making a .tflite from a .pt needs litert-torch (Ultralytics "
                                  f"format='litert'): {EXPORT_HINT}")
            return describe_tflite(export_with_ultralytics(source, "litert", workdir,
                                                           imgsz=imgsz))
        if source.format == "onnx":
            prebuilt = prebuilt_export(source, "tflite", imgsz)
            if prebuilt is not None:
                return describe_tflite(prebuilt)
            raise CaseSkipped(
                "a .tflite cannot be made from an .onnx here: that needs onnx2tf and "
                "TensorFlow, which edgebench does not install; pass the .pt it came from "
                "(exported with litert-torch) or a .tflite")
        raise CaseSkipped(f"LiteRT runs .tflite models; a {source.format} model cannot be "
                          "converted to one")

    def runner(self) -> Path:
        return Path(__file__).with_name("litert_runner.py")

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        return resolve_options(self, settings)

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        return None

    def tolerance(self, artifact: Artifact, runtime: RuntimeInfo | None) -> Tolerance | None:
        """The tolerance of the model's precision read from its graph (XNNPACK runs fp32 on
        every CPU unless told to force fp16; fp16 weights are judged by the fp16 one);
        compressed artifacts are judged by their mAP, not held to a float tolerance."""
        return None if artifact.pipeline else precision_tolerance(artifact.precision)


def _major_minor(version: str | None) -> tuple[int, int]:
    """``(major, minor)`` of a version string such as ``"1.26.4"`` or ``"3.11.7"``;
    ``(0, 0)`` when it does not start with two numbers."""
    parts = (version or "").split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "0")
    except (ValueError, IndexError):
        return 0, 0


# -- reading a .tflite's input on the host (no runtime needed) ---------------------------


def describe_tflite(source: Artifact) -> Artifact:
    """``source`` with the model's input name, shape (NCHW, as the harness feeds it; the
    flatbuffer's, not the size it was asked to be exported at), that size as ``imgsz`` and
    the precision of its weights (:func:`edgebench.tflite_info.tflite_precision`)."""
    import dataclasses

    try:
        name, shape = tflite_input(source.path)
    except (ValueError, struct.error, IndexError) as exc:
        raise CaseError(f"{source.path.name} is not a valid .tflite model ({exc})") \
            from None
    if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3):
        shape = (shape[0], shape[3], shape[1], shape[2])  # NHWC: the runner transposes
    size = (shape[2], shape[3]) if len(shape) == 4 and shape[2] > 0 and shape[3] > 0 else None
    return dataclasses.replace(source, input_name=name, input_shape=shape,
                               imgsz=size or source.imgsz,
                               precision=tflite_precision(source.path))


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(LiteRTBackend)
