"""Generators of the model I/O variants of issue 14 (run as a script, in a subprocess with
Ultralytics' offline environment, or imported by the tests for the pure-ONNX edits).

    python tests/io_variants.py OUT_DIR KIND [KIND ...]

Every Ultralytics export starts from a copy of the embedded ``.pt`` in ``OUT_DIR/KIND``
(Ultralytics writes next to the weights). Prints ``{kind: path}`` as JSON on the last line.
Kinds:

- ``dynamic``: ``export(format="onnx", dynamic=True)`` (batch, height and width symbolic);
- ``dynamic-hw``: the same with the batch dimension set back to 1 (height and width symbolic);
- ``dynamic-batch``: the committed ONNX with only its batch dimension made symbolic;
- ``rect-onnx`` / ``rect-litert`` / ``rect-ncnn``: ``export(format=..., imgsz=(256, 320))``;
- ``half-onnx`` / ``half-ncnn``: ``export(format=..., half=True)`` (Ultralytics 8.4.190 on the
  CPU: ONNX Runtime's float16 converter with ``keep_io_types=True``; pnnx ``fp16=1``);
- ``half-litert``: Ultralytics refuses ``half=True`` for LiteRT, so the fp32 LiteRT export with
  its conv/fc weights cast to fp16 by ai-edge-quantizer (``float_casting``, 16 bits), fp32 I/O;
- ``fp16-io``: the committed ONNX through ONNX Runtime's float16 converter with
  ``keep_io_types=False`` (fp16 input and output);
- ``pt640``: a copy of the ``.pt`` whose ``train_args.imgsz`` says 640.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "harness" / "assets"
PT = ASSETS / "shapes-yolov8n.pt"
ONNX = ASSETS / "shapes-yolov8n.onnx"
RECT = (256, 320)


def _export(out: Path, **kwargs: object) -> Path:
    from edgebench.ultralytics_offline import ultralytics_offline_env

    os.environ.update(ultralytics_offline_env())
    from ultralytics import YOLO  # type: ignore[attr-defined]

    staged = out / "model.pt"
    shutil.copy2(PT, staged)
    made = YOLO(str(staged), task="detect").export(device="cpu", verbose=False, **kwargs)
    staged.unlink()
    return Path(made)


def _symbolic(src: Path, dst: Path, dims: dict[int, str], *, outputs: bool) -> Path:
    import onnx

    model = onnx.load(str(src))
    tensors = [model.graph.input[0], *(model.graph.output if outputs else [])]
    for tensor in tensors:
        shape = tensor.type.tensor_type.shape.dim
        for index, name in dims.items():
            shape[index].ClearField("dim_value")
            shape[index].dim_param = name
    onnx.save(model, str(dst))
    return dst


def _static_batch(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    for tensor in [model.graph.input[0], *model.graph.output]:
        tensor.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(dst))
    return dst


def _fp16(src: Path, dst: Path, *, keep_io_types: bool) -> Path:
    import onnx
    from onnxruntime.transformers import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io_types)
    onnx.save(model, str(dst))
    return dst


def _litert_fp16_weights(out: Path) -> Path:
    fp32 = _export(out, format="litert", imgsz=320)
    from ai_edge_quantizer import qtyping, quantizer

    qt = quantizer.Quantizer(str(fp32))
    qt.update_quantization_recipe(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True),
        algorithm_key="float_casting")
    dst = out / "model_fp16w.tflite"
    qt.quantize().export_model(str(dst), overwrite=True)
    return dst


def _pt640(out: Path) -> Path:
    import torch

    ckpt = torch.load(PT, map_location="cpu", weights_only=False)
    ckpt["train_args"]["imgsz"] = 640
    dst = out / "shapes-640.pt"
    torch.save(ckpt, dst)
    return dst


def make(kind: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if kind == "dynamic":
        return _export(out, format="onnx", dynamic=True, imgsz=320)
    if kind == "dynamic-hw":
        made = out.parent / "dynamic" / "model.onnx"  # made first when both are asked for
        return _static_batch(made if made.is_file() else make("dynamic", out / "dyn"),
                             out / "dynamic_hw.onnx")
    if kind == "dynamic-batch":
        return _symbolic(ONNX, out / "dynamic_batch.onnx", {0: "batch"}, outputs=True)
    if kind.startswith("rect-"):
        return _export(out, format=kind[5:], imgsz=RECT)
    if kind in ("half-onnx", "half-ncnn"):
        return _export(out, format=kind[5:], half=True, imgsz=320)
    if kind == "half-litert":
        return _litert_fp16_weights(out)
    if kind == "fp16-io":
        return _fp16(ONNX, out / "fp16_io.onnx", keep_io_types=False)
    if kind == "pt640":
        return _pt640(out)
    raise SystemExit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve()
    print(json.dumps({kind: str(make(kind, root / kind)) for kind in sys.argv[2:]}))
