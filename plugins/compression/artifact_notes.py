"""What a compression step writes next to its output and what the report says about it:
the ``artifact.json`` (converter, calibration, kept-float nodes...) read back, the report
lines of a quantized artifact, and the description of a ``.pt`` a MODEL step made."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgebench.cache import sha256_file
from edgebench.records import Artifact


def artifact_meta(path: Path) -> dict[str, Any]:
    """The ``artifact.json`` written next to a compressed artifact ({} when none)."""
    meta = path.parent / "artifact.json"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}



def quantization_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Report lines from a quantized artifact's ``artifact.json``."""
    notes: list[str] = []
    if meta.get("converter"):
        notes.append(f"made by {meta['converter']}")
    if meta.get("calibration_images"):
        notes.append(f"calibrated on {meta['calibration_images']} "
                     f"{meta.get('calibration_split', 'train')} images (not the val images "
                     "of the mAP)")
    kept = meta.get("kept_float")
    if kept is not None:
        notes.append(f"{len(kept)} nodes kept float" + (f": {_short(kept)}" if kept else ""))
    return tuple(notes)


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def pt_artifact(path: Path, source: Artifact, meta: Mapping[str, Any]) -> Artifact:
    """A ``.pt`` made from ``source`` by a MODEL step (``meta``: its ``artifact.json``,
    for the GFLOPs and the converter)."""
    return Artifact(path=path, format="pt", sha256=sha256_file(path),
                    size_bytes=path.stat().st_size, gflops=meta.get("gflops"),
                    source_sha256=source.sha256, pipeline=source.pipeline,
                    converter=meta.get("converter"))
