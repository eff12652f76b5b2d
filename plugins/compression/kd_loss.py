"""Knowledge-distillation loss for YOLOv8 detectors: the teacher's class scores and box
distributions as soft targets for the student, added to the normal detection loss.

Both models' heads give, per anchor, ``nc`` class logits (sigmoid, one per class, as v8's
BCE loss treats them) and ``4 x reg_max`` box logits (a softmax distribution over
``reg_max`` distances for each side, v8's DFL). With temperature ``T``:

* class term: the Bernoulli KL ``KL(sigmoid(t/T) || sigmoid(s/T))`` summed over classes;
* box term (localization distillation, Zheng et al. 2022): ``KL(softmax(t/T) ||
  softmax(s/T))`` over the ``reg_max`` bins, averaged over the four sides;

each multiplied by ``T**2`` (so the gradient scale does not shrink with ``T``, Hinton et al.
2015) and averaged over anchors weighted by ``max(teacher, student)`` class confidence:
anchors where either model sees an object count, the empty background (almost all anchors)
does not drown the signal, and a student's false positive where the teacher sees nothing is
still pulled down. The total is ``detection + kd_weight * (cls + dfl_weight * box)``, scaled
by the batch size as Ultralytics' own loss is.

Imported only inside the training subprocess (it imports torch at module level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

EPS = 1e-7


@dataclass(frozen=True)
class KDConfig:
    """Weights of the distillation terms."""

    kd_weight: float = 1.0
    """Weight of the whole distillation term against the detection loss (0: no teacher)."""
    temperature: float = 2.0
    """Softening temperature of both models' logits."""
    dfl_weight: float = 1.0
    """Weight of the box-distribution term relative to the class term."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.kd_weight < 0 or self.dfl_weight < 0:
            raise ValueError("kd_weight and dfl_weight must be >= 0")


def head_outputs(preds: Any) -> dict[str, torch.Tensor]:
    """The raw head dict (``boxes`` (B, 4*reg_max, A), ``scores`` (B, nc, A)) from what a
    v8 ``DetectionModel`` returns in training mode (the dict) or eval mode
    (``(decoded, dict)``); end-to-end heads give their one-to-many branch."""
    out = preds[1] if isinstance(preds, (tuple, list)) else preds
    if "one2many" in out:
        out = out["one2many"]
    if "boxes" not in out or "scores" not in out:
        raise ValueError("not a YOLOv8 detection head output (no 'boxes'/'scores')")
    return dict(out)


def anchor_weights(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """(B, A) per-anchor weights: the higher class confidence of either model (no grad)."""
    with torch.no_grad():
        both = torch.maximum(student_scores.sigmoid(), teacher_scores.sigmoid())
        return both.amax(dim=1)


def _weighted_mean(per_anchor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (per_anchor * weights).sum() / weights.sum().clamp(min=EPS)


def class_kd(student_scores: torch.Tensor, teacher_scores: torch.Tensor,
             weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """Bernoulli KL of the temperature-softened class probabilities, summed over classes,
    weighted mean over anchors, times ``T**2``. Inputs (B, nc, A) logits, weights (B, A)."""
    t = temperature
    t_logit, s_logit = teacher_scores.detach() / t, student_scores / t
    p = torch.sigmoid(t_logit)
    # log sigmoid(x) = -softplus(-x), log (1 - sigmoid(x)) = -softplus(x): stable, exact 0 at s == t
    kl = (p * (F.softplus(-s_logit) - F.softplus(-t_logit))
          + (1 - p) * (F.softplus(s_logit) - F.softplus(t_logit)))
    return _weighted_mean(kl.sum(dim=1), weights) * t * t


def box_kd(student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, weights: torch.Tensor,
           temperature: float) -> torch.Tensor:
    """KL of the temperature-softened DFL distributions (B, 4*reg_max, A), averaged over the
    four sides, weighted mean over anchors, times ``T**2``."""
    b, c, a = student_boxes.shape
    t = temperature
    s = student_boxes.view(b, 4, c // 4, a) / t
    p_log = F.log_softmax(teacher_boxes.detach().view(b, 4, c // 4, a) / t, dim=2)
    kl = (p_log.exp() * (p_log - F.log_softmax(s, dim=2))).sum(dim=2).mean(dim=1)
    return _weighted_mean(kl, weights) * t * t


def distillation_terms(student_preds: Any, teacher_preds: Any, config: KDConfig
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(class term, box term) between two heads with the same classes, ``reg_max`` and
    anchors (same strides and input size). Raises ``ValueError`` when they differ."""
    s, t = head_outputs(student_preds), head_outputs(teacher_preds)
    for key in ("scores", "boxes"):
        if s[key].shape != t[key].shape:
            raise ValueError(f"teacher and student heads differ: {key} {tuple(t[key].shape)} "
                             f"vs {tuple(s[key].shape)} (classes, reg_max or strides)")
    weights = anchor_weights(s["scores"], t["scores"])
    return (class_kd(s["scores"], t["scores"], weights, config.temperature),
            box_kd(s["boxes"], t["boxes"], weights, config.temperature))


class DistillationLoss:
    """A v8 criterion with the teacher's soft targets added: call it like Ultralytics'
    ``v8DetectionLoss`` (``criterion(preds, batch) -> (loss, items)``); it runs the teacher
    on ``batch["img"]`` itself. ``items`` gets two more entries, ``kd_cls`` and ``kd_box``.
    """

    def __init__(self, detection_loss: Any, teacher: torch.nn.Module, config: KDConfig):
        self.detection_loss = detection_loss
        self.teacher = teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.config = config
        self.loss_names = (*getattr(detection_loss, "loss_names", ()), "kd_cls", "kd_box")

    def __call__(self, preds: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        loss, items = self.detection_loss(preds, batch)
        student = head_outputs(preds)
        with torch.no_grad():
            teacher = self.teacher(batch["img"].to(student["scores"].dtype))
        cls_term, box_term = distillation_terms(student, teacher, self.config)
        batch_size = student["scores"].shape[0]
        weighted = torch.stack([cls_term, self.config.dfl_weight * box_term])
        weighted = weighted * self.config.kd_weight * batch_size
        extra = torch.stack([cls_term.detach(), box_term.detach()])
        if isinstance(items, dict):
            items = {**items, "kd_cls": extra[0], "kd_box": extra[1]}
        else:
            items = torch.cat([items.reshape(-1), extra])
        # the trainer sums the vector: detection terms (box, cls, dfl) then the two KD terms
        return torch.cat([loss.reshape(-1), weighted]), items


def make_criterion(base_criterion: Any, teacher: torch.nn.Module, kd: Any) -> DistillationLoss:
    """The criterion factory of :mod:`edgebench.plugins.compression.finetune_trainer`'s hook
    (``KDSettings.criterion = "edgebench.plugins.compression.kd_loss:make_criterion"``):
    ``kd.weight``,
    ``kd.temperature`` and ``dfl_weight`` from ``kd.extra``."""
    extra = dict(kd.extra)
    config = KDConfig(kd_weight=float(kd.weight), temperature=float(kd.temperature),
                      dfl_weight=float(extra.get("dfl_weight", 1.0)))
    return DistillationLoss(base_criterion, teacher, config)
