"""What ``edgebench plugins`` prints: every registered plugin, kind by kind, readable at 80
columns.

Per backend: where it comes from, the formats it runs, whether it is usable on this host
(``host_unavailable_reason``), the command that installs it on the host (``install_hint``)
and the one that installs its runtime on a device (:mod:`edgebench.runtime_install`). Per
compressor: its target format, whether it is usable here and its summary. Devices, reporters
and hook-only plugins: where they come from and whether they are usable here. Everything is
read from the contract members (:mod:`edgebench.contracts`), so every backend is shown the
same way.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Sequence
from typing import cast

from .contracts import Backend, Compressor
from .plugin_manager import PluginKind, Registration, Registry
from .runtime_install import device_requirements

WIDTH = 80
"""Columns the listing is wrapped to."""

_HEADINGS = {PluginKind.BACKEND: "backends", PluginKind.COMPRESSOR: "compressors",
             PluginKind.DEVICE: "devices", PluginKind.REPORTER: "reporters",
             PluginKind.HOOKS: "hook-only plugins"}


def _origin(reg: Registration) -> str:
    dist = f"{reg.distribution} {reg.version}, " if reg.distribution else ""
    return f"{dist}plugin {reg.plugin!r}"


def _usable(reg: Registration) -> str:
    reason = reg.unavailable_reason()
    return "yes" if reason is None else f"no: {reason}"


def _field(label: str, text: str, width: int) -> list[str]:
    """``    label: text`` wrapped to ``width``, continuation lines indented under it."""
    return textwrap.wrap(f"{label}: {text}" if label else text, width,
                         initial_indent="    ", subsequent_indent="      ",
                         break_on_hyphens=False) or [f"    {label}:"]


def _backend(reg: Registration, width: int) -> list[str]:
    cls = cast(type[Backend], reg.cls)
    lines = [f"  {reg.name}  ({_origin(reg)})"]
    lines += _field("formats", ", ".join(cls.formats), width)
    lines += _field("usable here", _usable(reg), width)
    lines += _field("install", cls.install_hint or "(not said by the plugin)", width)
    if cls.runtime_modules:
        requirements = device_requirements(cls)
        device = ("DEVICE_PYTHON -m pip install " + shlex.join(requirements) if requirements else
                  f"a package providing {' or '.join(cls.runtime_modules)}")
        lines += _field("on a device", device, width)
    return lines


def _compressor(reg: Registration, width: int) -> list[str]:
    cls = cast(type[Compressor], reg.cls)
    lines = [f"  {cls.name} for {cls.target}  ({_origin(reg)})"]
    lines += _field("usable here", _usable(reg), width)
    lines += _field("", cls.summary, width)
    return lines


def _other(reg: Registration, width: int) -> list[str]:
    hooks = f" (hooks: {', '.join(reg.hooks)})" if reg.hooks else ""
    return textwrap.wrap(f"{reg.name}  ({_origin(reg)}): usable here: {_usable(reg)}{hooks}",
                         width, initial_indent="  ", subsequent_indent="      ",
                         break_on_hyphens=False)


def render_plugins(registry: Registry, disabled: Sequence[str] = (), *,
                   width: int = WIDTH) -> str:
    """The listing of ``edgebench plugins`` for ``registry`` (``disabled``: the
    ``--disable`` names, said at the end), every line at most ``width`` columns except a
    single word longer than that (a path)."""
    out: list[str] = []
    for kind in PluginKind:
        regs = sorted(registry.of(kind).values(), key=lambda r: r.name)
        if not regs:
            continue
        out.append(f"{_HEADINGS[kind]}:")
        for reg in regs:
            if kind is PluginKind.BACKEND:
                out += _backend(reg, width)
            elif kind is PluginKind.COMPRESSOR:
                out += _compressor(reg, width)
            else:
                out += _other(reg, width)
    if disabled:
        out.append(f"disabled: {', '.join(sorted(disabled))}")
    return "\n".join(out)
