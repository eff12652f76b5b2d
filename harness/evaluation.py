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
    check_tolerance,
    output_fidelity,
)
from .batching import group_tensors, split_outputs
from .coco import coco_map
from .dataset_records import Dataset
from .errors import CaseError, UserError
from .heads import HeadLayout, canonical_head, decode_head, detections_fidelity, head_layout
from .model_metadata import ModelMetadata
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
    dataset_fingerprint: str | None = None
    """``dataset.fingerprint()``, computed once when the batch was prepared."""


def prepare_batch(dataset: Dataset, input_name: str, input_hw: tuple[int, int],
                  cache_dir: Path) -> AccuracyBatch:
    """Preprocess every image once per (dataset content, input size); cached on disk."""
    fingerprint = dataset.fingerprint()
    key = f"{fingerprint}-{input_hw[0]}x{input_hw[1]}"
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
    return AccuracyBatch(dataset, input_name, input_hw, tensors, timing, letterboxes,
                         dataset_fingerprint=fingerprint)


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
    layout: HeadLayout | None = None
    """How its outputs were read (``None``: not a detection head; see ``heads.py``)."""


def head_outputs(batch: AccuracyBatch, outputs: list[list[np.ndarray]],
                 boxes_normalised: bool | None, metadata: ModelMetadata | None = None
                 ) -> tuple[list[np.ndarray], HeadLayout | None, str | None]:
    """Per image, the head output in canonical form (see :func:`heads.canonical_head`) and
    its layout; or the raw outputs flattened, no layout, and why not (an RT-DETR or OBB
    model: its canonical form, its layout, and why it is not scored). ``outputs``: per input
    of ``batch.tensors`` (per group of ``batch.batch`` images), its outputs; raises
    ``ValueError`` when batched outputs cannot be split per image."""
    outputs = split_outputs(outputs, batch.batch, len(batch.letterboxes))
    layout, problem = head_layout([np.shape(o) for o in outputs[0]], batch.input_hw, metadata)
    if layout is None:
        return ([np.concatenate([np.ravel(o) for o in per]) for per in outputs], None,
                problem)
    return ([canonical_head(per, layout, batch.input_hw, boxes_normalised) for per in outputs],
            layout, problem)


def canonical_outputs(batch: AccuracyBatch, outputs: list[list[np.ndarray]],
                      boxes_normalised: bool | None,
                      metadata: ModelMetadata | None = None
                      ) -> tuple[list[np.ndarray], str | None]:
    """Per image, the head output in canonical layout; or the raw outputs and why not.
    Raises ``ValueError`` when batched outputs cannot be split per image."""
    canon, _, problem = head_outputs(batch, outputs, boxes_normalised, metadata)
    return canon, problem


def make_reference(name: str, batch: AccuracyBatch, outputs: list[list[np.ndarray]],
                   settings: AccuracySettings, metadata: ModelMetadata | None = None
                   ) -> Reference:
    """The reference's outputs (per input of ``batch.tensors``) decoded per image; raises
    :class:`CaseError` when batched outputs cannot be split per image."""
    try:
        canon, layout, _ = head_outputs(batch, outputs, None, metadata)
    except ValueError as exc:
        raise CaseError(f"its outputs cannot be split per image: {exc}") from None
    detections = None if layout is None else decode_head(
        layout, canon, batch.letterboxes, conf=settings.agreement_conf, iou=settings.iou,
        max_det=settings.max_det)
    return Reference(name, canon, detections, layout)


