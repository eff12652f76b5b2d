"""The core checks what a plugin returns, and bad input gives one sentence, never a traceback.

Small real plugins, registered through the normal plugin manager as a third party's would
be, each get one thing wrong: a backend's ``export()`` returning a format it does not
declare, something that is not an artifact, a file that does not exist, or raising; a
runner whose result lacks a field or has one of the wrong type; runner options JSON cannot
carry; a compressor returning a non-artifact or an artifact of another format than its
target. One run holds them all, next to a healthy ONNX Runtime case; each test reads its
case's reason from ``report.json`` on disk.

Bad input, for every registered backend: a runtime missing on the device is ``skipped``
with the command that installs it for that device's own Python; an unknown option lists the
valid ones; a model the converter rejects is ``failed: converting ... (<the converter's last
error line>)``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edgebench import hookimpl
from edgebench.cli import main
from edgebench.config import Matrix
from edgebench.contracts import Backend, CompressionContext, Compressor
from edgebench.devices.local import LocalDevice
from edgebench.errors import CaseError, CaseSkipped
from edgebench.execution import _check_supported
from edgebench.pipeline import load_source, run_tool
from edgebench.plugin_checks import class_name
from edgebench.plugin_manager import PluginKind, collect_registry, make_plugin_manager
from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend
from edgebench.records import Artifact, DeviceInfo, RunSettings
from edgebench.runner import Session

ASSETS = Path(__file__).parents[1] / "harness" / "assets"
ORT_RUNNER = OnnxRuntimeBackend().runner()
PLUGIN = "faulty"

# -- the faulty plugins -------------------------------------------------------------------


class _Base(Backend):
    formats: ClassVar[tuple[str, ...]] = ("onnx",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)

    def export(self, source: Artifact, workdir: Path, *, imgsz: Any) -> Artifact:
        return source

    def runner(self) -> Path:
        return ORT_RUNNER


class ReturnsSource(_Base):
    """The README trap: returns its source, a .pt, to an ONNX-only runtime."""

    name: ClassVar[str] = "returns-source"


class ReturnsPath(_Base):
    name: ClassVar[str] = "returns-path"

    def export(self, source: Artifact, workdir: Path, *, imgsz: Any) -> Artifact:
        return source.path  # type: ignore[return-value]  # the fault


class ReturnsMissingFile(_Base):
    name: ClassVar[str] = "returns-missing-file"

    def export(self, source: Artifact, workdir: Path, *, imgsz: Any) -> Artifact:
        return dataclasses.replace(source, path=workdir / "never-written.onnx")


class ConverterRaises(_Base):
    """A converter run in-process that rejects the model with a multi-line error."""

    name: ClassVar[str] = "converter-raises"

    def export(self, source: Artifact, workdir: Path, *, imgsz: Any) -> Artifact:
        raise RuntimeError("while reading the graph:\n  node 12 (Foo): unsupported op Foo")


class UnsendableOptions(_Base):
    name: ClassVar[str] = "unsendable-options"

    def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
        return {"cache_dir": Path("/tmp")}  # a Path: not JSON


class NoRunner(_Base):
    name: ClassVar[str] = "no-runner"

    def runner(self) -> Path:
        return ORT_RUNNER.with_name("no_such_runner.py")


RUNNER = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgebench_agent as agent

def import_runtime(request):
    import onnxruntime
    return onnxruntime

def load(ort, request, inputs):
    session = ort.InferenceSession(request["model"], providers=["CPUExecutionProvider"])
    (name, x), = inputs.items()
    return agent.Loaded(lambda: session.run(None, {name: x}), runtime=RUNTIME)

if __name__ == "__main__":
    code = agent.main(import_runtime, load)
    out = sys.argv[sys.argv.index("--out") + 1]
    with open(out) as f:
        result = json.load(f)
    DROP
    with open(out, "w") as f:
        json.dump(result, f)
    sys.exit(code)
'''


def _runner(folder: Path, name: str, runtime: str, drop: str) -> Path:
    path = folder / f"{name.replace('-', '_')}_runner.py"
    path.write_text(RUNNER.replace("RUNTIME", runtime).replace("DROP", drop))
    return path


class ResultWithoutSamples(_Base):
    name: ClassVar[str] = "result-without-samples"
    script: ClassVar[Path]

    def runner(self) -> Path:
        return self.script


class ResultWithNumberVersion(ResultWithoutSamples):
    name: ClassVar[str] = "result-number-version"


class ReturnsPathCompressor(Compressor):
    name: ClassVar[str] = "as-path"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "returns a path, not an artifact"

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        return model.path  # type: ignore[return-value]  # the fault


class OtherFormatCompressor(Compressor):
    """Declares it works on ONNX but hands back a .tflite."""

    name: ClassVar[str] = "other-format"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "returns a tflite for an onnx step"

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        return load_source(ASSETS / "shapes-yolov8n.tflite")


FAULTY_BACKENDS: tuple[type[Backend], ...] = (
    ReturnsSource, ReturnsPath, ReturnsMissingFile, ConverterRaises, UnsendableOptions,
    NoRunner, ResultWithoutSamples, ResultWithNumberVersion)


def _plugin(backends: tuple[type[Backend], ...] = (),
            compressors: tuple[type[Compressor], ...] = (),
            devices: tuple[type[LocalDevice], ...] = ()) -> types.SimpleNamespace:
    def edgebench_register_backends(register):  # type: ignore[no-untyped-def]
        for cls in backends:
            register(cls)

    def edgebench_register_compressors(register):  # type: ignore[no-untyped-def]
        for cls in compressors:
            register(cls)

    def edgebench_register_devices(register):  # type: ignore[no-untyped-def]
        for cls in devices:
            register(cls)

    return types.SimpleNamespace(
        edgebench_register_backends=hookimpl(edgebench_register_backends),
        edgebench_register_compressors=hookimpl(edgebench_register_compressors),
        edgebench_register_devices=hookimpl(edgebench_register_devices))


def _label(cls: type) -> str:
    return f"plugin {PLUGIN!r}, class {class_name(cls)}"


FAST = RunSettings(warmup_iterations=1, iterations=3)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory,
               embedded_onnx: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """One run of every faulty plugin next to ONNX Runtime, on the embedded ONNX and a copy
    of its .pt; the cases on disk by (model stem, backend, pipeline)."""
    tmp = tmp_path_factory.mktemp("faulty")
    ResultWithoutSamples.script = _runner(tmp, "without-samples",
                                          '("onnxruntime", ort.__version__)',
                                          'del result["samples_ns"]')
    ResultWithNumberVersion.script = _runner(tmp, "number-version", '("onnxruntime", 1.5)',
                                             "pass")
    pt = tmp / "model.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", pt)  # never export next to the assets
    pm = make_plugin_manager(extra_plugins=[(PLUGIN, _plugin(
        FAULTY_BACKENDS, (ReturnsPathCompressor, OtherFormatCompressor)))])
    registry = collect_registry(pm)
    cases = {}
    # the .pt goes only to the backend that hands it back (no Ultralytics export here)
    for models, backends, compress in [
            ((embedded_onnx,), ("onnxruntime", *(c.name for c in FAULTY_BACKENDS[1:])),
             ("as-path", "other-format")),
            ((pt,), (ReturnsSource.name,), ())]:
        out = tmp / f"out-{len(cases)}"
        out.mkdir()
        matrix = Matrix(models=models, backends=backends, compress=compress, accuracy=None,
                        settings=FAST, output_dir=out)
        session = Session(matrix, pm, registry)
        try:
            report = session.run(out)
        finally:
            session.close()
        on_disk = json.loads((out / "report.json").read_text())
        assert on_disk["run_id"] == report.run_id
        for case in on_disk["cases"]:
            stem = case["case"]["model"].split("@")[0]
            pipeline = "+".join(case["case"]["pipeline"]) or "fp32"
            cases[(stem, case["case"]["backend"], pipeline)] = case
    return cases


def _reason(cases: Mapping[tuple[str, str, str], dict[str, Any]], backend: str,
            pipeline: str = "fp32", model: str = "shapes-yolov8n") -> str:
    case = cases[(model, backend, pipeline)]
    assert case["status"] == "failed", case
    assert "Traceback" not in case["reason"]
    return str(case["reason"])


def test_the_healthy_backend_next_to_them_is_measured(faulty_run: Any) -> None:
    case = faulty_run[("shapes-yolov8n", "onnxruntime", "fp32")]
    assert case["status"] == "ok", case["reason"]
    assert case["latency"]["n"] == 3


def test_export_returning_a_format_it_does_not_declare(faulty_run: Any) -> None:
    assert _reason(faulty_run, "returns-source", model="model") == (
        f"export() of backend 'returns-source' ({_label(ReturnsSource)}) returned a pt "
        "artifact (model.pt), not one of the formats it declares (onnx)")


def test_export_returning_something_else_than_an_artifact(faulty_run: Any) -> None:
    reason = _reason(faulty_run, "returns-path")
    assert reason.startswith(f"export() of backend 'returns-path' ({_label(ReturnsPath)}) "
                             "returned a PosixPath (PosixPath('/")
    assert reason.endswith("), not an edgebench.records.Artifact")


def test_export_returning_a_file_that_does_not_exist(faulty_run: Any) -> None:
    reason = _reason(faulty_run, "returns-missing-file")
    assert reason.startswith(f"export() of backend 'returns-missing-file' "
                             f"({_label(ReturnsMissingFile)}) returned an artifact whose "
                             "file /")
    assert reason.endswith("/never-written.onnx does not exist")


def test_a_converter_raising_in_export_is_its_last_error_line(faulty_run: Any) -> None:
    assert _reason(faulty_run, "converter-raises") == (
        "converting shapes-yolov8n.onnx for backend 'converter-raises' failed: RuntimeError: "
        f"node 12 (Foo): unsupported op Foo (raised by export() of {_label(ConverterRaises)})")


def test_runner_options_json_cannot_carry(faulty_run: Any) -> None:
    assert _reason(faulty_run, "unsendable-options") == (
        f"runner_options() of backend 'unsendable-options' ({_label(UnsendableOptions)}) "
        "returned options the runner request cannot carry (JSON: TypeError: Object of type "
        "PosixPath is not JSON serializable)")


def test_a_runner_script_that_does_not_exist(faulty_run: Any) -> None:
    assert _reason(faulty_run, "no-runner") == (
        f"runner() of backend 'no-runner' ({_label(NoRunner)}) returned "
        f"{ORT_RUNNER.with_name('no_such_runner.py')}, which is not a file")


def test_a_runner_result_missing_a_field(faulty_run: Any) -> None:
    assert _reason(faulty_run, "result-without-samples") == (
        "the runner's result is malformed: samples_ns is not a non-empty list of "
        "non-negative integers (the runner of backend 'result-without-samples', "
        f"{_label(ResultWithoutSamples)})")


def test_a_runner_result_with_a_mistyped_field(faulty_run: Any) -> None:
    assert _reason(faulty_run, "result-number-version") == (
        "the runner's result is malformed: runtime.version is missing or not a string (the "
        f"runner of backend 'result-number-version', {_label(ResultWithNumberVersion)})")


def test_a_compressor_returning_something_else_than_an_artifact(faulty_run: Any) -> None:
    reason = _reason(faulty_run, "onnxruntime", "as-path")
    assert reason.startswith(f"apply() of compressor 'as-path/onnx' "
                             f"({_label(ReturnsPathCompressor)}) returned a PosixPath (")
    assert reason.endswith("), not an edgebench.records.Artifact")


def test_a_compressor_returning_another_format_than_its_target(faulty_run: Any) -> None:
    assert _reason(faulty_run, "onnxruntime", "other-format") == (
        f"apply() of compressor 'other-format/onnx' ({_label(OtherFormatCompressor)}) "
        "returned a tflite artifact (shapes-yolov8n.tflite), not one of the formats it "
        "declares (onnx)")


# -- bad input: a runtime missing on the device ---------------------------------------------


@functools.cache
def _provider(module: str) -> str | None:
    """The installed distribution providing ``module``'s top-level package, by the
    standard library's own reading of the installed metadata
    (``importlib.metadata.packages_distributions``), not by edgebench's."""
    dists = _packages().get(module.split(".")[0])
    return sorted(dists)[0] if dists else None


