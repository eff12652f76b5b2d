"""Quantization on the embedded YOLOv8n: speed and mAP50-95 on the full val split (100 images).

Each variant is made by the real compression steps (``int8``, ``dynamic``, ``mixed`` for
ONNX; ``int8``, ``dynamic`` (w8a32), ``w8a16``, ``fp16`` for LiteRT; ``fp16`` for ncnn),
calibrated on train images, then run on the host: mAP with the project's decoding, NMS and
COCO mAP; latency as medians of interleaved rounds within each runtime (the box drifts
by ±30 % between runs, so compare the ratios, not the milliseconds across tables).

    python benchmarks/quantization.py [--calibration 100] [--threads N] [-o results.json]

Needs ``edgebench[onnxruntime,litert,ncnn,export]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgebench.config import ASSETS
from edgebench.contracts import CompressionContext
from edgebench.datasets import load_yolo
from edgebench.pipeline import load_source
from edgebench.plugins.backends.litert.plugin import LiteRTBackend
from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
from edgebench.plugins.compression import host_eval as he
from edgebench.plugins.compression.mixed_precision import OnnxMixedPrecision
from edgebench.plugins.compression.quantize_litert import (
    LiteRTDynamic,
    LiteRTFp16,
    LiteRTInt8,
    LiteRTW8A16,
)
from edgebench.plugins.compression.quantize_ncnn import NcnnFp16
from edgebench.plugins.compression.quantize_onnx import OnnxDynamic, OnnxInt8, artifact_meta
from edgebench.shapes import default_shapes_dataset

Row = dict[str, Any]


def make(cls: type, model: Any, context: CompressionContext, **options: Any) -> Any:
    t0 = time.perf_counter()
    step = cls()
    opts = {**cls.option_defaults, **options}
    step.check(opts, context)
    art = step.apply(model, opts, context)
    print(f"  {cls.__name__} {options}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return art


def table(title: str, rows: list[Row]) -> str:
    base = rows[0]
    lines = [f"### {title}", "", "| variant | median ms | speed-up | mAP50-95 | delta pt | "
             "size MB |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ms']:.2f} | {base['ms'] / r['ms']:.2f}x | "
                     f"{r['map']:.4f} | {(r['map'] - base['map']) * 100:+.2f} | "
                     f"{r['mb']:.1f} |")
    return "\n".join(lines)


def measure(named: list[tuple[str, Any, Callable[[Any], Any], float]], rounds: int,
            per_round: int, data: he.EvalSet) -> list[Row]:
    x = data.tensors[0]
    ms = he.median_latencies_ms([lambda run=run: run(x) for _, _, run, _ in named],
                                rounds=rounds, per_round=per_round)
    return [{"variant": n, "path": str(p), "ms": t, "map": m,
             "mb": sum(f.stat().st_size for f in ([Path(p)] if Path(p).is_file() else
                                                   Path(p).rglob("*"))) / 1e6}
            for (n, p, _, m), t in zip(named, ms)]


def onnx_rows(context: CompressionContext, source: Any, data: he.EvalSet, threads: int | None,
              calibration: int) -> tuple[list[Row], dict[str, Any]]:
    variants = [("fp32", source)]
    variants.append(("int8 static QDQ (head tail float)",
                     make(OnnxInt8, source, context, calibration=calibration)))
    variants.append(("int8 naive (head quantized)",
                     make(OnnxInt8, source, context, calibration=calibration,
                          keep_head_float=False)))
    variants.append(("int8 per-channel (head tail float)",
                     make(OnnxInt8, source, context, calibration=calibration,
                          per_channel=True)))
    variants.append(("dynamic (int8 weights)", make(OnnxDynamic, source, context)))
    mixed = make(OnnxMixedPrecision, source, context, calibration=calibration)
    variants.append(("mixed (budget 1.0 pt)", mixed))
    tight = make(OnnxMixedPrecision, source, context, calibration=calibration, budget=0.1)
    variants.append(("mixed (budget 0.1 pt)", tight))
    named = []
    for name, art in variants:
        sess = he.session(art.path, threads)
        inp = sess.get_inputs()[0].name
        named.append((name, art.path, lambda x, s=sess, i=inp: s.run(None, {i: x}),
                      he.onnx_map(sess, data)))
    searches = {"budget 1.0": artifact_meta(mixed.path),
                "budget 0.1": artifact_meta(tight.path)}
    for meta in searches.values():
        meta.pop("kept_float", None)
    return measure(named, 7, 10, data), searches


def tflite_rows(context: CompressionContext, source: Any, data: he.EvalSet,
                threads: int | None, calibration: int) -> list[Row]:
    fp32 = LiteRTBackend().export(source, context.workdir, imgsz=context.imgsz)
    variants = [("fp32", fp32),
                ("int8 (w8a8, head tail float)", make(LiteRTInt8, fp32, context,
                                                      calibration=calibration)),
                ("int8 (w8a8, head quantized: Ultralytics' recipe as is)",
                 make(LiteRTInt8, fp32, context, calibration=calibration,
                      keep_head_float=False)),
                ("dynamic (w8a32)", make(LiteRTDynamic, fp32, context)),
                ("w8a16 (calibrated)", make(LiteRTW8A16, fp32, context,
                                            calibration=calibration)),
                ("fp16 weights", make(LiteRTFp16, fp32, context))]
    named = []
    for name, art in variants:
        model = he.TfliteModel(art.path, threads)
        named.append((name, art.path, model.run, he.tflite_map(model, data)))
    return measure(named, 3, 3, data)


def cross_rows(rows: dict[str, list[Row]], data: he.EvalSet, threads: int | None
               ) -> list[Row]:
    """The fastest int8 of each runtime against ONNX Runtime fp32, interleaved in one go."""
    pick = [("onnx", "fp32"), ("onnx", "int8 static QDQ (head tail float)"),
            ("onnx", "mixed (budget 1.0 pt)"), ("tflite", "fp32"),
            ("tflite", "int8 (w8a8, head tail float)"), ("ncnn", "fp32")]
    named = []
    for runtime, variant in pick:
        row = next((r for r in rows.get(runtime, []) if r["variant"] == variant), None)
        if row is None:
            continue
        if runtime == "onnx":
            run = ort_model(row["path"], threads)
        elif runtime == "tflite":
            run = he.TfliteModel(row["path"], threads).run
        else:
            run = ncnn_model(Path(row["path"]), threads)
        named.append((f"{runtime} {variant}", row["path"], run, row["map"]))
    return measure(named, 7, 10, data)


def ncnn_rows(context: CompressionContext, source: Any, data: he.EvalSet,
              threads: int | None) -> list[Row]:
    fp32 = NcnnBackend().export(source, context.workdir, imgsz=context.imgsz)
    fp16 = make(NcnnFp16, fp32, context)
    named = []
    for name, art in (("fp32", fp32), ("fp16 (weights + storage + arithmetic)", fp16)):
        run = ncnn_model(art.path, threads)
        outputs = [run(t) for t in data.tensors]
        named.append((name, art.path, run,
                      he.map_of_outputs(outputs, data, he.AccuracySettings(),
                                        boxes_normalised=False)))
    return measure(named, 5, 10, data)


def ort_model(path: str, threads: int | None) -> Callable[[Any], Any]:
    sess = he.session(path, threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def ncnn_model(folder: Path, threads: int | None) -> Callable[[Any], Any]:
    """The ncnn model as the runner loads it (fp16 flags from its edgebench.json)."""
    import ncnn
    import numpy as np

    meta = json.loads((folder / "edgebench.json").read_text())
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_bf16_storage = False
    fp16 = bool(meta.get("fp16_storage"))
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = fp16
    net.opt.use_fp16_arithmetic = bool(meta.get("fp16_arithmetic"))
    if threads:
        net.opt.num_threads = threads
    param = next(folder.glob("*.param"))
    net.load_param(str(param))
    net.load_model(str(param.with_suffix(".bin")))

    def run(x: Any) -> Any:
        with net.create_extractor() as ex:
            ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
            _, mat = ex.extract("out0")
            return np.expand_dims(np.array(mat), 0)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", choices=("onnx", "tflite", "ncnn"), action="append")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    source = load_source(ASSETS / "shapes-yolov8n.onnx")
    yaml = default_shapes_dataset()
    data = he.eval_set(load_yolo(yaml, split="val"), (320, 320))
    context = CompressionContext(source=source, data_yaml=None, imgsz=320,
                                 workdir=Path("/tmp"), progress=True)
    only = set(args.only or ("onnx", "tflite", "ncnn"))
    results: dict[str, Any] = {"threads": args.threads, "calibration": args.calibration,
                               "val_images": len(data.tensors)}
    out = []
    if "onnx" in only:
        rows, searches = onnx_rows(context, source, data, args.threads, args.calibration)
        results["onnx"], results["mixed_search"] = rows, searches
        out.append(table("ONNX Runtime (CPU EP)", rows))
    if "tflite" in only:
        results["tflite"] = tflite_rows(context, source, data, args.threads, args.calibration)
        out.append(table("LiteRT (XNNPACK)", results["tflite"]))
    if "ncnn" in only:
        results["ncnn"] = ncnn_rows(context, source, data, args.threads)
        out.append(table("ncnn (CPU)", results["ncnn"]))
    if len(only) == 3:
        results["cross"] = cross_rows(results, data, args.threads)
        out.append(table("Across runtimes (against ONNX Runtime fp32)", results["cross"]))
    print("\n\n".join(out))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
