"""The records a run produces: frozen dataclasses, serialised to one versioned JSON report.

Every record is immutable. ``record_json.to_json_dict`` / ``from_json_dict`` convert any of
them to and from plain JSON values, driven by the type hints, so adding a field is one line
here (and a regenerated schema, see :mod:`edgebench.schema`).

``SCHEMA_VERSION`` is the version of the report format, independent of the tool version.
Bump it whenever a field is renamed, removed or changes meaning, and add an ``upgrade_to_N``
function in :mod:`edgebench.reports.json_report`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .record_json import from_json_dict as from_json_dict  # re-exported for runner.py

SCHEMA_VERSION = 2


class Status(enum.StrEnum):
    """Outcome of one case."""

    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"


class RunState(enum.StrEnum):
    """Whether the run that wrote a report finished."""

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Place:
    """Which board of a shared board farm a device was, and how it was obtained (filled in
    by the device plugin that took it from the farm's queue, e.g. labgrid)."""

    name: str
    """The farm's name of the board (a labgrid place)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Its tags (``board=rpi5``...) as the farm lists them."""
    host: str | None = None
    """The host the board hangs off (a labgrid exporter), ``None``: not known."""
    farm: str | None = None
    """The farm it came from (``labgrid coordinator 10.0.0.5:20408``)."""
    waited_s: float = 0.0
    """Seconds spent waiting in the farm's queue until the board was free for this run."""


@dataclass(frozen=True)
class DeviceInfo:
    """Fingerprint of the machine a case ran on. ``None`` means "could not be read there"."""

    uri: str
    hostname: str | None
    arch: str
    os: str
    cpu_model: str | None
    cores: int | None
    ram_bytes: int | None
    python: str | None
    governor: str | None
    temperature_c: float | None
    cpu_max_mhz: float | None = None
    cpu_flags: tuple[str, ...] = ()
    runtimes: Mapping[str, str] = field(default_factory=dict)
    place: Place | None = None
    """The board of a shared farm this device was (``None``: a device named by its URI)."""

    def peak_gflops_estimate(self) -> float | None:
        """The fp32 peak of all cores in GFLOP/s (:func:`edgebench.peak.case_peak` with
        every core; ``None`` when the CPU or its clock is not known). A case's own peak
        (its threads, its precision) is ``LatencyStats.peak``."""
        from .peak import case_peak

        return case_peak(self, None, "fp32").gops

    cpu_cores: tuple[CpuCores, ...] = ()
    """The CPU's cores, one entry per kind (a big.LITTLE SoC has two), as the device
    reports them; the peak model (:mod:`edgebench.peak`) reads its table entry from
    ``id``. Empty in reports written before it was recorded."""
    cpu_clock_source: str | None = None
    """Where ``cpu_max_mhz`` comes from: ``cpufreq max`` (the kernel's
    ``cpuinfo_max_freq``), ``probe`` (a dependent chain of integer adds timed on the
    device, one add per cycle) or ``/proc/cpuinfo`` (its current ``cpu MHz``, which the
    peak model does not use); ``None``: older reports, or not readable."""


@dataclass(frozen=True)
class CpuCores:
    """Identical logical CPUs of a device: their identity and their clock."""

    id: str
    """``x86:<vendor_id>:<family>:<model>:<stepping>:<model name>`` (decimal, as
    ``/proc/cpuinfo`` gives them), ``arm:<CPU implementer>:<CPU part>`` (hex, as given),
    or ``apple:<brand string>:<P|E>`` (macOS ``sysctl machdep.cpu.brand_string`` and the
    performance level)."""
    count: int
    """How many logical CPUs are of this kind."""
    max_mhz: float | None = None
    """Their cpufreq ``cpuinfo_max_freq`` in MHz; ``None``: not readable (the device's
    ``cpu_max_mhz`` / ``cpu_clock_source`` then stand for every core)."""


@dataclass(frozen=True)
class PeakBasis:
    """The compute peak a case's ``peak_share`` is taken of, and what it rests on
    (:func:`edgebench.peak.case_peak`): table entry x clock x the cores the case used."""

    precision: str
    """``fp32`` or ``int8``: which column of the table (an int8 artifact: ``int8``)."""
    gops: float | None
    """Peak in G(FL)OP/s (1e9 per second) of the cores counted; ``None``: unknown,
    see ``reason``."""
    cores: int | None = None
    """Cores counted: the case's threads, at most the device's cores, fastest first."""
    entries: tuple[str, ...] = ()
    """Table entries used, e.g. ``zen4: 32 fp32 FLOP/cycle/core``."""
    clock_mhz: float | None = None
    """Clock of the fastest core counted, MHz."""
    clock_source: str | None = None
    """``cpufreq max`` or ``probe`` (see ``DeviceInfo.cpu_clock_source``)."""
    reason: str | None = None
    """Why ``gops`` is unknown (an unknown CPU, no clock, a precision without a peak)."""

    def label(self) -> str:
        """One line for a report: ``32 fp32 FLOP/cycle/core (zen4) x 1 core x 3650 MHz
        (probe) = 116.8 GFLOP/s`` or ``unknown: <reason>``."""
        if self.gops is None:
            return f"{self.precision} peak unknown: {self.reason or 'not known'}"
        unit = "GFLOP/s" if self.precision == "fp32" else "GOP/s"
        clock = f"{self.clock_mhz:.0f} MHz ({self.clock_source})" if self.clock_mhz else "?"
        cores = f"{self.cores} core{'s' if self.cores != 1 else ''}"
        return f"{' + '.join(self.entries)} x {cores} x {clock} = {self.gops:.1f} {unit}"


@dataclass(frozen=True)
class Artifact:
    """A model file in one format, identified by the hash of its content."""

    path: Path
    """The model file (an ncnn model: its directory). Written to the report as a string."""
    format: str
    sha256: str
    size_bytes: int
    input_name: str | None = None
    input_shape: tuple[int, ...] | None = None
    gflops: float | None = None
    source_sha256: str | None = None
    pipeline: tuple[str, ...] = ()
    converter: str | None = None
    """What produced it from its source: tool and version (``None``: used as given)."""
    imgsz: tuple[int, int] | None = None
    """The input size (height, width) the model records (Ultralytics' ``imgsz`` metadata,
    the export size), used for its symbolic input dims when ``--imgsz`` is not given."""
    precision: str | None = None
    """``fp32`` / ``fp16`` / ``int8`` / ``mixed``, read from the graph (weight and I/O types;
    see :mod:`edgebench.precision`); ``None``: not readable (a ``.pt``: fp32)."""


@dataclass(frozen=True)
class RunSettings:
    """How a case is measured on the device."""

    warmup_iterations: int = 10
    warmup_s: float = 0.0
    iterations: int = 100
    min_duration_s: float = 0.0
    threads: int | None = None
    timeout_s: float = 600.0
    repeats: int = 1
    """Runner processes per case, interleaved with the other cases (see ``repeats.py``)."""
    cooldown_s: float = 0.0
    """Pause before the case (lets a passively cooled board shed the previous case's heat)."""
    max_temperature_c: float | None = None
    """Wait (up to ``temperature_wait_s``) until the device is at most this hot."""
    temperature_wait_s: float = 300.0
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per backend name, its runner options (e.g. ``{"ncnn": {"fp16_storage": True}}``),
    checked against the backend's ``option_defaults`` (``contracts.resolve_options``)."""


@dataclass(frozen=True)
class Case:
    """One cell of the matrix: a model artifact on a backend on a device with settings."""

    id: str
    model: str
    backend: str
    device: str
    settings: RunSettings
    pipeline: tuple[str, ...] = ()


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one case. Raw samples are kept; every number is derived by ``stats.py``."""

    samples_ns: tuple[int, ...]
    warmup_ns: tuple[int, ...]
    init_ns: int
    first_inference_ns: int
    n: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    max_ms: float
    median_ci95_ms: tuple[float, float] | None
    """Distribution-free 95 % interval of the median (``edgebench.stats.median_ci_ranks``);
    ``None`` when fewer than 6 samples cannot give 95 % (``[min, max]`` at n = 5 covers
    93.75 %)."""
    throughput_ips: float
    """Inferences per second at the median (1000 / ``p50_ms``); for a batch of ``batch``
    images that is batches per second (see ``images_per_s``)."""
    gflops_per_s: float | None = None
    peak_share: float | None = None
    """``gflops_per_s / peak.gops``: the share of the compute peak the case reached."""
    peak: PeakBasis | None = None
    """The peak ``peak_share`` is taken of and what it rests on (``None``: older reports,
    or no model cost)."""
    repeat_medians_ms: tuple[float, ...] = ()
    """One median per repeat (separate runner processes spread over the run)."""
    cpu_samples_ns: tuple[int, ...] = ()
    """CPU time of the runner process (all threads) in each timed iteration; empty when
    the runner cannot tell (native tools). Other processes on a shared machine stretch
    the wall time of an iteration, hardly its CPU time."""
    cpu_p50_ms: float | None = None
    repeat_cpu_medians_ms: tuple[float, ...] = ()
    """One median CPU time per repeat, next to ``repeat_medians_ms``."""
    batch: int = 1
    """Images per timed inference: the model's static batch (1 for a dynamic batch). The
    samples and every figure above are per inference, i.e. per batch of ``batch`` images."""
    per_image_p50_ms: float | None = None
    """``p50_ms / batch``: the median time of one image in a batched inference."""
    per_image_median_ci95_ms: tuple[float, float] | None = None
    """``median_ci95_ms`` divided by ``batch`` (``None`` when that is)."""
    images_per_s: float | None = None
    """Images per second at the median: ``batch * 1000 / p50_ms``."""


@dataclass(frozen=True)
class MemoryStats:
    """Resident memory of the runner process in bytes, read from ``/proc/self/status``.

    ``rss_baseline`` is before the runtime is imported, ``rss_before_load`` after the import
    and before the model is loaded, ``rss_after_load`` right after loading, ``peak_rss`` the
    high-water mark (VmHWM) at the end of the run. ``None`` where the device cannot tell.
    """

    rss_baseline_bytes: int | None
    rss_before_load_bytes: int | None
    rss_after_load_bytes: int | None
    load_delta_bytes: int | None
    peak_rss_bytes: int | None


@dataclass(frozen=True)
class MachineLoad:
    """CPU load of one machine during a case's timed loop.

    Read from ``/proc/stat`` and ``/proc/loadavg`` by the device-side agent, with
    ``psutil`` on the host (see :mod:`edgebench.load`); ``None`` where the machine cannot
    tell (no ``/proc`` and no psutil).
    """

    window_s: float | None
    """How long the readings span, seconds (the timed loop)."""
    cores: int | None
    """Online CPUs of the machine."""
    other_cpu_cores: float | None
    """Cores kept busy on average by processes other than the benchmark's own (on the
    device: all but the runner process; on the host: all but edgebench and its children):
    their CPU seconds divided by ``window_s``."""
    other_cpu_share: float | None
    """``other_cpu_cores / cores``: the share of the machine the others took (0 to 1)."""
    loadavg_1m: float | None
    """The higher 1-minute load average read at the loop's start and end (it counts the
    benchmark's own threads too, and lags by its one-minute smoothing)."""
    source: str | None = None
    """``/proc/stat``, ``psutil``, or ``None``."""


