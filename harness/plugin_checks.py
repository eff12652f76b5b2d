"""Checking a class a plugin registers against its contract (:mod:`edgebench.contracts`):
the right base class, no abstract method left, the required names set, and every declared
member of the type the contract gives it. Each refusal is one sentence
(:class:`~edgebench.errors.PluginError`) naming the plugin, the class and the member.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from .contracts import Backend, Compressor, Device, Reporter
from .errors import PluginError


def checked_class(cls: object, kind: str, base: type, plugin_name: str
                   ) -> tuple[str, str | None]:
    """``(name, target)`` of a class registered as a ``kind`` (a
    :class:`~edgebench.plugin_manager.PluginKind` value; ``target``: compressors only,
    else ``None``); :class:`PluginError` in one sentence naming the plugin and the class when
    it is an instance, does not subclass ``base``, leaves an abstract method unimplemented,
    a required class attribute unset or not a non-empty string, or declares an optional
    member of the wrong type (:func:`member_problem`)."""
    shown = class_name(cls)
    if isinstance(cls, base):
        raise PluginError(f"plugin {plugin_name!r} registered an instance of "
                          f"{class_name(type(cls))} as a {kind}; register the class "
                          f"itself (register({type(cls).__qualname__}), not "
                          f"register({type(cls).__qualname__}()).")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"plugin {plugin_name!r} registered {shown} as a {kind}, but it "
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
    problem = member_problem(cls)
    if problem is not None:
        raise PluginError(f"plugin {plugin_name!r} registered {shown} with {problem}.")
    name, *target = (str(v) for v in values.values())
    return name, target[0] if target else None


def _is_str_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and v for v in value)


_OPTION_TYPES = (bool, int, float, str)


def member_problem(cls: type) -> str | None:
    """What is wrong with the optional class members of ``cls`` as declared (with their
    types) in :mod:`edgebench.contracts`: ``"<member> = <value> (<what it is>); it must be
    <what it must be>"``, or ``None`` when they are all right."""
    def bad(member: str, value: object, must: str) -> str:
        return f"{member} = {value!r} (a {type(value).__name__}); it must be {must}"

    str_tuples: dict[str, object] = {}
    if issubclass(cls, Backend):
        str_tuples = {"formats": cls.formats, "runtime_modules": cls.runtime_modules,
                      "device_requirements": cls.device_requirements}
    elif issubclass(cls, Compressor):
        str_tuples = {"torch_safe_globals": cls.torch_safe_globals}
    for member, value in str_tuples.items():
        if not _is_str_tuple(value):
            return bad(member, value, "a tuple of non-empty strings, e.g. ('onnx',)")
    if issubclass(cls, Backend) and not cls.formats:
        return bad("formats", cls.formats, "a tuple of at least one format, e.g. ('onnx',)")
    if issubclass(cls, Compressor) and not all(":" in g for g in cls.torch_safe_globals):
        return bad("torch_safe_globals", cls.torch_safe_globals,
                   "a tuple of 'package.module:Class' strings")
    if issubclass(cls, Backend) and cls.compression_format is not None and (
            not isinstance(cls.compression_format, str) or not cls.compression_format):
        return bad("compression_format", cls.compression_format,
                   "None or a format name, e.g. 'openvino'")
    if issubclass(cls, Backend) and not isinstance(cls.install_hint, str):
        return bad("install_hint", cls.install_hint, "a string")
    if issubclass(cls, Compressor) and (not isinstance(cls.summary, str) or not cls.summary):
        return bad("summary", cls.summary, "a non-empty string")
    if issubclass(cls, Reporter):
        filename = cls.__dict__.get("filename") or next(
            (c.__dict__["filename"] for c in cls.__mro__ if "filename" in c.__dict__), None)
        if not isinstance(filename, str) or not filename:
            return "no filename, or not a non-empty string; set it, e.g. 'report.txt'"
    if issubclass(cls, Device) and not isinstance(cls.has_host_keys, bool):
        return bad("has_host_keys", cls.has_host_keys, "True or False")
    if not issubclass(cls, (Backend, Compressor)):
        return None
    defaults, choices = cls.option_defaults, cls.option_choices
    if not isinstance(defaults, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, _OPTION_TYPES)
            for k, v in defaults.items()):
        return bad("option_defaults", defaults, "a mapping of option name (str) to a "
                   "default that is a bool, int, float or str, e.g. {'fp16': False}")
    if not isinstance(choices, Mapping):
        return bad("option_choices", choices,
                   "a mapping of option name to a tuple of allowed values")
    for key, allowed in choices.items():
        if key not in defaults:
            return bad("option_choices", choices, "keyed by options of option_defaults, "
                       f"and {key!r} is not one")
        if not isinstance(allowed, tuple) or defaults[key] not in allowed:
            return bad("option_choices", choices, f"a tuple of allowed values for {key!r} that "
                       f"contains its default {defaults[key]!r}")
    if issubclass(cls, Backend):
        batch = cls.max_batch
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool)
                                  or batch < 1):
            return bad("max_batch", batch, "None (any batch) or an int >= 1")
        if cls.boxes_normalised is not None and not isinstance(cls.boxes_normalised, bool):
            return bad("boxes_normalised", cls.boxes_normalised, "None (detect), True or False")
    if issubclass(cls, Compressor):
        primary = cls.primary_option
        if primary is not None and (not isinstance(primary, str) or primary not in defaults):
            return bad("primary_option", primary, "None or one of the options of option_defaults ("
                       f"{', '.join(map(repr, defaults)) or 'none'})")
    return None


def class_name(cls: object) -> str:
    """How a registered object is named in messages: ``module.QualifiedName`` for a class."""
    if isinstance(cls, type):
        return f"{cls.__module__}.{cls.__qualname__}"
    return repr(cls)
