"""The plugin guide's tutorial (docs/plugins.md), taken from the page itself, installed and run
for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench.config import DEFAULT_MODEL

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
TUTORIAL = "## Tutorial: an OpenCV DNN backend"


def tutorial_blocks() -> dict[str, str]:
    """The tutorial's code blocks, keyed by the file named in their first comment line."""
    text = GUIDE.read_text()
    assert TUTORIAL in text, f"{GUIDE} has no section {TUTORIAL!r}"
    section = text.split(TUTORIAL, 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for body in re.findall(r"```(?:python|toml)\n(.*?)```", section, flags=re.S):
        first = body.splitlines()[0]
        name = re.match(r"#\s*(\S+)", first)
        assert name, first
        blocks[name.group(1)] = body
    return blocks


@pytest.fixture(scope="module")
def tutorial_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's three blocks installed as a distribution (put on PYTHONPATH)."""
    blocks = tutorial_blocks()
    assert set(blocks) == {"my_edgebench_cv/__init__.py", "my_edgebench_cv/cv_runner.py",
                           "pyproject.toml"}
    tmp_path = tmp_path_factory.mktemp("tutorial")
    dist = tmp_path / "dist"
    (dist / "my_edgebench_cv").mkdir(parents=True)
    for name, body in blocks.items():
        (dist / name).write_text(body)
    pyproject = dist / "pyproject.toml"
    pyproject.write_text(
        "[build-system]\nrequires = ['setuptools>=69']\nbuild-backend = 'setuptools.build_meta'"
        "\n[project]\nname = 'my-edgebench-cv'\nversion = '0.1'\n"
        "[tool.setuptools]\npackages = ['my_edgebench_cv']\n"
        "[tool.setuptools.package-data]\nmy_edgebench_cv = ['*.py']\n"
        + pyproject.read_text().split("\n", 1)[1])
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(site), str(dist)], check=True, timeout=300)
    return site


def test_plugin_guide_tutorial_backend_installs_and_runs(tutorial_site: Path, tmp_path: Path,
                                                         make_onnx) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(tutorial_site)}

    listed = subprocess.run([sys.executable, "-m", "edgebench.cli", "plugins"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert any("opencv-dnn" in line and "my-edgebench-cv" in line
               for line in listed.stdout.splitlines()), listed.stdout

    model = make_onnx("conv", size=32)
    done = subprocess.run([sys.executable, "-m", "edgebench.cli", "run", "-b", "opencv-dnn",
                           "-m", str(model), "-n", "5", "--warmup", "1",
                           "-o", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["status"] == "ok", case["reason"]
    assert case["runtime"]["name"] == "opencv" and case["latency"]["n"] == 5


@pytest.mark.export
@pytest.mark.slow  # an Ultralytics export and the PyTorch reference: ~20 s
def test_plugin_guide_tutorial_backend_exports_a_pt(tutorial_site: Path, tmp_path: Path
                                                    ) -> None:
    """Given a .pt, the tutorial's backend hands its runner an ONNX export, never the .pt:
    the case runs and agrees with PyTorch within the fp32 tolerance."""
    weights = tmp_path / "model.pt"  # a copy: Ultralytics writes next to the weights
    shutil.copyfile(DEFAULT_MODEL.with_suffix(".pt"), weights)
    env = {**os.environ, "PYTHONPATH": str(tutorial_site)}
    done = subprocess.run([sys.executable, "-m", "edgebench.cli", "run", "-b", "opencv-dnn",
                           "-m", str(weights), "-n", "3", "--warmup", "1", "--images", "5",
                           "-o", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    (report,) = (tmp_path / "out").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["status"] == "ok", case["reason"]
    artifact = case["artifact"]
    assert artifact["format"] == "onnx" and artifact["path"].endswith(".onnx"), artifact
    assert "Ultralytics" in artifact["converter"], artifact
    fidelity = case["accuracy"]["fidelity"]
    assert "PyTorch" in fidelity["reference"] or "torch" in fidelity["reference"], fidelity
    assert fidelity["within_tolerance"] is True, fidelity
    assert fidelity["detection_agreement"] >= 0.99, fidelity
