"""The matrix file (``edgebench run -c nightly.toml``): read and validate it.

Its options are defined in ``options.py`` (:data:`~edgebench.options.OPTIONS`): TOML
table, type and range, and the flag that overrides each. Errors name the file, the line,
the table and the key, and say what was expected::

    nightly.toml:14: [settings] iterations must be an integer >= 1, got 0.

Paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError
from .input_size import IMGSZ_EXPECT, parse_imgsz
from .options import OPTIONS, Kind, Option, Table, problem, repeated_value

TABLES = {
    Table.BACKEND_OPTIONS: "per-backend runner options: [backend_options.ncnn] fp16_storage = "
                           "true (checked against the backend's own option list when the run "
                           "starts)",
    Table.RUN: "what to run",
    Table.SETTINGS: "how each case is measured",
    Table.ACCURACY: "the accuracy pass",
    Table.GATE: "thresholds of edgebench compare",
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
        return UserError(f"{where}: [{table}] {key} {message}.")  # UserError: one '?' or '.'

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
        if option.many:
            items = value if isinstance(value, list) else [value]
            single = dataclasses.replace(option, many=False)
            return tuple(self._check(single, table, key, v) for v in items)
        wrong = problem(option, value)
        if wrong is not None:
            raise self._error(table, key, wrong if option.kind is not Kind.IMGSZ else
                              f"must be {IMGSZ_EXPECT} (e.g. 320 or [256, 320]), got {value!r}")
        if option.kind is Kind.IMGSZ:
            return parse_imgsz(value)
        if option.kind is Kind.PATH:
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # ~user of a user this machine does not have
                raise self._error(table, key, f"names the home of an unknown user: "
                                              f"{value!r}") from None
            return path if path.is_absolute() else (self.path.parent / path).resolve()
        if option.kind is Kind.FLOAT:
            return float(value)
        return value
