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

The torch work runs in a subprocess (:mod:`edgebench.plugins.compression.prune_worker`) so
torch never loads into the harness; the results are cached by the input's content and the options.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError, UserError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, pt_artifact

EXPORT_HINT = "pip install 'edgebench[export]'"
PRUNE_VERSION = 1
"""Bump when the worker's output for the same options changes (invalidates the cache)."""
C2F_SPLIT = "edgebench.plugins.compression.c2f_split:C2fSplit"
"""The block pruned models pickle instead of Ultralytics' C2f (allowed when loading them)."""


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


class StructuredPrune(Compressor):
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
    torch_safe_globals: ClassVar[tuple[str, ...]] = (C2F_SPLIT,)

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


class Sparsify(Compressor):
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
    argv = [sys.executable, "-m", "edgebench.plugins.compression.prune_worker", mode,
            "--weights", str(model.path), "--out", str(out)]
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
    from .prune_worker import dist_version

    return dist_version(dist)


def _ratio(after: Any, before: Any) -> str:
    return f" ({after / before:.0%})" if after and before else ""


def prune_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Report lines of a pruned model from its ``artifact.json`` (channels removed,
    parameters and GFLOPs before/after, fine-tuning and its Ultralytics val mAP)."""
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
    """Report lines of a sparsified model from its ``artifact.json`` (share of zero weights)."""
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
