"""Export the embedded model's .pt to LiteRT and ncnn and commit-ready copy them into
``harness/assets/``, recording their provenance (hash, size, tools) in the manifest
``shapes-yolov8n.json``. The default run uses these, so it needs only the runtimes.

    scripts/bootstrap.sh all && .venv/bin/python scripts/export_default_model.py

Exports go through edgebench's own export path (Ultralytics in a subprocess, offline), so
they are exactly what ``edgebench run -m harness/assets/shapes-yolov8n.pt`` benchmarks.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from edgebench.cache import sha256_file, size_bytes
from edgebench.pipeline import export_with_ultralytics, load_source

ASSETS = Path(__file__).resolve().parents[1] / "harness" / "assets"
MANIFEST = ASSETS / "shapes-yolov8n.json"
TARGETS = {"tflite": ("litert", "shapes-yolov8n.tflite"),
           "ncnn": ("ncnn", "shapes-yolov8n_ncnn_model")}


def main() -> int:
    manifest = json.loads(MANIFEST.read_text())
    source = load_source(ASSETS / manifest["files"]["pt"]["name"])
    imgsz = int(manifest["imgsz"])
    with tempfile.TemporaryDirectory() as tmp:
        for key, (fmt, name) in TARGETS.items():
            artifact = export_with_ultralytics(source, fmt, Path(tmp), imgsz=imgsz)
            target = ASSETS / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            exported = artifact.path
            if exported.is_dir():
                shutil.copytree(exported, target)
            else:
                shutil.copyfile(exported, target)
            manifest["files"][key] = {
                "name": name, "sha256": sha256_file(target), "bytes": size_bytes(target),
                "imgsz": [imgsz, imgsz], "input_name": artifact.input_name,  # (h, w)
                "from": manifest["files"]["pt"]["name"], "converter": artifact.converter,
                "command": "scripts/export_default_model.py"}
            print(f"{name}: {manifest['files'][key]['bytes']} bytes, {artifact.converter}")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
