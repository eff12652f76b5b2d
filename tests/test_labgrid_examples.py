"""The board-farm examples: the matrix file loads, its labgrid URIs are valid, the
workflow's edgebench commands parse."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from edgebench.cli import build_parser
from edgebench.config import load_matrix

EXAMPLES = Path(__file__).parents[1] / "examples"
MATRIX = EXAMPLES / "labgrid-nightly.toml"
WORKFLOW = EXAMPLES / "labgrid-nightly-workflow.yml"


def test_matrix_file_loads_with_labgrid_devices() -> None:
    matrix = load_matrix(config=MATRIX)
    assert matrix.models[0].is_file()
    devices = list(matrix.devices)
    assert devices and all(d.startswith("labgrid://") for d in devices)
    assert any("count=2" in d for d in devices)
    try:
        from edgebench.devices.labgrid_uri import parse_uri
    except ImportError:
        pytest.skip("the labgrid device plugin (devices/labgrid_uri.py) is not here yet")
    requests = [parse_uri(d, {"LG_COORDINATOR": "farm.example:20408"}) for d in devices]
    assert [r.count for r in requests] == [2, 1]
    assert requests[0].filters == {"board": "rpi5"}
    assert requests[1].filters == {"name": "jetson-orin-1"}


def test_workflow_commands_parse() -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["bench"]
    assert job["env"]["LG_COORDINATOR"]
    lines = [line.split("  #")[0].strip() for step in job["steps"]
             for line in step.get("run", "").splitlines()]
    commands = [line.removesuffix("|| true") for line in lines
                if line.startswith(".venv/bin/edgebench")]
    assert len(commands) == 3
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # exits 2 on a bad flag
        assert args.command in ("run", "compare")
        assert Path(args.config).resolve() == MATRIX.resolve() or \
            (EXAMPLES.parent / args.config).resolve() == MATRIX.resolve()
