"""The native runners' parsers on real outputs of several versions of each tool.

Each fixture under tests/fixtures/native/ is one output as it was published (a GitHub issue,
a README, a vendor's documentation); its ``.source`` file says where it came from, which tool
version printed it and what was cut. Every figure asserted here is read off the fixture by
eye: it is the number the tool printed, converted to the Summary's units (ms, bytes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.devices.native_parsers import (
    ParseError,
    parse_benchmark_model,
    parse_benchncnn,
    parse_perf_test,
    summary_latency,
)

FIXTURES = Path(__file__).parent / "fixtures" / "native"
MIB = 1024 * 1024


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


def test_every_fixture_says_where_it_came_from() -> None:
    outputs = sorted(FIXTURES.glob("*.txt"))
    assert len(outputs) >= 15
    for output in outputs:
        source = output.with_suffix(".source").read_text()
        assert "Tool: " in source and "Source: " in source and "https://" in source, output


# -- benchmark_model (TFLite / LiteRT), microseconds -----------------------------------------

BENCHMARK_MODEL = {
    # name: (count, min, max, mean, std, median, init, first, peak MiB)  -- in ms
    "benchmark_model-tf1-zedboard-op-profiling":
        (50, 389.982, 417.669, 394.183, 4.373, None, 18.764, None, None),
    "benchmark_model-tf2.2-issue40183":
        (9, 16767.506, 17015.249, 16850.5, 69.772, None, 48.019, None, None),
    "benchmark_model-tf2.3-issue42507":
        (50, 32.641, 34.005, 33.2094, 0.450, None, 0.855, 49.060, 12.8672),
    "benchmark_model-xnnpack-issue999":
        (50, 53.077, 60.727, 55.0432, 1.562, None, 18.777, 64.791, 18.7227),
    "benchmark_model-tf2.13-issue61946":
        (50, 111.222, 121.324, 116.066, 1.906, None, 0.530, 124.020, 12.1914),
    "benchmark_model-ti-am62x-percentiles":
        (50, 1238.588, 1252.566, 1240.27, 2.565, 1239.807, 5.579, 1357.602, 109.832),
}


@pytest.mark.parametrize("name", sorted(BENCHMARK_MODEL))
def test_benchmark_model_fixture(name: str) -> None:
    count, lo, hi, mean, std, median, init, first, peak_mib = BENCHMARK_MODEL[name]
    s = parse_benchmark_model(fixture(name))
    assert s.count == count
    assert (s.min_ms, s.max_ms, s.mean_ms, s.std_ms) == pytest.approx((lo, hi, mean, std))
    assert s.median_ms == (pytest.approx(median) if median is not None else None)
    assert s.init_ms == pytest.approx(init)
    assert s.first_ms == (pytest.approx(first) if first is not None else None)
    assert s.peak_memory_bytes == (int(peak_mib * MIB) if peak_mib is not None else None)
    assert s.p90_ms is None and s.p99_ms is None  # benchmark_model prints neither


def test_benchmark_model_ignores_the_op_profiling_timings() -> None:
    """The op-profiling summary ends with its own 'Timings (microseconds): count=50 ...
    avg=394059' line; the timed loop's avg is 394183."""
    text = fixture("benchmark_model-tf1-zedboard-op-profiling")
    assert "Timings (microseconds): count=50" in text and "avg=394059" in text
    assert parse_benchmark_model(text).mean_ms == pytest.approx(394.183)


# -- onnxruntime_perf_test, seconds and milliseconds --------------------------------------

PERF_TEST = {
    # name: (count, mean, min, max, p50, p90, p99, init, first, peak bytes)  -- in ms
    "perf_test-readme-sample":
        (1000, 58.8053, 55.9777, 62.3472, 58.7108, 59.9845, 61.9517, None, None, None),
    "perf_test-pr2798-windows":
        (1, 734.606, 734.606, 734.606, None, None, None, 1841.49, None, None),
    "perf_test-1.3.1-acl-issue850":
        (10, 144.871, 144.871, 144.871, None, None, None, 127.918, None, 158171136),
    "perf_test-spacemit-quickstart":
        (10, 82.3382, 80.8129, 83.8817, 82.6095, 83.8817, 83.8817, 1144.76, 248, 78946304),
    "perf_test-arm-learning-path-sme2":
        (5, 339.38112, 333.323, 346.82, 336.476, 346.82, 346.82, 227.282, 343, 241426432),
}


def _approx_or_none(value: float | None) -> object:
    return pytest.approx(value) if value is not None else None


@pytest.mark.parametrize("name", sorted(PERF_TEST))
def test_perf_test_fixture(name: str) -> None:
    count, mean, lo, hi, p50, p90, p99, init, first, peak = PERF_TEST[name]
    s = parse_perf_test(fixture(name))
    assert s.count == count
    assert (s.mean_ms, s.min_ms, s.max_ms) == pytest.approx((mean, lo, hi))
    assert (s.median_ms, s.p90_ms, s.p99_ms) == (
        _approx_or_none(p50), _approx_or_none(p90), _approx_or_none(p99))
    assert s.init_ms == _approx_or_none(init)
    assert s.first_ms == _approx_or_none(first)
    assert s.peak_memory_bytes == peak


# -- benchncnn, milliseconds ---------------------------------------------------------------

BENCHNCNN = {
    # name: (loop_count header, min, max, avg of the last line)
    "benchncnn-readme-threadripper": (10, 85.65, 85.97, 85.79),
    "benchncnn-readme-quadro-gpu": (256, 9.32, 72.92, 14.01),
    "benchncnn-readme-sd675-no-cooling-line": (8, 150.45, 152.30, 151.36),
    "benchncnn-issue3142-max-freq": (10, 12.31, 12.59, 12.45),
}


@pytest.mark.parametrize("name", sorted(BENCHNCNN))
def test_benchncnn_fixture(name: str) -> None:
    count, lo, hi, mean = BENCHNCNN[name]
    s = parse_benchncnn(fixture(name), loop_count=999)  # the header's count wins
    assert (s.count, s.min_ms, s.max_ms, s.mean_ms) == (count, lo, hi, mean)
    latency, _ = summary_latency(s, gflops=None, peak_gflops=None)
    assert latency.n == count and latency.p50_ms == mean


# -- a missing figure: ParseError quoting the output's last lines -------------------------


def cut(name: str, keep_lines: int) -> str:
    return "\n".join(fixture(name).splitlines()[:keep_lines]) + "\n"


def test_benchmark_model_stopped_after_the_warm_up() -> None:
    text = cut("benchmark_model-tf2.13-issue61946", 8)  # up to the warm-up's statistics
    with pytest.raises(ParseError) as err:
        parse_benchmark_model(text)
    assert str(err.value) == (
        "no timed loop: only the warm-up's 'Running benchmark' line; the output ends with: "
        "'INFO: Initialized session in 0.53ms.' / 'INFO: Running benchmark for at least 1 "
        "iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.' / "
        "'INFO: count=5 first=124020 curr=116061 min=115177 max=124020 avg=117225 std=3412'")


def test_benchmark_model_stopped_in_the_timed_loop() -> None:
    text = cut("benchmark_model-tf1-zedboard-op-profiling", 25)
    assert text.rstrip().endswith("terminate if exceeding 150 seconds.")
    with pytest.raises(ParseError) as err:
        parse_benchmark_model(text)
    assert str(err.value) == (
        "no 'count=... min=... max=... avg=...' line for the timed loop; the output ends "
        "with: 'Running benchmark for at least 1 iterations and at least 0.5 seconds but "
        "terminate if exceeding 150 seconds.' / 'count=2 first=393500 curr=396574 min=393500 "
        "max=396574 avg=395037 std=1537' / 'Running benchmark for at least 50 iterations and "
        "at least 1 seconds but terminate if exceeding 150 seconds.'")


def test_perf_test_without_its_mean() -> None:
    text = cut("perf_test-1.3.1-acl-issue850", 3)
    with pytest.raises(ParseError) as err:
        parse_perf_test(text)
    assert str(err.value) == (
        "no mean ('Average inference time cost'); the output ends with: 'Session creation "
        "time cost: 0.127918 s' / 'Total inference time cost: 1.44871 s' / 'Total inference "
        "requests: 10'")
    with pytest.raises(ParseError) as err:
        parse_perf_test("")
    assert str(err.value) == ("no request count ('Total inference requests'); the output was "
                              "empty")


def test_benchncnn_without_a_result_line() -> None:
    text = cut("benchncnn-readme-quadro-gpu", 13)  # the header, no model line
    with pytest.raises(ParseError) as err:
        parse_benchncnn(text, 8)
    assert str(err.value) == (
        "no 'NAME  min = ...  max = ...  avg = ...' line; the output ends with: "
        "'powersave = 0' / 'gpu_device = 1' / 'cooling_down = 0'")


def test_a_summary_of_zero_runs_is_no_figure() -> None:
    """Found by the fuzzer: a summary of 0 requests parsed, then failed in the statistics."""
    with pytest.raises(ParseError) as perf:
        parse_perf_test("Total inference requests: 0\nAverage inference time cost total: 0 ms")
    assert str(perf.value) == ("no timed run: 'Total inference requests' is 0; the output "
                               "ends with: 'Total inference requests: 0' / 'Average inference "
                               "time cost total: 0 ms'")
    with pytest.raises(ParseError) as ncnn:
        parse_benchncnn("model  min = 1.00  max = 2.00  avg = 1.50")
    assert str(ncnn.value).startswith("no run count: no 'loop_count = N' line and no loop "
                                      "count given; ")
