"""Shared pieces of the quantization tests: a small real shapes dataset (48 train images
for calibration and the search, the first 20 val images for mAP), the embedded model as an
artifact, and the contexts the steps get."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.config import ASSETS
from edgebench.contracts import CompressionContext
from edgebench.datasets import load_yolo
from edgebench.pipeline import load_source
from edgebench.plugins.compression import host_eval
from edgebench.records import Artifact
from edgebench.shapes import default_shapes_dataset

N_TRAIN = 48
N_VAL = 20


@pytest.fixture(scope="session")
def small_yaml() -> Path:
    return default_shapes_dataset(n_train=N_TRAIN, n_val=N_VAL)


@pytest.fixture(scope="session")
def val_set(small_yaml: Path) -> host_eval.EvalSet:
    return host_eval.eval_set(load_yolo(small_yaml, split="val"), (320, 320))


@pytest.fixture(scope="session")
def onnx_source() -> Artifact:
    return load_source(ASSETS / "shapes-yolov8n.onnx")


def context(source: Artifact, data_yaml: Path | None, tmp: Path) -> CompressionContext:
    return CompressionContext(source=source, data_yaml=data_yaml, imgsz=320, workdir=tmp,
                              progress=False)


def apply(cls: type, model: Artifact, ctx: CompressionContext, **options: object) -> Artifact:
    step = cls()
    opts = {**cls.option_defaults, **options}  # type: ignore[attr-defined]
    step.check(opts, ctx)
    return step.apply(model, opts, ctx)  # type: ignore[no-any-return]


def no_train_yaml(tmp: Path, small_yaml: Path) -> Path:
    """A data.yaml with only a val split (nothing to calibrate on)."""
    yaml = tmp / "val-only.yaml"
    root = small_yaml.parent
    yaml.write_text(f"path: {root}\nval: images/val\nnames: [circle, square, triangle, star]\n")
    return yaml
