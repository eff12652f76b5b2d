"""The hook surface of edgebench: few, broad hooks, in the manner of tox and llm.

A plugin is any module or object with functions marked ``@hookimpl`` whose names match the
specifications below. Plugins are found through the ``edgebench`` entry-point group, the
first-party ones included, so this is the whole contract::

    # pyproject.toml of your distribution
    [project.entry-points.edgebench]
    mybackend = "my_package.my_backend"

    # my_package/my_backend.py
    from edgebench import hookimpl

    @hookimpl
    def edgebench_register_backends(register):
        register(MyBackend)

Hooks are called with keyword arguments, so an implementation may accept only the
arguments it uses. Misspelt hook names fail loudly when plugins are loaded.

Every specification below uses one docstring template: what the hook is for, its
parameters, what it returns, and when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .contracts import Device
    from .records import Case, CaseResult, RunReport

PROJECT_NAME = "edgebench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[type], None]


@hookspec
def edgebench_register_backends(register: Register) -> None:
    """Register runtime backends (subclasses of :class:`edgebench.contracts.Backend`).

    :param register: call it once per backend class; a name already taken by another
        plugin raises an error that names both plugins, and a class that does not subclass
        the base class, leaves one of its abstract methods unimplemented or lacks its
        ``name`` raises an error that names the plugin and the class.
    :returns: nothing.

    Called once, when the plugin manager is built.
    """


@hookspec
def edgebench_register_compressors(register: Register) -> None:
    """Register compression steps (subclasses of :class:`edgebench.contracts.Compressor`).

    :param register: as for :func:`edgebench_register_backends`.
    :returns: nothing.

    Called once, when the plugin manager is built.
    """


@hookspec
def edgebench_register_devices(register: Register) -> None:
    """Register device transports (subclasses of :class:`edgebench.contracts.Device`).

    :param register: as for :func:`edgebench_register_backends`; a device class is keyed by
        its URI ``scheme`` (``local``, ``ssh``, ``adb``).
    :returns: nothing.

    Called once, when the plugin manager is built.
    """


@hookspec
def edgebench_register_reporters(register: Register) -> None:
    """Register report writers (subclasses of :class:`edgebench.contracts.Reporter`).

    :param register: as for :func:`edgebench_register_backends`.
    :returns: nothing.

    Called once, when the plugin manager is built.
    """


@hookspec
def edgebench_device_info(device: Device, info: dict[str, Any]) -> None:
    """Add fields to a device's fingerprint before it is frozen into a ``DeviceInfo``.

    :param device: the connected device (a context manager already entered).
    :param info: the fingerprint read by the device probe, as a mutable mapping; add or
        correct keys of :class:`edgebench.records.DeviceInfo` (unknown keys are dropped).
    :returns: nothing.

    Called once per device per run, after the probe ran on it.
    """


@hookspec(firstresult=True)
def edgebench_run_case(case: Case, device: Device) -> CaseResult | None:
    """Run one case on one device and return its result.

    The core implements this hook (``trylast``); plugins wrap it with
    ``@hookimpl(wrapper=True)`` to add cool-downs, retries or power measurement, or
    return a result themselves to replace the core's execution.

    :param case: the case to run.
    :param device: the connected device; cases on one device never overlap.
    :returns: the :class:`edgebench.records.CaseResult`; the first non-``None`` wins.

    Called once per case.
    """


@hookspec
def edgebench_case_finished(result: CaseResult) -> None:
    """Observe a finished case (ok, skipped or failed).

    :param result: the result, already saved in the report on disk.
    :returns: nothing.

    Called after every case, in the order cases finish.
    """


@hookspec
def edgebench_session_finished(report: RunReport) -> None:
    """Observe the final report of a run.

    :param report: the complete (or interrupted) report, already written by the reporters.
    :returns: nothing.

    Called once, at the end of ``edgebench run``.
    """
