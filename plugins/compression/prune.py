"""Pruning steps on the PyTorch model: ``prune`` (structured) and ``sparsify`` (unstructured).

``prune:ratio`` removes whole channels with torch-pruning (L2 magnitude of each channel
group, the same fraction in every layer, dependent layers pruned together), so the network
really gets smaller: fewer parameters, fewer FLOPs, faster on every runtime. Ultralytics'
C2f blocks are first rewritten as :class:`edgebench.plugins.compression.c2f_split.C2fSplit`
(the same function without the ``chunk`` torch-pruning cannot follow); the detection head's output
convolutions and the DFL keep their channels, so the outputs keep their meaning. Then the
model is fine-tuned on the train split for ``epochs`` (0: none, the pruned model as is).

``sparsify:amount`` zeroes the smallest weights (global L1 over every convolution but the
fixed DFL one) with ``torch.nn.utils.prune``. The tensors keep their shapes, so dense
runtimes do the same work: it shows what sparsity costs in accuracy, not a speed-up.

The torch work runs in a subprocess (``python -m edgebench.plugins.compression.prune``) so
torch never loads into the harness; the results are cached by the input's content and the options.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.cache import sha256_file
from edgebench.contracts import CompressionContext
from edgebench.errors import CaseError, UserError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export
from edgebench.records import Artifact

EXPORT_HINT = "pip install 'edgebench[export]'"
PRUNE_VERSION = 1
"""Bump when the worker's output for the same options changes (invalidates the cache)."""


def _missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed: " \
               f"{EXPORT_HINT}"
    return None


