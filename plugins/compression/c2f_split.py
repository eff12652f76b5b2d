"""Ultralytics' C2f block rewritten without its channel split, so torch-pruning can prune it.

C2f computes ``cv1(x).chunk(2, 1)``: one 1x1 conv whose output channels are cut in two
halves. torch-pruning tracks channels through ``chunk``/``split`` badly (pruning ``cv1``
fails with an index error). :class:`C2fSplit` computes the two halves with two 1x1 convs,
``cv0`` (the first half of ``cv1``'s filters, with their BatchNorm statistics) and ``cv1``
(the second half); ``m`` and ``cv2`` are C2f's own modules, so the block computes exactly
the same function (up to float rounding: the same dot products, in the same order).

Imported by the pruning worker and when a checkpoint holding the block is unpickled: the
class lives here, so ``edgebench`` must be installed where such a ``.pt`` is loaded.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

_ULTRALYTICS_ATTRS = ("f", "i", "type", "np")
"""Attributes Ultralytics' ``DetectionModel`` sets on each layer and routes the forward by."""


class C2fSplit(nn.Module):  # type: ignore[misc]  # torch is Any where it is not installed
    """C2f with ``cv1`` as two convs (``cv0``, ``cv1``) instead of one conv and ``chunk``."""

    def __init__(self, cv0: nn.Module, cv1: nn.Module, m: nn.ModuleList, cv2: nn.Module
                 ) -> None:
        super().__init__()
        self.cv0 = cv0
        self.cv1 = cv1
        self.m = m
        self.cv2 = cv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))  # type: ignore[no-any-return]

    @classmethod
    def from_c2f(cls, block: Any) -> C2fSplit:
        """The equivalent block of a C2f (its weights are copied, ``block`` is untouched)."""
        half = int(block.c)
        first = _conv_slice(block.cv1, 0, half)
        second = _conv_slice(block.cv1, half, 2 * half)
        new = cls(first, second, copy.deepcopy(block.m), copy.deepcopy(block.cv2))
        for name in _ULTRALYTICS_ATTRS:
            if hasattr(block, name):
                setattr(new, name, getattr(block, name))
        new.train(block.training)
        return new


def _conv_slice(conv: Any, start: int, stop: int) -> Any:
    """A copy of an Ultralytics ``Conv`` (conv + BatchNorm + activation, or a fused conv
    with a bias) keeping output channels ``start:stop``."""
    out = copy.deepcopy(conv)
    keep = slice(start, stop)
    inner = out.conv
    if inner.groups != 1:
        raise ValueError("cannot split a grouped convolution's output channels")
    inner.weight = nn.Parameter(inner.weight.detach()[keep].clone(),
                                requires_grad=inner.weight.requires_grad)
    if inner.bias is not None:
        inner.bias = nn.Parameter(inner.bias.detach()[keep].clone(),
                                  requires_grad=inner.bias.requires_grad)
    inner.out_channels = stop - start
    bn = getattr(out, "bn", None)
    if isinstance(bn, nn.BatchNorm2d):
        bn.num_features = stop - start
        for name in ("weight", "bias"):
            param = getattr(bn, name)
            if param is not None:
                setattr(bn, name, nn.Parameter(param.detach()[keep].clone(),
                                               requires_grad=param.requires_grad))
        for name in ("running_mean", "running_var"):
            buf = getattr(bn, name)
            if buf is not None:
                setattr(bn, name, buf[keep].clone())
    return out


def replace_c2f(model: nn.Module) -> int:
    """Replace every C2f block in ``model`` (in place) by its :class:`C2fSplit`; returns
    how many were replaced. Subclasses of C2f (C3k2 and the like) are left alone: their
    blocks differ, and the pruner then treats them as it can."""
    from ultralytics.nn.modules.block import C2f

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is C2f:
                setattr(parent, name, C2fSplit.from_c2f(child))
                count += 1
    return count


def count_c2f(model: nn.Module) -> dict[str, Any]:
    """How many C2f and C2fSplit blocks ``model`` has (for checks and reports)."""
    from ultralytics.nn.modules.block import C2f

    return {"C2f": sum(type(m) is C2f for m in model.modules()),
            "C2fSplit": sum(isinstance(m, C2fSplit) for m in model.modules())}
