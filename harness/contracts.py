"""What a backend, compressor, device or reporter plugin provides: base classes whose every
optional member is declared here with its type, default and meaning.

A plugin class subclasses one of them and overrides what it needs; the core reads members
directly (``backend.max_batch``), never by probing. The registry refuses a class that does
not subclass the base class of what it registers as.
"""

from __future__ import annotations

import abc
import enum
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

from .accuracy import precision_tolerance
from .input_size import ImgSz
from .plugin_options import checked_option as checked_option  # re-exported: plugins use it
from .records import (
    Artifact,
    DeviceInfo,
    LatencyStats,
    MemoryStats,
    RunReport,
    RunSettings,
    RuntimeInfo,
    Tolerance,
)

if TYPE_CHECKING:
    from .fingerprint import DeviceAgent

_NO_OPTIONS: Mapping[str, Any] = types.MappingProxyType({})


@dataclass(frozen=True)
class Completed:
    """Result of a command run on a device."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


class Backend(abc.ABC):
    """A runtime that executes a model format on a device.

    The host side (this class) prepares the artifact; the device side is a self-contained
    script, :meth:`runner`, that needs only the standard library, numpy and the runtime.
    Required: :attr:`name`, :attr:`formats`, :meth:`export`, :meth:`runner`; everything
    else has a default.
    """

    name: ClassVar[str]
    """Unique name, used on the command line (``--backend onnxruntime``)."""
    formats: ClassVar[tuple[str, ...]]
    """Model formats the runner loads, e.g. ``("onnx",)``."""
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    """Importable modules, any one of which the runner needs on the device (checked by
    ``edgebench devices`` and before a case runs)."""
    install_hint: ClassVar[str] = ""
    """How to install the backend on the host, e.g. ``pip install 'edgebench[onnxruntime]'``
    (shown by ``edgebench plugins``)."""
    device_requirements: ClassVar[tuple[str, ...]] = ()
    """The pip requirements that install the runtime on a device, e.g. ``("onnxruntime",)``:
    a case skipped for a missing runtime gives the exact command, ``<device python> -m pip
    install <these>``. ``()`` (default): the distributions providing
    :attr:`runtime_modules` on the host (:mod:`edgebench.runtime_install`). A backend whose
    package depends on the device (its Python or numpy version) overrides
    :meth:`device_install_requirements` instead."""
    option_defaults: ClassVar[Mapping[str, Any]] = _NO_OPTIONS
    """Every runner option with its default (``--backend-option ncnn.fp16_storage=on``);
    values given are typed like the default and checked against :attr:`option_choices`
    (:func:`resolve_options`)."""
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = _NO_OPTIONS
    """For options with a closed set of values: option -> the allowed values."""
    boxes_normalised: ClassVar[bool | None] = None
    """``True`` when its detection boxes come out divided by the input size (LiteRT
    exports), ``False`` when in pixels, ``None``: detect from the values."""
    max_batch: ClassVar[int | None] = None
    """The largest static batch (images per inference) its runtime runs; a model with a
    larger one is skipped before any conversion, with one sentence. ``None``: any."""
    compression_format: ClassVar[str | None] = None
    """The format its FORMAT compression steps (``int8``, ...) work on, whatever format
    :meth:`export` returned: the step registered for this target gets the export (in any of
    :attr:`formats`) and returns a model the runner loads. ``None``: the format of the
    export. For a runtime that runs a common format as is and has its own, e.g. OpenVINO
    (an ``.onnx`` as is, and its IR, which its NNCF ``int8`` writes): ``"openvino"``, so that
    ``int8`` on it is its own step, not the ONNX one."""

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        """Why it cannot be used on this host at all (a converter missing), or ``None``."""
        return None

    @abc.abstractmethod
    def export(self, source: Artifact, workdir: Path, *, imgsz: ImgSz | None) -> Artifact:
        """Produce this backend's format from ``source`` into ``workdir``, at ``imgsz`` (one
        side or (height, width); ``None``: the model's own size) where the format is made.

        Return ``source`` itself when it is already in a runnable format. Raise
        :class:`edgebench.errors.UserError` when the format cannot be made from it.
        """
        ...

    @abc.abstractmethod
    def runner(self) -> Path:
        """The device-side script; it may import ``edgebench_agent`` (the shared runner code)."""

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        """Backend-specific options passed to the runner in its request (``"options"``).
        Default: :attr:`option_defaults` updated with the run's ``--backend-option``
        values (:func:`resolve_options`)."""
        return resolve_options(self, settings)

    def device_install_requirements(self, info: DeviceInfo) -> tuple[str, ...]:
        """The pip requirements that install the runtime on a device with this fingerprint
        (``info.python``, ``info.runtimes["numpy"]``). Default: :attr:`device_requirements`."""
        return self.device_requirements

    def unsupported_reason(self, info: DeviceInfo) -> str | None:
        """Why this backend cannot run on a device with this fingerprint, or ``None``
        (default: it can run anywhere its runtime imports)."""
        return None

    def tolerance(self, artifact: Artifact, runtime: RuntimeInfo | None) -> Tolerance | None:
        """How far its outputs may be from the float reference before the case fails (the
        agreement check), for ``artifact`` as run by ``runtime`` (the runner's report:
        ``runtime.details`` are its ``Loaded`` details, as strings). ``None``: the core's
        own choice, which is the same as the default: the tolerance of the precision read
        from the graph (:func:`edgebench.accuracy.precision_tolerance`: fp32, fp16) for an
        uncompressed artifact, none for a compressed one (judged by its mAP). So ``None``
        cannot switch the check off for an uncompressed fp32 or fp16 model; a runtime that
        computes in lower precision (bf16, fp16 arithmetic) returns the wider tolerance
        when its runner reports doing so."""
        return None if artifact.pipeline else precision_tolerance(artifact.precision)


def resolve_options(backend: Backend, settings: RunSettings) -> dict[str, Any]:
    """A backend's runner options: its ``option_defaults`` updated with what the run asked
    for (``settings.backend_options[backend.name]``), each checked against the default's
    type and ``option_choices``. Raises :class:`edgebench.errors.UserError` naming the key.
    """
    defaults = backend.option_defaults
    given: Mapping[str, Any] = settings.backend_options.get(backend.name, {})
    options = dict(defaults)
    for key, value in given.items():
        options[key] = checked_option(f"backend {backend.name!r}", key, value, defaults,
                                      backend.option_choices)
    return options


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
        from .training_data import train_images

        return train_images(self.data_yaml, count)

    def dataset_yaml(self) -> Path:
        """The ``data.yaml`` to train on: the given one or the embedded dataset's, with its
        train split generated."""
        from .training_data import training_yaml

        return training_yaml(self.data_yaml)


class Compressor(abc.ABC):
    """One compression step (``int8``, ``prune``, ``distill``...) for one target format.

    A technique that works on several formats registers one class per format under the same
    ``name`` (``int8`` for ``onnx`` and for ``tflite``): the registry key is
    ``name/target``, and a pipeline step ``int8`` picks, per backend, the class whose
    ``target`` is that backend's format. A backend with no such class gets the case skipped
    with the reason (or with ``host_unavailable_reason()`` of a class that exists but cannot
    work here, e.g. ncnn int8 without ncnn2table).
    Required: :attr:`name`, :attr:`target`, :attr:`summary`, :meth:`apply`.
    """

    name: ClassVar[str]
    """The step's name in a pipeline (``--compress prune:0.3+int8``)."""
    target: ClassVar[str]
    """``"pt"`` for a MODEL step; otherwise the format it transforms (``onnx``, ``tflite``,
    ``ncnn``)."""
    summary: ClassVar[str]
    """One line for ``edgebench plugins`` and the report."""
    option_defaults: ClassVar[Mapping[str, Any]] = _NO_OPTIONS
    """Every option with its default; values given are checked against the default's type
    and :attr:`option_choices`, as for backend options."""
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = _NO_OPTIONS
    """For options with a closed set of values: option -> the allowed values."""
    primary_option: ClassVar[str | None] = None
    """The option a bare value sets: ``prune:0.3`` means ``prune:ratio=0.3``."""
    torch_safe_globals: ClassVar[tuple[str, ...]] = ()
    """Classes (``"package.module:Class"``) that the ``.pt`` files this MODEL step writes
    pickle besides Ultralytics' own, e.g. a module replacing one of its blocks. The core
    loads checkpoints with ``torch.load(weights_only=True)`` and allows only Ultralytics'
    classes and those every installed compressor names here
    (``torch.serialization.add_safe_globals``), so a ``.pt`` from elsewhere cannot run code."""

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        """Why it cannot work on this host (a tool missing), or ``None``; a pipeline using it
        is refused (``--compress``) or its cases skipped with this reason."""
        return None

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        """Validate options against the data before any long work (e.g. too few calibration
        images); raise :class:`edgebench.errors.UserError` with one sentence. Default:
        nothing beyond the option types the core checks."""
        return None

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        """Facts about a result of :meth:`apply` for the report (kept nodes, sparsity,
        parameters before/after), read from ``artifact``'s files. Default: none."""
        return ()

    @abc.abstractmethod
    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        """Transform ``model`` (a ``.pt`` for MODEL steps, the backend's format for FORMAT
        steps) and return the new artifact (the core extends its ``pipeline`` with the
        step's label). Cache the result by the input's content hash and the options
        (:func:`edgebench.pipeline.cached_export`), so a nightly run compresses once. Raise
        :class:`edgebench.errors.CaseError` when the step fails on this model."""


