"""Reading what the host needs to know about an ONNX model: its input and its cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .input_size import declared_hw
from .precision import onnx_precision

_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 2: "uint8", 3: "int8"}


@dataclass(frozen=True)
class OnnxInfo:
    input_name: str
    input_shape: tuple[int | str, ...]
    output_shapes: tuple[tuple[int | str, ...], ...]
    gflops: float | None
    opset: int | None
    input_dtype: str = "float32"
    """The input's element type, as numpy names it (``float16`` after an fp16 conversion
    with ``keep_io_types=False``)."""
    imgsz: tuple[int, int] | None = None
    """The size Ultralytics recorded (``metadata_props`` ``imgsz``), (height, width)."""
    precision: str | None = None
    """See :func:`edgebench.precision.onnx_precision`."""


def _dims(value_info) -> tuple[int | str, ...]:  # type: ignore[no-untyped-def]
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return tuple(dims)


def inspect_onnx(path: Path) -> OnnxInfo:
    """Parse ``path``; raise :class:`UserError` when it is not an image model we can run."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"{path} is not a valid ONNX model ({type(exc).__name__}); "
                        "re-export it or check the file was copied whole.") from None
    init_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs; edgebench runs single-input "
                        "image models (one NCHW tensor).")
    shape = _dims(inputs[0])
    if len(shape) != 4 or shape[1] != 3:
        raise UserError(f"{path} takes an input of shape {list(shape)}, which is not an image "
                        "batch (N, 3, H, W); export the detector with an image input.")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    meta = {p.key: p.value for p in model.metadata_props}
    return OnnxInfo(
        input_name=inputs[0].name,
        input_shape=shape,
        output_shapes=tuple(_dims(o) for o in model.graph.output),
        gflops=_count_gflops(model),
        opset=opset,
        input_dtype=_DTYPES.get(inputs[0].type.tensor_type.elem_type, "other"),
        imgsz=declared_hw(meta.get("imgsz")),
        precision=onnx_precision(model),
    )


def _count_gflops(model) -> float | None:  # type: ignore[no-untyped-def]
    """FLOPs of one inference (2 x multiply-accumulates of Conv, ConvTranspose, MatMul, Gemm).

    This is the convention Ultralytics reports ("GFLOPs"). ``None`` if shapes are unknown.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return None
    shapes: dict[str, tuple[int | str, ...]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = _dims(vi)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if not w or not out or not all(isinstance(d, int) for d in (*w, *out)):
                return None
            kernel = 1
            for d in w[1:]:
                kernel *= int(d)
            if node.op_type == "Conv":
                spatial = 1
                for d in out[2:]:
                    spatial *= int(d)
                macs += int(out[0]) * int(out[1]) * spatial * kernel
            else:
                inp = shapes.get(node.input[0])
                if not inp or not all(isinstance(d, int) for d in inp):
                    return None
                spatial = 1
                for d in inp[2:]:
                    spatial *= int(d)
                macs += int(inp[0]) * int(w[0]) * spatial * kernel
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if not a or not out or not all(isinstance(d, int) for d in (*a, *out)):
                return None
            k = int(a[-1]) if node.op_type == "MatMul" else int(max(a[-2:]))
            n_out = 1
            for d in out:
                n_out *= int(d)
            macs += n_out * k
    return 2.0 * macs / 1e9
