"""Calling the observer hooks so that a plugin's bug never costs a measurement.

``edgebench_case_finished``, ``edgebench_session_finished`` and ``edgebench_device_info``
only observe (or add fingerprint fields): each implementation is called on its own, and one
that raises is reported in one sentence on stderr, naming the plugin, while the run, the
other implementations and the report go on. (``edgebench_run_case`` is guarded where the
scheduler calls it: a raise there fails that case, with the reason, not the run.)
"""

from __future__ import annotations

import sys
from typing import Any

import pluggy

from .errors import sentence


def notify(caller: pluggy.HookCaller, **kwargs: Any) -> list[str]:
    """Call every implementation of an observer hook (``pm.hook.edgebench_case_finished``)
    with the keyword arguments it declares, last registered first (pluggy's order). Returns
    one sentence per implementation that raised (also printed to stderr as an
    ``edgebench: warning``)."""
    hook_name = caller.name
    problems = []
    for impl in reversed(caller.get_hookimpls()):
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:  # a plugin's bug: report it, keep the run and its results
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problem = (f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                       f"{type(exc).__name__}{': ' + text if text else ''}; the run goes on")
            print(sentence(f"edgebench: warning: {problem}."), file=sys.stderr)
            problems.append(problem)
    return problems


def run_case_failure(exc: Exception) -> str:
    """The reason of a case whose ``edgebench_run_case`` call raised (a plugin wrapping the
    hook, or a bug in edgebench): one sentence naming the exception, with its whole message
    (tables show its key line: ``reasons.summary``)."""
    text = str(exc).strip()
    return (f"edgebench_run_case raised {type(exc).__name__}{': ' + text if text else ''} "
            "(a plugin that wraps the hook, or a bug in edgebench; run with --disable NAME "
            "to leave a plugin out)")
