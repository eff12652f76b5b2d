"""Models with a static batch > 1 (Ultralytics ``export(batch=B)``): timed B images at a
time, latency per batch and per image, the accuracy pass grouped B to an input and split back
per image (mAP against Ultralytics' own val() on the same file and images), and a backend
that cannot run the batch (ncnn) refused before any conversion, in one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebench.accuracy import AccuracySettings
from edgebench.batching import (
    float_inputs,
    group_tensors,
    groups,
    normalise,
    split_outputs,
    static_batch,
    write_batch,
)
from edgebench.cache import sha256_file
from edgebench.cli import main
from edgebench.config import ASSETS, DEFAULT_MODEL
from edgebench.datasets import embedded_val_yaml, load_dataset
from edgebench.errors import CaseSkipped
from edgebench.evaluation import batched, evaluate, make_reference, prepare_batch
from edgebench.planning import refuse_batch
from edgebench.records import Artifact
from edgebench.stats import latency_stats, per_image
from edgebench.ultralytics_offline import ultralytics_offline_env

MS = 1_000_000


# -- fast: grouping, splitting, statistics, the refusal -----------------------------------


def test_groups_pad_the_last_group_with_its_last_image() -> None:
    assert groups(7, 2) == [[0, 1], [2, 3], [4, 5], [6, 6]]
    assert groups(7, 4) == [[0, 1, 2, 3], [4, 5, 6, 6]]
    assert groups(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert groups(3, 1) == [[0], [1], [2]]
    assert static_batch((2, 3, 320, 320)) == 2
    assert static_batch((-1, 3, 320, 320)) == 1 and static_batch(None) == 1


@pytest.mark.parametrize("size", [2, 3, 4])
def test_group_and_split_round_trip_with_an_odd_image_count(tmp_path: Path, size: int) -> None:
    """Seven images grouped ``size`` at a time through a per-image "model" (two outputs of
    different shapes) split back to exactly the per-image outputs, padding dropped."""
    rng = np.random.default_rng(size)
    pixels = rng.integers(0, 256, (7, 1, 3, 8, 8), dtype=np.uint8)
    images = [normalise(p) for p in pixels]
    per_image = tmp_path / "batch.npy"
    write_batch(per_image, pixels)

    def model(x: np.ndarray) -> list[np.ndarray]:  # any batch, image by image
        return [x.reshape(len(x), 3, 64).sum(axis=2)[:, :, None] * [1.0, 2.0],
                x.mean(axis=(1, 2, 3))[:, None]]

    grouped = tmp_path / "batch-b.npy"
    assert group_tensors(per_image, size, grouped) == -(-7 // size)
    inputs = list(float_inputs(grouped))
    assert all(x.shape == (size, 3, 8, 8) for x in inputs)
    np.testing.assert_array_equal(inputs[-1][-1], images[6][0])  # padded with the last image
    split = split_outputs([model(x) for x in inputs], size, 7)
    assert len(split) == 7
    for got, image in zip(split, images):
        want = model(image)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_split_refuses_outputs_that_cannot_be_told_apart_by_image() -> None:
    ok = [[np.zeros((2, 8, 5))]] * 2
    assert len(split_outputs(ok, 2, 3)) == 3
    with pytest.raises(ValueError, match=r"3 batched inferences returned outputs; 3 images "
                                         r"in batches of 2 need 2"):
        split_outputs(ok + ok[:1], 2, 3)
    with pytest.raises(ValueError, match=r"output 0 has shape \[1, 8, 5\], not a first axis "
                                         r"of 2"):
        split_outputs([[np.zeros((1, 8, 5))]] * 2, 2, 3)


def test_per_image_latency_is_the_per_batch_figure_over_the_batch() -> None:
    samples = [9 * MS, 11 * MS, 10 * MS, 14 * MS, 12 * MS, 8 * MS, 13 * MS]  # >= 6: a CI
    one = latency_stats(samples)
    two = latency_stats(samples, batch=2)
    assert one.batch == 1 and one.per_image_p50_ms == one.p50_ms == 11.0
    assert one.images_per_s == one.throughput_ips
    assert two.batch == 2 and two.p50_ms == one.p50_ms  # the samples are per batch
    assert two.per_image_p50_ms == 5.5
    assert one.median_ci95_ms is not None and two.per_image_median_ci95_ms == (
        one.median_ci95_ms[0] / 2, one.median_ci95_ms[1] / 2)
    assert two.images_per_s == pytest.approx(2000 / 11) and two.throughput_ips == \
        pytest.approx(1000 / 11)
    assert per_image(one, 4).per_image_p50_ms == 2.75
    with pytest.raises(ValueError, match="at least one image"):
        per_image(one, 0)


def test_calibration_and_host_evaluation_feed_a_static_batch(tmp_path: Path) -> None:
    """int8 calibration and the host-side mAP of compression steps feed a batch-B model B
    images at a time (an ONNX Runtime session of a batch-2 model refuses one image)."""
    from edgebench.plugins.compression.calibration import CalibrationReader

    images = sorted((embedded_val_yaml().parent / "images" / "val").glob("*.png"))[:3]
    one = CalibrationReader("images", images, (64, 64), progress=False)
    two = CalibrationReader("images", images, (64, 64), progress=False, batch=2)
    singles = [one.get_next() for _ in range(4)]
    pairs = [two.get_next() for _ in range(3)]
    assert len(one) == 3 and singles[-1] is None and len(two) == 2 and pairs[-1] is None
    assert [p["images"].shape for p in pairs[:2]] == [(2, 3, 64, 64)] * 2  # type: ignore[index]
    grouped = np.concatenate([p["images"] for p in pairs[:2]])  # type: ignore[index]
    expected = [s["images"][0] for s in singles[:3]] + [singles[2]["images"][0]]  # type: ignore[index]
    np.testing.assert_array_equal(grouped, np.stack(expected))
    from edgebench.batching import run_per_image

    calls: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1)[:, None, None]

    tensors = [s["images"] for s in singles[:3]]  # type: ignore[index]
    outputs = run_per_image(model, tensors, 2)
    assert calls == [2, 2] and len(outputs) == 3
    for got, x in zip(outputs, tensors):
        np.testing.assert_array_equal(got, model(x))


def test_a_changed_static_batch_is_not_compared_as_a_latency_change() -> None:
    """A batch-2 model's sample is one inference of two images: set against a batch-1
    model's it would read as a 2x regression."""
    from edgebench.compare import Thresholds, Verdict, compare_case
    from edgebench.records import Case, CaseResult, RunSettings, Status

    case = Case(id="m|fp32|onnxruntime|local|tauto", model="m@aaaa", backend="onnxruntime",
                device="local", settings=RunSettings())
    samples = [10 * MS + k * 1000 for k in range(50)]
    one = CaseResult(case=case, status=Status.OK, latency=latency_stats(samples))
    two = CaseResult(case=case, status=Status.OK,
                     latency=latency_stats([2 * s for s in samples], batch=2))
    compared = compare_case("m", one, two, Thresholds())
    assert compared.verdict is Verdict.NOT_COMPARABLE and compared.reasons == (
        "static batch 1 -> 2: a latency sample is one inference of the whole batch, so the "
        "two do not compare",)
    assert compare_case("m", two, two, Thresholds()).verdict is Verdict.UNCHANGED


