"""A .pt from an untrusted source cannot run code in the harness: checkpoints are loaded
with weights_only and Ultralytics' allow-list (plus edgebench's own pruned-model class)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.export


WORKERS = {  # every export worker that loads a user's .pt: argv after --weights/--out
    "ultralytics": ["edgebench.ultralytics_export", "--format", "onnx"],
    "executorch": ["edgebench.plugins.backends.executorch.export_pte"],
}


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_booby_trapped_pt_is_refused_without_running_its_code(tmp_path: Path,
                                                              worker: str) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "train_args": {}}, evil)
    out = tmp_path / "out"
    out.mkdir()
    module, *rest = WORKERS[worker]
    done = subprocess.run([sys.executable, "-m", module, "--weights", str(evil), *rest,
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "outside the supported Ultralytics checkpoint format" in done.stderr
    assert not marker.exists()
    # the same file loaded the unsafe way would have run the payload: the test can fail
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_class_a_compressor_declares_is_allowed(tmp_path: Path) -> None:
    """A checkpoint holding edgebench's C2fSplit (what prune writes) needs the class allowed
    for weights_only loading, and exports through the worker because the installed prune
    compressor declares the class in ``torch_safe_globals``: the core names no plugin."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    import json
    import os

    from edgebench.compression import torch_safe_globals
    from edgebench.pipeline import ASSETS
    from edgebench.plugin_manager import collect_registry, make_plugin_manager
    from edgebench.ultralytics_offline import ultralytics_offline_env

    declared = torch_safe_globals(collect_registry(make_plugin_manager()))
    assert declared == ("edgebench.plugins.compression.c2f_split:C2fSplit",)
    os.environ.update(ultralytics_offline_env())
    from ultralytics.nn.tasks import load_checkpoint

    from edgebench.plugins.compression.c2f_split import replace_c2f

    model, _ = load_checkpoint(str(ASSETS / "shapes-yolov8n.pt"))
    replace_c2f(model)
    split = tmp_path / "split.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 64}}, split)
    # weights_only loading refuses it unless the class is allowed: the test can fail
    needed = torch.serialization.get_unsafe_globals_in_checkpoint(split)
    assert "edgebench.plugins.compression.c2f_split.C2fSplit" in needed
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "edgebench.ultralytics_export", "--weights",
                           str(split), "--format", "onnx", "--imgsz", "64", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "artifact.json").read_text())["imgsz"] == [64, 64]
