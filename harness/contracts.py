"""What a backend, device or reporter plugin provides. Structural: no base class needed."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable

from .input_size import ImgSz
from .records import (
    Artifact,
    DeviceInfo,
    LatencyStats,
    MemoryStats,
    RunReport,
    RunSettings,
    RuntimeInfo,
)


@dataclass(frozen=True)
class Completed:
    """Result of a command run on a device."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


@runtime_checkable
class Backend(Protocol):
    """A runtime that executes a model format on a device.

    The host side (this class) prepares the artifact; the device side is a self-contained
    script, :meth:`runner`, that needs only the standard library, numpy and the runtime.
    """

    name: ClassVar[str]
    """Unique name, used on the command line (``--backend onnxruntime``)."""
    formats: ClassVar[tuple[str, ...]]
    """Model formats the runner loads, e.g. ``("onnx",)``."""
    runtime_modules: ClassVar[tuple[str, ...]]
    """Importable modules, any one of which the runner needs on the device."""
    install_hint: ClassVar[str]
    """How to install the runtime, e.g. ``pip install 'edgebench[onnxruntime]'``."""

    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        """Produce this backend's format from ``source`` into ``workdir``, at ``imgsz`` (one
        side or (height, width); ``None``: the model's own size) where the format is made.

        Return ``source`` itself when it is already in a runnable format. Raise
        :class:`edgebench.errors.UserError` when the format cannot be made from it.
        """
        ...

    def runner(self) -> Path:
        """The device-side script; it may import ``edgebench_agent`` (the shared runner code)."""
        ...

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        """Backend-specific options passed to the runner in its request."""
        ...

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        """Why this backend cannot run on a device with this fingerprint, or ``None``."""
        ...

    # Optional members the core uses when a backend class has them:
    #
    # ``host_unavailable_reason()`` (classmethod): why it cannot run on this host, or None.
    # ``boxes_normalised`` (class attribute): True when its detection boxes come out divided
    #     by the input size (LiteRT exports), False when in pixels, None to detect.
    # ``option_defaults`` / ``option_choices`` (class attributes): its runner options, see
    #     :func:`resolve_options`.
    # ``max_batch`` (class attribute, ``int | None``): the largest static batch (images per
    #     inference) its runtime runs; a model with a larger one is skipped before any
    #     conversion, with one sentence (``runner.refuse_batch``). ``None`` or absent: any.
    # ``tolerance(artifact, runtime) -> Tolerance | None``: how far its outputs may be from
    #     the float reference before the case fails (the agreement check). Without it the
    #     core applies :data:`edgebench.accuracy.FP32_TOLERANCE` to uncompressed artifacts.


def resolve_options(backend: Any, settings: RunSettings) -> dict[str, Any]:
    """A backend's runner options: its ``option_defaults`` updated with what the run asked
    for (``settings.backend_options[backend.name]``), each checked against the default's
    type and ``option_choices``. Raises :class:`edgebench.errors.UserError` naming the key.
    """
    defaults: Mapping[str, Any] = getattr(backend, "option_defaults", {})
    choices: Mapping[str, tuple[Any, ...]] = getattr(backend, "option_choices", {})
    given: Mapping[str, Any] = (getattr(settings, "backend_options", None) or {}).get(
        backend.name, {})
    options = dict(defaults)
    for key, value in given.items():
        options[key] = checked_option(f"backend {backend.name!r}", key, value, defaults,
                                      choices)
    return options


_TRUE_WORDS = ("1", "true", "on", "yes")
_BOOL_WORDS = (*_TRUE_WORDS, "0", "false", "off", "no")


