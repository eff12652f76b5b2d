"""The torch side of ``prune`` and ``sparsify``, run as
``python -m edgebench.plugins.compression.prune_worker {prune,sparsify} --weights W --out DIR``
by :mod:`edgebench.plugins.compression.prune` so torch never loads into the harness.

Writes ``DIR/model.pt`` (an Ultralytics checkpoint, half weights, as Ultralytics saves) and
``DIR/artifact.json`` (the facts: parameters and GFLOPs before and after, sparsity,
fine-tuning mAP; see :func:`edgebench.plugins.compression.prune.prune_notes`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def dist_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"absent"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def _load(weights: Path) -> tuple[Any, dict[str, Any]]:
    """The model (fp32, eval) and the raw checkpoint dict of an Ultralytics ``.pt``."""
    import torch
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(weights))  # type: ignore[no-untyped-call]
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    return model.float().eval(), ckpt


def _save(model: Any, ckpt: dict[str, Any], path: Path, note: dict[str, Any]) -> None:
    """Save ``model`` as an Ultralytics checkpoint (half weights, as Ultralytics does)."""
    import copy
    from datetime import UTC, datetime

    import torch

    net = copy.deepcopy(model).half().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if hasattr(net, "criterion"):
        net.criterion = None
    torch.save({"model": net, "ema": None, "optimizer": None, "epoch": -1,
                "train_args": ckpt.get("train_args") or {}, "version": ckpt.get("version"),
                "date": datetime.now(UTC).isoformat(), "edgebench": note}, path)


def count_params(model: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters()))


def gflops(model: Any, imgsz: int) -> float:
    """GFLOPs of ``model`` at ``imgsz`` x ``imgsz``, as Ultralytics counts them (``get_flops``)."""
    from ultralytics.utils.torch_utils import get_flops

    return round(float(get_flops(model, imgsz)), 3)  # type: ignore[no-untyped-call]


def prune_channels(model: Any, ratio: float, imgsz: int, round_to: int = 1) -> Any:
    """Prune ``model`` in place: C2f blocks split, then ``ratio`` of the channels of every
    layer removed by L2 magnitude, the head's output convolutions and DFL kept whole."""
    import torch
    import torch_pruning as tp
    from ultralytics.nn.modules.head import Detect

    from .c2f_split import replace_c2f

    replace_c2f(model)
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    if not heads:
        raise ValueError("the model has no Ultralytics Detect head; prune handles YOLO "
                         "detection models only")
    ignored: list[Any] = []
    for head in heads:
        ignored.append(head.dfl)
        for branch in (*head.cv2, *head.cv3):
            ignored.append(branch[-1])
    for p in model.parameters():
        p.requires_grad_(True)
    example = torch.zeros(1, 3, imgsz, imgsz)
    model.eval()
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio, ignored_layers=ignored,
        round_to=round_to if round_to > 1 else None)
    pruner.step()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def sparsify_weights(model: Any, amount: float) -> dict[str, Any]:
    """Zero the ``amount`` smallest-magnitude conv weights of ``model`` in place (global L1,
    the fixed DFL convolution excluded); returns the sparsity facts."""
    import torch
    from torch.nn.utils import prune

    dfl = {id(m.conv) for m in model.modules() if type(m).__name__ == "DFL"}
    convs = [m for m in model.modules()
             if isinstance(m, torch.nn.Conv2d) and id(m) not in dfl]
    prune.global_unstructured([(m, "weight") for m in convs],
                              pruning_method=prune.L1Unstructured, amount=amount)
    for m in convs:
        prune.remove(m, "weight")  # type: ignore[no-untyped-call]
    zeros = sum(int((m.weight == 0).sum()) for m in convs)
    total = sum(m.weight.numel() for m in convs)
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return {"sparsity": round(zeros / total, 4), "layers": len(convs),
            "overall_sparsity": round(all_zeros / count_params(model), 4)}


