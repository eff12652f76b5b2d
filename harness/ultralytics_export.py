"""Export worker: ``python -m edgebench.ultralytics_export --weights W --format F --out DIR``.

Runs in its own process so that Ultralytics' offline settings apply before it is imported,
and so that torch never loads into the harness. Writes the exported file (or directory) and
``artifact.json`` (``{"file": name, "format": F, "imgsz": [H, W], "gflops": G,
"input_name": I, "converter": tools and versions}``) into ``--out``. ``--imgsz`` is one side
or ``H,W``; without it, the checkpoint's training size (``train_args.imgsz``, one side or a
pair), else Ultralytics' 640. With ``--predict BATCH`` it runs the ``.pt`` itself on the
accuracy batch's inputs instead (the float reference of a ``.pt`` source), at
``--threads N`` torch threads (default: torch's own, one per core).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .input_size import ImgSz, declared_hw, hw, parse_imgsz
from .ultralytics_offline import ultralytics_offline_env


def _safe_loading() -> None:
    """Load checkpoints with ``torch.load(weights_only=True)`` and Ultralytics' allow-list of
    model classes (``ULTRALYTICS_SAFE_LOAD``), so a ``.pt`` from an untrusted source cannot
    run code here. The classes installed compressors declare in
    :attr:`edgebench.contracts.Compressor.torch_safe_globals` (e.g. the blocks of pruned
    models) are allowed too: they are named by installed plugin code, never by the file.
    Must run before Ultralytics is imported."""
    os.environ.update(ultralytics_offline_env())
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    import torch

    torch.serialization.add_safe_globals([_resolve(name) for name in _plugin_safe_globals()])


def _plugin_safe_globals() -> tuple[str, ...]:
    """What the installed compressors declare (entry points, as the harness loads them).
    A plugin that fails to load here (one the run disabled) allows nothing: a checkpoint
    needing a class is then refused by torch, never loaded unsafely."""
    from .compression import torch_safe_globals
    from .errors import PluginError
    from .plugin_manager import collect_registry, make_plugin_manager

    try:
        return torch_safe_globals(collect_registry(make_plugin_manager()))
    except PluginError as exc:
        print(f"edgebench: warning: no plugin classes allowed in checkpoints: {exc}",
              file=sys.stderr)
        return ()


def _resolve(name: str) -> Any:
    """The class named ``"package.module:Class"``; exit 2 with one sentence when missing."""
    import pkgutil

    try:
        return pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SystemExit(f"edgebench: error: the torch safe global {name!r} a compressor "
                         f"declares cannot be imported ({type(exc).__name__}: {exc}); "
                         "reinstall or disable that plugin.") from None


EXPORT_ARGS: dict[str, dict[str, Any]] = {"openvino": {"quantize": 32}}
"""Extra ``model.export`` arguments per format: OpenVINO IR is asked for fp32 explicitly
(Ultralytics' ``quantize=16`` would store fp16 weights)."""


def load_model(weights: Path, imgsz: ImgSz | None) -> tuple[Any, tuple[int, int]]:
    """The Ultralytics ``YOLO`` model of ``weights``, loaded as this worker loads it
    (offline, ``weights_only`` with Ultralytics' allow-list, see :func:`_safe_loading`), and
    the (height, width) to export at: ``imgsz``, else the checkpoint's training size, else
    640. For a plugin's own export worker (run in a subprocess: this imports torch)."""
    _safe_loading()
    model = load_yolo(weights)
    return model, export_size(model, imgsz)


def load_yolo(weights: Path) -> Any:
    """``YOLO(weights, task="detect")``; :func:`_safe_loading` must have run first."""
    from ultralytics import YOLO  # type: ignore[attr-defined]  # heavy: torch

    return YOLO(str(weights), task="detect")


def export_size(model: Any, imgsz: ImgSz | None) -> tuple[int, int]:
    """The (height, width) to export ``model`` at: ``imgsz``, else the checkpoint's training
    size (``train_args.imgsz``), else Ultralytics' 640."""
    if imgsz is None:
        train_args = getattr(model, "ckpt", None) or {}
        trained = declared_hw((train_args.get("train_args") or {}).get("imgsz"))
        imgsz = (trained[0] if trained[0] == trained[1] else trained) if trained else 640
    size = hw(imgsz)
    assert size is not None
    return size


def export(weights: Path, fmt: str, out: Path, imgsz: ImgSz | None) -> Path:
    model, size = load_model(weights, imgsz)  # first: safe loading before Ultralytics imports
    return export_loaded(model, weights, fmt, out, size)


def export_loaded(loaded: Any, weights: Path, fmt: str, out: Path, size: tuple[int, int]
                  ) -> Path:
    """Export a loaded ``YOLO`` model (of ``weights``, left unchanged: Ultralytics' exporter
    fuses and flags the model it is given in place, so a deep copy is exported) to ``fmt`` at
    ``size`` (height, width) into ``out``, with ``artifact.json``. The copy exports as if
    loaded from ``out/source.pt`` (a copy of ``weights``, removed after): Ultralytics writes
    its files next to the model's file."""
    import copy

    gflops = model_gflops(loaded, list(size))
    staged = out / "source.pt"
    shutil.copy2(weights, staged)  # Ultralytics writes next to the weights
    model = copy.deepcopy(loaded)
    model.model.pt_path = str(staged)
    produced = Path(model.export(format=fmt, imgsz=list(size), batch=1, dynamic=False,
                                 simplify=True, device="cpu", verbose=False,
                                 **EXPORT_ARGS.get(fmt, {})))
    staged.unlink()
    input_name = {"onnx": "images", "ncnn": "in0", "litert": "serving_default_args_0"}.get(fmt)
    if fmt == "ncnn":
        (produced / "model_ncnn.py").unlink(missing_ok=True)  # a test script, absolute paths
        (produced / "edgebench.json").write_text(json.dumps(
            {"input_shape": [1, 3, *size]}))
    (out / "artifact.json").write_text(json.dumps(
        {"file": produced.name, "format": fmt, "imgsz": list(size), "gflops": gflops,
         "input_name": input_name, "converter": converter(fmt)}))
    return produced


def converter(fmt: str) -> str:
    """The exporting tools and their versions, for the artifact's provenance."""
    from importlib.metadata import PackageNotFoundError, version

    extra = {"onnx": ["onnx", "onnxslim"], "ncnn": ["pnnx"], "litert": ["litert-torch"],
             "openvino": ["openvino"]}
    tools = ["ultralytics", "torch", *extra.get(fmt, [])]
    parts = []
    for tool in tools:
        try:
            parts.append(f"{tool} {version(tool)}")
        except PackageNotFoundError:
            pass
    return f"Ultralytics format={fmt!r}: " + ", ".join(parts)


def model_gflops(model: Any, imgsz: list[int]) -> float | None:
    """GFLOPs of a ``YOLO`` model at ``imgsz`` ([height, width]), by Ultralytics'
    ``get_flops``; ``None`` when it cannot tell."""
    try:
        from ultralytics.utils.torch_utils import get_flops

        value = float(get_flops(model.model, imgsz))  # type: ignore[no-untyped-call]
    except Exception:
        return None
    return round(value, 3) if value > 0 else None


def predict(weights: Path, tensors: Path, out: Path, threads: int | None = None) -> None:
    """Run the ``.pt`` with PyTorch on every input of the accuracy batch ``tensors``
    (:func:`edgebench.batching.float_inputs`: one image, or a group of a static batch:
    PyTorch takes any batch); save the outputs as
    ``"<tensor>_<output>"`` in ``out`` and a description in ``out`` with suffix ``.json``.
    ``threads``: ``torch.set_num_threads`` (``None``: torch's default, one per core; see
    docs/measurements.md, "Float reference threads", for why the harness passes 1)."""
    _safe_loading()
    predict_loaded(load_yolo(weights), weights, tensors, out, threads)


def predict_loaded(loaded: Any, weights: Path, tensors: Path, out: Path,
                   threads: int | None = None) -> None:
    """:func:`predict` with a loaded ``YOLO`` model (left unchanged: a deep copy is fused),
    at ``threads`` torch threads (``None``: torch's default), restored after."""
    import copy

    import numpy as np
    import torch

    from .batching import float_inputs

    net: Any = copy.deepcopy(loaded.model)
    if hasattr(net, "end2end"):
        net.end2end = False  # as Exporter does for nms=None (the export's head, not one2one)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    try:
        with torch.no_grad():
            net = net.float().fuse().eval()
            outputs: dict[str, Any] = {}
            for key, x in enumerate(float_inputs(tensors)):  # as the device agent makes them
                for i, y in enumerate(_export_outputs(net(torch.from_numpy(x)))):
                    outputs[f"{key}_{i}"] = y.detach().cpu().numpy().astype(np.float32)
    finally:
        torch.set_num_threads(before)
    np.savez(out, **outputs)
    import ultralytics

    out.with_suffix(".json").write_text(json.dumps({
        "name": f"PyTorch {torch.__version__} (Ultralytics {ultralytics.__version__}, fused, "
                f"fp32, CPU, {used} thread{'s' if used > 1 else ''}) on the host, "
                f"{weights.name}"}))


def _export_outputs(result: Any) -> list[Any]:
    """The outputs an export has, in its order, from the model's eval-mode result: eval mode
    returns ``(y, raw)`` where the export returns ``y``; a segmentation head's ``y`` is
    ``(detections, mask prototypes)``, its two outputs (``nn/modules/head.py``)."""
    first = result[0] if isinstance(result, (list, tuple)) else result
    return list(first) if isinstance(first, (list, tuple)) else [first]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive thread count")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--format")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--imgsz", type=parse_imgsz, help="N or H,W")
    parser.add_argument("--predict", type=Path, metavar="BATCH",
                        help="run the .pt on these tensors instead (the float reference)")
    parser.add_argument("--threads", type=_positive, metavar="N",
                        help="with --predict: torch threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.predict is not None:
        predict(args.weights, args.predict, args.out, args.threads)
    elif args.format:
        export(args.weights, args.format, args.out, args.imgsz)
    else:
        parser.error("--format or --predict is required")
    return 0


if __name__ == "__main__":
    sys.exit(main())
