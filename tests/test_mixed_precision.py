"""The accuracy-aware mixed-precision search (``mixed`` for ONNX) on the embedded YOLOv8n:
calibration on the first train images, mAP on held-out train images, never val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quantize_fixtures import N_TRAIN, apply, context, onnx_source, small_yaml, val_set

from edgebench.errors import UserError
from edgebench.plugins.compression import host_eval
from edgebench.plugins.compression.mixed_precision import (
    TAIL,
    OnnxMixedPrecision,
    blocks_of,
    greedy_search,
)
from edgebench.plugins.compression.onnx_quant import named_model

pytest.importorskip("onnxruntime")
__all__ = ["onnx_source", "small_yaml", "val_set"]  # fixtures


def meta_of(path: str) -> dict:  # type: ignore[type-arg]
    return json.loads((Path(path).parent / "artifact.json").read_text())  # type: ignore[no-any-return]


def test_blocks_follow_the_ultralytics_modules(onnx_source) -> None:  # type: ignore[no-untyped-def]
    graph = named_model(onnx_source.path)
    blocks = blocks_of(graph, "block")
    assert "model.0" in blocks and "model.21" in blocks and TAIL in blocks
    assert {"model.22/cv2.0", "model.22/cv3.2"} <= set(blocks)  # box and class branches
    assert sum(len(v) for v in blocks.values()) == len(graph.graph.node)
    per_conv = blocks_of(graph, "node")
    convs = sum(1 for n in graph.graph.node if n.op_type == "Conv")
    assert len(per_conv) == convs  # 63 feature convs + the tail (which holds the DFL conv)


def test_greedy_returns_the_best_set_when_the_budget_cannot_be_met() -> None:
    """A plain function stands in for 'quantize and measure': the algorithm alone."""
    blocks = {"a": ["a1"], "b": ["b1", "b2"], "c": ["c1"]}
    loss = {"a1": 0.05, "b1": 0.01, "b2": 0.01, "c1": 0.002}

    def evaluate(float_nodes: set[str]) -> float:
        return 0.8 - sum(v for k, v in loss.items() if k not in float_nodes) - 0.001

    result = greedy_search(blocks, evaluate, 0.8, 0.0, progress=False)
    assert not result.budget_met and result.kept_blocks == ("a", "b", "c")
    assert result.map50_95 == pytest.approx(0.799)
    assert result.sensitivity == {"a": 5.1, "b": 2.1, "c": 0.3}
    met = greedy_search(blocks, evaluate, 0.8, 1.0, progress=False)
    assert met.budget_met and met.kept_blocks == ("a", "b") and met.evaluations == 1 + 3 + 2
    assert [s.kept for s in met.trace] == ["(none: all int8)", "a", "b"]


@pytest.mark.slow
def test_search_meets_the_budget_on_held_out_train_images(tmp_path, onnx_source, small_yaml,
                                                          val_set) -> None:  # type: ignore[no-untyped-def]
    art = apply(OnnxMixedPrecision, onnx_source, context(onnx_source, small_yaml, tmp_path),
                calibration=8, search_images=16)
    meta = meta_of(art.path)
    assert meta["budget_met"] and meta["delta_pts"] >= -1.0
    assert meta["kept_blocks"] == [TAIL] and meta["trace"][0]["map50_95"] < 0.05
    assert meta["search_split"] == "train (held out)" and meta["search_images"] == 16
    assert meta["speed_estimate"]["speedup"] > 0
    fp32 = host_eval.onnx_map(onnx_source.path, val_set)
    assert fp32 - host_eval.onnx_map(art.path, val_set) < 0.02  # val: 20 images
    notes = OnnxMixedPrecision().notes(art)
    assert any("held-out TRAIN images, not the val split" in n for n in notes)


@pytest.mark.slow
def test_tight_budget_runs_the_sensitivity_pass(tmp_path, onnx_source, small_yaml) -> None:  # type: ignore[no-untyped-def]
    """A 0.05-point budget is not met by the head tail alone: every block's sensitivity is
    measured, then blocks are kept float most-sensitive first until the mAP holds (or the
    best set is returned, said so)."""
    art = apply(OnnxMixedPrecision, onnx_source, context(onnx_source, small_yaml, tmp_path),
                calibration=8, search_images=8, budget=0.05)
    meta = meta_of(art.path)
    assert len(meta["sensitivity_pts"]) == meta["blocks"] - 1
    assert meta["kept_blocks"][0] == TAIL and len(meta["kept_blocks"]) > 1
    assert meta["budget_met"] == (meta["delta_pts"] >= -0.05)
    sens = meta["sensitivity_pts"]
    steps = [sens[s["kept"]] for s in meta["trace"][2:]]  # after all-int8 and the tail
    assert steps == sorted(steps, reverse=True)  # most sensitive first
    left = [v for b, v in sens.items() if b not in meta["kept_blocks"]]
    assert min(steps) >= max(left, default=min(steps))


def test_refuses_a_search_set_that_overlaps_calibration(tmp_path, onnx_source,
                                                        small_yaml) -> None:  # type: ignore[no-untyped-def]
    options = {**OnnxMixedPrecision.option_defaults, "calibration": 40, "search_images": 16}
    with pytest.raises(UserError, match=f"needs 56 train images but the train split has "
                                        f"{N_TRAIN}"):
        OnnxMixedPrecision().check(options, context(onnx_source, small_yaml, tmp_path))
    with pytest.raises(UserError, match="between 0 and 100"):
        OnnxMixedPrecision().check({**options, "budget": -1.0},
                                   context(onnx_source, small_yaml, tmp_path))


def test_refuses_a_model_without_a_detection_head(tmp_path, make_onnx, small_yaml) -> None:  # type: ignore[no-untyped-def]
    from edgebench.errors import CaseError
    from edgebench.pipeline import load_source

    classifier = load_source(make_onnx("classifier", size=64))
    with pytest.raises(CaseError, match="mixed measures mAP on a YOLOv8 detection head, and "
                                        "output shape"):
        apply(OnnxMixedPrecision, classifier, context(classifier, small_yaml, tmp_path),
              calibration=8, search_images=8)