@dataclass(frozen=True)
class CaseLoad:
    """The load of the device and of the host during a case's timed loop, and the warning
    when the device was busy enough to distort the figures (``edgebench.load.busy_warning``;
    ``None``: not busy, or not readable)."""

    device: MachineLoad | None = None
    host: MachineLoad | None = None
    busy_warning: str | None = None


@dataclass(frozen=True)
class Fidelity:
    """Agreement of a case's raw outputs with the float reference, on the same inputs.

    For a detection head, boxes (input pixels) and class scores are compared apart, and
    ``detection_agreement`` is the share of the reference's detections (at the agreement
    threshold) matched at IoU >= 0.5 with the same class.
    """

    reference: str
    max_abs: float
    mean_abs: float
    box_max_abs_px: float | None = None
    box_mean_abs_px: float | None = None
    detection_box_max_abs_px: float | None = None
    """Boxes of the anchors the reference scores at the agreement threshold or more: the
    boxes that become detections (background anchors' boxes are noise)."""
    score_max_abs: float | None = None
    score_mean_abs: float | None = None
    detection_agreement: float | None = None
    reference_detections: int = 0
    tolerance: Tolerance | None = None
    """The tolerance the backend declares for this artifact (``None``: not checked)."""
    within_tolerance: bool | None = None
    """``False`` fails the case: the conversion changed the outputs beyond ``tolerance``."""


