"""Running a backend's device-side runner the way the harness does, for the runner tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.fingerprint import AGENT_FILES


def run_device_runner(backend: Any, tmp_path: Path, model: Path,
                      inputs: dict[str, np.ndarray], *, warmup_iterations: int = 2,
                      iterations: int = 10, **request: object) -> tuple[int, dict[str, Any]]:
    """Lay out a device work dir as the harness does (agent + runner + inputs.npz + request)
    and run the runner in its own isolated interpreter; returns (exit code, result JSON)."""
    work = tmp_path / "device"
    work.mkdir(exist_ok=True)
    for script in AGENT_FILES:  # the agent and the runner protocol it imports
        shutil.copy(script, work / script.name)
    runner = work / backend.runner().name
    shutil.copy(backend.runner(), runner)
    np.savez(work / "inputs.npz", **inputs)  # type: ignore[arg-type]
    req = {"model": str(model), "inputs": str(work / "inputs.npz"),
           "warmup_iterations": warmup_iterations, "iterations": iterations, **request}
    (work / "request.json").write_text(json.dumps(req))
    done = subprocess.run([sys.executable, "-I", str(runner), "--request",
                           str(work / "request.json"), "--out", str(work / "result.json")],
                          capture_output=True, text=True, timeout=300, cwd=work)
    return done.returncode, json.loads((work / "result.json").read_text())


def default_backends() -> set[str]:
    """The backends a run without ``-b`` picks on this host (every registered backend whose
    runtime imports here), read through the real plugin manager: the tests of the default run
    follow what is installed instead of naming a fixed list."""
    from edgebench.plugin_manager import PluginKind, collect_registry, make_plugin_manager

    registry = collect_registry(make_plugin_manager())
    return {name for name, reg in registry.of(PluginKind.BACKEND).items()
            if reg.unavailable_reason() is None}