def compressor_stage(compressor: type[Compressor] | Compressor) -> Stage:
    """MODEL for a ``.pt`` -> ``.pt`` step, FORMAT for a step on one backend's format."""
    return Stage.MODEL if compressor.target == "pt" else Stage.FORMAT


class Device(abc.ABC):
    """A place to run cases: the local host, a board over SSH, a phone over ADB.

    Used as a context manager: entering connects, takes the device's lock and creates a
    private work dir; leaving kills what still runs there, removes the work dir and
    disconnects. Every file the harness writes on the device lies inside :attr:`workdir`.

    The core constructs a device from its URI alone, ``cls(uri)``, without connecting
    (:meth:`check_uri` has accepted the URI before).
    Required: :attr:`scheme`, :attr:`uri`, :attr:`python`, :attr:`workdir`, the context
    manager, :meth:`push`, :meth:`pull`, :meth:`run` and :meth:`abort`. The other members
    have defaults that suit the local host; ``devices/ssh.py`` overrides them all.

    Errors: a failure the user can fix (a bad URI, an unknown host key) is
    :class:`edgebench.errors.UserError` or :class:`edgebench.errors.CaseError` with one
    sentence; a link that failed and may work again (network down, device rebooting, copy
    corrupted) is :class:`edgebench.retry.ConnectionLost`, which the core retries after
    :meth:`reconnect`.
    """

    scheme: ClassVar[str]
    """URI scheme this class handles: ``local``, ``ssh``, ``adb``."""
    has_host_keys: ClassVar[bool] = False
    """``True`` when the device authenticates its host by a key the user must accept once
    (SSH): ``edgebench devices --accept-new-host-keys`` calls :meth:`accept_new_host_key`
    for these classes only and probes the others as usual."""
    uri: str
    """The device URI as the user gave it (may hold options; never a password)."""
    python: str
    """The interpreter on the device that runs the device-side scripts (``""``: none, so
    only :meth:`native_runner` runners can measure there). May be found while entering."""

    @property
    @abc.abstractmethod
    def workdir(self) -> PurePosixPath:
        """The private per-run directory on the device (mode 0700, an unpredictable name).

        Valid only while entered (raises ``RuntimeError`` outside the ``with`` block); may
        change after :meth:`reconnect` when the device rebooted and lost it."""

    @abc.abstractmethod
    def __enter__(self) -> Self: ...

    @abc.abstractmethod
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @abc.abstractmethod
    def push(self, local: Path, remote: PurePosixPath) -> None:
        """Copy the host file ``local`` to ``remote``, a path inside :attr:`workdir` (parent
        directories are created); a path outside it is a :class:`CaseError`."""

    @abc.abstractmethod
    def pull(self, remote: PurePosixPath, local: Path) -> None:
        """Copy ``remote`` (inside :attr:`workdir`) to the host file ``local``; a file the
        device did not produce is a :class:`CaseError` saying so."""

    @abc.abstractmethod
    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        """Run ``argv`` (an argument list, never a shell string) in :attr:`workdir`.

        Returns its exit status and output, whatever the status; past ``timeout_s``
        seconds the command and its children are killed and
        :class:`edgebench.retry.RunnerTimedOut` is raised."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Kill whatever :meth:`run` is running now; called from another thread on Ctrl-C.

        The interrupted :meth:`run`, and every later one, raises
        :class:`edgebench.errors.CaseError`.
        """

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        """Why this kind of device cannot be used from this host at all (its client library
        or tool is missing, e.g. paramiko or adb), with how to install it; or ``None``
        (default)."""
        return None

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Validate ``uri`` before the run starts, without connecting; raise
        :class:`edgebench.errors.UserError` with one sentence. Default: accept it."""
        return None

    @classmethod
    def preload(cls) -> None:
        """Start loading, in the background, what entering a device of this class will
        need on the host (its client library's modules), so that it overlaps the host's
        planning instead of delaying the first case. Called once per run for each device
        class of the matrix, before planning; must return at once, connect nowhere and
        never raise (a failed load shows again, with its reason, when a device is entered).
        Default: nothing to load."""
        return None

    @classmethod
    def accept_new_host_key(cls, uri: str) -> str:
        """Connect once and record the device's host key if it is not known yet, never a
        changed one (``edgebench devices --accept-new-host-keys``); return one line
        saying what was recorded. Default: this kind of device has no host key, so there
        is nothing to record, and the line says so."""
        return f"{cls.scheme} devices have no host key: nothing to record"

    @classmethod
    def slots(cls, uri: str) -> int:
        """How many interchangeable devices ``uri`` stands for (default 1): e.g. "any two
        free boards tagged ``board=rpi5``" of a board farm is 2.

        The core then makes that many devices of this class, each ``cls(uri)`` entered in
        its own thread, and they share the URI's cases: each device, when free, takes the
        next case and runs all its repeats (so a case's figures and fingerprint are one
        board's), and the wall time is about the total work divided by N. Each of the N
        entered devices must be a different physical device: the class arranges that
        while entering (e.g. one reservation per device from the farm's queue); its
        fingerprint tells them apart (``DeviceInfo.place``). ``uri`` was accepted by
        :meth:`check_uri`."""
        return 1

    def unusable_reason(self) -> str | None:
        """Why this entered device must take no more cases (e.g. its board left the farm),
        in one sentence, or ``None`` (default). Asked before each case: the device is left
        and its cases not yet run fail with this reason, or, for a URI with several
        :meth:`slots`, go to its other devices (failing with it when none is left)."""
        return None

    def agent(self) -> DeviceAgent:
        """What fingerprints the device (:class:`edgebench.fingerprint.DeviceAgent`).
        Default: the Python agent, run with :attr:`python`; a device without Python (a
        phone) overrides this with one that uses its shell."""
        from .fingerprint import DeviceAgent

        return DeviceAgent(self)

    def native_runner(self, backend: str) -> NativeRunner | None:
        """A native benchmark binary that measures ``backend`` here instead of the backend's
        Python runner (configured in the URI, for phones without Python), or ``None``
        (default: the Python runner)."""
        return None

    def throttling(self) -> str | None:
        """Why the CPU is held back right now (thermal or power throttling, e.g. ``vcgencmd:
        throttled (0x4)``), or ``None``: not throttled, or not known (default)."""
        return None

    def reconnect(self) -> None:
        """Reach the device again after :class:`edgebench.retry.ConnectionLost`, before the
        case is retried: open the connection again, kill what the cut-off case left
        running and make a new work dir if the old one is gone. Raise ``ConnectionLost``
        if it is still unreachable, :class:`CaseError` if it refuses for good (e.g. an
        unauthorized phone). Default: nothing to do (a link that cannot be lost, such
        as the local host's)."""
        return None


class Reporter(abc.ABC):
    """Turns a report into one file in the output directory."""

    name: ClassVar[str]
    """Unique name (``json``, ``markdown``, ``html``)."""
    filename: ClassVar[str]
    """The file it writes in the output directory (``report.md``)."""

    @abc.abstractmethod
    def render(self, report: RunReport) -> str:
        """The file's content."""

    def prepare(self) -> None:
        """Get ready to render (import a plotting library, say): called once per run, at its
        start, in a thread beside the host's planning and exports, and waited for before
        any device on the host itself measures (so it never shares the cores with a timed
        loop there). Optional; an exception here is ignored (:meth:`render` then does the
        work)."""
        return None


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
