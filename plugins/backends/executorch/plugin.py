"""ExecuTorch backend: runs ``.pte`` programs (XNNPACK-delegated) with ExecuTorch's Python
runtime, ``executorch.runtime.Runtime``.

Where the ``.pte`` comes from:

- a ``.pt``: :mod:`.export_pte` in a subprocess (``torch.export`` + the XNNPACK partitioner,
  the model prepared as Ultralytics' ``format='executorch'`` export prepares it), static
  batch-1 input at ``--imgsz`` (default: the checkpoint's training size), cached by content
  hash. The artifact is a directory: ``model.pte`` and ``edgebench.json`` with the input
  shape and how many graph nodes XNNPACK took (counted at export, on the lowered graph);
- the embedded model's ``.onnx``: the same export of its committed ``.pt``
  (:func:`edgebench.pipeline.committed_pytorch`), at the ONNX's input size;
- any other ``.onnx``: not possible (there is no ONNX -> ExecuTorch converter); skipped,
  saying to pass the ``.pt``.

ExecuTorch's Python runtime imports torch (its pybindings link against libtorch), so the
device needs torch as well as executorch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import ClassVar

from edgebench.contracts import Backend
from edgebench.errors import CaseError, CaseSkipped
from edgebench.hookspecs import Register, hookimpl
from edgebench.input_size import ImgSz, hw, imgsz_arg
from edgebench.pipeline import cached_export, committed_pytorch, exported_artifact, run_tool
from edgebench.records import Artifact

INSTALL_HINT = ("pip install 'edgebench[executorch]' (executorch's Python runtime imports "
                "torch: install the CPU build of torch first, see the README)")
EXPORT_HINT = ("pip install 'edgebench[executorch,export]' (torch, Ultralytics and "
               "executorch)")


class ExecuTorchBackend(Backend):
    """ExecuTorch runtime, XNNPACK delegate (what the export lowered to), threads set on
    ExecuTorch's own threadpool."""

    name: ClassVar[str] = "executorch"
    formats: ClassVar[tuple[str, ...]] = ("pte",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("executorch",)
    install_hint: ClassVar[str] = INSTALL_HINT
    device_requirements: ClassVar[tuple[str, ...]] = ("torch", "executorch")
    """The executorch wheel does not require torch, but its Python runtime imports it (on an
    x86 device, install the CPU build of torch first, or pip pulls a CUDA one)."""
    max_batch: ClassVar[int | None] = None
    """Any static batch a ``.pte`` has (the runner feeds its input shape); exports are 1."""

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("executorch") is None:
            return f"executorch is not installed: {INSTALL_HINT}"
        return None

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        if source.format == "pte":
            return source
        if source.format == "onnx":
            pt = committed_pytorch(source)  # the embedded model's ONNX: its committed .pt
            if pt is None or pt.format != "pt":
                raise CaseSkipped("ExecuTorch cannot run an .onnx (there is no ONNX to "
                                  "ExecuTorch converter); pass the .pt it came from.")
            shape = source.input_shape or ()
            static = len(shape) == 4 and all(d > 0 for d in shape)
            source, imgsz = pt, (shape[2], shape[3]) if static else imgsz
        if source.format != "pt":
            raise CaseSkipped(f"ExecuTorch runs .pte programs made from a .pt; a "
                              f"{source.format} model cannot be converted to one.")
        missing = [m for m in ("torch", "ultralytics", "executorch")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise CaseSkipped(f"making a .pte from a .pt needs {', '.join(missing)}: "
                              f"{EXPORT_HINT}")
        return pt_to_pte(source, imgsz)

    def runner(self) -> Path:
        return Path(__file__).with_name("executorch_runner.py")


def pt_to_pte(source: Artifact, imgsz: ImgSz | None) -> Artifact:
    """The ``.pte`` directory of a ``.pt`` (:mod:`.export_pte`, in a subprocess, under the
    host's limits), cached by content hash, at ``imgsz`` (one side or (height, width);
    ``None``: the checkpoint's training size). fp32: nothing in the lowering changes the
    weights' precision. Raises :class:`CaseError` when the export fails, with its last
    error line."""
    size = hw(imgsz)
    options: dict[str, object] = {"imgsz": list(size) if size else None,
                                  "tool": "export_pte-v1"}

    def produce(out: Path) -> None:
        argv = [sys.executable, "-m", "edgebench.plugins.backends.executorch.export_pte",
                "--weights", str(source.path), "--out", str(out)]
        if imgsz:
            argv += ["--imgsz", imgsz_arg(imgsz)]
        run_tool(argv, f"converting {source.path.name} to ExecuTorch")

    path, meta = cached_export(source, "pte", options, produce)
    if not (path / "model.pte").is_file():
        raise CaseError(f"the ExecuTorch export of {source.path.name} wrote no model.pte")
    return dataclasses.replace(exported_artifact(path, "pte", source, meta), precision="fp32")


@hookimpl
def edgebench_register_backends(register: Register) -> None:
    register(ExecuTorchBackend)
