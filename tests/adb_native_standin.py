"""Test-only stand-in for the ``onnxruntime_perf_test`` binary (none is packaged for Debian or
PyPI): the same command line, the same test-data layout, the same console summary and
result file, with the timings measured for real by ONNX Runtime's Python API.

The tests install it as an executable (``#!`` this interpreter) and hand its path to the
device URI exactly as a user hands a real binary, so pushing it, making it executable,
running it with the harness's flags and parsing its output are what is exercised. Unknown
flags are refused like the real tool refuses them.

Formats follow onnxruntime/test/perftest (performance_runner.cc): the console prints
``Session creation time cost: S s``, ``First inference time cost: MS ms``, ``Total inference
requests: N``, ``Average inference time cost total: MS ms``, ``Peak working set size: B
bytes``, then ``Min/Max/P50/P90/P95/P99/P999 Latency: S s``; the result file holds one
``model_name,seconds,peak_working_set,cpu_usage,run_index`` line per run.
"""

from __future__ import annotations

import getopt
import resource
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "e:m:r:o:x:y:t:I")
    except getopt.GetoptError as exc:
        print(f"{exc}\nusage: onnxruntime_perf_test [options...] model_path [result_file]",
              file=sys.stderr)
        return 2
    options = dict(opts)
    if options.get("-e", "cpu") != "cpu" or options.get("-m", "duration") != "times" \
            or len(args) not in (1, 2):
        print("usage: onnxruntime_perf_test [options...] model_path [result_file]",
              file=sys.stderr)
        return 2
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    model = Path(args[0])
    so = ort.SessionOptions()
    if "-x" in options:
        so.intra_op_num_threads = int(options["-x"])
    so.graph_optimization_level = {"0": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "1": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "2": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "99": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[
        options.get("-o", "99")]
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    created = time.perf_counter() - t0
    data_dir = model.parent / "test_data_set_0"
    feeds = {}
    for spec, pb in zip(session.get_inputs(), sorted(data_dir.glob("input_*.pb"))):
        tensor = TensorProto()
        tensor.ParseFromString(pb.read_bytes())
        feeds[spec.name] = numpy_helper.to_array(tensor)
    if len(feeds) != len(session.get_inputs()):
        print(f"there is no test input data for model {model.parent.name}")
        return 1
    t0 = time.perf_counter()
    session.run(None, feeds)  # the tool's single warm-up run
    first_ms = int((time.perf_counter() - t0) * 1000)
    times = []
    start = time.perf_counter()
    for _ in range(int(options.get("-r", "1000"))):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if len(args) == 2:
        with open(args[1], "a") as f:
            for i, t in enumerate(times):
                f.write(f"{model.parent.name},{t},{peak},0,{i}\n")
    ordered = np.sort(np.asarray(times))
    n = len(ordered)
    print(f"Session creation time cost: {created} s")
    print(f"First inference time cost: {first_ms} ms")
    print(f"Total inference time cost: {sum(times)} s")
    print(f"Total inference requests: {n}")
    print(f"Average inference time cost total: {sum(times) / n * 1000:f} ms")
    print(f"Total inference run time: {wall} s")
    print(f"Number of inferences per second: {n / wall} ")
    print("Avg CPU usage: 50 %")
    print(f"Peak working set size: {peak} bytes")
    for label, q in (("Min", 0.0), ("Max", None), ("P50", 0.5), ("P90", 0.9), ("P95", 0.95),
                     ("P99", 0.99), ("P999", 0.999)):
        value = ordered[-1] if q is None else ordered[int(n * q)]
        print(f"{label} Latency: {value} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
