#!/usr/bin/env python
"""Train the default edgebench detector on the synthetic shapes dataset.

Trains a YOLOv8 model *from scratch* (architecture yaml, no pretrained
weights) on :func:`edgebench.shapes.default_shapes_dataset`, fully offline,
then writes into ``--out``:

* ``shapes-<arch>.pt``   -- Ultralytics ``best.pt`` (optimizer stripped)
* ``shapes-<arch>.onnx`` -- Ultralytics ONNX export (static batch 1, simplified)
* ``shapes-<arch>.json`` -- provenance + val metrics for both artifacts

Example::

    python scripts/train_default_model.py --epochs 20 --imgsz 320
    python scripts/train_default_model.py --model-cfg yolov8s.yaml   # teacher
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_edgebench_module(name: str) -> ModuleType:
    """Import ``edgebench.<name>``, falling back to the package in ``harness/`` if edgebench
    is not installed (its modules import each other, so the package is loaded, not a file)."""
    try:
        return importlib.import_module(f"edgebench.{name}")
    except ImportError:
        harness = REPO_ROOT / "harness"
        spec = importlib.util.spec_from_file_location(
            "edgebench", harness / "__init__.py", submodule_search_locations=[str(harness)])
        if spec is None or spec.loader is None:
            raise
        package = importlib.util.module_from_spec(spec)
        sys.modules["edgebench"] = package
        spec.loader.exec_module(package)
        return importlib.import_module(f"edgebench.{name}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line flags."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--imgsz", type=int, default=320, help="train/val/export image size")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument(
        "--model-cfg",
        default="yolov8n.yaml",
        help="Ultralytics architecture yaml (e.g. yolov8s.yaml)",
    )
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "harness" / "assets", help="output directory"
    )
    p.add_argument("--batch", type=int, default=16, help="training batch size")
    p.add_argument("--workers", type=int, default=1, help="dataloader workers")
    p.add_argument(
        "--data-seed", type=int, default=None, help="dataset seed (default: shapes.DEFAULT_SEED)"
    )
    p.add_argument(
        "--n-train", type=int, default=None, help="train images (default: shapes.DEFAULT_N_TRAIN)"
    )
    p.add_argument(
        "--n-val", type=int, default=None, help="val images (default: shapes.DEFAULT_N_VAL)"
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="edgebench dataset cache dir override"
    )
    return p.parse_args(argv)


def _val_metrics(model: Any, data: str, imgsz: int, project: Path, name: str) -> dict[str, float]:
    """Run Ultralytics val() on the val split and return mAP50-95 / mAP50."""
    metrics = model.val(
        data=data,
        imgsz=imgsz,
        batch=1 if str(getattr(model, "ckpt_path", "")).endswith(".onnx") else 16,
        split="val",
        device="cpu",
        plots=False,
        workers=0,
        project=str(project),
        name=name,
        exist_ok=True,
        verbose=False,
    )
    return {"mAP50-95": float(metrics.box.map), "mAP50": float(metrics.box.map50)}


def main(argv: list[str] | None = None) -> int:
    """Train, export, validate and write provenance JSON."""
    args = parse_args(argv)
    command = (
        shlex.join([sys.executable, *sys.argv])
        if argv is None
        else shlex.join(["train_default_model.py", *argv])
    )

    offline = _load_edgebench_module("ultralytics_offline")
    shapes = _load_edgebench_module("shapes")
    sha256_file = _load_edgebench_module("cache").sha256_file

    # Must happen before `import ultralytics`: it reads these at import time.
    os.environ.update(offline.ultralytics_offline_env())

    data_seed = shapes.DEFAULT_SEED if args.data_seed is None else args.data_seed
    n_train = shapes.DEFAULT_N_TRAIN if args.n_train is None else args.n_train
    n_val = shapes.DEFAULT_N_VAL if args.n_val is None else args.n_val
    t0 = time.perf_counter()
    data_yaml = shapes.default_shapes_dataset(
        args.cache_dir, seed=data_seed, n_train=n_train, n_val=n_val, imgsz=args.imgsz
    )
    print(f"dataset: {data_yaml} ({time.perf_counter() - t0:.1f}s)", flush=True)

    import torch
    import ultralytics
    from ultralytics import YOLO  # type: ignore[attr-defined]

    arch = Path(args.model_cfg).stem  # e.g. "yolov8n"
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    pt_out = out_dir / f"shapes-{arch}.pt"
    onnx_out = out_dir / f"shapes-{arch}.onnx"
    json_out = out_dir / f"shapes-{arch}.json"

    with tempfile.TemporaryDirectory(prefix="edgebench-train-") as tmp:
        project = Path(tmp)
        model = YOLO(args.model_cfg)
        t_train = time.perf_counter()
        model.train(
            data=str(data_yaml),
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            device="cpu",
            workers=args.workers,
            pretrained=False,
            amp=False,
            plots=False,
            deterministic=True,
            seed=args.seed,
            cache="ram",
            close_mosaic=min(5, max(0, args.epochs // 4)),
            project=str(project),
            name="train",
            exist_ok=True,
            verbose=True,
        )
        train_seconds = time.perf_counter() - t_train
        best = Path(model.trainer.best)  # type: ignore[union-attr,attr-defined]
        if not best.is_file():
            raise FileNotFoundError(f"training produced no best.pt at {best}")
        shutil.copyfile(best, pt_out)
        print(f"copied {best} -> {pt_out}", flush=True)

        pt_model = YOLO(str(pt_out))
        exported = Path(
            pt_model.export(
                format="onnx", imgsz=args.imgsz, simplify=True, dynamic=False, batch=1, device="cpu"
            )
        )
        if exported.resolve() != onnx_out:
            shutil.move(str(exported), onnx_out)
        print(f"exported {onnx_out}", flush=True)

        pt_metrics = _val_metrics(YOLO(str(pt_out)), str(data_yaml), args.imgsz, project, "val_pt")
        onnx_metrics = _val_metrics(
            YOLO(str(onnx_out), task="detect"), str(data_yaml), args.imgsz, project, "val_onnx"
        )

    record = {
        "model_cfg": args.model_cfg,
        "files": {
            "pt": {
                "name": pt_out.name,
                "sha256": sha256_file(pt_out),
                "bytes": pt_out.stat().st_size,
            },
            "onnx": {
                "name": onnx_out.name,
                "sha256": sha256_file(onnx_out),
                "bytes": onnx_out.stat().st_size,
            },
        },
        "class_names": list(shapes.CLASS_NAMES),
        "imgsz": args.imgsz,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "dataset": {
            "generator": "edgebench.shapes",
            "generator_version": shapes.GENERATOR_VERSION,
            "seed": data_seed,
            "n_train": n_train,
            "n_val": n_val,
            "imgsz": args.imgsz,
        },
        "command": command,
        "versions": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "val": {"pt": pt_metrics, "onnx": onnx_metrics},
        "train_wall_seconds": round(train_seconds, 1),
    }
    json_out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