def checked_option(owner: str, key: str, value: Any, defaults: Mapping[str, Any],
                   choices: Mapping[str, tuple[Any, ...]]) -> Any:
    """``value`` for option ``key`` of ``owner`` (a backend or a compression step), typed
    like its default (``"on"``/``1`` for a bool, ``3`` for a float are taken) and checked
    against ``choices``; raises :class:`edgebench.errors.UserError` naming the key."""
    from .errors import UserError

    if key not in defaults:
        known = ", ".join(sorted(defaults)) or "none"
        raise UserError(f"{owner} has no option {key!r}; its options are {known}.")
    kind = type(defaults[key])
    if kind is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        value = value.lower() in _TRUE_WORDS
    elif kind is bool and value in (0, 1) and not isinstance(value, bool):
        value = bool(value)
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is str and isinstance(value, (int, float)):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{owner} option {key!r} must be a {kind.__name__}, got {value!r}.")
    if key in choices and value not in choices[key]:
        raise UserError(f"{owner} option {key!r} must be one of "
                        f"{', '.join(map(str, choices[key]))}; got {value!r}.")
    return value


class Stage(enum.Enum):
    """Where a compression step works, which fixes its place in a pipeline."""

    MODEL = "model"
    """On the PyTorch model, before export (pruning, distillation): ``.pt`` in, ``.pt`` out.
    Done once per source and shared by every backend."""
    FORMAT = "format"
    """On one backend's format, after export (quantization): runs once per backend."""


@dataclass(frozen=True)
class CompressionContext:
    """What a compression step may use besides the model it transforms."""

    source: Artifact
    """For FORMAT steps: the model the backend's export was made from, after the pipeline's
    MODEL steps (a ``.pt``, or the ``.onnx`` the user gave); steps that quantize while
    exporting (LiteRT int8 through Ultralytics) start from it instead of the exported model.
    For MODEL steps: the uncompressed model the pipeline started from (distillation's
    default teacher)."""
    data_yaml: Path | None
    """A YOLO-layout ``data.yaml`` whose ``train`` split is for calibration and training
    (never the ``val`` images mAP is measured on); ``None``: the embedded shapes dataset."""
    imgsz: int
    """Square input size of the exports."""
    workdir: Path
    """Scratch directory for this step (outputs that should persist go to the cache, see
    :func:`edgebench.pipeline.cached_export`)."""
    progress: bool = True
    """Show progress bars (calibration, training)."""
    pytorch: Artifact | None = None
    """The ``.pt`` behind ``source`` when there is one: ``source`` itself when it is a
    ``.pt``, the committed ``.pt`` of the embedded ONNX, else ``None``. FORMAT steps that
    must re-export from PyTorch (LiteRT int8) use it and skip with a reason when None."""

    def train_images(self, count: int | None = None) -> list[Path]:
        """The first ``count`` images (all when ``None``) of the train split, sorted by name.
        Raises :class:`edgebench.errors.UserError` when the split is missing or empty."""
        from .compression import train_images

        return train_images(self.data_yaml, count)

    def dataset_yaml(self) -> Path:
        """The ``data.yaml`` to train on: the given one or the embedded dataset's, with its
        train split generated."""
        from .compression import training_yaml

        return training_yaml(self.data_yaml)


@runtime_checkable
class Compressor(Protocol):
    """One compression step (``int8``, ``prune``, ``distill``...) for one target format.

    A technique that works on several formats registers one class per format under the same
    ``name`` (``int8`` for ``onnx`` and for ``tflite``): the registry key is
    ``name/target``, and a pipeline step ``int8`` picks, per backend, the class whose
    ``target`` is that backend's format. A backend with no such class gets the case skipped
    with the reason (or with ``host_unavailable_reason()`` of a class that exists but cannot
    work here, e.g. ncnn int8 without ncnn2table).
    """

    name: ClassVar[str]
    """The step's name in a pipeline (``--compress prune:0.3+int8``)."""
    target: ClassVar[str]
    """``"pt"`` for a MODEL step; otherwise the format it transforms (``onnx``, ``tflite``,
    ``ncnn``)."""
    summary: ClassVar[str]
    """One line for ``edgebench plugins`` and the report."""
    option_defaults: ClassVar[Mapping[str, Any]]
    """Every option with its default; values given are checked against the default's type
    (and ``option_choices`` when the class has it), as for backend options."""
    primary_option: ClassVar[str | None]
    """The option a bare value sets: ``prune:0.3`` means ``prune:ratio=0.3``."""

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        """Validate options against the data before any long work (e.g. too few calibration
        images); raise :class:`edgebench.errors.UserError` with one sentence."""
        ...

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        """Transform ``model`` (a ``.pt`` for MODEL steps, the backend's format for FORMAT
        steps) and return the new artifact (the core extends its ``pipeline`` with the
        step's label). Cache the result by the input's content hash and the options
        (:func:`edgebench.pipeline.cached_export`), so a nightly run compresses once. Raise
        :class:`edgebench.errors.CaseError` when the step fails on this model."""
        ...

    # Optional: ``host_unavailable_reason()`` (classmethod) like backends;
    # ``option_choices`` (class attribute); ``notes(artifact) -> tuple[str, ...]`` facts for
    # the report (kept nodes, sparsity, params before/after).


