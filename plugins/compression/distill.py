"""Knowledge distillation (``distill``) and its control without a teacher (``finetune``).

``distill`` fine-tunes the student (the model the pipeline has so far, e.g. after ``prune``)
on the train split with the teacher's class scores and box distributions as soft targets
(:mod:`edgebench.plugins.compression.kd_loss`) on top of the normal YOLOv8 detection loss.
The teacher is ``teacher=path.pt`` or, by default, the uncompressed model the pipeline started from.
``finetune`` is the same training, same data, epochs and seed, without the teacher, so::

    --compress prune:0.3:epochs=0+finetune:5,prune:0.3:epochs=0+distill:5

measures what the teacher adds rather than assuming it. A bare value is the epochs
(``distill:5`` = ``distill:epochs=5``).

Training is :func:`edgebench.plugins.compression.finetune_trainer.finetune` (Ultralytics'
``DetectionTrainer`` on the module as it is, pruned architectures included; CPU, fixed seed,
last-epoch weights, never chosen on the val split) in a subprocess, so torch never loads
into the harness; the KD loss enters through its criterion hook. Results are cached by the
student's and the teacher's content, the training data and the options.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.cache import sha256_file
from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError, UserError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, pt_artifact
from .model_facts import inspect_models
from .train_subset import data_fingerprint, subset_yaml

EXPORT_HINT = "pip install 'edgebench[export]'"
DISTILL_VERSION = 1
"""Bump when training gives different weights for the same options (invalidates the cache)."""
CRITERION = "edgebench.plugins.compression.kd_loss:make_criterion"
TRAIN_OPTIONS: Mapping[str, Any] = {"epochs": 10, "imgsz": 0, "batch": 16, "images": 0,
                                    "seed": 0}
"""``epochs`` (at least 1); ``imgsz``: training size (0: the run's); ``batch``; ``images``:
train on the first N train images (0: all); ``seed``."""
KD_OPTIONS: Mapping[str, Any] = {"teacher": "", "kd_weight": 1.0, "temperature": 2.0,
                                 "dfl_weight": 1.0}
"""``teacher``: a ``.pt`` (empty: the uncompressed model the pipeline started from);
``kd_weight``: weight of the distillation term against the detection loss; ``temperature``;
``dfl_weight``: weight of the box-distribution term relative to the class term."""


def torch_unavailable() -> str | None:
    """Why training cannot run here (torch or Ultralytics missing), or ``None``."""
    absent = [m for m in ("torch", "ultralytics") if importlib.util.find_spec(m) is None]
    if absent:
        return f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not " \
               f"installed: {EXPORT_HINT}"
    return None


# -- checking options, before any training ---------------------------------------------


def check_training(step: str, options: Mapping[str, Any], context: CompressionContext
                   ) -> None:
    """One-sentence :class:`UserError` for training options that cannot work."""
    if options["epochs"] < 1:
        raise UserError(f"{step}:epochs={options['epochs']} trains nothing; give at least 1 "
                        f"(e.g. {step}:epochs=5).")
    imgsz = _imgsz(options, context)
    if options["imgsz"] < 0 or imgsz % 32:
        raise UserError(f"{step}:imgsz={imgsz} is not a positive multiple of 32 (the "
                        f"model's largest stride); e.g. {step}:imgsz=320.")
    if options["batch"] < 1:
        raise UserError(f"{step}:batch={options['batch']} must be at least 1.")
    if options["images"] < 0:
        raise UserError(f"{step}:images={options['images']} is negative; give 0 (the whole "
                        "train split) or a count.")
    available = len(context.train_images())  # UserError when there is no train split
    if options["images"] > available:
        raise UserError(f"{step}:images={options['images']} but the train split has "
                        f"{available} images; ask for fewer.")


def teacher_path(options: Mapping[str, Any], context: CompressionContext) -> Path:
    """The teacher ``.pt``: the option, else the uncompressed model the pipeline started
    from. :class:`UserError` when it is missing or not a ``.pt``."""
    given = str(options["teacher"])
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise UserError(f"distill:teacher={given} does not exist; give an Ultralytics "
                            ".pt trained on the same classes.")
        if path.suffix.lower() != ".pt":
            raise UserError(f"distill:teacher={given} is not a .pt; the teacher runs in "
                            "PyTorch, give its Ultralytics .pt.")
        return path.resolve()
    for candidate in (context.source, context.pytorch):
        if candidate is not None and candidate.format == "pt":
            return candidate.path
    raise UserError(f"distill has no teacher: {context.source.path.name} is not a .pt; "
                    "give one with distill:teacher=path.pt.")


def check_pair(teacher: Mapping[str, Any], student: Mapping[str, Any], teacher_name: str,
               student_name: str) -> None:
    """:class:`UserError` when the two heads cannot be compared anchor by anchor."""
    if teacher["nc"] != student["nc"]:
        raise UserError(f"the teacher {teacher_name} has {teacher['nc']} classes but the "
                        f"student {student_name} has {student['nc']}; distill needs a teacher "
                        "trained on the same classes.")
    if teacher["names"] != student["names"]:
        raise UserError(f"the teacher {teacher_name} names its classes "
                        f"{list(teacher['names'])} but the student {student_name} "
                        f"{list(student['names'])}; distill needs the same classes in the "
                        "same order.")
    for key, what in (("reg_max", "box distribution size (reg_max)"),
                      ("strides", "head strides")):
        if teacher[key] != student[key]:
            raise UserError(f"the teacher {teacher_name} and the student {student_name} "
                            f"differ in {what} ({teacher[key]} vs {student[key]}); distill "
                            "compares their heads anchor by anchor.")


# -- the steps -------------------------------------------------------------------------


class Finetune(Compressor):
    """The student trained on the train split with the detection loss alone."""

    name: ClassVar[str] = "finetune"
    target: ClassVar[str] = "pt"
    summary: ClassVar[str] = ("fine-tuning on the train split without a teacher (the control "
                              "for distill: same training, no soft targets)")
    option_defaults: ClassVar[Mapping[str, Any]] = dict(TRAIN_OPTIONS)
    primary_option: ClassVar[str | None] = "epochs"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return torch_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        check_training(self.name, options, context)

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        return train_step(self.name, model, options, context, teacher=None)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return training_notes(artifact_meta(artifact.path))


class Distill(Compressor):
    """The student trained with a teacher's soft targets plus the detection loss."""

    name: ClassVar[str] = "distill"
    target: ClassVar[str] = "pt"
    summary: ClassVar[str] = ("knowledge distillation on the train split: KL to a teacher's "
                              "class scores and DFL box distributions plus the detection loss "
                              "(teacher: the uncompressed model, or teacher=path.pt)")
    option_defaults: ClassVar[Mapping[str, Any]] = {**TRAIN_OPTIONS, **KD_OPTIONS}
    primary_option: ClassVar[str | None] = "epochs"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return torch_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        check_training(self.name, options, context)
        if options["kd_weight"] <= 0:
            raise UserError(f"distill:kd_weight={options['kd_weight']:g} switches the teacher "
                            "off; give a positive weight, or use the finetune step.")
        if options["temperature"] <= 0:
            raise UserError(f"distill:temperature={options['temperature']:g} must be positive "
                            "(1: the logits as they are, 2-4: softer targets).")
        if options["dfl_weight"] < 0:
            raise UserError(f"distill:dfl_weight={options['dfl_weight']:g} is negative; give 0 "
                            "(class scores only) or more.")
        teacher = teacher_path(options, context)
        student = context.pytorch or context.source
        if student.format == "pt" and student.path.resolve() != teacher:
            try:
                heads = inspect_models([teacher, student.path])
            except CaseError as exc:  # over the converter limits, before any case ran
                raise UserError(f"{exc}.") from None
            check_pair(heads[0], heads[1], teacher.name, student.path.name)

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        teacher = teacher_path(options, context)
        return train_step(self.name, model, options, context, teacher=teacher)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return training_notes(artifact_meta(artifact.path))


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(Distill)
    register(Finetune)


# -- training in a subprocess, cached --------------------------------------------------


def train_step(step: str, model: Artifact, options: Mapping[str, Any],
               context: CompressionContext, *, teacher: Path | None) -> Artifact:
    """Train ``model`` (with ``teacher`` for distill), cached; the ``.pt`` artifact."""
    from .finetune_trainer import KDSettings, finetune_in_subprocess

    if model.format != "pt":
        raise CaseError(f"{step} trains a PyTorch .pt, got {model.format}")
    imgsz = _imgsz(options, context)
    images = context.train_images(options["images"] or None)
    data = context.dataset_yaml()
    key: dict[str, object] = {
        "v": DISTILL_VERSION, **{k: options[k] for k in TRAIN_OPTIONS}, "imgsz": imgsz,
        "data": data_fingerprint(images, data)}
    kd = None
    if teacher is not None:
        key.update({k: options[k] for k in KD_OPTIONS if k != "teacher"},
                   teacher=sha256_file(teacher))
        kd = KDSettings(weight=float(options["kd_weight"]),
                        temperature=float(options["temperature"]), criterion=CRITERION,
                        extra=(("dfl_weight", float(options["dfl_weight"])),))

    def produce(out: Path) -> None:
        if teacher is not None:
            heads = inspect_models([teacher, model.path])
            try:
                check_pair(heads[0], heads[1], teacher.name, model.path.name)
            except UserError as exc:
                raise CaseError(str(exc)) from None
        train_yaml = subset_yaml(data, images, out / "data")
        result = finetune_in_subprocess(
            model.path, out / "model.pt", train_yaml, epochs=int(options["epochs"]),
            imgsz=imgsz, batch=int(options["batch"]), teacher=teacher, kd=kd,
            progress=context.progress, seed=int(options["seed"]))
        _remove_tree(out / "data")
        # the trainer records its training size; exports default to the input's instead
        try:
            (facts,) = inspect_models([out / "model.pt"], imgsz=imgsz, like=model.path)
        except UserError as exc:
            raise CaseError(f"{step} wrote a model that does not load: {exc}") from None
        meta: dict[str, Any] = {
            "file": "model.pt", "format": "pt", "imgsz": imgsz, "step": step,
            "gflops": facts.get("gflops"), "epochs": result.epochs,
            "images": len(images), "seconds": result.seconds,
            "val_map50_95": result.map50_95, "val_map50": result.map50,
            "converter": f"{step}: Ultralytics DetectionTrainer, {result.epochs} epochs at "
                         f"{imgsz} on {len(images)} train images"}
        if teacher is not None:
            meta.update(teacher=teacher.name, teacher_sha256=sha256_file(teacher),
                        kd_weight=options["kd_weight"], temperature=options["temperature"],
                        dfl_weight=options["dfl_weight"])
        (out / "artifact.json").write_text(json.dumps(meta))

    path, meta = cached_export(model, step, key, produce)
    return pt_artifact(path, model, meta)


def _imgsz(options: Mapping[str, Any], context: CompressionContext) -> int:
    return int(options.get("imgsz") or context.imgsz)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# -- what the report says ---------------------------------------------------------------


def training_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Report lines of a trained model from its ``artifact.json`` (teacher and KD settings,
    epochs, images, time, Ultralytics val mAP after training)."""
    if not meta:
        return ()
    how = (f"distilled from {meta['teacher']} (sha256 {str(meta.get('teacher_sha256'))[:12]}; "
           f"KL on class scores and DFL box distributions, kd_weight {meta['kd_weight']:g}, "
           f"T {meta['temperature']:g}, dfl_weight {meta['dfl_weight']:g})"
           if meta.get("teacher") else "fine-tuned without a teacher")
    notes = [f"{how}: {meta.get('epochs')} epochs at {meta.get('imgsz')} on "
             f"{meta.get('images')} train images ({meta.get('seconds', 0):.0f} s)"]
    if meta.get("val_map50_95") is not None:
        notes.append(f"Ultralytics val mAP50-95 after training {meta['val_map50_95']:.3f}")
    return tuple(notes)