def _check_fraction(step: str, key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise UserError(f"{step}:{key}={value:g} is out of range; give a fraction between 0 "
                        f"and 1 (exclusive), e.g. {step}:{key}=0.3.")


def _imgsz(options: Mapping[str, Any], context: CompressionContext) -> int:
    return int(options.get("imgsz") or context.imgsz)


class StructuredPrune:
    """Channel pruning with torch-pruning, then fine-tuning on the train split."""

    name: ClassVar[str] = "prune"
    target: ClassVar[str] = "pt"
    summary: ClassVar[str] = ("structured channel pruning (torch-pruning, L2 magnitude, ratio "
                              "of channels per layer), then fine-tuning on the train split")
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "ratio": 0.3, "epochs": 10, "imgsz": 0, "batch": 16, "round_to": 1}
    """``ratio``: fraction of each layer's channels removed; ``epochs``: fine-tuning epochs
    (0: none); ``imgsz``: training size (0: the run's); ``batch``; ``round_to``: keep channel
    counts multiples of this (1: exactly the ratio)."""
    primary_option: ClassVar[str | None] = "ratio"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return _missing("torch", "ultralytics", "torch_pruning")

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        _check_fraction("prune", "ratio", float(options["ratio"]))
        if options["epochs"] < 0:
            raise UserError(f"prune:epochs={options['epochs']} is negative; give 0 (no "
                            "fine-tuning) or more.")
        imgsz = _imgsz(options, context)
        if options["imgsz"] < 0 or imgsz % 32:
            raise UserError(f"prune:imgsz={imgsz} is not a positive multiple of 32 (the "
                            "model's largest stride); e.g. prune:imgsz=320.")
        if options["batch"] < 1:
            raise UserError(f"prune:batch={options['batch']} must be at least 1.")
        if options["round_to"] < 1:
            raise UserError(f"prune:round_to={options['round_to']} must be at least 1.")
        if options["epochs"] > 0:
            context.train_images(1)  # raises UserError when there is nothing to train on

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        if model.format != "pt":
            raise CaseError(f"prune works on a PyTorch .pt, got {model.format}")
        sparsified = [s for s in model.pipeline if s.split(":")[0] == "sparsify"]
        if sparsified and options["epochs"] > 0:
            raise CaseError(f"prune with fine-tuning after {sparsified[0]} refills the zeroed "
                            "weights; put sparsify after prune, or use prune:epochs=0")
        imgsz = _imgsz(options, context)
        data = context.dataset_yaml() if options["epochs"] > 0 else None
        key: dict[str, object] = {
            "v": PRUNE_VERSION, "ratio": options["ratio"], "epochs": options["epochs"],
            "imgsz": imgsz, "batch": options["batch"], "round_to": options["round_to"],
            "data": _data_identity(data), "torch_pruning": _version("torch-pruning")}

        def produce(out: Path) -> None:
            argv = [
                *_worker_argv("prune", model, out, context), "--ratio", str(options["ratio"]),
                "--epochs", str(options["epochs"]),
                "--imgsz", str(imgsz), "--batch", str(options["batch"]),
                "--round-to", str(options["round_to"])]
            if data is not None:
                argv += ["--data", str(data)]
            _run(argv, f"pruning {model.path.name}", context)

        path, meta = cached_export(model, "prune", key, produce)
        return pt_artifact(path, model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return prune_notes(artifact_meta(artifact.path))


class Sparsify:
    """Unstructured global L1 magnitude pruning (zeros in dense tensors)."""

    name: ClassVar[str] = "sparsify"
    target: ClassVar[str] = "pt"
    summary: ClassVar[str] = ("unstructured global L1 pruning (torch.nn.utils.prune): zeroes "
                              "the smallest conv weights; no speed-up on dense runtimes")
    option_defaults: ClassVar[Mapping[str, Any]] = {"amount": 0.5}
    """``amount``: fraction of the convolution weights set to zero."""
    primary_option: ClassVar[str | None] = "amount"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return _missing("torch", "ultralytics")

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        _check_fraction("sparsify", "amount", float(options["amount"]))

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        if model.format != "pt":
            raise CaseError(f"sparsify works on a PyTorch .pt, got {model.format}")
        imgsz = context.imgsz
        key: dict[str, object] = {"v": PRUNE_VERSION, "amount": options["amount"],
                                  "imgsz": imgsz}

        def produce(out: Path) -> None:
            argv = [
                *_worker_argv("sparsify", model, out, context),
                "--amount", str(options["amount"]), "--imgsz", str(imgsz)]
            _run(argv, f"sparsifying {model.path.name}", context)

        path, meta = cached_export(model, "sparsify", key, produce)
        return pt_artifact(path, model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return sparsify_notes(artifact_meta(artifact.path))


# -- harness side: running the worker, describing its output -------------------------------


def _worker_argv(mode: str, model: Artifact, out: Path, context: CompressionContext
                 ) -> list[str]:
    argv = [sys.executable, "-m", "edgebench.plugins.compression.prune", mode,
            "--weights", model.path,
            "--out", str(out)]
    return argv if context.progress else [*argv, "--quiet"]


def _run(argv: list[str], what: str, context: CompressionContext) -> None:
    from .finetune_trainer import run_worker

    run_worker(argv, what, progress=context.progress, timeout_s=6 * 3600)


def _data_identity(data: Path | None) -> str | None:
    """The training data's identity for the cache key: its path and its yaml's content."""
    if data is None:
        return None
    return f"{data.resolve()}:{hashlib.sha256(data.read_bytes()).hexdigest()[:16]}"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def pt_artifact(path: Path, source: Artifact, meta: Mapping[str, Any]) -> Artifact:
    """A ``.pt`` made from ``source`` by a MODEL step."""
    return Artifact(path=path, format="pt", sha256=sha256_file(path),
                    size_bytes=path.stat().st_size, gflops=meta.get("gflops"),
                    source_sha256=source.sha256, pipeline=source.pipeline,
                    converter=meta.get("converter"))


def artifact_meta(path: Path) -> dict[str, Any]:
    """The ``artifact.json`` next to a cached step output (empty when there is none)."""
    meta = path.parent / "artifact.json"
    try:
        data: dict[str, Any] = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _ratio(after: Any, before: Any) -> str:
    return f" ({after / before:.0%})" if after and before else ""


def prune_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    if not meta:
        return ()
    notes = [f"pruned {meta.get('ratio', 0):.0%} of each layer's channels "
             f"({meta.get('tool', 'torch-pruning')})"]
    if meta.get("params_before"):
        notes.append(f"params {meta['params_before']:,} -> {meta['params_after']:,}"
                     f"{_ratio(meta['params_after'], meta['params_before'])}")
    if meta.get("gflops_before"):
        notes.append(f"GFLOPs at {meta.get('imgsz')}: {meta['gflops_before']:g} -> "
                     f"{meta['gflops_after']:g}"
                     f"{_ratio(meta['gflops_after'], meta['gflops_before'])}")
    epochs = meta.get("epochs", 0)
    if epochs:
        notes.append(f"fine-tuned {epochs} epochs on the train split "
                     f"({meta.get('finetune_seconds', 0):.0f} s)")
        before, after = meta.get("map50_95_before_finetune"), meta.get("map50_95_after_finetune")
        if before is not None and after is not None:
            notes.append(f"Ultralytics val mAP50-95 before fine-tuning {before:.3f}, after "
                         f"{after:.3f}")
    else:
        notes.append("not fine-tuned (epochs=0)")
    return tuple(notes)


def sparsify_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    if not meta:
        return ()
    return (f"{meta.get('sparsity', 0):.1%} of the conv weights are zero "
            f"({meta.get('overall_sparsity', 0):.1%} of all parameters; global L1, "
            f"{meta.get('layers', 0)} layers)",
            "tensor shapes unchanged: dense runtimes do the same work",
            "not fine-tuned")


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(StructuredPrune)
    register(Sparsify)


# -- the worker (torch) ----------------------------------------------------------------------


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
    return int(sum(p.numel() for p in model.parameters()))


def gflops(model: Any, imgsz: int) -> float:
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
        "tool": f"torch-pruning {_version('torch-pruning')}"}
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
    return f"edgebench {mode} ({how}): " + ", ".join(f"{t} {_version(t)}" for t in tools)


if __name__ == "__main__":
    sys.exit(main())
