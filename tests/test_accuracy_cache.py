"""The accuracy cache (``accuracy_cache.py``): a case whose artifact, runtime and data are
unchanged since an earlier run on the same device fingerprint reuses that run's accuracy
pass (``accuracy.cached_from``), and anything that could change its outputs measures again.

Every run is a real ``edgebench run`` of ONNX Runtime over a real sshd on this machine. The
device's Python is a wrapper that appends the runner's stdout to a log: the runner's own
phase lines (``edgebench-phase: accuracy pass``) say whether it ran the pass. With a marker
file present, the wrapper also puts a ``sitecustomize`` on the path that appends
``+edgebench-marker`` to onnxruntime's ``__version__`` (the real runtime, reporting another
version, as after an upgrade). Another sshd runs in a private mount namespace with a
``/proc/cpuinfo`` that names another CPU model (another board, same everything else).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from remote_fixtures import only_report
from servers import SSHD, SshServer, _wait_for_banner, require

from edgebench.cache import cache_root
from edgebench.cli import main
from edgebench.config import DEFAULT_MODEL

FAST = ["-b", "onnxruntime", "-n", "3", "--warmup", "1", "--images", "4", "--threads", "1"]
PASS_LINE = "edgebench-phase: accuracy pass"
TIMED_LINE = "edgebench-phase: timed loop"
MARK = "+edgebench-marker"

SITECUSTOMIZE = f'''
import sys


class _Mark:
    """Append a marker to onnxruntime's __version__ once it is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "onnxruntime":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.__version__ = module.__version__ + "{MARK}"

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Mark())
'''


@dataclass
class Device:
    """An sshd device whose runner stdout lands in ``log``."""

    server: SshServer
    root: Path

    @property
    def log(self) -> Path:
        return self.root / "runner.log"

    @property
    def marker(self) -> Path:
        return self.root / "marker"

    @property
    def pin(self) -> Path:
        return self.root / "pin"

    @property
    def uri(self) -> str:
        return self.server.uri(python=str(self.root / "python"))


def _device_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "marked").mkdir(exist_ok=True)
    (root / "marked" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    wrapper = root / "python"
    wrapper.write_text(
        "#!/bin/bash\n"
        f'if [ -e "{root}/marker" ]; then export PYTHONPATH="{root}/marked"; fi\n'
        f'PIN=""; if [ -e "{root}/pin" ]; then PIN="taskset -c 0"; fi\n'
        f'$PIN "{sys.executable}" "$@" | tee -a "{root}/runner.log"\n'
        'exit "${PIPESTATUS[0]}"\n')
    wrapper.chmod(0o755)
    return root


class OtherCpuSshServer(SshServer):
    """An sshd in a private mount namespace where ``/proc/cpuinfo`` is ``cpuinfo``."""

    def __init__(self, workdir: Path, cpuinfo: Path) -> None:
        require(shutil.which("unshare") is not None, "unshare is missing (util-linux)")
        super().__init__(workdir)
        self.cpuinfo = cpuinfo

    def start(self) -> OtherCpuSshServer:
        config = self.dir / "sshd_config"
        config.write_text(self.config_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        script = (f"mount --bind {self.cpuinfo} /proc/cpuinfo && exec {SSHD} -D -e -f "
                  f"{config}")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        _wait_for_banner(self.listen, self.port, 15, self.proc, None)
        return self


@pytest.fixture(scope="module")
def ssh_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No user ssh config or agent, and a cache of this module's own (empty)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        mp.setenv("HOME", str(home))
        mp.delenv("SSH_AUTH_SOCK", raising=False)
        mp.setenv("EDGEBENCH_CACHE", str(tmp_path_factory.mktemp("acc-cache")))
        yield


@pytest.fixture(scope="module")
def device(ssh_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield Device(server, _device_root(tmp_path_factory.mktemp("device")))
    finally:
        server.stop()


@dataclass
class Run:
    report: dict[str, Any]
    case: dict[str, Any]
    stderr: str
    runner_log: str
    out: Path

    @property
    def accuracy(self) -> dict[str, Any]:
        return self.case["accuracy"]

    @property
    def ran_pass(self) -> bool:
        """The runner's own phase lines show an accuracy pass (and a timed loop ran)."""
        assert TIMED_LINE in self.runner_log, self.runner_log[-2000:]
        return PASS_LINE in self.runner_log


def run(dev: Device, out: Path, *extra: str) -> Run:
    dev.log.write_text("")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", "-o", str(out), "-d", dev.uri, *FAST, *extra])
    assert code == 0, err.getvalue()[-3000:]
    report = only_report(out)
    (case,) = report["cases"]
    assert case["status"] == "ok", case["reason"]
    return Run(report, case, err.getvalue(), dev.log.read_text(), out)


def entries() -> list[Path]:
    return sorted((cache_root() / "accuracy").glob("*/*.json"))


@pytest.fixture(scope="module")
def first(device: Device, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The first run: nothing cached, the pass runs and is stored."""
    return run(device, tmp_path_factory.mktemp("first"))


def test_first_run_measures_and_stores(first: Run) -> None:
    assert first.ran_pass
    assert first.accuracy["cached_from"] is None
    assert first.accuracy["map50_95"] is not None and first.accuracy["images"] == 4
    assert re.search(r"accuracy \(4 images evaluated, device pass [\d.]+ s\)", first.stderr)
    (entry,) = entries()
    stored = json.loads(entry.read_text())
    assert stored["cached_from"]["run_id"] == first.report["run_id"]
    assert stored["key"]["device"]["runtimes"]["onnxruntime"] == first.case["runtime"]["version"]


def test_identical_run_reuses_the_pass(first: Run, device: Device, tmp_path: Path) -> None:
    again = run(device, tmp_path)
    assert not again.ran_pass  # the runner itself never entered its accuracy pass
    source = again.accuracy["cached_from"]
    assert source == {"run_id": first.report["run_id"],
                      "measured_at": first.case["started_at"],
                      "device": source["device"]}
    assert source["device"].startswith("ssh://")
    assert f"accuracy (cached from run {first.report['run_id']}: no accuracy pass)" \
        in again.stderr
    for field in ("map50_95", "map50", "per_class_map50_95", "detections", "images",
                  "dataset_fingerprint"):
        assert again.accuracy[field] == first.accuracy[field], field
    fid, before = again.accuracy["fidelity"], first.accuracy["fidelity"]
    assert fid["within_tolerance"] is True and fid["tolerance"] == before["tolerance"]
    assert fid["detection_agreement"] == before["detection_agreement"]
    assert again.case["latency"]["n"] == 3  # the timed loop is this run's own
    md = next(again.out.glob("*/report.md")).read_text()
    assert f"{first.accuracy['map50_95']:.3f}‡" in md
    assert f"‡ mAP and agreement from the accuracy pass of run `{first.report['run_id']}`" in md
    html = next(again.out.glob("*/report.html")).read_text()
    assert "‡ mAP and agreement from the accuracy pass of run" in html
    # the same measurement: compare and the gate take it as any mAP (a change of 0 points)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["compare", str(next(first.out.glob("*/report.json"))),
                     str(next(again.out.glob("*/report.json")))]) == 0
    (row,) = [line for line in out.getvalue().splitlines() if "|onnxruntime|" in line]
    assert "| +0.00 |" in row and row.startswith("| unchanged |"), row


def test_other_images_are_a_miss(first: Run, device: Device, tmp_path: Path) -> None:
    other = run(device, tmp_path, "--images", "3")
    assert other.ran_pass and other.accuracy["cached_from"] is None
    assert other.accuracy["images"] == 3


def test_other_runner_option_is_a_miss(first: Run, device: Device, tmp_path: Path) -> None:
    other = run(device, tmp_path, "--backend-option",
                "onnxruntime.graph_optimization_level=basic")
    assert other.case["runtime"]["details"]["graph_optimization_level"] == "basic"
    assert other.ran_pass and other.accuracy["cached_from"] is None


def test_other_artifact_is_a_miss(first: Run, device: Device, tmp_path: Path) -> None:
    """The same weights with other metadata: another content hash, so measured again (and
    the mAP the pass measures is the same, the weights being the same)."""
    import onnx

    model = onnx.load(str(DEFAULT_MODEL))
    model.doc_string = "edgebench accuracy-cache test: same weights, other bytes"
    copy = tmp_path / "shapes-yolov8n.onnx"
    onnx.save(model, str(copy))
    other = run(device, tmp_path / "out", "-m", str(copy))
    assert other.ran_pass and other.accuracy["cached_from"] is None
    assert other.accuracy["map50_95"] == pytest.approx(first.accuracy["map50_95"], abs=1e-6)


def test_other_runtime_version_is_a_miss(first: Run, device: Device, tmp_path: Path) -> None:
    device.marker.touch()
    try:
        other = run(device, tmp_path)
    finally:
        device.marker.unlink()
    assert other.case["runtime"]["version"].endswith(MARK)
    assert other.case["device"]["runtimes"]["onnxruntime"].endswith(MARK)
    assert other.ran_pass and other.accuracy["cached_from"] is None


def test_other_device_fingerprint_is_a_miss(first: Run, ssh_env: None, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    text = Path("/proc/cpuinfo").read_text()
    changed = re.sub(r"^(model name\s*:.*)$", r"\1 (another board)", text, flags=re.M)
    assert changed != text
    cpuinfo.write_text(changed)
    server = OtherCpuSshServer(tmp_path / "sshd", cpuinfo).start()
    try:
        other = run(Device(server, _device_root(tmp_path / "device")), tmp_path / "out")
    finally:
        server.stop()
    assert other.case["device"]["cpu_model"].endswith("(another board)")
    assert other.case["device"]["cpu_model"] != first.case["device"]["cpu_model"]
    assert other.ran_pass and other.accuracy["cached_from"] is None
    assert other.accuracy["map50_95"] == pytest.approx(first.accuracy["map50_95"], abs=1e-6)


def test_runtime_that_reports_another_setup_runs_the_pass(first: Run, device: Device,
                                                         tmp_path: Path) -> None:
    """Pinned to one CPU, the runner reports another ``cpu_affinity``: the key (read before
    the run) matches, the runtime it reported does not, so the pass runs after all, in a
    runner of its own; the case keeps its own timed loop."""
    require(shutil.which("taskset") is not None, "taskset is missing (util-linux)")
    device.pin.touch()
    try:
        other = run(device, tmp_path)
    finally:
        device.pin.unlink()
    assert str(other.case["runtime"]["details"]["cpu_affinity"]) == "1"
    assert str(first.case["runtime"]["details"]["cpu_affinity"]) != "1"
    assert other.runner_log.count(TIMED_LINE) == 2 and other.runner_log.count(PASS_LINE) == 1
    assert other.accuracy["cached_from"] is None
    assert other.accuracy["map50_95"] == first.accuracy["map50_95"]
    assert other.case["latency"]["n"] == 3
    assert re.search(r"accuracy \(4 images evaluated, device pass", other.stderr)


def test_fresh_measures_again_and_refreshes(first: Run, device: Device,
                                            tmp_path: Path) -> None:
    fresh = run(device, tmp_path, "--fresh")
    assert fresh.ran_pass and fresh.accuracy["cached_from"] is None
    assert fresh.report["settings"]["fresh"] is True
    assert fresh.accuracy["map50_95"] == first.accuracy["map50_95"]
    stored = [json.loads(p.read_text()) for p in entries()]
    assert fresh.report["run_id"] in {s["cached_from"]["run_id"] for s in stored}


@pytest.mark.slow
def test_corrupt_entry_is_ignored_and_rewritten(first: Run, device: Device,
                                               tmp_path: Path) -> None:
    for path in entries():
        path.write_text(path.read_text()[:100])  # cut short, as by a full disk
    measured = run(device, tmp_path / "a")
    assert measured.ran_pass and measured.accuracy["cached_from"] is None
    assert measured.accuracy["map50_95"] == first.accuracy["map50_95"]
    reused = run(device, tmp_path / "b")
    assert not reused.ran_pass
    assert reused.accuracy["cached_from"]["run_id"] == measured.report["run_id"]
