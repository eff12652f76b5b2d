"""LiteRT on a device that runs ``tflite-runtime`` 2.14 with numpy 1.26 (what many Raspberry Pi
images have), for real: a second interpreter, a venv the test builds from the package
registry, used as the device's Python (``local?python=PATH``, and ``ssh://...?python=PATH``).

The oracle for its outputs is ``ai-edge-litert`` running the same ``.tflite`` in the
harness's own interpreter, and the float ONNX Runtime reference of every run.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_fixtures import only_report, ssh_home, sshd  # noqa: F401
from servers import SshServer

from edgebench.accuracy import AccuracySettings, precision_tolerance
from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.datasets import load_dataset
from edgebench.devices.local import LocalDevice
from edgebench.evaluation import evaluate, make_reference, prepare_batch
from edgebench.fingerprint import DeviceAgent
from edgebench.plugins.backends.litert.plugin import LiteRTBackend
from edgebench.records import DeviceInfo, RunSettings
from edgebench.remote import Pusher, RunnerJob, run_job, runner_request

pytest.importorskip("ai_edge_litert")
TFLITE = ASSETS / "shapes-yolov8n.tflite"
REQUIREMENTS = ("numpy<2", "tflite-runtime==2.14.0")
"""The device's packages: tflite-runtime's last release, built for numpy 1."""
FAST = ["-b", "litert", "-n", "3", "--warmup", "1", "--images", "10", "--threads", "1"]
UNREACHABLE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is "
                         r"unreachable|ProxyError|ConnectTimeout|Connection refused|"
                         r"Max retries exceeded|SSLError|Could not fetch URL")


def _venv(root: Path, requirements: tuple[str, ...]) -> Path:
    """A venv at ``root`` with ``requirements`` from the package registry, built once (a
    ``ready`` file marks a complete one); skips when the registry cannot be reached."""
    python = root / "bin" / "python"
    ready = root / "edgebench-ready"
    if ready.is_file() and python.exists():
        return python
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                           "--retries", "1", "--timeout", "20", *requirements],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        if UNREACHABLE.search(done.stdout + done.stderr):
            pytest.skip(f"the package registry is unreachable, so the venv with "
                        f"{' '.join(requirements)} cannot be built: {' / '.join(tail)}")
        pytest.fail(f"pip install {' '.join(requirements)} failed: {' / '.join(tail)}")
    ready.write_text(json.dumps(requirements))
    return python


@pytest.fixture(scope="session")
def tflite_python(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a venv with ``numpy<2`` and ``tflite-runtime==2.14.0`` (and not
    ai-edge-litert); cached in pytest's cache dir, keyed by the requirements and this
    Python, so a clean clone builds it once (about 5 s with pip's own cache warm)."""
    if sys.version_info[:2] > (3, 11):
        pytest.skip("tflite-runtime 2.14 has wheels for Python 3.8-3.11 only; this is "
                    f"{sys.version.split()[0]}")
    key = hashlib.sha256(json.dumps([REQUIREMENTS, sys.version, sys.platform]).encode())
    name = f"tflite-runtime-venv-{key.hexdigest()[:12]}"
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    return _venv(root / "venv", REQUIREMENTS)


def _by_device(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["case"]["device"]: case for case in report["cases"]}


def test_tflite_runtime_case_is_ok_next_to_ai_edge_litert(tflite_python: Path,
                                                          tmp_path: Path) -> None:
    """One run, two devices: the harness's interpreter (ai-edge-litert, numpy 2) and the
    venv's (tflite-runtime 2.14, numpy 1.26); both ok against the float reference."""
    device = f"local?python={tflite_python}"
    assert main(["run", *FAST, "-d", "local", "-d", device, "-o", str(tmp_path)]) == 0
    report = only_report(tmp_path)
    cases = _by_device(report)
    new, old = cases["local"], cases[device]
    assert (new["status"], old["status"]) == ("ok", "ok"), (new["reason"], old["reason"])
    assert new["runtime"]["name"] == "ai-edge-litert"
    assert (old["runtime"]["name"], old["runtime"]["version"]) == ("tflite-runtime", "2.14.0")
    fingerprint = old["device"]
    assert fingerprint["runtimes"]["numpy"].startswith("1.26.")
    assert "ai_edge_litert" not in fingerprint["runtimes"]
    # the same graph, the same kernels: XNNPACK takes the same nodes on both
    assert old["runtime"]["delegation"] == new["runtime"]["delegation"]
    for case in (new, old):
        fidelity = case["accuracy"]["fidelity"]
        assert fidelity["detection_agreement"] == 1.0 and fidelity["within_tolerance"]
        assert fidelity["reference_detections"] > 20
    assert old["accuracy"]["map50_95"] == pytest.approx(new["accuracy"]["map50_95"], abs=1e-3)


def _outputs(uri: str, tmp_path: Path) -> tuple[dict[str, Any], list[list[np.ndarray]]]:
    """The LiteRT runner's runtime and its outputs on the first 10 embedded val images, run
    on ``uri`` exactly as a case runs it."""
    batch = prepare_batch(load_dataset(None).first(10), "serving_default_args_0", (320, 320),
                          tmp_path / "cache")
    settings = RunSettings(warmup_iterations=0, iterations=1, threads=1, timeout_s=300)
    job = RunnerJob(runner=LiteRTBackend().runner(), model=TFLITE,
                    model_key=hashlib.sha256(TFLITE.read_bytes()).hexdigest()[:16],
                    inputs=batch.timing_input, accuracy_inputs=batch.tensors,
                    request=runner_request(settings, dict(LiteRTBackend.option_defaults)),
                    timeout_s=300)
    with LocalDevice(uri) as device:
        outcome = run_job(device, DeviceAgent(device), job, Pusher())
    assert outcome.result.runtime is not None and outcome.outputs is not None
    return outcome.result.runtime.to_json(), outcome.outputs


