"""ncnn backend: runs ncnn models (a ``.param`` and its ``.bin``) with the ``ncnn`` wheel.

An ncnn artifact is a directory (what Ultralytics writes as ``*_ncnn_model/``): the
``.param``, the ``.bin`` and ``edgebench.json`` (the input shape it was exported for; ncnn
itself accepts any size and silently computes garbage). Where it comes from:

- an ncnn model directory or ``.param`` given with ``--model`` (its ``.bin`` next to it);
- a ``.pt``: Ultralytics ``format='ncnn'`` (the ``pnnx`` wheel, fp32 weights);
- the embedded ONNX: the committed export of the same ``.pt`` (``harness/assets``);
- any other ``.onnx``: the ``pnnx`` converter reads ONNX directly (no torch needed).

Options (``runner_options``): ``fp16_storage``, ``fp16_arithmetic`` (off by default, so the
fp32 case is fp32 on every CPU; ncnn's own default turns both on where the CPU has fp16, as
on a Pi 5), ``packing`` (on), ``vulkan`` (``auto``: on when a Vulkan GPU is found),
``wait_policy`` (``passive``: idle OpenMP workers sleep instead of spinning; ``active``;
``runtime``: as the environment's ``OMP_WAIT_POLICY`` says). Passive by default: with
libgomp's spinning default, a loaded 2-core box gave p99 1.3-3.9 s against 80-240 ms
(docs/measurements.md, "Threads and machine load").
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.accuracy import FP16_TOLERANCE, precision_tolerance
from edgebench.cache import sha256_file
from edgebench.contracts import Backend, resolve_options
from edgebench.errors import CaseError, CaseSkipped
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz, declared_hw, hw
from edgebench.pipeline import (
    cached_export,
    export_with_ultralytics,
    exported_artifact,
    prebuilt_export,
)
from edgebench.plugins.backends.ncnn.pnnx import onnx_to_ncnn
from edgebench.records import Artifact, DeviceInfo, RunSettings, RuntimeInfo, Tolerance

EXPORT_HINT = "pip install 'edgebench[export]'"


class NcnnBackend(Backend):
    """ncnn on the CPU (or the first Vulkan GPU), fp32 unless fp16 is asked for."""

    name: ClassVar[str] = "ncnn"
    formats: ClassVar[tuple[str, ...]] = ("ncnn",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("ncnn",)
    install_hint: ClassVar[str] = "pip install 'edgebench[ncnn]'"
    device_requirements: ClassVar[tuple[str, ...]] = ("ncnn",)
    boxes_normalised: ClassVar[bool | None] = False
    max_batch: ClassVar[int | None] = 1
    """ncnn's ``Mat`` has no batch axis (c, h, w): one image per inference."""
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "fp16_storage": False, "fp16_arithmetic": False, "packing": True, "vulkan": "auto",
        "wait_policy": "passive"}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "vulkan": ("auto", "on", "off"), "wait_policy": ("passive", "active", "runtime")}

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ncnn") is None:
            return f"ncnn is not installed: {cls.install_hint}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "ncnn":
            return stage_ncnn(source, imgsz)
        if source.format == "pt":
            missing = [m for m in ("pnnx", "ncnn") if importlib.util.find_spec(m) is None]
            if missing:
                raise CaseSkipped(f"making an ncnn model from a .pt needs {' and '.join(missing)}"
                                  f" (Ultralytics format='ncnn'): {EXPORT_HINT}")
            return export_with_ultralytics(source, "ncnn", workdir, imgsz=imgsz)
        if source.format == "onnx":
            prebuilt = prebuilt_export(source, "ncnn", imgsz)
            if prebuilt is None:
                _refuse_post_nms(source)
            return prebuilt if prebuilt is not None else onnx_to_ncnn(source, imgsz=imgsz)
        raise CaseSkipped(f"ncnn runs ncnn models; a {source.format} model cannot be "
                          "converted to one here")

    def runner(self) -> Path:
        return Path(__file__).with_name("ncnn_runner.py")

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        return resolve_options(self, settings)

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        return None

    def tolerance(self, artifact: Artifact, runtime: RuntimeInfo | None) -> Tolerance | None:
        """The tolerance of the weights' precision read from the ``.bin`` (fp32, fp16; int8
        and mixed: none), or the fp16 one when fp16 storage or arithmetic was on for an fp32
        model; compressed artifacts are judged by their mAP instead."""
        if artifact.pipeline:
            return None
        details = runtime.details if runtime is not None else {}
        fp16 = any(details.get(k) == "on" for k in ("fp16_storage", "fp16_arithmetic"))
        declared = precision_tolerance(artifact.precision)
        return FP16_TOLERANCE if fp16 and declared is not None else declared


