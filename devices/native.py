"""Native runners: a runtime's own benchmark binary, where the device has no Python (phones).

The user points the device URI at a binary built for the device's ABI, e.g.
``adb://SERIAL?onnxruntime_perf_test=/path/on/this/host/onnxruntime_perf_test``; the harness
pushes it with the model, runs it with the case's settings and parses its output:

=========================  ==========  =================================================
tool                       backend     what it reports
=========================  ==========  =================================================
``onnxruntime_perf_test``  onnxruntime every iteration (its result file, seconds), session
                                       creation, first inference, peak working set
``benchmark_model``        litert      TFLite's summary in µs: count, min, max, avg, std
                                       (p5/median/p95 in builds that print them), init,
                                       first inference, peak memory
``benchncnn``              ncnn        min, max and avg in ms over the loop count
=========================  ==========  =================================================

Only ``onnxruntime_perf_test`` gives per-iteration samples, so only its latency goes
through :func:`edgebench.stats.latency_stats` like a Python runner's. The summary tools
give no distribution: their case says so in ``notes``, and the statistics they do not
print are filled as stated there (p50 = their median, else their mean; p90/p99 = their
max, an upper bound; the median's interval = [min, max], which certainly holds it).
"""

from __future__ import annotations

import abc
import hashlib
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from edgebench.contracts import Device, NativeMeasurement, NativeRunner
from edgebench.errors import CaseError, UserError
from edgebench.peak import case_peak
from edgebench.records import Artifact, DeviceInfo, MemoryStats, RunSettings
from edgebench.records import RuntimeInfo as Runtime
from edgebench.redaction import redact
from edgebench.retry import ConnectionLost
from edgebench.stats import latency_stats

from .native_parsers import (
    NS_PER_MS,
    ParseError,
    parse_benchmark_model,
    parse_benchncnn,
    parse_perf_test,
    parse_perf_test_samples,
    summary_latency,
)

NATIVE_TOOLS = ("onnxruntime_perf_test", "benchmark_model", "benchncnn")
"""The URI options that name a native binary (each one's backend: :data:`TOOLS`)."""


