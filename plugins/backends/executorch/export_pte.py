"""Export worker: ``python -m edgebench.plugins.backends.executorch.export_pte --weights W
--out DIR [--imgsz N|H,W]``.

Makes an ExecuTorch program from an Ultralytics ``.pt`` the way Ultralytics' own
``format='executorch'`` export does (``ultralytics/utils/export/executorch.py``): the model
prepared by Ultralytics' ``Exporter`` (fused, fp32, detection head in export mode, so the one
output is ``(1, 4 + classes, anchors)`` as in the ONNX export), ``torch.export.export`` at a
static batch-1 input of ``imgsz`` (default: the checkpoint's training size), lowered with
``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` and
``to_executorch()``. Runs in its own process, so torch never loads into the harness.

Writes into ``--out``: ``model_executorch/model.pte``, ``model_executorch/edgebench.json``
(``{"input_shape": [1, 3, H, W], "delegation": ...}``, see :func:`delegation`) and
``artifact.json`` (:func:`edgebench.pipeline.cached_export`'s contract).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgebench.input_size import ImgSz, parse_imgsz
from edgebench.ultralytics_export import load_model, model_gflops

MODEL_DIR = "model_executorch"
"""The artifact: a directory holding ``model.pte`` and ``edgebench.json``."""
NO_KERNEL = ("getitem",)
"""Graph nodes that only pick one output of a multi-output node (a delegate call, a split):
they run no kernel, so they count neither as delegated nor as fallback."""


def delegation(graph_module: Any) -> dict[str, Any]:
    """What the XNNPACK partitioner took in a lowered graph (the ``EdgeProgramManager``'s
    ``exported_program().graph_module``), counted as ExecuTorch's own
    ``executorch.devtools.backend_debug.get_delegation_info`` counts it (every
    ``call_function`` node inside each lowered module is delegated, every other one at the
    top level is not), without the ``getitem`` nodes (:data:`NO_KERNEL`).

    Returns ``{"delegate": "XNNPACK", "nodes_delegated": n, "nodes_total": n,
    "partitions": n, "fallback_ops": {"aten.op.overload": count}}`` (the shape of
    :class:`edgebench.records.Delegation`); fallback ops run on ExecuTorch's portable
    kernels, single-threaded.
    """
    delegated = 0
    partitions = 0
    fallback: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            partitions += 1
            lowered = getattr(graph_module, node.name).original_module
            delegated += sum(1 for n in lowered.graph.nodes
                             if n.op == "call_function" and _op_name(n) not in NO_KERNEL)
        elif node.op == "call_function":
            name = _op_name(node)
            if name not in NO_KERNEL and not node.name.startswith("executorch_call_delegate"):
                fallback[name] += 1
    return {"delegate": "XNNPACK", "nodes_delegated": delegated,
            "nodes_total": delegated + sum(fallback.values()), "partitions": partitions,
            "fallback_ops": dict(sorted(fallback.items()))}


def _op_name(node: Any) -> str:
    """``aten.convolution.default`` for an edge op, ``getitem`` for ``operator.getitem``."""
    target = node.target
    name = getattr(target, "__name__", None) or getattr(target, "_name", None) or str(target)
    return str(name).replace("::", ".")


def export(weights: Path, out: Path, imgsz: ImgSz | None) -> None:
    """Write the ``.pte`` directory and ``artifact.json`` into ``out`` (see the module)."""
    # first: load_model turns on safe checkpoint loading, which must precede any import of
    # Ultralytics (ULTRALYTICS_SAFE_LOAD is read at import): a booby-trapped .pt runs nothing
    model, size = load_model(weights, imgsz)
    import torch
    from ultralytics.engine.exporter import Exporter

    gflops = model_gflops(model, list(size))
    target = out / MODEL_DIR
    target.mkdir()
    found: dict[str, Any] = {}

    class PteExporter(Exporter):  # type: ignore[misc]
        """Ultralytics' Exporter for format='executorch' (its model preparation), with the
        lowering done here so that the partitioner's coverage can be counted."""

        def export_executorch(self, prefix: str = "") -> str:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )
            from executorch.exir import to_edge_transform_and_lower

            exported = torch.export.export(self.model, (self.im,))
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            found["delegation"] = delegation(edge.exported_program().graph_module)
            (target / "model.pte").write_bytes(edge.to_executorch().buffer)
            found["outputs"] = self.output_shape
            return str(target / "model.pte")

    staged = out / "source.pt"
    shutil.copy2(weights, staged)  # Ultralytics may write next to the weights
    from ultralytics import YOLO  # type: ignore[attr-defined]

    yolo = YOLO(str(staged), task="detect")
    args = {**yolo.overrides, "format": "executorch", "imgsz": list(size), "batch": 1,
            "dynamic": False, "data": None, "device": "cpu", "verbose": False,
            "mode": "export"}
    started = time.perf_counter()
    net: Any = yolo.model  # a DetectionModel once loaded (typed str | None)
    PteExporter(overrides=args, _callbacks=yolo.callbacks)(model=net)
    seconds = round(time.perf_counter() - started, 1)
    staged.unlink()
    (target / "edgebench.json").write_text(json.dumps({
        "input_shape": [1, 3, *size], "output_shapes": found["outputs"],
        "delegation": found["delegation"], "export_seconds": seconds}))
    (out / "artifact.json").write_text(json.dumps({
        "file": MODEL_DIR, "format": "pte", "imgsz": list(size), "gflops": gflops,
        "input_name": "x", "delegation": found["delegation"], "export_seconds": seconds,
        "converter": CONVERTER.format(**_versions())}))


CONVERTER = ("torch.export + ExecuTorch {executorch} to_edge_transform_and_lower "
             "(XnnpackPartitioner) + to_executorch, the model prepared by Ultralytics "
             "{ultralytics}'s Exporter (format='executorch'), torch {torch}")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("executorch", "ultralytics", "torch"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "?"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--imgsz", type=parse_imgsz, help="N or H,W")
    args = parser.parse_args(argv)
    export(args.weights, args.out, args.imgsz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
