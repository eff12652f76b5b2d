"""A .pt from an untrusted source cannot run code in the harness: checkpoints are loaded
with weights_only and Ultralytics' allow-list (plus edgebench's own pruned-model class)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.export


def test_booby_trapped_pt_is_refused_without_running_its_code(tmp_path: Path) -> None:
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
    done = subprocess.run([sys.executable, "-m", "edgebench.ultralytics_export", "--weights",
                           str(evil), "--format", "onnx", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "outside the supported Ultralytics checkpoint format" in done.stderr
    assert not marker.exists()
    # the same file loaded the unsafe way would have run the payload: the test can fail
    torch.load(evil, weights_only=False)
    assert marker.exists()
