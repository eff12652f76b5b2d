"""Model sources and artifacts: hashing, the export cache, and Ultralytics export.

An export is keyed by the content hash of its source plus the export options, so the same
``.pt`` exported twice with the same options is converted once. The cache lives under
``cache.cache_root()`` (``$EDGEBENCH_CACHE``, default ``~/.cache/edgebench``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import cache_root as cache_root  # re-exported for runner.py (its split pending)
from .cache import locked, sha256_file, size_bytes
from .errors import CaseError, CaseSkipped, UserError
from .input_size import ImgSz, declared_hw, hw
from .limits import run_limited
from .onnx_info import inspect_onnx
from .precision import artifact_precision
from .records import Artifact

SOURCE_FORMATS = {".onnx": "onnx", ".pt": "pt", ".tflite": "tflite", ".param": "ncnn"}
"""``--model`` suffixes and their formats. A directory holding an ncnn ``.param`` (what
Ultralytics writes as ``*_ncnn_model/``) is an ncnn source too, and one holding OpenVINO IR
(``*_openvino_model/``: one ``.xml`` and its ``.bin``) an ``openvino`` source."""
EXPORT_CACHE_VERSION = 2
ULTRALYTICS_FORMATS = {"onnx": "onnx", "litert": "tflite", "ncnn": "ncnn", "openvino": "openvino"}
"""Ultralytics ``format=`` name -> the artifact format it produces."""


def load_source(path: Path) -> Artifact:
    """Check a ``--model`` file and describe it; raise :class:`UserError` when it is unusable."""
    if not path.exists():
        raise UserError(f"model file {path} does not exist; pass an existing .onnx or .pt.")
    if path.is_dir():
        return _model_directory(path)
    if not path.is_file():
        raise UserError(f"model file {path} is not a regular file (a device, a pipe or a "
                        "socket); pass a model file.")
    if not os.access(path, os.R_OK):
        raise UserError(f"model file {path} cannot be read; check its permissions.")
    fmt = SOURCE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"model file {path} has suffix {path.suffix!r}; edgebench takes "
                        ".onnx (used as is), .pt (exported with Ultralytics), .tflite "
                        "(LiteRT) or ncnn .param (with its .bin) files, or the model "
                        "directories Ultralytics exports for ncnn (*_ncnn_model/) and "
                        "OpenVINO (*_openvino_model/).")
    if fmt == "pt" and importlib.util.find_spec("ultralytics") is None:
        raise UserError(f"{path} is a PyTorch model and exporting it needs Ultralytics: "
                        "pip install 'edgebench[export]' (install torch first, see README).")
    if fmt == "onnx":
        return describe_onnx(path)
    return Artifact(path=path.resolve(), format=fmt, sha256=sha256_file(path),
                    size_bytes=path.stat().st_size, precision=artifact_precision(path, fmt))


MODEL_FILES = (".onnx, .pt, .tflite or ncnn .param (with its .bin) files, or the model "
               "directories Ultralytics exports for ncnn (*_ncnn_model/) and OpenVINO "
               "(*_openvino_model/)")
"""What ``--model`` accepts, for error messages."""
UNRUN_EXPORTS = {"_saved_model": "TensorFlow SavedModel", "_web_model": "TF.js",
                 "_paddle_model": "PaddlePaddle", "_executorch_model": "ExecuTorch",
                 "_imx_model": "Sony IMX500", "_rknn_model": "Rockchip RKNN",
                 "_edgetpu": "Edge TPU"}
"""Ultralytics export directories (by name ending) no edgebench backend takes as a source."""


def _model_directory(path: Path) -> Artifact:
    """A ``--model`` directory: an Ultralytics ncnn export (a ``.param``) or OpenVINO IR
    export (one ``.xml`` with its ``.bin``: format ``openvino``, which the OpenVINO backend
    runs); else :class:`UserError` saying what it is and what is accepted."""
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"model directory {path} cannot be read; check its permissions.")
    if any(path.glob("*.param")):
        return Artifact(path=path.resolve(), format="ncnn", sha256=sha256_file(path),
                        size_bytes=size_bytes(path), precision=artifact_precision(path, "ncnn"))
    xmls = sorted(path.glob("*.xml"))
    if len(xmls) == 1 and xmls[0].with_suffix(".bin").is_file():
        return Artifact(path=path.resolve(), format="openvino", sha256=sha256_file(path),
                        size_bytes=size_bytes(path))
    if xmls:
        raise UserError(f"model directory {path} holds {len(xmls)} .xml file(s) and is not "
                        "an OpenVINO IR model: it needs exactly one .xml with its .bin.")
    name = path.resolve().name
    export = next((kind for end, kind in UNRUN_EXPORTS.items() if name.endswith(end)), None)
    if export is not None:
        raise UserError(f"{path} is an Ultralytics {export} export, which no edgebench "
                        f"backend runs; edgebench takes {MODEL_FILES}.")
    raise UserError(f"{path} is a directory, not a model; edgebench takes {MODEL_FILES}.")


def describe_onnx(path: Path, *, source: Artifact | None = None) -> Artifact:
    info = inspect_onnx(path)
    shape = tuple(d if isinstance(d, int) else -1 for d in info.input_shape)
    return Artifact(
        path=path.resolve(),
        format="onnx",
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        input_name=info.input_name,
        input_shape=shape,
        gflops=info.gflops,
        source_sha256=source.sha256 if source else None,
        pipeline=source.pipeline if source else (),
        imgsz=info.imgsz,
        precision=info.precision,
    )


def export_key(source: Artifact, fmt: str, options: dict[str, object]) -> str:
    payload = json.dumps(
        {"v": EXPORT_CACHE_VERSION, "source": source.sha256, "format": fmt, "options": options},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def cached_export(source: Artifact, fmt: str, options: dict[str, object],
                  produce: Callable[[Path], None]) -> tuple[Path, dict[str, Any]]:
    """Run ``produce(staging_dir)`` once per (source content, format, options).

    ``produce`` writes the export (a file or a directory) and ``artifact.json`` (at least
    ``{"file": name}``; also ``imgsz``, ``gflops``, ``input_name``, ``converter`` when known)
    into the staging dir, which then becomes the cache entry atomically. Returns the path of
    the export and its ``artifact.json``. Reusable by any converter (compressors too).
    """
    cache_dir = cache_root() / "exports" / export_key(source, fmt, options)
    meta_path = cache_dir / "artifact.json"
    if not meta_path.exists():
        with locked(cache_dir):  # another run making the same entry: wait, then reuse it
            if not meta_path.exists():
                _build_entry(cache_dir, produce, f"the {fmt} export of {source.path.name}")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return cache_dir / meta["file"], meta


def _build_entry(cache_dir: Path, produce: Callable[[Path], None], what: str) -> None:
    """``produce`` into a temp dir beside ``cache_dir``, then rename it into place (atomic:
    a reader sees the whole entry or none). The caller holds the entry's lock."""
    with tempfile.TemporaryDirectory(dir=cache_dir.parent, prefix=".export-") as tmp:
        staged = Path(tmp)
        produce(staged)
        if not (staged / "artifact.json").exists():
            raise CaseError(f"{what} wrote no artifact.json")
        if cache_dir.exists():  # a half entry of an older edgebench (no lock): replace it
            shutil.rmtree(cache_dir, ignore_errors=True)
        staged.rename(cache_dir)
        staged.mkdir()  # so TemporaryDirectory's cleanup finds it


