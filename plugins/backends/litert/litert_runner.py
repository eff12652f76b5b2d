"""Device-side runner for LiteRT (TensorFlow Lite). Needs the standard library, numpy and one
of ``ai-edge-litert`` (works with numpy 2) or ``tflite-runtime`` (2.14 needs numpy < 2; what
many Raspberry Pi images have): the first importable one, or the one the request names.

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness.

Request options: ``runtime`` (``auto``, ``ai-edge-litert``, ``tflite-runtime``), ``xnnpack``
(true: the XNNPACK delegate LiteRT applies by default; false: the built-in kernels only).
Threads: the request's, else every core the process may use (the interpreter's own default
is 1 thread). The host always sends NCHW float32; an NHWC model (onnx2tf exports) gets it
transposed, an int8/int16 model gets it quantized (and its outputs dequantized), as
Ultralytics does, an fp16-input model gets it as float16 (its fp16 outputs go back as float32).
"""

from __future__ import annotations

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent

RUNTIMES = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"))


def import_runtime(request):
    wanted = request.get("options", {}).get("runtime", "auto")
    problems = []
    for dist, package in RUNTIMES:
        if wanted not in ("auto", dist):
            continue
        try:
            module = importlib.import_module(package + ".interpreter")
        except Exception as exc:  # ImportError, or tflite-runtime 2.14 built for numpy 1
            problems.append("%s: %s" % (dist, agent.first_line(exc)))
            continue
        top = sys.modules[package]
        version = getattr(top, "__version__", None) or agent._module_version(package)
        return dist, str(version), module
    raise agent.RunnerFailure(
        "import", "no LiteRT runtime could be imported (%s); install one with: "
        "%s -m pip install ai-edge-litert (numpy 2) or %s -m pip install tflite-runtime "
        "(numpy < 2, Python 3.8-3.11)" % ("; ".join(problems) or "none requested",
                                         sys.executable, sys.executable))


def _layout(model_shape, array_shape):
    """``"nchw"`` or ``"nhwc"``: how the model takes the host's NCHW tensor, or None."""
    n, c, h, w = array_shape
    if list(model_shape) == [n, c, h, w]:
        return "nchw"
    if list(model_shape) == [n, h, w, c]:
        return "nhwc"
    return None


def _quantize(np, array, details):
    if details["dtype"] in (np.int8, np.uint8, np.int16):
        scale, zero = details["quantization"]
        info = np.iinfo(details["dtype"])
        return np.clip(np.round(array / scale + zero), info.min, info.max).astype(
            details["dtype"])
    return array.astype(details["dtype"], copy=False)


def delegation(interpreter, name):
    """Nodes the delegate took, nodes left to the built-in kernels (by op), partitions.

    The interpreter lists the model's original nodes followed by one ``DELEGATE`` node per
    delegated partition; a partition's nodes are those reached walking back from its
    outputs to its inputs.
    """
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {}
    for op in originals:
        for t in op["outputs"]:
            producer[int(t)] = op
    covered = set()
    for node in delegates:
        boundary = set(int(t) for t in node["inputs"])
        stack = [int(t) for t in node["outputs"]]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary:
                continue
            seen.add(t)
            op = producer.get(t)
            if op is None or op["index"] in covered:
                continue
            covered.add(op["index"])
            stack.extend(int(x) for x in op["inputs"] if int(x) >= 0)
    fallback: dict[str, int] = {}
    for op in originals:
        if op["index"] not in covered:
            fallback[op["op_name"]] = fallback.get(op["op_name"], 0) + 1
    return {"delegate": name, "nodes_delegated": len(covered), "nodes_total": len(originals),
            "partitions": len(delegates), "fallback_ops": fallback}


def load(runtime, request, inputs):
    import numpy as np

    dist, version, litert = runtime
    options = request.get("options", {})
    threads = int(request.get("threads") or agent.usable_cores())
    xnnpack = bool(options.get("xnnpack", True))
    resolver = (litert.OpResolverType.AUTO if xnnpack
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    model = request["model"]
    try:
        interpreter = litert.Interpreter(model_path=model, num_threads=threads,
                                         experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except Exception as exc:
        raise agent.RunnerFailure(
            "load", "LiteRT could not load %s: %s" % (os.path.basename(model),
                                                      agent.full_message(exc))) from None
    input_details = interpreter.get_input_details()
    if len(input_details) != 1:
        raise agent.RunnerFailure("load", "the model has %d inputs; edgebench runs "
                                          "single-input image models" % len(input_details))
    (spec,) = input_details
    array = agent.single_input(inputs)
    layout = _layout(spec["shape"], array.shape) if array.ndim == 4 else None
    if layout is None:
        raise agent.RunnerFailure(
            "load", "input %r has shape %s but the model accepts %s"
            % (spec["name"], list(array.shape), [int(d) for d in spec["shape"]]))
    outputs = interpreter.get_output_details()

    def feed(x):
        x = x.transpose(0, 2, 3, 1) if layout == "nhwc" else x
        return np.ascontiguousarray(_quantize(np, x, spec))

    def fetch():
        result = []
        for out in outputs:
            y = interpreter.get_tensor(out["index"])
            if out["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            result.append(y)
        return result

    def fetch_float32():  # fp16 outputs as float32, for decoding
        return [y.astype(np.float32) if y.dtype.kind == "f" and y.dtype.itemsize != 4 else y
                for y in fetch()]

    bound = feed(array)
    index = spec["index"]

    def infer():
        interpreter.set_tensor(index, bound)
        interpreter.invoke()
        return fetch()

    def predict(x):
        interpreter.set_tensor(index, feed(x))
        interpreter.invoke()
        return fetch_float32()

    delegated = None
    if xnnpack:
        try:
            delegated = delegation(interpreter, "XNNPACK")
        except Exception:  # a runtime without the (private) op listing: not measurable
            delegated = None
    return agent.Loaded(
        infer, runtime=(dist, version), threads=threads, predict=predict,
        providers=["XNNPACK"] if xnnpack else ["builtin kernels"],
        delegation=delegated,
        details={
            "num_threads": threads,
            "threads_default": "every usable core (the interpreter's own default is 1)"
            if not request.get("threads") else "as requested",
            "xnnpack": "on" if xnnpack else "off",
            "input_layout": layout.upper(),
            "input_dtype": np.dtype(spec["dtype"]).name,
            "delegated_nodes": "%d/%d in %d partitions" % (
                delegated["nodes_delegated"], delegated["nodes_total"],
                delegated["partitions"]) if delegated else "n/a",
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
