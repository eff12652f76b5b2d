"""What to run, validated at the edge: a :class:`Matrix` built from command-line flags."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .accuracy import AccuracySettings
from .errors import UserError
from .records import RunSettings

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "shapes-yolov8n.onnx"
"""The embedded default: YOLOv8n trained by ``scripts/train_default_model.py`` on shapes."""

_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)(?::(?://)?(?P<rest>.*))?$")


@dataclass(frozen=True)
class Matrix:
    """Models x backends x devices, measured with one set of settings."""

    models: tuple[Path, ...] = (DEFAULT_MODEL,)
    backends: tuple[str, ...] = ()
    """Empty means every backend usable on this host."""
    devices: tuple[str, ...] = ("local",)
    settings: RunSettings = field(default_factory=RunSettings)
    imgsz: int | None = None
    """Input size for models with a dynamic input (and for .pt exports)."""
    output_dir: Path = Path("edgebench-results")
    disabled_plugins: tuple[str, ...] = ()
    data: Path | None = None
    """Evaluation dataset; ``None`` is the embedded shapes val split."""
    images: int | None = None
    """Evaluate on the first N images only."""
    accuracy: AccuracySettings | None = field(default_factory=AccuracySettings)
    """``None`` turns the accuracy pass off (latency only)."""


def device_scheme(uri: str) -> str:
    """``local`` for ``local`` / ``local://``; ``ssh`` for ``ssh://pi@host``."""
    match = _URI.match(uri)
    if not match:
        raise UserError(f"device {uri!r} is not a device URI such as 'local' or "
                        "'ssh://pi@raspberrypi'.")
    return match.group("scheme")


def make_settings(
    *,
    warmup: int = 10,
    warmup_s: float = 0.0,
    iterations: int = 100,
    min_duration_s: float = 0.0,
    threads: int | None = None,
    timeout_s: float = 600.0,
) -> RunSettings:
    """Validated run settings; each error names the flag."""
    if warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {warmup}.")
    if warmup_s < 0:
        raise UserError(f"--warmup-s must be 0 or more, got {warmup_s}.")
    if iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {iterations}.")
    if min_duration_s < 0:
        raise UserError(f"--min-duration must be 0 or more, got {min_duration_s}.")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}.")
    if timeout_s <= 0:
        raise UserError(f"--timeout must be positive, got {timeout_s}.")
    return RunSettings(warmup_iterations=warmup, warmup_s=warmup_s, iterations=iterations,
                       min_duration_s=min_duration_s, threads=threads, timeout_s=timeout_s)


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
