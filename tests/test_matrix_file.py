"""Matrix files: validation with file:line errors, flags overriding, the example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.cli import main
from edgebench.config import load_matrix
from edgebench.errors import UserError
from edgebench.matrix_file import MatrixFile

EXAMPLE = Path(__file__).parents[1] / "examples" / "nightly.toml"


WORKFLOW = EXAMPLE.parent / "nightly-workflow.yml"


def test_example_workflow_is_valid_yaml_and_its_edgebench_commands_parse() -> None:
    import shlex

    import yaml

    from edgebench.cli import build_parser

    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["bench"]["steps"]
    commands = [line.split("  #")[0].strip() for step in steps
                for line in step.get("run", "").replace("\\\n", " ").splitlines()]
    commands = [c.replace('"$MODEL"', "m.onnx").replace("|| true", "")
                for c in commands if c.startswith(".venv/bin/edgebench")]
    assert len(commands) == 4 and any("--baseline-model" in c for c in commands)
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # exits 2 on a bad flag
        assert args.command in ("run", "compare", "history")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_example_file_is_valid() -> None:
    matrix = load_matrix(config=EXAMPLE)
    assert matrix.models[0].name == "shapes-yolov8n.onnx" and matrix.models[0].is_file()
    assert [s.threads for s in matrix.all_settings] == [1, 2]
    assert matrix.settings.iterations == 100 and matrix.settings.cooldown_s == 0.5
    assert matrix.settings.repeats == 10
    assert matrix.settings.max_temperature_c == 70 and matrix.images == 100
    assert matrix.gate.latency == 0.05


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\niterations = 300\nthreads = [1, 2]\n")
    matrix = load_matrix({"iterations": 7, "threads": None}, path)
    assert matrix.settings.iterations == 7
    assert [s.threads for s in matrix.all_settings] == [1, 2]


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.toml"
    path.write_text('[run]\nmodels = ["../a.onnx"]\noutput = "res"\n')
    values = MatrixFile(path).values
    assert values["models"] == ((tmp_path / "a.onnx").resolve(),)
    assert values["output"] == (tmp_path / "sub" / "res").resolve()


@pytest.mark.parametrize(("text", "message"), [
    ("[run]\nbackends = ['onnxruntime']\n\n[settings]\nwarmup = 3\niterations = 0\n",
     "m.toml:6: [settings] iterations must be an integer >= 1, got 0."),
    ("[settings]\niterations = 'many'\n",
     "m.toml:2: [settings] iterations must be an integer >= 1, got 'many'."),
    ("[settings]\niteration = 10\n",
     "m.toml:2: [settings] iteration is not a known key; did you mean 'iterations'?"),
    ("[setings]\niterations = 10\n", "m.toml:1: unknown table [setings]; did you mean "
                                     "[settings]?"),
    ("[accuracy]\nconf = 1.5\n", "m.toml:2: [accuracy] conf must be a number in [0, 1), "
                                 "got 1.5."),
    ("[settings]\nthreads = [1, 0]\n", "m.toml:2: [settings] threads must be an integer >= 1,"
                                       " got 0."),
    ("[run]\ndevices = 'local'\nimages = true\n",
     "m.toml:3: [run] images must be an integer >= 1, got True."),
    ("[settings\niterations = 1\n", "not valid TOML"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        MatrixFile(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        MatrixFile(tmp_path / "none.toml")


def test_run_with_a_matrix_file(tmp_path: Path, make_onnx, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
                                ) -> None:
    model = make_onnx("conv", size=32)
    path = write(tmp_path, f'[run]\nmodels = ["{model}"]\noutput = "out"\nimages = 2\n'
                           'backends = ["onnxruntime"]\n'
                           "[settings]\nwarmup = 1\niterations = 4\nthreads = [1, 2]\n"
                           "cooldown_s = 0.1\n")
    assert main(["run", "-c", str(path), "-n", "6"]) == 0
    import json

    (report,) = (tmp_path / "out").glob("*/report.json")
    cases = json.loads(report.read_text())["cases"]
    assert sorted(c["case"]["settings"]["threads"] for c in cases) == [1, 2]
    assert all(c["latency"]["n"] == 6 for c in cases)  # the flag won
    assert all("cooled down 0.1 s first" in c["notes"] for c in cases)


def test_bad_matrix_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[settings]\nwarmup = -1\n")
    assert main(["run", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("m.toml:2: [settings] warmup must be an integer >= 0, got -1.")


def test_backend_options_from_file_and_flags(tmp_path: Path) -> None:
    from edgebench.options import parse_backend_option

    path = write(tmp_path, "[backend_options.ncnn]\nfp16_storage = true\npacking = false\n")
    flags = {"backend_options": {"ncnn": {"packing": True}}}
    matrix = load_matrix(flags, path)
    assert matrix.settings.backend_options == {"ncnn": {"fp16_storage": True, "packing": True}}
    assert parse_backend_option("litert.threads=2") == ("litert", "threads", 2)
    assert parse_backend_option("x.y=off") == ("x", "y", "off")
    with pytest.raises(UserError, match=r"is not BACKEND\.KEY=VALUE"):
        parse_backend_option("fp16")


@pytest.mark.parametrize(("option", "message"), [
    ("onnxruntime.bogus=1", "backend 'onnxruntime' has no option 'bogus'; its options are "
                            "graph_optimization_level, spinning."),
    ("onnxruntime.graph_optimization_level=max", "must be one of disable, basic, extended, "
                                                 "all"),
    ("ncnn.fp16_storage=true", "names backend 'ncnn', which is not in this run"),
])
def test_bad_backend_options_exit_2(tmp_path: Path, option: str, message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "-b", "onnxruntime", "--backend-option", option, "-o", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_backend_option_reaches_the_runner_and_the_case_id(tmp_path: Path) -> None:
    import json

    assert main(["run", "-b", "onnxruntime", "-n", "3", "--warmup", "0", "--images", "1",
                 "--backend-option", "onnxruntime.graph_optimization_level=basic",
                 "-o", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["case"]["id"].endswith("|graph_optimization_level=basic")
    assert case["runtime"]["details"]["graph_optimization_level"] == "basic"


FILE_HINT = "twice; give each value once (for more samples use repeats or iterations)."


@pytest.mark.parametrize(("text", "message"), [
    ("[run]\nbackends = ['onnxruntime', 'onnxruntime']\n",
     f"{{tmp}}/m.toml:2: [run] backends names 'onnxruntime' {FILE_HINT}"),
    ("[run]\ndevices = ['local', 'ssh://pi', 'local']\n",
     f"{{tmp}}/m.toml:2: [run] devices names 'local' {FILE_HINT}"),
    ("[run]\nmodels = ['a.onnx', './a.onnx']\n",
     f"{{tmp}}/m.toml:2: [run] models names '{{tmp}}/a.onnx' {FILE_HINT}"),
    ("[run]\ncompress = ['int8', 'int8']\n",
     f"{{tmp}}/m.toml:2: [run] compress names 'int8' {FILE_HINT}"),
    ("[settings]\nthreads = [2, 1, 2]\n",
     f"{{tmp}}/m.toml:2: [settings] threads names '2' {FILE_HINT}"),
])
def test_a_value_repeated_in_the_file_is_refused(tmp_path: Path, text: str,
                                                 message: str) -> None:
    with pytest.raises(UserError) as err:
        MatrixFile(write(tmp_path, text))
    assert str(err.value) == message.replace("{tmp}", str(tmp_path))


FLAG_HINT = "twice; give each value once (for more samples use --repeats or --iterations)."


@pytest.mark.parametrize(("argv", "message"), [
    (["-b", "onnxruntime,onnxruntime"], f"--backend names 'onnxruntime' {FLAG_HINT}"),
    (["-b", "onnxruntime", "-b", "litert,onnxruntime"],
     f"--backend names 'onnxruntime' {FLAG_HINT}"),
    (["-d", "local", "-d", "local"], f"--device names 'local' {FLAG_HINT}"),
    (["-m", "{tmp}/a.onnx", "-m", "{tmp}/b/../a.onnx"], f"--model names '{{tmp}}/b/../a.onnx' "
                                                     f"{FLAG_HINT}"),
    (["--threads", "1", "--threads", "1"], f"--threads names '1' {FLAG_HINT}"),
])
def test_a_value_repeated_in_the_flags_exits_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["run", *argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(message.replace("{tmp}", str(tmp_path))), err
    assert not (tmp_path / "out").exists()


def test_retry_and_gate_are_part_of_the_one_matrix(tmp_path: Path) -> None:
    path = write(tmp_path, "[settings]\nretries = 1\nretry_backoff_s = 2\n"
                           "[gate]\nlatency_threshold = 0.1\nalpha = 0.05\n")
    matrix = load_matrix({"retries": 0, "alpha": None}, path)
    assert (matrix.retry.retries, matrix.retry.backoff_s) == (0, 2.0)  # the flag won
    assert (matrix.gate.latency, matrix.gate.alpha, matrix.gate.map_points) == (0.1, 0.05, 0.5)


@pytest.mark.parametrize(("flags", "message"), [
    ({"iterations": "5"}, "--iterations must be an integer >= 1, got '5'."),
    ({"timeout_s": float("inf")}, "--timeout must be a finite number, got inf."),
    ({"imgsz": "250"}, "--imgsz must be a size >= 32"),
    ({"temperature_wait_s": -1}, "temperature_wait_s must be a number >= 0, got -1."),
    ({"itertions": 5}, "'itertions' is not a matrix option; options are "),
])
def test_flags_from_code_are_checked_by_the_same_rules(flags: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(UserError) as err:
        load_matrix(flags)
    assert str(err.value).startswith(message)


def test_devices_command_lists_the_files_devices_unless_flags_name_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[run]\ndevices = ['bogus://x']\n")
    assert main(["devices", "-c", str(path)]) == 1
    assert "bogus://x  UNREACHABLE" in capsys.readouterr().out
    assert main(["devices", "-c", str(path), "-d", "local"]) == 0
    assert "bogus" not in capsys.readouterr().out
