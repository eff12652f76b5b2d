"""Native-runner output parsers, on each tool's documented output, and the shell fingerprint.

The samples are the tools' own published formats: TFLite's benchmark_model console output
(µs), ncnn's benchmark/README.md (ms), and onnxruntime/test/perftest's console summary and
result file (s, ms).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebench.devices.native_parsers import (
    ParseError,
    parse_benchmark_model,
    parse_benchncnn,
    parse_perf_test,
    parse_perf_test_samples,
    summary_latency,
)
from edgebench.devices.shell_agent import hottest_zone_c, probe_fields, sections, throttling
from edgebench.devices.transport import split_exit, split_pid
from edgebench.execution import thermal_notes
from edgebench.records import CaseResult, DeviceInfo, Status

TFLITE = """STARTING!
Log parameter values verbosely: [0]
Num threads: [1]
Graph: [/data/local/tmp/albert_base.tflite]
#threads used for CPU inference: [1]
Loaded model /data/local/tmp/albert_base.tflite
INFO: Initialized TensorFlow Lite runtime.
The input model file size (MB): 11.983
Initialized session in 20.283ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=339304 curr=266325 min=266325 max=339304 avg=302814 std=36489
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=266601 curr=266931 min=265837 max=268116 avg=266473 std=419
Inference timings in us: Init: 20283, First inference: 339304, Warmup (avg): 302814, Inference (avg): 266473
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=14.2695 overall=21.4688
Overall peak memory footprint (MB) via periodic monitoring: 25.0742
"""  # noqa: E501

NCNN = """loop_count = 8
num_threads = 4
powersave = 0
gpu_device = -1
cooling_down = 1
          squeezenet  min =    8.84  max =    8.89  avg =    8.87
     squeezenet_int8  min =   11.86  max =   11.98  avg =   11.89
