"""Device-side runner for MNN. Needs only the standard library, numpy and the ``mnn`` wheel
(``import MNN``).

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness. It uses MNN's Interpreter/Session API, whose ``getSessionInfo`` reports what
the session really runs with (thread count, backend type), which the Module API does not.

Request options:

- ``backend``: ``CPU`` (the only one edgebench runs; the plugin refuses others).
- ``precision``: MNN's ``BackendConfig::PrecisionMode``, ``normal`` (0), ``high`` (1) or
  ``low`` (2). On the CPU (MNN's ``CPURuntime::onCreate``, source/backend/cpu/CPUBackend.cpp):
  ``low`` selects the fp16 backend (``Arm82Backend``) where the CPU has fp16 arithmetic
  (ARMv8.2+, e.g. a Pi 5's Cortex-A76) and the wheel was built with it; on an ARM CPU
  without it ``low`` stays fp32 but swaps sigmoid for an estimate (``MNNSigmoidLowp``:
  NEON ``vrecpe``). On x86 MNN always runs its AVX2/AVX-512 backend, which is created in
  ``low`` mode whatever is asked, and whose kernels are fp32: the three values give
  bit-identical outputs there (measured on this project's x86 host). ``normal`` and
  ``high`` only differ on GPU backends.
- ``winograd``: ``on`` (MNN's default) lets MNN pick Winograd convolution for 3x3 kernels
  (``Interpreter::WINOGRAD_MEMORY_LEVEL`` 3, its transforms move YOLOv8n's boxes by up to
  0.04 px and scores by 7e-4 against ONNX Runtime, and the pick depends on the thread
  count); ``off`` sets the level to 0, direct convolution only (ConvolutionFloatFactory.cpp:
  level 0 never builds a Winograd convolution), within 3e-4 px and 2e-6.
- ``memory``: ``BackendConfig::MemoryMode``, ``normal`` (0), ``high`` (1), ``low`` (2).
  With a model whose weights were quantized by the converter (``--weightQuantBits``),
  ``low`` makes MNN compute with int8 weights and activations quantized on the fly
  (dynamic quantization, in wheels built with ``MNN_LOW_MEMORY``); otherwise such weights
  are decoded to float32 at load.

Threads: the request's, else MNN's default (``ScheduleConfig::numThread`` = 4). The count
reported is the one the session says it runs with (``THREAD_NUMBER``).
"""

from __future__ import annotations

import os
import platform
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent

PRECISIONS = {"normal": 0, "high": 1, "low": 2}
"""``BackendConfig::PrecisionMode`` values (include/MNN/MNNForwardType.h)."""
MEMORY_MODES = {"normal": 0, "high": 1, "low": 2}
"""``BackendConfig::MemoryMode`` values."""
MNN_DEFAULT_THREADS = 4
"""``ScheduleConfig::numThread``'s default (include/MNN/Interpreter.hpp)."""
WINOGRAD_MEMORY_LEVEL = 3
"""``Interpreter::HintMode`` of the Winograd unit candidates (default 3; 0: no Winograd)."""
SESSION_MEMORY, SESSION_BACKENDS, SESSION_THREADS = 0, 2, 4
"""``Interpreter::SessionInfoCode`` values."""
FORWARD_CPU, FORWARD_CPU_EXTENSION = 0, 13
"""``MNNForwardType`` values of the CPU backends: the generic one, and the extension
(AVX2/AVX-512 on x86; the ARMv8.2 fp16 or bf16 backend on ARM)."""


def import_runtime(request):
    try:
        import MNN
    except ImportError as exc:
        raise agent.RunnerFailure("import", "MNN is not installed: %s" % exc) from None
    return MNN


def _session_int(interpreter, session, code):
    """An int that ``getSessionInfo`` returns: the Python binding hands back the C++ int
    through a float, so its bits are read back as an int."""
    value = interpreter.getSessionInfo(session, code)
    if isinstance(value, int):
        return value
    if value.is_integer():  # a binding that converts the int properly
        return int(value)
    return struct.unpack("=i", struct.pack("=f", value))[0]