def _refuse_post_nms(source: Artifact) -> None:
    """An ONNX exported with NMS in the graph (``nms=True``) or the end-to-end head has TopK
    (and NonMaxSuppression), which ncnn lacks (Ultralytics itself drops the end-to-end
    branch for ncnn): refused before pnnx spends its time on it."""
    from edgebench.model_metadata import read_metadata

    meta = read_metadata(source.path)
    if meta is not None and meta.post_nms:
        # Ultralytics' nms: None (the default) exports the raw head, NMS left to the caller;
        # True builds NMS in; False exports YOLOv10's / YOLO26's end-to-end branch.
        how, fix = ("NMS built in (nms=True)", "without nms=True") if meta.nms else (
            "the end-to-end (NMS-free) head", "with nms left unset (the default; not "
            "nms=False)")
        raise CaseSkipped(f"ncnn cannot run {source.path.name}: it was exported with "
                          f"{how}, whose TopK ncnn lacks; export it again {fix}, or pass the "
                          ".pt (Ultralytics exports ncnn without that branch)")


def stage_ncnn(source: Artifact, imgsz: ImgSz | None) -> Artifact:
    """An ncnn model given by the user as a directory artifact in the cache: its ``.param``,
    its ``.bin`` and ``edgebench.json`` (input shape [1, 3, H, W], from Ultralytics'
    ``metadata.yaml`` when there is one, else from ``imgsz``). A ``.param`` whose ``.bin`` is
    missing fails the case."""
    given = source.path
    if given.is_dir():
        params = sorted(given.glob("*.param"))
        if len(params) != 1:
            raise CaseError(f"the ncnn model directory {given.name} holds {len(params)} .param "
                            "files; it needs exactly one")
        param = params[0]
    else:
        param = given
    weights = param.with_suffix(".bin")
    if not weights.is_file():
        raise CaseError(f"{param.name} has no weights: {weights.name} is not next to it "
                        "(ncnn needs both files)")
    size = _declared_size(param.parent) or hw(imgsz)
    options: dict[str, object] = {
        "bin": sha256_file(weights),
        "imgsz": (size[0] if size[0] == size[1] else list(size)) if size else None,
        "metadata": (param.parent / "metadata.yaml").is_file()}

    def produce(out: Path) -> None:
        target = out / "model_ncnn_model"
        target.mkdir()
        shutil.copyfile(param, target / "model.ncnn.param")
        shutil.copyfile(weights, target / "model.ncnn.bin")
        if (param.parent / "metadata.yaml").is_file():  # task, class names: how to read it
            shutil.copyfile(param.parent / "metadata.yaml", target / "metadata.yaml")
        if size:
            (target / "edgebench.json").write_text(json.dumps(
                {"input_shape": [1, 3, *size]}))
        (out / "artifact.json").write_text(json.dumps(
            {"file": target.name, "format": "ncnn", "imgsz": list(size) if size else None}))

    path, meta = cached_export(source, "ncnn-staged", options, produce)
    artifact = exported_artifact(path, "ncnn", source, meta)
    return dataclasses.replace(artifact, converter=None)


def _declared_size(folder: Path) -> tuple[int, int] | None:
    """The input size (height, width) in Ultralytics' ``metadata.yaml`` next to the model
    (``imgsz: [H, W]`` or one side), if any."""
    meta = folder / "metadata.yaml"
    if not meta.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(meta.read_text())
        size = data.get("imgsz") if isinstance(data, dict) else None
    except yaml.YAMLError:
        return None
    return declared_hw(size)


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(NcnnBackend)
