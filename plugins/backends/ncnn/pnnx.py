"""ONNX -> ncnn with the pnnx converter (no torch needed), cached by content hash.

The ncnn backend's own conversion code: :func:`onnx_to_ncnn` is what the ncnn plugin and the
``fp16/ncnn`` compressor call for an ``.onnx`` source; a ``.pt`` goes through Ultralytics'
``format='ncnn'`` export instead (:func:`edgebench.pipeline.export_with_ultralytics`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from edgebench.errors import CaseError, CaseSkipped
from edgebench.input_size import ImgSz, input_hw
from edgebench.pipeline import cached_export, exported_artifact, run_tool
from edgebench.records import Artifact

PNNX_INSTALL = "pip install 'edgebench[export]'"


def pnnx_binary() -> Path | None:
    """The ``pnnx`` converter binary of the installed ``pnnx`` wheel (located without
    importing the package, which imports torch)."""
    spec = importlib.util.find_spec("pnnx")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "pnnx"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def onnx_to_ncnn(source: Artifact, *, imgsz: ImgSz | None, fp16_weights: bool = False
                 ) -> Artifact:
    """Convert an ONNX model to an ncnn model directory (``model.ncnn.param`` + ``.bin``)
    with pnnx, cached by content hash. The input shape given to pnnx is the model's, with a
    symbolic batch set to 1 and symbolic height and width from ``imgsz`` or the model's
    recorded size (:func:`edgebench.input_size.input_hw`). A graph with float16 tensors
    (weights or I/O) is given to pnnx as float32 (:func:`fp16_as_fp32`; ncnn's I/O is
    float32). fp32 weights unless ``fp16_weights`` or the ONNX's own weights are fp16 (kept
    fp16, so the conversion neither claims nor loses a precision the model has).

    Raises :class:`CaseSkipped` when pnnx is not installed.
    """
    binary = pnnx_binary()
    if binary is None:
        raise CaseSkipped("making an ncnn model from an .onnx needs the pnnx converter: "
                          f"{PNNX_INSTALL} (or pass the .pt, or an ncnn model)")
    shape = [1, 3, *input_hw(source.input_shape, imgsz, source.imgsz)]
    fp16_weights = fp16_weights or source.precision == "fp16"
    version = _distribution_version("pnnx")
    options: dict[str, object] = {"tool": "pnnx", "version": version, "shape": shape,
                                  "fp16": fp16_weights, "upcast": "fp16-to-fp32-v1"}

    def produce(out: Path) -> None:
        work = out / "work"
        work.mkdir()
        model = work / "model.onnx"
        if source.precision in ("fp16", "mixed"):
            fp16_as_fp32(source.path, model)  # pnnx reads fp32 ONNX graphs only
        else:
            shutil.copyfile(source.path, model)
        target = out / "model_ncnn_model"
        target.mkdir()
        run_tool([str(binary), str(model), f"inputshape=[{','.join(map(str, shape))}]f32",
                   f"ncnnparam={target / 'model.ncnn.param'}",
                   f"ncnnbin={target / 'model.ncnn.bin'}", f"ncnnpy={work / 'model_ncnn.py'}",
                   f"fp16={int(fp16_weights)}"],
                  f"converting {source.path.name} to ncnn with pnnx", cwd=work)
        if not (target / "model.ncnn.param").is_file():
            raise CaseError(f"pnnx wrote no ncnn model for {source.path.name}")
        shutil.rmtree(work)
        (target / "edgebench.json").write_text(json.dumps({"input_shape": shape}))
        (out / "artifact.json").write_text(json.dumps({
            "file": target.name, "format": "ncnn", "imgsz": shape[2:], "gflops": source.gflops,
            "input_name": "in0",
            "converter": f"pnnx {version} from ONNX" + (" (fp16 weights)" if fp16_weights
                                                        else "")}))

    path, meta = cached_export(source, "ncnn", options, produce)
    return exported_artifact(path, "ncnn", source, meta)


def fp16_as_fp32(src: Path, dst: Path) -> None:
    """Write ``src`` with every float16 tensor made float32: initializers (exactly: every
    fp16 value is a float32 value), ``Constant`` values, ``Cast(to=float16)`` targets and the
    graph's input, output and value types; the ``Cast`` nodes that then cast float32 to
    float32 (the converter's casts at fp32 graph I/O) are removed. What pnnx needs to read an
    ONNX converted to fp16 (it fails on fp16 graphs and on those casts); the weights keep
    their fp16 values, and pnnx ``fp16=1`` stores them as fp16 again."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph

    def upcast(tensor: onnx.TensorProto) -> None:
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for init in graph.initializer:
        upcast(init)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                upcast(attr.t)
            elif (node.op_type == "Cast" and attr.name == "to"
                  and attr.i == TensorProto.FLOAT16):
                attr.i = TensorProto.FLOAT
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    _drop_float_casts(graph)
    onnx.save(model, str(dst))


def _drop_float_casts(graph: Any) -> None:
    """Remove ``Cast(to=float)`` nodes whose input is already float32 (a graph input, an
    initializer or a value typed float32), joining their input and output tensors."""
    from onnx import TensorProto

    floats = {v.name for v in [*graph.input, *graph.value_info]
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    floats |= {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    inputs = {v.name for v in graph.input}
    outputs = {v.name for v in graph.output}
    for node in list(graph.node):
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type != "Cast" or to != TensorProto.FLOAT or node.input[0] not in floats:
            continue
        src, dst = node.input[0], node.output[0]
        if dst in outputs and src in inputs:
            continue  # input straight to output: keep it
        graph.node.remove(node)
        old, new = (src, dst) if dst in outputs else (dst, src)
        for other in graph.node:
            for names in (other.input, other.output):
                for i, name in enumerate(names):
                    if name == old:
                        names[i] = new


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
