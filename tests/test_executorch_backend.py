"""The ExecuTorch backend for real: the embedded ``.pt`` exported to a ``.pte`` (torch.export
+ XNNPACK partitioner, one export per session) and run next to ONNX Runtime; the XNNPACK
coverage it reports checked against the ``.pte``'s own instructions (ExecuTorch's
deserializer); the embedded ONNX runs through its committed ``.pt``, any other ``.onnx`` is
skipped with one sentence."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgebench.cli import main
from edgebench.config import ASSETS

pytest.importorskip("executorch")
pytestmark = [pytest.mark.slow, pytest.mark.export]  # the export alone takes 30-70 s


def cases(out: Path) -> dict[str, dict[str, Any]]:
    (report,) = out.glob("*/report.json")
    return {c["case"]["backend"]: c for c in json.loads(report.read_text())["cases"]}


@pytest.fixture(scope="session")
def pt_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run of a copy of the embedded .pt at 320 on ONNX Runtime and ExecuTorch, 30
    embedded images evaluated, 1 thread."""
    tmp = tmp_path_factory.mktemp("executorch")
    pt = tmp / "shapes.pt"
    shutil.copy(ASSETS / "shapes-yolov8n.pt", pt)  # Ultralytics writes next to the .pt
    assert main(["run", "-m", str(pt), "-b", "onnxruntime,executorch", "--imgsz", "320",
                 "--threads", "1", "--images", "30", "-n", "3", "--warmup", "1",
                 "-o", str(tmp / "out")]) == 0
    return cases(tmp / "out")


def test_pt_runs_on_executorch_agreeing_with_pytorch_and_onnxruntime(
        pt_run: dict[str, dict[str, Any]]) -> None:
    et, ort = pt_run["executorch"], pt_run["onnxruntime"]
    assert et["status"] == "ok" and ort["status"] == "ok", (et["reason"], ort["reason"])
    art = et["artifact"]
    assert art["format"] == "pte" and art["input_shape"] == [1, 3, 320, 320]
    assert art["precision"] == "fp32" and "XnnpackPartitioner" in art["converter"]
    assert sorted(p.name for p in Path(art["path"]).iterdir()) == [
        "edgebench.json", "model.pte"]
    fid = et["accuracy"]["fidelity"]
    assert fid["reference"].startswith("PyTorch ")  # the .pt itself, run by PyTorch
    assert fid["within_tolerance"] is True and fid["detection_agreement"] == 1.0
    assert et["accuracy"]["images"] == 30
    assert abs(et["accuracy"]["map50_95"] - ort["accuracy"]["map50_95"]) <= 0.005
    runtime = et["runtime"]
    assert runtime["name"] == "executorch" and runtime["threads"] == 1
    assert runtime["details"]["threadpool_threads"] == "1"


def test_reported_delegation_matches_the_programs_own_instructions(
        pt_run: dict[str, dict[str, Any]]) -> None:
    """Partitions = the .pte's DelegateCall instructions (all XNNPACK); the fallback ops =
    its KernelCall instructions, op by op (ExecuTorch's own .pte deserializer)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    et = pt_run["executorch"]
    found = et["runtime"]["delegation"]
    pte = Path(et["artifact"]["path"]) / "model.pte"
    program: Any = deserialize_pte_binary(pte.read_bytes())
    plan = getattr(program, "program", program).execution_plan[0]
    instructions = [i.instr_args for i in plan.chains[0].instructions]
    calls = [i for i in instructions if type(i).__name__ == "DelegateCall"]
    kernels = Counter(plan.operators[i.op_index].name.replace("::", ".")
                      for i in instructions if type(i).__name__ == "KernelCall")
    assert {plan.delegates[c.delegate_index].id for c in calls} == {"XnnpackBackend"}
    assert found["delegate"] == "XNNPACK" and found["partitions"] == len(calls)
    assert Counter({op.rsplit(".", 1)[0]: n for op, n in found["fallback_ops"].items()}) \
        == kernels
    assert found["nodes_total"] == found["nodes_delegated"] + sum(kernels.values())
    assert found["nodes_delegated"] > sum(kernels.values())  # most of the graph


def test_embedded_onnx_runs_from_its_committed_pt(
        pt_run: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The default model (the committed ONNX) reaches ExecuTorch through its committed .pt,
    exported at the ONNX's size (here: the fixture's cached export, no second one)."""
    assert main(["run", "-b", "executorch", "--images", "10", "-n", "3", "--warmup", "1",
                 "-o", str(tmp_path)]) == 0
    case = cases(tmp_path)["executorch"]
    assert case["status"] == "ok", case["reason"]
    assert case["artifact"]["sha256"] == pt_run["executorch"]["artifact"]["sha256"]
    fid = case["accuracy"]["fidelity"]
    assert fid["reference"].startswith("onnxruntime ")  # the ONNX's own reference
    assert fid["within_tolerance"] is True and fid["detection_agreement"] == 1.0


def test_other_onnx_is_skipped_with_one_sentence(
        tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    main(["run", "-m", str(make_onnx()), "-b", "executorch", "--no-accuracy", "-n", "1",
          "--warmup", "0", "-o", str(tmp_path)])
    case = cases(tmp_path)["executorch"]
    assert case["status"] == "skipped"
    assert case["reason"] == ("ExecuTorch cannot run an .onnx (there is no ONNX to "
                              "ExecuTorch converter); pass the .pt it came from.")
