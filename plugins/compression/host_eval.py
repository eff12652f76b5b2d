"""mAP and latency of an ONNX model on the host with ONNX Runtime, using the project's own
preprocessing, decoding, NMS and COCO mAP (the same code that scores device outputs).

Used by the mixed-precision search (on held-out train images) and the quantization
benchmark; not by the benchmark run itself, which measures on the device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.accuracy import AccuracySettings, canonical, decode
from edgebench.batching import run_per_image, static_batch
from edgebench.coco import coco_map
from edgebench.datasets import Dataset, load_yolo
from edgebench.errors import UserError
from edgebench.preprocess import Letterbox, image_tensor


@dataclass(frozen=True)
class EvalSet:
    """Labelled images, preprocessed once for one input size."""

    dataset: Dataset
    tensors: tuple[Any, ...]
    letterboxes: tuple[Letterbox, ...]
    hw: tuple[int, int]


def eval_set(dataset: Dataset, hw: tuple[int, int]) -> EvalSet:
    pairs = [image_tensor(image.path, hw) for image in dataset.images]
    return EvalSet(dataset, tuple(t for t, _ in pairs), tuple(b for _, b in pairs), hw)


def first_input(data: EvalSet, batch: int) -> Any:
    """The first ``batch`` images of ``data`` as one input (a model's static batch)."""
    import numpy as np

    return np.concatenate([data.tensors[i % len(data.tensors)] for i in range(batch)])


def held_out_train(data_yaml: Path, count: int) -> Dataset:
    """The last ``count`` images of the train split (sorted by name), with their labels:
    calibration takes the first ones, so the two never overlap while they fit."""
    full = load_yolo(data_yaml, split="train", name="train (held out)")
    return Dataset(full.name, full.class_names, full.images[-count:], full.labelled)


def session(path: Path | str, threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=so,
                                providers=["CPUExecutionProvider"])


def onnx_map(model: Path | str | Any, data: EvalSet, *,
             settings: AccuracySettings | None = None,
             boxes_normalised: bool | None = False) -> float:
    """mAP50-95 of the model (a path or an open session) on ``data``."""
    settings = settings or AccuracySettings()
    sess: Any = model if hasattr(model, "run") else session(model)
    spec = sess.get_inputs()[0]
    outputs = run_per_image(lambda x: sess.run(None, {spec.name: x})[0], data.tensors,
                            static_batch(spec.shape))
    return map_of_outputs(outputs, data, settings, boxes_normalised=boxes_normalised)


def map_of_outputs(outputs: Sequence[Any], data: EvalSet, settings: AccuracySettings, *,
                   boxes_normalised: bool | None) -> float:
    dets = [decode(canonical(o, data.hw, boxes_normalised), lb, conf=settings.conf,
                   iou=settings.iou, max_det=settings.max_det)
            for o, lb in zip(outputs, data.letterboxes)]
    result = coco_map(data.dataset, dets).map50_95
    if result is None:
        raise UserError(f"{data.dataset.name} holds no ground-truth box in the images "
                        "evaluated, so there is no mAP to compare; use labelled images.")
    return result


def median_latencies_ms(runners: Sequence[Any], *, rounds: int = 5,
                        per_round: int = 10) -> list[float]:
    """Median latency (ms) of each zero-argument callable, measured interleaved: ``rounds``
    rounds, each running every callable ``per_round`` times in turn (one warm-up first), so
    that the box's drift hits all of them alike."""
    import statistics

    samples: list[list[float]] = [[] for _ in runners]
    for run in runners:
        run()
    for _ in range(rounds):
        for k, run in enumerate(runners):
            for _ in range(per_round):
                t0 = time.perf_counter()
                run()
                samples[k].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(s) for s in samples]


class TfliteModel:
    """A ``.tflite`` run on the host with LiteRT (XNNPACK, as the runner's default); input
    NCHW float as the harness feeds it (the runner's layout and (de)quantization rules)."""

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        from ai_edge_litert import interpreter as litert

        self.interpreter = litert.Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def run(self, x: Any) -> Any:
        import numpy as np

        spec = self.input
        if tuple(spec["shape"]) != tuple(x.shape):  # NHWC model: the runner transposes
            x = x.transpose(0, 2, 3, 1)
        scale, zero = spec.get("quantization", (0.0, 0))
        if spec["dtype"] != np.float32 and scale:
            x = np.round(x / scale + zero).astype(spec["dtype"])
        self.interpreter.set_tensor(spec["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output.get("quantization", (0.0, 0))
        if y.dtype != np.float32 and scale:
            y = (y.astype(np.float32) - zero) * scale
        return y


def tflite_map(model: TfliteModel, data: EvalSet, *,
               settings: AccuracySettings | None = None) -> float:
    """mAP50-95 of a LiteRT model (boxes divided by the input size, as Ultralytics'
    ``format='litert'`` writes them) on ``data``."""
    outputs = run_per_image(model.run, data.tensors, static_batch(model.input["shape"]))
    return map_of_outputs(outputs, data, settings or AccuracySettings(), boxes_normalised=True)


class OpenVinoModel:
    """An OpenVINO model (``.onnx``, ``.xml`` or an IR directory) compiled for the host CPU
    in f32 (``INFERENCE_PRECISION_HINT``: OpenVINO's default on AVX512-BF16 CPUs is bf16;
    int8 kernels of a quantized model are used either way); input NCHW float."""

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        import openvino as ov

        path = Path(path)
        if path.is_dir():
            (path,) = sorted(path.glob("*.xml"))
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.shape = tuple(self.compiled.input(0).get_partial_shape().to_shape())

    def run(self, x: Any) -> Any:
        return self.request.infer({0: x})[0].copy()


def openvino_map(model: OpenVinoModel, data: EvalSet, *,
                 settings: AccuracySettings | None = None) -> float:
    """mAP50-95 of an OpenVINO model on ``data`` (outputs in pixels, as the ONNX export's)."""
    outputs = run_per_image(model.run, data.tensors, static_batch(model.shape))
    return map_of_outputs(outputs, data, settings or AccuracySettings(), boxes_normalised=False)
