"""The export worker (edgebench.export_worker): one process makes every format and the PyTorch
reference; its artifacts are the one-shot tool's; a killed worker fails one export and the next
starts a new one; two runs making the same export share the cache (lock + atomic rename).

Process starts are counted from the worker's own log line (EDGEBENCH_EXPORT_WORKER_LOG), not
from timings."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgebench.cache import sha256_file
from edgebench.errors import CaseError
from edgebench.export_worker import LOG_ENV, ExportWorker
from edgebench.pipeline import ASSETS

pytestmark = [pytest.mark.export, pytest.mark.slow]

FORMATS = ("onnx", "ncnn")


def starts(log: Path) -> int:
    return sum(line.startswith("start ") for line in log.read_text().splitlines()) \
        if log.exists() else 0


@pytest.fixture(scope="module")
def pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed")
    dst = tmp_path_factory.mktemp("xw") / "m.pt"
    shutil.copyfile(ASSETS / "shapes-yolov8n.pt", dst)  # Ultralytics writes next to its input
    return dst


@pytest.fixture(scope="module")
def tensors(pt: Path) -> Path:
    path = pt.parent / "tensors.npz"
    rng = np.random.default_rng(0)
    np.savez(path, **{str(i): rng.random((1, 3, 320, 320), dtype=np.float32) for i in range(2)})
    return path


@pytest.fixture(scope="module")
def made(pt: Path, tensors: Path) -> Iterator[tuple[Path, Path, int]]:
    """Every format and the reference by one worker, and by the one-shot tool (the oracle:
    what edgebench ran before the worker, one process per export)."""
    root = pt.parent
    log = root / "worker.log"
    os.environ[LOG_ENV] = str(log)
    try:
        with ExportWorker() as worker:
            for fmt in FORMATS:
                (root / f"w-{fmt}").mkdir()
                worker.export(pt, sha256_file(pt), fmt, root / f"w-{fmt}", 320, f"exporting {fmt}")
            worker.predict(pt, sha256_file(pt), tensors, root / "w-ref.npz", "reference")
            count = worker.starts
    finally:
        del os.environ[LOG_ENV]
    assert count == 1
    for fmt in FORMATS:
        (root / f"o-{fmt}").mkdir()
        subprocess.run([sys.executable, "-m", "edgebench.ultralytics_export", "--weights",
                        str(pt), "--format", fmt, "--out", str(root / f"o-{fmt}"), "--imgsz",
                        "320"], check=True, capture_output=True, timeout=900)
    subprocess.run([sys.executable, "-m", "edgebench.ultralytics_export", "--weights", str(pt),
                    "--predict", str(tensors), "--out", str(root / "o-ref.npz")],
                   check=True, capture_output=True, timeout=900)
    yield root, log, count


def test_one_worker_process_for_every_format_and_the_reference(made: tuple[Path, Path, int]
                                                               ) -> None:
    root, log, _ = made
    assert starts(log) == 1  # one process made onnx, ncnn (pnnx) and the reference
    for fmt in FORMATS:
        assert (root / f"w-{fmt}" / "artifact.json").is_file()


def _onnx_graph(path: Path) -> bytes:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]  # holds the export's date
    return bytes(model.SerializeToString())


def test_worker_artifacts_are_the_one_shot_tools(made: tuple[Path, Path, int]) -> None:
    root, _, _ = made
    assert _onnx_graph(root / "w-onnx" / "source.onnx") == \
        _onnx_graph(root / "o-onnx" / "source.onnx")
    worker_ncnn, one_shot_ncnn = root / "w-ncnn" / "source_ncnn_model", \
        root / "o-ncnn" / "source_ncnn_model"
    names = sorted(p.name for p in worker_ncnn.iterdir())
    assert names == sorted(p.name for p in one_shot_ncnn.iterdir())
    for name in names:
        if name != "metadata.yaml":  # the export's date
            assert sha256_file(worker_ncnn / name) == sha256_file(one_shot_ncnn / name), name
    for fmt in FORMATS:
        assert json.loads((root / f"w-{fmt}" / "artifact.json").read_text()) == \
            json.loads((root / f"o-{fmt}" / "artifact.json").read_text())


def test_worker_reference_is_the_one_shot_predict(made: tuple[Path, Path, int]) -> None:
    root, _, _ = made
    with np.load(root / "w-ref.npz") as ours, np.load(root / "o-ref.npz") as theirs:
        assert sorted(ours.files) == sorted(theirs.files) == ["0_0", "1_0"]
        for name in ours.files:
            np.testing.assert_array_equal(ours[name], theirs[name])
    assert json.loads((root / "w-ref.json").read_text()) == \
        json.loads((root / "o-ref.json").read_text())


def test_killed_worker_fails_one_export_and_the_next_starts_a_new_one(
        pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "worker.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with ExportWorker() as worker:
        def kill_when_exporting() -> None:  # the staged copy of the .pt: the export is under way
            deadline = time.monotonic() + 300
            while not (first / "source.pt").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert worker._proc is not None
            os.kill(worker._proc.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_exporting)
        killer.start()
        with pytest.raises(CaseError) as err:
            worker.export(pt, sha256_file(pt), "onnx", first, 320,
                          f"converting {pt.name} to onnx with Ultralytics")
        killer.join()
        assert str(err.value).startswith(
            f"converting {pt.name} to onnx with Ultralytics failed (killed by SIGKILL): ")
        worker.export(pt, sha256_file(pt), "onnx", second, 320, "the next export")
        assert worker.starts == 2
    assert (second / "source.onnx").is_file()
    assert starts(log) == 2


def test_worker_refuses_a_booby_trapped_pt(tmp_path: Path) -> None:
    """The worker loads checkpoints as the one-shot tool did (weights_only, allow-list)."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "train_args": {}}, evil)
    with ExportWorker() as worker, pytest.raises(CaseError) as err:
        worker.export(evil, "x", "onnx", tmp_path, None, "converting evil.pt to onnx")
    assert str(err.value).startswith("converting evil.pt to onnx failed (exit 1): ")
    assert "outside the supported Ultralytics checkpoint format" in str(err.value)
    assert not marker.exists()


SHARE = """
import sys
from pathlib import Path
from edgebench.cache import sha256_file
from edgebench.pipeline import export_with_ultralytics, load_source
artifact = export_with_ultralytics(load_source(Path(sys.argv[1])), "onnx", Path("."), imgsz=320)
print(artifact.path, artifact.sha256)
"""


def test_two_runs_exporting_the_same_model_share_the_cache(pt: Path, tmp_path: Path) -> None:
    """Two real processes, one cache: one exports, the other waits on the entry's lock and
    reuses it (one worker start in all), and both get the same file."""
    log, cache = tmp_path / "worker.log", tmp_path / "cache"
    env = {**os.environ, LOG_ENV: str(log), "EDGEBENCH_CACHE": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", SHARE, str(pt)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    outs = [run.communicate(timeout=900) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outs]
    first, second = (out.split() for out, _ in outs)
    assert first == second
    assert hashlib.sha256(Path(first[0]).read_bytes()).hexdigest() == first[1]
    assert starts(log) == 1
    exports = cache / "exports"
    assert [p.name for p in exports.iterdir() if p.name.startswith(".export-")] == []
