"""MNN weight quantization: ``int8-weights`` (the MNN converter's ``--weightQuantBits 8``).

The converter stores the conv/matmul weights as 8-bit integers, per output channel and
asymmetric, with a float scale and offset each (MNN's docs/tools/convert.md,
docs/tools/compress.md); nothing is calibrated. What MNN then computes in is a run-time
choice (``mnn.memory``):

- ``normal`` (the default): the weights are decoded to float32 at load, so the case
  measures fp32 speed with int8-rounded weights (a smaller file, the same speed);
- ``low``: MNN keeps them int8 and quantizes the activations on the fly (dynamic
  quantization, in wheels built with ``MNN_LOW_MEMORY``, as the PyPI wheel is), like the
  ONNX ``dynamic`` step. Measured on this project's x86 host: session memory 7.7 MB instead
  of 49.6 MB, and about 5x slower than fp32.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, ClassVar

from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.plugins.backends.mnn.convert import MNN_INSTALL, to_mnn
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, quantization_notes


class MnnInt8Weights(Compressor):
    """int8 weights by the MNN converter (``--weightQuantBits 8``), no calibration."""

    name: ClassVar[str] = "int8-weights"
    target: ClassVar[str] = "mnn"
    summary: ClassVar[str] = ("MNN int8 weights (mnnconvert --weightQuantBits 8, per channel, "
                              "no calibration): decoded to fp32 at load, or dynamic int8 "
                              "compute with --backend-option mnn.memory=low")

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("MNN") is None:
            return f"MNN is not installed: {MNN_INSTALL}"
        return None

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        if model.format != "mnn":
            raise CaseError(f"int8-weights for MNN got a {model.format} model")
        return to_mnn(model, weight_bits=8)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        meta = artifact_meta(artifact.path)
        if not meta:
            return ()
        return (*quantization_notes(meta),
                "MNN decodes the int8 weights to fp32 at load unless the case ran with "
                "mnn.memory=low (then int8 compute, activations quantized per inference): "
                "see the case's runtime details")


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(MnnInt8Weights)
