"""What an Ultralytics export says about itself: task, class names, input size, head kind.

Ultralytics (``ultralytics/engine/exporter.py``, 8.4) writes one metadata dictionary into
every export: ``description``, ``author``, ``date``, ``version``, ``license``, ``docs``,
``stride`` (the largest), ``task`` (detect, segment, pose, obb, ...), ``head`` (the head
class: ``Detect``, ``v10Detect``, ``Segment``, ``Pose``, ``OBB``, ``RTDETRDecoder``, ...),
``batch``, ``imgsz`` ([h, w]), ``names`` ({index: name}), ``args`` (the export options that
apply to the format, e.g. ``{'nms': True, 'dynamic': False, ...}``), ``channels``,
``end2end`` (the NMS-free one-to-one head was exported) and, for pose, ``kpt_shape``. Where
it goes:

- ONNX: ``metadata_props``, every value as ``str(value)`` (Python literals);
- TFLite: a ``metadata.json`` in a zip archive appended to the flatbuffer;
- ncnn (and other directory formats): ``metadata.yaml`` next to the model.

Ultralytics' own reader (``ultralytics/nn/backends/base.py: apply_metadata``) parses the
same keys with ``ast.literal_eval`` and treats ``args['nms']`` as end-to-end too; so does
this module. Reading never imports a runtime.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelMetadata:
    """The fields of Ultralytics' export metadata that decide how outputs are decoded."""

    task: str | None
    """``detect``, ``segment``, ``pose``, ``obb``, ``classify``, ... (``None``: not said)."""
    names: tuple[str, ...] | None
    """Class names in class-index order (their count is the class count)."""
    imgsz: tuple[int, int] | None
    """(height, width) the model was exported for."""
    stride: int | None
    kpt_shape: tuple[int, int] | None
    """(keypoints, values per keypoint) of a pose model."""
    end2end: bool
    """The NMS-free one-to-one head (YOLOv10, YOLO26 with ``nms=False``) was exported."""
    nms: bool
    """NMS was built into the graph (``export(nms=True)``)."""
    head: str | None
    """The head's class name (``Detect``, ``Segment``, ``RTDETRDecoder``, ...)."""
    where: str
    """Where it was read (for messages)."""

    @property
    def post_nms(self) -> bool:
        """The outputs are rows of detections (x1 y1 x2 y2 score class ...), not anchors."""
        return self.end2end or self.nms


def _literal(value: object) -> object:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    return value


def from_mapping(data: Mapping[str, object], where: str) -> ModelMetadata | None:
    """Parse Ultralytics' metadata dictionary (values as written, or as ``str``); ``None``
    when it holds none of the fields that matter (not an Ultralytics export)."""
    if not any(k in data for k in ("task", "names", "end2end", "head")):
        return None
    names_raw = _literal(data.get("names"))
    names: tuple[str, ...] | None = None
    if isinstance(names_raw, Mapping):
        try:
            names = tuple(str(names_raw[k]) for k in sorted(names_raw, key=int))
        except (TypeError, ValueError):
            names = None
    elif isinstance(names_raw, (list, tuple)):
        names = tuple(str(n) for n in names_raw)
    imgsz_raw = _literal(data.get("imgsz"))
    imgsz: tuple[int, int] | None = None
    if isinstance(imgsz_raw, int):
        imgsz = (imgsz_raw, imgsz_raw)
    elif isinstance(imgsz_raw, (list, tuple)) and len(imgsz_raw) == 2:
        imgsz = (int(imgsz_raw[0]), int(imgsz_raw[1]))
    kpt_raw = _literal(data.get("kpt_shape"))
    kpt = (int(kpt_raw[0]), int(kpt_raw[1])) \
        if isinstance(kpt_raw, (list, tuple)) and len(kpt_raw) == 2 else None
    args = _literal(data.get("args"))
    nms = bool(args.get("nms")) if isinstance(args, Mapping) else False
    end2end = _literal(data.get("end2end"))
    stride = _literal(data.get("stride"))
    task = data.get("task")
    head = data.get("head")
    return ModelMetadata(task=str(task) if task else None, names=names, imgsz=imgsz,
                         stride=int(stride) if isinstance(stride, (int, float)) else None,
                         kpt_shape=kpt, end2end=end2end is True, nms=nms,
                         head=str(head) if head else None, where=where)


def read_metadata(path: Path) -> ModelMetadata | None:
    """The Ultralytics metadata of a model file or ncnn model directory (by its format:
    ``.onnx``, ``.tflite``, a directory or ``.param`` with ``metadata.yaml``); ``None`` when
    the file carries none or cannot be read."""
    try:
        if path.is_dir() or path.suffix == ".param":
            return _from_yaml((path if path.is_dir() else path.parent) / "metadata.yaml")
        if path.suffix == ".onnx":
            return _from_onnx(path)
        if path.suffix == ".tflite":
            return _from_tflite(path)
    except (OSError, ValueError):
        return None
    return None


def _from_onnx(path: Path) -> ModelMetadata | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    props = {p.key: p.value for p in model.metadata_props}
    return from_mapping(props, f"the ONNX metadata of {path.name}")


def _from_tflite(path: Path) -> ModelMetadata | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
    return from_mapping(data, f"the metadata.json appended to {path.name}") \
        if isinstance(data, dict) else None


def _from_yaml(path: Path) -> ModelMetadata | None:
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return from_mapping(data, f"{path.parent.name}/{path.name}") \
        if isinstance(data, dict) else None