def evaluate(batch: AccuracyBatch, outputs: list[list[np.ndarray]],
             settings: AccuracySettings, *, reference: Reference | None,
             reference_problem: str | None = None,
             boxes_normalised: bool | None = None,
             tolerance: Tolerance | None = None,
             metadata: ModelMetadata | None = None) -> Accuracy:
    """mAP (labelled data) and fidelity (when a reference exists) of a case's outputs;
    the fidelity is checked against ``tolerance`` (see ``Fidelity.within_tolerance``).
    ``metadata``: the model's own (task, class names, ...), for reading its head."""
    t0 = time.perf_counter()
    dataset = batch.dataset
    base = Accuracy(status=Status.SKIPPED, reason=None, dataset=dataset.name,
                    images=len(dataset.images), labelled=dataset.labelled,
                    conf=settings.conf, iou=settings.iou, library=_library(),
                    left_out={str(lo.path): lo.reason for lo in dataset.left_out},
                    dataset_fingerprint=batch.dataset_fingerprint, input_hw=batch.input_hw)
    try:
        canon, layout, problem = head_outputs(batch, outputs, boxes_normalised, metadata)
    except ValueError as exc:
        return _replace(base, status=Status.FAILED,
                        reason=f"the batched outputs cannot be split per image: {exc}")
    if not all(np.isfinite(o).all() for o in canon):
        return _replace(base, status=Status.FAILED,
                        reason="the outputs of the accuracy pass hold NaN or infinity")
    fidelity = None
    if reference is not None:
        fidelity_dets: list[Detections] = []
        if layout is not None:
            fidelity_dets = decode_head(layout, canon, batch.letterboxes,
                                        conf=settings.agreement_conf, iou=settings.iou,
                                        max_det=settings.max_det)
        head = layout is not None and reference.detections is not None
        try:
            kinds = (layout.kind if layout else "",
                     reference.layout.kind if reference.layout else "")
            if head and ("detections" in kinds or "rtdetr" in kinds):
                fidelity = detections_fidelity(reference.name, reference.outputs, canon,
                                               reference.detections or [], fidelity_dets,
                                               batch.letterboxes)
            else:
                fidelity = output_fidelity(reference.name, reference.outputs, canon,
                                           reference.detections or [], fidelity_dets,
                                           head=head, agreement_conf=settings.agreement_conf)
            fidelity = check_tolerance(fidelity, tolerance, reference.outputs)
        except ValueError as exc:
            problem = problem or f"outputs differ in shape from the reference: {exc}"
    if problem or layout is None:
        return _replace(base, reason=f"{problem}; latency is still reported",
                        fidelity=fidelity, host_seconds=time.perf_counter() - t0)
    if dataset.labelled:
        n_names = len(dataset.class_names)
        detections = decode_head(layout, canon, batch.letterboxes, conf=settings.conf,
                                 iou=settings.iou, max_det=settings.max_det)
        seen = max((int(d.classes.max()) for d in detections if len(d.classes)), default=-1)
        if (layout.classes is not None and layout.classes != n_names) or seen >= n_names:
            found = (f"predicts {layout.classes} classes" if layout.classes is not None
                     else f"predicts class index {seen}")
            return _replace(base, status=Status.FAILED,
                            reason=f"the model {found} but the dataset has {n_names}",
                            fidelity=fidelity)
        result = coco_map(dataset, detections)
        no_map = ("the evaluated images hold no ground-truth box, so there is no mAP"
                  if result.map50_95 is None else None)
        notes = [no_map, f"no agreement check: {reference_problem or 'no float reference'}"
                 if fidelity is None else None, _box_only(layout)]
        return _replace(base, status=Status.OK, reason="; ".join(n for n in notes if n) or None,
                        map50_95=result.map50_95, map50=result.map50,
                        per_class_map50_95=result.per_class_map50_95,
                        per_class_map50=result.per_class_map50, detections=result.detections,
                        fidelity=fidelity, host_seconds=time.perf_counter() - t0)
    reason = "unlabelled images: fidelity to the reference only, no mAP"
    if fidelity is None:
        reason += f" (and no reference: {reference_problem or 'none available'})"
    return _replace(base, status=Status.OK, reason=reason, fidelity=fidelity,
                    host_seconds=time.perf_counter() - t0)


def _box_only(layout: HeadLayout) -> str | None:
    """What a box mAP leaves out of a segmentation or pose model."""
    left_out = {"segment": "masks", "pose": "keypoints"}.get(layout.task)
    return (f"box mAP of a {layout.task} model (its {left_out} are not scored)"
            if left_out else None)


def _replace(acc: Accuracy, **changes: object) -> Accuracy:
    import dataclasses

    return dataclasses.replace(acc, **changes)  # type: ignore[arg-type]


def _library() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pycocotools {version('pycocotools')}"
    except PackageNotFoundError:
        return "pycocotools"