def compressor_stage(compressor: type | Compressor) -> Stage:
    return Stage.MODEL if getattr(compressor, "target", None) == "pt" else Stage.FORMAT


@runtime_checkable
class Device(Protocol):
    """A place to run cases: the local host, a board over SSH, a phone over ADB.

    Used as a context manager: entering connects and creates a private work dir;
    leaving removes it and disconnects.

    Optional extras the core uses when a device class has them (see ``devices/ssh.py``):
    ``check_uri(uri)`` (classmethod: validate the URI before the run, raise ``UserError``),
    ``accept_new_host_key(uri) -> str`` (classmethod: ``edgebench devices
    --accept-new-host-keys``), ``agent() -> DeviceAgent`` (its own fingerprinting, e.g. with
    the shell on a phone without Python), ``native_runner(backend) -> NativeRunner | None``,
    ``throttling() -> str | None`` (why the CPU is held back now) and ``reconnect()`` (open
    the connection again, kill what a lost session left running, recreate the work dir if
    it is gone; :mod:`edgebench.retry` calls it before retrying a case whose connection was
    lost).
    """

    scheme: ClassVar[str]
    """URI scheme this class handles: ``local``, ``ssh``, ``adb``."""
    uri: str
    python: str
    """The interpreter on the device that runs the device-side scripts (``""``: none)."""
    workdir: PurePosixPath
    """Private per-run directory on the device (valid while entered)."""

    def __enter__(self) -> Device: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def push(self, local: Path, remote: PurePosixPath) -> None:
        """Copy a file from the host to the device."""
        ...

    def pull(self, remote: PurePosixPath, local: Path) -> None:
        """Copy a file from the device to the host."""
        ...

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        """Run a command (an argument list, never a shell string) on the device."""
        ...

    def abort(self) -> None:
        """Kill whatever :meth:`run` is running now; called from another thread on Ctrl-C.

        The interrupted :meth:`run` raises :class:`edgebench.errors.CaseError`.
        """
        ...


@runtime_checkable
class Reporter(Protocol):
    """Turns a report into one file in the output directory."""

    name: ClassVar[str]
    filename: ClassVar[str]

    def render(self, report: RunReport) -> str:
        """The file's content."""
        ...


@dataclass(frozen=True)
class NativeMeasurement:
    """What a native benchmark binary measured, already as the report's records."""

    latency: LatencyStats
    runtime: RuntimeInfo
    memory: MemoryStats | None = None
    notes: tuple[str, ...] = ()


@runtime_checkable
class NativeRunner(Protocol):
    """A benchmark binary for the device's ABI (``benchmark_model``, ``benchncnn``,
    ``onnxruntime_perf_test``) used instead of a backend's Python runner, where there is no
    Python (phones). It pushes itself and the model, runs with the case's settings and
    parses the tool's output."""

    tool: str
    backend: str

    def measure(self, device: Device, artifact: Artifact, inputs: Path, settings: RunSettings,
                info: DeviceInfo) -> NativeMeasurement:
        """Measure one case; raise :class:`edgebench.errors.CaseError` on failure."""
        ...

    def version_label(self) -> str:
        """What to list as the runtime's version in the device fingerprint."""
        ...
