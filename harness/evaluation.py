"""The accuracy batch (preprocessed once per dataset and input size) and its evaluation."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .accuracy import (
    AccuracySettings,
    Detections,
    canonical,
    check_tolerance,
    decode,
    head_problem,
    output_fidelity,
)
from .batching import group_tensors, split_outputs
from .coco import coco_map
from .datasets import Dataset
from .errors import CaseError, UserError
from .preprocess import Letterbox, image_tensor
from .records import Accuracy, Status, Tolerance


@dataclass(frozen=True)
class AccuracyBatch:
    """The dataset's images letterboxed to one input size, as pushed to devices."""

    dataset: Dataset
    input_name: str
    input_hw: tuple[int, int]
    tensors: Path
    """``.npz`` with keys ``"0" .. "N-1"``, each (1, 3, H, W) float32; with a ``batch`` > 1,
    keys ``"0" .. "K-1"``, each (batch, 3, H, W): see :func:`batched`."""
    timing_input: Path
    """``.npz`` with the first image (the first ``batch`` images) under the model's input
    name: the timed loop's input."""
    letterboxes: tuple[Letterbox, ...]
    batch: int = 1
    """Images per inference (the model's static batch); outputs are split back per image."""


def prepare_batch(dataset: Dataset, input_name: str, input_hw: tuple[int, int],
                  cache_dir: Path) -> AccuracyBatch:
    """Preprocess every image once per (dataset content, input size); cached on disk."""
    key = f"{dataset.fingerprint()}-{input_hw[0]}x{input_hw[1]}"
    folder = cache_dir / "tensors" / key
    tensors, meta = folder / "batch.npz", folder / "letterbox.json"
    timing = folder / f"timing-{input_name}.npz"
    if not (tensors.exists() and meta.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        arrays, boxes = {}, []
        for i, image in enumerate(dataset.images):
            arrays[str(i)], box = image_tensor(image.path, input_hw)
            if box.orig_hw != (image.height, image.width):  # labels would be in another frame
                raise UserError(f"{image.path} decodes to {box.orig_hw[1]}x{box.orig_hw[0]} "
                                f"pixels but its header says {image.width}x{image.height} "
                                "after EXIF orientation; re-save the image.")
            boxes.append(box)
        tmp = folder / f".batch-{time.time_ns()}.npz"
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(tensors)
        meta.write_text(json.dumps([[b.ratio, b.pad_left, b.pad_top, *b.orig_hw]
                                    for b in boxes]))
    letterboxes = tuple(Letterbox(ratio=r, pad_left=int(x), pad_top=int(y),
                                  orig_hw=(int(h), int(w)))
                        for r, x, y, h, w in json.loads(meta.read_text()))
    if not timing.exists():
        with np.load(tensors) as data:
            first = data["0"]
        tmp = folder / f".timing-{time.time_ns()}.npz"
        np.savez(tmp, **{input_name: first})  # type: ignore[arg-type]
        tmp.replace(timing)
    return AccuracyBatch(dataset, input_name, input_hw, tensors, timing, letterboxes)


def batched(batch: AccuracyBatch, size: int) -> AccuracyBatch:
    """``batch`` for a model with a static batch of ``size``: the accuracy tensors grouped
    ``size`` images to an input (:func:`edgebench.batching.groups`: in order, the last
    group padded) and the timed input the first group, in the timing input's dtype. Cached
    next to ``batch``'s files; ``batch`` itself for ``size`` 1."""
    if size == batch.batch:
        return batch
    if batch.batch != 1:
        raise ValueError(f"cannot regroup a batch of {batch.batch} into {size}")
    tensors = batch.tensors.with_name(f"{batch.tensors.stem}-b{size}.npz")
    timing = batch.timing_input.with_name(f"{batch.timing_input.stem}-b{size}.npz")
    if not tensors.exists():
        group_tensors(batch.tensors, size, tensors)
    if not timing.exists():
        with np.load(batch.timing_input) as single, np.load(tensors) as grouped:
            dtype = single[batch.input_name].dtype
            first = grouped["0"].astype(dtype)
        tmp = timing.with_name(f".{timing.stem}-{time.time_ns()}.npz")
        np.savez(tmp, **{batch.input_name: first})  # type: ignore[arg-type]
        tmp.replace(timing)
    return dataclasses.replace(batch, tensors=tensors, timing_input=timing, batch=size)


@dataclass(frozen=True)
class Reference:
    """The float reference's outputs on a batch, decoded once."""

    name: str
    outputs: list[np.ndarray]  # canonical head outputs (or raw first outputs), per image
    detections: list[Detections] | None


def canonical_outputs(batch: AccuracyBatch, outputs: list[list[np.ndarray]],
                      boxes_normalised: bool | None) -> tuple[list[np.ndarray], str | None]:
    """Per image, the head output in canonical layout; or the raw outputs and why not.
    ``outputs``: per input of ``batch.tensors`` (per group of ``batch.batch`` images), its
    outputs. Raises ``ValueError`` when batched outputs cannot be split per image."""
    outputs = split_outputs(outputs, batch.batch, len(batch.letterboxes))
    first = outputs[0]
    problem = (f"the model has {len(first)} outputs; a YOLOv8 detection head has one"
               if len(first) != 1 else head_problem(first[0].shape, batch.input_hw))
    if problem:
        return [np.concatenate([np.ravel(o) for o in per]) for per in outputs], problem
    return [canonical(per[0], batch.input_hw, boxes_normalised) for per in outputs], None


def make_reference(name: str, batch: AccuracyBatch, outputs: list[list[np.ndarray]],
                   settings: AccuracySettings) -> Reference:
    """The reference's outputs (per input of ``batch.tensors``) decoded per image; raises
    :class:`CaseError` when batched outputs cannot be split per image."""
    try:
        canon, problem = canonical_outputs(batch, outputs, None)
    except ValueError as exc:
        raise CaseError(f"its outputs cannot be split per image: {exc}") from None
    detections = None if problem else [
        decode(o, lb, conf=settings.agreement_conf, iou=settings.iou, max_det=settings.max_det)
        for o, lb in zip(canon, batch.letterboxes)]
    return Reference(name, canon, detections)


def evaluate(batch: AccuracyBatch, outputs: list[list[np.ndarray]],
             settings: AccuracySettings, *, reference: Reference | None,
             reference_problem: str | None = None,
             boxes_normalised: bool | None = None,
             tolerance: Tolerance | None = None) -> Accuracy:
    """mAP (labelled data) and fidelity (when a reference exists) of a case's outputs;
    the fidelity is checked against ``tolerance`` (see ``Fidelity.within_tolerance``)."""
    t0 = time.perf_counter()
    dataset = batch.dataset
    base = Accuracy(status=Status.SKIPPED, reason=None, dataset=dataset.name,
                    images=len(dataset.images), labelled=dataset.labelled,
                    conf=settings.conf, iou=settings.iou, library=_library(),
                    left_out={str(lo.path): lo.reason for lo in dataset.left_out})
    try:
        canon, problem = canonical_outputs(batch, outputs, boxes_normalised)
    except ValueError as exc:
        return _replace(base, status=Status.FAILED,
                        reason=f"the batched outputs cannot be split per image: {exc}")
    if not all(np.isfinite(o).all() for o in canon):
        return _replace(base, status=Status.FAILED,
                        reason="the outputs of the accuracy pass hold NaN or infinity")
    fidelity = None
    if reference is not None:
        fidelity_dets: list[Detections] = []
        if problem is None:
            fidelity_dets = [decode(o, lb, conf=settings.agreement_conf, iou=settings.iou,
                                    max_det=settings.max_det)
                             for o, lb in zip(canon, batch.letterboxes)]
        try:
            fidelity = output_fidelity(reference.name, reference.outputs, canon,
                                       reference.detections or [], fidelity_dets,
                                       head=problem is None and reference.detections is not None,
                                       agreement_conf=settings.agreement_conf)
            fidelity = check_tolerance(fidelity, tolerance, reference.outputs)
        except ValueError as exc:
            problem = problem or f"outputs differ in shape from the reference: {exc}"
    if problem:
        return _replace(base, reason=f"{problem}; latency is still reported",
                        fidelity=fidelity, host_seconds=time.perf_counter() - t0)
    if dataset.labelled:
        nc = canon[0].shape[0] - 4
        if nc != len(dataset.class_names):
            return _replace(base, status=Status.FAILED,
                            reason=f"the model predicts {nc} classes but the dataset has "
                                   f"{len(dataset.class_names)}", fidelity=fidelity)
        detections = [decode(o, lb, conf=settings.conf, iou=settings.iou,
                             max_det=settings.max_det)
                      for o, lb in zip(canon, batch.letterboxes)]
        result = coco_map(dataset, detections)
        no_check = None if fidelity is not None else (
            f"no agreement check: {reference_problem or 'no float reference'}")
        if result.map50_95 is None:
            no_map = "the evaluated images hold no ground-truth box, so there is no mAP"
            no_check = f"{no_map}; {no_check}" if no_check else no_map
        return _replace(base, status=Status.OK, reason=no_check, map50_95=result.map50_95,
                        map50=result.map50,
                        per_class_map50_95=result.per_class_map50_95,
                        per_class_map50=result.per_class_map50, detections=result.detections,
                        fidelity=fidelity, host_seconds=time.perf_counter() - t0)
    reason = "unlabelled images: fidelity to the reference only, no mAP"
    if fidelity is None:
        reason += f" (and no reference: {reference_problem or 'none available'})"
    return _replace(base, status=Status.OK, reason=reason, fidelity=fidelity,
                    host_seconds=time.perf_counter() - t0)


def _replace(acc: Accuracy, **changes: object) -> Accuracy:
    import dataclasses

    return dataclasses.replace(acc, **changes)  # type: ignore[arg-type]


def _library() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pycocotools {version('pycocotools')}"
    except PackageNotFoundError:
        return "pycocotools"
