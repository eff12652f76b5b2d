"""Compression pipelines: parsing ``--compress``, checking the order, applying the steps.

A pipeline is a chain of steps joined by ``+`` (``prune:0.3+distill+int8``); ``--compress``
takes variants separated by commas, each benchmarked next to the uncompressed (fp32) model::

    --compress int8,prune:0.3           # two variants: int8, and pruned 30 %
    --compress prune:0.3+distill+int8   # one variant: pruned, distilled, then int8

A step is ``name`` or ``name:value`` (the compressor's ``primary_option``) or
``name:key=value:key=value``. MODEL steps (on the PyTorch model) must come before FORMAT
steps (on a backend's format): ``int8+prune`` is refused before any work starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .contracts import CompressionContext, Compressor, Stage, compressor_stage
from .errors import CaseSkipped, UserError
from .plugin_manager import PluginKind, Registry
from .plugin_options import checked_option
from .plugin_results import compressed
from .records import Artifact

_TRUE = ("true", "on", "yes")
_FALSE = ("false", "off", "no")


@dataclass(frozen=True)
class Step:
    """One parsed pipeline step: the compressor name and the options given for it."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """Canonical text, e.g. ``prune:ratio=0.3``; the report and case ids use it."""
        return ":".join([self.name, *(f"{k}={_text(v)}" for k, v in self.options)])

    @property
    def given(self) -> dict[str, Any]:
        """The options given, by key."""
        return dict(self.options)


@dataclass(frozen=True)
class CompressionPipeline:
    """A variant: its steps in order. The empty pipeline is the uncompressed model."""

    steps: tuple[Step, ...]

    @property
    def label(self) -> str:
        """Canonical text of the variant (``prune:ratio=0.3+int8``); ``fp32`` when empty."""
        return "+".join(s.label for s in self.steps) or "fp32"

    def model_steps(self, registry: Registry) -> tuple[Step, ...]:
        """The steps on the PyTorch model (before export)."""
        return tuple(s for s in self.steps if step_stage(s, registry) is Stage.MODEL)

    def format_steps(self, registry: Registry) -> tuple[Step, ...]:
        """The steps on a backend's format (after export)."""
        return tuple(s for s in self.steps if step_stage(s, registry) is Stage.FORMAT)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _coerce(raw: str) -> Any:
    """A step option's value from its text; typed against the defaults later."""
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def parse_step(text: str) -> tuple[str, list[tuple[str | None, Any]]]:
    """One step's text as ``(name, [(key or None, value)])``, values typed from their text
    (``true``/``3``/``0.3``); :class:`UserError` for an empty name or option."""
    parts = [p.strip() for p in text.strip().split(":")]
    if not parts[0]:
        raise UserError(f"compression step {text!r} has no name; write e.g. 'int8' or "
                        "'prune:0.3'.")
    args: list[tuple[str | None, Any]] = []
    for part in parts[1:]:
        if not part:
            raise UserError(f"compression step {text!r} has an empty option.")
        key, sep, value = part.partition("=")
        args.append((key.strip(), _coerce(value.strip())) if sep else (None, _coerce(part)))
    return parts[0], args


def parse_variants(values: Sequence[str]) -> list[list[tuple[str, list[tuple[str | None, Any]]]]]:
    """``--compress`` values (each may hold comma-separated variants) as raw step lists."""
    variants = []
    for value in values:
        for variant in str(value).split(","):
            if not variant.strip():
                raise UserError(f"--compress {value!r} has an empty variant; separate variants "
                                "with single commas.")
            variants.append([parse_step(step) for step in variant.split("+")])
    return variants


def compressor_classes(registry: Registry) -> list[type[Compressor]]:
    """Every registered compressor class (the registry refuses any that does not subclass
    :class:`Compressor`)."""
    return [r.cls for r in registry.of(PluginKind.COMPRESSOR).values()
            if issubclass(r.cls, Compressor)]


def compressors_named(registry: Registry, name: str) -> dict[str, type[Compressor]]:
    """Every registered compressor class called ``name``, by target format."""
    return {cls.target: cls for cls in compressor_classes(registry) if cls.name == name}


def known_names(registry: Registry) -> list[str]:
    """The names of every registered compression step, sorted."""
    return sorted({cls.name for cls in compressor_classes(registry)})


def step_stage(step: Step, registry: Registry) -> Stage:
    """MODEL when any compressor of the step's name works on the ``.pt``, else FORMAT."""
    classes = compressors_named(registry, step.name)
    return Stage.MODEL if any(compressor_stage(c) is Stage.MODEL for c in classes.values()) \
        else Stage.FORMAT


