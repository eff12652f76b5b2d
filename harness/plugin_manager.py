"""Building the plugin manager and the registries of what plugins provide.

There is no module-level manager: every run (and every test) calls
:func:`make_plugin_manager` and :func:`collect_registry` and passes the results on.
"""

from __future__ import annotations

import enum
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

    def unavailable_reason(self) -> str | None:
        """Why it cannot be used on this host, or ``None`` when it can."""
        if issubclass(self.cls, (Backend, Compressor)):
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
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party plugin must not give a traceback
            raise PluginError(f"a plugin failed to load: {type(exc).__name__}: {exc}.") from exc
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}.") from exc
    return pm


def collect_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every ``edgebench_register_*`` hook and index what was registered.

    A name registered twice for one kind raises :class:`PluginError` naming both plugins.
    """
    dists = _distributions_by_plugin(pm)
    entries: dict[PluginKind, dict[str, Registration]] = {}
    for kind, hook_name in _REGISTER_HOOKS.items():
        table: dict[str, Registration] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name
            dist, version = dists.get(plugin_name, (None, None))
            impl.function(**_only_wanted(impl, {"register": _registrar(
                kind, table, plugin_name, dist, version)}))
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
        name, target = _checked_class(cls, kind, base, plugin_name)
        if target is not None:  # a compressor: one technique, one class per target format
            name = f"{name}/{target}"
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"{kind.value} {name!r} is registered by both plugin {other!r} "
                f"and plugin {plugin_name!r}; disable one with --disable."
            )
        table[name] = Registration(kind, name, cls, plugin_name, dist, version)

    return register


def _checked_class(cls: object, kind: PluginKind, base: type, plugin_name: str
                   ) -> tuple[str, str | None]:
    """``(name, target)`` of a class registered as ``kind`` (``target``: compressors only,
    else ``None``); :class:`PluginError` in one sentence naming the plugin and the class when
    it does not subclass ``base``, leaves an abstract method unimplemented or a required
    class attribute unset or not a non-empty string."""
    shown = _class_name(cls)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"plugin {plugin_name!r} registered {shown} as a {kind.value}, but it "
                          f"does not subclass edgebench.contracts.{base.__name__}; make it a "
                          "subclass (the base class gives every optional member a default).")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(vars(cls).get("__abstractmethods__", ())))
        raise PluginError(f"plugin {plugin_name!r} registered {shown} without implementing "
                          f"{missing} (abstract in edgebench.contracts.{base.__name__}).")
    try:  # the required class attributes (declared, without a default, by the base class)
        if issubclass(cls, Device):
            values: dict[str, object] = {"scheme": cls.scheme}
        elif issubclass(cls, Compressor):
            values = {"name": cls.name, "target": cls.target}
        elif issubclass(cls, (Backend, Reporter)):
            values = {"name": cls.name}
    except AttributeError as exc:
        values = {exc.name or "name": None}
    for attr, value in values.items():
        if not isinstance(value, str) or not value:
            raise PluginError(f"plugin {plugin_name!r} registered {shown} without a string "
                              f"{attr!r} (a non-empty class attribute).")
    if issubclass(cls, Compressor) and not all(
            isinstance(g, str) and ":" in g for g in cls.torch_safe_globals):
        raise PluginError(f"plugin {plugin_name!r} registered {shown} with torch_safe_globals "
                          f"{cls.torch_safe_globals!r}; give a tuple of "
                          "'package.module:Class' strings.")
    name, *target = (str(v) for v in values.values())
    return name, target[0] if target else None


def _class_name(cls: object) -> str:
    """How a registered object is named in messages: ``module.QualifiedName`` for a class."""
    if isinstance(cls, type):
        return f"{cls.__module__}.{cls.__qualname__}"
    return repr(cls)


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
