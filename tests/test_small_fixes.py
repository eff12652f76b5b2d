"""Issue 17, Why 6: the small fixes, each with real components.

- messages joined from parts that end in their own punctuation ("did you mean 'backends'?" +
  ".") keep one closing mark, everywhere such a message is built;
- ``export`` to pytest-benchmark's format works without pytest-benchmark installed, and what
  it writes is what pytest-benchmark's ``Stats`` computes and its ``compare`` reads;
- a command whose stdout reader has gone (``| head -1``) exits 141 quietly, no traceback;
- a runner's multi-line error is kept whole in report.json; tables show its key line;
- ``-m DIR`` runs an Ultralytics OpenVINO export directory, else says what DIR is and what
  ``--model`` accepts (not "check its permissions");
- a full disk at the end of a run still prints the measured table, names the file, exits 2.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebench.cli import main
from edgebench.errors import CaseError, CaseSkipped, UserError, _Sentence, sentence

ROOT = Path(__file__).resolve().parents[1]
FAST = ["-b", "onnxruntime", "-n", "5", "--warmup", "1", "--no-accuracy", "--threads", "1"]
PACKAGES = {"harness": "edgebench", "plugins": "edgebench.plugins",
            "devices": "edgebench.devices"}


# -- doubled punctuation ----------------------------------------------------------------------

def _sources() -> list[tuple[str, Path]]:
    """(module name, file) of every host-side module of edgebench (the device-side runner
    scripts and agent report errors as data; the host wraps them in a CaseError)."""
    out = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.endswith("_runner.py") or path.parent.name == "agent":
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join((package, *parts)), path))
    return out


def _joined_after_a_value(node: ast.JoinedStr) -> bool:
    """An f-string that puts a period right after an interpolated value ``{x}.`` (a closing
    period: end of string or a space after it), where ``x`` may end its own sentence."""
    for value, text in zip(node.values, node.values[1:]):
        if (isinstance(value, ast.FormattedValue) and value.conversion != ord("r")
                and value.format_spec is None and isinstance(text, ast.Constant)
                and isinstance(text.value, str)
                and (text.value == "." or text.value.startswith(". "))):
            return True
    return False


def _message_joins() -> list[tuple[str, int, str, ast.Call]]:
    """Every call (raise X(...), print(...)) given an f-string of that kind, directly."""
    found = []
    for module, path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            for arg in call.args:
                if isinstance(arg, ast.JoinedStr) and _joined_after_a_value(arg):
                    found.append((module, call.lineno, ast.unparse(call.func), call))
    return found


def test_sentence_keeps_one_closing_mark() -> None:
    assert sentence("unknown key; did you mean 'backends'?.") == \
        "unknown key; did you mean 'backends'?"
    assert sentence("it failed: the file is gone.. pass another.") == \
        "it failed: the file is gone. pass another."
    assert sentence("really?. yes!.") == "really? yes!"
    # what is not a doubled mark stays
    for text in ("wait... then.", "version 0.5.", "a.b.c.", "see e.g. x.", "(?.)"):
        assert sentence(text) == text


def test_every_error_class_tidies_its_message() -> None:
    """Every exception class of edgebench the CLI or a report shows (UserError, CaseError,
    CaseSkipped and all their subclasses, in every module) ends with one mark."""
    for module, _ in _sources():
        importlib.import_module(module)
    classes, todo = set(), [UserError, CaseError, CaseSkipped]
    while todo:
        cls = todo.pop()
        classes.add(cls)
        todo += cls.__subclasses__()
    assert len(classes) > 6
    for cls in classes:
        try:
            exc = cls("x; did you mean 'backends'?.")
        except (TypeError, ValueError):  # its own arguments (a number): its own sentence
            continue
        assert str(exc) == "x; did you mean 'backends'?", cls


def test_every_message_join_goes_through_sentence() -> None:
    """Each ``raise X(f"...{part}.")`` raises a class that tidies its message, and each
    ``print(f"...{part}.")`` prints through :func:`sentence` (found by reading the source,
    so a new message of that kind cannot slip past)."""
    joins = _message_joins()
    assert len(joins) > 20  # the reader finds them
    wrong = []
    for module, line, func, _call in joins:
        if func == "print":
            wrong.append(f"{module}:{line}: print(f'...{{x}}.') without sentence()")
            continue
        if func == "sentence":
            continue
        owner = importlib.import_module(module)
        target = getattr(owner, func.split(".")[0], None)
        for attr in func.split(".")[1:]:
            target = getattr(target, attr, None)
        if isinstance(target, type) and issubclass(target, BaseException) \
                and not issubclass(target, _Sentence):
            wrong.append(f"{module}:{line}: {func} does not tidy its message")
    assert not wrong, "\n".join(wrong)


def test_a_typo_in_the_matrix_file_ends_in_one_question_mark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case, through the command line."""
    matrix = tmp_path / "m.toml"
    matrix.write_text('[run]\nbackend = ["onnxruntime"]\n')
    assert main(["run", "-c", str(matrix)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("did you mean 'backends'?"), err
    assert "?." not in err


# -- export without pytest-benchmark ----------------------------------------------------------

@pytest.fixture(scope="session")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the embedded model on ONNX Runtime (5 timed inferences); its dir."""
    out = tmp_path_factory.mktemp("small-run")
    assert main(["run", *FAST, "-o", str(out)]) == 0
    (report,) = out.glob("*/report.json")
    return report.parent


BLOCKED_EXPORT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pytest_benchmark":
            raise ImportError("pytest_benchmark is blocked for this test")
        return None
sys.meta_path.insert(0, Block())
for name in [n for n in sys.modules if n.split(".")[0] == "pytest_benchmark"]:
    del sys.modules[name]
from edgebench.cli import main
code = main(["export", sys.argv[1], "-o", sys.argv[2]])
assert not any(n.split(".")[0] == "pytest_benchmark" for n in sys.modules)
sys.exit(code)
"""


def test_export_needs_no_pytest_benchmark(one_run: Path, tmp_path: Path) -> None:
    """The export runs in a Python where importing pytest_benchmark fails (as in a base
    install), and ``pytest-benchmark compare`` (the test extra's, the oracle) reads it."""
    out = tmp_path / "0001_edgebench.json"
    done = subprocess.run([sys.executable, "-c", BLOCKED_EXPORT, str(one_run), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tool = Path(sys.executable).with_name("pytest-benchmark")  # its console script
    shown = subprocess.run([str(tool), "compare", str(out), "--columns",
                            "min,max,mean,stddev,median,iqr,outliers,ops,rounds"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "shapes-yolov8n" in shown.stdout and "Median" in shown.stdout
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["stats"] == _oracle_stats(bench["stats"]["data"])


def _oracle_stats(data: list[float]) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    stats: Any = Stats()
    for value in data:
        stats.update(value)
    out: dict[str, Any] = stats.as_dict()
    return {**out, "data": data, "iterations": 1}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 31, 200])
def test_export_stats_are_pytest_benchmarks(n: int) -> None:
    """Every field, for every remainder of n mod 4 and n = 1, 2, with ties and outliers."""
    from edgebench.reports.pytest_benchmark import _stats

    rng = np.random.default_rng(n)
    data = [float(x) for x in rng.lognormal(-5, 0.3, n)]
    if n > 4:
        data[1] = data[2]  # a tie
        data[3] *= 20  # an outlier
    assert _stats(data) == _oracle_stats(data)  # the same arithmetic: equal to the bit


# -- stdout closed early ----------------------------------------------------------------------

def _with_closed_stdout(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``edgebench ARGS`` writing into a real pipe whose reader has already gone (what
    ``| head -1`` leaves once head has its line)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "edgebench.cli", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300, cwd=cwd)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [
    ["devices"], ["plugins"], ["--help"], ["run", "--help"], ["history", "--results", "RUN"],
    ["compare", "RUN", "RUN"], ["devices", "--json"],
])
def test_a_closed_stdout_ends_quietly(args: list[str], one_run: Path, tmp_path: Path) -> None:
    done = _with_closed_stdout([str(one_run.parent) if a == "RUN" and args[0] == "history"
                                else str(one_run) if a == "RUN" else a for a in args],
                               tmp_path)
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    # argparse swallows an error writing --help itself (its _print_message): then 0
    assert done.returncode in ((0, 141) if "--help" in args else (141,)), done.stderr


def test_a_run_into_a_closed_stdout_keeps_its_report(tmp_path: Path) -> None:
    done = _with_closed_stdout(["run", *FAST, "-o", str(tmp_path / "out")], tmp_path)
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    assert done.returncode == 141, done.stderr
    (report,) = (tmp_path / "out").glob("*/report.json")
    assert json.loads(report.read_text())["cases"][0]["status"] == "ok"


# -- a runner's multi-line error ---------------------------------------------------------------

def _bad_conv(path: Path) -> Path:
    """A valid ONNX file whose Conv has 5 input channels on a 3-channel input: OpenVINO
    refuses it with a multi-line error whose cause is on its last lines."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 5, 3, 3], [0.0] * 180)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "W"], ["y"])], "bad",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


CAUSE = "Data batch channel count (3) does not match filter input channel count (5)"


def test_openvinos_cause_is_kept_and_shown(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The real OpenVINO error of a model it cannot read: report.json keeps every line, the
    terminal's table (the Markdown) shows the context and the cause on one line."""
    pytest.importorskip("openvino")
    model = _bad_conv(tmp_path / "badconv.onnx")
    assert main(["run", "-m", str(model), "-b", "openvino", "-n", "3", "--warmup", "1",
                 "--no-accuracy", "-o", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    reason = case["reason"]
    assert reason.startswith("load failed: OpenVINO could not read ")
    assert CAUSE in reason and "Summary:" in reason and len(reason.splitlines()) > 5
    (line,) = [ln for ln in out.splitlines() if ln.startswith("- `badconv")]
    assert "OpenVINO could not read" in line and CAUSE in line, line
    assert "more lines in report.json" in line
    html = report.with_name("report.html").read_text()
    assert CAUSE in html


def test_summary_picks_the_line_with_the_cause() -> None:
    from edgebench.reasons import summary

    assert summary("load failed: one line only") == "load failed: one line only"
    traceback = ("run failed: KeyError: 'x'\nTraceback (most recent call last):\n"
                 '  File "r.py", line 3, in f\n    d["x"]\n    ^^^^^^\nKeyError: \'x\'')
    assert summary(traceback) == "run failed: KeyError: 'x' (5 more lines in report.json)"
    crash = ("the runner exited with code 1 and no result: importing the model\n"
             "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call "
             "first):\n  File \"r.py\", line 9 in load")
    assert summary(crash) == ("the runner exited with code 1 and no result: importing the "
                              "model: Fatal Python error: Segmentation fault "
                              "(2 more lines in report.json)")


# -- a directory as --model --------------------------------------------------------------------

def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgebench: error: ") and len(err.splitlines()) == 1, err
    return err


def test_a_directory_that_holds_no_model_is_named_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "somedir").mkdir()
    err = _one_line_error(capsys, ["run", "-m", str(tmp_path / "somedir")])
    assert "is a directory, not a model" in err and "permissions" not in err
    assert "*_ncnn_model/" in err and "*_openvino_model/" in err and ".onnx" in err
    saved = tmp_path / "yolo_saved_model"
    saved.mkdir()
    (saved / "yolo_float32.tflite").write_bytes(b"x")
    err = _one_line_error(capsys, ["run", "-m", str(saved)])
    assert "is an Ultralytics TensorFlow SavedModel export, which no edgebench backend runs" \
        in err
    two = tmp_path / "two_openvino_model"
    two.mkdir()
    for name in ("a.xml", "b.xml"):
        (two / name).write_text("<net/>")
    err = _one_line_error(capsys, ["run", "-m", str(two)])
    assert "holds 2 .xml file(s) and is not an OpenVINO IR model" in err


def test_an_openvino_export_directory_runs_as_its_onnx_does(
        tmp_path: Path, embedded_onnx: Path) -> None:
    """The embedded ONNX converted by OpenVINO's own converter into Ultralytics' layout
    (``*_openvino_model/``: one .xml, its .bin), fp32: run by the OpenVINO backend with
    the mAP of the ONNX it came from on the same images."""
    ov = pytest.importorskip("openvino")
    ir = tmp_path / "shapes-yolov8n_openvino_model"
    ov.save_model(ov.convert_model(str(embedded_onnx)), str(ir / "shapes-yolov8n.xml"),
                  compress_to_fp16=False)
    out = tmp_path / "out"
    assert main(["run", "-m", str(embedded_onnx), "-m", str(ir), "-b", "openvino", "-n", "3",
                 "--warmup", "1", "--images", "5", "--threads", "1", "-o", str(out)]) == 0
    (report,) = out.glob("*/report.json")
    cases = {c["case"]["model"].split("@")[0]: c for c in json.loads(report.read_text())["cases"]}
    onnx_case, ir_case = cases["shapes-yolov8n"], cases["shapes-yolov8n_openvino_model"]
    assert ir_case["status"] == "ok" and ir_case["artifact"]["precision"] == "fp32"
    assert ir_case["accuracy"]["map50_95"] == pytest.approx(
        onnx_case["accuracy"]["map50_95"], abs=0.005)


# -- disk full at the end of a run ------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A real 64 KiB tmpfs (root only: skipped where mount is not permitted)."""
    disk = tmp_path / "tiny"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_report_file_that_does_not_fit_still_shows_the_table(
        tiny_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """report.json (4 KiB) and report.md fit on the 64 KiB disk, the HTML with its plots
    (about 60 KiB) does not: the terminal still gets the table of what was measured and
    one sentence naming the file that could not be written; exit 2."""
    code = main(["run", *FAST, "-o", str(tiny_disk)])
    captured = capsys.readouterr()
    (report,) = tiny_disk.glob("*/report.json")
    assert code == 2, captured.err
    rows = [ln for ln in captured.out.splitlines() if ln.startswith("| shapes-yolov8n@")]
    assert len(rows) == 1 and "| onnxruntime | local | 1 | ok |" in rows[0], captured.out
    missing = [name for name in ("report.md", "report.html")
               if not report.with_name(name).exists()]
    assert missing and captured.err.endswith(
        f"edgebench: error: could not write {' and '.join(missing)} in {report.parent} (No "
        f"space left on device); report.json there holds every measured case (1).\n"), \
        captured.err
    assert "Traceback" not in captured.err
    assert json.loads(report.read_text())["state"] == "complete"