class _OneImageBackend:
    name = "oneimage"
    max_batch = 1


def test_a_backend_declaring_max_batch_refuses_a_larger_static_batch() -> None:
    model = Artifact(path=Path("/models/yolo_b4.onnx"), format="onnx", sha256="0" * 64,
                     size_bytes=1, input_shape=(4, 3, 320, 320))
    with pytest.raises(CaseSkipped) as refused:
        refuse_batch(_OneImageBackend(), model)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "oneimage runs one image per inference but yolo_b4.onnx has a static batch of 4; "
        "export the model with batch=1 for oneimage")
    refuse_batch(_OneImageBackend(),  # type: ignore[arg-type]
                 Artifact(path=Path("/m.onnx"), format="onnx", sha256="0" * 64, size_bytes=1,
                          input_shape=(-1, 3, 320, 320)))  # a dynamic batch runs as 1
    from edgebench.plugins.backends.litert.plugin import LiteRTBackend
    from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
    from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend

    assert NcnnBackend.max_batch == 1
    assert OnnxRuntimeBackend.max_batch is None and LiteRTBackend.max_batch is None


def test_accuracy_pass_in_batches_scores_as_image_by_image(tmp_path: Path,
                                                           isolated_cache: Path) -> None:
    """Seven embedded val images through the embedded (batch 1) model, once image by image
    and once as a batch-2 model would return them (groups of two, the last padded): the
    grouped outputs split back give the same mAP, detections and a perfect agreement with
    the image-by-image reference."""
    import onnxruntime as ort

    dataset = load_dataset(embedded_val_yaml()).first(7)
    single = prepare_batch(dataset, "images", (320, 320), isolated_cache)
    pairs = batched(single, 2)
    assert pairs.batch == 2 and batched(single, 1) is single
    with np.load(pairs.timing_input) as timing:
        assert timing["images"].shape == (2, 3, 320, 320)
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:  # a batch-2 model: each image as by itself
        return np.concatenate([session.run(None, {"images": x[i:i + 1]})[0]
                               for i in range(len(x))])

    by_image = [[run(x)] for x in float_inputs(single.tensors)]
    by_pair = [[run(x)] for x in float_inputs(pairs.tensors)]
    assert len(by_image) == 7 and len(by_pair) == 4
    settings = AccuracySettings()
    reference = make_reference("image by image", single, by_image, settings)
    plain = evaluate(single, by_image, settings, reference=reference)
    grouped = evaluate(pairs, by_pair, settings, reference=reference)
    assert plain.map50_95 is not None and plain.map50_95 > 0.5
    assert grouped.status.value == "ok" and grouped.images == 7
    assert (grouped.map50_95, grouped.map50, grouped.detections) == \
        (plain.map50_95, plain.map50, plain.detections)
    assert grouped.fidelity is not None and grouped.fidelity.max_abs == 0.0
    assert grouped.fidelity.detection_agreement == 1.0
    broken = evaluate(pairs, [[o[0][:1]] for o in by_pair], settings, reference=reference)
    assert broken.status.value == "failed" and broken.reason == (
        "the batched outputs cannot be split per image: output 0 has shape [1, 8, 2100], "
        "not a first axis of 2 (one slice per image of the batch)")


