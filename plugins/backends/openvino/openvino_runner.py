"""Device-side runner for OpenVINO. Needs only the standard library, numpy and ``openvino``
(2024.6 or later).

Copied to the device next to ``edgebench_agent.py`` and run as a script; never imported by
the harness. The model is an ``.onnx`` file (OpenVINO reads ONNX directly) or OpenVINO IR:
an ``.xml`` with its ``.bin``, or a directory holding exactly one ``.xml`` (Ultralytics'
``<stem>_openvino_model/``).

Request options (all set explicitly, then read back from the compiled model and reported):

- ``device``: an OpenVINO device name (``CPU``; ``GPU``, ``NPU`` where their plugins and
  drivers are installed); one that ``Core().available_devices`` does not list fails with
  that list;
- ``inference_precision``: ``f32``, ``bf16`` or ``f16`` (``INFERENCE_PRECISION_HINT``).
  Always set, since OpenVINO's own default is bf16 on CPUs with AVX512-BF16 or AMX and f16
  on ARM CPUs with fp16 arithmetic. One the device's ``OPTIMIZATION_CAPABILITIES`` does not
  list fails with one sentence (the CPU plugin would silently pick another: f16 on an
  AVX512-BF16 x86 CPU compiles as bf16), and so does a compiled precision that is not the
  one asked for;
- ``performance_hint``: ``latency`` or ``throughput`` (``PERFORMANCE_HINT``). edgebench
  times one synchronous request, so ``throughput`` shows the latency of one request under
  the stream layout OpenVINO makes for parallel requests;
- ``num_streams``: ``0`` lets the hint choose (1 for ``latency``), else ``NUM_STREAMS``.

Threads: the request's (``INFERENCE_NUM_THREADS``, shared by the streams: one request runs
on ``threads_per_stream`` of them), else OpenVINO's default for the hint. OpenVINO uses at
most the cores the process may run on; a compiled thread count other than the one asked for
fails the case rather than being reported under the wrong label.
A dynamic-shape model is reshaped to the timing input's shape before compiling, so it runs
static as an exported one does.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import edgebench_agent as agent

INSTALL = "pip install 'openvino>=2024.6'"
PRECISIONS = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
"""``inference_precision`` -> the ``OPTIMIZATION_CAPABILITIES`` entry that allows it."""
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


def import_runtime(request):
    try:
        import openvino
    except ImportError as exc:
        raise agent.RunnerFailure(
            "import", "openvino is not installed (%s): %s" % (agent.first_line(exc), INSTALL)
        ) from None
    if not hasattr(openvino, "Core"):
        raise agent.RunnerFailure(
            "import", "openvino %s is too old for this runner: %s"
            % (getattr(openvino, "__version__", "?"), INSTALL))
    return openvino


def ov_error(exc):
    """OpenVINO's message, whole: its errors start with lines naming the C++ source
    ("Exception from src/.../core.cpp:117:") and the cause is often on a later line
    ("Data batch channel count (3) does not match filter input channel count (5)"); the
    host shows the key line in its tables and keeps all of it in report.json."""
    return agent.full_message(exc)


def model_file(path):
    """The file to read: the ``.onnx`` or ``.xml`` itself, or the one ``.xml`` of an IR
    directory (its ``.bin`` next to it)."""
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.xml")))
        if len(found) != 1:
            raise agent.RunnerFailure(
                "load", "the OpenVINO model directory %s holds %d .xml files; it needs exactly "
                "one (with its .bin)" % (os.path.basename(path.rstrip("/")), len(found)))
        path = found[0]
    if path.endswith(".xml") and not os.path.isfile(path[:-4] + ".bin"):
        raise agent.RunnerFailure(
            "load", "%s has no weights: %s is not next to it (OpenVINO IR needs both files)"
            % (os.path.basename(path), os.path.basename(path[:-4] + ".bin")))
    return path


def check_device(core, device):
    """The device name if ``core`` offers it (``GPU`` matches ``GPU.0``), else a failure
    listing what it offers."""
    available = list(core.available_devices)
    if device in available or any(d.startswith(device + ".") for d in available):
        return available
    raise agent.RunnerFailure(
        "load", "OpenVINO has no device %r here; it offers %s (the device option)"
        % (device, ", ".join(available) or "none"))


def check_precision(core, device, precision):
    """``OPTIMIZATION_CAPABILITIES`` of ``device``; a failure when ``precision`` is not one."""
    try:
        capabilities = [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    except Exception as exc:
        raise agent.RunnerFailure(
            "load", "OpenVINO could not read the capabilities of %s: %s"
            % (device, ov_error(exc))) from None
    if PRECISIONS[precision] not in capabilities:
        raise agent.RunnerFailure(
            "load", "OpenVINO's %s here cannot compute in %s (its OPTIMIZATION_CAPABILITIES are "
            "%s); use inference_precision=%s" % (
                device, precision, ", ".join(capabilities),
                " or ".join(p for p, cap in sorted(PRECISIONS.items()) if cap in capabilities)
                or "f32"))
    return capabilities


def static_model(ov, model, array):
    """``model`` with its input fixed to ``array``'s shape (reshaped when dynamic); a failure
    when a static input has another shape. Returns (model, whether it was reshaped)."""
    if len(model.inputs) != 1:
        raise agent.RunnerFailure("load", "the model has %d inputs; edgebench runs "
                                          "single-input image models" % len(model.inputs))
    port = model.inputs[0]
    shape = port.get_partial_shape()
    name = port.get_any_name() if port.get_names() else "input 0"
    if shape.is_dynamic:
        if shape.rank.is_static and shape.rank.get_length() != array.ndim:
            raise agent.RunnerFailure(
                "load", "input %r has shape %s but the model accepts %s"
                % (name, list(array.shape), shape))
        model.reshape({port: ov.PartialShape(list(array.shape))})
        return model, True
    expected = [int(d) for d in shape.to_shape()]
    if expected != list(array.shape):
        raise agent.RunnerFailure(
            "load", "input %r has shape %s but the model accepts %s"
            % (name, list(array.shape), expected))
    return model, False


def as_int(value):
    """A property read back as an int (``NUM_STREAMS`` may be an object), else None."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def load(ov, request, inputs):
    import numpy as np

    options = request.get("options", {})
    device = str(options.get("device", "CPU"))
    precision = str(options.get("inference_precision", "f32"))
    hint = str(options.get("performance_hint", "latency"))
    streams = int(options.get("num_streams", 0))
    threads = request.get("threads")
    if precision not in PRECISIONS or hint not in HINTS or streams < 0:
        raise agent.RunnerFailure(
            "load", "bad OpenVINO options: inference_precision must be one of %s, "
            "performance_hint one of %s, num_streams >= 0; got %s, %s, %s"
            % (", ".join(sorted(PRECISIONS)), ", ".join(sorted(HINTS)), precision, hint,
               streams))
    core = ov.Core()
    check_device(core, device)
    capabilities = check_precision(core, device, precision)
    path = model_file(request["model"])
    array = agent.single_input(inputs)
    try:
        model = core.read_model(path)
    except Exception as exc:
        raise agent.RunnerFailure(
            "load", "OpenVINO could not read %s: %s" % (os.path.basename(path), ov_error(exc))
        ) from None
    model, reshaped = static_model(ov, model, array)
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision,
                              "PERFORMANCE_HINT": HINTS[hint]}
    if streams:
        config["NUM_STREAMS"] = streams
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, device, config)
    except Exception as exc:
        raise agent.RunnerFailure(
            "load", "OpenVINO could not compile %s for %s: %s"
            % (os.path.basename(path), device, ov_error(exc))) from None

    def used(key):
        try:
            return compiled.get_property(key)
        except Exception:  # a device plugin without this property
            return None

    used_precision = used("INFERENCE_PRECISION_HINT")
    if used_precision is None:
        raise agent.RunnerFailure(
            "load", "OpenVINO's %s does not report the inference precision it compiled %s "
            "with, so what it measured could not be labelled" % (device, os.path.basename(path)))
    used_precision = used_precision.get_type_name()
    if used_precision != precision:
        raise agent.RunnerFailure(
            "load", "OpenVINO compiled %s for %s with inference precision %s, not the %s asked "
            "for" % (os.path.basename(path), device, used_precision, precision))
    used_threads = as_int(used("INFERENCE_NUM_THREADS"))
    if threads and used_threads is not None and used_threads != int(threads):
        raise agent.RunnerFailure(
            "load", "OpenVINO compiled %s with %d threads, not the %d asked for (it uses at "
            "most the %d cores this process may run on)"
            % (os.path.basename(path), used_threads, int(threads), agent.usable_cores()))
    used_streams = as_int(used("NUM_STREAMS"))

    in_port = compiled.input(0)
    dtype = in_port.get_element_type().to_dtype()
    n_out = len(compiled.outputs)
    timed = compiled.create_infer_request()
    timed.set_input_tensor(ov.Tensor(np.ascontiguousarray(array.astype(dtype))))
    other = compiled.create_infer_request()

    def infer():
        timed.infer()
        return [timed.get_output_tensor(i).data for i in range(n_out)]

    def predict(x):
        other.set_input_tensor(ov.Tensor(np.ascontiguousarray(x.astype(dtype))))
        other.infer()
        return [np.array(other.get_output_tensor(i).data, dtype=np.float32)
                for i in range(n_out)]

    execution = used("EXECUTION_DEVICES")
    return agent.Loaded(
        infer,
        runtime=("openvino", ov.__version__.split("-")[0]),
        threads=used_threads,
        providers=[str(d) for d in execution] if execution else [device],
        predict=predict,
        details={
            "device": device,
            "device_name": core.get_property(device, "FULL_DEVICE_NAME"),
            "inference_precision": used_precision,
            "performance_hint": str(used("PERFORMANCE_HINT") or "n/a").split(".")[-1].lower(),
            "num_streams": used_streams if used_streams is not None else "n/a",
            "inference_num_threads": used_threads if used_threads is not None else "n/a",
            "threads_per_stream": used_threads // used_streams
            if used_threads and used_streams else "n/a",
            "threads_default": "as requested" if threads
            else "OpenVINO's default for the hint",
            "cpu_pinning": used("ENABLE_CPU_PINNING"),
            "optimization_capabilities": " ".join(capabilities),
            "model_format": "ONNX (read directly)" if path.endswith(".onnx")
            else "OpenVINO IR",
            "reshaped_to_input": "yes" if reshaped else "no (static)",
            "input_dtype": np.dtype(dtype).name,
            "openvino_build": ov.__version__,
        },
    )


if __name__ == "__main__":
    sys.exit(agent.main(import_runtime, load))
