"""Shared fixtures: an isolated cache, tiny real ONNX models, the embedded model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edgebench.config import DEFAULT_MODEL

pytest_plugins = ("pytester", "labgrid_lab")  # labgrid_lab: the labgrid test lab


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session gets its own edgebench cache (datasets, exports)."""
    root = tmp_path_factory.mktemp("edgebench-cache")
    old = os.environ.get("EDGEBENCH_CACHE")
    os.environ["EDGEBENCH_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("EDGEBENCH_CACHE", None)
    else:
        os.environ["EDGEBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def embedded_onnx() -> Path:
    assert DEFAULT_MODEL.is_file(), f"the embedded model {DEFAULT_MODEL} is missing"
    return DEFAULT_MODEL


def _save(model, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """Build a small real ONNX model: ``kind`` is conv (default), classifier, nan, non_image
    or bad_op."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def build(kind: str = "conv", size: int = 64, name: str | None = None) -> Path:
        rng = np.random.default_rng(0)
        x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
        opset = [helper.make_opsetid("", 17)]
        if kind == "non_image":
            x = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 16])
            w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
            graph = helper.make_graph([helper.make_node("MatMul", ["features", "w"], ["y"])],
                                      "non_image", [x], [y], [w])
        elif kind == "bad_op":
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, size, size])
            node = helper.make_node("NoSuchOp", ["images"], ["y"], domain="com.example.none")
            graph = helper.make_graph([node], "bad_op", [x], [y])
            opset.append(helper.make_opsetid("com.example.none", 1))
            model = helper.make_model(graph, opset_imports=opset)
            path = tmp_path / (name or "bad_op.onnx")
            onnx.save(model, str(path))  # not checkable: the op is unknown on purpose
            return path
        elif kind == "classifier":
            w = numpy_helper.from_array(
                rng.standard_normal((10, 3, 1, 1)).astype(np.float32), "w")
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
            nodes = [helper.make_node("Conv", ["images", "w"], ["c"]),
                     helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                     helper.make_node("Flatten", ["p"], ["y"])]
            graph = helper.make_graph(nodes, "classifier", [x], [y], [w])
        elif kind == "nan":
            zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, size, size])
            nodes = [helper.make_node("Mul", ["images", "zero"], ["z"]),
                     helper.make_node("Div", ["z", "zero"], ["y"])]
            graph = helper.make_graph(nodes, "nan", [x], [y], [zero])
        else:
            w = numpy_helper.from_array(
                rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, size, size])
            node = helper.make_node("Conv", ["images", "w"], ["y"], pads=[1, 1, 1, 1])
            graph = helper.make_graph([node], "conv", [x], [y], [w])
        model = helper.make_model(graph, opset_imports=opset)
        model.ir_version = 8
        return _save(model, tmp_path / (name or f"{kind}.onnx"))

    return build
