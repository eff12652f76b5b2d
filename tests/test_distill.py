"""Distillation: the KD loss on toy tensors and on the real model's head, the ``distill`` and
``finetune`` steps on a really pruned student (tiny: 64 px, 16 images, 1 epoch), and the
one-sentence refusals of bad options before any training."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edgebench.compression import resolve_pipelines
from edgebench.config import ASSETS
from edgebench.contracts import CompressionContext
from edgebench.errors import UserError
from edgebench.pipeline import export_with_ultralytics, load_source
from edgebench.plugin_manager import collect_registry, make_plugin_manager
from edgebench.records import Artifact

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from edgebench.plugins.compression import kd_loss  # noqa: E402  (needs torch)
from edgebench.plugins.compression.distill import Distill, Finetune  # noqa: E402

EMBEDDED_PT = ASSETS / "shapes-yolov8n.pt"
TINY: Mapping[str, Any] = {"epochs": 1, "imgsz": 64, "images": 16, "batch": 8}
pytestmark = pytest.mark.export  # torch + ultralytics


# -- the loss ----------------------------------------------------------------------------


def _heads(seed: int, nc: int = 4, reg_max: int = 16, anchors: int = 21
           ) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"scores": torch.randn(2, nc, anchors, generator=g) * 3,
            "boxes": torch.randn(2, 4 * reg_max, anchors, generator=g) * 2}


def test_kd_terms_are_zero_for_identical_heads_and_positive_otherwise() -> None:
    config = kd_loss.KDConfig(temperature=2.0)
    same = kd_loss.distillation_terms(_heads(0), _heads(0), config)
    assert [float(t) for t in same] == [0.0, 0.0]
    cls_term, box_term = kd_loss.distillation_terms(_heads(1), _heads(0), config)
    assert torch.isfinite(cls_term) and torch.isfinite(box_term)
    assert cls_term > 0.01 and box_term > 0.01


def test_gradients_pull_the_student_towards_the_teacher() -> None:
    teacher = _heads(0)
    student = {k: v.clone().requires_grad_(True) for k, v in _heads(1).items()}
    cls_term, box_term = kd_loss.distillation_terms(student, teacher, kd_loss.KDConfig())
    (cls_term + box_term).backward()
    # class logits: below the teacher's -> the gradient is negative (descent raises them)
    below = student["scores"].detach() < teacher["scores"]
    grad = student["scores"].grad
    assert (grad[below] <= 0).all() and (grad[~below] >= 0).all()
    assert grad.abs().sum() > 0
    # box bins: where the (softened) teacher puts more probability than the student,
    # descent adds some
    b, c, a = teacher["boxes"].shape
    t = kd_loss.KDConfig().temperature
    p = (teacher["boxes"].view(b, 4, c // 4, a) / t).softmax(2)
    q = (student["boxes"].detach().view(b, 4, c // 4, a) / t).softmax(2)
    box_grad = student["boxes"].grad.view(b, 4, c // 4, a)
    more = p > q + 1e-6
    assert (box_grad[more] <= 0).all() and (box_grad[p < q - 1e-6] >= 0).all()


def test_minimising_the_kd_loss_converges_to_the_teacher() -> None:
    teacher = _heads(0)
    student = {k: v.clone().requires_grad_(True) for k, v in _heads(1).items()}
    optimiser = torch.optim.Adam(student.values(), lr=0.1)
    losses = []
    for _ in range(150):
        optimiser.zero_grad()
        loss = sum(kd_loss.distillation_terms(student, teacher, kd_loss.KDConfig()))
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.02 * losses[0]
    assert all(b < a for a, b in itertools.pairwise(losses[:21]))  # steadily at first


def test_heads_of_different_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="scores"):
        kd_loss.distillation_terms(_heads(0, nc=3), _heads(0, nc=4), kd_loss.KDConfig())
    with pytest.raises(ValueError, match="temperature"):
        kd_loss.KDConfig(temperature=0)


def _batch(imgsz: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    return {"img": torch.rand(2, 3, imgsz, imgsz, generator=g),
            "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
            "cls": torch.tensor([[0.0], [2.0], [1.0]]),
            "bboxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4],
                                    [0.5, 0.5, 0.5, 0.5]])}


def test_distillation_criterion_on_the_real_model_adds_finite_kd_terms() -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import load_checkpoint

    from edgebench.plugins.compression.finetune_trainer import KDSettings

    student, _ = load_checkpoint(str(EMBEDDED_PT))
    teacher, _ = load_checkpoint(str(EMBEDDED_PT))
    student = student.float().train()
    for param in student.parameters():
        param.requires_grad_(True)
    student.args = get_cfg()
    batch = _batch(64)
    base = student.init_criterion()
    kd = KDSettings(weight=2.0, temperature=3.0, criterion="x:y", extra=(("dfl_weight", 0.5),))
    criterion = kd_loss.make_criterion(base, teacher.float(), kd)
    assert criterion.config == kd_loss.KDConfig(kd_weight=2.0, temperature=3.0, dfl_weight=0.5)
    preds = student(batch["img"])
    loss, items = criterion(preds, batch)
    base_loss, _ = base(preds, batch)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    assert torch.equal(loss[:3], base_loss)  # the detection terms are untouched
    assert loss[3] > 0 and loss[4] > 0  # train-mode BN: the student differs from the teacher
    assert {"kd_cls", "kd_box"} <= set(items)
    loss.sum().backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


# -- the steps ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> Artifact:
    return load_source(EMBEDDED_PT)


@pytest.fixture(scope="module")
def context(embedded: Artifact, tmp_path_factory: pytest.TempPathFactory
            ) -> CompressionContext:
    return CompressionContext(source=embedded, data_yaml=None, imgsz=64,
                              workdir=tmp_path_factory.mktemp("distill"), progress=False,
                              pytorch=embedded)


@pytest.fixture(scope="module")
def student(embedded: Artifact, context: CompressionContext) -> Artifact:
    """The embedded model really pruned (30 % of the channels), not fine-tuned."""
    from edgebench.plugins.compression.prune import StructuredPrune

    options = {**StructuredPrune.option_defaults, "ratio": 0.3, "epochs": 0}
    return StructuredPrune().apply(embedded, options, context)


def _options(cls: type, **given: Any) -> dict[str, Any]:
    return {**cls.option_defaults, **TINY, **given}


def _params(path: str) -> int:
    from ultralytics import YOLO  # type: ignore[attr-defined]

    return sum(p.numel() for p in YOLO(path).model.parameters())


@pytest.mark.slow
def test_distill_and_finetune_train_the_pruned_student(
        student: Artifact, context: CompressionContext, embedded: Artifact) -> None:
    from ultralytics import YOLO  # type: ignore[attr-defined]

    made = {}
    for cls in (Finetune, Distill):
        options = _options(cls)
        cls().check(options, context)
        made[cls.name] = cls().apply(student, options, context)
    finetuned, distilled = made["finetune"], made["distill"]
    pruned_params = _params(student.path)
    assert pruned_params < 0.8 * _params(embedded.path)
    image = sorted(context.train_images())[0]
    for artifact in (finetuned, distilled):
        assert artifact.format == "pt" and artifact.source_sha256 == student.sha256
        assert _params(artifact.path) == pruned_params  # the pruned architecture is kept
        (result,) = YOLO(artifact.path).predict(str(image), imgsz=64, verbose=False)
        assert result.boxes is not None
    assert finetuned.sha256 != distilled.sha256  # the teacher changed the training
    notes = Distill().notes(distilled)
    assert "distilled from shapes-yolov8n.pt" in notes[0] and "1 epochs at 64" in notes[0]
    assert Finetune().notes(finetuned)[0].startswith("fine-tuned without a teacher")
    meta = json.loads((distilled.path.parent / "artifact.json").read_text())
    assert meta["teacher_sha256"] == embedded.sha256 and meta["images"] == 16
    # cached: the same options give the same file without training again
    again = Distill().apply(student, _options(Distill), context)
    assert again.path == distilled.path and again.sha256 == distilled.sha256
    # the normal export path exports it, at the size the input was trained at (320)
    onnx = export_with_ultralytics(distilled, "onnx", context.workdir, imgsz=None)
    assert onnx.input_shape == (1, 3, 320, 320)


# -- bad inputs, refused before any training ---------------------------------------------


def test_steps_parse_with_epochs_as_the_bare_value() -> None:
    registry = collect_registry(make_plugin_manager())
    (pipeline,) = resolve_pipelines(["prune:0.3:epochs=0+distill:5"], registry)
    assert pipeline.steps[-1].label == "distill:epochs=5"
    (pipeline,) = resolve_pipelines(["finetune:3"], registry)
    assert pipeline.label == "finetune:epochs=3"


@pytest.mark.parametrize(("cls", "given", "message"), [
    (Distill, {"epochs": 0}, "distill:epochs=0 trains nothing"),
    (Finetune, {"epochs": 0}, "finetune:epochs=0 trains nothing"),
    (Finetune, {"imgsz": 100}, "not a positive multiple of 32"),
    (Distill, {"images": 100000}, "the train split has 600 images"),
    (Distill, {"kd_weight": 0.0}, "use the finetune step"),
    (Distill, {"temperature": 0.0}, "must be positive"),
    (Distill, {"teacher": "/nonexistent/teacher.pt"}, "does not exist"),
    (Distill, {"teacher": str(ASSETS / "shapes-yolov8n.onnx")}, "is not a .pt"),
])
def test_bad_options_are_one_sentence_errors(cls: type, given: dict[str, Any], message: str,
                                             context: CompressionContext) -> None:
    with pytest.raises(UserError, match=message) as info:
        cls().check(_options(cls, **given), context)
    text = str(info.value)
    assert "\n" not in text and text.endswith(".") and not re.search(r"\.\s+[A-Z]", text)


def test_a_teacher_with_other_classes_is_refused(context: CompressionContext,
                                                 tmp_path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.names = {0: "a", 1: "b", 2: "c"}
    teacher = tmp_path / "three-classes.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 64}}, teacher)
    with pytest.raises(UserError, match=re.escape(
            "has 3 classes but the student shapes-yolov8n.pt has 4")):
        Distill().check(_options(Distill, teacher=str(teacher)), context)
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("not a checkpoint")
    with pytest.raises(UserError, match=re.escape(
            "notes.pt is not a loadable Ultralytics .pt")):
        Distill().check(_options(Distill, teacher=str(not_a_model)), context)


def test_a_source_without_a_pt_needs_a_teacher(context: CompressionContext) -> None:
    onnx = load_source(ASSETS / "shapes-yolov8n.onnx")
    no_pt = dataclasses.replace(context, source=onnx, pytorch=None)
    with pytest.raises(UserError, match=re.escape(
            "give one with distill:teacher=path.pt")):
        Distill().check(_options(Distill), no_pt)
