"""``--model model.pt``: exported with Ultralytics once, cached by content hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgebench.cache import sha256_file
from edgebench.cli import main
from edgebench.config import ASSETS

pytestmark = [pytest.mark.slow, pytest.mark.export]


def entries(folder: Path) -> list[Path]:
    """The cache entries in ``folder``, not their lock files (``.<entry>.lock``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


PT = ASSETS / "shapes-yolov8n.pt"


def test_pt_is_exported_once_and_matches_the_embedded_onnx(
        tmp_path: Path, embedded_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolated_cache = tmp_path / "cache"  # this test's own: it counts the exports in it
    monkeypatch.setenv("EDGEBENCH_CACHE", str(isolated_cache))
    args = ["run", "-m", str(PT), "-b", "onnxruntime", "--warmup", "1", "-n", "5"]
    assert main([*args, "-o", str(tmp_path / "first")]) == 0
    (report,) = (tmp_path / "first").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    artifact = case["artifact"]
    assert case["status"] == "ok" and artifact["format"] == "onnx"
    assert artifact["source_sha256"] == sha256_file(PT)
    assert artifact["input_shape"] == [1, 3, 320, 320]  # the training imgsz, read from the .pt
    exports = entries(isolated_cache / "exports")
    assert len(exports) == 1
    stamp = (exports[0] / "artifact.json").stat().st_mtime_ns

    assert main([*args, "-o", str(tmp_path / "second")]) == 0
    assert entries(isolated_cache / "exports") == exports
    assert (exports[0] / "artifact.json").stat().st_mtime_ns == stamp  # cache hit, no export
    (report2,) = (tmp_path / "second").glob("*/report.json")
    assert json.loads(report2.read_text())["cases"][0]["artifact"]["sha256"] == artifact["sha256"]

    # The fresh export computes what the committed ONNX computes.
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    fresh = ort.InferenceSession(artifact["path"]).run(None, {"images": x})[0]
    embedded = ort.InferenceSession(str(embedded_onnx)).run(None, {"images": x})[0]
    assert np.abs(fresh - embedded).max() < 1e-3