def resolve_step(name: str, args: list[tuple[str | None, Any]], registry: Registry) -> Step:
    """Check a step against its compressors' options; unknown names and keys, wrong types
    and bare values for a step without a primary option are one-sentence errors."""
    classes = compressors_named(registry, name)
    if not classes:
        known = ", ".join(known_names(registry)) or "none installed"
        raise UserError(f"unknown compression step {name!r}; known steps: {known} "
                        "(see 'edgebench plugins').")
    first = next(iter(classes.values()))
    defaults: Mapping[str, Any] = {}
    for cls in classes.values():  # same-named classes may add options of their own
        defaults = {**cls.option_defaults, **defaults}
    choices: dict[str, tuple[Any, ...]] = {}
    for cls in classes.values():
        choices.update(cls.option_choices)
    options: dict[str, Any] = {}
    for key, value in args:
        if key is None:
            key = first.primary_option
            if key is None:
                raise UserError(f"compression step {name!r} takes no bare value ({value!r}); "
                                f"write {name}:key=value with keys "
                                f"{', '.join(sorted(defaults)) or 'none'}.")
        value = checked_option(f"compression step {name!r}", key, value, defaults, choices)
        if key in options:
            raise UserError(f"compression step {name!r} sets option {key!r} twice.")
        options[key] = value
    return Step(name, tuple(sorted(options.items())))


def resolve_pipelines(values: Sequence[str], registry: Registry) -> list[CompressionPipeline]:
    """The variants of ``--compress`` as checked pipelines (fp32 is not among them)."""
    pipelines: list[CompressionPipeline] = []
    for raw in parse_variants(values):
        steps = tuple(resolve_step(name, args, registry) for name, args in raw)
        check_order(steps, registry)
        pipeline = CompressionPipeline(steps)
        if pipeline not in pipelines:
            pipelines.append(pipeline)
    return pipelines


def check_order(steps: Sequence[Step], registry: Registry) -> None:
    """MODEL steps work on the PyTorch model, so none may follow a FORMAT step."""
    seen_format: Step | None = None
    for step in steps:
        stage = step_stage(step, registry)
        if stage is Stage.FORMAT:
            seen_format = seen_format or step
        elif seen_format is not None:
            raise UserError(f"compression step {step.name!r} changes the PyTorch model and "
                            f"cannot follow {seen_format.name!r}, which works on the exported "
                            f"format; put it first (e.g. {step.name}+{seen_format.name}).")
    names = [s.name for s in steps]
    for name in set(names):
        if names.count(name) > 1 and step_stage(Step(name), registry) is Stage.FORMAT:
            raise UserError(f"compression step {name!r} appears twice in one pipeline.")


def options_for(cls: type[Compressor], step: Step) -> dict[str, Any]:
    """The options one class gets: its defaults updated by what the step gave that it has."""
    defaults = dict(cls.option_defaults)
    return {**defaults, **{k: v for k, v in step.options if k in defaults}}


def compressor_for(step: Step, target: str, registry: Registry) -> type[Compressor]:
    """The class doing ``step`` on ``target``; :class:`CaseSkipped` (with the reason) when
    none exists for that format or the one that exists cannot work on this host."""
    classes = compressors_named(registry, step.name)
    cls = classes.get(target)
    if cls is None:
        have = ", ".join(sorted(classes)) or "none"
        raise CaseSkipped(f"no {step.name!r} compressor for the {target} format (it exists "
                          f"for: {have})")
    reason = cls.host_unavailable_reason()
    if reason:
        raise CaseSkipped(f"{step.name} for {target} is unavailable: {reason}")
    return cls


def apply_steps(model: Artifact, steps: Sequence[Step], target: str, registry: Registry,
                context: CompressionContext) -> tuple[Artifact, tuple[str, ...]]:
    """Apply ``steps`` in order to ``model`` (all must work on ``target``), each result's
    ``pipeline`` extended by the step's label. Returns the artifact and the steps' notes
    for the report (``"int8: kept in float: ..."``). What a compressor returns is checked
    (:func:`edgebench.plugin_results.compressed`): a wrong value is a :class:`CaseError`
    naming the plugin."""
    notes: list[str] = []
    for step in steps:
        cls = compressor_for(step, target, registry)
        reg = registry.of(PluginKind.COMPRESSOR)[f"{cls.name}/{cls.target}"]
        out, said = compressed(reg, cls(), model, options_for(cls, step), context, step.label)
        model = dataclasses.replace(out, pipeline=(*model.pipeline, step.label))
        notes += [f"{step.label}: {note}" for note in said]
    return model, tuple(notes)


def check_steps(pipelines: Sequence[CompressionPipeline], registry: Registry,
                context: CompressionContext) -> None:
    """Every step's ``check`` (calibration set size and the like) before long work starts."""
    for pipeline in pipelines:
        for step in pipeline.steps:
            for cls in compressors_named(registry, step.name).values():
                if cls.host_unavailable_reason():
                    continue
                cls().check(options_for(cls, step), context)


def torch_safe_globals(registry: Registry) -> tuple[str, ...]:
    """Every ``"package.module:Class"`` the registered compressors declare in
    :attr:`Compressor.torch_safe_globals` (classes their ``.pt`` outputs pickle), sorted."""
    return tuple(sorted({name for cls in compressor_classes(registry)
                         for name in cls.torch_safe_globals}))


def describe_steps(registry: Registry) -> list[tuple[str, str, str]]:
    """(name, target, summary) of every compressor, for ``edgebench plugins``."""
    return sorted((cls.name, cls.target, cls.summary) for cls in compressor_classes(registry))
