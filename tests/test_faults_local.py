"""Faults on the host side: bad model files, a model corrupted on the way to the device, the
output dir filling up or turning read-only mid-run, and ``--resume`` of failed cases."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remote_fixtures import only_report, run_session, same_cases, session_for

import edgebench.cli
from edgebench import hookimpl
from edgebench.cli import main
from edgebench.config import ASSETS
from edgebench.plugin_manager import make_plugin_manager
from edgebench.records import Case, Status

pytestmark = pytest.mark.faults
FAST = ["--warmup", "0", "-n", "2", "--no-accuracy"]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("edgebench: error: ") and "Traceback" not in err
    assert len(err.splitlines()) == 1
    return err


def test_truncated_corrupt_and_wrong_shape_models_are_refused(
        tmp_path: Path, make_onnx: Any, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_onnx("conv", size=32).read_bytes()
    truncated, corrupt = tmp_path / "truncated.onnx", tmp_path / "corrupt.onnx"
    truncated.write_bytes(good[: len(good) // 2])  # a failed copy
    corrupt.write_bytes(good[:10] + b"\xff" * 30 + good[40:])
    for model in (truncated, corrupt):
        err = _error(capsys, ["run", "-o", str(tmp_path / "out"), "-m", str(model), *FAST])
        assert err.endswith(f"{model.name} is not a valid ONNX model (DecodeError); "
                            "re-export it or check the file was copied whole.")
    gray = _gray_onnx(tmp_path)
    err = _error(capsys, ["run", "-o", str(tmp_path / "out"), "-m", str(gray), *FAST])
    assert "takes an input of shape [1, 1, 32, 32], which is not an image batch" in err
    assert list((tmp_path / "out").glob("*/report.json")) == []


def _gray_onnx(tmp_path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 1, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])
    w = numpy_helper.from_array(np.ones((8, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["y"],
                                                pads=[1, 1, 1, 1])], "gray", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "gray.onnx"
    onnx.save(model, str(path))
    return path


def test_truncated_runtime_models_and_nan_outputs_fail_their_case(tmp_path: Path,
                                                                  make_onnx: Any) -> None:
    tflite = tmp_path / "cut.tflite"
    data = (ASSETS / "shapes-yolov8n.tflite").read_bytes()
    tflite.write_bytes(data[: len(data) // 3])
    ncnn = tmp_path / "cut_ncnn_model"
    shutil.copytree(ASSETS / "shapes-yolov8n_ncnn_model", ncnn)
    weights = ncnn / "model.ncnn.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    nan = make_onnx("nan", size=32)
    report = run_session(session_for(["-m", str(tflite), "-m", str(ncnn), "-m", str(nan),
                                      "-b", "litert,ncnn,onnxruntime", *FAST]),
                         tmp_path / "out")
    by = {(c.case.model.split("@")[0], c.case.backend): c for c in report.cases}
    cut_tflite, cut_ncnn, nan_case = (by["cut", "litert"], by["cut_ncnn_model", "ncnn"],
                                      by["nan", "onnxruntime"])
    assert all(c.status is Status.FAILED for c in (cut_tflite, cut_ncnn, nan_case))
    assert cut_tflite.reason is not None and cut_tflite.reason.startswith(
        "cut.tflite is not a valid .tflite model (")
    assert cut_ncnn.reason == ("load failed: ncnn could not read the weights model.ncnn.bin "
                               "(truncated, or not the .bin of this .param)")
    assert nan_case.reason == "the model ran but output 0 holds NaN or infinity"
    assert nan_case.latency is not None and nan_case.latency.n == 2  # measured, kept


class CorruptPushedModel:
    """Cuts the model file already pushed to the device short before the case's second
    repeat (the harness believes it is there: it pushes each file once per device)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def edgebench_run_case(self, case: Any, device: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            (model,) = Path(device.workdir, "models").glob("*.onnx")
            model.write_bytes(model.read_bytes()[:100])
        return (yield)


def test_model_corrupted_on_the_device_is_pushed_again(tmp_path: Path,
                                                        make_onnx: Any) -> None:
    plugin = CorruptPushedModel()
    session = session_for(["-m", str(make_onnx("conv", size=32)), "-b", "onnxruntime",
                           "--repeats", "2", "--retry-backoff", "0", *FAST],
                          plugins=[("corrupt", plugin)])
    (case,) = run_session(session, tmp_path / "out").cases
    assert plugin.calls == 2
    assert case.status is Status.OK, case.reason
    assert case.latency is not None and len(case.latency.repeat_medians_ms) == 2
    assert case.notes[0].startswith(
        "attempt 1 of 4: copy corrupted during push of the model: ")
    assert ".onnx on the device differs from the host's copy (100 of 1004 bytes, " \
        in case.notes[0]
    assert case.notes[0].endswith("the copy was cut short or corrupted; retried after 0 s")
    assert case.notes[1] == "attempt 2: ok"


# -- the output dir -----------------------------------------------------------------------


@pytest.fixture
def small_output(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "results"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(out)], check=True)
    yield out
    subprocess.run(["umount", "-l", str(out)], check=True)