def ultralytics_val(weights: Path, data: Path, imgsz: int, batch: int, project: Path
                    ) -> float:
    """mAP50-95 of Ultralytics' validation of ``weights`` on ``data``'s val split."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    metrics = YOLO(str(weights), task="detect").val(
        data=str(data), imgsz=imgsz, batch=batch, device="cpu", plots=False, workers=0,
        project=str(project), name="val", exist_ok=True, verbose=False)
    return round(float(metrics.box.map), 4)


def with_val_split(data: Path, folder: Path) -> Path:
    """``data`` itself when it has a ``val`` split, else a copy whose ``val`` is its
    ``train`` (Ultralytics requires one; it is used for reported figures only)."""
    import yaml

    content = yaml.safe_load(data.read_text())
    if "val" in content:
        return data
    root = Path(str(content.get("path") or data.parent))
    content["path"] = str(root if root.is_absolute() else (data.parent / root).resolve())
    content["val"] = content["train"]
    derived = folder / "data.yaml"
    derived.write_text(yaml.safe_dump(content))
    return derived


def _worker_prune(args: argparse.Namespace) -> dict[str, Any]:
    import shutil
    import tempfile

    from .finetune_trainer import finetune

    model, ckpt = _load(args.weights)
    before = {"params_before": count_params(model),
              "gflops_before": gflops(model, args.imgsz)}
    prune_channels(model, args.ratio, args.imgsz, args.round_to)
    facts: dict[str, Any] = {
        **before, "params_after": count_params(model),
        "gflops_after": gflops(model, args.imgsz), "ratio": args.ratio,
        "round_to": args.round_to, "imgsz": args.imgsz, "epochs": args.epochs,
        "tool": f"torch-pruning {dist_version('torch-pruning')}"}
    final = args.out / "model.pt"
    print(f"pruned {args.ratio:.0%} of the channels: params {facts['params_before']:,} -> "
          f"{facts['params_after']:,}, GFLOPs {facts['gflops_before']} -> "
          f"{facts['gflops_after']}", file=sys.stderr, flush=True)
    if args.epochs == 0:
        _save(model, ckpt, final, facts)
        return facts
    with tempfile.TemporaryDirectory(prefix="edgebench-prune-") as tmp:
        work = Path(tmp)
        pruned = work / "pruned.pt"
        _save(model, ckpt, pruned, facts)
        data = with_val_split(args.data, work)
        facts["map50_95_before_finetune"] = ultralytics_val(
            pruned, data, args.imgsz, args.batch, work)
        result = finetune(pruned, work / "tuned.pt", data, epochs=args.epochs,
                          imgsz=args.imgsz, batch=args.batch, progress=not args.quiet,
                          workdir=work)
        facts["map50_95_after_finetune"] = result.map50_95
        facts["finetune_seconds"] = result.seconds
        tuned, _ = _load(work / "tuned.pt")
        _save(tuned, ckpt, final, facts)
        shutil.rmtree(work / "finetune", ignore_errors=True)
    return facts


def _worker_sparsify(args: argparse.Namespace) -> dict[str, Any]:
    model, ckpt = _load(args.weights)
    facts = {**sparsify_weights(model, args.amount), "amount": args.amount,
             "params": count_params(model)}
    _save(model, ckpt, args.out / "model.pt", facts)
    print(f"sparsified: {facts['sparsity']:.1%} of the conv weights are zero",
          file=sys.stderr, flush=True)
    return facts


def main(argv: list[str] | None = None) -> int:
    """The worker's command line (see the module docstring); 0 when ``model.pt`` was written."""
    import os

    from edgebench.ultralytics_offline import ultralytics_offline_env

    parser = argparse.ArgumentParser(description="Pruning worker (torch).")
    parser.add_argument("mode", choices=("prune", "sparsify"))
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "prune" and args.epochs > 0 and args.data is None:
        parser.error("--data is required to fine-tune (--epochs > 0)")
    os.environ.update(ultralytics_offline_env())
    start = time.perf_counter()
    facts = _worker_prune(args) if args.mode == "prune" else _worker_sparsify(args)
    from ultralytics.nn.tasks import load_checkpoint

    # it must load as Ultralytics loads it
    final, _ = load_checkpoint(str(args.out / "model.pt"))  # type: ignore[no-untyped-call]
    facts["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "artifact.json").write_text(json.dumps({
        "file": "model.pt", "format": "pt", "imgsz": args.imgsz,
        "gflops": gflops(final, args.imgsz), "converter": _converter(args.mode), **facts}))
    return 0


def _converter(mode: str) -> str:
    tools = ["torch", "ultralytics"] + (["torch-pruning"] if mode == "prune" else [])
    how = "channel pruning" if mode == "prune" else "global L1 unstructured pruning"
    return f"edgebench {mode} ({how}): " + ", ".join(f"{t} {dist_version(t)}" for t in tools)


if __name__ == "__main__":
    sys.exit(main())