@dataclass(frozen=True)
class Tolerance:
    """How far a backend's outputs may be from the float reference's and still count as
    the same model. A detection head is judged on boxes (input pixels), class scores and
    detection agreement; any other output on its largest difference relative to the
    reference's largest magnitude. ``basis`` says where the numbers come from."""

    box_max_abs_px: float
    """Limit of ``Fidelity.detection_box_max_abs_px``."""
    score_max_abs: float
    min_detection_agreement: float
    raw_max_rel: float
    basis: str = ""


@dataclass(frozen=True)
class Accuracy:
    """mAP of the outputs the device produced, and their fidelity to the float reference.

    ``status`` is ``skipped`` (with the reason) when the model is not a YOLOv8 detection
    head; mAP is ``None`` on unlabelled data, where only fidelity is measured, and when the
    evaluated images hold no ground-truth box. Per-class figures list only the classes with
    ground truth in the evaluated images (pycocotools gives the others no AP); the means are
    over these classes.
    """

    status: Status
    reason: str | None
    dataset: str
    images: int
    labelled: bool
    map50_95: float | None = None
    map50: float | None = None
    per_class_map50_95: Mapping[str, float] = field(default_factory=dict)
    per_class_map50: Mapping[str, float] = field(default_factory=dict)
    detections: int | None = None
    conf: float = 0.001
    iou: float = 0.7
    library: str = ""
    fidelity: Fidelity | None = None
    host_seconds: float | None = None
    left_out: Mapping[str, str] = field(default_factory=dict)
    """Images of the evaluated range left out (path -> why: corrupt, truncated, a label file
    Ultralytics rejects), as Ultralytics' dataset scan leaves them out; ``images`` counts
    the others."""
    dataset_fingerprint: str | None = None
    """Hash of the evaluated images' content, sizes and labels (``Dataset.fingerprint``):
    the identity of the evaluation set, wherever it lies (``None``: older reports)."""
    input_hw: tuple[int, int] | None = None
    """(height, width) of the input tensor the images were letterboxed to."""
    cached_from: CachedFrom | None = None
    """Set when these figures were not measured by this run but reused from an earlier
    accuracy pass of the same artifact, runtime, options, data and device
    (:mod:`edgebench.accuracy_cache`); ``None``: measured by this run."""


