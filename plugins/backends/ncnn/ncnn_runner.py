"""Device-side runner for ncnn. Needs only the standard library, numpy and the ``ncnn`` wheel.

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness. The model is a directory with one ``.param`` and its ``.bin`` (and optionally
``edgebench.json`` with the input shape the model was exported for: ncnn itself does not
check the input size, so the runner does; and the fp16 flags an ``fp16`` compression step
turned on, applied on top of the request's options).

Request options: ``fp16_storage``, ``fp16_arithmetic``, ``packing`` (booleans) and ``vulkan``
(``auto``: the first Vulkan GPU when there is one, CPU otherwise; ``on``; ``off``);
``wait_policy``: ``passive`` / ``active`` set ``OMP_WAIT_POLICY`` before ncnn loads its
OpenMP, ``runtime`` leaves it as the environment has it. Threads: the request's, else ncnn's
default (its count of big physical cores).
"""

from __future__ import annotations

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent

WAIT_POLICIES = {"passive": "PASSIVE", "active": "ACTIVE"}


def import_runtime(request):
    # libgomp (the wheel's OpenMP) reads its wait policy once, when ncnn loads it: idle
    # workers spinning ("active", and libgomp's default: a spin of ~300k iterations before
    # sleeping) hold cores that a busy machine's other processes then lack, and the next
    # parallel layer waits for a preempted worker. ncnn's own openmp_blocktime only reaches
    # LLVM's OpenMP (kmp_set_blocktime), not libgomp.
    policy = request.get("options", {}).get("wait_policy", "runtime")
    if policy in WAIT_POLICIES:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICIES[policy]
    try:
        import ncnn
    except ImportError as exc:
        raise agent.RunnerFailure("import", "ncnn is not installed: %s" % exc) from None
    return ncnn


def model_files(path):
    """(param, bin, its ``edgebench.json``: ``input_shape``, and ``fp16_storage`` /
    ``fp16_arithmetic`` that a compression step turned on) of a model directory or
    ``.param`` file."""
    if os.path.isdir(path):
        params = sorted(glob.glob(os.path.join(path, "*.param")))
        if len(params) != 1:
            raise agent.RunnerFailure(
                "load", "the ncnn model directory %s holds %d .param files; it needs exactly "
                "one" % (os.path.basename(path.rstrip("/")), len(params)))
        param = params[0]
    else:
        param = path
    weights = param[:-len(".param")] + ".bin" if param.endswith(".param") else param + ".bin"
    if not os.path.isfile(weights):
        raise agent.RunnerFailure(
            "load", "%s has no weights: %s is not next to it (ncnn needs both files)"
            % (os.path.basename(param), os.path.basename(weights)))
    declared = {}
    meta = os.path.join(os.path.dirname(param), "edgebench.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            declared = json.load(f)
    return param, weights, declared


def _vulkan(ncnn, mode):
    """(use it, what to report)."""
    if mode == "off":
        return False, "off (requested)"
    count = ncnn.get_gpu_count()
    if count == 0:
        if mode == "on":
            raise agent.RunnerFailure("load", "vulkan=on but ncnn finds no Vulkan GPU here")
        return False, "off: no Vulkan GPU found"
    name = ncnn.get_gpu_info(0).device_name()
    return True, "on: %s" % name


def load(ncnn, request, inputs):
    import numpy as np

    options = request.get("options", {})
    param, weights, model_meta = model_files(request["model"])
    declared = model_meta.get("input_shape")
    net = ncnn.Net()
    opt = net.opt
    if request.get("threads"):
        opt.num_threads = int(request["threads"])
    # the case's options, or what the model's fp16 step turned on
    fp16_storage = bool(options.get("fp16_storage") or model_meta.get("fp16_storage"))
    fp16_arithmetic = bool(options.get("fp16_arithmetic")
                           or model_meta.get("fp16_arithmetic"))
    opt.use_fp16_storage = fp16_storage
    opt.use_fp16_packed = fp16_storage
    opt.use_fp16_arithmetic = fp16_arithmetic
    opt.use_bf16_storage = False
    opt.use_packing_layout = bool(options.get("packing", True))
    use_gpu, vulkan = _vulkan(ncnn, options.get("vulkan", "auto"))
    opt.use_vulkan_compute = use_gpu
    if use_gpu:
        net.set_vulkan_device(0)
    if net.load_param(param) != 0:
        raise agent.RunnerFailure("load", "ncnn could not parse %s (not an ncnn .param file, "
                                          "or a layer this ncnn lacks)" % os.path.basename(param))
    if net.load_model(weights) != 0:
        raise agent.RunnerFailure("load", "ncnn could not read the weights %s (truncated, or "
                                          "not the .bin of this .param)"
                                  % os.path.basename(weights))
    input_names = list(net.input_names())
    if len(input_names) != 1:
        raise agent.RunnerFailure("load", "the model has %d inputs; edgebench runs "
                                          "single-input image models" % len(input_names))
    array = agent.single_input(inputs)
    if declared and list(array.shape) != list(declared):
        raise agent.RunnerFailure("load", "input %r has shape %s but the model accepts %s"
                                  % (input_names[0], list(array.shape), list(declared)))
    if array.ndim != 4 or array.shape[0] != 1:
        raise agent.RunnerFailure("load", "input %r has shape %s; the ncnn runner takes one "
                                          "(1, C, H, W) image" % (input_names[0],
                                                                  list(array.shape)))
    in_name = input_names[0]
    out_names = sorted(net.output_names())  # pnnx names them out0, out1, ...

    def run(chw):
        with net.create_extractor() as ex:
            ex.input(in_name, ncnn.Mat(chw))
            outs = []
            for name in out_names:
                code, mat = ex.extract(name)
                if code != 0:
                    raise agent.RunnerFailure("inference", "ncnn could not compute %r (code %d)"
                                              % (name, code))
                outs.append(np.expand_dims(np.array(mat), 0))  # ncnn drops the batch axis
            return outs

    bound = np.ascontiguousarray(array[0])

    def infer():
        return run(bound)

    def predict(x):
        return run(np.ascontiguousarray(x[0], dtype=np.float32))

    return agent.Loaded(
        infer, runtime=("ncnn", ncnn.__version__), threads=opt.num_threads, predict=predict,
        providers=["vulkan"] if use_gpu else ["cpu"],
        details={
            "num_threads": opt.num_threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "libgomp's default (spins)"),
            "threads_default": "as requested" if request.get("threads")
            else "ncnn's default (big physical cores)",
            "vulkan": vulkan,
            "fp16_storage": "on" if fp16_storage else "off",
            "fp16_arithmetic": "on" if fp16_arithmetic else "off",
            "packing_layout": "on" if opt.use_packing_layout else "off",
            "input_shape_check": "against %s" % list(declared) if declared
            else "none (the model declares no input size)",
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
