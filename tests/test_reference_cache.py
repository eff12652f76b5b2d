"""The reference cache (issue 19): the float references (PyTorch for a ``.pt``, ONNX Runtime
for an ``.onnx``) are computed once per content key and read back by later runs, with
the real reference computations (torch in its subprocess, the onnxruntime runner on the
local device), never a stand-in."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgebench.accuracy import AccuracySettings
from edgebench.cli import main
from edgebench.config import ASSETS, DEFAULT_MODEL, Matrix
from edgebench.datasets import load_dataset
from edgebench.evaluation import AccuracyBatch, Reference, evaluate, prepare_batch
from edgebench.pipeline import load_source, torch_reference
from edgebench.plugin_manager import Registry, collect_registry, make_plugin_manager
from edgebench.records import Artifact
from edgebench.references import (
    TORCH_REFERENCE_THREADS,
    FloatReferences,
    onnx_reference,
)

IMAGES = 3
COMPUTED, CACHED = "computed by this run", "read from the reference cache"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return collect_registry(make_plugin_manager())


@pytest.fixture(scope="module")
def batch(isolated_cache: Path) -> AccuracyBatch:
    """The first images of the embedded val split at 320, in the session's cache."""
    return prepare_batch(load_dataset(None, limit=IMAGES), "images", (320, 320),
                         isolated_cache)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own, so every reference starts uncomputed."""
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGEBENCH_CACHE", str(root))
    return root


def reference(registry: Registry, batch: AccuracyBatch, source: Artifact) -> Reference:
    """The reference of ``source`` as a new run gets it (a new :class:`FloatReferences`)."""
    got, why = FloatReferences(Matrix(), registry, batch.dataset).reference_for(source, batch)
    assert got is not None, why
    return got


def entries(root: Path) -> list[Path]:
    """The cache's complete entries (staging and set-aside entries start with a dot)."""
    folder = root / "references"
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def stamps(entry: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in sorted(entry.iterdir())}


