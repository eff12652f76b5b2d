"""The matrix options: one definition each (:data:`OPTIONS`): its table in the matrix
file, its type and range, its default and the command-line flag that overrides it; one
check (:func:`problem`) for a value from the file or from a flag; and their merge.

The matrix file is read by ``matrix_file.py``, the flags by ``cli.run_flags``; both meet
in ``config.load_matrix``, which builds the one :class:`~edgebench.config.Matrix`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from .errors import UserError
from .input_size import IMGSZ_EXPECT, parse_imgsz


class Table(enum.StrEnum):
    """The tables of a matrix file."""

    RUN = "run"
    SETTINGS = "settings"
    ACCURACY = "accuracy"
    GATE = "gate"
    BACKEND_OPTIONS = "backend_options"


class Kind(enum.StrEnum):
    """The type of one value of an option (a list option holds several)."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    PATH = "path"
    IMGSZ = "imgsz"


_ARTICLE = {Kind.INT: "an integer", Kind.FLOAT: "a number", Kind.BOOL: "true or false",
            Kind.STR: "a non-empty string", Kind.PATH: "a path (string)",
            Kind.IMGSZ: IMGSZ_EXPECT}


@dataclass(frozen=True)
class Option:
    """One matrix option: where it lives in the file, its type, range, default and flag."""

    table: Table
    kind: Kind
    default: Any
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    """The range ``check`` accepts, in words (``>= 1``)."""
    flag: str = ""
    many: bool = False
    """A list of values (a file may give one value for a list of one)."""

    @property
    def expected(self) -> str:
        """``an integer >= 1``: what a value must be, for error messages."""
        return f"{_ARTICLE[self.kind]} {self.expect}".strip()


def _ge(n: float) -> Callable[[Any], bool]:
    return lambda v: v >= n


_RUN, _SET, _ACC, _GATE = Table.RUN, Table.SETTINGS, Table.ACCURACY, Table.GATE
_I, _F, _P, _S = Kind.INT, Kind.FLOAT, Kind.PATH, Kind.STR

OPTIONS: dict[str, Option] = {
    # [run]: what to run
    "models": Option(_RUN, _P, None, flag="--model", many=True),
    "baseline_model": Option(_RUN, _P, None, flag="--baseline-model"),
    "backends": Option(_RUN, _S, (), flag="--backend", many=True),
    "devices": Option(_RUN, _S, ("local",), flag="--device", many=True),
    "compress": Option(_RUN, _S, (), flag="--compress", many=True),
    "data": Option(_RUN, _P, None, flag="--data"),
    "train_data": Option(_RUN, _P, None, flag="--train-data"),
    "images": Option(_RUN, _I, None, _ge(1), ">= 1", "--images"),
    "imgsz": Option(_RUN, Kind.IMGSZ, None, flag="--imgsz"),
    "output": Option(_RUN, _P, Path("edgebench-results"), flag="--output"),
    # [settings]: how each case is measured
    "warmup": Option(_SET, _I, 10, _ge(0), ">= 0", "--warmup"),
    "warmup_s": Option(_SET, _F, 0.0, _ge(0), ">= 0", "--warmup-s"),
    "iterations": Option(_SET, _I, 100, _ge(1), ">= 1", "--iterations"),
    "min_duration_s": Option(_SET, _F, 0.0, _ge(0), ">= 0", "--min-duration"),
    "threads": Option(_SET, _I, (None,), _ge(1), ">= 1", "--threads", many=True),
    "repeats": Option(_SET, _I, 1, _ge(1), ">= 1", "--repeats"),
    "timeout_s": Option(_SET, _F, 600.0, lambda v: v > 0, "> 0", "--timeout"),
    "cooldown_s": Option(_SET, _F, 0.0, _ge(0), ">= 0", "--cooldown"),
    "max_temperature_c": Option(_SET, _F, None, lambda v: 20 <= v <= 120,
                                "between 20 and 120", "--max-temperature"),
    "temperature_wait_s": Option(_SET, _F, 300.0, _ge(0), ">= 0"),
    "retries": Option(_SET, _I, 3, _ge(0), ">= 0", "--retries"),
    "retry_backoff_s": Option(_SET, _F, 5.0, _ge(0), ">= 0", "--retry-backoff"),
    # [accuracy]
    "accuracy": Option(_ACC, Kind.BOOL, True, flag="--no-accuracy"),
    "conf": Option(_ACC, _F, 0.001, lambda v: 0 <= v < 1, "in [0, 1)", "--conf"),
    "iou": Option(_ACC, _F, 0.7, lambda v: 0 < v <= 1, "in (0, 1]", "--iou"),
    "fresh": Option(_ACC, Kind.BOOL, False, flag="--fresh"),
    # [gate]: edgebench compare
    "latency_threshold": Option(_GATE, _F, 0.05, lambda v: 0 < v < 10, "in (0, 10)",
                                "--latency-threshold"),
    "map_threshold": Option(_GATE, _F, 0.5, _ge(0), ">= 0 (points)", "--map-threshold"),
    "alpha": Option(_GATE, _F, 0.002, lambda v: 0 < v < 1, "in (0, 1)", "--alpha"),
    "alpha_repeats": Option(_GATE, _F, 0.01, lambda v: 0 < v < 1, "in (0, 1)",
                            "--alpha-repeats"),
    "noise_factor": Option(_GATE, _F, 3.0, _ge(0), ">= 0", "--noise-factor"),
}


