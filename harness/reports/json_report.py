"""The versioned JSON report: rendering, loading (with upgrades) and the essential reporter."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..contracts import Reporter
from ..errors import UserError
from ..hookspecs import Register, hookimpl
from ..record_json import from_json_dict, to_json_dict
from ..records import SCHEMA_VERSION, RunReport


def upgrade_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added ``accuracy`` (mAP and fidelity) to every case: none in version 1."""
    for case in data.get("cases", []):
        if isinstance(case, dict):
            case.setdefault("accuracy", None)
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: upgrade_to_2}
"""``UPGRADES[n]`` turns a version ``n - 1`` report dict into version ``n``."""


def render_json(report: RunReport) -> str:
    return json.dumps(to_json_dict(report), indent=1, allow_nan=False) + "\n"


def load_report(path: Path) -> RunReport:
    """Read a report, upgrading older schema versions; refuse newer ones.

    Every problem raises :class:`UserError` with one sentence naming the file.
    """
    try:
        data = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise UserError(f"report {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"report {path} cannot be read ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"report {path} is not valid JSON (line {exc.lineno}): it may be "
                        "truncated or corrupt.") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"report {path} is not a valid report ({_short(exc)}).") from None
    return report_from_dict(data, str(path))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number; reports never hold it")


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def report_from_dict(data: Any, where: str = "report") -> RunReport:
    if not isinstance(data, dict) or not isinstance(data.get("schema_version"), int):
        raise UserError(f"{where} is not an edgebench report (no integer schema_version).")
    version = data["schema_version"]
    if version > SCHEMA_VERSION:
        raise UserError(f"{where} has schema version {version}, newer than this edgebench "
                        f"understands ({SCHEMA_VERSION}); upgrade edgebench.")
    if version < 1:
        raise UserError(f"{where} has an invalid schema version {version}.")
    try:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            data = UPGRADES[target](data)
            data["schema_version"] = target
        return from_json_dict(RunReport, data)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise UserError(f"{where} does not match report schema {SCHEMA_VERSION}: "
                        f"{_short(exc)}.") from None


class JsonReporter(Reporter):
    """``report.json``: the whole run, every raw sample included. Written after every case."""

    name: ClassVar[str] = "json"
    filename: ClassVar[str] = "report.json"

    def render(self, report: RunReport) -> str:
        return render_json(report)


@hookimpl
def edgebench_register_reporters(register: Register) -> None:
    register(JsonReporter)
