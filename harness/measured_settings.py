"""The settings a run measured with, as one record (:class:`~edgebench.records.MatrixSettings`
in the report), and the differences between two of them in words.

The record holds every matrix option (``options.OPTIONS``) under its own name, so a new
option cannot be left out: :func:`measured_settings` builds the record with one keyword per
option and fails when one is missing (a test builds it from every option set to a value
other than its default, and round-trips it through :func:`matrix_flags`). Each field is
either compared by ``--resume`` (it changes a figure) or named in :data:`NOT_FIGURES` or
:data:`BY_CONTENT` with the reason it is not compared as is.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accuracy import AccuracySettings
from .options import OPTIONS
from .records import Artifact, MatrixSettings
from .redaction import redact

if TYPE_CHECKING:
    from .config import Matrix

NOT_FIGURES: dict[str, str] = {
    "output": "where the report is written (a resumed run writes to its own run dir)",
    "retries": "retries of a case cut by a lost connection: a retried case is measured whole",
    "retry_backoff_s": "the wait before such a retry",
    "latency_threshold": "a gate threshold: judges the figures, changes none",
    "map_threshold": "a gate threshold",
    "alpha": "a gate threshold",
    "alpha_repeats": "a gate threshold",
    "noise_factor": "a gate threshold",
    "fresh": "runs the accuracy pass instead of reusing an earlier run's of the same artifact, "
             "runtime, data and device: the same measurement, so the same figures",
}
"""Fields that may differ between a run and its ``--resume``: they change no figure."""

BY_CONTENT: dict[str, str] = {
    "models": "model_labels",
    "baseline_model": "baseline_label",
    "data": "data_fingerprint",
}
"""Paths compared by the content they name (the field on the right): the same file at
another path (a new checkout) measures the same; a changed file at the same path does not."""

RESOLVED = ("model_labels", "baseline_label", "data_fingerprint")
"""Fields known only once the models and the data are loaded."""

ACCURACY_ONLY = frozenset({"data_fingerprint", "images", "conf", "iou"})
"""Fields that change no figure without the accuracy pass (the timed loop then runs on the
first embedded val image, whatever ``--data`` and ``--images`` say): compared only when
both sides run it (when one does not, ``accuracy`` differs and is named)."""


def compared_fields() -> tuple[str, ...]:
    """The fields of :class:`MatrixSettings` that ``--resume`` compares: all but
    :data:`NOT_FIGURES` and the paths of :data:`BY_CONTENT` (compared by content)."""
    return tuple(f.name for f in dataclasses.fields(MatrixSettings)
                 if f.name not in NOT_FIGURES and f.name not in BY_CONTENT)


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser().absolute()


def option_values(matrix: Matrix) -> dict[str, Any]:
    """The value of every matrix option (``options.OPTIONS`` names) that ``matrix`` ran
    with; paths absolute. ``backends`` is as given (empty: every usable backend)."""
    settings = matrix.settings
    accuracy = matrix.accuracy or AccuracySettings()
    models = matrix.models[1:] if matrix.baseline_model is not None else matrix.models
    return {
        "models": tuple(Path(p).expanduser().absolute() for p in models),
        "baseline_model": _absolute(matrix.baseline_model),
        "backends": tuple(matrix.backends),
        "devices": tuple(matrix.devices),
        "compress": tuple(matrix.compress),
        "data": _absolute(matrix.data),
        "train_data": _absolute(matrix.train_data),
        "images": matrix.images,
        "imgsz": matrix.imgsz,
        "output": _absolute(matrix.output_dir),
        "warmup": settings.warmup_iterations,
        "warmup_s": settings.warmup_s,
        "iterations": settings.iterations,
        "min_duration_s": settings.min_duration_s,
        "threads": tuple(s.threads for s in matrix.all_settings),
        "repeats": settings.repeats,
        "timeout_s": settings.timeout_s,
        "cooldown_s": settings.cooldown_s,
        "max_temperature_c": settings.max_temperature_c,
        "temperature_wait_s": settings.temperature_wait_s,
        "retries": matrix.retry.retries,
        "retry_backoff_s": matrix.retry.backoff_s,
        "accuracy": matrix.accuracy is not None,
        "conf": accuracy.conf,
        "iou": accuracy.iou,
        "latency_threshold": matrix.gate.latency,
        "map_threshold": matrix.gate.map_points,
        "alpha": matrix.gate.alpha,
        "alpha_repeats": matrix.gate.alpha_repeats,
        "noise_factor": matrix.gate.noise_factor,
        "fresh": matrix.fresh,
    }


def measured_settings(matrix: Matrix, backends: Sequence[str], sources: Sequence[Artifact],
                      data_fingerprint: str | None, baseline_label: str | None = None
                      ) -> MatrixSettings:
    """The record of what a run measures: ``matrix``'s options, the ``backends`` it runs
    (resolved), the labels of the ``sources`` it measures (the baseline's first) and the
    fingerprint of its evaluated images. Raises ``TypeError`` if an option has no field."""
    from .planning import model_label

    values = option_values(matrix)
    values["backends"] = tuple(backends)
    options = {b: dict(o) for b, o in matrix.settings.backend_options.items()}
    return MatrixSettings(**values, backend_options=options,
                          model_labels=tuple(model_label(s) for s in sources),
                          baseline_label=baseline_label, data_fingerprint=data_fingerprint)


def matrix_flags(settings: MatrixSettings) -> dict[str, Any]:
    """Flags for ``config.load_matrix`` that rebuild the matrix ``settings`` records (the
    backends named as they ran; ``None`` where the option had its default ``None``)."""
    flags: dict[str, Any] = {name: getattr(settings, name) for name in OPTIONS}
    if settings.threads == (None,):
        flags["threads"] = None  # the runtime's own
    flags["backend_options"] = {b: dict(o) for b, o in settings.backend_options.items()}
    return flags


def differences(before: MatrixSettings, now: MatrixSettings) -> list[str]:
    """The compared fields (:func:`compared_fields`) in which ``now`` differs from
    ``before``, in field order; the fields of the accuracy pass (:data:`ACCURACY_ONLY`) only
    when both run it, and the data's content not when ``--images`` differs on the same
    data (other images, named by ``--images``)."""
    either_off = not (before.accuracy and now.accuracy)  # then "accuracy" says it all
    changed = [name for name in compared_fields()
               if getattr(before, name) != getattr(now, name)
               and not (either_off and name in ACCURACY_ONLY)]
    if "images" in changed and before.data == now.data and "data_fingerprint" in changed:
        changed.remove("data_fingerprint")  # other images of the same data: said by --images
    return changed


def describe(settings: MatrixSettings, name: str) -> str:
    """Field ``name`` of ``settings`` in words, as the flag that gives it:
    ``--iterations 60``, ``no accuracy``, ``the runtime's own threads``."""
    value = getattr(settings, name)
    if name == "accuracy":
        return "accuracy" if value else "no accuracy"
    if name == "images" and value is None:
        return "all images"
    if name == "threads" and value == (None,):
        return "the runtime's own threads"
    if name == "model_labels":
        return f"model{'s' if len(value) != 1 else ''} {', '.join(value)} (name@content hash)"
    if name == "baseline_label":
        return f"--baseline-model {value}" if value else "no --baseline-model"
    if name == "data_fingerprint":
        where = shlex.quote(str(settings.data)) if settings.data else "the embedded val data"
        return f"data {where} (images hashing to {str(value)[:8]})"
    if name == "backend_options":
        given = [f"{b}.{k}={_word(v)}" for b, o in sorted(value.items())
                 for k, v in sorted(o.items())]
        return f"--backend-option {' '.join(given)}" if given else "no --backend-option"
    option = OPTIONS[name]
    label = option.flag or f"[{option.table}] {name}"
    if value is None or value == ():
        return f"no {label}"
    if name == "devices":
        value = tuple(redact(uri) for uri in value)
    if isinstance(value, tuple):
        return f"{label} {shlex.quote(','.join(_word(v) for v in value))}"
    return f"{label} {shlex.quote(_word(value))}"


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def and_join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
