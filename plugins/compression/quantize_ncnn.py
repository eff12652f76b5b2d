"""ncnn precision steps: ``fp16`` (fp16 weights, fp16 storage and arithmetic at run time) and
``int8`` (registered, unavailable: it needs ncnn2table and ncnn2int8, which no package
installable here ships).

ncnn's fp16 is mostly a run-time choice: ``use_fp16_storage`` / ``use_fp16_arithmetic``
make the layers keep and compute fp16 where the CPU can (ARMv8.2 asimdhp, e.g. a Pi 5).
The step writes both flags into the model directory's ``edgebench.json``, which the ncnn
runner applies on top of the case's options, and stores the weights as fp16 (pnnx
``fp16=1``, half the ``.bin``) when it can re-convert from the run's ``.onnx`` or ``.pt``
source. On x86 the ncnn wheel has no fp16 kernels: the flags change nothing there and only
the fp16 rounding of the weights shows.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import (
    cached_export,
    export_with_ultralytics,
    exported_artifact,
)
from edgebench.plugins.backends.ncnn.pnnx import onnx_to_ncnn, pnnx_binary
from edgebench.records import Artifact

from .artifact_notes import artifact_meta

NCNN_INT8_REASON = (
    "ncnn int8 needs ncnn's ncnn2table (calibration table) and ncnn2int8 tools, which no "
    "package installable here ships (the ncnn and pnnx wheels have neither); build them from "
    "ncnn's tools/quantize and quantize by hand")


def fp16_weights_model(model: Artifact, context: CompressionContext) -> Artifact | None:
    """The same network converted by pnnx with fp16 weights, when the run's source can be
    re-converted (an ``.onnx``, or a ``.pt`` through its ONNX export); ``None`` otherwise."""
    if pnnx_binary() is None:
        return None
    source = context.source
    if source.format == "pt":
        source = export_with_ultralytics(source, "onnx", context.workdir, imgsz=context.imgsz)
    if source.format != "onnx":
        return None
    return onnx_to_ncnn(source, imgsz=context.imgsz, fp16_weights=True)


class NcnnFp16(Compressor):
    """fp16 weights, fp16 storage and arithmetic for ncnn."""

    name: ClassVar[str] = "fp16"
    target: ClassVar[str] = "ncnn"
    summary: ClassVar[str] = ("ncnn fp16: fp16 weights (pnnx) and fp16 storage + arithmetic "
                              "at run time (effective on ARMv8.2+; x86 ncnn has no fp16 "
                              "kernels)")
    option_defaults: ClassVar[Mapping[str, Any]] = {"arithmetic": True}

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ncnn") is None:
            return "ncnn is not installed: pip install 'edgebench[ncnn]'"
        return None

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        if model.format != "ncnn":
            raise CaseError(f"fp16 for ncnn got a {model.format} model")
        converted = fp16_weights_model(model, context)
        weights_from = converted or model
        key: dict[str, object] = {**options, "weights": weights_from.sha256}

        def produce(out: Path) -> None:
            given = weights_from.path
            target = out / "model_ncnn_model"
            target.mkdir()
            params = sorted(given.glob("*.param"))
            if len(params) != 1:
                raise CaseError(f"{given.name} holds {len(params)} .param files; it needs one")
            shutil.copyfile(params[0], target / "model.ncnn.param")
            shutil.copyfile(params[0].with_suffix(".bin"), target / "model.ncnn.bin")
            declared = _declared(model.path) or _declared(given)
            declared.update(fp16_storage=True, fp16_arithmetic=bool(options["arithmetic"]))
            (target / "edgebench.json").write_text(json.dumps(declared))
            weights = "fp16 (pnnx fp16=1)" if converted else "as given (fp32; ncnn casts them " \
                "to fp16 at load when fp16 storage is on)"
            (out / "artifact.json").write_text(json.dumps({
                "file": target.name, "format": "ncnn",
                "imgsz": (declared.get("input_shape") or [None] * 4)[2:],  # [h, w]
                "input_name": model.input_name, "gflops": model.gflops,
                "converter": ((weights_from.converter or "ncnn model") + "; fp16 storage"
                              + (" + arithmetic" if options["arithmetic"] else "")),
                "weights": weights,
                "runtime": {"fp16_storage": True,
                            "fp16_arithmetic": bool(options["arithmetic"])}}))

        path, meta = cached_export(model, "ncnn-fp16", key, produce)
        return exported_artifact(path, "ncnn", model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        meta = artifact_meta(artifact.path)
        if not meta:
            return ()
        runtime = meta.get("runtime", {})
        flags = ", ".join(k for k, v in runtime.items() if v) or "none"
        return (f"weights {meta.get('weights')}", f"ncnn run-time flags set by the model: "
                f"{flags} (no effect on x86 ncnn, which has no fp16 kernels)")


class NcnnInt8(Compressor):
    """Registered so that ``int8`` on ncnn is skipped with the reason, not 'no compressor'."""

    name: ClassVar[str] = "int8"
    target: ClassVar[str] = "ncnn"
    summary: ClassVar[str] = "ncnn int8 (unavailable here: needs ncnn2table and ncnn2int8)"
    option_defaults: ClassVar[Mapping[str, Any]] = {"calibration": 100}
    primary_option: ClassVar[str | None] = "calibration"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return NCNN_INT8_REASON

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        raise CaseError(NCNN_INT8_REASON)


def _declared(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "edgebench.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(NcnnFp16)
    register(NcnnInt8)
