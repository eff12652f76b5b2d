"""Accuracy-aware mixed precision for ONNX (``mixed``): int8 QDQ everywhere except the
blocks the accuracy budget needs in float.

The search, all on the host with ONNX Runtime:

1. calibrate activation ranges once on the first ``calibration`` train images;
2. measure the fp32 model's mAP50-95 on ``search_images`` held-out TRAIN images (the last
   ones of the split, disjoint from calibration; never the val images the report scores);
3. all int8 (naive: mAP ~0, the head's box/score tensor cannot share one scale), then the
   head's tail and DFL float; done if that meets the budget;
4. otherwise per-block sensitivity (the mAP lost when only that block is int8, the rest
   float) and greedy: keep the most sensitive block in float, then the next, measuring the
   real mAP after each, until it is within ``budget`` points of fp32.

A block is an Ultralytics module (``/model.N/``; the detection head split into its box and
class branches and its tail) when the node names say so, otherwise one Conv with the
non-Conv nodes after it (``granularity=node`` forces the latter). When no set meets the
budget, the best one found is kept and the notes say so. The chosen float set, the measured
mAP, the trace and a host speed estimate go into the artifact's ``artifact.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgebench.accuracy import head_problem
from edgebench.batching import static_batch
from edgebench.contracts import CompressionContext, Compressor
from edgebench.errors import CaseError
from edgebench.hookspecs import Register, hookimpl
from edgebench.pipeline import cached_export, exported_artifact
from edgebench.records import Artifact

from .artifact_notes import artifact_meta, quantization_notes
from .calibration import check_calibration, images_fingerprint, input_hw
from .onnx_quant import (
    ACTIVATION_TYPES,
    calibrate,
    head_tail_nodes,
    named_model,
    ort_unavailable,
    ort_version,
    quantize_qdq,
    require_onnx,
)

TAIL = "head tail + DFL"
_MODULE = re.compile(r"^/?(model\.\d+)/")


# -- blocks --------------------------------------------------------------------------------


def blocks_of(model: Any, granularity: str) -> dict[str, list[str]]:
    """Node names grouped into blocks, in graph order; the head's tail is one block."""
    tail = set(head_tail_nodes(model))
    nodes = list(model.graph.node)
    by_module = {n.name: m.group(1) for n in nodes if (m := _MODULE.match(n.name))}
    blocks: dict[str, list[str]] = {}
    if granularity == "block" and len(by_module) == len(nodes):
        head_modules = {by_module[n] for n in tail}
        for node in nodes:
            if node.name in tail:
                key = TAIL
            elif by_module[node.name] in head_modules:  # box and class branches apart
                parts = node.name.strip("/").split("/")
                key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
            else:
                key = by_module[node.name]
            blocks.setdefault(key, []).append(node.name)
        return blocks
    producers = {out: n.name for n in nodes for out in n.output}
    owner: dict[str, str] = {}
    for node in nodes:  # topological order: a non-Conv joins the block of its first input
        if node.name in tail:
            owner[node.name] = TAIL
        elif node.op_type == "Conv":
            owner[node.name] = node.name
        else:
            first = next((producers[i] for i in node.input if i in producers), None)
            owner[node.name] = owner.get(first, node.name) if first else node.name
        blocks.setdefault(owner[node.name], []).append(node.name)
    return blocks


# -- the search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchStep:
    """One greedy step: the block kept float and the mAP (held-out train) after it."""

    kept: str
    map50_95: float


@dataclass(frozen=True)
class SearchResult:
    fp32_map: float
    map50_95: float
    budget_met: bool
    kept_blocks: tuple[str, ...]
    sensitivity: dict[str, float]
    """Per block: mAP points lost when only it is int8."""
    trace: tuple[SearchStep, ...]
    evaluations: int