def same_outputs(a: Reference, b: Reference) -> None:
    assert len(a.outputs) == len(b.outputs) == IMAGES
    for x, y in zip(a.outputs, b.outputs, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def figures(fidelity: object) -> dict[str, object]:
    data = dataclasses.asdict(fidelity)  # type: ignore[call-overload]
    data.pop("reference")
    return data  # type: ignore[no-any-return]


def perturbed_onnx(path: Path) -> Path:
    """The embedded ONNX with one weight changed: another model, same graph."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(DEFAULT_MODEL))
    init = next(i for i in model.graph.initializer
                if numpy_helper.to_array(i).dtype == np.float32 and i.dims)
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    onnx.save(model, str(path))
    return path


@pytest.mark.export
def test_a_second_run_reads_the_pytorch_reference_and_it_equals_a_fresh_one(
        tmp_path: Path, own_cache: Path, registry: Registry, batch: AccuracyBatch) -> None:
    pt = tmp_path / "shapes-yolov8n.pt"
    shutil.copy2(ASSETS / "shapes-yolov8n.pt", pt)  # never run anything from assets
    source = load_source(pt)
    first = reference(registry, batch, source)
    assert COMPUTED in first.described and first.detections
    # the thread count reached torch (--threads: torch.set_num_threads, read back there)
    assert f"CPU, {TORCH_REFERENCE_THREADS} thread" in first.name
    (entry,) = entries(own_cache)
    before = stamps(entry)

    second = reference(registry, batch, source)
    assert CACHED in second.described and second.name == first.name
    assert stamps(entry) == before  # nothing recomputed or rewritten
    assert entries(own_cache) == [entry]
    assert not [p for p in (own_cache / "references").iterdir() if p.name.startswith(".")]
    same_outputs(first, second)

    # equal to a fresh computation (uncached), and so are the agreement figures of a
    # converted model (the embedded ONNX run by onnxruntime) checked against each
    fresh_name, fresh = torch_reference(source, batch.tensors, threads=TORCH_REFERENCE_THREADS)
    assert fresh_name == first.name
    for per_image, cached in zip(fresh, second.outputs, strict=True):
        assert np.array_equal(per_image[0][0], cached)
    _, converted = onnx_reference(registry, load_source(DEFAULT_MODEL), batch, threads=1,
                                  timeout_s=120)
    settings = AccuracySettings()
    computed_fid = evaluate(batch, converted, settings, reference=first).fidelity
    cached_fid = evaluate(batch, converted, settings, reference=second).fidelity
    assert computed_fid is not None and cached_fid is not None
    assert computed_fid.detection_agreement is not None and computed_fid.max_abs > 0
    assert figures(computed_fid) == figures(cached_fid)


def test_the_report_says_the_reference_came_from_the_cache(tmp_path: Path, own_cache: Path
                                                          ) -> None:
    fast = ["-m", str(DEFAULT_MODEL), "-b", "onnxruntime", "-n", "3", "--warmup", "1",
            "--images", str(IMAGES)]
    reports, notes = [], []
    for run in ("first", "second"):
        assert main(["run", *fast, "-o", str(tmp_path / run)]) == 0
        (path,) = (tmp_path / run).glob("*/report.json")
        reports.append(json.loads(path.read_text()))
        notes.append(path.with_suffix(".md").read_text())
        if run == "first":
            (entry,) = entries(own_cache)
            before = stamps(entry)
    (first,), (second,) = (r["cases"] for r in reports)
    fid1, fid2 = first["accuracy"]["fidelity"], second["accuracy"]["fidelity"]
    assert COMPUTED in fid1["reference"] and CACHED in fid2["reference"]
    assert "graph optimisations off, 1 intra-op thread" in fid2["reference"]
    # the agreement note under the results table says it too
    assert f"Reference: {fid1['reference']}." in notes[0]
    assert f"Reference: {fid2['reference']}." in notes[1]
    assert stamps(entry) == before
    assert {k: v for k, v in fid1.items() if k != "reference"} == \
        {k: v for k, v in fid2.items() if k != "reference"}
    assert first["accuracy"]["map50_95"] == second["accuracy"]["map50_95"]


def test_the_key_is_the_content_of_tensors_and_model_not_their_paths(
        tmp_path: Path, own_cache: Path, registry: Registry, batch: AccuracyBatch) -> None:
    onnx = load_source(DEFAULT_MODEL)
    original = reference(registry, batch, onnx)
    assert COMPUTED in original.described

    copy = tmp_path / "elsewhere" / batch.tensors.name  # same content, another path: a hit
    copy.parent.mkdir()
    shutil.copy2(batch.tensors, copy)
    moved = reference(registry, dataclasses.replace(batch, tensors=copy), onnx)
    assert CACHED in moved.described
    same_outputs(original, moved)

    changed = tmp_path / "changed.npy"  # a patch of one image changed: a miss
    pixels = np.load(batch.tensors).copy()  # uint8 (K, B, 3, H, W), batching.py
    pixels[1, 0, :, 100:140, 100:140] = 255 - pixels[1, 0, :, 100:140, 100:140]
    np.save(changed, pixels)
    other_data = reference(registry, dataclasses.replace(batch, tensors=changed), onnx)
    assert COMPUTED in other_data.described
    assert np.array_equal(other_data.outputs[0], original.outputs[0])
    assert not np.array_equal(other_data.outputs[1], original.outputs[1])

    model = load_source(perturbed_onnx(tmp_path / "shapes-yolov8n.onnx"))  # same name
    other_model = reference(registry, batch, model)
    assert COMPUTED in other_model.described
    assert not np.array_equal(other_model.outputs[0], original.outputs[0])
    assert len(entries(own_cache)) == 3
    assert CACHED in reference(registry, batch, model).described


@pytest.mark.parametrize("damage", ["truncated outputs", "flipped byte", "garbage entry.json",
                                    "missing outputs", "empty entry"])
def test_a_damaged_entry_is_recomputed_never_trusted(
        damage: str, own_cache: Path, registry: Registry, batch: AccuracyBatch) -> None:
    onnx = load_source(DEFAULT_MODEL)
    good = reference(registry, batch, onnx)
    (entry,) = entries(own_cache)
    outputs = entry / "outputs.npz"
    if damage == "truncated outputs":
        outputs.write_bytes(outputs.read_bytes()[: outputs.stat().st_size // 2])
    elif damage == "flipped byte":  # same size, still a readable .npz: only the hash tells
        data = bytearray(outputs.read_bytes())
        data[len(data) // 2] ^= 0x01
        outputs.write_bytes(bytes(data))
    elif damage == "garbage entry.json":
        (entry / "entry.json").write_text("{not json")
    elif damage == "missing outputs":
        outputs.unlink()
    else:  # an entry directory with nothing in it
        shutil.rmtree(entry)
        entry.mkdir()
    again = reference(registry, batch, onnx)
    assert COMPUTED in again.described
    same_outputs(good, again)
    assert entries(own_cache) == [entry]
    assert CACHED in reference(registry, batch, onnx).described  # and the entry is whole again


FILL = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from edgebench.datasets import load_dataset
    from edgebench.evaluation import prepare_batch
    from edgebench.pipeline import load_source
    from edgebench.plugin_manager import PluginKind, collect_registry, make_plugin_manager
    from edgebench.reference_cache import cached_reference
    from edgebench.references import onnx_reference, onnx_reference_key

    tensors_cache, model, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    images = int(sys.argv[4])
    registry = collect_registry(make_plugin_manager())
    batch = prepare_batch(load_dataset(None, limit=images), "images", (320, 320), tensors_cache)
    source = load_source(model)
    runner = registry.of(PluginKind.BACKEND)["onnxruntime"].cls().runner()
    key = onnx_reference_key(runner, source, batch, 1)
    while not go.exists():  # both processes start computing together
        time.sleep(0.01)
    got = cached_reference(key, lambda: onnx_reference(registry, source, batch, threads=1,
                                                       timeout_s=120))
    print(json.dumps({"cached": got.cached, "entry": str(got.entry),
                      "sums": [float(o[0].sum()) for o in got.outputs]}))
""")


def test_two_processes_filling_the_same_entry_share_it(
        tmp_path: Path, own_cache: Path, isolated_cache: Path, batch: AccuracyBatch) -> None:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", FILL, str(isolated_cache),
                               str(DEFAULT_MODEL), str(go), str(IMAGES)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "EDGEBENCH_CACHE": str(own_cache)})
             for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["cached"] for r in results) == [False, True]  # computed once, read once
    assert results[0]["entry"] == results[1]["entry"] and results[0]["sums"] == \
        results[1]["sums"]
    (entry,) = entries(own_cache)
    assert str(entry) == results[0]["entry"]
    assert not [p for p in (own_cache / "references").iterdir()
                if p.name.startswith(".") and p.is_dir()]
    meta = json.loads((entry / "entry.json").read_text())
    assert meta["key"]["kind"] == "onnxruntime" and meta["tensors"] == IMAGES
