"""``edgebench run --resume`` never mixes settings: a command whose settings differ from the
run's in anything that changes a figure is refused (exit 2, each difference named, before
any export); with no flags the run finishes with its own recorded settings; the finished
report's ``argv`` and ``settings`` describe every case in it. Real runs (ONNX Runtime on
the local device, the embedded model); an interrupted run is made by SIGINT or by writing
the partial report the tool writes."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgebench.cli import main
from edgebench.config import DEFAULT_MODEL, load_matrix
from edgebench.measured_settings import (
    BY_CONTENT,
    NOT_FIGURES,
    compared_fields,
    describe,
    differences,
    matrix_flags,
    measured_settings,
    option_values,
)
from edgebench.options import OPTIONS
from edgebench.pipeline import load_source
from edgebench.records import MatrixSettings

BASE = ["-b", "onnxruntime", "--threads", "1", "--threads", "2", "-n", "3", "--warmup", "1",
        "--images", "10"]
"""Two cases (threads 1 and 2), accuracy on the first 10 embedded val images."""


@pytest.fixture(scope="session")
def partial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a run of ``BASE`` cut after its first case: the report as the tool
    writes it on an interrupt (state ``interrupted``, the first case only)."""
    out = tmp_path_factory.mktemp("partial")
    assert main(["run", "-o", str(out), *BASE]) == 0
    (path,) = out.glob("*/report.json")
    data = json.loads(path.read_text())
    assert len(data["cases"]) == 2
    path.write_text(json.dumps({**data, "cases": data["cases"][:1], "state": "interrupted",
                                "finished_at": None}))
    return path.parent


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgebench: error: --resume: run ") and "Traceback" not in err
    assert err.count("\n") == 1, err  # one sentence
    return err


def _other_data(tmp_path: Path) -> Path:
    """A folder of 10 images (unlabelled): other evaluation data than the embedded val."""
    from edgebench.datasets import embedded_val_yaml

    images = sorted((embedded_val_yaml().parent / "images" / "val").glob("*"))[:10]
    folder = tmp_path / "other-data"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    return folder


def _other_model(tmp_path: Path) -> Path:
    import onnx

    model = onnx.load(str(DEFAULT_MODEL))  # the same graph saved again with another note:
    model.metadata_props.add(key="note", value="re-exported")  # other content, same name
    path = tmp_path / "shapes-yolov8n.onnx"
    onnx.save(model, str(path))
    return path


# (extra or replaced flags, what the run measured, what this command asks)
DIFFERENCES: list[tuple[str, list[str], str, str]] = [
    ("iterations", ["-n", "4"], "--iterations 3", "--iterations 4"),
    ("warmup", ["--warmup", "2"], "--warmup 1", "--warmup 2"),
    ("accuracy", ["--no-accuracy"], "measured accuracy", "no accuracy"),
    ("images", ["--images", "20"], "--images 10", "--images 20"),
    ("conf", ["--conf", "0.25"], "--conf 0.001", "--conf 0.25"),
    ("iou", ["--iou", "0.5"], "--iou 0.7", "--iou 0.5"),
    ("threads", ["--threads", "3"], "--threads 1,2", "--threads 1,2,3"),
    ("backend_options", ["--backend-option", "onnxruntime.graph_optimization_level=basic"],
     "no --backend-option", "--backend-option onnxruntime.graph_optimization_level=basic"),
    ("backends", ["-b", "litert"], "--backend onnxruntime", "--backend onnxruntime,litert"),
    ("repeats", ["--repeats", "2"], "--repeats 1", "--repeats 2"),
    ("min_duration_s", ["--min-duration", "0.5"], "--min-duration 0", "--min-duration 0.5"),
    ("cooldown_s", ["--cooldown", "1"], "--cooldown 0", "--cooldown 1"),
    ("timeout_s", ["--timeout", "30"], "--timeout 600", "--timeout 30"),
    ("max_temperature_c", ["--max-temperature", "90"], "no --max-temperature",
     "--max-temperature 90"),
    ("imgsz", ["--imgsz", "256"], "no --imgsz", "--imgsz 256"),
    ("compress", ["--compress", "int8"], "no --compress", "--compress int8"),
]


