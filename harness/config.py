"""What to run, validated at the edge: the one :class:`Matrix` of a command, built by
:func:`load_matrix` from its flags and its matrix file (``matrix_file.py``) before any slow
work; nothing downstream reads a flag or a file value."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .accuracy import AccuracySettings
from .compare import Thresholds
from .errors import UserError
from .input_size import ImgSz
from .records import RunSettings
from .redaction import redact
from .retry import RetryPolicy

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "shapes-yolov8n.onnx"
"""The embedded default: YOLOv8n trained by ``scripts/train_default_model.py`` on shapes."""

_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)(?:(?::(?://)?|(?=\?))(?P<rest>.*))?$")


@dataclass(frozen=True)
class Matrix:
    """Models x backends x devices, measured with one set of settings."""

    models: tuple[Path, ...] = (DEFAULT_MODEL,)
    backends: tuple[str, ...] = ()
    """Empty means every backend usable on this host."""
    devices: tuple[str, ...] = ("local",)
    settings: RunSettings = field(default_factory=RunSettings)
    imgsz: ImgSz | None = None
    """Input size for models with a dynamic input (and for .pt exports): one side, or
    (height, width)."""
    output_dir: Path = Path("edgebench-results")
    disabled_plugins: tuple[str, ...] = ()
    data: Path | None = None
    """Evaluation dataset; ``None`` is the embedded shapes val split."""
    images: int | None = None
    """Evaluate on the first N images only."""
    accuracy: AccuracySettings | None = field(default_factory=AccuracySettings)
    """``None`` turns the accuracy pass off (latency only)."""
    thread_settings: tuple[RunSettings, ...] = ()
    """One settings per thread count of the matrix; empty means just ``settings``."""
    compress: tuple[str, ...] = ()
    """Compression variants (``--compress`` syntax, see ``compression.py``) run next to the
    uncompressed model."""
    train_data: Path | None = None
    """YOLO ``data.yaml`` whose train split calibrates and fine-tunes; ``None``: ``data`` when
    it is a data.yaml, else the embedded shapes dataset."""
    baseline_model: Path | None = None
    """Measured side by side with ``models`` (it is ``models[0]`` then), and the gate
    judges every other model's cases against its own (see ``compare.side_by_side``)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retries of a case cut by a lost connection (``--retries``, ``--retry-backoff``)."""
    gate: Thresholds = field(default_factory=Thresholds)
    """The gate's thresholds (``[gate]``; ``edgebench compare`` and ``--baseline-model``)."""
    fresh: bool = False
    """Run every accuracy pass, reusing none from the cache (``--fresh``; see
    ``accuracy_cache.py``); the passes still refresh the cache."""

    @property
    def all_settings(self) -> tuple[RunSettings, ...]:
        return self.thread_settings or (self.settings,)


def device_scheme(uri: str) -> str:
    """``local`` for ``local`` / ``local://`` / ``local?python=PATH``; ``ssh`` for
    ``ssh://pi@host``."""
    match = _URI.match(uri)
    if not match:
        raise UserError(f"device {redact(uri)!r} is not a device URI such as 'local' or "
                        "'ssh://pi@raspberrypi'.")
    return match.group("scheme")


def load_matrix(flags: Mapping[str, Any] | None = None, config: Path | None = None, *,
                disabled: tuple[str, ...] = ()) -> Matrix:
    """The one :class:`Matrix` of a command: built once, at the edge, from the option
    values given as flags (option names of ``matrix_file.OPTIONS``; ``None``: not given)
    and the matrix file ``config``. Precedence: defaults, then the file, then the flags
    (backend options merge key by key). Each value is checked once, where it was given:
    the file's by :class:`~edgebench.matrix_file.MatrixFile` (errors name file, line and
    key), the flags' by :func:`~edgebench.matrix_file.check_flags` (errors name the flag).
    Raises :class:`UserError` (exit 2) before any slow work."""
    from .matrix_file import MatrixFile
    from .options import check_flags, merged

    given = check_flags(flags or {})
    file_values = MatrixFile(config).values if config is not None else {}
    return _matrix(merged(file_values, given), disabled)


def _matrix(values: Mapping[str, Any], disabled: tuple[str, ...]) -> Matrix:
    """The record of merged, checked option values."""
    backend_options = {b: dict(o) for b, o in (values["backend_options"] or {}).items()}
    settings = tuple(RunSettings(
        warmup_iterations=values["warmup"], warmup_s=values["warmup_s"],
        iterations=values["iterations"], min_duration_s=values["min_duration_s"], threads=t,
        timeout_s=values["timeout_s"], repeats=values["repeats"],
        cooldown_s=values["cooldown_s"], max_temperature_c=values["max_temperature_c"],
        temperature_wait_s=values["temperature_wait_s"], backend_options=backend_options)
        for t in tuple(values["threads"]) or (None,))
    accuracy = AccuracySettings(conf=values["conf"], iou=values["iou"]) \
        if values["accuracy"] else None
    models = tuple(values["models"] or (DEFAULT_MODEL,))
    baseline = values["baseline_model"]
    return Matrix(
        models=(baseline, *models) if baseline else models,
        baseline_model=baseline,
        backends=tuple(values["backends"]),
        devices=tuple(values["devices"]) or ("local",),
        settings=settings[0],
        thread_settings=settings,
        imgsz=values["imgsz"],
        output_dir=values["output"],
        disabled_plugins=disabled,
        data=values["data"],
        images=values["images"],
        accuracy=accuracy,
        compress=tuple(values["compress"]),
        train_data=values["train_data"],
        retry=RetryPolicy(retries=values["retries"], backoff_s=values["retry_backoff_s"]),
        gate=Thresholds(latency=values["latency_threshold"], map_points=values["map_threshold"],
                        alpha=values["alpha"], alpha_repeats=values["alpha_repeats"],
                        noise_factor=values["noise_factor"]),
        fresh=values["fresh"],
    )


def check_output_dir(path: Path) -> Path:
    """Create ``path`` if needed; raise :class:`UserError` when it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output dir {path} cannot be created ({exc.strerror}); "
                        "pass a writable --output.") from None
    try:  # os.access is no answer for root; try it
        with tempfile.NamedTemporaryFile(dir=path, prefix=".edgebench-write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output dir {path} is not writable ({exc.strerror}); "
                        "pass a writable --output.") from None
    return path
