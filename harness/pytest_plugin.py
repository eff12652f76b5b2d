"""pytest plugin: write benchmark tests that run a case on a device and assert on it.

Installed with edgebench (``pytest11`` entry point). In a test::

    def test_int8_is_fast_enough(edgebench_run):
        result = edgebench_run(model="model.onnx", backend="onnxruntime", iterations=200)
        assert result.latency.p50_ms < 50
        assert result.accuracy.map50_95 > 0.75

``--edgebench-device URI`` chooses the device for every such test (default ``local``);
each run's report is kept under pytest's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .records import CaseResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgebench")
    group.addoption("--edgebench-device", default="local",
                    help="device URI for edgebench_run (default: local)")


@pytest.fixture
def edgebench_run(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> Callable[..., CaseResult]:
    """Run one case (model x backend on the chosen device) and return its result."""

    def run(*, model: str | Path | None = None, backend: str = "onnxruntime",
            device: str | None = None, **options: Any) -> CaseResult:
        from .config import load_matrix
        from .plugin_manager import collect_registry, make_plugin_manager
        from .runner import Session

        flags = {"models": (Path(model),) if model else None, "backends": (backend,),
                 "devices": (device or request.config.getoption("--edgebench-device"),),
                 "output": tmp_path / "edgebench", **options}
        matrix = load_matrix(flags)
        pm = make_plugin_manager()
        session = Session(matrix, pm, collect_registry(pm), retry=matrix.retry)
        try:
            out = tmp_path / "edgebench" / session.run_id
            out.mkdir(parents=True, exist_ok=True)
            report = session.run(out)
        finally:
            session.close()
        (result,) = report.cases
        return result

    return run
