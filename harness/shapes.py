"""Deterministic synthetic "shapes" detection dataset in Ultralytics YOLO layout.

Coloured shapes (circle, square, triangle, star) are drawn on textured
backgrounds by :mod:`edgebench.shapes_render`.  Image sizes vary slightly between
a few square and non-square resolutions so that letterboxing is exercised
downstream.  This module writes the dataset and caches it.

Layout written by :func:`generate_shapes`::

    ROOT/images/{train,val}/*.png
    ROOT/labels/{train,val}/*.txt   # "class cx cy w h", normalised to [0, 1]
    ROOT/data.yaml                  # path, train, val, names

Every image is drawn from its own ``numpy.random.Generator(PCG64(...))``
seeded from ``(seed, split, index)``, so the same seed and arguments give
byte-identical files, independent of generation order.

Only numpy and Pillow are required.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import cache_root
from .shapes_render import CLASS_NAMES, DEFAULT_IMGSZ, Box, render_image

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_IMGSZ",
    "DEFAULT_N_TRAIN",
    "DEFAULT_N_VAL",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "Box",
    "dataset_cache_key",
    "default_shapes_dataset",
    "generate_shapes",
    "render_image",
]

#: Bump whenever the rendered output changes; it keys the dataset cache.
GENERATOR_VERSION: int = 1

DEFAULT_SEED: int = 0
DEFAULT_N_TRAIN: int = 600
DEFAULT_N_VAL: int = 100

_SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1}


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent per-image generator keyed by (seed, split, index)."""
    import numpy as np

    ss = np.random.SeedSequence([int(seed), _SPLIT_IDS[split], int(index)])
    return np.random.Generator(np.random.PCG64(ss))


def _yaml_quote(value: str) -> str:
    """Quote a string for YAML (double-quoted scalar)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_data_yaml(yaml_file: Path, dataset_path: Path) -> None:
    """Write an Ultralytics ``data.yaml`` without needing PyYAML."""
    lines = [
        f"# edgebench synthetic shapes dataset, generator version {GENERATOR_VERSION}",
        f"path: {_yaml_quote(str(dataset_path))}",
        "train: images/train",
        "val: images/val",
        f"nc: {len(CLASS_NAMES)}",
        "names:",
        *(f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES)),
        "",
    ]
    yaml_file.write_text("\n".join(lines), encoding="utf-8")


def generate_shapes(
    root: Path,
    *,
    seed: int = DEFAULT_SEED,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    imgsz: int = DEFAULT_IMGSZ,
    dataset_path: Path | None = None,
) -> Path:
    """Generate the shapes dataset under ``root``.

    Args:
        root: Output directory (created if missing; existing files are overwritten).
        seed: Dataset seed; same seed + arguments give byte-identical files.
        n_train: Number of training images.
        n_val: Number of validation images.
        imgsz: Nominal image size in pixels (images are 0.8..1.0 of it per side).
        dataset_path: Value written as ``path:`` in data.yaml; defaults to
            ``root`` (absolute).  Useful when generating into a temporary
            directory that is renamed afterwards.

    Returns:
        Path to the written ``data.yaml``.
    """
    from PIL import Image

    root = Path(root)
    for split, count in (("train", n_train), ("val", n_val)):
        img_dir = root / "images" / split
        lbl_dir = root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, boxes = render_image(_image_rng(seed, split, i), imgsz)
            h, w = image.shape[:2]
            stem = f"{split}_{i:05d}"
            Image.fromarray(image).save(img_dir / f"{stem}.png", format="PNG", compress_level=1)
            text = "".join(b.to_yolo(w, h) + "\n" for b in boxes)
            (lbl_dir / f"{stem}.txt").write_text(text, encoding="utf-8")
    yaml_file = root / "data.yaml"
    _write_data_yaml(yaml_file, Path(dataset_path) if dataset_path is not None else root.resolve())
    return yaml_file


def dataset_cache_key(
    *,
    seed: int = DEFAULT_SEED,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    imgsz: int = DEFAULT_IMGSZ,
) -> str:
    """Directory name identifying a generated dataset (version + parameters)."""
    return f"shapes-v{GENERATOR_VERSION}-seed{seed}-train{n_train}-val{n_val}-sz{imgsz}"


def default_shapes_dataset(
    cache_dir: Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    n_train: int = DEFAULT_N_TRAIN,
    n_val: int = DEFAULT_N_VAL,
    imgsz: int = DEFAULT_IMGSZ,
) -> Path:
    """Return ``data.yaml`` of the default dataset, generating it once.

    The dataset lives in ``cache_dir / dataset_cache_key(...)``.  It is
    generated into a temporary sibling directory and renamed into place, so
    a partially written dataset is never visible; if another process wins
    the race its copy is used.

    Args:
        cache_dir: Dataset cache directory; defaults to
            ``$EDGEBENCH_CACHE/datasets`` or ``~/.cache/edgebench/datasets``.
        seed: Dataset seed.
        n_train: Number of training images.
        n_val: Number of validation images.
        imgsz: Nominal image size.

    Returns:
        Path to ``data.yaml``.
    """
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "datasets"
    base = base.expanduser().resolve()
    final = base / dataset_cache_key(seed=seed, n_train=n_train, n_val=n_val, imgsz=imgsz)
    yaml_file = final / "data.yaml"
    if yaml_file.is_file():
        return yaml_file
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=base))
    try:
        generate_shapes(
            tmp, seed=seed, n_train=n_train, n_val=n_val, imgsz=imgsz, dataset_path=final
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not yaml_file.is_file():  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return yaml_file
