"""The accuracy batch as uint8 letterboxed pixels (``edgebench.batching``): it round-trips
exactly, its float32 inputs are bit for bit the float batch edgebench shipped before
(``preprocess.image_tensor`` per image, which ``np.savez`` wrote), every installed runtime's
runner returns the same outputs from it as from that float batch, and a runner on a real
sshd device is pushed the uint8 file and scores from it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from remote_fixtures import ssh_home, sshd  # noqa: F401
from runner_utils import run_device_runner
from servers import SshServer

from edgebench.accuracy import AccuracySettings
from edgebench.agent import edgebench_agent as agent
from edgebench.batching import (
    float_inputs,
    group_tensors,
    groups,
    normalise,
    read_batch,
    write_batch,
)
from edgebench.cache import sha256_file
from edgebench.config import ASSETS, DEFAULT_MODEL
from edgebench.datasets import load_dataset
from edgebench.evaluation import AccuracyBatch, batched, evaluate, make_reference, prepare_batch
from edgebench.preprocess import image_tensor

IMAGES = 6


def bits(x: np.ndarray) -> np.ndarray:
    """float32 as its bit patterns: equal bits, not just equal values (-0.0, NaN)."""
    assert x.dtype == np.float32
    return np.ascontiguousarray(x).view(np.uint32)


def test_normalise_is_the_float_division_for_every_pixel_value() -> None:
    """All 256 values, host and agent, against ``to_tensor``'s ``float32(pixel) / 255.0``."""
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 1, 16, 16).repeat(3, axis=2)
    want = pixels.astype(np.float32) / 255.0
    np.testing.assert_array_equal(bits(normalise(pixels)), bits(want))
    assert normalise(pixels).dtype == np.float32 and normalise(pixels).max() == 1.0


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 3), st.just(3),
                                  st.integers(1, 9), st.integers(1, 9))))
def test_batch_round_trips_exactly(tmp_path_factory: pytest.TempPathFactory,
                                   pixels: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("rt") / "batch.npy"
    write_batch(path, pixels)
    back = read_batch(path)
    assert back.dtype == np.uint8 and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)
    got = list(float_inputs(path))
    assert len(got) == len(pixels)
    for x, p in zip(got, pixels):
        np.testing.assert_array_equal(bits(x), bits(p.astype(np.float32) / 255.0))
    if pixels.shape[1] == 1:
        for size in (1, 2, 3):
            grouped = path.with_name(f"b{size}.npy")
            assert group_tensors(path, size, grouped) == len(groups(len(pixels), size))
            for k, group in enumerate(groups(len(pixels), size)):
                np.testing.assert_array_equal(read_batch(grouped)[k], pixels[group, 0])