"""

ORT = """
Session creation time cost: 0.0412 s
First inference time cost: 12 ms
Total inference time cost: 1.0523 s
Total inference requests: 100
Average inference time cost total: 10.523000 ms
Total inference run time: 1.0601 s
Number of inferences per second: 94.33
Avg CPU usage: 98 %
Peak working set size: 61865984 bytes
Min Latency: 0.0098 s
Max Latency: 0.0154 s
P50 Latency: 0.0104 s
P90 Latency: 0.0111 s
P95 Latency: 0.0119 s
P99 Latency: 0.0149 s
P999 Latency: 0.0154 s
"""


def test_benchmark_model_microseconds() -> None:
    s = parse_benchmark_model(TFLITE)
    assert s.count == 50  # the timed loop, not the warm-up line before it
    assert (s.min_ms, s.max_ms, s.mean_ms, s.std_ms) == pytest.approx(
        (265.837, 268.116, 266.473, 0.419))
    assert s.init_ms == pytest.approx(20.283) and s.first_ms == pytest.approx(339.304)
    assert s.peak_memory_bytes == int(25.0742 * 1024 * 1024)
    assert s.median_ms is None


def test_benchmark_model_variants() -> None:
    same = parse_benchmark_model("count=5 curr=1200(all same)\n")
    assert (same.count, same.min_ms, same.max_ms, same.std_ms) == (5, 1.2, 1.2, 0.0)
    pct = parse_benchmark_model("count=9 first=10 curr=12 min=9 max=30 avg=12.5 std=4 "
                                "p5=9 median=11 p95=30\n")
    assert pct.median_ms == pytest.approx(0.011)
    with pytest.raises(ParseError):
        parse_benchmark_model("ERROR: Failed to load model\n")


def test_benchncnn_milliseconds() -> None:
    s = parse_benchncnn(NCNN)
    assert (s.count, s.min_ms, s.max_ms, s.mean_ms) == (8, 11.86, 11.98, 11.89)
    custom = parse_benchncnn("loop_count = 4\n/data/local/tmp/m.param  min = 1.50  max = 2.00"
                             "  avg = 1.75\n")
    assert (custom.count, custom.mean_ms) == (4, 1.75)
    with pytest.raises(ParseError):
        parse_benchncnn("param file not found\n")


def test_onnxruntime_perf_test_seconds_and_ms() -> None:
    s = parse_perf_test(ORT)
    assert s.count == 100 and s.mean_ms == pytest.approx(10.523)
    assert (s.min_ms, s.median_ms, s.p90_ms, s.p99_ms, s.max_ms) == pytest.approx(
        (9.8, 10.4, 11.1, 14.9, 15.4))
    assert s.init_ms == pytest.approx(41.2) and s.first_ms == 12
    assert s.peak_memory_bytes == 61865984
    older = parse_perf_test("Total inference requests: 3\nAverage inference time cost: "
                            "2.5 ms\n")
    assert (older.count, older.mean_ms, older.min_ms) == (3, 2.5, 2.5)


def test_onnxruntime_perf_test_result_file() -> None:
    text = ("m,0.0104,61865984,98,0\nm,0.0099,61865984,98,1\nmodel,with,commas,0.02,1,2,2\n"
            "\nMin Latency: 0.0099 s\nP50 Latency: 0.0104 s\n")
    assert parse_perf_test_samples(text) == [0.0104, 0.0099, 0.02]


def test_summary_latency_says_what_it_filled_in() -> None:
    latency, (note,) = summary_latency(parse_benchncnn(NCNN), gflops=2.0, peak_gflops=100.0)
    assert latency.samples_ns == () and latency.n == 8
    assert latency.p50_ms == 11.89 and latency.p99_ms == 11.98
    assert latency.median_ci95_ms == (11.86, 11.98)
    assert "no per-iteration samples" in note and "p50 (its mean)" in note
    assert latency.gflops_per_s == pytest.approx(2.0 / 0.01189)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parsers_never_crash_on_garbage(text: str) -> None:
    for parse in (parse_benchmark_model, parse_benchncnn, parse_perf_test):
        try:
            parse(text)
        except ParseError:
            pass
    assert all(s >= 0 for s in parse_perf_test_samples(text))
    probe_fields(text)
    throttling(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
       st.integers(min_value=0, max_value=255))
def test_exit_and_pid_markers_round_trip(body: str, code: int) -> None:
    pid, rest = split_pid(f"edgebench-pid:4242\n{body}\nedgebench-exit:{code}\n")
    assert pid == 4242 and split_exit(rest) == (body, code)
    assert split_exit(body)[1] is None or body.endswith("\n")


PI = """@@uname
aarch64
6.6.31+rpt-rpi-2712
Linux
raspberrypi
@@getprop
@@os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
@@cpuinfo
processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
@@meminfo
MemTotal:        8245912 kB
@@nproc
4
@@governor
ondemand
@@maxfreq
2400000
2400000
@@thermal
cpu-thermal 61350
@@cooling
pwm-fan 2
@@throttled
throttled=0x50005
"""  # noqa: E501


def test_shell_fingerprint_of_a_raspberry_pi() -> None:
    f = probe_fields(PI)
    assert f["arch"] == "aarch64" and f["cores"] == 4 and f["cpu_max_mhz"] == 2400.0
    assert f["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert f["os"] == "Debian GNU/Linux 12 (bookworm) (Linux 6.6.31+rpt-rpi-2712)"
    assert f["ram_bytes"] == 8245912 * 1024 and f["governor"] == "ondemand"
    assert f["temperature_c"] == pytest.approx(61.35)
    assert {"asimd", "asimddp", "fphp"} <= set(f["cpu_flags"])
    # a fan spinning is not throttling; vcgencmd's bits 0 and 2 are
    assert throttling(PI) == "vcgencmd: under-voltage, throttled (0x50005)"


def test_thermal_zones_in_millidegrees_and_degrees() -> None:
    assert hottest_zone_c(["cpu 45000", "battery 31", "bogus x", "skin -5000"]) == 45.0
    assert hottest_zone_c([]) is None
    assert throttling("@@cooling\nthermal-cpufreq-0 3\n") == "thermal-cpufreq-0 at state 3"
    assert sections("junk\n@@a\n1\n@@b\n")["a"] == ["1"]


def _result(temperature: float | None) -> CaseResult:
    from edgebench.records import Case, RunSettings

    info = DeviceInfo(uri="ssh://pi@pi", hostname="pi", arch="aarch64", os="Debian",
                      cpu_model=None, cores=4, ram_bytes=None, python="3.11", governor=None,
                      temperature_c=temperature)
    case = Case(id="c", model="m", backend="onnxruntime", device="ssh://pi@pi",
                settings=RunSettings())
    return CaseResult(case=case, status=Status.OK, device=info)


def test_hot_and_throttled_cases_are_flagged() -> None:
    assert thermal_notes(_result(45.0), None, None).notes == ()
    assert thermal_notes(_result(75.4), None, None).notes == ("started hot (75 °C)",)
    late = thermal_notes(_result(None), None, "vcgencmd: throttled (0x4)")
    assert late.notes == ("throttled by the end: vcgencmd: throttled (0x4)",)
    both = thermal_notes(_result(80.0), "x", "y").notes
    assert both == ("started hot (80 °C)", "throttled throughout: y")
