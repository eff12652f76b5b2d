"""The matrix file (``edgebench run -c nightly.toml``): read, validate, merge with flags.

Every option has one definition here (:data:`OPTIONS`): its TOML table, its type and
range, and the command-line flag that overrides it. Errors name the file, the line, the
table and the key, and say what was expected::

    nightly.toml:14: [settings] iterations must be an integer >= 1, got 0.

Paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .input_size import IMGSZ_EXPECT, parse_imgsz


@dataclass(frozen=True)
class Option:
    table: str
    kind: str  # "int", "float", "bool", "str", "path", "imgsz", "str-list", "path-list",
    # "int-list"
    default: Any
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    flag: str = ""


def _ge(n: float) -> Callable[[Any], bool]:
    return lambda v: v >= n


OPTIONS: dict[str, Option] = {
    # [run]: what to run
    "models": Option("run", "path-list", None, flag="--model"),
    "baseline_model": Option("run", "path", None, flag="--baseline-model"),
    "backends": Option("run", "str-list", (), flag="--backend"),
    "devices": Option("run", "str-list", ("local",), flag="--device"),
    "compress": Option("run", "str-list", (), flag="--compress"),
    "data": Option("run", "path", None, flag="--data"),
    "train_data": Option("run", "path", None, flag="--train-data"),
    "images": Option("run", "int", None, _ge(1), ">= 1", "--images"),
    "imgsz": Option("run", "imgsz", None, flag="--imgsz"),
    "output": Option("run", "path", Path("edgebench-results"), flag="--output"),
    # [settings]: how each case is measured
    "warmup": Option("settings", "int", 10, _ge(0), ">= 0", "--warmup"),
    "warmup_s": Option("settings", "float", 0.0, _ge(0), ">= 0", "--warmup-s"),
    "iterations": Option("settings", "int", 100, _ge(1), ">= 1", "--iterations"),
    "min_duration_s": Option("settings", "float", 0.0, _ge(0), ">= 0", "--min-duration"),
    "threads": Option("settings", "int-list", (None,), _ge(1), ">= 1", "--threads"),
    "repeats": Option("settings", "int", 1, _ge(1), ">= 1", "--repeats"),
    "timeout_s": Option("settings", "float", 600.0, lambda v: v > 0, "> 0", "--timeout"),
    "cooldown_s": Option("settings", "float", 0.0, _ge(0), ">= 0", "--cooldown"),
    "max_temperature_c": Option("settings", "float", None, lambda v: 20 <= v <= 120,
                                "between 20 and 120", "--max-temperature"),
    "temperature_wait_s": Option("settings", "float", 300.0, _ge(0), ">= 0"),
    "retries": Option("settings", "int", 3, _ge(0), ">= 0", "--retries"),
    "retry_backoff_s": Option("settings", "float", 5.0, _ge(0), ">= 0", "--retry-backoff"),
    # [accuracy]
    "accuracy": Option("accuracy", "bool", True, flag="--no-accuracy"),
    "conf": Option("accuracy", "float", 0.001, lambda v: 0 <= v < 1, "in [0, 1)", "--conf"),
    "iou": Option("accuracy", "float", 0.7, lambda v: 0 < v <= 1, "in (0, 1]", "--iou"),
    # [gate]: edgebench compare
    "latency_threshold": Option("gate", "float", 0.05, lambda v: 0 < v < 10, "in (0, 10)",
                                "--latency-threshold"),
    "map_threshold": Option("gate", "float", 0.5, _ge(0), ">= 0 (points)", "--map-threshold"),
    "alpha": Option("gate", "float", 0.002, lambda v: 0 < v < 1, "in (0, 1)", "--alpha"),
    "alpha_repeats": Option("gate", "float", 0.01, lambda v: 0 < v < 1, "in (0, 1)",
                            "--alpha-repeats"),
    "noise_factor": Option("gate", "float", 3.0, _ge(0), ">= 0", "--noise-factor"),
}

TABLES = {
    "backend_options": "per-backend runner options: [backend_options.ncnn] fp16_storage = "
                       "true (checked against the backend's own option list when the run "
                       "starts)",
    "run": "what to run",
    "settings": "how each case is measured",
    "accuracy": "the accuracy pass",
    "gate": "thresholds of edgebench compare",
}
_TABLE_KEY = {"accuracy": "enabled"}  # [accuracy] enabled = false -> option "accuracy"


def _key_in_file(option: str) -> str:
    return _TABLE_KEY.get(option, option)


def _line_of(text: str, table: str, key: str) -> int | None:
    """1-based line of ``key = ...`` inside ``[table]`` (or of the table header)."""
    current = None
    header_line = None
    for lineno, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            current = header.group(1).strip()
            if current == table:
                header_line = lineno
            continue
        if current == table and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return lineno
    return header_line


class MatrixFile:
    """A parsed, validated matrix file: ``values`` maps option names to checked values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"matrix file {path} does not exist.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"matrix file {path} cannot be read ({exc}).") from None
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML: {exc}.") from None
        self.values: dict[str, Any] = {}
        self._validate(data)

    def _error(self, table: str, key: str, message: str) -> UserError:
        line = _line_of(self.text, table, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return UserError(f"{where}: [{table}] {key} {message}.")

    def _validate(self, data: dict[str, Any]) -> None:
        for table, content in data.items():
            if table not in TABLES:
                close = difflib.get_close_matches(table, TABLES, n=1)
                hint = f"; did you mean [{close[0]}]?" if close else \
                    f"; tables are {', '.join(f'[{t}]' for t in TABLES)}"
                line = _line_of(self.text, table, "\0")
                where = f"{self.path}:{line}" if line else str(self.path)
                raise UserError(f"{where}: unknown table [{table}]{hint}.")
            if not isinstance(content, dict):
                raise UserError(f"{self.path}: [{table}] must be a table.")
            if table == "backend_options":
                self.values["backend_options"] = self._backend_options(content)
                continue
            known = {_key_in_file(k): k for k, o in OPTIONS.items() if o.table == table}
            for key, value in content.items():
                if key not in known:
                    close = difflib.get_close_matches(key, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else \
                        f"; keys are {', '.join(sorted(known))}"
                    raise self._error(table, key, f"is not a known key{hint}")
                name = known[key]
                self.values[name] = self._check(OPTIONS[name], table, key, value)
                twice = repeated_value(name, self.values[name])
                if twice is not None:
                    raise self._error(table, key, f"names {str(twice)!r} twice; give each "
                                      "value once (for more samples use repeats or iterations)")

    def _backend_options(self, content: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for backend, options in content.items():
            table = f"backend_options.{backend}"
            if not isinstance(options, dict):
                raise self._error("backend_options", backend,
                                  f"must be a table such as [{table}]")
            for key, value in options.items():
                if not isinstance(value, (bool, int, float, str)):
                    raise self._error(table, key, f"must be a boolean, number or string, "
                                                  f"got {value!r}")
            out[backend] = dict(options)
        return out

    def _check(self, option: Option, table: str, key: str, value: Any) -> Any:
        kind = option.kind
        if kind == "imgsz":
            try:
                return parse_imgsz(value)
            except ValueError:
                raise self._error(table, key, f"must be {IMGSZ_EXPECT} (e.g. 320 or "
                                              f"[256, 320]), got {value!r}") from None
        if kind.endswith("-list"):
            items = value if isinstance(value, list) else [value]
            single = kind.removesuffix("-list")
            return tuple(self._check(Option(table, single, None, option.check, option.expect),
                                     table, key, v) for v in items)
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str) and value != "",
            "path": isinstance(value, str) and value != "" and "\0" not in value,
        }[kind]
        article = {"int": "an integer", "float": "a number", "bool": "true or false",
                   "str": "a non-empty string", "path": "a path (string)"}[kind]
        if ok and kind == "float" and not math.isfinite(value):
            raise self._error(table, key, f"must be a finite number, got {value!r}")
        if not ok or (option.check is not None and not option.check(value)):
            expect = f"{article} {option.expect}".strip()
            raise self._error(table, key, f"must be {expect}, got {value!r}")
        if kind == "path":
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # ~user of a user this machine does not have
                raise self._error(table, key, f"names the home of an unknown user: "
                                              f"{value!r}") from None
            return path if path.is_absolute() else (self.path.parent / path).resolve()
        if kind == "float":
            return float(value)
        return value


def merged(file_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the matrix file, then command-line flags (``None`` = not given).

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
    if not isinstance(values, tuple) or not OPTIONS[name].kind.endswith("-list"):
        return None
    seen: set[Any] = set()
    for value in values:
        key = Path(value).expanduser().resolve() if isinstance(value, Path) else value
        if key in seen:
            return value
        seen.add(key)
    return None


def check_flags(flags: dict[str, Any]) -> None:
    """Validate command-line values with the same rules; errors name the flag."""
    for name, value in flags.items():
        if name == "backend_options":
            continue  # checked against each backend's own options when the run starts
        option = OPTIONS[name]
        twice = repeated_value(name, value)
        if twice is not None:
            raise UserError(f"{option.flag} names {str(twice)!r} twice; {REPEAT_HINT}.")
        if value is None or option.check is None:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"{option.flag} must be a finite number, got {item}.")
            if item is not None and not option.check(item):
                raise UserError(f"{option.flag} must be {option.expect}, got {item}.")