@dataclass(frozen=True)
class CachedFrom:
    """The earlier run whose accuracy pass a case's accuracy figures come from (the same
    measurement: same artifact content, runtime build and options, evaluated data, settings
    and device fingerprint; see :mod:`edgebench.accuracy_cache`)."""

    run_id: str
    """The run that measured them."""
    measured_at: str
    """When (UTC, ISO 8601) its case started."""
    device: str
    """The device it ran on (its URI, credentials redacted)."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What the device-side runner reported about the runtime it used."""

    name: str
    version: str
    threads: int | None
    providers: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)
    delegation: Delegation | None = None


@dataclass(frozen=True)
class Delegation:
    """How much of the graph an accelerator delegate (e.g. LiteRT's XNNPACK) took over;
    the rest falls back to the runtime's reference kernels, usually much slower."""

    delegate: str
    nodes_delegated: int
    nodes_total: int
    partitions: int
    fallback_ops: Mapping[str, int] = field(default_factory=dict)
    """Operator name -> how many nodes of it the delegate left to the runtime."""


@dataclass(frozen=True)
class CaseResult:
    """Everything measured for one case, or why it was not measured."""

    case: Case
    status: Status
    reason: str | None = None
    device: DeviceInfo | None = None
    temperature_after_c: float | None = None
    artifact: Artifact | None = None
    runtime: RuntimeInfo | None = None
    latency: LatencyStats | None = None
    memory: MemoryStats | None = None
    accuracy: Accuracy | None = None
    load: CaseLoad | None = None
    """The device's and the host's CPU load during the timed loop (the busiest repeat's)."""
    started_at: str | None = None
    """When the case began on its device, UTC, ISO 8601 to the millisecond (cases of
    several devices overlap: their order and spans are read from it and ``wall_s``)."""
    wall_s: float | None = None
    """The case's wall time, s, its attempts included."""
    notes: tuple[str, ...] = ()
    """Facts that qualify the numbers: "started hot (72 °C)", "throttled", "retried 1x"."""

    def input_hw(self) -> tuple[int, int] | None:
        """(height, width) the model ran at: the artifact's static spatial dims, else the
        size the accuracy pass fed its symbolic dims, else the size the model records;
        ``None`` when none is known."""
        shape = self.artifact.input_shape if self.artifact is not None else None
        if shape is not None and len(shape) == 4 and shape[2] > 0 and shape[3] > 0:
            return (int(shape[2]), int(shape[3]))
        if self.accuracy is not None and self.accuracy.input_hw is not None:
            return self.accuracy.input_hw
        return self.artifact.imgsz if self.artifact is not None else None

    def pipeline_label(self) -> str:
        """The case id's pipeline field: the compression pipeline, or for an uncompressed
        model the precision the plan read from its graph (``fp32`` when unknown). Read from
        the id so a case not measured (no artifact) is labelled as its id says."""
        parts = self.case.id.split("|")
        if len(parts) >= 5 and parts[1]:
            return parts[1]
        precision = self.artifact.precision if self.artifact is not None else None
        return "+".join(self.case.pipeline) or precision or "fp32"


