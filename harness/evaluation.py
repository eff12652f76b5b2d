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
from .batching import (
    BATCH_SUFFIX,
    group_tensors,
    normalise,
    read_batch,
    split_outputs,
    write_batch,
)
from .cache import sha256_file
from .coco import coco_map
from .dataset_records import Dataset
from .errors import CaseError, UserError
from .heads import HeadLayout, canonical_head, decode_head, detections_fidelity, head_layout
from .model_metadata import ModelMetadata
from .preprocess import Letterbox, letterbox, read_image
from .records import Accuracy, Status, Tolerance


@dataclass(frozen=True)
class AccuracyBatch:
    """The dataset's images letterboxed to one input size, as pushed to devices."""

    dataset: Dataset
    input_name: str
    input_hw: tuple[int, int]
    tensors: Path
    """The accuracy batch: ``.npy``, (K, B, 3, H, W) uint8 RGB letterboxed pixels, K
    inferences of ``batch`` images (N images: K = N for batch 1; see :func:`batched`). The
    device agent memory-maps it and divides each inference's pixels by 255 in float32 just
    before it runs (``edgebench.batching``): the float32 (B, 3, H, W) tensors of
    ``preprocess.to_tensor``, bit for bit."""
    timing_input: Path
    """``.npz`` with the first image (the first ``batch`` images) under the model's input
    name, float32 (``batch``, 3, H, W): the timed loop's input."""
    letterboxes: tuple[Letterbox, ...]
    batch: int = 1
    """Images per inference (the model's static batch); outputs are split back per image."""
    dataset_fingerprint: str | None = None
    """``dataset.fingerprint()``, computed once when the batch was prepared."""
    content_sha256: str | None = None
    """sha256 of the ``tensors`` file's bytes (the ``.npy`` header names its dtype and
    shape): the content the runners see, since their float32 inputs are those pixels
    ``/ 255`` by a fixed rule (:func:`edgebench.batching.normalise`). Differs between the
    per-image batch and a grouped one (:func:`batched`), as their inputs differ."""


