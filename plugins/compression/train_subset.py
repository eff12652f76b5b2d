"""The training data of ``distill`` and ``finetune``: a ``data.yaml`` listing exactly the
images trained on, and the content fingerprint of those images and labels for the cache key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path


def data_fingerprint(images: Sequence[Path], data_yaml: Path) -> str:
    """Content hash of the training images, their labels and the dataset's class names."""
    from edgebench.datasets import _yaml

    digest = hashlib.sha256(b"edgebench-train-v1\0")
    digest.update(json.dumps(_yaml(data_yaml).get("names"), sort_keys=True).encode())
    for image in images:
        label = label_path(image)
        digest.update(hashlib.sha256(image.read_bytes()).digest())
        digest.update(hashlib.sha256(label.read_bytes()).digest() if label.is_file()
                      else b"no-label")
    return digest.hexdigest()[:24]


def label_path(image: Path) -> Path:
    """Where a YOLO dataset keeps an image's labels (``.../images/x.png`` ->
    ``.../labels/x.txt``), as Ultralytics finds them."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def subset_yaml(data_yaml: Path, images: Sequence[Path], folder: Path) -> Path:
    """A ``data.yaml`` training on exactly ``images`` (a list file) with the dataset's
    classes; its ``val`` is the dataset's (Ultralytics validates once after the last epoch,
    for the reported figures only) or, when it has none, the same images."""
    import yaml

    from edgebench.datasets import _yaml

    content = _yaml(data_yaml)
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "train.txt"
    listing.write_text("".join(f"{p.resolve()}\n" for p in images))
    root = Path(str(content.get("path") or data_yaml.parent))
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    val = content.get("val")
    if val:
        entries = val if isinstance(val, list) else [val]
        val = [str(root / str(v)) for v in entries]
    subset = {"path": str(folder.resolve()), "train": str(listing.resolve()),
              "val": val or str(listing.resolve()), "names": content["names"]}
    if "nc" in content:
        subset["nc"] = content["nc"]
    out = folder / "data.yaml"
    out.write_text(yaml.safe_dump(subset, sort_keys=False))
    return out
