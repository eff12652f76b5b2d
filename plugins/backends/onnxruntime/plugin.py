"""ONNX Runtime backend: runs ``.onnx`` models on the CPU execution provider."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.contracts import Backend, resolve_options
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz
from edgebench.pipeline import export_with_ultralytics
from edgebench.records import Artifact, DeviceInfo, RunSettings


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider, sequential execution, all graph optimisations."""

    name: ClassVar[str] = "onnxruntime"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    install_hint: ClassVar[str] = "pip install 'edgebench[onnxruntime]'"
    device_requirements: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    max_batch: ClassVar[int | None] = None
    """Any static batch: the runner feeds the model's own input shape."""

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return f"onnxruntime is not installed: {cls.install_hint}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "onnx":
            return source
        return export_with_ultralytics(source, "onnx", workdir, imgsz=imgsz)

    def runner(self) -> Path:
        return Path(__file__).with_name("onnxruntime_runner.py")

    option_defaults: ClassVar[dict[str, Any]] = {"graph_optimization_level": "all",
                                                 "spinning": True}
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        "graph_optimization_level": ("disable", "basic", "extended", "all")}

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        return {**resolve_options(self, settings), "providers": ["CPUExecutionProvider"]}

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        if info.arch in ("armv6l", "armv7l"):
            return "ONNX Runtime publishes no wheels for 32-bit ARM; use a 64-bit OS"
        return None


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(OnnxRuntimeBackend)
