"""Fine-tuning an Ultralytics detector as it is, pruned architecture included.

``YOLO(path).train()`` rebuilds the network from the yaml stored in the checkpoint and
copies the weights whose shapes match, which silently turns a pruned model back into the
full one. :func:`finetune` instead hands the loaded ``nn.Module`` itself to Ultralytics'
``DetectionTrainer`` (which then skips building a model), trains offline, on the CPU, with
a fixed seed, and saves the weights of the last epoch (no "best" selection: the ``val``
split is where edgebench measures mAP, so it must not choose the weights).

Interface, shared with ``plugins/compression/distill.py`` and ``plugins/training.py``::

    from edgebench.plugins.compression.finetune_trainer import (
        KDSettings, finetune, finetune_in_subprocess)

    # In the harness process (torch never loads there): runs this module as
    # ``python -m edgebench.plugins.compression.finetune_trainer`` and returns its FinetuneResult.
    result = finetune_in_subprocess(weights_in, weights_out, data_yaml, epochs=10, imgsz=320,
                                    batch=16, teacher=None, kd=None, progress=True)

    # In a process that has torch (e.g. another worker): the same, in-process.
    result = finetune(weights_in, weights_out, data_yaml, epochs=10, imgsz=320, batch=16,
                      teacher=None, kd=None, progress=True)

* ``weights_in``: an Ultralytics ``.pt`` (any architecture, e.g. pruned by
  ``edgebench.plugins.compression.prune``); ``weights_out``: where the fine-tuned ``.pt`` goes (an
  Ultralytics checkpoint that ``YOLO(path)`` loads and the export path exports).
* ``data_yaml``: YOLO ``data.yaml`` with ``train`` (trained on) and ``val`` (validated on
  once, after the last epoch, for the reported figures only).
* ``epochs >= 1``, ``imgsz``, ``batch``; ``seed`` (default 0), ``workdir`` (scratch; a
  temporary directory by default).
* Distillation: ``teacher`` (a ``.pt``) and ``kd`` (:class:`KDSettings`).

  - ``kd.criterion`` is the hook: ``"package.module:factory"``, a function
    ``factory(base_criterion, teacher_model, kd) -> criterion`` that is called once in the
    training process after the trainer is set up. ``base_criterion`` is Ultralytics'
    detection loss of the student (``criterion(preds, batch) -> (loss, loss_items)``,
    ``loss`` already scaled by the batch size), ``teacher_model`` the teacher's
    ``DetectionModel`` (fp32, eval mode, frozen, on the student's device), ``kd`` the
    settings. The returned callable replaces the student's criterion for training (same
    call signature and return shape: keep ``loss_items`` as the base's so the progress
    columns stay box/cls/dfl). It is never saved in the checkpoint. A string rather than a
    callable so that it crosses the subprocess boundary.
  - ``kd.criterion=None`` with a teacher: Ultralytics' own feature distillation
    (``distill_model=teacher``, ``dis=kd.weight``).

  The saved checkpoint is the student alone in both cases.
* Returns :class:`FinetuneResult` (epochs, seconds, mAP50-95 / mAP50 of the final
  validation, the output path); ``finetune_in_subprocess`` raises
  :class:`edgebench.errors.CaseError` when training fails.

Progress: with ``progress=True`` Ultralytics' per-epoch progress bars and validation lines
go to the terminal (the subprocess writes to the parent's stderr); otherwise the output is
captured and only its last line appears in an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KDSettings:
    """How a teacher guides fine-tuning (see the module docstring for ``criterion``)."""

    weight: float = 1.0
    """Weight of the distillation term (Ultralytics' ``dis`` when ``criterion`` is None)."""
    temperature: float = 2.0
    """Softening temperature, for criteria that use one."""
    criterion: str | None = None
    """``"module:factory"`` building the training criterion; None: Ultralytics' own."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Further settings a criterion factory reads (JSON-serialisable values)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KDSettings:
        data = json.loads(text)
        data["extra"] = tuple(tuple(item) for item in data.get("extra") or ())
        return cls(**data)


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run did."""

    weights: str
    epochs: int
    seconds: float
    map50_95: float | None
    """mAP50-95 of Ultralytics' final validation on the data's ``val`` split."""
    map50: float | None


def finetune_in_subprocess(weights_in: Path, weights_out: Path, data_yaml: Path, *,
                           epochs: int, imgsz: int, batch: int = 16,
                           teacher: Path | None = None, kd: KDSettings | None = None,
                           progress: bool = True, seed: int = 0,
                           timeout_s: float = 6 * 3600) -> FinetuneResult:
    """:func:`finetune` in a child Python (torch stays out of this process)."""
    from edgebench.errors import CaseError

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")

    with tempfile.TemporaryDirectory(prefix="edgebench-finetune-") as tmp:
        result_file = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "edgebench.plugins.compression.finetune_trainer",
                "--weights-in", str(weights_in), "--weights-out", str(weights_out),
                "--data", str(data_yaml), "--epochs", str(epochs), "--imgsz", str(imgsz),
                "--batch", str(batch), "--seed", str(seed), "--result", str(result_file)]
        if teacher is not None:
            argv += ["--teacher", str(teacher)]
        if kd is not None:
            argv += ["--kd", kd.to_json()]
        if not progress:
            argv.append("--quiet")
        run_worker(argv, f"fine-tuning {weights_in.name}", progress=progress,
                   timeout_s=timeout_s)
        if not result_file.is_file():
            raise CaseError(f"fine-tuning {weights_in.name} wrote no result")
        return FinetuneResult(**json.loads(result_file.read_text()))