def test_tflite_runtime_agrees_with_ai_edge_litert(tflite_python: Path, tmp_path: Path) -> None:
    """ai-edge-litert's outputs are the reference: tflite-runtime's detections match every
    one of them and its raw outputs are within the fp32 tolerance."""
    new_runtime, new = _outputs("local", tmp_path)
    old_runtime, old = _outputs(f"local?python={tflite_python}", tmp_path)
    assert (new_runtime["name"], old_runtime["name"]) == ("ai-edge-litert", "tflite-runtime")
    batch = prepare_batch(load_dataset(None).first(10), "serving_default_args_0", (320, 320),
                          tmp_path / "cache")
    settings = AccuracySettings()
    reference = make_reference("ai-edge-litert on the host", batch, new, settings)
    accuracy = evaluate(batch, old, settings, reference=reference,
                        tolerance=precision_tolerance("fp32"))
    fidelity = accuracy.fidelity
    assert fidelity is not None and fidelity.reference_detections > 20
    assert fidelity.detection_agreement == 1.0 and fidelity.within_tolerance
    assert fidelity.max_abs < 1e-3


@pytest.mark.sshd
def test_tflite_runtime_over_ssh(tflite_python: Path, sshd: SshServer,  # noqa: F811
                                 tmp_path: Path) -> None:
    uri = sshd.uri(python=str(tflite_python))
    assert main(["run", *FAST, "--images", "3", "-d", uri, "-o", str(tmp_path)]) == 0
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "ok", case["reason"]
    assert (case["runtime"]["name"], case["runtime"]["version"]) == ("tflite-runtime", "2.14.0")
    assert case["accuracy"]["fidelity"]["detection_agreement"] == 1.0


def test_a_device_python_without_either_runtime_is_told_the_pip_command(
        tmp_path: Path) -> None:
    """A bare venv (no numpy, no runtime): skipped, naming that interpreter's pip."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
                   check=True)
    python = tmp_path / "bare" / "bin" / "python"
    device = f"local?python={python}"
    assert main(["run", *FAST, "-d", device, "-o", str(tmp_path / "out")]) == 0
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "skipped"
    assert case["reason"] == (
        f"ai_edge_litert or tflite_runtime and numpy are not installed on {device}; "
        f"install them there with: {python} -m pip install ai-edge-litert numpy")


def test_the_runner_names_the_interpreter_s_pip_when_the_asked_runtime_is_missing(
        tflite_python: Path, tmp_path: Path) -> None:
    """The device has tflite-runtime but the run asks for ai-edge-litert: the runner fails
    the case (exit 1), naming what to install into that interpreter."""
    device = f"local?python={tflite_python}"
    assert main(["run", *FAST, "-d", device, "--backend-option",
                 "litert.runtime=ai-edge-litert", "-o", str(tmp_path)]) == 1
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "failed"
    assert f"install one with: {tflite_python} -m pip install ai-edge-litert" in case["reason"]


def _info(python: str, numpy: str | None) -> DeviceInfo:
    return DeviceInfo(uri="ssh://pi@raspberrypi", hostname="pi", arch="aarch64", os="Linux",
                      cpu_model=None, cores=4, ram_bytes=None, python=python, governor=None,
                      temperature_c=None, runtimes={"numpy": numpy} if numpy else {})


@pytest.mark.parametrize(("python", "numpy", "package"), [
    ("3.11.2", "1.24.2", "tflite-runtime"),  # Raspberry Pi OS bookworm's own
    ("3.9.2", "1.19.5", "tflite-runtime"),  # bullseye's
    ("3.12.3", "1.26.4", "ai-edge-litert numpy<2"),  # no tflite-runtime wheel for 3.12
    ("3.11.7", "2.4.6", "ai-edge-litert"),
    ("3.11.7", None, "ai-edge-litert"),
])
def test_the_package_suggested_follows_the_device_s_python_and_numpy(
        python: str, numpy: str | None, package: str) -> None:
    requirements = LiteRTBackend().device_install_requirements(_info(python, numpy))
    assert requirements == tuple(package.split())


@pytest.mark.parametrize(("uri", "message"), [
    ("local?python=relative/python", "is not an executable file"),
    ("local?python=/no/such/python", "is not an executable file"),
    ("local?threads=2", "unknown option 'threads'; known options: python"),
    ("local://host?python=/usr/bin/python3", "takes no host and one option"),
    ("local?", "takes no host and one option"),
])
def test_bad_local_device_uris_are_one_sentence(uri: str, message: str,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAST, "-d", uri, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_two_local_devices_never_measure_at_once(tmp_path: Path) -> None:
    """``local`` and ``local?python=`` share one CPU: their runs take turns (one thread per
    device, as a run schedules them), or each would time the other's load."""
    import itertools
    import threading

    code = ("import sys, time; t0 = time.time(); time.sleep(0.3); "
            "open(sys.argv[1], 'w').write('%r %r' % (t0, time.time()))")

    def run(uri: str, out: Path) -> None:
        with LocalDevice(uri) as device:
            for i in range(3):
                device.run([device.python, "-c", code, str(out.with_suffix(f".{i}"))],
                           timeout_s=30)

    threads = [threading.Thread(target=run, args=(uri, tmp_path / name)) for uri, name in
               (("local", "a"), (f"local?python={sys.executable}", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted(tuple(map(float, p.read_text().split())) for p in tmp_path.glob("[ab].*"))
    assert len(spans) == 6
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