def problem(option: Option, value: Any) -> str | None:
    """What is wrong with one value of ``option`` (``must be an integer >= 1, got 0``), or
    ``None``; the same rule for a matrix file's values and for flags. An ``imgsz`` is
    checked by :func:`~edgebench.input_size.parse_imgsz`, a path only for its type."""
    kind = option.kind
    if kind is Kind.IMGSZ:
        try:
            parse_imgsz(value)
        except ValueError:
            return f"must be {IMGSZ_EXPECT}; got {value!r}"
        return None
    ok = {
        Kind.INT: isinstance(value, int) and not isinstance(value, bool),
        Kind.FLOAT: isinstance(value, (int, float)) and not isinstance(value, bool),
        Kind.BOOL: isinstance(value, bool),
        Kind.STR: isinstance(value, str) and value != "",
        Kind.PATH: (isinstance(value, PurePath) or (isinstance(value, str) and value != ""))
        and "\0" not in str(value),
    }[kind]
    if ok and kind is Kind.FLOAT and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if not ok or (option.check is not None and not option.check(value)):
        return f"must be {option.expected}, got {value!r}"
    return None


def merged(file_values: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then the matrix file, then command-line flags (``None`` = not given);
    both already checked (:class:`MatrixFile`, :func:`check_flags`).

    Backend options merge key by key: a flag changes one option, not the backend's table.
    """
    out: dict[str, Any] = {name: option.default for name, option in OPTIONS.items()}
    out["backend_options"] = {}
    out.update(file_values)
    options = {b: dict(o) for b, o in out["backend_options"].items()}
    for backend, given in (flags.get("backend_options") or {}).items():
        options.setdefault(backend, {}).update(given)
    out.update({k: v for k, v in flags.items() if v is not None and k != "backend_options"})
    out["backend_options"] = options
    return out


def parse_backend_option(text: str) -> tuple[str, str, Any]:
    """``ncnn.fp16_storage=true`` -> ("ncnn", "use_fp16_storage", True)."""
    match = re.fullmatch(r"([\w-]+)\.(\w+)=(.*)", text.strip())
    if not match:
        raise UserError(f"--backend-option {text!r} is not BACKEND.KEY=VALUE "
                        "(e.g. ncnn.fp16_storage=true).")
    backend, key, raw = match.groups()
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return backend, key, value


REPEAT_HINT = "give each value once (for more samples use --repeats or --iterations)"
"""The end of the refusal of a value listed twice (a flag's wording; the file says its keys)."""


def repeated_value(name: str, values: Any) -> Any | None:
    """The first value listed twice in the list option ``name`` (``None`` if none is).

    A repeated backend, device, model, thread count or compression would be measured
    twice under one case id, its samples pooled as if from more iterations; so a repeat is
    refused, not run. Model paths compare resolved (``a.onnx`` is ``./a.onnx``).
    """
    if not isinstance(values, tuple) or not OPTIONS[name].many:
        return None
    seen: set[Any] = set()
    for value in values:
        key = Path(value).expanduser().resolve() if isinstance(value, Path) else value
        if key in seen:
            return value
        seen.add(key)
    return None


def check_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The given flags (``None``: not given, left out) checked by the rules of the file
    (:func:`problem`) and converted as the file's values are (an ``imgsz`` text parsed, a
    float option a ``float``). Errors name the flag (``--iterations must be an integer
    >= 1, got 0.``); backend options are checked against each backend's own options when
    the run starts."""
    out: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name == "backend_options":
            out[name] = {b: dict(o) for b, o in value.items()}
            continue
        option = OPTIONS.get(name)
        if option is None:
            raise UserError(f"{name!r} is not a matrix option; options are "
                            f"{', '.join(sorted(OPTIONS))}.")
        label = option.flag or name
        if option.many and not isinstance(value, tuple):
            raise UserError(f"{label} must be a tuple of values, got {value!r}.")
        items = value if option.many else (value,)
        for item in items:
            wrong = problem(option, item)
            if wrong is not None:
                raise UserError(f"{label} {wrong}.")
        converted = tuple(_converted(option, item) for item in items)
        twice = repeated_value(name, converted)
        if twice is not None:
            raise UserError(f"{label} names {str(twice)!r} twice; {REPEAT_HINT}.")
        out[name] = converted if option.many else converted[0]
    return out


def _converted(option: Option, value: Any) -> Any:
    if option.kind is Kind.IMGSZ:
        return parse_imgsz(value)
    if option.kind is Kind.PATH:
        return Path(value)
    if option.kind is Kind.FLOAT:
        return float(value)
    return value
