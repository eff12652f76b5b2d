"""Device-side runner for ONNX Runtime. Needs only the standard library, numpy and onnxruntime.

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent


def import_runtime(request):
    try:
        import onnxruntime
    except ImportError as exc:
        raise agent.RunnerFailure("import", "onnxruntime is not installed: %s" % exc) from None
    return onnxruntime


ORT_DTYPES = {"tensor(float16)": "float16", "tensor(float)": "float32",
              "tensor(double)": "float64"}
"""ONNX Runtime's input type names -> numpy's: the host sends float32, the runner feeds the
model's own float type (an fp16-I/O model takes float16)."""


def as_float32(outputs):
    """Float outputs as float32 (an fp16-I/O model returns float16), for decoding."""
    return [o.astype("float32") if o.dtype.kind == "f" and o.dtype.itemsize != 4 else o
            for o in outputs]


def default_threads(asked, before, after):
    """(threads the session computes with, how that is known). Asked for: that many. ONNX
    Runtime's default (``intra_op_num_threads`` 0: one per physical core) is not readable
    from Python; its intra-op pool runs the caller's thread plus workers it starts while the
    session is built, so the pool is the threads the process gained then, plus one
    (``/proc/self/task``); None where that cannot be counted."""
    if asked:
        return int(asked), "as requested"
    if before is None or after is None or after < before:
        return None, "ONNX Runtime's default (one per physical core), not countable here"
    return after - before + 1, ("ONNX Runtime's default: its intra-op pool, counted as the "
                                "threads the session started plus the caller's")


def load(ort, request, inputs):
    options = request.get("options", {})
    so = ort.SessionOptions()
    threads = request.get("threads")
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    spinning = options.get("spinning", True)
    # ORT's intra-op workers spin between parallel sections unless this is "0".
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = options.get("graph_optimization_level", "all")
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    providers = options.get("providers") or ["CPUExecutionProvider"]
    before = agent.os_threads()
    try:
        session = ort.InferenceSession(request["model"], sess_options=so, providers=providers)
    except Exception as exc:
        raise agent.RunnerFailure(
            "load", "ONNX Runtime could not load the model: %s" % agent.full_message(exc)
        ) from None
    feeds = {}
    for spec in session.get_inputs():
        if spec.name not in inputs:
            raise agent.RunnerFailure(
                "load", "the model expects input %r, the request has %s"
                % (spec.name, sorted(inputs)))
        array = inputs[spec.name]
        expected = spec.shape
        if len(expected) != array.ndim or any(
            isinstance(d, int) and d != s for d, s in zip(expected, array.shape)
        ):
            raise agent.RunnerFailure(
                "load", "input %r has shape %s but the model accepts %s"
                % (spec.name, list(array.shape), expected))
        feeds[spec.name] = array.astype(ORT_DTYPES.get(spec.type, array.dtype), copy=False)
    used, how = default_threads(threads, before, agent.os_threads())
    output_names = [o.name for o in session.get_outputs()]
    (input_name,) = feeds
    input_dtype = feeds[input_name].dtype

    def infer():
        return session.run(output_names, feeds)

    def predict(array):
        return as_float32(session.run(output_names, {input_name: array.astype(input_dtype)}))

    return agent.Loaded(
        infer,
        runtime=("onnxruntime", ort.__version__),
        threads=used,
        providers=session.get_providers(),
        predict=predict,
        details={
            "intra_op_num_threads": so.intra_op_num_threads or "runtime default",
            "threads_default": how,
            "graph_optimization_level": level,
            "intra_op_spinning": "on" if spinning else "off",
            "input_dtype": str(input_dtype),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
