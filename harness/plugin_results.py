"""Checking what a plugin returns before the core uses it.

The contract of a plugin class is checked when it registers (:mod:`edgebench.plugin_checks`);
what its methods return is checked here, at the call: the artifact a backend's ``export()``
made (an :class:`~edgebench.records.Artifact`, of a format the backend declares, whose file
exists), the artifact a compressor's ``apply()`` made (the same, of its ``target`` format),
the notes it gives, the runner script and the runner options. A wrong value, or an exception
a plugin raises that is not one of :mod:`edgebench.errors`, is a
:class:`~edgebench.errors.CaseError` of one sentence naming the plugin (entry-point name,
distribution and class, :attr:`~edgebench.plugin_manager.Registration.label`): it fails that
plugin's cases, never the run, and is never passed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .contracts import Backend, CompressionContext, Compressor
from .errors import CaseError, CaseSkipped, UserError
from .input_size import ImgSz
from .pipeline import clipped
from .plugin_manager import Registration
from .records import Artifact, RunSettings

_OURS = (CaseError, CaseSkipped, UserError)
"""What a plugin may raise on purpose (a reason of its own, already one sentence)."""


def error_line(exc: BaseException) -> str:
    """An exception as ``Type: its last non-blank line`` (a converter's message ends with
    what went wrong; a traceback's last line is the exception), at most 300 characters
    (:func:`edgebench.pipeline.clipped`)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return clipped(f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def checked_artifact(value: object, call: str, formats: tuple[str, ...],
                     reg: Registration) -> Artifact:
    """``value`` when it is an :class:`Artifact` of one of ``formats`` whose path exists;
    else :class:`CaseError` naming ``call`` (``"export() of backend 'x'"``) and the plugin."""
    who = f"{call} ({reg.label})"
    if not isinstance(value, Artifact):
        kind = type(value).__name__
        raise CaseError(f"{who} returned {_article(kind)} {kind} ({_shown(value)}), not an "
                        "edgebench.records.Artifact")
    if value.format not in formats:
        raise CaseError(f"{who} returned {_article(value.format)} {value.format} artifact "
                        f"({value.path.name}), not one of the formats it declares "
                        f"({', '.join(formats)})")
    if not Path(value.path).exists():
        raise CaseError(f"{who} returned an artifact whose file {value.path} does not exist")
    return value


def exported(reg: Registration, backend: Backend, source: Artifact, workdir: Path, *,
             imgsz: ImgSz | None) -> Artifact:
    """``backend.export(source, workdir, imgsz=imgsz)``, checked (:func:`checked_artifact`
    against ``backend.formats``). An exception other than :mod:`edgebench.errors`' is the
    case's reason: ``converting <model> for backend '<name>' failed: <Type>: <its last
    line> (raised by export() of <plugin>)``."""
    try:
        made = backend.export(source, workdir, imgsz=imgsz)
    except _OURS:
        raise
    except Exception as exc:  # a converter run in-process, or a plugin bug: never a traceback
        raise CaseError(f"converting {source.path.name} for backend {backend.name!r} failed: "
                        f"{error_line(exc)} (raised by export() of {reg.label})") from None
    return checked_artifact(made, f"export() of backend {backend.name!r}", backend.formats,
                            reg)


def compressed(reg: Registration, compressor: Compressor, model: Artifact,
               options: Mapping[str, Any], context: CompressionContext, label: str
               ) -> tuple[Artifact, tuple[str, ...]]:
    """``compressor.apply(model, options, context)`` checked (an artifact of the
    compressor's ``target`` format whose file exists) and its ``notes()`` (a tuple of
    strings). ``label``: the step's text for messages (``int8:calibration=64``)."""
    who = f"compressor {reg.name!r}"
    try:
        made = compressor.apply(model, options, context)
    except _OURS:
        raise
    except Exception as exc:
        raise CaseError(f"compression step {label} failed on {model.path.name}: "
                        f"{error_line(exc)} (raised by apply() of {reg.label})") from None
    artifact = checked_artifact(made, f"apply() of {who}", (compressor.target,), reg)
    try:
        notes = compressor.notes(artifact)
    except _OURS:
        raise
    except Exception as exc:
        raise CaseError(f"notes() of {who} ({reg.label}) raised {error_line(exc)}") from None
    if not isinstance(notes, tuple | list) or not all(isinstance(n, str) for n in notes):
        raise CaseError(f"notes() of {who} ({reg.label}) returned {_shown(notes)}, not a "
                        "tuple of strings")
    return artifact, tuple(notes)


def runner_script(reg: Registration, backend: Backend) -> Path:
    """``backend.runner()``: an existing file, else :class:`CaseError` naming the plugin."""
    who = f"runner() of backend {backend.name!r} ({reg.label})"
    try:
        path = backend.runner()
    except _OURS:
        raise
    except Exception as exc:
        raise CaseError(f"{who} raised {error_line(exc)}") from None
    if not isinstance(path, Path):
        kind = type(path).__name__
        raise CaseError(f"{who} returned {_article(kind)} {kind} ({_shown(path)}), not a "
                        "pathlib.Path")
    if not path.is_file():
        raise CaseError(f"{who} returned {path}, which is not a file")
    return path


def runner_options(reg: Registration, backend: Backend, settings: RunSettings
                   ) -> Mapping[str, Any]:
    """``backend.runner_options(settings)``: a mapping with string keys that JSON can
    carry to the device. :class:`UserError` (a bad ``--backend-option``) passes through;
    anything else wrong is a :class:`CaseError` naming the plugin."""
    who = f"runner_options() of backend {backend.name!r} ({reg.label})"
    try:
        options = backend.runner_options(settings)
    except UserError:
        raise
    except Exception as exc:
        raise CaseError(f"{who} raised {error_line(exc)}") from None
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise CaseError(f"{who} returned {_shown(options)}, not a mapping of option names "
                        "to values")
    try:
        json.dumps(dict(options), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CaseError(f"{who} returned options the runner request cannot carry "
                        f"(JSON: {error_line(exc)})") from None
    return options
