"""The images compression steps calibrate and train on: a dataset's ``train`` split, never
the ``val`` images mAP is measured on (:class:`edgebench.contracts.CompressionContext` gives
them to compressors)."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


def training_yaml(data_yaml: Path | None) -> Path:
    """``data.yaml`` with a train split: the given one, or the embedded shapes dataset's."""
    if data_yaml is None:
        from .shapes import default_shapes_dataset

        return default_shapes_dataset()
    return data_yaml


def train_images(data_yaml: Path | None, count: int | None = None) -> list[Path]:
    """The first ``count`` (all when ``None``) train-split images of a YOLO dataset (``None``:
    the embedded shapes dataset), sorted by name. :class:`UserError` when the split is missing
    or has no images."""
    from .datasets import IMAGE_SUFFIXES, _yaml

    yaml_path = training_yaml(data_yaml)
    data = _yaml(yaml_path)
    if "train" not in data:
        raise UserError(f"{yaml_path} has no 'train' split to calibrate or train on; add one "
                        "(images never used for mAP).")
    root = Path(str(data.get("path") or yaml_path.parent))
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    entries = data["train"] if isinstance(data["train"], list) else [data["train"]]
    images: list[Path] = []
    for entry in entries:
        folder = root / str(entry)
        if folder.is_dir():
            images += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    images.sort()
    if not images:
        raise UserError(f"the train split of {yaml_path} has no images; calibration and "
                        "training need some.")
    return images if count is None else images[:count]
