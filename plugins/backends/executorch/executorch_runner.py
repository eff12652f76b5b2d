"""Device-side runner for ExecuTorch. Needs the standard library, numpy, ``executorch`` and
``torch``: ExecuTorch's Python runtime (``executorch.runtime``) imports torch, whose
libraries its pybindings link against, and takes and returns torch tensors (so the memory
figures include torch's libraries).

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness.

The model: a ``.pte`` file, or a directory holding ``model.pte`` and ``edgebench.json`` (what
edgebench's export writes: the input shape and the XNNPACK coverage counted on the lowered
graph at export, reported as ``runtime.delegation``). Threads: the XNNPACK delegate runs on
ExecuTorch's own threadpool (``torch.set_num_threads`` does not reach it); the request's
``threads`` resize it before the program loads (``_unsafe_reset_threadpool``), and the count
reported is the pool's own (``_threadpool_get_thread_count``), its default being what
cpuinfo counts as performance cores. The ops left outside the delegate run on ExecuTorch's
portable kernels, single-threaded.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent


def import_runtime(request):
    try:
        import executorch.extension.pybindings.portable_lib as portable
        from executorch import version
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise agent.RunnerFailure(
            "import", "executorch's Python runtime could not be imported (%s); pip install "
            "executorch (it needs torch)" % agent.first_line(exc)) from None
    return Runtime, portable, version.__version__


def _model_files(model):
    """(the .pte, the edgebench.json next to it or None)."""
    if os.path.isdir(model):
        meta = os.path.join(model, "edgebench.json")
        return os.path.join(model, "model.pte"), meta if os.path.isfile(meta) else None
    return model, None


def load(runtime, request, inputs):
    import numpy as np
    import torch

    Runtime, portable, version = runtime
    threads = request.get("threads")
    if threads:
        portable._unsafe_reset_threadpool(int(threads))  # before any method is loaded
    pte, meta = _model_files(request["model"])
    rt = Runtime.get()
    if not rt.backend_registry.is_available("XnnpackBackend"):
        raise agent.RunnerFailure("load", "this executorch build has no XNNPACK backend "
                                          "(registered: %s)"
                                  % ", ".join(rt.backend_registry.registered_backend_names))
    try:
        method = rt.load_program(pte).load_method("forward")
    except Exception as exc:
        raise agent.RunnerFailure("load", "ExecuTorch could not load %s: %s"
                                  % (os.path.basename(pte), agent.full_message(exc))) from None
    info = method.metadata
    if info.num_inputs() != 1:
        raise agent.RunnerFailure("load", "the program has %d inputs; edgebench runs "
                                          "single-input image models" % info.num_inputs())
    array = agent.single_input(inputs)
    expected = list(info.input_tensor_meta(0).sizes())
    if list(array.shape) != expected:
        raise agent.RunnerFailure("load", "the input has shape %s but the program accepts %s"
                                  % (list(array.shape), expected))
    bound = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def infer():
        return method.execute([bound])

    def predict(x):
        outputs = method.execute([torch.from_numpy(np.ascontiguousarray(x, np.float32))])
        return [o.detach().numpy().astype(np.float32, copy=False) for o in outputs]

    delegated = None
    if meta is not None:
        with open(meta) as fh:
            delegated = json.load(fh).get("delegation")
    used = int(portable._threadpool_get_thread_count())
    return agent.Loaded(
        infer, runtime=("executorch", str(version)), threads=used, predict=predict,
        providers=["XnnpackBackend"], delegation=delegated,
        details={
            "threadpool_threads": used,
            "threads_default": "as requested" if threads else
            "ExecuTorch's default (cpuinfo's performance cores)",
            "delegated_nodes": "%d/%d in %d partitions (counted at export)" % (
                delegated["nodes_delegated"], delegated["nodes_total"],
                delegated["partitions"]) if delegated else "not recorded with this .pte",
            "torch": torch.__version__,
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