def _compute(backend_type, precision):
    """What the session's backend computes in, from its forward type and the CPU."""
    machine = platform.machine().lower()
    arm = machine.startswith(("aarch64", "arm"))
    if backend_type == FORWARD_CPU_EXTENSION and arm and precision == "low":
        return "fp16 (MNN's ARMv8.2 fp16 backend)"
    if backend_type == FORWARD_CPU_EXTENSION and not arm:
        return "fp32 (MNN's AVX2/AVX-512 backend)"
    if backend_type == FORWARD_CPU:
        return "fp32 (MNN's generic CPU backend" + (
            ", approximate sigmoid for precision=low)" if precision == "low" and arm else ")")
    return "unknown (MNN forward type %d)" % backend_type


def load(MNN, request, inputs):
    import numpy as np

    options = request.get("options", {})
    backend = options.get("backend", "CPU")
    if backend != "CPU":
        raise agent.RunnerFailure("load", "MNN backend %r is not supported by edgebench; "
                                          "use CPU" % backend)
    precision = options.get("precision", "normal")
    memory = options.get("memory", "normal")
    for name, value, known in (("precision", precision, PRECISIONS),
                               ("memory", memory, MEMORY_MODES)):
        if value not in known:
            raise agent.RunnerFailure("load", "MNN %s %r is not one of %s"
                                      % (name, value, ", ".join(known)))
    winograd = options.get("winograd", "on")
    threads = request.get("threads")
    config = {"backend": "CPU", "precision": PRECISIONS[precision],
              "memory": MEMORY_MODES[memory]}
    if threads:
        config["numThread"] = int(threads)
    try:
        interpreter = MNN.Interpreter(request["model"])
        if winograd == "off":
            interpreter.setSessionHint(WINOGRAD_MEMORY_LEVEL, 0)
        session = interpreter.createSession(config)
    except Exception as exc:
        raise agent.RunnerFailure("load", "MNN could not load the model: %s"
                                  % agent.full_message(exc)) from None
    array = np.ascontiguousarray(agent.single_input(inputs), dtype=np.float32)
    tensor_in = interpreter.getSessionInput(session)
    expected = list(tensor_in.getShape())
    if expected != list(array.shape):
        if len(expected) != array.ndim or any(d > 0 and d != s
                                              for d, s in zip(expected, array.shape)):
            raise agent.RunnerFailure("load", "the input has shape %s but the model accepts "
                                              "%s" % (list(array.shape), expected))
        interpreter.resizeTensor(tensor_in, tuple(array.shape))  # a dynamic axis
        interpreter.resizeSession(session)
    outputs = sorted(interpreter.getSessionOutputAll(session).items())  # by name: output0..

    def to_mnn(x):
        return MNN.Tensor(tuple(x.shape), MNN.Halide_Type_Float, x,
                          MNN.Tensor_DimensionType_Caffe)

    def run(host_in):
        tensor_in.copyFrom(host_in)
        interpreter.runSession(session)
        results = []
        for _, tensor in outputs:
            shape = tuple(tensor.getShape())
            host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32),
                              MNN.Tensor_DimensionType_Caffe)
            tensor.copyToHostTensor(host)
            results.append(np.array(host.getNumpyData(), dtype=np.float32).reshape(shape))
        return results

    bound = to_mnn(array)

    def infer():
        return run(bound)

    def predict(x):
        return run(to_mnn(np.ascontiguousarray(x, dtype=np.float32)))

    used_threads = _session_int(interpreter, session, SESSION_THREADS)
    backend_type = _session_int(interpreter, session, SESSION_BACKENDS)
    return agent.Loaded(
        infer, runtime=("mnn", MNN.version()), threads=used_threads, predict=predict,
        providers=["CPU"],
        details={
            "api": "Interpreter/Session",
            "backend": "CPU",
            "num_threads": used_threads,
            "threads_default": "as requested" if threads
            else "MNN's default (ScheduleConfig.numThread = %d)" % MNN_DEFAULT_THREADS,
            "precision": precision,
            "memory": memory,
            "winograd": "on (MNN's default: Winograd for 3x3 convolutions where faster)"
            if winograd != "off" else "off (direct convolution only)",
            "forward_type": backend_type,
            "compute": _compute(backend_type, precision),
            "session_memory_mb": round(interpreter.getSessionInfo(session, SESSION_MEMORY),
                                       1),
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
