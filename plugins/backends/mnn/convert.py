"""ONNX -> ``.mnn`` on the host, cached by content hash: what the MNN backend and the
``int8-weights/mnn`` compressor call."""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib import metadata
from pathlib import Path

from edgebench.errors import CaseSkipped
from edgebench.pipeline import cached_export, exported_artifact, run_tool
from edgebench.records import Artifact

MNN_INSTALL = "pip install 'edgebench[mnn]'"


def mnn_version() -> str | None:
    """The installed ``mnn`` distribution's version (read without importing ``MNN``, which
    prints the CPU's features on import)."""
    try:
        return metadata.version("mnn")
    except metadata.PackageNotFoundError:
        return None


def to_mnn(source: Artifact, *, weight_bits: int = 0) -> Artifact:
    """Convert ``source``, an ``.onnx`` or an ``.mnn``, to ``model.mnn`` with the ``mnn``
    wheel's converter (``-f ONNX`` / ``-f MNN``, ``--bizCode edgebench``): the weights as
    they are (fp32), or quantized to ``weight_bits`` bits (``--weightQuantBits``:
    conv/matmul/LSTM weights only, per output channel, asymmetric by default; decoded to
    float32 at load unless MNN runs with ``memory=low``; MNN's docs/tools/convert.md).

    Raises :class:`CaseSkipped` when ``mnn`` is not installed, :class:`CaseError` (``converting
    … failed (exit 1): <the converter's last error line>``) when the converter rejects it.
    """
    version = mnn_version()
    if version is None:
        raise CaseSkipped(f"converting to .mnn needs the mnn package: {MNN_INSTALL}")
    if source.format not in ("onnx", "mnn"):
        raise CaseSkipped(f"the MNN converter takes an .onnx or an .mnn, not a {source.format}")
    options: dict[str, object] = {"tool": "mnnconvert", "version": version,
                                  "weight_bits": weight_bits}
    size = tuple(source.input_shape[2:]) if source.input_shape and len(
        source.input_shape) == 4 and all(d > 0 for d in source.input_shape[2:]) else None

    def produce(out: Path) -> None:
        model = out / "model.mnn"
        argv = ["-f", source.format.upper(), "--modelFile", str(source.path),
                "--MNNModel", str(model), "--bizCode", "edgebench"]
        if weight_bits:
            argv += ["--weightQuantBits", str(weight_bits)]
        run_tool([sys.executable, "-m", "edgebench.plugins.backends.mnn.mnnconvert",
                  str(model), "--", *argv],
                 f"converting {source.path.name} to MNN with mnnconvert", cwd=out)
        weights = f", int{weight_bits} weights" if weight_bits else ""
        (out / "artifact.json").write_text(json.dumps({
            "file": model.name, "format": "mnn",
            "imgsz": list(size or source.imgsz or ()) or None, "gflops": source.gflops,
            "input_name": source.input_name,
            "converter": f"mnnconvert (mnn {version}) from {source.format.upper()}{weights}",
            "weight_bits": weight_bits}))

    path, meta = cached_export(source, "mnn", options, produce)
    artifact = exported_artifact(path, "mnn", source, meta)
    # the converter keeps fp32 weights as they are and stores quantized ones as int8
    precision = "int8" if weight_bits else source.precision if source.precision == "fp32" \
        else None
    return dataclasses.replace(artifact, precision=precision)
