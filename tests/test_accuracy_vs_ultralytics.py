"""Our mAP of the embedded model, measured on the device's outputs, vs Ultralytics' own val()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench.cli import main
from edgebench.datasets import embedded_val_yaml
from edgebench.ultralytics_offline import ultralytics_offline_env

pytestmark = [pytest.mark.slow, pytest.mark.export]

VAL = """
import json, sys
from ultralytics import YOLO
m = YOLO(sys.argv[1], task="detect").val(data=sys.argv[2], imgsz=320, batch=1, conf=0.001,
                                         iou=0.7, device="cpu", plots=False, verbose=False,
                                         project=sys.argv[3], name="val")
print(json.dumps({"map50_95": float(m.box.map), "map50": float(m.box.map50)}))
"""


def ultralytics_val(model: Path, tmp_path: Path) -> dict[str, float]:
    env = {**os.environ, **ultralytics_offline_env()}
    done = subprocess.run([sys.executable, "-c", VAL, str(model), str(embedded_val_yaml()),
                           str(tmp_path / "ultralytics")], env=env, capture_output=True,
                          text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_map_matches_ultralytics_val(tmp_path: Path, embedded_onnx: Path) -> None:
    assert main(["run", "-o", str(tmp_path / "eb"), "-b", "onnxruntime", "--warmup", "1",
                 "-n", "5"]) == 0
    (report,) = (tmp_path / "eb").glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    ours = case["accuracy"]
    theirs = ultralytics_val(embedded_onnx, tmp_path)
    print(f"edgebench mAP50-95 {ours['map50_95']:.4f} mAP50 {ours['map50']:.4f}; "
          f"Ultralytics val {theirs['map50_95']:.4f} / {theirs['map50']:.4f}")
    assert abs(ours["map50_95"] - theirs["map50_95"]) < 0.01
    assert abs(ours["map50"] - theirs["map50"]) < 0.01