def exported_artifact(path: Path, fmt: str, source: Artifact, meta: dict[str, Any]
                      ) -> Artifact:
    """Describe an export: content hash, size, input (NCHW, as the harness feeds it; from
    ``meta["imgsz"]``, one side or ``[height, width]``), precision read from the graph."""
    if fmt == "onnx":
        described = describe_onnx(path, source=source)
        return dataclasses.replace(described, converter=meta.get("converter"))
    size = declared_hw(meta.get("imgsz"))
    return Artifact(path=path, format=fmt, sha256=sha256_file(path),
                    size_bytes=size_bytes(path), input_name=meta.get("input_name"),
                    input_shape=(1, 3, *size) if size else None,
                    gflops=meta.get("gflops"), source_sha256=source.sha256,
                    pipeline=source.pipeline, converter=meta.get("converter"), imgsz=size,
                    precision=artifact_precision(path, fmt))


def export_with_ultralytics(
    source: Artifact, fmt: str, workdir: Path, *, imgsz: ImgSz | None
) -> Artifact:
    """Export a ``.pt`` with Ultralytics (``format=fmt``: onnx, litert, ncnn, openvino) in a
    subprocess, cached by content hash; at ``imgsz`` (one side or (height, width)), else
    at the checkpoint's training size.

    Raises :class:`CaseSkipped` when the source is not a ``.pt`` (nothing to export from),
    :class:`CaseError` when the export itself fails. ``workdir`` is unused (the cache is
    the work dir).
    """
    produced = ULTRALYTICS_FORMATS.get(fmt, fmt)
    if source.format != "pt":
        raise CaseSkipped(f"cannot make {produced} from a {source.format} model with "
                          "Ultralytics; pass the .pt it came from")
    size = hw(imgsz)
    options: dict[str, object] = {"imgsz": list(size) if size and size[0] != size[1]
                                  else size[0] if size else None, "tool": "ultralytics"}
    path, meta = cached_export(source, fmt, options,
                               lambda out: _run_export(source, fmt, imgsz, out))
    return exported_artifact(path, produced, source, meta)