def test_write_batch_refuses_what_is_not_uint8_pixels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(K, B, 3, H, W\) uint8"):
        write_batch(tmp_path / "b.npy", np.zeros((2, 1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(K, B, 3, H, W\) uint8"):
        write_batch(tmp_path / "b.npy", np.zeros((2, 3, 4, 4), np.uint8))
    np.save(tmp_path / "f.npy", np.zeros((2, 1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="is not an accuracy batch"):
        read_batch(tmp_path / "f.npy")
    with pytest.raises(agent.RunnerFailure, match="is not an accuracy batch"):
        agent.accuracy_inputs(str(tmp_path / "f.npy"))


@pytest.fixture(scope="session")
def embedded() -> tuple[AccuracyBatch, list[np.ndarray]]:
    """The first embedded val images' accuracy batch at 320, and the float batch of before:
    ``preprocess.image_tensor`` of each image."""
    dataset = load_dataset(None).first(IMAGES)
    from edgebench.pipeline import cache_root

    batch = prepare_batch(dataset, "images", (320, 320), cache_root())
    return batch, [image_tensor(im.path, (320, 320))[0] for im in dataset.images]


def old_batch(tmp_path: Path, tensors: list[np.ndarray]) -> Path:
    """The float batch as edgebench wrote it before: ``np.savez``, keys ``"0".."N-1"``."""
    path = tmp_path / "batch.npz"
    np.savez(path, **{str(i): t for i, t in enumerate(tensors)})  # type: ignore[arg-type]
    return path


def test_prepared_batch_is_the_old_float_batch_bit_for_bit(
        embedded: tuple[AccuracyBatch, list[np.ndarray]], tmp_path: Path) -> None:
    batch, old = embedded
    assert batch.tensors.suffix == ".npy"
    pixels = read_batch(batch.tensors)
    assert pixels.shape == (IMAGES, 1, 3, 320, 320)
    assert batch.tensors.stat().st_size <= 128 + IMAGES * 3 * 320 * 320  # uint8 + header
    assert batch.content_sha256 == sha256_file(batch.tensors)
    host = list(float_inputs(batch.tensors))
    _, each = agent.accuracy_inputs(str(batch.tensors))
    device = [x.copy() for x in each]  # the agent refills one buffer
    legacy_count, legacy = agent.accuracy_inputs(str(old_batch(tmp_path, old)))
    assert legacy_count == IMAGES
    for h, d, o, lo in zip(host, device, old, legacy, strict=True):
        assert h.shape == d.shape == o.shape == (1, 3, 320, 320)
        np.testing.assert_array_equal(bits(h), bits(o))
        np.testing.assert_array_equal(bits(d), bits(o))
        np.testing.assert_array_equal(bits(lo), bits(o))
    with np.load(batch.timing_input) as timing:
        np.testing.assert_array_equal(bits(timing["images"]), bits(old[0]))
    pairs = batched(batch, 4)  # 6 images: [0..3], [4, 5, 5, 5]
    assert pairs.content_sha256 == sha256_file(pairs.tensors) != batch.content_sha256
    grouped = list(float_inputs(pairs.tensors))
    for got, group in zip(grouped, groups(IMAGES, 4), strict=True):
        np.testing.assert_array_equal(bits(got), bits(np.concatenate([old[i] for i in group])))
    with np.load(pairs.timing_input) as timing:
        np.testing.assert_array_equal(bits(timing["images"]), bits(grouped[0]))


def _runners() -> list[Any]:
    """(backend, model) of each installed runtime whose runner runs the embedded model as
    committed (ExecuTorch needs a .pte export: tests/test_executorch_backend.py)."""
    from edgebench.plugins.backends.litert.plugin import LiteRTBackend
    from edgebench.plugins.backends.ncnn.plugin import NcnnBackend
    from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend

    out = [pytest.param(OnnxRuntimeBackend, DEFAULT_MODEL, "images", id="onnxruntime"),
           pytest.param(LiteRTBackend, ASSETS / "shapes-yolov8n.tflite",
                        "serving_default_args_0", id="litert"),
           pytest.param(NcnnBackend, ASSETS / "shapes-yolov8n_ncnn_model", "in0", id="ncnn")]
    from edgebench.plugins.backends.openvino.plugin import OpenVINOBackend

    out.append(pytest.param(OpenVINOBackend, DEFAULT_MODEL, "images", id="openvino"))
    out.append(pytest.param("mnn", DEFAULT_MODEL, "images", id="mnn"))
    return out


@pytest.mark.parametrize(("backend_cls", "model", "name"), _runners())
def test_every_runner_returns_the_same_outputs_as_from_the_float_batch(
        embedded: tuple[AccuracyBatch, list[np.ndarray]], tmp_path: Path,
        request: pytest.FixtureRequest, backend_cls: Any, model: Path, name: str) -> None:
    """Each runner (its own layout and dtype handling: LiteRT's NHWC, ...) on the uint8
    batch and on the float batch of before: bit-identical outputs, so the same mAP and
    agreement."""
    batch, old = embedded
    module = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert", "ncnn": "ncnn",
              "openvino": "openvino", "mnn": "MNN"}
    pytest.importorskip(module[request.node.callspec.id])
    if backend_cls == "mnn":
        from edgebench.pipeline import load_source
        from edgebench.plugins.backends.mnn.plugin import MnnBackend

        backend_cls = MnnBackend
        model = MnnBackend().export(load_source(model), tmp_path, imgsz=None).path
    backend = backend_cls()
    from edgebench.records import RunSettings

    options = dict(backend.runner_options(RunSettings(threads=1)))
    outputs = {}
    for label, inputs in (("old", old_batch(tmp_path, old)), ("new", batch.tensors)):
        work = tmp_path / label
        work.mkdir()
        code, result = run_device_runner(
            backend, work, model, {name: old[0]}, warmup_iterations=0, iterations=1,
            threads=1, options=options,
            accuracy={"inputs": str(inputs), "out": str(work / "out.npz")})
        assert code == 0, result
        assert result["accuracy"]["images"] == IMAGES
        with np.load(work / "out.npz") as out:
            outputs[label] = {k: out[k] for k in out.files}
    assert sorted(outputs["new"]) == sorted(outputs["old"])
    for key, value in outputs["old"].items():
        np.testing.assert_array_equal(outputs["new"][key], value, err_msg=key)
    per_image = [[outputs["new"][f"{i}_0"]] for i in range(IMAGES)]
    acc = evaluate(batch, per_image, AccuracySettings(), reference=make_reference(
        "old batch", batch, [[outputs["old"][f"{i}_0"]] for i in range(IMAGES)],
        AccuracySettings()))
    assert acc.map50_95 is not None and acc.map50_95 > 0.5
    assert acc.fidelity is not None and acc.fidelity.max_abs == 0.0
    assert acc.fidelity.detection_agreement == 1.0


@pytest.mark.sshd
def test_a_runner_on_a_real_sshd_device_gets_the_uint8_batch(
        sshd: SshServer, embedded: tuple[AccuracyBatch, list[np.ndarray]],  # noqa: F811
        tmp_path: Path) -> None:
    """The harness's own path (``run_job``): the uint8 ``.npy`` is what is pushed (its size
    and hash checked on the device side of the SFTP copy), and the outputs pulled back are
    those of the same runner locally on the float batch of before."""
    from edgebench.devices.ssh import SSHDevice
    from edgebench.fingerprint import DeviceAgent
    from edgebench.plugins.backends.onnxruntime.plugin import OnnxRuntimeBackend
    from edgebench.records import RunSettings
    from edgebench.remote import Pusher, RunnerJob, run_job, runner_request

    batch, old = embedded
    backend = OnnxRuntimeBackend()
    settings_ = RunSettings(warmup_iterations=0, iterations=1, threads=1)
    job = RunnerJob(runner=backend.runner(), model=DEFAULT_MODEL, model_key="embedded",
                    inputs=batch.timing_input, accuracy_inputs=batch.tensors,
                    request=runner_request(settings_, backend.runner_options(settings_)),
                    timeout_s=120)
    pusher = Pusher()
    with SSHDevice(sshd.uri(python=sys.executable)) as device:
        outcome = run_job(device, DeviceAgent(device), job, pusher)
        pushed = [f for f in device.run(["find", str(device.workdir / "inputs"), "-type", "f"],
                                        timeout_s=30).stdout.split() if "batch" in f]
        assert [Path(f).suffix for f in pushed] == [".npy"]
        sha, size = pusher.expected(device, type(device.workdir)(pushed[0]))
    assert (sha, size) == (batch.content_sha256, batch.tensors.stat().st_size)
    assert size <= 128 + IMAGES * 3 * 320 * 320  # uint8 pixels, not float32
    assert outcome.result.accuracy is not None and outcome.result.accuracy.images == IMAGES
    work = tmp_path / "local"
    work.mkdir()
    code, result = run_device_runner(
        backend, work, DEFAULT_MODEL, {"images": old[0]}, warmup_iterations=0, iterations=1,
        threads=1, options=dict(backend.runner_options(settings_)),
        accuracy={"inputs": str(old_batch(tmp_path, old)), "out": str(work / "out.npz")})
    assert code == 0, result
    assert outcome.outputs is not None and len(outcome.outputs) == IMAGES
    with np.load(work / "out.npz") as out:
        for i, per in enumerate(outcome.outputs):
            np.testing.assert_array_equal(per[0], out[f"{i}_0"])
