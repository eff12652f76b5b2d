"""Building the plugin manager and the registries of what plugins provide.

There is no module-level manager: every run (and every test) calls
:func:`make_plugin_manager` and :func:`collect_registry` and passes the results on.
"""

from __future__ import annotations

import difflib
import enum
import functools
import importlib.metadata
import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .contracts import Backend, Compressor, Device, Reporter
from .errors import PluginError
from .plugin_checks import checked_class, class_name

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

ESSENTIAL_PLUGINS = frozenset({"local", "json"})
"""Plugins a run cannot work without; ``--disable`` refuses them."""


class PluginKind(enum.StrEnum):
    """What a plugin registers (``edgebench plugins`` lists them by kind)."""

    BACKEND = "backend"
    COMPRESSOR = "compressor"
    DEVICE = "device"
    REPORTER = "reporter"
    HOOKS = "hooks"
    """A plugin that registers nothing and only implements other hooks (e.g. thermal)."""


_REGISTER_HOOKS = {
    PluginKind.BACKEND: "edgebench_register_backends",
    PluginKind.COMPRESSOR: "edgebench_register_compressors",
    PluginKind.DEVICE: "edgebench_register_devices",
    PluginKind.REPORTER: "edgebench_register_reporters",
}

BASE_CLASSES: Mapping[PluginKind, type] = {
    PluginKind.BACKEND: Backend,
    PluginKind.COMPRESSOR: Compressor,
    PluginKind.DEVICE: Device,
    PluginKind.REPORTER: Reporter,
}
"""The :mod:`edgebench.contracts` base class a registered class of each kind must subclass."""


@dataclass(frozen=True)
class Registration:
    """One thing a plugin registered."""

    kind: PluginKind
    name: str
    cls: type
    plugin: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...] = ()
    """For hook-only plugins: the hooks they implement."""

    @property
    def label(self) -> str:
        """How messages name who provides it: ``plugin 'toy' (edgebench-toy 0.3.1), class
        toy.ToyBackend`` (the entry-point name, its distribution and version where known,
        and the registered class)."""
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin {self.plugin!r}{dist}, class {class_name(self.cls)}"

    def unavailable_reason(self) -> str | None:
        """Why it cannot be used on this host, or ``None`` when it can."""
        if issubclass(self.cls, (Backend, Compressor, Device)):
            return self.cls.host_unavailable_reason()
        return None


@dataclass(frozen=True)
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    entries: Mapping[PluginKind, Mapping[str, Registration]] = field(default_factory=dict)

    def of(self, kind: PluginKind) -> Mapping[str, Registration]:
        """What was registered as ``kind``, by name (``name/target`` for compressors)."""
        return self.entries.get(kind, {})

    def get(self, kind: PluginKind, name: str) -> Registration:
        """The registration of ``kind`` called ``name``; :class:`PluginError` listing the
        known names when there is none."""
        try:
            return self.of(kind)[name]
        except KeyError:
            known = ", ".join(sorted(self.of(kind))) or "none"
            raise PluginError(
                f"unknown {kind.value} {name!r}: known {kind.value}s are {known} "
                f"(see 'edgebench plugins')."
            ) from None

    def all(self) -> list[Registration]:
        """Every registration, kind by kind."""
        return [r for kind in PluginKind for r in self.of(kind).values()]


