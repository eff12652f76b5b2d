"""The JSON Schema of ``report.json``, generated from the record dataclasses.

The committed copy (``harness/schema/report.schema.json``) is what external tools validate
against; a test fails when it differs from what this module generates, so the two cannot
drift. Regenerate with ``python -m edgebench.schema > harness/schema/report.schema.json``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from .records import SCHEMA_VERSION, RunReport

SCHEMA_PATH = Path(__file__).parent / "schema" / "report.schema.json"


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a report of the current schema version."""
    defs: dict[str, Any] = {}
    _schema_of(RunReport, defs)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://edgebench.invalid/report-{SCHEMA_VERSION}.schema.json",
        "title": f"edgebench report, schema version {SCHEMA_VERSION}",
        **defs[RunReport.__name__],
        "$defs": {k: v for k, v in sorted(defs.items()) if k != RunReport.__name__},
    }
    schema["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return schema


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of(a, defs) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(tp):
        name = typing.cast(type, tp).__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(tp)
            fields = dataclasses.fields(tp)
            defs[name] = {
                "type": "object",
                "description": (tp.__doc__ or "").strip().splitlines()[0],
                "properties": {f.name: _schema_of(hints[f.name], defs) for f in fields},
                "required": [f.name for f in fields],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0], defs)}
        return {"type": "array", "prefixItems": [_schema_of(a, defs) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        args = typing.get_args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": _schema_of(args[1], defs)}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean",
              Path: "string"}  # a path is written as its string (record_json.to_json_dict)
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no JSON Schema for {tp!r}")


def main() -> int:
    json.dump(report_schema(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