@functools.cache
def _packages() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _backends() -> list[type[Backend]]:
    registry = collect_registry(make_plugin_manager())
    return [reg.cls for reg in registry.of(PluginKind.BACKEND).values()]


@pytest.mark.parametrize("backend", _backends(), ids=lambda cls: cls.name)
def test_every_backend_missing_on_a_device_gives_that_devices_install_command(
        backend: type[Backend]) -> None:
    """With neither the runtime nor numpy on the device: skipped, with the command for the
    device's own interpreter naming the distribution that provides the runtime module."""
    if not backend.runtime_modules:
        pytest.skip(f"{backend.name} declares no runtime module to check")
    info = DeviceInfo(uri="ssh://pi@board", hostname=None, arch="aarch64", os="linux",
                      cpu_model=None, cores=4, ram_bytes=None, python="3.9.2", governor=None,
                      temperature_c=None, runtimes={})
    python = "/home/pi/venv/bin/python3"
    with pytest.raises(CaseSkipped) as err:
        _check_supported(backend(), info, info.uri, python)
    modules = " or ".join(backend.runtime_modules)
    providers = [p for p in map(_provider, backend.runtime_modules) if p]
    declared = backend().device_install_requirements(info)  # e.g. litert's numpy-aware pick
    packages = declared or tuple(providers[:1])
    if not packages:
        pytest.skip(f"no distribution providing {modules} is installed here")
    assert str(err.value) == (f"{modules} and numpy are not installed on ssh://pi@board; "
                              f"install them there with: {python} -m pip install "
                              f"{shlex.join(packages)} numpy")
    with_numpy = dataclasses.replace(info, runtimes={"numpy": "1.26.4"})
    packages = backend().device_install_requirements(with_numpy) or tuple(providers[:1])
    with pytest.raises(CaseSkipped) as err:
        _check_supported(backend(), with_numpy, info.uri, python)
    assert str(err.value) == (f"{modules} is not installed on ssh://pi@board; install it "
                              f"there with: {python} -m pip install {shlex.join(packages)}")


