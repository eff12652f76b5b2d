"""Model sources and artifacts: hashing, the export cache, and Ultralytics export.

An export is keyed by the content hash of its source plus the export options, so the same
``.pt`` exported twice with the same options is converted once. The cache lives under
``$EDGEBENCH_CACHE`` (default ``~/.cache/edgebench``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import UserError
from .onnx_info import inspect_onnx
from .records import Artifact

SOURCE_FORMATS = {".onnx": "onnx", ".pt": "pt"}
EXPORT_CACHE_VERSION = 1


def cache_root() -> Path:
    """Root of edgebench's caches (exports, datasets, input tensors)."""
    env = os.environ.get("EDGEBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgebench"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(path: Path) -> Artifact:
    """Check a ``--model`` file and describe it; raise :class:`UserError` when it is unusable."""
    if not path.exists():
        raise UserError(f"model file {path} does not exist; pass an existing .onnx or .pt.")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UserError(f"model file {path} is not a readable file; check its permissions.")
    fmt = SOURCE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"model file {path} has suffix {path.suffix!r}; edgebench takes "
                        ".onnx (used as is) or .pt (exported with Ultralytics).")
    if fmt == "pt" and importlib.util.find_spec("ultralytics") is None:
        raise UserError(f"{path} is a PyTorch model and exporting it needs Ultralytics: "
                        "pip install 'edgebench[export]' (install torch first, see README).")
    if fmt == "onnx":
        return describe_onnx(path)
    return Artifact(path=str(path.resolve()), format="pt", sha256=sha256_file(path),
                    size_bytes=path.stat().st_size)


def describe_onnx(path: Path, *, source: Artifact | None = None) -> Artifact:
    info = inspect_onnx(path)
    shape = tuple(d if isinstance(d, int) else -1 for d in info.input_shape)
    return Artifact(
        path=str(path.resolve()),
        format="onnx",
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        input_name=info.input_name,
        input_shape=shape,
        gflops=info.gflops,
        source_sha256=source.sha256 if source else None,
        pipeline=source.pipeline if source else (),
    )


def export_key(source: Artifact, fmt: str, options: dict[str, object]) -> str:
    payload = json.dumps(
        {"v": EXPORT_CACHE_VERSION, "source": source.sha256, "format": fmt, "options": options},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def export_with_ultralytics(
    source: Artifact, fmt: str, workdir: Path, *, imgsz: int | None
) -> Artifact:
    """Export a ``.pt`` to ``fmt`` with Ultralytics in a subprocess, cached by content hash.

    ``workdir`` is unused when the cache already holds the export.
    """
    if source.format != "pt":
        raise UserError(f"cannot make {fmt} from a {source.format} model with Ultralytics; "
                        "pass the .pt it came from.")
    options: dict[str, object] = {"imgsz": imgsz}
    cache_dir = cache_root() / "exports" / export_key(source, fmt, options)
    meta_path = cache_dir / "artifact.json"
    if not meta_path.exists():
        _run_export(Path(source.path), fmt, imgsz, cache_dir)
    meta = json.loads(meta_path.read_text())
    exported = cache_dir / meta["file"]
    if fmt == "onnx":
        return describe_onnx(exported, source=source)
    return Artifact(path=str(exported), format=fmt, sha256=sha256_file(exported),
                    size_bytes=exported.stat().st_size, source_sha256=source.sha256,
                    pipeline=source.pipeline)


def _run_export(weights: Path, fmt: str, imgsz: int | None, cache_dir: Path) -> None:
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir.parent, prefix=".export-") as tmp:
        argv = [sys.executable, "-m", "edgebench.ultralytics_export", "--weights", str(weights),
                "--format", fmt, "--out", tmp]
        if imgsz:
            argv += ["--imgsz", str(imgsz)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"exporting {weights.name} to {fmt} with Ultralytics failed: "
                            f"{tail[0]}")
        staged = Path(tmp)
        try:
            staged.rename(cache_dir)
        except OSError:  # another run exported the same thing meanwhile
            shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(exist_ok=True)  # so TemporaryDirectory cleanup finds it
