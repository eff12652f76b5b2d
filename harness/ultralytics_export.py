"""Export worker: ``python -m edgebench.ultralytics_export --weights W --format F --out DIR``.

Runs in its own process so that Ultralytics' offline settings apply before it is imported,
and so that torch never loads into the harness. Writes the exported file and
``artifact.json`` (``{"file": name, "format": F, "imgsz": N}``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from .ultralytics_offline import ultralytics_offline_env


def export(weights: Path, fmt: str, out: Path, imgsz: int | None) -> Path:
    os.environ.update(ultralytics_offline_env())
    from ultralytics import YOLO  # type: ignore[attr-defined]  # heavy: torch

    model = YOLO(str(weights), task="detect")
    if imgsz is None:
        train_args = getattr(model, "ckpt", None) or {}
        imgsz = int((train_args.get("train_args") or {}).get("imgsz", 640))
    staged = out / "source.pt"
    shutil.copy2(weights, staged)  # Ultralytics writes next to the weights
    model = YOLO(str(staged), task="detect")
    produced = Path(model.export(format=fmt, imgsz=imgsz, batch=1, dynamic=False,
                                 simplify=True, device="cpu", verbose=False))
    staged.unlink()
    (out / "artifact.json").write_text(json.dumps(
        {"file": produced.name, "format": fmt, "imgsz": imgsz}))
    return produced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--format", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--imgsz", type=int)
    args = parser.parse_args(argv)
    export(args.weights, args.format, args.out, args.imgsz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