def _venv(folder: Path) -> Path:
    """A real second interpreter with nothing installed (a venv without pip)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device's Python that has neither numpy nor any runtime."""
    return _venv(tmp_path_factory.mktemp("bare") / "venv")


@pytest.fixture(scope="module")
def numpy_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device's Python that has numpy (this host's, linked in with a .pth) and no
    runtime."""
    import numpy

    root = tmp_path_factory.mktemp("numpy-only")
    python = _venv(root / "venv")
    only = root / "only-numpy"
    only.mkdir()
    site = Path(numpy.__file__).parents[1]
    for entry in site.iterdir():
        if entry.name == "numpy" or entry.name.startswith(("numpy-", "numpy.")):
            (only / entry.name).symlink_to(entry)
    (site_dir,) = (root / "venv" / "lib").glob("python3*/site-packages")
    (site_dir / "only-numpy.pth").write_text(f"{only}\n")
    check = subprocess.run([str(python), "-c", "import numpy; import onnxruntime"],
                           capture_output=True, text=True, timeout=120)
    assert "No module named 'onnxruntime'" in check.stderr, check.stderr
    return python


def _bare_device(python: Path) -> type[LocalDevice]:
    class BareDevice(LocalDevice):
        """This machine, through an interpreter that has nothing installed."""

        scheme: ClassVar[str] = "bare"

        def __init__(self, uri: str = "bare://box") -> None:
            super().__init__(uri, python=str(python))

        @classmethod
        def check_uri(cls, uri: str) -> None:
            return None

    return BareDevice


class ImportsOnly(_Base):
    """Declares no runtime module, so only its runner finds onnxruntime missing."""

    name: ClassVar[str] = "imports-only"
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    script: ClassVar[Path]

    def runner(self) -> Path:
        return self.script


def _run_on(python: Path, model: Path, out: Path) -> dict[str, tuple[str, str]]:
    """Run ONNX Runtime and :class:`ImportsOnly` on a device whose interpreter is
    ``python``; (status, reason) by backend, read from the report on disk."""
    ImportsOnly.script = _runner(out, "imports-only", '("onnxruntime", "1")', "pass")
    pm = make_plugin_manager(extra_plugins=[(PLUGIN, _plugin(
        (ImportsOnly,), devices=(_bare_device(python),)))])
    matrix = Matrix(models=(model,), backends=("onnxruntime", "imports-only"),
                    devices=("bare://box",), accuracy=None, settings=FAST, output_dir=out)
    session = Session(matrix, pm, collect_registry(pm))
    try:
        session.run(out)
    finally:
        session.close()
    on_disk = json.loads((out / "report.json").read_text())
    return {c["case"]["backend"]: (c["status"], c["reason"]) for c in on_disk["cases"]}


def test_a_runtime_missing_on_a_real_device_is_skipped_with_its_command(
        bare_python: Path, numpy_python: Path, embedded_onnx: Path, tmp_path: Path) -> None:
    """Real runs on a device whose Python has nothing, then only numpy: the backend that
    declares its runtime module is skipped before running; one whose runner finds the
    module missing while importing is skipped too, with the same kind of command."""
    (tmp_path / "bare").mkdir()
    assert _run_on(bare_python, embedded_onnx, tmp_path / "bare") == {
        backend: ("skipped", "onnxruntime and numpy are not installed on bare://box; install "
                  f"them there with: {bare_python} -m pip install onnxruntime numpy")
        for backend in ("onnxruntime", "imports-only")} | {
        "imports-only": ("skipped", "numpy is not installed on bare://box; install it there "
                         f"with: {bare_python} -m pip install numpy")}
    (tmp_path / "numpy").mkdir()
    assert _run_on(numpy_python, embedded_onnx, tmp_path / "numpy") == {
        "onnxruntime": ("skipped", "onnxruntime is not installed on bare://box; install it "
                        f"there with: {numpy_python} -m pip install onnxruntime"),
        "imports-only": ("skipped", "the imports-only runner cannot import onnxruntime on "
                         f"bare://box; install it there with: {numpy_python} -m pip install "
                         "onnxruntime")}


# -- bad input: unknown options, rejected models ----------------------------------------------


def _usable_backends() -> list[type[Backend]]:
    return [cls for cls in _backends() if cls.host_unavailable_reason() is None]


@pytest.mark.parametrize("backend", _usable_backends(), ids=lambda cls: cls.name)
def test_every_backends_unknown_option_lists_the_valid_ones(
        backend: type[Backend], make_onnx: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(make_onnx("conv", size=32))
    argv = ["run", "-m", model, "-b", backend.name, "--no-accuracy", "-n", "1"]
    assert main([*argv, "--backend-option", f"{backend.name}.no_such_option=1"]) == 2
    err = capsys.readouterr().err
    valid = ", ".join(sorted(backend.option_defaults))
    assert err == (f"edgebench: error: backend {backend.name!r} has no option "
                   f"'no_such_option'; its options are {valid}.\n" if valid else
                   f"edgebench: error: backend {backend.name!r} takes no options; got "
                   "'no_such_option'.\n")
    for key, allowed in backend.option_choices.items():
        assert main([*argv, "--backend-option", f"{backend.name}.{key}=no-such-value"]) == 2
        assert capsys.readouterr().err == (
            f"edgebench: error: backend {backend.name!r} option {key!r} must be one of "
            f"{', '.join(map(str, allowed))}; got 'no-such-value'.\n")


def test_an_option_a_backend_ignores_is_still_refused(make_onnx: Any) -> None:
    """A backend whose runner_options() does not look at the run's options: the core checks
    them against its declared option_defaults anyway."""

    class OwnOptions(_Base):
        name: ClassVar[str] = "own-options"
        option_defaults: ClassVar[Mapping[str, Any]] = {"streams": 1}

        def runner_options(self, settings: RunSettings) -> Mapping[str, Any]:
            return {"streams": 1}

    pm = make_plugin_manager(extra_plugins=[(PLUGIN, _plugin((OwnOptions,)))])
    settings = dataclasses.replace(FAST, backend_options={"own-options": {"stream": 2}})
    matrix = Matrix(models=(make_onnx("conv", size=32),), backends=("own-options",),
                    accuracy=None, settings=settings)
    with pytest.raises(Exception, match=r"^backend 'own-options' has no option 'stream'; "
                                        r"its options are streams\.$"):
        Session(matrix, pm, collect_registry(pm)).close()


def test_a_failed_tool_is_named_by_its_last_error_line(tmp_path: Path) -> None:
    """Progress on stdout after the error (as Ultralytics' settings notice) is not the
    reason: the last line of stderr is."""
    tool = tmp_path / "tool.py"
    tool.write_text(textwrap.dedent("""\
        import sys
        print("step 1 ... done")
        sys.stderr.write("\\x1b[31mloading graph\\x1b[0m\\nValueError: op Foo is not supported\\n")
        print("Update settings with 'tool settings key=value'")
        sys.exit(3)
        """))
    with pytest.raises(CaseError) as err:
        run_tool([sys.executable, str(tool)], "converting m.onnx to foo with tool")
    assert str(err.value) == ("converting m.onnx to foo with tool failed (exit 3): "
                              "ValueError: op Foo is not supported")


def test_a_model_pnnx_rejects_fails_with_pnnxs_own_last_error_line(
        make_onnx: Any, tmp_path: Path) -> None:
    """The real converter as the oracle: pnnx run by hand on the same model ends its stderr
    with the line the case's reason ends with."""
    from edgebench.pipeline import clipped
    from edgebench.plugins.backends.ncnn.pnnx import pnnx_binary

    binary = pnnx_binary()
    if binary is None:
        pytest.skip("pnnx is not installed")
    model = make_onnx("bad_op")
    by_hand = subprocess.run([str(binary), str(model), "inputshape=[1,3,64,64]f32",
                              f"ncnnparam={tmp_path / 'm.param'}",
                              f"ncnnbin={tmp_path / 'm.bin'}", f"ncnnpy={tmp_path / 'm.py'}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert by_hand.returncode != 0
    last = [ln for ln in by_hand.stderr.splitlines() if ln.strip()][-1].strip()
    how = (f"killed by {signal.Signals(-by_hand.returncode).name}" if by_hand.returncode < 0
           else f"exit {by_hand.returncode}")
    out = tmp_path / "out"
    code = main(["run", "-m", str(model), "-b", "ncnn", "--no-accuracy", "-n", "1",
                 "--warmup", "0", "-o", str(out)])
    (report,) = out.glob("*/report.json")  # the CLI writes into a run directory
    (case,) = json.loads(report.read_text())["cases"]
    assert code == 1 and case["status"] == "failed"
    assert case["reason"] == (f"converting bad_op.onnx to ncnn with pnnx failed ({how}): "
                              f"{clipped(last)}")


@pytest.fixture(scope="module")
def rejected_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .pt no converter accepts: bytes that are no PyTorch checkpoint."""
    path = tmp_path_factory.mktemp("rejected") / "broken.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


@pytest.mark.export
@pytest.mark.slow  # an Ultralytics worker per backend: about 10 s each on 2 shared vCPUs
def test_every_backend_converting_a_rejected_model_fails_with_its_last_error_line(
        rejected_pt: Path, tmp_path: Path) -> None:
    """Every usable backend is given a .pt its converter rejects: each case is failed
    (``converting broken.pt ...``, ending in the loader's own last error line) or skipped
    with a reason; none is a traceback, and the run finishes."""
    names = [cls.name for cls in _usable_backends()]
    code = main(["run", "-m", str(rejected_pt), "-b", ",".join(names), "--no-accuracy",
                 "-n", "1", "--warmup", "0", "-o", str(tmp_path)])
    (report,) = tmp_path.glob("*/report.json")  # the CLI writes into a run directory
    cases = {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}
    assert set(cases) == set(names)
    failed = 0
    for name, case in cases.items():
        assert case["status"] in ("failed", "skipped"), (name, case)
        assert case["reason"] and "Traceback" not in case["reason"], (name, case["reason"])
        if case["status"] == "failed":
            failed += 1
            assert case["reason"].startswith("converting broken.pt "), (name, case["reason"])
            # what Ultralytics' checkpoint loader (torch_safe_load) says last
            assert "supported Ultralytics checkpoint format" in case["reason"], (
                name, case["reason"])
    assert failed >= 1 and code == 1  # exit 1: some case failed


def test_the_plugins_listing_shows_every_backends_formats_install_and_usability(
        capsys: pytest.CaptureFixture[str]) -> None:
    pm = make_plugin_manager(extra_plugins=[(PLUGIN, _plugin(
        (ReturnsSource,), (OtherFormatCompressor,)))])
    registry = collect_registry(pm)
    from edgebench.plugin_listing import render_plugins

    text = render_plugins(registry, ("thermal",))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [ln for ln in lines if len(ln) > 80]
    flat = " ".join(line.strip() for line in lines)
    for reg in registry.of(PluginKind.BACKEND).values():
        cls = reg.cls
        assert f"  {cls.name}  (" in text
        assert f"formats: {', '.join(cls.formats)}" in flat
        reason = cls.host_unavailable_reason()
        assert ("usable here: yes" if reason is None else f"usable here: no: {reason}") in flat
        if cls.install_hint:
            assert f"install: {cls.install_hint}" in flat
    start = lines.index(f"  returns-source  (plugin {PLUGIN!r})")
    assert lines[start + 1:start + 5] == [
        "    formats: onnx", "    usable here: yes", "    install: (not said by the plugin)",
        "    on a device: DEVICE_PYTHON -m pip install onnxruntime"]
    assert ("  other-format for onnx  (plugin 'faulty')\n    usable here: yes\n"
            "    returns a tflite for an onnx step") in text
    assert lines[-1] == "disabled: thermal"
