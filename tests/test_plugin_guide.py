"""The plugin authors' guide (docs/plugins/), checked against the code it documents.

The tables of the runner page must list exactly the fields of ``RunnerRequest`` and the
arguments of ``agent.Loaded`` with their defaults (a field added without docs fails here);
the compressor and device examples are taken from their pages, installed as distributions
and run end to end by ``edgebench run``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebench.agent.edgebench_agent import Loaded
from edgebench.agent.edgebench_protocol import RunnerRequest

DOCS = Path(__file__).parents[1] / "docs"
RUNNER_PAGE = DOCS / "plugins" / "runner.md"
COMPRESSOR_PAGE = DOCS / "plugins" / "compressor.md"
DEVICE_PAGE = DOCS / "plugins" / "device.md"


# -- the pages' content ------------------------------------------------------------------


def table_rows(page: Path, marker: str) -> dict[str, list[str]]:
    """The table right after ``<!-- marker``: first cell (without backticks) -> the cells."""
    text = page.read_text()
    assert f"<!-- {marker}" in text, f"{page} has no <!-- {marker} --> table"
    lines = text.split(f"<!-- {marker}", 1)[1].splitlines()[1:]
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    assert rows, f"the {marker} table of {page} is empty"
    return rows


def page_files(page: Path) -> dict[str, str]:
    """The code blocks of ``page`` whose first line names a file (``# pkg/__init__.py``,
    ``# pyproject.toml``), keyed by that name."""
    files = {}
    for body in re.findall(r"```(?:python|toml)\n(.*?)```", page.read_text(), flags=re.S):
        name = re.fullmatch(r"#\s*([\w./-]+\.(?:py|toml))\s*", body.splitlines()[0])
        if name:
            files[name.group(1)] = body
    return files


# -- the tables cannot drift from the code ------------------------------------------------


def test_runner_request_table_lists_every_field_with_its_wire_default() -> None:
    rows = table_rows(RUNNER_PAGE, "runner-request-table")
    fields = [f.name for f in dataclasses.fields(RunnerRequest)]
    assert sorted(rows) == sorted(fields), (
        f"docs/plugins/runner.md's request table lists {sorted(rows)}; RunnerRequest has "
        f"{sorted(fields)}: document the new field (type, unit, default, what run sends)")
    wire = RunnerRequest().to_json()
    for key, (_, kind, unit, default, meaning) in rows.items():
        assert kind and unit and meaning, f"row {key!r} has an empty cell"
        if key not in wire:  # absent from the wire form without a value (accuracy)
            assert default == "absent", (key, default)
            assert getattr(RunnerRequest.from_json({}), key) is None
        else:
            assert json.loads(default.strip("`")) == wire[key], (key, default, wire[key])
            # the agent reads an absent key as that same default
            assert RunnerRequest.from_json({}).to_json()[key] == wire[key]


def test_loaded_table_lists_every_argument_with_its_default() -> None:
    rows = table_rows(RUNNER_PAGE, "loaded-table")
    params = {name: p for name, p in inspect.signature(Loaded.__init__).parameters.items()
              if name != "self"}
    assert sorted(rows) == sorted(params), (
        f"docs/plugins/runner.md's Loaded table lists {sorted(rows)}; Loaded takes "
        f"{sorted(params)}: document the new argument")
    for name, (_, kind, default, meaning) in rows.items():
        assert kind and meaning, f"row {name!r} has an empty cell"
        param = params[name]
        if param.default is inspect.Parameter.empty:
            assert default == "required", (name, default)
        else:
            assert default.strip("`") == repr(param.default), (name, default, param.default)


def test_runner_request_keys_in_the_agents_docstring_match_the_fields() -> None:
    """The wire example in edgebench_protocol's docstring is the other place keys are
    listed."""
    import edgebench.agent.edgebench_protocol as protocol

    request_doc = (protocol.__doc__ or "").split("Request::", 1)[1].split("Result::")[0]
    listed = set(re.findall(r'"(\w+)":', request_doc)) - {"inputs", "out"} | {"inputs"}
    assert listed == {f.name for f in dataclasses.fields(RunnerRequest)}, listed


# -- the examples, installed and run -------------------------------------------------------


@pytest.fixture(scope="module")
def guide_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compressor and the device examples, each a distribution made of its page's
    files, installed into one directory (put on PYTHONPATH to use them)."""
    root = tmp_path_factory.mktemp("guide")
    dists = []
    for page, package in ((COMPRESSOR_PAGE, "my_edgebench_fp16"),
                          (DEVICE_PAGE, "my_edgebench_python")):
        files = page_files(page)
        assert set(files) == {f"{package}/__init__.py", "pyproject.toml"}, (page, set(files))
        dist = root / package
        for name, body in files.items():
            (dist / name).parent.mkdir(parents=True, exist_ok=True)
            (dist / name).write_text(body)
        dists.append(str(dist))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), *dists],
                   check=True, timeout=300)
    return site


def edgebench(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "edgebench.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def run_report(site: Path, out: Path, *args: str, images: int = 20) -> dict[str, Any]:
    done = edgebench(site, "run", "-n", "3", "--warmup", "1", "--images", str(images),
                     "-o", str(out), *args)
    assert done.returncode == 0, done.stderr + done.stdout
    (report,) = out.glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def test_compressor_example_fp16_onnx_keeps_map(guide_site: Path, tmp_path: Path,
                                                embedded_onnx: Path) -> None:
    import onnx
    from onnx import numpy_helper

    listed = edgebench(guide_site, "plugins")
    assert any("fp16" in line and "my-edgebench-fp16" in line
               for line in listed.stdout.splitlines()), listed.stdout

    report = run_report(guide_site, tmp_path / "out", "-b", "onnxruntime",
                        "--compress", "fp16")
    cases = {tuple(c["case"]["pipeline"]): c for c in report["cases"]}
    assert set(cases) == {(), ("fp16",)}, set(cases)
    fp32, fp16 = cases[()], cases[("fp16",)]
    for case in (fp32, fp16):
        assert case["status"] == "ok", case["reason"]
    art32, art16 = fp32["artifact"], fp16["artifact"]
    assert art16["format"] == "onnx" and art16["precision"] == "fp16", art16
    assert art32["precision"] == "fp32", art32
    assert 0.45 < art16["size_bytes"] / art32["size_bytes"] < 0.6, (art16, art32)
    assert "float16" in art16["converter"], art16
    assert any("stored as float16" in n for n in fp16["notes"]), fp16["notes"]

    # the weights are the fp32 ones rounded to float16, inputs and outputs still float32
    source = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(embedded_onnx))
              .graph.initializer}
    converted = onnx.load(art16["path"])
    halves = {i.name[:-len("_fp16")]: numpy_helper.to_array(i)
              for i in converted.graph.initializer if i.name.endswith("_fp16")}
    assert len(halves) > 50, len(halves)
    for name, half in halves.items():
        assert half.dtype == np.float16
        np.testing.assert_array_equal(half, source[name].astype(np.float16))
    assert {v.type.tensor_type.elem_type for v in [*converted.graph.input,
                                                    *converted.graph.output]} == {1}

    map32, map16 = fp32["accuracy"]["map50_95"], fp16["accuracy"]["map50_95"]
    assert map32 > 0.5, map32
    assert abs(map16 - map32) <= 0.005, (map16, map32)


def python_wrapper(folder: Path, log: Path) -> Path:
    """An executable that records its arguments in ``log`` and runs this Python with them:
    a stand-in for another interpreter that we can see was used."""
    wrapper = folder / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_device_example_runs_cases_under_the_chosen_python(guide_site: Path,
                                                           tmp_path: Path) -> None:
    log = tmp_path / "argv.log"
    wrapper = python_wrapper(tmp_path, log)
    uri = f"python://{wrapper}"
    report = run_report(guide_site, tmp_path / "out", "-b", "onnxruntime", "-d", uri,
                        images=5)
    (case,) = report["cases"]
    assert case["status"] == "ok", case["reason"]
    assert case["case"]["device"] == uri
    assert case["accuracy"]["map50_95"] > 0.5, case["accuracy"]
    ran = log.read_text()
    assert "edgebench_agent.py probe" in ran, ran
    assert re.search(r"onnxruntime_runner\.py --request \S+ --out \S+", ran), ran
    # every path the runner got lies in the device's own work dir, now removed
    workdirs = set(re.findall(r"(/\S*/edgebench-python-[^/\s]+)/", ran))
    assert len(workdirs) == 1 and not Path(workdirs.pop()).exists(), ran


def test_device_example_skips_a_runtime_its_python_lacks(guide_site: Path,
                                                          tmp_path: Path) -> None:
    """A bare venv (no numpy, no onnxruntime) as the device's Python: the probe still works
    (stdlib only) and the case is skipped with the install command, not failed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
                   check=True, timeout=120)
    bare = tmp_path / "bare" / "bin" / "python"
    assert subprocess.run([str(bare), "-c", "import onnxruntime"],
                          capture_output=True).returncode != 0
    uri = f"python://{bare}"
    done = edgebench(guide_site, "run", "-b", "onnxruntime", "-d", uri, "-n", "3",
                     "--warmup", "1", "--images", "5", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr + done.stdout
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["status"] == "skipped", case
    assert "onnxruntime" in case["reason"] and uri in case["reason"], case["reason"]
    assert f"{bare} -m pip install onnxruntime" in case["reason"], case["reason"]


def test_device_example_refuses_a_path_that_is_not_an_interpreter(guide_site: Path,
                                                                  tmp_path: Path) -> None:
    done = edgebench(guide_site, "run", "-b", "onnxruntime", "-d",
                     f"python://{tmp_path}/no-python", "-o", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr + done.stdout
    assert "write python:///absolute/path/to/python" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- the fragments on docs/plugins.md ----------------------------------------------------

GUIDE_PAGE = DOCS / "plugins.md"


def signature_text(func: Any) -> str:
    """``name(a, b, *, c=None)``, as the helpers table writes a signature."""
    parts, star = [], False
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        default = "" if param.default is inspect.Parameter.empty else f"={param.default!r}"
        parts.append(name + default)
    return f"{func.__name__}({', '.join(parts)})"


def python_block(page: Path, containing: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
                if containing in b]
    return block


def test_export_helpers_table_gives_each_helpers_real_signature() -> None:
    import edgebench.pipeline as pipeline

    rows = table_rows(GUIDE_PAGE, "export-helpers-table")
    for documented in rows:
        name = documented.split("(", 1)[0]
        assert hasattr(pipeline, name), f"edgebench.pipeline has no {name}"
        assert documented == signature_text(getattr(pipeline, name)), documented


def test_converter_fragment_calls_the_helpers_with_their_real_parameters() -> None:
    """The own-converter fragment uses a made-up tool, so it cannot run; every call it
    makes to edgebench.pipeline must still bind to the helper's real signature."""
    import ast

    import edgebench.pipeline as pipeline

    tree = ast.parse(python_block(GUIDE_PAGE, "def produce(out)"))
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and hasattr(pipeline, node.func.id):
            signature = inspect.signature(getattr(pipeline, node.func.id))
            signature.bind(*node.args, **{k.arg: None for k in node.keywords if k.arg})
            called.add(node.func.id)
    assert called == {"export_with_ultralytics", "run_tool", "cached_export",
                      "exported_artifact"}, called


def test_tolerance_fragment_widens_only_for_reduced_precision_arithmetic() -> None:
    from edgebench.accuracy import FP16_TOLERANCE, FP32_TOLERANCE
    from edgebench.records import Artifact, RuntimeInfo

    namespace: dict[str, Any] = {}
    exec(python_block(GUIDE_PAGE, "def tolerance(self, artifact, runtime)"), namespace)
    tolerance = namespace["tolerance"]

    def artifact(precision: str, pipeline: tuple[str, ...] = ()) -> Artifact:
        return Artifact(Path("m.onnx"), "onnx", "0" * 64, 1, precision=precision,
                        pipeline=pipeline)

    def runtime(inference_precision: str) -> RuntimeInfo:
        return RuntimeInfo("rt", "1", None,
                           details={"inference_precision": inference_precision})

    assert tolerance(None, artifact("fp32"), runtime("f32")) == FP32_TOLERANCE
    assert tolerance(None, artifact("fp32"), None) == FP32_TOLERANCE
    assert tolerance(None, artifact("fp32"), runtime("bf16")) == FP16_TOLERANCE
    assert tolerance(None, artifact("fp16"), runtime("f32")) == FP16_TOLERANCE
    assert tolerance(None, artifact("int8"), runtime("bf16")) is None
    assert tolerance(None, artifact("fp32", ("int8",)), runtime("bf16")) is None


def test_runner_request_table_gives_what_run_sends_by_default() -> None:
    """The "(10)" after a flag in the last column is the value ``edgebench run`` sends
    when the flag is not given (``runner_request`` of the default settings)."""
    from edgebench.records import RunSettings
    from edgebench.remote import runner_request

    sent = runner_request(RunSettings(), {}).to_json()
    checked = 0
    for key, cells in table_rows(RUNNER_PAGE, "runner-request-table").items():
        default = re.match(r"`--[\w-]+`(?: / `--[\w-]+`)? \((\d+(?:\.\d+)?)\)", cells[4]) \
            or re.match(r"`-\w` / `--[\w-]+` \((\d+(?:\.\d+)?)\)", cells[4])
        if default:
            assert float(default.group(1)) == sent[key], (key, cells[4], sent[key])
            checked += 1
    assert checked == 4, checked  # warm-up and timed loop: counts and durations