def _run_export(source: Artifact, fmt: str, imgsz: ImgSz | None, out: Path) -> None:
    """The export, by the run's export worker (:mod:`edgebench.export_worker`)."""
    from .export_worker import worker_for_call

    with worker_for_call() as worker:
        worker.export(source.path, source.sha256, fmt, out, imgsz,
                      f"converting {source.path.name} to {fmt} with Ultralytics")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_error_line(stderr: str, stdout: str) -> str:
    """The line a failed tool ended with: the last non-blank line of its stderr (where
    errors and Python tracebacks go; the last line of a traceback is the exception), else
    of its stdout; colour codes and loader noise (``dlopen failed``) dropped, at most 300
    characters."""
    for text in (stderr, stdout):
        lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and "dlopen failed" not in ln]
        if lines:
            return clipped(lines[-1])
    return "no output"


def clipped(line: str, limit: int = 300) -> str:
    """``line`` cut to ``limit`` characters in the middle (`` … ``), keeping its start and
    its end, where a converter's message says what went wrong (``… Unsupported model IR
    version: 14, max supported IR version: 13``)."""
    if len(line) <= limit:
        return line
    head = limit // 3
    return f"{line[:head]} … {line[len(line) - (limit - head - 3):]}"


def _exit_text(code: int) -> str:
    """``exit 1``, or for a tool a signal ended (a negative code): ``killed by SIGSEGV``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def run_tool(argv: list[str], what: str, *, cwd: Path | None = None,
              timeout_s: float = 1800) -> str:
    """Run a converter under the host's memory and time limits (:mod:`edgebench.limits`)
    and return its stdout. :class:`CaseError` when it fails (``<what> failed (exit N):
    <its last error line>`` or ``(killed by SIGSEGV)``, :func:`last_error_line`) or passes a
    limit. ``what`` says what
    it does, e.g. ``converting m.onnx to ncnn with pnnx``."""
    done = run_limited(argv, what, time_s=timeout_s, cwd=cwd)
    if done.returncode != 0:
        raise CaseError(f"{what} failed ({_exit_text(done.returncode)}): "
                        f"{last_error_line(done.stderr, done.stdout)}")
    return done.stdout


# -- exports committed next to the embedded model ---------------------------------------

ASSETS = Path(__file__).parent / "assets"


def prebuilt_export(source: Artifact, fmt: str, imgsz: ImgSz | None) -> Artifact | None:
    """A committed export of the embedded model (``harness/assets/*.json`` manifests), so
    the default run needs only the runtimes, not torch and the converters.

    Matches when ``source`` is the committed ONNX (by content hash; its input is static, so
    ``imgsz`` does not change it, as it does not for ONNX Runtime). The export's own hash is
    checked against the manifest: a modified asset raises :class:`CaseError` rather than
    being benchmarked.
    """
    for manifest in sorted(ASSETS.glob("*.json")):
        try:
            data = json.loads(manifest.read_text())
            files = data["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if files.get("onnx", {}).get("sha256") != source.sha256 or fmt not in files:
            continue
        entry = files[fmt]
        static = all(d > 0 for d in (source.input_shape or (-1,)))
        made_at = declared_hw(entry.get("imgsz", data.get("imgsz")))
        if not static and hw(imgsz) not in (None, made_at):
            continue  # --imgsz applies to dynamic-shape sources only, as for ONNX Runtime
        path = ASSETS / entry["name"]
        if not path.exists() or sha256_file(path) != entry["sha256"]:
            raise CaseError(f"the committed {fmt} export {path.name} is missing or does not "
                            f"match the hash in {manifest.name}; restore it from git")
        meta = {"imgsz": entry.get("imgsz", data.get("imgsz")), "gflops": source.gflops,
                "input_name": entry.get("input_name"),
                "converter": f"{entry.get('converter', 'committed export')} (committed, "
                             f"see {manifest.name})"}
        pt_sha = files.get("pt", {}).get("sha256")
        artifact = exported_artifact(path, fmt, source, meta)
        return dataclasses.replace(artifact, source_sha256=pt_sha or source.sha256)
    return None


def committed_pytorch(source: Artifact) -> Artifact | None:
    """The ``.pt`` behind ``source``: itself for a ``.pt``; for the committed ONNX of the
    embedded model, its committed ``.pt`` (by content hash); otherwise ``None``."""
    if source.format == "pt":
        return source
    for manifest in sorted(ASSETS.glob("*.json")):
        try:
            files = json.loads(manifest.read_text())["files"]
            if files["onnx"]["sha256"] != source.sha256:
                continue
            path = ASSETS / files["pt"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.is_file() and importlib.util.find_spec("ultralytics") is not None:
            return load_source(path)
    return None


# -- the PyTorch reference of a .pt source -----------------------------------------------


def torch_reference(source: Artifact, tensors: Path, *, threads: int | None = None
                    ) -> tuple[str, list[list[Any]]]:
    """The ``.pt`` run by PyTorch (Ultralytics' model, fused, fp32, CPU) on every tensor of
    ``tensors`` (``"0".."N-1"``, each (B, 3, H, W): one image, or a group of a static
    batch), in the run's export worker (a subprocess: torch never loads into the harness),
    at ``threads`` torch threads (``None``: torch's default, one per core). Computed on
    every call: the caller caches it (:mod:`edgebench.reference_cache`). Returns (a
    description, per tensor its outputs, each with the tensor's batch axis)."""
    import numpy as np

    folder = cache_root() / "references"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".torch-") as tmp:
        out = Path(tmp) / "outputs.npz"
        from .export_worker import worker_for_call

        with worker_for_call() as worker:
            worker.predict(source.path, source.sha256, tensors, out,
                           f"running {source.path.name} with PyTorch for the reference",
                           threads=threads)
        name: str = json.loads(out.with_suffix(".json").read_text())["name"]
        with np.load(out, allow_pickle=False) as data:
            by_image: dict[int, list[Any]] = {}
            for key in sorted(data.files, key=lambda k: tuple(int(p) for p in k.split("_"))):
                by_image.setdefault(int(key.split("_")[0]), []).append(data[key])
    return name, [by_image[i] for i in sorted(by_image)]