def greedy_search(blocks: Mapping[str, Sequence[str]], evaluate: Callable[[set[str]], float],
                  fp32_map: float, budget_pts: float, *, prior: Sequence[str] = (),
                  progress: bool) -> SearchResult:
    """``evaluate(float_nodes) -> mAP``; keep blocks float, most sensitive first, until the
    mAP is within ``budget_pts`` points of ``fp32_map``.

    ``prior``: blocks known to need float (the head's tail, whose shared box/score tensor
    int8 cannot hold), tried right after all-int8 and before the sensitivity pass, which
    is skipped when they already meet the budget."""
    from tqdm import tqdm

    every = {n for names in blocks.values() for n in names}
    target = fp32_map - budget_pts / 100.0
    count = 0

    def run(kept: set[str]) -> float:
        nonlocal count
        count += 1
        return evaluate(kept)

    current = run(set())
    trace = [SearchStep("(none: all int8)", current)]
    if current >= target:
        return SearchResult(fp32_map, current, True, (), {}, tuple(trace), count)
    kept = [b for b in prior if b in blocks]
    best: tuple[float, tuple[str, ...]] = (current, ())
    if kept:
        current = run({n for b in kept for n in blocks[b]})
        trace.append(SearchStep(" + ".join(kept), current))
        if current > best[0]:
            best = (current, tuple(kept))
        if current >= target:
            return SearchResult(fp32_map, current, True, tuple(kept), {}, tuple(trace), count)
    sensitivity: dict[str, float] = {}
    rest = [b for b in blocks if b not in kept]
    for name in tqdm(rest, desc="sensitivity", unit="block", disable=not progress,
                     leave=False):
        sensitivity[name] = round((fp32_map - run(every - set(blocks[name]))) * 100, 3)
    order = sorted(rest, key=lambda b: (-sensitivity[b], len(blocks[b])))
    bar = tqdm(order, desc="greedy", unit="block", disable=not progress, leave=False)
    for name in bar:
        kept.append(name)
        current = run({n for b in kept for n in blocks[b]})
        trace.append(SearchStep(name, current))
        bar.set_postfix(map=f"{current:.4f}", target=f"{target:.4f}")
        if current > best[0]:
            best = (current, tuple(kept))
        if current >= target:
            bar.close()
            return SearchResult(fp32_map, current, True, tuple(kept), sensitivity,
                                tuple(trace), count)
    return SearchResult(fp32_map, best[0], False, best[1], sensitivity, tuple(trace), count)


# -- the step ------------------------------------------------------------------------------


class OnnxMixedPrecision(Compressor):
    """int8 QDQ with the fewest float blocks that keep mAP within the budget."""

    name: ClassVar[str] = "mixed"
    target: ClassVar[str] = "onnx"
    summary: ClassVar[str] = ("accuracy-aware mixed precision (ONNX Runtime QDQ): keeps the "
                              "most sensitive blocks float until mAP50-95 is within the "
                              "budget, measured on held-out train images")
    option_defaults: ClassVar[Mapping[str, Any]] = {
        "budget": 1.0, "calibration": 100, "search_images": 100, "granularity": "block",
        "per_channel": False, "activations": "uint8"}
    option_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "granularity": ("block", "node"), "activations": ACTIVATION_TYPES}
    primary_option: ClassVar[str | None] = "budget"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        return ort_unavailable()

    def check(self, options: Mapping[str, Any], context: CompressionContext) -> None:
        from edgebench.errors import UserError

        if not 0 <= float(options["budget"]) <= 100:
            raise UserError(f"mixed: budget={options['budget']} must be between 0 and 100 "
                            "mAP50-95 points.")
        if int(options["search_images"]) < 8:
            raise UserError(f"mixed: search_images={options['search_images']} is too few; "
                            "measure the search's mAP on at least 8 held-out train images.")
        check_calibration(self.name, int(options["calibration"]), context,
                          held_out=int(options["search_images"]))

    def apply(self, model: Artifact, options: Mapping[str, Any],
              context: CompressionContext) -> Artifact:
        require_onnx(self.name, model)
        self.check(options, context)
        images = check_calibration(self.name, int(options["calibration"]), context,
                                   held_out=int(options["search_images"]))
        held_yaml = context.dataset_yaml()
        from .host_eval import held_out_train

        held = held_out_train(held_yaml, int(options["search_images"]))
        hw = input_hw(model.input_shape, context.imgsz)
        key: dict[str, object] = {
            **options, "images": images_fingerprint(images),
            "held_out": images_fingerprint([i.path for i in held.images]),
            "ort": ort_version(), "hw": list(hw)}

        def produce(out: Path) -> None:
            meta = search(model.path, model.input_name, images, held, hw, options, out,
                          progress=context.progress)
            (out / "artifact.json").write_text(json.dumps(meta))

        path, meta = cached_export(model, "onnx-mixed", key, produce)
        return exported_artifact(path, "onnx", model, meta)

    def notes(self, artifact: Artifact) -> tuple[str, ...]:
        return mixed_notes(artifact_meta(artifact.path))


