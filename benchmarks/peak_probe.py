"""Does the report's ``peak_share`` tell the truth? A measured FMA probe against the table.

Measures on this machine (x86-64 Linux), at 1 thread:

- **FMA probe**: the fp32 peak, measured. Machine code of 12 independent accumulator
  chains of ``vfmadd231ps`` (ymm, and zmm where the CPU has AVX-512F), 48 FMAs per loop
  round, run from an executable page through ctypes; GFLOP/s = rounds x 48 x lanes x 2 /
  the fastest of many ~0.5 ms samples (another process can only slow a sample down).
- **Table peak**: what edgebench reports, :func:`edgebench.peak.case_peak` of this
  device's fingerprint (the agent's probe: table entry x clock; the clock from cpufreq or
  the add-chain probe).
- **Tuned kernels**: numpy float32 matmul (OpenBLAS, 1 thread) and an ONNX Runtime MatMul
  (1 intra-op thread), n = 512, achieved GFLOP/s (the fastest of 60).
- **The case**: ``edgebench run -b onnxruntime --threads 1 -n 100`` on the embedded model
  (``--no-run`` skips it); its report's ``gflops_per_s`` and ``peak_share``, against
  ``gflops_per_s / FMA-probe peak`` measured right before and after it.

    EDGEBENCH_CACHE=/tmp/peak-cache python benchmarks/peak_probe.py [--rounds 3] [--no-run]

Done when (issue 19): the report's peak share is within 10 % of the probe's share, i.e.
``table peak / FMA-probe peak`` in 0.9-1.1. The machine is noisy: each round measures
the probe right before and after the run, and only ratios measured together are quoted.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ACCUMULATORS = 12  # FMA latency 4 x 2 pipes = 8 in flight on Zen 4 / Skylake; 12 is ample
UNROLL = 4


def _fma(i: int, zmm: bool) -> bytes:
    """``vfmadd231ps {y,z}mm<i>, {y,z}mm14, {y,z}mm15`` (VEX.256 / EVEX.512 0F38 B8)."""
    r = 0 if i >= 8 else 1  # inverted REX.R: accumulators 8-11
    modrm = 0xC0 | ((i & 7) << 3) | 7  # rm = 15 & 7, its high bit in B (inverted: 0)
    if zmm:  # EVEX: P0 = R X B R' 0 0 m m (0F38 = 10), P1 = W vvvv(~14) 1 pp(66 = 01),
        return bytes([0x62, (r << 7) | 0x52, 0x0D, 0x48, 0xB8, modrm])  # P2 = L'L=10, V'
    return bytes([0xC4, (r << 7) | 0x42, 0x0D, 0xB8, modrm])  # VEX3: RXB mmmmm, W vvvv L pp


def _fma_loop(zmm: bool) -> bytes:
    """``f(n)``: vzeroall; n rounds of 4 x 12 independent FMAs; vzeroupper; ret."""
    code = b"\xc5\xfc\x77"  # vzeroall: zero inputs, no denormals, no NaN
    start = len(code)
    code += b"".join(_fma(i, zmm) for _ in range(UNROLL) for i in range(ACCUMULATORS))
    code += b"\x48\xff\xcf"  # dec rdi
    code += b"\x0f\x85" + struct.pack("<i", start - (len(code) + 6))  # jnz start
    return code + b"\xc5\xf8\x77\xc3"  # vzeroupper; ret


def _callable(code: bytes) -> tuple[Callable[[int], int], mmap.mmap]:
    page = mmap.mmap(-1, mmap.PAGESIZE * (len(code) // mmap.PAGESIZE + 1),
                     prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address), page


def fma_probe_gflops(zmm: bool, samples: int = 300, rounds: int = 2000) -> float:
    """Measured fp32 peak of one core, GFLOP/s: the fastest of ``samples`` timings."""
    f, _page = _callable(_fma_loop(zmm))
    warm = time.perf_counter() + 0.05
    while time.perf_counter() < warm:
        f(rounds)
    best = min(_timed(f, rounds) for _ in range(samples))
    lanes = 16 if zmm else 8
    return rounds * UNROLL * ACCUMULATORS * lanes * 2 / best


def _timed(f: Callable[[int], int], n: int) -> int:
    t0 = time.perf_counter_ns()
    f(n)
    return time.perf_counter_ns() - t0


def numpy_sgemm_gflops(n: int = 512, samples: int = 60) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(samples))
    return 2 * n**3 / best / 1e9


def ort_matmul_gflops(n: int = 512, samples: int = 60) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    del onnx
    rng = np.random.default_rng(0)
    feeds = {"a": rng.random((n, n), dtype=np.float32),
             "b": rng.random((n, n), dtype=np.float32)}
    session.run(None, feeds)
    best = min(_seconds(lambda: session.run(None, feeds)) for _ in range(samples))
    return 2 * n**3 / best / 1e9


def _seconds(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def table_peak() -> tuple[float | None, str]:
    """The peak edgebench reports for a 1-thread fp32 case here, and its label."""
    from edgebench.peak import case_peak
    from edgebench.probe import host_info

    peak = case_peak(host_info(), 1, "fp32")
    return peak.gops, peak.label()


def run_case(out: Path, extra: list[str]) -> dict[str, float]:
    """One ``edgebench run -b onnxruntime --threads 1 -n 100``: the case's figures."""
    cli = Path(sys.executable).with_name("edgebench")
    subprocess.run([str(cli), "run", "-b", "onnxruntime", "--threads", "1", "-n", "100",
                    "-o", str(out), *extra], check=True, stdout=subprocess.DEVNULL)
    report = max(out.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    (case,) = json.loads(report.read_text())["cases"]
    lat = case["latency"]
    return {"p50_ms": lat["p50_ms"], "gflops_per_s": lat["gflops_per_s"],
            "peak_share": lat["peak_share"], "peak_gops": lat["peak"]["gops"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="skip the edgebench run")
    parser.add_argument("run_args", nargs="*", help="extra arguments for edgebench run")
    args = parser.parse_args()
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        sys.exit("the FMA probe is x86-64 Linux machine code")
    flags = Path("/proc/cpuinfo").read_text().split()
    widths = [False] + ([True] if "avx512f" in flags else [])
    print(f"load: {os.getloadavg()}")
    gops, label = table_peak()
    print(f"table peak (1 thread): {label}")
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            before = max(fma_probe_gflops(z) for z in widths)
            row = {"fma_before": before, "sgemm": numpy_sgemm_gflops(),
                   "ort_matmul": ort_matmul_gflops()}
            if not args.no_run:
                row.update(run_case(Path(tmp), args.run_args))
            row["fma_after"] = max(fma_probe_gflops(z) for z in widths)
            row["table"], _ = table_peak()
            fma = (row["fma_before"] + row["fma_after"]) / 2
            line = (f"round {r + 1}: FMA probe {row['fma_before']:.1f}/{row['fma_after']:.1f}"
                    f" GFLOP/s, table {row['table']:.1f} (table/probe "
                    f"{row['table'] / fma:.3f}); numpy sgemm {row['sgemm']:.1f} "
                    f"({row['sgemm'] / fma:.2f} of probe), ORT MatMul {row['ort_matmul']:.1f}"
                    f" ({row['ort_matmul'] / fma:.2f})")
            if "gflops_per_s" in row:
                probe_share = row["gflops_per_s"] / fma
                row["probe_share"] = probe_share
                line += (f"; case p50 {row['p50_ms']:.2f} ms, {row['gflops_per_s']:.1f} "
                         f"GFLOP/s, peak_share {row['peak_share']:.3f} vs probe share "
                         f"{probe_share:.3f} (ratio {row['peak_share'] / probe_share:.3f})")
            print(line, flush=True)
            rows.append(row)
    fmas = [(r["fma_before"] + r["fma_after"]) / 2 for r in rows]
    ratios = [r["table"] / f for r, f in zip(rows, fmas, strict=True)]
    print(f"median table/probe peak: {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}); load: {os.getloadavg()}")
    if gops is None:
        print("edgebench reports no peak for this CPU (unknown): nothing to compare")


if __name__ == "__main__":
    main()
