"""The one-line summary of a case's reason for tables and lists.

A case's ``reason`` (``report.json``) keeps a runner's whole message: runtimes put the cause
of an error on a later line (OpenVINO starts with lines naming its C++ source, ``Exception
from src/.../core.cpp:84:``, and ends with ``Summary:``; a Python traceback ends with the
exception). The Markdown table, the HTML report and ``compare`` show one line: the first
line's context (``load failed: OpenVINO could not read m.onnx``) and the key line, the
last line that says something rather than introducing or locating it.
"""

from __future__ import annotations

import re

_LOCATION = re.compile(
    r"(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|File \"[^\"]*\", line \d+.*)$")
"""Where in a runtime's own source an error was raised: no cause in it."""
_NOT_A_CAUSE = re.compile(r"^(Traceback \(most recent call last\):|Summary:|-- |\^+$|~+$)")
"""A traceback's header, OpenVINO's closing summary or its list items, caret markers."""


def summary(reason: str) -> str:
    """``reason`` on one line: itself when it has one line; else the context of its first
    line, ``": "``, its key line and how many more lines ``report.json`` holds."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else reason
    head = _LOCATION.sub("", lines[0]).rstrip(" :")
    key = next((line for line in reversed(lines[1:]) if _says_something(line)), lines[-1])
    if key in head:
        shown, rest = head, len(lines) - 1
    else:
        shown, rest = (f"{head}: {key}" if head else key), len(lines) - 2
    return f"{shown} ({rest} more line{'s' if rest != 1 else ''} in report.json)"


def _says_something(line: str) -> bool:
    """A line that states a cause: not a source location, not a header introducing more
    (ending in ``:``), not a traceback's or OpenVINO's framing."""
    return not (_LOCATION.match(line) or line.endswith(":") or _NOT_A_CAUSE.match(line))
