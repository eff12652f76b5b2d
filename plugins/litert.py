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

from edgebench.accuracy import FP32_TOLERANCE
from edgebench.contracts import resolve_options
from edgebench.errors import CaseError, CaseSkipped
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import export_with_ultralytics, prebuilt_export
from edgebench.records import Artifact, DeviceInfo, RunSettings, RuntimeInfo, Tolerance

EXPORT_HINT = "pip install 'edgebench[export]'"


class LiteRTBackend:
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

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if not any(importlib.util.find_spec(m) for m in cls.runtime_modules):
            return f"neither ai-edge-litert nor tflite-runtime is installed: {cls.install_hint}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: int | None) -> Artifact:
        if source.format == "tflite":
            return describe_tflite(source)
        if source.format == "pt":
            if importlib.util.find_spec("litert_torch") is None:
                raise CaseSkipped("making a .tflite from a .pt needs litert-torch (Ultralytics "
                                  f"format='litert'): {EXPORT_HINT}")
            return export_with_ultralytics(source, "litert", workdir, imgsz=imgsz)
        if source.format == "onnx":
            prebuilt = prebuilt_export(source, "tflite", imgsz)
            if prebuilt is not None:
                return prebuilt
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
        """fp32 (XNNPACK runs fp32 on every CPU unless told to force fp16); compressed
        artifacts are judged by their mAP, not held to the fp32 tolerance."""
        return None if artifact.pipeline else FP32_TOLERANCE


# -- reading a .tflite's input on the host (no runtime needed) ---------------------------


def describe_tflite(source: Artifact) -> Artifact:
    """``source`` with the model's input name and shape (NCHW, as the harness feeds it)."""
    import dataclasses

    try:
        name, shape = tflite_input(Path(source.path))
    except (ValueError, struct.error, IndexError) as exc:
        raise CaseError(f"{Path(source.path).name} is not a valid .tflite model ({exc})") \
            from None
    if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3):
        shape = (shape[0], shape[3], shape[1], shape[2])  # NHWC: the runner transposes
    return dataclasses.replace(source, input_name=name, input_shape=shape)


def tflite_input(path: Path) -> tuple[str, tuple[int, ...]]:
    """Name and shape of the first input of the first subgraph, read from the flatbuffer
    (schema: Model.subgraphs[0].inputs[0] -> SubGraph.tensors[i].shape / .name)."""
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("no TFL3 identifier")

    def table(pos: int) -> tuple[int, int, int]:
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        vsize = struct.unpack_from("<H", buf, vtable)[0]
        return pos, vtable, vsize

    def field(tab: tuple[int, int, int], index: int) -> int | None:
        pos, vtable, vsize = tab
        if 4 + 2 * index >= vsize:
            return None
        offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
        return pos + offset if offset else None

    def deref(at: int) -> int:
        return at + struct.unpack_from("<I", buf, at)[0]

    def vector(at: int) -> tuple[int, int]:
        start = deref(at)
        return start + 4, struct.unpack_from("<I", buf, start)[0]

    model = table(deref(0))
    subgraphs_at = field(model, 2)
    if subgraphs_at is None:
        raise ValueError("no subgraphs")
    start, count = vector(subgraphs_at)
    if not count:
        raise ValueError("no subgraphs")
    subgraph = table(deref(start))
    inputs_at, tensors_at = field(subgraph, 1), field(subgraph, 0)
    if inputs_at is None or tensors_at is None:
        raise ValueError("no inputs")
    istart, icount = vector(inputs_at)
    if not icount:
        raise ValueError("no inputs")
    index = struct.unpack_from("<i", buf, istart)[0]
    tstart, tcount = vector(tensors_at)
    if not 0 <= index < tcount:
        raise ValueError("input tensor index out of range")
    tensor = table(deref(tstart + 4 * index))
    shape_at, name_at = field(tensor, 0), field(tensor, 3)
    shape: tuple[int, ...] = ()
    if shape_at is not None:
        sstart, scount = vector(shape_at)
        shape = struct.unpack_from(f"<{scount}i", buf, sstart)
    name = ""
    if name_at is not None:
        nstart, ncount = vector(name_at)
        name = buf[nstart:nstart + ncount].decode("utf-8", "replace")
    return name, tuple(int(d) for d in shape)


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(LiteRTBackend)
