"""``prune`` (structured, torch-pruning, then fine-tuning) and ``sparsify`` (unstructured
global L1) on the embedded YOLOv8n, and the shared fine-tuning routine, on a tiny shapes
dataset at a tiny image size; bad options refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgebench.cli import main
from edgebench.compression import apply_steps, check_steps, resolve_pipelines
from edgebench.config import ASSETS
from edgebench.contracts import CompressionContext
from edgebench.errors import CaseError, UserError
from edgebench.pipeline import export_with_ultralytics, load_source
from edgebench.plugin_manager import Registry, collect_registry, make_plugin_manager
from edgebench.records import Artifact

pytestmark = [pytest.mark.export]

PT = ASSETS / "shapes-yolov8n.pt"
IMGSZ = 64


@pytest.fixture(scope="module")
def registry() -> Registry:
    return collect_registry(make_plugin_manager())


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgebench.shapes import default_shapes_dataset

    return default_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4,
                                  imgsz=IMGSZ)


def _context(tmp_path: Path, data: Path | None, source: Artifact) -> CompressionContext:
    return CompressionContext(source=source, data_yaml=data, imgsz=IMGSZ, workdir=tmp_path,
                              progress=False, pytorch=source)


def _compress(text: str, registry: Registry, context: CompressionContext) -> Artifact:
    (pipeline,) = resolve_pipelines([text], registry)
    check_steps([pipeline], registry, context)
    result = apply_steps(context.source, pipeline.steps, "pt", registry, context)
    return result[0] if isinstance(result, tuple) else result


def _meta(artifact: Artifact) -> dict[str, object]:
    data: dict[str, object] = json.loads((artifact.path.parent / "artifact.json")
                                         .read_text())
    return data


def _onnx_outputs(pt: Artifact) -> tuple[list[str], np.ndarray]:
    """Export with the normal export path and run it: (Conv weight names, output)."""
    import onnx
    import onnxruntime as ort

    exported = export_with_ultralytics(pt, "onnx", Path("."), imgsz=IMGSZ)
    assert exported.input_shape == (1, 3, IMGSZ, IMGSZ)
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    out = ort.InferenceSession(exported.path).run(None, {"images": x})[0]
    model = onnx.load(exported.path)
    convs = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    return convs, out


# -- bad input: one sentence, before any work ---------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("prune:0", "out of range"), ("prune:1", "out of range"), ("prune:1.5", "out of range"),
    ("prune:-0.2", "out of range"), ("sparsify:0", "out of range"),
    ("sparsify:amount=1.0", "out of range"), ("prune:0.3:epochs=-1", "negative"),
    ("prune:0.3:imgsz=100", "multiple of 32"), ("prune:0.3:batch=0", "at least 1"),
    ("prune:0.3:round_to=0", "at least 1"), ("prune:ratio=half", "must be a float"),
    ("sparsify:0.5:epochs=3", "no option 'epochs'"),
])
def test_bad_options_are_one_sentence(text: str, words: str, registry: Registry,
                                      tmp_path: Path) -> None:
    context = _context(tmp_path, None, load_source(PT))
    with pytest.raises(UserError) as info:
        pipelines = resolve_pipelines([text], registry)
        check_steps(pipelines, registry, context)
    message = str(info.value)
    assert words in message and "\n" not in message and message.endswith(".")


def test_the_cli_refuses_a_bad_ratio_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code = main(["run", "-m", str(PT), "-b", "onnxruntime", "--compress", "prune:1.5",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "prune:ratio=1.5 is out of range" in err[0]
    assert time.perf_counter() - start < 30
    assert not list((tmp_path / "out").glob("**/report.json"))


def test_fine_tuning_needs_a_train_split(registry: Registry, tmp_path: Path) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\nval: images/val\nnames: {{0: a}}\n")
    context = _context(tmp_path, data, load_source(PT))
    with pytest.raises(UserError, match="no 'train' split"):
        check_steps(resolve_pipelines(["prune:0.3"], registry), registry, context)
    check_steps(resolve_pipelines(["prune:0.3:epochs=0"], registry), registry, context)


def test_fine_tuning_after_sparsify_is_refused(registry: Registry, tmp_path: Path) -> None:
    """Fine-tuning would refill the zeros: refused without starting the worker."""
    from edgebench.plugins.compression.prune import StructuredPrune

    source = load_source(PT)
    sparse = Artifact(path=source.path, format="pt", sha256=source.sha256,
                      size_bytes=source.size_bytes, pipeline=("sparsify:amount=0.5",))
    with pytest.raises(CaseError, match="refills the zeroed weights"):
        StructuredPrune().apply(sparse, {**StructuredPrune.option_defaults},
                                _context(tmp_path, None, source))


# -- the compressors on the real model (slow: torch, training, export) --------------------


@pytest.mark.slow
def test_prune_shrinks_fine_tunes_and_exports(registry: Registry, tiny_data: Path,
                                              tmp_path: Path) -> None:
    from edgebench.plugins.compression.prune import StructuredPrune

    source = load_source(PT)
    context = _context(tmp_path, tiny_data, source)
    raw = _compress("prune:0.3:epochs=0", registry, context)
    tuned = _compress("prune:0.3:epochs=1:batch=4", registry, context)
    raw_meta, meta = _meta(raw), _meta(tuned)

    assert raw.format == tuned.format == "pt" and raw.source_sha256 == source.sha256
    assert tuned.pipeline == ("prune:batch=4:epochs=1:ratio=0.3",)
    before, after = int(meta["params_before"]), int(meta["params_after"])  # type: ignore[call-overload]
    assert 0.35 * before < after < 0.65 * before  # ~(1 - 0.3)^2 of the weights
    assert raw_meta["params_after"] == after  # fine-tuning keeps the pruned architecture
    assert float(meta["gflops_after"]) < 0.65 * float(meta["gflops_before"])  # type: ignore[arg-type]
    assert meta["epochs"] == 1 and raw_meta["epochs"] == 0
    assert meta["map50_95_before_finetune"] is not None
    assert meta["map50_95_after_finetune"] is not None
    assert raw.sha256 != tuned.sha256  # the weights changed
    notes = " ".join(StructuredPrune().notes(tuned))
    assert "fine-tuned 1 epochs" in notes and f"{before:,} -> {after:,}" in notes
    assert "not fine-tuned" in " ".join(StructuredPrune().notes(raw))

    # The normal export path exports the two-conv architecture; the ONNX is smaller.
    _, full = _onnx_outputs(source)
    _, out = _onnx_outputs(tuned)
    assert out.shape == full.shape and np.isfinite(out).all()
    assert Path(export_with_ultralytics(tuned, "onnx", tmp_path, imgsz=IMGSZ).path
                ).stat().st_size < 0.65 * Path(
        export_with_ultralytics(source, "onnx", tmp_path, imgsz=IMGSZ).path).stat().st_size

    # Cached: the same step again does no work.
    start = time.perf_counter()
    again = _compress("prune:0.3:epochs=1:batch=4", registry, context)
    assert again.path == tuned.path and time.perf_counter() - start < 5


@pytest.mark.slow
def test_sparsify_zeroes_weights_that_survive_export(registry: Registry,
                                                     tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from edgebench.plugins.compression.prune import Sparsify

    source = load_source(PT)
    sparse = _compress("sparsify:0.5", registry, _context(tmp_path, None, source))
    meta = _meta(sparse)
    assert 0.495 <= float(meta["sparsity"]) <= 0.505  # type: ignore[arg-type]
    assert meta["params"] == 3011628  # shapes unchanged
    assert "50.0% of the conv weights are zero" in Sparsify().notes(sparse)[0]

    convs, out = _onnx_outputs(sparse)
    exported = export_with_ultralytics(sparse, "onnx", tmp_path, imgsz=IMGSZ)
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(exported.path)
               .graph.initializer}
    conv_weights = [weights[name] for name in convs if name in weights]
    zeros = sum(int((w == 0).sum()) for w in conv_weights)
    total = sum(w.size for w in conv_weights)
    assert zeros / total > 0.45  # BatchNorm folding scales weights, zeros stay zeros
    assert np.isfinite(out).all()


# -- the shared fine-tuning routine --------------------------------------------------------


KD_MODULE = '''
import os
from pathlib import Path

import torch


def factory(base, teacher, kd):
    marker = Path(os.environ["EDGEBENCH_TEST_KD_MARKER"])

    def criterion(preds, batch):
        loss, items = base(preds, batch)
        with torch.no_grad():
            taught = teacher(batch["img"])
        taught = taught[1] if isinstance(taught, (tuple, list)) else taught
        extra = torch.nn.functional.mse_loss(preds["scores"].sigmoid(),
                                             taught["scores"].sigmoid())
        with marker.open("a") as fh:
            fh.write(f"{float(extra)}\\n")
        return loss + kd.weight * extra * batch["img"].shape[0], items

    return criterion
'''


def _load_in_child(path: Path) -> dict[str, object]:
    """What Ultralytics loads from a checkpoint (in a child: torch stays out of pytest)."""
    code = (
        "import json, os, sys, torch\n"
        "from edgebench.ultralytics_offline import ultralytics_offline_env\n"
        "os.environ.update(ultralytics_offline_env())\n"
        "from ultralytics import YOLO\n"
        "m = YOLO(sys.argv[1]).model\n"
        "ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)\n"
        "print(json.dumps({'type': type(m).__name__, "
        "'params': sum(p.numel() for p in m.parameters()), "
        "'optimizer': ck.get('optimizer') is not None, "
        "'teacher': any('teacher' in k for k in m.state_dict()), "
        "'criterion': getattr(m, 'criterion', None) is not None}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout
    data: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return data


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "kd-hook", "kd-ultralytics"])
def test_finetune_saves_the_student_alone(mode: str, tiny_data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.plugins.compression.finetune_trainer import KDSettings, finetune_in_subprocess

    teacher, kd = None, None
    marker = tmp_path / "kd-calls.txt"
    if mode != "plain":
        teacher = PT
        kd = KDSettings(weight=0.5)
    if mode == "kd-hook":
        (tmp_path / "toy_kd.py").write_text(KD_MODULE)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
        monkeypatch.setenv("EDGEBENCH_TEST_KD_MARKER", str(marker))
        kd = KDSettings(weight=0.5, criterion="toy_kd:factory")
    out = tmp_path / "tuned.pt"
    result = finetune_in_subprocess(PT, out, tiny_data, epochs=1, imgsz=IMGSZ, batch=4,
                                    teacher=teacher, kd=kd, progress=False)
    assert result.epochs == 1 and Path(result.weights) == out
    assert result.map50_95 is not None and 0.0 <= result.map50_95 <= 1.0
    loaded = _load_in_child(out)
    assert loaded == {"type": "DetectionModel", "params": 3011628, "optimizer": False,
                      "teacher": False, "criterion": False}
    if mode == "kd-hook":  # the hook's criterion did the training: one call per batch
        assert len(marker.read_text().split()) == 2


def test_finetune_rejects_zero_epochs(tmp_path: Path, tiny_data: Path) -> None:
    from edgebench.plugins.compression.finetune_trainer import finetune_in_subprocess

    with pytest.raises(ValueError, match="epochs must be >= 1"):
        finetune_in_subprocess(PT, tmp_path / "x.pt", tiny_data, epochs=0, imgsz=IMGSZ,
                               progress=False)