@pytest.mark.parametrize(("name", "extra", "was", "asks"), DIFFERENCES,
                         ids=[d[0] for d in DIFFERENCES])
def test_each_difference_is_refused_by_name(partial: Path, capsys: pytest.CaptureFixture[str],
                                            name: str, extra: list[str], was: str, asks: str
                                            ) -> None:
    before = (partial / "report.json").read_text()
    err = _refused(capsys, ["run", *BASE, *extra, "--resume", str(partial)])
    measured, _, asked = err.partition("; this command asks ")
    assert was in measured and asks in asked, err
    assert "Resume with the same settings (or none: the run's own are used), or start a " \
           "new run." in err
    assert (partial / "report.json").read_text() == before  # refused before anything ran


def test_models_data_devices_and_several_differences_are_named(
        partial: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # another model file (its content, not its path, is what was measured)
    err = _refused(capsys, ["run", *BASE, "-m", str(_other_model(tmp_path)),
                            "--resume", str(partial)])
    label = load_source(DEFAULT_MODEL).sha256[:8]
    assert f"measured model shapes-yolov8n@{label} (name@content hash)" in err, err
    # other data: named with its path
    data = _other_data(tmp_path)
    err = _refused(capsys, ["run", *BASE, "--data", str(data), "--resume", str(partial)])
    assert "measured data the embedded val data (images hashing to" in err
    assert f"asks data {data} (images hashing to" in err
    # a device URI with '&' in it, quoted as a shell needs it
    uri = f"ssh://pi@raspberrypi?python=/usr/bin/python3&tmpdir={tmp_path}"
    err = _refused(capsys, ["run", *BASE, "-d", uri, "--resume", str(partial)])
    assert f"asks --device {shlex.quote(uri)}" in err
    # the case: several differences in one sentence, each named
    err = _refused(capsys, ["run", "-b", "onnxruntime", "-n", "10", "--no-accuracy",
                            "--resume", str(partial)])
    assert ("measured --warmup 1, --iterations 3, --threads 1,2 and accuracy; this command "
            "asks --warmup 10, --iterations 10, the runtime's own threads and no accuracy."
            ) in err, err
    # a matrix file is a command's settings too
    config = tmp_path / "m.toml"
    config.write_text("[run]\nbackends = ['onnxruntime']\nimages = 10\n"
                      "[settings]\nwarmup = 1\niterations = 5\nthreads = [1, 2]\n")
    err = _refused(capsys, ["run", "-c", str(config), "--resume", str(partial)])
    assert "measured --iterations 3; this command asks --iterations 5." in err


def test_no_flags_finish_the_run_with_its_own_settings(partial: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    run_dir = _copy(partial, tmp_path)
    before = json.loads((run_dir / "report.json").read_text())
    # flags that change no figure may be given; the run's own settings are used
    assert main(["run", "--resume", str(run_dir), "--retries", "0", "--fresh"]) == 0
    after = json.loads((run_dir / "report.json").read_text())
    assert [p.name for p in (tmp_path / "out").iterdir()] == [run_dir.name]  # no new run
    assert after["state"] == "complete" and after["run_id"] == before["run_id"]
    assert after["argv"] == before["argv"]
    assert after["cases"][0] == before["cases"][0]  # kept as measured
    _describes_every_case(after)
    assert after["settings"]["retries"] == 0  # the flags that change no figure applied
    assert after["settings"]["fresh"] is True
    resumed = [c for c in after["cases"] if c["case"]["id"] not in
               {b["case"]["id"] for b in before["cases"]}]
    assert resumed and all(c["accuracy"]["cached_from"] is None for c in resumed)
    capsys.readouterr()


def _describes_every_case(report: dict[str, Any]) -> None:
    """``report``'s settings and argv are those of every case in it."""
    settings = report["settings"]
    assert len(report["cases"]) == len(settings["threads"]) * len(settings["backends"])
    from edgebench.cli import build_parser, run_flags

    args = build_parser().parse_args(report["argv"])
    given = load_matrix(run_flags(args), args.config)  # the matrix the argv asks
    for case in report["cases"]:
        assert case["status"] == "ok", case["reason"]
        s = case["case"]["settings"]
        assert s["threads"] in settings["threads"]
        assert case["case"]["backend"] in settings["backends"]
        assert case["case"]["model"] in settings["model_labels"]
        for name, field in [("warmup", "warmup_iterations"), ("iterations", "iterations"),
                            ("min_duration_s", "min_duration_s"), ("repeats", "repeats")]:
            assert s[field] == settings[name] == getattr(given.settings, field), name
        assert case["latency"]["n"] >= settings["iterations"]
        assert len(case["latency"]["warmup_ns"]) >= settings["warmup"]
        accuracy = case["accuracy"]
        assert (accuracy is not None) == settings["accuracy"] == (given.accuracy is not None)
        if accuracy is not None:
            assert accuracy["images"] == settings["images"] == given.images
            assert accuracy["dataset_fingerprint"] == settings["data_fingerprint"]
            assert (accuracy["conf"], accuracy["iou"]) == (settings["conf"], settings["iou"])


def _wait_for_first_case(out: Path, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for path in out.glob("*/report.json"):
            try:
                if json.loads(path.read_text()).get("cases"):
                    return path
            except ValueError:
                pass
        time.sleep(0.05)
    raise AssertionError("the first case never finished")


def test_interrupted_run_resumed_without_flags(tmp_path: Path) -> None:
    """The issue's run: -n 60 --no-accuracy cut by Ctrl-C after its first case; resuming
    with -n 10 is refused, resuming with no flags finishes the same matrix at -n 60 without
    accuracy, and the report's argv and settings describe both cases."""
    out = tmp_path / "out"
    argv = ["run", "-o", str(out), "-b", "onnxruntime", "--threads", "1", "--threads", "2",
            "-n", "60", "--no-accuracy", "--warmup", "1", "--min-duration", "2"]
    cli = [sys.executable, "-m", "edgebench.cli"]
    proc = subprocess.Popen([*cli, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        report = _wait_for_first_case(out, proc)
        proc.send_signal(signal.SIGINT)  # the second case is timing (>= 2 s)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    cut = json.loads(report.read_text())
    assert cut["state"] == "interrupted" and len(cut["cases"]) == 1

    asked = subprocess.run([*cli, "run", "-b", "onnxruntime", "-n", "10", "--resume",
                            str(report)], capture_output=True, text=True, timeout=120)
    assert asked.returncode == 2, asked.stderr
    assert (" measured --warmup 1, --iterations 60, --min-duration 2, --threads 1,2 and no "
            "accuracy; this command asks --warmup 10, --iterations 10, --min-duration 0, "
            "the runtime's own threads and accuracy.") in asked.stderr, asked.stderr
    assert asked.stderr.rstrip().endswith(
        "Resume with the same settings (or none: the run's own are used), or start a new run.")
    assert json.loads(report.read_text()) == cut

    done = subprocess.run([*cli, "run", "--resume", str(report.parent)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    finished = json.loads(report.read_text())
    assert finished["state"] == "complete" and finished["argv"] == argv
    assert finished["cases"][0] == cut["cases"][0]
    assert finished["settings"] == cut["settings"]
    _describes_every_case(finished)
    print(f"\nresumed without flags: {len(cut['cases'])} case before, "
          f"{len(finished['cases'])} after, all at -n 60 without accuracy")


def test_a_report_without_settings_gives_a_quoted_command(partial: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """A report written before edgebench recorded its settings is not resumed (its cases
    could differ unseen); the message gives its command, quoted for a shell (a device URI
    with '&' used to break it)."""
    run_dir = _copy(partial, tmp_path)
    path = run_dir / "report.json"
    data = json.loads(path.read_text())
    uri = "ssh://pi@raspberrypi?python=/usr/bin/python3&tmpdir=/tmp/eb"
    argv = ["run", "-d", uri, *BASE]
    del data["settings"]
    path.write_text(json.dumps({**data, "argv": argv}))
    err = _refused(capsys, ["run", *BASE, "--resume", str(path)])
    assert "which did not record its settings" in err
    shown = err.split("start a new run (", 1)[1].rsplit(").", 1)[0]
    assert shlex.split(shown) == ["edgebench", *argv]  # the & does not end the command
    # bash runs it as one command (the & would send a job to the background)
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {shown}"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert echoed == ["edgebench", *argv]


# -- the record is complete by construction ------------------------------------------------


def _every_option_changed(tmp_path: Path) -> dict[str, Any]:
    """Flags setting every matrix option to a value other than its default."""
    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    flags: dict[str, Any] = {
        "models": (model,), "baseline_model": DEFAULT_MODEL, "backends": ("onnxruntime",),
        "devices": ("local", f"local?python={sys.executable}"), "compress": ("int8",),
        "data": tmp_path / "data.yaml", "train_data": tmp_path / "train.yaml", "images": 7,
        "imgsz": (256, 320), "output": tmp_path / "o", "warmup": 3, "warmup_s": 0.5,
        "iterations": 9, "min_duration_s": 1.5, "threads": (1, 3), "repeats": 5,
        "timeout_s": 30.0, "cooldown_s": 2.0, "max_temperature_c": 70.0,
        "temperature_wait_s": 12.0, "retries": 1, "retry_backoff_s": 0.5, "accuracy": False,
        "conf": 0.25, "iou": 0.5, "latency_threshold": 0.1, "map_threshold": 1.0,
        "alpha": 0.01, "alpha_repeats": 0.05, "noise_factor": 2.0, "fresh": True,
        "backend_options": {"onnxruntime": {"graph_optimization_level": "basic"}},
    }
    assert set(flags) == {*OPTIONS, "backend_options"}, "a new option: give it a value here"
    for name, option in OPTIONS.items():
        assert flags[name] != option.default, name
    return flags


def test_every_option_is_recorded_and_rebuilt(tmp_path: Path) -> None:
    matrix = load_matrix(_every_option_changed(tmp_path))
    record = measured_settings(matrix, ("onnxruntime",), [], "fp")
    rebuilt = load_matrix(matrix_flags(record))
    assert rebuilt == matrix
    assert measured_settings(rebuilt, ("onnxruntime",), [], "fp") == record
    assert set(option_values(matrix)) == set(OPTIONS)


def test_every_field_is_compared_or_said_why_not() -> None:
    fields = [f.name for f in dataclasses.fields(MatrixSettings)]
    compared = set(compared_fields())
    assert compared | set(NOT_FIGURES) | set(BY_CONTENT) == set(fields)
    assert not compared & set(NOT_FIGURES) and not compared & set(BY_CONTENT)
    assert set(BY_CONTENT.values()) <= compared  # a path is compared by its content
    # nothing that changes a figure may differ: only where the report goes, the retries of
    # a lost connection, the gate's thresholds and --fresh (the same accuracy measurement,
    # run again instead of reused from the cache)
    assert set(NOT_FIGURES) == {"output", "retries", "retry_backoff_s", "latency_threshold",
                                "map_threshold", "alpha", "alpha_repeats", "noise_factor",
                                "fresh"}


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, dict):
        return {"x": {"k": 1}}
    if isinstance(value, tuple):
        return ("x",)
    return "x" if not isinstance(value, (int, float)) or value is None else value + 1


def test_a_change_of_any_compared_field_is_named(tmp_path: Path) -> None:
    flags = {**_every_option_changed(tmp_path), "accuracy": True}
    base = measured_settings(load_matrix(flags), ("onnxruntime",), [], "fp")
    for name in compared_fields():
        changed = dataclasses.replace(base, **{name: _changed(getattr(base, name))})
        assert differences(base, changed) == [name], name
        assert describe(base, name) != describe(changed, name), name
    for name in NOT_FIGURES:
        changed = dataclasses.replace(base, **{name: _changed(getattr(base, name))})
        assert differences(base, changed) == [], name