def search(src: Path, input_name: str | None, images: Sequence[Path], held: Any,
           hw: tuple[int, int], options: Mapping[str, Any], out: Path, *,
           progress: bool) -> dict[str, Any]:
    """Run the search into ``out`` (``model.onnx``); return the artifact.json content."""
    from .host_eval import eval_set, first_input, median_latencies_ms, onnx_map, session

    graph = named_model(src)
    batch = static_batch(session(src).get_inputs()[0].shape)
    cache = out / "calibration.json"
    calibrate(src, input_name or graph.graph.input[0].name, images, hw, cache,
              progress=progress, batch=batch)
    data = eval_set(held, hw)
    work = out / "candidate.onnx"
    every = [n.name for n in graph.graph.node]

    def evaluate(float_nodes: set[str]) -> float:
        quantize_qdq(graph, work, cache, exclude=[n for n in every if n in float_nodes],
                     per_channel=bool(options["per_channel"]),
                     activations=str(options["activations"]))
        return onnx_map(work, data)

    blocks = blocks_of(graph, str(options["granularity"]))
    first = session(src).run(None, {graph.graph.input[0].name: first_input(data, batch)})
    problem = (f"it has {len(first)} outputs" if len(first) != 1
               else head_problem(first[0][:1].shape, hw))
    if problem:
        raise CaseError(f"mixed measures mAP on a YOLOv8 detection head, and {problem}")
    fp32_map = onnx_map(src, data)
    result = greedy_search(blocks, evaluate, fp32_map, float(options["budget"]),
                           prior=(TAIL,), progress=progress)
    kept_nodes = [n for b in result.kept_blocks for n in blocks[b]]
    quantize_qdq(graph, out / "model.onnx", cache, exclude=kept_nodes,
                 per_channel=bool(options["per_channel"]),
                 activations=str(options["activations"]))
    work.unlink(missing_ok=True)
    fp32, mixed = session(src), session(out / "model.onnx")
    x = first_input(data, batch)
    name = fp32.get_inputs()[0].name
    ms = median_latencies_ms([lambda: fp32.run(None, {name: x}),
                              lambda: mixed.run(None, {name: x})], rounds=5, per_round=10)
    return {
        "file": "model.onnx", "format": "onnx",
        "converter": f"onnxruntime {ort_version()} quantize_static (QDQ, "
                     f"{options['activations']} activations, int8 weights"
                     f"{', per channel' if options['per_channel'] else ''}), "
                     "edgebench mixed-precision search",
        "calibration_images": len(images), "calibration_split": "train",
        "search_images": len(held.images), "search_split": "train (held out)",
        "budget_pts": float(options["budget"]), "granularity": options["granularity"],
        "blocks": len(blocks), "kept_blocks": list(result.kept_blocks),
        "kept_float": kept_nodes,
        "fp32_map50_95": round(result.fp32_map, 5), "map50_95": round(result.map50_95, 5),
        "delta_pts": round((result.map50_95 - result.fp32_map) * 100, 3),
        "budget_met": result.budget_met, "evaluations": result.evaluations,
        "sensitivity_pts": result.sensitivity,
        "trace": [asdict(s) for s in result.trace],
        "speed_estimate": {"fp32_ms": round(ms[0], 3), "mixed_ms": round(ms[1], 3),
                           "speedup": round(ms[0] / ms[1], 3),
                           "how": "host, ONNX Runtime CPU, median of 50 interleaved runs"},
    }


def mixed_notes(meta: Mapping[str, Any]) -> tuple[str, ...]:
    if not meta:
        return ()
    notes = list(quantization_notes({k: v for k, v in meta.items() if k != "kept_float"}))
    kept = meta.get("kept_blocks", [])
    notes.append(f"kept float: {', '.join(kept) if kept else 'nothing'} "
                 f"({len(meta.get('kept_float', []))} of the graph's nodes; "
                 f"{meta.get('evaluations')} candidates measured)")
    verdict = "within" if meta.get("budget_met") else "NOT within (best set found kept)"
    notes.append(f"search mAP50-95 {meta.get('map50_95')} vs fp32 {meta.get('fp32_map50_95')}"
                 f" ({meta.get('delta_pts'):+} pt), {verdict} the {meta.get('budget_pts')} pt "
                 f"budget, on {meta.get('search_images')} held-out TRAIN images, not the val "
                 "split of the report's mAP")
    speed = meta.get("speed_estimate") or {}
    if speed:
        notes.append(f"host speed estimate at search time: {speed.get('speedup')}x fp32 "
                     f"({speed.get('mixed_ms')} vs {speed.get('fp32_ms')} ms, ONNX Runtime CPU)")
    return tuple(notes)


@hookimpl
def edgebench_register_compressors(register: Register) -> None:
    register(OnnxMixedPrecision)
