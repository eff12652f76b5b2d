"""Tests for the synthetic shapes dataset and the Ultralytics offline env helper."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebench.shapes import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    dataset_cache_key,
    default_shapes_dataset,
    generate_shapes,
)
from edgebench.ultralytics_offline import ultralytics_offline, ultralytics_offline_env

SMALL = {"n_train": 6, "n_val": 3, "imgsz": 128}


def _files(root: Path) -> dict[str, bytes]:
    """All image/label files under ``root`` keyed by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for sub in ("images", "labels")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def _parse_yaml(path: Path) -> dict[str, object]:
    """Load data.yaml with PyYAML if present (it is an Ultralytics dependency)."""
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    generate_shapes(tmp_path / "a", seed=3, **SMALL)
    generate_shapes(tmp_path / "b", seed=3, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * (SMALL["n_train"] + SMALL["n_val"])
    assert a == b


def test_different_seed_differs(tmp_path: Path) -> None:
    generate_shapes(tmp_path / "a", seed=0, **SMALL)
    generate_shapes(tmp_path / "b", seed=1, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".png"))


def test_prefix_stability(tmp_path: Path) -> None:
    """Image i does not depend on how many images are generated."""
    generate_shapes(tmp_path / "a", seed=0, n_train=2, n_val=1, imgsz=128)
    generate_shapes(tmp_path / "b", seed=0, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert all(b[k] == v for k, v in a.items())


def test_labels_valid(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "ds"
    generate_shapes(root, seed=0, n_train=20, n_val=5, imgsz=160)
    sizes = set()
    for split in ("train", "val"):
        images = sorted((root / "images" / split).glob("*.png"))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels]
        for img_path, lbl_path in zip(images, labels):
            with Image.open(img_path) as im:
                assert im.mode == "RGB"
                w, h = im.size
                sizes.add((w, h))
            lines = lbl_path.read_text().splitlines()
            assert lines, f"{lbl_path} has no objects"
            for line in lines:
                parts = line.split()
                assert len(parts) == 5
                cls = int(parts[0])
                cx, cy, bw, bh = map(float, parts[1:])
                assert 0 <= cls < len(CLASS_NAMES)
                assert bw * w >= 4 and bh * h >= 4, "degenerate box"
                assert 0.0 <= cx - bw / 2 + 1e-6 and cx + bw / 2 <= 1.0 + 1e-6
                assert 0.0 <= cy - bh / 2 + 1e-6 and cy + bh / 2 <= 1.0 + 1e-6
    assert len(sizes) > 1, "expected some non-square / varied image sizes"


def test_data_yaml(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    yaml_file = generate_shapes(root, seed=0, **SMALL)
    assert yaml_file == root / "data.yaml"
    data = _parse_yaml(yaml_file)
    assert Path(str(data["path"])) == root.resolve()
    assert data["train"] == "images/train"
    assert data["val"] == "images/val"
    names = data["names"]
    assert isinstance(names, dict)
    assert tuple(names[i] for i in range(len(names))) == CLASS_NAMES
    assert (root / str(data["train"])).is_dir()


def test_default_dataset_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    y1 = default_shapes_dataset(cache, **SMALL)
    assert y1.is_file()
    assert y1.parent.name == dataset_cache_key(seed=0, **SMALL)
    assert f"v{GENERATOR_VERSION}" in y1.parent.name
    data = _parse_yaml(y1)
    assert Path(str(data["path"])) == y1.parent  # points at final dir, not the temp dir
    marker = y1.parent / "images" / "train" / "train_00000.png"
    mtime = marker.stat().st_mtime_ns
    y2 = default_shapes_dataset(cache, **SMALL)
    assert y2 == y1
    assert marker.stat().st_mtime_ns == mtime, "second call regenerated the dataset"
    # No leftover temporary directories.
    assert [p.name for p in cache.iterdir()] == [y1.parent.name]


def test_default_dataset_respects_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBENCH_CACHE", str(tmp_path / "eb"))
    y = default_shapes_dataset(**SMALL)
    assert y.is_relative_to(tmp_path / "eb" / "datasets")


def test_offline_env_creates_fonts(tmp_path: Path) -> None:
    env = ultralytics_offline_env(tmp_path / "ul")
    assert env["YOLO_OFFLINE"] == "1"
    assert env["YOLO_AUTOINSTALL"].lower() == "false"
    config_dir = Path(env["YOLO_CONFIG_DIR"])
    assert config_dir == (tmp_path / "ul").resolve()
    # Ultralytics uses $YOLO_CONFIG_DIR/Ultralytics as its USER_CONFIG_DIR.
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        font = config_dir / "Ultralytics" / name
        assert font.is_file() and font.stat().st_size > 10_000
        assert font.read_bytes()[:4] in (b"\x00\x01\x00\x00", b"true", b"OTTO")
    # Idempotent.
    assert ultralytics_offline_env(tmp_path / "ul") == env


def test_offline_context_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    with ultralytics_offline(tmp_path / "ul") as env:
        assert os.environ["YOLO_OFFLINE"] == "1"
        assert os.environ["YOLO_CONFIG_DIR"] == env["YOLO_CONFIG_DIR"]
    assert os.environ["YOLO_OFFLINE"] == "0"
    assert "YOLO_CONFIG_DIR" not in os.environ
