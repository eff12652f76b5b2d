"""C2f -> C2fSplit (two 1x1 convs instead of one conv and ``chunk``) on the embedded
YOLOv8n: the rewritten model computes what the original does, and torch-pruning, which
fails on the original, prunes the rewritten one."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from edgebench.config import ASSETS
from edgebench.ultralytics_offline import ultralytics_offline_env

pytestmark = [pytest.mark.slow, pytest.mark.export]

PT = ASSETS / "shapes-yolov8n.pt"


def _model() -> Any:
    os.environ.update(ultralytics_offline_env())
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(PT))
    return model.float().eval()


def test_the_rewritten_model_computes_what_the_original_does() -> None:
    import torch

    from edgebench.plugins.compression.c2f_split import C2fSplit, count_c2f, replace_c2f

    model = _model()
    assert count_c2f(model) == {"C2f": 8, "C2fSplit": 0}
    split = copy.deepcopy(model)
    assert replace_c2f(split) == 8
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        before, after = model(x)[0], split(x)[0]
        # training mode: BatchNorm uses the batch's statistics (and updates its running ones)
        before_train, after_train = model.train()(x), split.train()(x)
    model = split
    assert count_c2f(model) == {"C2f": 0, "C2fSplit": 8}
    assert float(before.abs().max()) > 100  # real outputs (boxes in pixels), not zeros
    assert float((before - after).abs().max()) <= 1e-5
    for key in ("boxes", "scores"):
        assert float((before_train[key] - after_train[key]).abs().max()) <= 1e-5
    block = next(m for m in model.modules() if isinstance(m, C2fSplit))
    assert block.cv0.conv.out_channels == block.cv1.conv.out_channels
    assert isinstance(block.f, int) and isinstance(block.i, int)  # Ultralytics' routing


def test_fused_blocks_split_too() -> None:
    """A fused model (conv with bias, no BatchNorm), as Ultralytics exports it."""
    import torch

    from edgebench.plugins.compression.c2f_split import replace_c2f

    model = _model().fuse(verbose=False)
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)[0]
        replace_c2f(model)
        after = model(x)[0]
    assert float((before - after).abs().max()) <= 1e-5


def test_torch_pruning_needs_the_rewrite(tmp_path: Path) -> None:
    """Pinned torch-pruning fails on C2f's chunk (IndexError); after the rewrite it
    prunes, the model runs, and it survives a save/load as an Ultralytics checkpoint."""
    import torch
    import torch_pruning as tp
    from ultralytics.nn.tasks import load_checkpoint

    from edgebench.plugins.compression.c2f_split import C2fSplit, replace_c2f

    def prune(model: Any) -> None:
        head = model.model[-1]
        ignored = [head.dfl, *(branch[-1] for branch in (*head.cv2, *head.cv3))]
        for p in model.parameters():
            p.requires_grad_(True)
        tp.pruner.MagnitudePruner(
            model, torch.zeros(1, 3, 64, 64), importance=tp.importance.MagnitudeImportance(),
            pruning_ratio=0.3, ignored_layers=ignored).step()

    with pytest.raises(IndexError):
        prune(_model())
    model = _model()
    replace_c2f(model)
    params = sum(p.numel() for p in model.parameters())
    prune(model)
    assert sum(p.numel() for p in model.parameters()) < 0.6 * params
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))[0]
    assert out.shape[1] == 4 + model.model[-1].nc  # the head's outputs keep their meaning
    torch.save({"model": model.half(), "train_args": {}}, tmp_path / "pruned.pt")
    loaded, _ = load_checkpoint(str(tmp_path / "pruned.pt"))
    assert any(isinstance(m, C2fSplit) for m in loaded.modules())
    with torch.no_grad():
        assert float((loaded(torch.zeros(1, 3, 64, 64))[0] - out).abs().max()) < 1e-2