class _Tool(abc.ABC):
    """A :class:`edgebench.contracts.NativeRunner`: pushes the binary once per work dir, runs
    it, turns failures into one sentence. Subclasses set :attr:`tool`, :attr:`backend` and
    :meth:`measure`."""

    tool: str
    """The binary's name (and the URI option that gives its path)."""
    backend: str
    """The backend whose cases it measures."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._sha = hashlib.sha256(binary.read_bytes()).hexdigest()
        self._pushed: set[str] = set()

    def version_label(self) -> str:
        return f"native {self.tool} sha256:{self._sha[:12]}"

    @abc.abstractmethod
    def measure(self, device: Device, artifact: Artifact, inputs: Path, settings: RunSettings,
                info: DeviceInfo) -> NativeMeasurement:
        """Measure one case (see :meth:`edgebench.contracts.NativeRunner.measure`)."""

    def _install(self, device: Device) -> PurePosixPath:
        remote = device.workdir / "bin" / self.tool
        if str(remote) not in self._pushed:
            _push(device, self.binary, remote, f"push of {self.tool}")
            done = device.run(["chmod", "755", str(remote)], timeout_s=60)
            if done.returncode != 0:
                raise CaseError(f"cannot make {self.tool} executable on {device.uri}: "
                                f"{_tail(done.stderr or done.stdout)}")
            self._pushed.add(str(remote))
        return remote

    def _run(self, device: Device, argv: list[str], timeout_s: float) -> str:
        try:
            done = device.run(argv, timeout_s=timeout_s)
        except ConnectionLost as exc:
            exc.during = exc.during or f"the {self.tool} run"
            raise
        if done.returncode != 0:
            raise CaseError(f"{self.tool} exited with code {done.returncode}: "
                            f"{_tail(done.stderr) or _tail(done.stdout)}")
        return done.stdout

    def _runtime(self, threads: int | None, name: str) -> Runtime:
        return Runtime(name=name, version="unknown (native binary)", threads=threads,
                       providers=("CPU",),
                       details={"tool": self.tool, "binary_sha256": self._sha})


def _push(device: Device, local: Path, remote: PurePosixPath, during: str) -> None:
    try:
        device.push(local, remote)
    except ConnectionLost as exc:
        exc.during = exc.during or during
        raise


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class OrtPerfTest(_Tool):
    """``onnxruntime_perf_test -e cpu -m times -r N [-x T] -o 99 model.onnx results``."""

    tool = "onnxruntime_perf_test"
    backend = "onnxruntime"

    def measure(self, device: Device, artifact: Artifact, inputs: Path, settings: RunSettings,
                info: DeviceInfo) -> NativeMeasurement:
        import numpy as np
        from onnx import numpy_helper

        binary = self._install(device)
        case_dir = device.workdir / f"ort-{artifact.sha256[:16]}"
        model = case_dir / "model.onnx"
        _push(device, artifact.path, model, "push of the model")
        with tempfile.TemporaryDirectory(prefix="edgebench-native-") as tmp:
            with np.load(inputs, allow_pickle=False) as data:
                for i, name in enumerate(data.files):
                    pb = Path(tmp) / f"input_{i}.pb"
                    pb.write_bytes(numpy_helper.from_array(data[name], name).SerializeToString())
                    _push(device, pb, case_dir / "test_data_set_0" / pb.name,
                          "push of the inputs")
            results = case_dir / f"results-{time.time_ns()}.txt"
            argv = [str(binary), "-e", "cpu", "-m", "times", "-r", str(settings.iterations),
                    "-o", "99"]
            if settings.threads:
                argv += ["-x", str(settings.threads)]
            stdout = self._run(device, [*argv, str(model), str(results)], settings.timeout_s)
            local = Path(tmp) / "results.txt"
            device.pull(results, local)
            samples = parse_perf_test_samples(local.read_text(errors="replace"))
        try:
            summary = parse_perf_test(stdout)
        except ParseError as exc:
            raise CaseError(f"cannot read {self.tool}'s output: {exc}") from None
        if not samples:
            raise CaseError(f"{self.tool} wrote no per-run times to its result file")
        latency = latency_stats(
            [round(s * 1e9) for s in samples],
            init_ns=int((summary.init_ms or 0) * NS_PER_MS),
            first_inference_ns=int((summary.first_ms or 0) * NS_PER_MS),
            gflops=artifact.gflops, peak=case_peak(info, settings.threads, artifact.precision))
        notes = [f"measured by native {self.tool} (warm-up: its own single run)"]
        if settings.min_duration_s:
            notes.append(f"{self.tool} has no minimum duration: ran "
                         f"{settings.iterations} iterations")
        memory = MemoryStats(None, None, None, None, summary.peak_memory_bytes)
        return NativeMeasurement(latency, self._runtime(settings.threads, "onnxruntime"),
                                 memory, tuple(notes))


class TfliteBenchmarkModel(_Tool):
    """TFLite/LiteRT ``benchmark_model --graph=M --num_runs=N --warmup_runs=W ...``."""

    tool = "benchmark_model"
    backend = "litert"

    def measure(self, device: Device, artifact: Artifact, inputs: Path, settings: RunSettings,
                info: DeviceInfo) -> NativeMeasurement:
        binary = self._install(device)
        model = device.workdir / "models" / f"{artifact.sha256[:16]}.tflite"
        _push(device, artifact.path, model, "push of the model")
        argv = [str(binary), f"--graph={model}", f"--num_runs={settings.iterations}",
                f"--warmup_runs={settings.warmup_iterations}",
                f"--warmup_min_secs={settings.warmup_s:g}",
                f"--min_secs={settings.min_duration_s:g}",
                f"--max_secs={settings.timeout_s:g}"]
        if settings.threads:
            argv.append(f"--num_threads={settings.threads}")
        stdout = self._run(device, argv, settings.timeout_s)
        try:
            summary = parse_benchmark_model(stdout)
        except ParseError as exc:
            raise CaseError(f"cannot read {self.tool}'s output: {exc}") from None
        latency, notes = summary_latency(summary, artifact.gflops, None,
                                         case_peak(info, settings.threads, artifact.precision))
        memory = MemoryStats(None, None, None, None, summary.peak_memory_bytes)
        return NativeMeasurement(latency, self._runtime(settings.threads, "tflite"), memory,
                                 (*notes, "input: benchmark_model's random data"))


class BenchNcnn(_Tool):
    """``benchncnn LOOPS THREADS 0 -1 0 param=model.param shape=[w,h,c]``."""

    tool = "benchncnn"
    backend = "ncnn"

    def measure(self, device: Device, artifact: Artifact, inputs: Path, settings: RunSettings,
                info: DeviceInfo) -> NativeMeasurement:
        binary = self._install(device)
        source = artifact.path
        params = sorted(source.glob("*.param")) if source.is_dir() else [source]
        if not params or params[0].suffix != ".param":
            raise CaseError(f"benchncnn needs an ncnn .param file, got {source.name}")
        model = device.workdir / "models" / f"{artifact.sha256[:16]}.param"
        _push(device, params[0], model, "push of the model")
        threads = settings.threads or info.cores or 1
        argv = [str(binary), str(settings.iterations), str(threads), "0", "-1", "0",
                f"param={model}"]
        shape = artifact.input_shape
        if shape and len(shape) == 4 and all(d > 0 for d in shape[1:]):
            argv.append(f"shape=[{shape[3]},{shape[2]},{shape[1]}]")
        stdout = self._run(device, argv, settings.timeout_s)
        try:
            summary = parse_benchncnn(stdout, settings.iterations)
        except ParseError as exc:
            raise CaseError(f"cannot read {self.tool}'s output: {exc}") from None
        latency, notes = summary_latency(summary, artifact.gflops, None,
                                         case_peak(info, threads, artifact.precision))
        return NativeMeasurement(latency, self._runtime(threads, "ncnn"), None,
                                 (*notes, "weights: benchncnn's random ones (speed only)"))


TOOLS: dict[str, type[_Tool]] = {t.tool: t for t in (OrtPerfTest, TfliteBenchmarkModel,
                                                     BenchNcnn)}


def native_runners(options: Mapping[str, str], uri: str) -> dict[str, NativeRunner]:
    """The native runners a device URI configures, by backend; a missing binary is an error."""
    runners: dict[str, NativeRunner] = {}
    for tool, cls in TOOLS.items():
        if tool not in options:
            continue
        binary = Path(options[tool]).expanduser()
        if not binary.is_file():
            raise UserError(f"device {redact(uri)!r}: {tool}={binary} is not a file on this host "
                            f"(give the path of a {tool} built for the device's ABI).")
        runners[cls.backend] = cls(binary)
    return runners
