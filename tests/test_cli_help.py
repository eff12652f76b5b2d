"""``edgebench run --help`` says what the harness does: every device scheme, the threads
each backend gets without ``--threads``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgebench.cli_parser import build_parser

LITERT_RUNNER = Path(__file__).resolve().parents[1] / "plugins/backends/litert/litert_runner.py"


def _run_help() -> str:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices["run"].format_help().split())


def test_device_help_names_every_scheme() -> None:
    text = _run_help()
    for scheme in ("local", "ssh://", "adb://", "labgrid://"):
        assert scheme in text


def test_threads_help_names_litert_default_of_every_core() -> None:
    # The LiteRT runner gives the interpreter every usable core when no --threads is given.
    assert re.search(r'request\.get\("threads"\) or agent\.usable_cores\(\)',
                     LITERT_RUNNER.read_text())
    assert "except litert: every usable core" in _run_help()