def run_worker(argv: list[str], what: str, *, progress: bool, timeout_s: float) -> None:
    """Run a torch worker under the host's memory and time limits
    (:func:`edgebench.limits.run_limited`); with ``progress`` its output streams to this
    process's stderr. Raises :class:`edgebench.errors.CaseError` with the last output line on
    failure, or the limit's sentence when it passed one."""
    from edgebench.errors import CaseError
    from edgebench.limits import run_limited

    done = run_limited(argv, what, time_s=timeout_s, stream=progress)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + "\n" + done.stdout).strip().splitlines()
                 if ln.strip()]
        tail = lines[-1].strip() if lines else "see the output above"
        raise CaseError(f"{what} failed (exit {done.returncode}): {tail}")


# -- inside the training process (torch) -------------------------------------------------


def finetune(weights_in: Path, weights_out: Path, data_yaml: Path, *, epochs: int,
             imgsz: int, batch: int = 16, teacher: Path | None = None,
             kd: KDSettings | None = None, progress: bool = True, seed: int = 0,
             workdir: Path | None = None) -> FinetuneResult:
    """Fine-tune the model in ``weights_in`` as it is and save it to ``weights_out``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    from edgebench.ultralytics_offline import ultralytics_offline_env

    os.environ.update(ultralytics_offline_env())
    import torch
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils import LOGGER

    if not progress:
        LOGGER.setLevel("WARNING")
    kd = kd or KDSettings()
    student, _ = load_checkpoint(str(weights_in))  # type: ignore[no-untyped-call]
    student = student.float().train()
    for name, param in student.named_parameters():  # the DFL's fixed projection stays frozen
        param.requires_grad_(".dfl" not in name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgebench-finetune-") as tmp:
        project = workdir or Path(tmp)
        overrides: dict[str, Any] = {
            "model": str(weights_in), "data": str(data_yaml), "epochs": epochs,
            "imgsz": imgsz, "batch": batch, "device": "cpu", "workers": 0, "seed": seed,
            "deterministic": True, "amp": False, "plots": False, "val": False,
            "pretrained": False, "cache": False, "exist_ok": True, "verbose": progress,
            "project": str(project), "name": "finetune", "patience": 0,
            "warmup_epochs": 1 if epochs >= 3 else 0, "close_mosaic": max(1, epochs // 2),
        }
        teacher_model = None
        if teacher is not None and kd.criterion is None:
            overrides.update(distill_model=str(teacher), dis=kd.weight)
        elif teacher is not None:
            teacher_model, _ = load_checkpoint(str(teacher))  # type: ignore[no-untyped-call]
            teacher_model = teacher_model.float().eval()
            for p in teacher_model.parameters():
                p.requires_grad_(False)
        trainer = _make_trainer(overrides)
        trainer.model = student  # a module: setup_model() keeps it instead of the yaml's
        if teacher_model is not None:
            factory = _import_factory(str(kd.criterion))
            trainer.add_callback("on_pretrain_routine_end",
                                 lambda tr: _install_criterion(tr, factory, teacher_model, kd))
        torch.manual_seed(seed)
        trainer.train()
        last = Path(trainer.last)
        metrics = dict(trainer.metrics or {})
        _save_student(last, weights_out)
    return FinetuneResult(
        weights=str(weights_out), epochs=epochs, seconds=round(time.perf_counter() - start, 1),
        map50_95=_metric(metrics, "metrics/mAP50-95(B)"),
        map50=_metric(metrics, "metrics/mAP50(B)"))


def _make_trainer(overrides: dict[str, Any]) -> Any:
    from ultralytics.models.yolo.detect import DetectionTrainer

    return DetectionTrainer(overrides=overrides)


def _import_factory(spec: str) -> Any:
    import pkgutil

    if ":" not in spec:
        raise ValueError(f"kd.criterion must be 'module:function', got {spec!r}")
    return pkgutil.resolve_name(spec)


def _install_criterion(trainer: Any, factory: Any, teacher: Any, kd: KDSettings) -> None:
    from ultralytics.utils.torch_utils import unwrap_model

    student: Any = unwrap_model(trainer.model)
    teacher.to(next(student.parameters()).device)
    student.criterion = factory(student.init_criterion(), teacher, kd)


def _save_student(checkpoint: Path, out: Path) -> None:
    """The trainer's final checkpoint with the student alone (no distillation wrapper, no
    teacher, no criterion), written to ``out``."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        model = ckpt.get(key)
        if model is not None and hasattr(model, "student_model"):
            ckpt[key] = model.student_model
        if ckpt.get(key) is not None and hasattr(ckpt[key], "criterion"):
            ckpt[key].criterion = None
    if isinstance(ckpt.get("train_args"), dict):
        ckpt["train_args"]["distill_model"] = None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    torch.save(ckpt, tmp)
    shutil.move(tmp, out)


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return round(float(value), 4) if value is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune an Ultralytics .pt as it is.")
    parser.add_argument("--weights-in", type=Path, required=True)
    parser.add_argument("--weights-out", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", type=Path)
    parser.add_argument("--kd", type=KDSettings.from_json, help="KDSettings as JSON")
    parser.add_argument("--result", type=Path, help="write the FinetuneResult here (JSON)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    result = finetune(args.weights_in, args.weights_out, args.data, epochs=args.epochs,
                      imgsz=args.imgsz, batch=args.batch, teacher=args.teacher, kd=args.kd,
                      progress=not args.quiet, seed=args.seed)
    if args.result is not None:
        args.result.write_text(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