class OutputFault:
    """After the first case is saved: fill the output disk, or make it read-only."""

    def __init__(self, out: Path, kind: str) -> None:
        self.out, self.kind = out, kind
        self.before: list[dict[str, Any]] = []

    @hookimpl
    def edgebench_case_finished(self, result: Any) -> None:
        if self.before:
            return
        (report,) = self.out.glob("*/report.json")
        self.before = json.loads(report.read_text())["cases"]
        if self.kind == "readonly":
            subprocess.run(["mount", "-o", "remount,ro", str(self.out)], check=True)
            return
        try:
            with open(self.out / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass


@pytest.mark.parametrize(("kind", "why"), [("full", "No space left on device"),
                                           ("readonly", "Read-only file system")])
def test_output_dir_full_or_read_only_mid_run(kind: str, why: str, small_output: Path,
                                              tmp_path: Path, make_onnx: Any,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fault = OutputFault(small_output, kind)
    monkeypatch.setattr(edgebench.cli, "make_plugin_manager", lambda **kw: make_plugin_manager(
        **kw, extra_plugins=[("output-fault", fault)]))
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(3)]
    code = main(["run", "-o", str(small_output), "-b", "onnxruntime",
                 *(a for m in models for a in ("-m", m)), *FAST])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2 and "Traceback" not in err
    rows = [line for line in captured.out.splitlines() if line.startswith("| m") and "@" in line]
    assert len(rows) == 3 and all("| ok |" in row for row in rows)  # the table, all measured
    (report,) = small_output.glob("*/report.json")
    run_id = report.parent.name
    fallback = Path(tempfile.gettempdir()) / f"edgebench-{run_id}-report.json"
    try:
        assert f"edgebench: error: could not write {report} ({why}); the previous version of " \
               f"the file is intact and holds 1 of the run's 3 cases; the whole report (3 " \
               f"cases) is in {fallback}.\n" in err
        on_disk = json.loads(report.read_text())  # whole, and what it was at the fault
        assert on_disk["cases"] == fault.before and len(fault.before) == 1
        saved = json.loads(fallback.read_text())
        assert len(saved["cases"]) == 3 and saved["state"] == "complete"
        same_cases(fault.before, saved["cases"])
        assert [p.name for p in report.parent.iterdir()] == ["report.json"]  # no temp files
    finally:
        fallback.unlink(missing_ok=True)
    print(f"\noutput {kind}: report on disk held {len(fault.before)} cases before, "
          f"{len(on_disk['cases'])} after (intact); the fallback holds 3")


# -- resume -------------------------------------------------------------------------------


def test_resume_runs_only_the_failed_and_missing_cases(tmp_path: Path, make_onnx: Any,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(3)]
    argv = ["run", "-o", str(tmp_path / "out"), "-b", "onnxruntime", *FAST,
            *(a for m in models for a in ("-m", m))]
    assert main(argv) == 0
    (path,) = (tmp_path / "out").glob("*/report.json")
    first = json.loads(path.read_text())
    # as a nightly that lost one case to a fault and was cut before its last one
    cases = first["cases"]
    cases[0] = {**cases[0], "status": "failed", "reason": "connection lost during load: x",
                "latency": None, "memory": None, "runtime": None}
    kept, missing = cases[1], cases[2]
    path.write_text(json.dumps({**first, "cases": cases[:2], "state": "interrupted"}))
    capsys.readouterr()
    assert main([*argv, "--resume", str(path.parent)]) == 0
    capsys.readouterr()
    resumed = only_report(tmp_path / "out")
    assert resumed["run_id"] == first["run_id"] and resumed["state"] == "complete"
    by_id = {c["case"]["id"]: c for c in resumed["cases"]}
    assert len(by_id) == 3 and all(c["status"] == "ok" for c in by_id.values())
    assert by_id[kept["case"]["id"]] == kept  # untouched
    redone = by_id[cases[0]["case"]["id"]]
    assert redone["notes"] == ["run again by --resume: it had failed (connection lost "
                               "during load: x)"]
    assert by_id[missing["case"]["id"]]["notes"] == []
    # a report of another matrix is refused, naming what that run ran and what this asks
    other = str(make_onnx("conv", size=48, name="other.onnx"))
    err = _error(capsys, ["run", "-o", str(tmp_path / "out"), "-m", other, *FAST,
                          "--resume", str(path)])
    assert " measured --backend onnxruntime and models m0@" in err
    assert "; this command asks --backend " in err and " model other@" in err
    err = _error(capsys, ["run", "--resume", str(tmp_path / "nowhere")])
    assert "no report.json there" in err


class _BuggyObserver:
    """A hooks-only plugin with bugs: it wraps run_case and fails the second model's case,
    and raises in every observer hook."""

    @hookimpl(wrapper=True)
    def edgebench_run_case(self, case: Case, device: Any) -> Any:
        if case.model.startswith("m1"):
            raise RuntimeError("wrapper bug")
        return (yield)

    @hookimpl
    def edgebench_case_finished(self, result: Any) -> None:
        raise ValueError("observer bug")

    @hookimpl
    def edgebench_session_finished(self, report: Any) -> None:
        raise KeyError("session bug")

    @hookimpl
    def edgebench_device_info(self, device: Any, info: dict[str, Any]) -> None:
        raise OSError("fingerprint bug")


def test_a_plugin_that_raises_in_a_hook_costs_no_measurement(
        tmp_path: Path, make_onnx: Any, capsys: pytest.CaptureFixture[str]) -> None:
    models = [str(make_onnx("conv", size=32, name=f"m{i}.onnx")) for i in range(2)]
    session = session_for(["-m", models[0], "-m", models[1], "-b", "onnxruntime",
                           "--warmup", "0", "-n", "3", "--no-accuracy"],
                          plugins=[("buggy", _BuggyObserver())])
    report = run_session(session, tmp_path / "out")
    by_model = {c.case.model.split("@")[0]: c for c in report.cases}
    assert by_model["m0"].status is Status.OK, by_model["m0"].reason
    assert by_model["m1"].status is Status.FAILED
    assert by_model["m1"].reason.startswith("edgebench_run_case raised RuntimeError: wrapper bug")
    on_disk = only_report(tmp_path / "out")
    assert on_disk["state"] == "complete" and len(on_disk["cases"]) == 2
    err = capsys.readouterr().err
    for hook, exc in (("edgebench_case_finished", "ValueError: observer bug"),
                      ("edgebench_session_finished", "KeyError: 'session bug'"),
                      ("edgebench_device_info", "OSError: fingerprint bug")):
        assert f"plugin 'buggy' failed in {hook}: {exc}; the run goes on." in err