# -- slow: real batch-2 and batch-4 exports, run and scored against Ultralytics -----------

EXPORT = """
import shutil, sys
from pathlib import Path
from ultralytics import YOLO
out = Path(sys.argv[2])
for fmt, batch in (("onnx", 2), ("onnx", 4), ("litert", 2)):
    work = out / f"{fmt}-b{batch}"
    work.mkdir()
    shutil.copy(sys.argv[1], work / "shapes_b.pt")  # Ultralytics writes next to the weights
    made = Path(YOLO(str(work / "shapes_b.pt")).export(format=fmt, batch=batch, imgsz=320,
                                                       device="cpu", verbose=False))
    final = out / f"shapes_b{batch}{made.suffix}"
    made.rename(final)
    print(final)
"""

VAL = """
import json, sys
from ultralytics import YOLO
for model in sys.argv[3:]:
    m = YOLO(model, task="detect").val(data=sys.argv[1], imgsz=320, batch=1, conf=0.001,
                                       iou=0.7, device="cpu", plots=False, verbose=False,
                                       project=sys.argv[2], name="val")
    print(json.dumps({"model": model, "map50_95": float(m.box.map)}))
"""


def _ultralytics(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, **ultralytics_offline_env()}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=900, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def batch_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded .pt exported (from a copy) to ONNX with batch 2 and 4 and to LiteRT with
    batch 2, by Ultralytics."""
    out = tmp_path_factory.mktemp("batch-models")
    _ultralytics(EXPORT, str(ASSETS / "shapes-yolov8n.pt"), str(out), cwd=out)
    models = {p.name: p for p in out.glob("shapes_b*.*")}
    assert sorted(models) == ["shapes_b2.onnx", "shapes_b2.tflite", "shapes_b4.onnx"]
    return models


@pytest.fixture(scope="module")
def batch_run(batch_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[dict[tuple[str, str], dict[str, Any]], Path, str]]:
    """One run of the three models on the three backends, in a fresh cache; the cases by
    (model file, backend), the cache and report.md."""
    root = tmp_path_factory.mktemp("batch-run")
    old = os.environ.get("EDGEBENCH_CACHE")
    os.environ["EDGEBENCH_CACHE"] = str(root / "cache")
    try:
        models = [str(batch_models[n]) for n in sorted(batch_models)]
        assert main(["run", *[a for m in models for a in ("-m", m)], "-b", "onnxruntime",
                     "-b", "litert", "-b", "ncnn", "--compress", "int8:calibration=8",
                     "--warmup", "1", "-n", "5",
                     "-o", str(root / "out")]) == 0
    finally:
        if old is None:
            os.environ.pop("EDGEBENCH_CACHE", None)
        else:
            os.environ["EDGEBENCH_CACHE"] = old
    (report,) = (root / "out").glob("*/report.json")
    cases = {(c["case"]["model"], "+".join((c["case"]["backend"], *c["case"]["pipeline"]))): c
             for c in json.loads(report.read_text())["cases"]}
    labels = {f"{p.stem}@{sha256_file(p)[:8]}": name for name, p in batch_models.items()}
    assert {model for model, _ in cases} == set(labels)
    yield {(labels[m], b): c for (m, b), c in cases.items()}, root / "cache", \
        (report.parent / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.export
def test_batch_models_per_batch_and_per_image_latency_and_mAP_as_ultralytics(
        batch_models: dict[str, Path], batch_run: tuple[dict[Any, Any], Path, str],
        tmp_path: Path) -> None:
    cases, _, markdown = batch_run
    printed = _ultralytics(VAL, str(embedded_val_yaml()), str(tmp_path / "val"),
                           *[str(batch_models[n]) for n in sorted(batch_models)], cwd=tmp_path)
    val = {Path(r["model"]).name: r["map50_95"] for r in
           (json.loads(line) for line in printed.splitlines() if line.startswith('{"model"'))}
    measured = [("shapes_b2.onnx", "onnxruntime", 2), ("shapes_b4.onnx", "onnxruntime", 4),
                ("shapes_b2.tflite", "litert", 2)]
    for model, backend, size in measured:
        case = cases[(model, backend)]
        assert case["status"] == "ok", (model, backend, case["reason"])
        assert case["artifact"]["input_shape"] == [size, 3, 320, 320]
        lat = case["latency"]
        p50 = float(np.percentile(np.asarray(lat["samples_ns"], dtype=np.float64) / MS, 50))
        assert lat["batch"] == size and lat["p50_ms"] == p50
        assert lat["per_image_p50_ms"] == p50 / size
        assert lat["images_per_s"] == pytest.approx(size * 1000 / p50, rel=1e-12)
        assert lat["throughput_ips"] == pytest.approx(1000 / p50, rel=1e-12)
        acc = case["accuracy"]
        assert acc["status"] == "ok" and acc["images"] == 100
        print(f"{model} on {backend}: edgebench mAP50-95 {acc['map50_95']:.4f}, "
              f"Ultralytics val {val[model]:.4f}; p50 {p50:.2f} ms per batch of {size}, "
              f"{p50 / size:.2f} ms per image")
        assert abs(acc["map50_95"] - val[model]) < 0.01
        assert f"{p50:.2f} (batch {size}: {p50 / size:.2f}/image)" in markdown
    for model in ("shapes_b2.onnx", "shapes_b4.onnx"):  # the ONNX on the host's ORT
        fid = cases[(model, "onnxruntime")]["accuracy"]["fidelity"]
        assert fid["reference"].startswith("onnxruntime ") and model in fid["reference"]
        assert fid["detection_agreement"] == 1.0 and fid["within_tolerance"] is True
    # int8 calibrated on a batch-B model (B images per calibration input)
    for model, backend, size in measured:
        int8 = cases[(model, f"{backend}+int8:calibration=8")]
        fp32 = cases[(model, backend)]
        assert int8["status"] == "ok", int8["reason"]
        assert int8["artifact"]["input_shape"] == [size, 3, 320, 320]
        assert int8["latency"]["batch"] == size
        assert abs(int8["accuracy"]["map50_95"] - fp32["accuracy"]["map50_95"]) < 0.03
    # a .tflite given alone has no float reference (as for batch 1): said so, mAP still
    assert "no float reference" in cases[("shapes_b2.tflite", "litert")]["accuracy"][
        "reason"]


@pytest.mark.slow
@pytest.mark.export
def test_ncnn_refuses_a_static_batch_before_any_conversion(
        batch_run: tuple[dict[Any, Any], Path, str]) -> None:
    cases, cache, markdown = batch_run
    for model, size in (("shapes_b2.onnx", 2), ("shapes_b4.onnx", 4)):
        for backend in ("ncnn", "ncnn+int8:calibration=8"):
            case = cases[(model, backend)]
            assert case["status"] == "skipped" and case["artifact"] is None
            assert case["reason"] == (
                f"ncnn runs one image per inference but {model} has a static batch of "
                f"{size}; export the model with batch=1 for ncnn")
    exported = [json.loads(p.read_text()) for p in cache.glob("exports/*/artifact.json")]
    assert not [e for e in exported if e.get("format") == "ncnn"]  # pnnx never ran
    assert "ncnn runs one image per inference" in markdown