def prepare_batch(dataset: Dataset, input_name: str, input_hw: tuple[int, int],
                  cache_dir: Path) -> AccuracyBatch:
    """Letterbox every image once per (dataset content, input size) into the accuracy batch
    (:func:`edgebench.batching.write_batch`: (N, 1, 3, H, W) uint8); cached on disk with
    its letterboxes, its sha256 and the float32 timing input. Raises :class:`UserError`
    for an image whose decoded size is not the one its header (and labels) say."""
    fingerprint = dataset.fingerprint()
    key = f"{fingerprint}-{input_hw[0]}x{input_hw[1]}"
    folder = cache_dir / "tensors" / key
    tensors, meta = folder / f"batch{BATCH_SUFFIX}", folder / "letterbox.json"
    timing = folder / f"timing-{input_name}.npz"
    if not (tensors.exists() and meta.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.empty((len(dataset.images), 1, 3, *input_hw), dtype=np.uint8)
        boxes = []
        for i, image in enumerate(dataset.images):
            padded, box = letterbox(read_image(image.path), input_hw)
            if box.orig_hw != (image.height, image.width):  # labels would be in another frame
                raise UserError(f"{image.path} decodes to {box.orig_hw[1]}x{box.orig_hw[0]} "
                                f"pixels but its header says {image.width}x{image.height} "
                                "after EXIF orientation; re-save the image.")
            pixels[i, 0] = padded[:, :, ::-1].transpose(2, 0, 1)  # BGR HWC -> RGB CHW
            boxes.append(box)
        write_batch(tensors, pixels)
        _write_sha256(tensors, sha256_file(tensors))
        meta.write_text(json.dumps([[b.ratio, b.pad_left, b.pad_top, *b.orig_hw]
                                    for b in boxes]))
    letterboxes = tuple(Letterbox(ratio=r, pad_left=int(x), pad_top=int(y),
                                  orig_hw=(int(h), int(w)))
                        for r, x, y, h, w in json.loads(meta.read_text()))
    if not timing.exists():
        first = normalise(read_batch(tensors)[0])
        tmp = folder / f".timing-{time.time_ns()}.npz"
        np.savez(tmp, **{input_name: first})  # type: ignore[arg-type]
        tmp.replace(timing)
    return AccuracyBatch(dataset, input_name, input_hw, tensors, timing, letterboxes,
                         dataset_fingerprint=fingerprint, content_sha256=_sha256(tensors))


def _sha256_path(tensors: Path) -> Path:
    return tensors.with_name(f"{tensors.name}.sha256")


def _write_sha256(tensors: Path, digest: str) -> None:
    sidecar = _sha256_path(tensors)
    tmp = sidecar.with_name(f".{sidecar.name}-{time.time_ns()}")
    tmp.write_text(digest)
    tmp.replace(sidecar)


def _sha256(tensors: Path) -> str:
    """The batch file's sha256, from the file written next to it when the batch was made
    (hashed again, and written, when that file is missing)."""
    sidecar = _sha256_path(tensors)
    try:
        digest = sidecar.read_text().strip()
    except OSError:
        digest = ""
    if len(digest) != 64:
        digest = sha256_file(tensors)
        _write_sha256(tensors, digest)
    return digest


def batched(batch: AccuracyBatch, size: int) -> AccuracyBatch:
    """``batch`` for a model with a static batch of ``size``: the accuracy batch grouped
    ``size`` images to an input (:func:`edgebench.batching.groups`: in order, the last
    group padded; (K, size, 3, H, W) uint8) and the timed input the first group, in the
    timing input's dtype. Cached next to ``batch``'s files; ``batch`` itself for
    ``size`` 1."""
    if size == batch.batch:
        return batch
    if batch.batch != 1:
        raise ValueError(f"cannot regroup a batch of {batch.batch} into {size}")
    tensors = batch.tensors.with_name(f"{batch.tensors.stem}-b{size}{BATCH_SUFFIX}")
    timing = batch.timing_input.with_name(f"{batch.timing_input.stem}-b{size}.npz")
    if not tensors.exists():
        group_tensors(batch.tensors, size, tensors)
        _write_sha256(tensors, sha256_file(tensors))
    if not timing.exists():
        with np.load(batch.timing_input) as single:
            dtype = single[batch.input_name].dtype
        first = normalise(read_batch(tensors)[0]).astype(dtype)
        tmp = timing.with_name(f".{timing.stem}-{time.time_ns()}.npz")
        np.savez(tmp, **{batch.input_name: first})  # type: ignore[arg-type]
        tmp.replace(timing)
    return dataclasses.replace(batch, tensors=tensors, timing_input=timing, batch=size,
                               content_sha256=_sha256(tensors))


@dataclass(frozen=True)
class Reference:
    """The float reference's outputs on a batch, decoded once."""

    name: str
    """What computed it (``PyTorch 2.14.1 (Ultralytics ...) on the host, model.pt``)."""
    outputs: list[np.ndarray]  # canonical head outputs (or raw first outputs), per image
    detections: list[Detections] | None
    layout: HeadLayout | None = None
    """How its outputs were read (``None``: not a detection head; see ``heads.py``)."""
    origin: str = ""
    """Where this run got it (``computed by this run ...``, ``read from the reference cache
    ...``; ``reference_cache.CachedReference.origin``); not part of what it is."""

    @property
    def described(self) -> str:
        """Its name for the report (``Fidelity.reference``): what computed it, then where
        this run got it from."""
        return f"{self.name}; {self.origin}" if self.origin else self.name


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
                   settings: AccuracySettings, metadata: ModelMetadata | None = None,
                   origin: str = "") -> Reference:
    """The reference's outputs (per input of ``batch.tensors``) decoded per image; raises
    :class:`CaseError` when batched outputs cannot be split per image. ``name``: what
    computed it; ``origin``: where this run got it (:attr:`Reference.origin`)."""
    try:
        canon, layout, _ = head_outputs(batch, outputs, None, metadata)
    except ValueError as exc:
        raise CaseError(f"its outputs cannot be split per image: {exc}") from None
    detections = None if layout is None else decode_head(
        layout, canon, batch.letterboxes, conf=settings.agreement_conf, iou=settings.iou,
        max_det=settings.max_det)
    return Reference(name, canon, detections, layout, origin)


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
                fidelity = detections_fidelity(reference.described, reference.outputs, canon,
                                               reference.detections or [], fidelity_dets,
                                               batch.letterboxes)
            else:
                fidelity = output_fidelity(reference.described, reference.outputs, canon,
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