@dataclass(frozen=True)
class MatrixSettings:
    """Every setting a run measured with: each matrix option (``options.OPTIONS``, the
    flags of ``edgebench run`` and the keys of a matrix file) as it ran, and what the
    options resolve to: the backends run, the content of the models and of the evaluated
    images. ``edgebench run --resume`` refuses a command whose settings differ in any that
    changes a figure, and runs these when given none (``edgebench.measured_settings``)."""

    models: tuple[Path, ...]
    """``--model`` paths (absolute; without ``--baseline-model``)."""
    baseline_model: Path | None
    backends: tuple[str, ...]
    """The backends the run measured (resolved: "every backend usable here" named)."""
    devices: tuple[str, ...]
    compress: tuple[str, ...]
    data: Path | None
    train_data: Path | None
    images: int | None
    imgsz: int | tuple[int, int] | None
    output: Path
    warmup: int
    warmup_s: float
    iterations: int
    min_duration_s: float
    threads: tuple[int | None, ...]
    repeats: int
    timeout_s: float
    cooldown_s: float
    max_temperature_c: float | None
    temperature_wait_s: float
    retries: int
    retry_backoff_s: float
    accuracy: bool
    conf: float
    iou: float
    latency_threshold: float
    map_threshold: float
    alpha: float
    alpha_repeats: float
    noise_factor: float
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_labels: tuple[str, ...] = ()
    """``stem@sha8`` of each model measured (the baseline's first): their content."""
    baseline_label: str | None = None
    """``stem@sha8`` of a ``--baseline-model`` measured only as the baseline."""
    data_fingerprint: str | None = None
    """``Dataset.fingerprint`` of the images the run evaluates (or times, accuracy off)."""
    fresh: bool = False
    """``--fresh``: every accuracy pass is run, none reused from the cache."""


@dataclass(frozen=True)
class RunReport:
    """One run: the matrix it ran and one result per case."""

    schema_version: int
    tool_version: str
    run_id: str
    created_at: str
    state: RunState
    host: DeviceInfo
    argv: tuple[str, ...]
    cases: tuple[CaseResult, ...] = ()
    finished_at: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    baseline_model: str | None = None
    """Label (``stem@sha8``) of a ``--baseline-model`` measured only as the side-by-side
    baseline; ``None`` also when it was identical to a model of the run (measured once)."""
    settings: MatrixSettings | None = None
    """What every case of the report was measured with (``None``: reports written before
    edgebench recorded it); a resumed run's cases share them (``resume.py``)."""
    device_failures: tuple[str, ...] = ()
    """Devices that stopped early while others ran their cases, one sentence each
    (``device URI: reason``): e.g. one board of ``labgrid://?board=rpi5&count=2`` that failed
    while the other place ran every case, so no case names the failure."""

    def tracked_cases(self) -> tuple[CaseResult, ...]:
        """The cases night-to-night comparisons and the history follow: all but those of the
        side-by-side baseline model (an earlier night's model, measured again tonight)."""
        if self.baseline_model is None:
            return self.cases
        return tuple(c for c in self.cases if c.case.model != self.baseline_model)

    def with_case(self, result: CaseResult) -> RunReport:
        """A copy with ``result`` appended (or replacing the result with the same case id)."""
        kept = tuple(c for c in self.cases if c.case.id != result.case.id)
        return dataclasses.replace(self, cases=(*kept, result))