def make_plugin_manager(
    *,
    disabled: Iterable[str] = (),
    load_entrypoints: bool = True,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> pluggy.PluginManager:
    """A new plugin manager with the hook specs, entry-point plugins and ``extra_plugins``.

    :param disabled: entry-point names to block (``--disable``); essential ones are refused.
    :param load_entrypoints: load the ``edgebench`` entry-point group (off in some tests).
    :param extra_plugins: ``(name, plugin)`` pairs registered after the entry points.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    installed = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in disabled:
        if name in ESSENTIAL_PLUGINS:
            raise PluginError(f"plugin {name!r} is essential and cannot be disabled.")
        if load_entrypoints and name not in installed:
            raise PluginError(f"there is no plugin named {name!r} to disable; installed: "
                              f"{', '.join(sorted(installed))}.")
        pm.set_blocked(name)
    loaded: dict[int, str] = {}
    if load_entrypoints:
        loaded = _import_entry_points(pm)
        _registering_plugins(pm, loaded, lambda: pm.load_setuptools_entrypoints(
            ENTRY_POINT_GROUP))
    for name, plugin in extra_plugins:
        loaded[id(plugin)] = f"plugin {name!r}"
        _registering_plugins(pm, loaded, functools.partial(pm.register, plugin, name=name))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_unknown_hook_sentence(pm, exc.plugin)) from None
    return pm


def _import_entry_points(pm: pluggy.PluginManager) -> dict[int, str]:
    """Import every entry point of the group that is not blocked, before pluggy registers
    them, so that one that fails to import is named; returns ``id(plugin) -> how messages
    name it`` (``plugin 'toy' (edgebench-toy-plugin 0.3.1)``)."""
    shown: dict[int, str] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.is_blocked(ep.name):
                continue
            who = f"plugin {ep.name!r} ({dist.metadata['name']} {dist.version})"
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not give a traceback
                raise PluginError(
                    f"{who} failed to load: importing {ep.value!r} raised "
                    f"{type(exc).__name__}: {exc}; fix or uninstall it, or skip it with "
                    f"'edgebench --disable {ep.name} COMMAND'.") from None
            shown[id(plugin)] = who
    return shown


def _registering_plugins(pm: pluggy.PluginManager, shown: Mapping[int, str],
                         register: Callable[[], object]) -> None:
    """Run ``register`` (pluggy registering plugins), turning pluggy's validation error for a
    hook implementation whose arguments the hook does not have into one sentence."""
    try:
        register()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_bad_arguments_sentence(pm, exc, shown)) from None


def _hook_arguments(pm: pluggy.PluginManager, hook_name: str) -> tuple[str, ...] | None:
    caller = getattr(pm.hook, hook_name, None)
    if not isinstance(caller, pluggy.HookCaller) or caller.spec is None:
        return None
    return tuple(caller.spec.argnames)


def _bad_arguments_sentence(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError,
                            shown: Mapping[int, str]) -> str:
    plugin = exc.plugin
    who = shown.get(id(plugin), f"plugin {plugin!r}")
    for attr in dir(plugin):
        if pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        wanted = _hook_arguments(pm, attr)
        if wanted is None:
            continue
        given = [p for p in inspect.signature(getattr(plugin, attr)).parameters]
        unknown = [a for a in given if a not in wanted]
        if unknown:
            return (f"{who} implements hook {attr!r} with argument(s) "
                    f"{', '.join(map(repr, unknown))} that the hook does not have; its "
                    f"arguments are {', '.join(map(repr, wanted)) or 'none'}.")
    return f"{who} could not be registered: {' '.join(str(exc).split())}"


def _unknown_hook_sentence(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or repr(plugin)
    who = f"plugin {name!r}"
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            who += f" ({dist.project_name} {dist.version})"
    known = [n for n in dir(pm.hook) if _hook_arguments(pm, n) is not None]
    unknown = sorted(c.name for c in pm.get_hookcallers(plugin) or () if not c.has_spec())
    hook = unknown[0] if unknown else "?"
    close = difflib.get_close_matches(hook, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else (
        f"the hooks are {', '.join(sorted(known))}.")
    return f"{who} implements an unknown hook {hook!r}; {hint}"


def collect_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every ``edgebench_register_*`` hook and index what was registered.

    A name registered twice for one kind, a registered class that is not right (see
    :func:`_checked_class`) or a register hook that raises gives :class:`PluginError` in one
    sentence naming the plugin.
    """
    dists = _distributions_by_plugin(pm)
    entries: dict[PluginKind, dict[str, Registration]] = {}
    for kind, hook_name in _REGISTER_HOOKS.items():
        table: dict[str, Registration] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name
            dist, version = dists.get(plugin_name, (None, None))
            try:
                impl.function(**_only_wanted(impl, {"register": _registrar(
                    kind, table, plugin_name, dist, version)}))
            except PluginError:
                raise
            except Exception as exc:  # a plugin's own bug: name it, never a traceback
                raise PluginError(
                    f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: "
                    f"{exc}; fix it, or skip it with 'edgebench --disable {plugin_name} "
                    "COMMAND'.") from None
        entries[kind] = table
    registering = {r.plugin for table in entries.values() for r in table.values()}
    hooks_only: dict[str, Registration] = {}
    for name, plugin in pm.list_name_plugin():
        if name in registering or plugin is None:
            continue
        hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or ())
        dist, version = dists.get(name, (None, None))
        hooks_only[name] = Registration(PluginKind.HOOKS, name, type(plugin), name, dist,
                                        version, hooks=tuple(hooks))
    entries[PluginKind.HOOKS] = hooks_only
    return Registry(entries)


def _only_wanted(impl: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in impl.argnames}


def _registrar(
    kind: PluginKind,
    table: dict[str, Registration],
    plugin_name: str,
    dist: str | None,
    version: str | None,
) -> Callable[[type], None]:
    base = BASE_CLASSES[kind]

    def register(cls: type) -> None:
        name, target = checked_class(cls, kind, base, plugin_name)
        if target is not None:  # a compressor: one technique, one class per target format
            name = f"{name}/{target}"
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"{kind.value} {name!r} is registered by both plugin {other!r} "
                f"and plugin {plugin_name!r}; disable one before the sub-command, e.g. "
                f"'edgebench --disable {plugin_name} run ...'."
            )
        table[name] = Registration(kind, name, cls, plugin_name, dist, version)

    return register


def _distributions_by_plugin(pm: pluggy.PluginManager) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin)
        if name is not None:
            out[name] = (dist.project_name, dist.version)
    # Plugins registered directly (not via entry points) report their module's distribution.
    for name, plugin in pm.list_name_plugin():
        if name in out or not isinstance(plugin, types.ModuleType):
            continue
        top = plugin.__name__.split(".")[0]
        dist_names = importlib.metadata.packages_distributions().get(top, [])
        if dist_names:
            out[name] = (dist_names[0], importlib.metadata.version(dist_names[0]))
    return out
