"""Records to and from plain JSON values, driven by the type hints: adding a field to a
record (``records.py``) needs nothing here. Upgrades of old reports are in
:mod:`edgebench.reports.json_report`."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, TypeVar, Union

T = TypeVar("T")


def to_json_dict(record: Any) -> Any:
    """Convert a record (or any nesting of records, enums, tuples, mappings) to JSON values."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json_dict(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, enum.Enum):
        return record.value
    if isinstance(record, (tuple, list)):
        return [to_json_dict(v) for v in record]
    if isinstance(record, Mapping):
        return {str(k): to_json_dict(v) for k, v in record.items()}
    if isinstance(record, PurePath):
        return str(record)
    return record


def from_json_dict(cls: type[T], data: Any) -> T:
    """Build ``cls`` from JSON values produced by :func:`to_json_dict`.

    Raises ``ValueError`` naming the first field that does not fit.
    """
    return typing.cast(T, _convert(cls, data, cls.__name__))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ValueError(errors[0])
        raise ValueError(f"{where}: {str(value)[:80]} fits none of {tp} ({errors[0]})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: missing field {f.name!r}")
        return typing.cast(Any, tp)(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        args = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(args[1], v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is Path:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported type {tp!r}")
