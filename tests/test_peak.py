"""The peak model (:mod:`edgebench.peak`): its table against published figures, the CPU's
identification from real ``/proc/cpuinfo`` texts, the clock, the peak of a case.

Published figures the table is pinned to (per core per cycle; FMA = 2 FLOP, int8
multiply-accumulate = 2 OP), as pipes x lanes x 2:

- AMD Zen 4: 2 x 256-bit FMA pipes, AVX-512 split over them (Agner Fog, microarchitecture
  manual, Zen 4 chapter; AMD Family 19h Software Optimization Guide): 2 x 8 x 2 = 32;
  ``vpdpbusd`` ymm 2 per cycle, 32 MAC each: 128. Zen 2/3: 2 x 8 x 2 = 32. Zen 5 (512-bit
  datapath): 2 x 16 x 2 = 64.
- Intel Skylake-SP with 2 AVX-512 FMA units (Intel optimization manual, Skylake Server
  chapter; Intel ARK "# of AVX-512 FMA Units"): 2 x 16 x 2 = 64, with 1 unit 32; Cascade
  Lake VNNI on the same ports: 64 MAC per zmm op x units x 2. Haswell..Comet Lake 2 x 8 x 2.
- Arm (Software Optimization Guides): Cortex-A72 Q-form FMLA throughput 1: 4 x 2 = 8;
  Cortex-A76 / Neoverse N1 2 x 4 x 2 = 16, SDOT 2 x 16 MAC x 2 = 64; Cortex-X1..X4 and
  Neoverse V1/V2 4 x 4 x 2 = 32, SDOT 128; Cortex-A55 FMLA and SDOT throughput 1: 8, 32.
- Apple M1 Firestorm 4 x 4 x 2 = 32, Icestorm 2 x 4 x 2 = 16 (Dougall Johnson's tables).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import pytest

from edgebench.agent import edgebench_readings as readings
from edgebench.cli import main
from edgebench.peak import TABLE, case_peak, core_ids_from_cpuinfo, group_cores, identify
from edgebench.records import CpuCores, DeviceInfo
from edgebench.stats import latency_stats

_ARM_BLOCK = ("processor\t: {n}\nBogoMIPS\t: {bogo}\nFeatures\t: {features}\n"
              "CPU implementer\t: {impl}\nCPU architecture: 8\nCPU variant\t: {variant}\n"
              "CPU part\t: {part}\nCPU revision\t: {rev}\n")


def _arm(blocks: list[dict[str, str]], tail: str = "") -> str:
    return "\n".join(_ARM_BLOCK.format(n=i, **b) for i, b in enumerate(blocks)) + \
        ("\n" + tail if tail else "")


# Raspberry Pi 4 Model B (BCM2711, 4 x Cortex-A72), Raspberry Pi OS 64-bit.
PI4 = _arm([dict(bogo="108.00", features="fp asimd evtstrm crc32 cpuid", impl="0x41",
                 variant="0x0", part="0xd08", rev="3")] * 4,
           "Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000abcdef01\n"
           "Model\t\t: Raspberry Pi 4 Model B Rev 1.1\n")
# Raspberry Pi 5 (BCM2712, 4 x Cortex-A76).
PI5 = _arm([dict(bogo="108.00", features="fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                 "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp", impl="0x41",
                 variant="0x4", part="0xd0b", rev="1")] * 4,
           "Revision\t: d04170\nSerial\t\t: 0123456789abcdef\n"
           "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
# Apple M1 under Asahi Linux: 4 Icestorm (part 0x022) then 4 Firestorm (0x023).
_M1_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                "asimdrdm jscvt fcma lrcpc dcpop sha3 asimddp sha512 asimdfhm dit uscat")
M1 = _arm([dict(bogo="48.00", features=_M1_FEATURES, impl="0x61", variant="0x1",
                part="0x022", rev="1")] * 4
          + [dict(bogo="48.00", features=_M1_FEATURES, impl="0x61", variant="0x1",
                  part="0x023", rev="1")] * 4)
# Rockchip RK3588: 4 x Cortex-A55 (cpu0-3) and 4 x Cortex-A76 (cpu4-7).
RK3588 = _arm([dict(bogo="48.00", features="fp asimd asimddp", impl="0x41", variant="0x2",
                    part="0xd05", rev="0")] * 4
              + [dict(bogo="48.00", features="fp asimd asimddp", impl="0x41", variant="0x4",
                      part="0xd0b", rev="0")] * 4)


def _x86(model_name: str, vendor: str, family: int, model: int, stepping: int,
         flags: str, n: int = 2) -> str:
    return "\n".join(
        f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
        f"model\t\t: {model}\nmodel name\t: {model_name}\nstepping\t: {stepping}\n"
        f"cpu MHz\t\t: 2499.998\ncache size\t: 33792 KB\nflags\t\t: {flags}\n"
        for i in range(n))


# AWS m5 (Skylake-SP, Platinum 8175M: 2 AVX-512 FMA units per Intel ARK).
SKYLAKE_SP = _x86("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", "GenuineIntel", 6, 85, 4,
                  "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl")
# Cascade Lake Silver 4210 (1 AVX-512 FMA unit).
CASCADE_SILVER = _x86("Intel(R) Xeon(R) Silver 4210 CPU @ 2.20GHz", "GenuineIntel", 6, 85,
                      7, "avx2 fma avx512f avx512_vnni")
# A cloud VM that hides the SKU.
HIDDEN_XEON = _x86("Intel(R) Xeon(R) CPU @ 2.00GHz", "GenuineIntel", 6, 85, 3,
                   "avx2 fma avx512f")
# A Zen 4 EPYC VM (family 25 = 19h, model 17 = 0x11), as its /proc/cpuinfo gives it (the
# project's VM on 2026-12-01 02:35 UTC).
ZEN4_VM = _x86("AMD EPYC", "AuthenticAMD", 25, 17, 1,
               "fpu sse sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 "
               "avx512_vnni")
# A Zen 3 EPYC VM (family 25 = 19h, model 1), as its /proc/cpuinfo gives it (the project's VM
# on 2026-12-01 03:45 UTC): no AVX-512.
ZEN3_VM = _x86("AMD EPYC", "AuthenticAMD", 25, 1, 1,
               "fpu sse sse2 avx fma avx2 bmi2 vaes vpclmulqdq")

FIXTURES = {  # cpuinfo text -> (table key per processor, in order)
    "pi4": (PI4, ["cortex-a72"] * 4),
    "pi5": (PI5, ["cortex-a76"] * 4),
    "m1-asahi": (M1, ["apple-e"] * 4 + ["apple-p"] * 4),
    "rk3588": (RK3588, ["cortex-a55"] * 4 + ["cortex-a76"] * 4),
    "skylake-sp": (SKYLAKE_SP, ["skylake-sp-2fma"] * 2),
    "cascade-lake-silver": (CASCADE_SILVER, ["cascade-lake-1fma"] * 2),
    "zen4-vm": (ZEN4_VM, ["zen4"] * 2),
    "zen3-vm": (ZEN3_VM, ["zen3"] * 2),
}


@pytest.mark.parametrize(("key", "fp32", "int8"), [
    ("zen2", 2 * 8 * 2, None), ("zen3", 2 * 8 * 2, None), ("zen4", 2 * 8 * 2, 2 * 32 * 2),
    ("zen5", 2 * 16 * 2, None), ("zen5-256", 2 * 8 * 2, None),
    ("haswell-skylake", 2 * 8 * 2, None),
    ("skylake-sp-2fma", 2 * 16 * 2, None), ("skylake-sp-1fma", 1 * 16 * 2, None),
    ("cascade-lake-2fma", 2 * 16 * 2, 2 * 64 * 2), ("cascade-lake-1fma", 16 * 2, 64 * 2),
    ("ice-lake-sp", 2 * 16 * 2, 2 * 64 * 2), ("sapphire-rapids", 2 * 16 * 2, 2 * 64 * 2),
    ("cortex-a53", 4 * 2, None), ("cortex-a55", 4 * 2, 16 * 2), ("cortex-a72", 4 * 2, None),
    ("cortex-a76", 2 * 4 * 2, 2 * 16 * 2), ("cortex-a78", 2 * 4 * 2, 2 * 16 * 2),
    ("cortex-x1", 4 * 4 * 2, 4 * 16 * 2), ("cortex-x4", 4 * 4 * 2, 4 * 16 * 2),
    ("neoverse-n1", 2 * 4 * 2, 2 * 16 * 2), ("neoverse-v1", 4 * 4 * 2, 4 * 16 * 2),
    ("neoverse-v2", 4 * 4 * 2, 4 * 16 * 2),
    ("apple-p", 4 * 4 * 2, 4 * 16 * 2), ("apple-e", 2 * 4 * 2, 2 * 16 * 2),
])
def test_table_matches_published_figures(key: str, fp32: float, int8: float | None) -> None:
    assert (TABLE[key].fp32, TABLE[key].int8) == (fp32, int8)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_cpuinfo_identifies_the_microarchitecture(name: str) -> None:
    text, keys = FIXTURES[name]
    ids = core_ids_from_cpuinfo(text)
    assert [i for i, _ in ids] == list(range(len(keys)))
    found = [identify(core_id) for _, core_id in ids]
    assert [u.key if not isinstance(u, str) else u for u in found] == keys
    # The device-side agent (Python 3.8, stdlib) reads the same ids.
    assert readings._core_ids(text) == ids


def test_the_running_machines_cpuinfo_is_read_like_the_fixtures() -> None:
    """Whatever CPU runs the tests: its cpuinfo gives core ids, and the table gives an
    entry or a reason (the fixtures above pin which entry)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not text:
        pytest.skip("no /proc/cpuinfo here")
    ids = core_ids_from_cpuinfo(text)
    assert readings._core_ids(text) == ids and len(ids) >= 1
    found = identify(ids[0][1])
    assert found in TABLE.values() or (isinstance(found, str) and found.startswith("unknown: "))


@pytest.mark.parametrize(("core_id", "why"), [
    ("x86:GenuineIntel:6:85:3:Intel(R) Xeon(R) CPU @ 2.00GHz", "cannot be told"),
    ("x86:GenuineIntel:6:151:2:12th Gen Intel(R) Core(TM) i7-12700K", "hybrid"),
    ("x86:AuthenticAMD:26:112:0:AMD Ryzen AI Max+ 395", "datapath width"),
    ("x86:AuthenticAMD:21:2:0:AMD FX-8350", "not in the peak table"),
    ("x86:CentaurHauls:6:15:0:VIA", "not in the table"),
    ("arm:0x41:0xd07", "not in the table"),  # Cortex-A57: not in the table
    ("arm:0x48:0xd01", "not in the table"),  # HiSilicon
    ("apple:Apple A15 Bionic:P", "not in the table"),
    ("riscv:sifive", "unreadable"),
    ("arm:zz:0xd0b", "unreadable"),
])
def test_unknown_cpus_are_unknown_with_a_reason(core_id: str, why: str) -> None:
    found = identify(core_id)
    assert isinstance(found, str) and found.startswith("unknown: ") and why in found


def test_skylake_sp_fma_units_follow_the_sku() -> None:
    two = "x86:GenuineIntel:6:85:{s}:Intel(R) Xeon(R) {name} CPU @ 2.10GHz"
    assert identify(two.format(s=4, name="Gold 6148")) == TABLE["skylake-sp-2fma"]
    assert identify(two.format(s=4, name="Gold 5122")) == TABLE["skylake-sp-2fma"]
    assert identify(two.format(s=4, name="Gold 5118")) == TABLE["skylake-sp-1fma"]
    assert identify(two.format(s=4, name="Bronze 3106")) == TABLE["skylake-sp-1fma"]
    assert identify(two.format(s=7, name="Platinum 8259CL")) == TABLE["cascade-lake-2fma"]
    assert identify(two.format(s=7, name="Gold 5222")) == TABLE["cascade-lake-2fma"]
    assert identify(two.format(s=7, name="Gold 5218")) == TABLE["cascade-lake-1fma"]
    assert isinstance(identify(two.format(s=11, name="Gold 5318H")), str)  # Cooper Lake 5xxx


def test_apple_on_macos_is_read_from_the_brand_and_level() -> None:
    assert identify("apple:Apple M2 Pro:P") == TABLE["apple-p"]
    assert identify("apple:Apple M4:E") == TABLE["apple-e"]


def _info(text: str, mhz: dict[int, float] | None = None, clock: float | None = None,
          source: str | None = None) -> DeviceInfo:
    cores = group_cores(core_ids_from_cpuinfo(text), mhz or {})
    return DeviceInfo(uri="ssh://dev", hostname=None, arch="x", os="Linux", cpu_model=None,
                      cores=sum(c.count for c in cores), ram_bytes=None, python=None,
                      governor=None, temperature_c=None, cpu_max_mhz=clock,
                      cpu_cores=cores, cpu_clock_source=source)


def test_one_thread_on_zen4_is_one_core_at_the_probed_clock() -> None:
    """The issue's case: a 1-thread case on a Zen 4 VM. The old estimate counted 64 FLOP/cycle
    (any AVX-512 CPU), both cores and /proc/cpuinfo's 2.6 GHz: 2 x 64 x 2.6 = 333 GFLOP/s
    where one Zen 4 core at 3.65 GHz peaks at 117."""
    info = _info(ZEN4_VM, clock=3650.0, source="probe")
    peak = case_peak(info, 1, "fp32")
    assert peak.gops == pytest.approx(32 * 3.65) and peak.cores == 1
    assert peak.entries == ("zen4: 32 fp32 FLOP/cycle/core",) and peak.clock_source == "probe"
    assert case_peak(info, None, "fp32").gops == pytest.approx(2 * 32 * 3.65)
    assert case_peak(info, 8, "fp32").cores == 2  # more threads than cores: every core
    assert case_peak(info, 1, "int8").gops == pytest.approx(128 * 3.65)
    # A 10 ms case of 1.0 GFLOP reaches 100 GFLOP/s: 0.86 of one core's peak.
    stats = latency_stats([10_000_000] * 7, gflops=1.0, peak=peak)
    assert stats.peak_share == pytest.approx(100 / (32 * 3.65)) and stats.peak == peak
    assert "3650 MHz (probe)" in peak.label() and "1 core " in peak.label()


def test_a_clock_only_from_proc_cpuinfo_gives_no_peak() -> None:
    peak = case_peak(_info(ZEN4_VM, clock=2596.0, source="/proc/cpuinfo"), 1, "fp32")
    assert peak.gops is None and "no clock" in (peak.reason or "")
    assert latency_stats([10_000_000] * 7, gflops=1.0, peak=peak).peak_share is None


def test_big_little_counts_the_fastest_cores_first() -> None:
    info = _info(RK3588, {0: 1800.0, 1: 1800.0, 2: 1800.0, 3: 1800.0,
                          4: 2400.0, 5: 2400.0, 6: 2400.0, 7: 2400.0}, 2400.0, "cpufreq max")
    assert [(c.count, c.max_mhz) for c in info.cpu_cores] == [(4, 1800.0), (4, 2400.0)]
    assert case_peak(info, 2, "fp32").gops == pytest.approx(2 * 16 * 2.4)
    assert case_peak(info, 6, "fp32").gops == pytest.approx(4 * 16 * 2.4 + 2 * 8 * 1.8)
    assert case_peak(info, None, "int8").gops == pytest.approx(4 * 64 * 2.4 + 4 * 32 * 1.8)
    assert case_peak(info, 6, "fp32").entries == ("cortex-a76: 16 fp32 FLOP/cycle/core",
                                                  "cortex-a55: 8 fp32 FLOP/cycle/core")


@pytest.mark.parametrize(("text", "precision", "why"), [
    (PI4, "int8", "no int8 peak"),            # Cortex-A72: no dot product
    (PI5, "fp16", "fp16 artifact"),
    (PI5, "mixed", "mixed artifact"),
    (HIDDEN_XEON, "fp32", "cannot be told"),
])
def test_no_peak_is_unknown_with_its_reason(text: str, precision: str, why: str) -> None:
    peak = case_peak(_info(text, clock=1800.0, source="cpufreq max"), 1, precision)
    assert peak.gops is None and why in (peak.reason or "")
    assert "unknown" in peak.label()


def test_pi_figures() -> None:
    pi4 = _info(PI4, dict.fromkeys(range(4), 1800.0), 1800.0, "cpufreq max")
    pi5 = _info(PI5, dict.fromkeys(range(4), 2400.0), 2400.0, "cpufreq max")
    assert case_peak(pi4, 4, "fp32").gops == pytest.approx(4 * 8 * 1.8)
    assert case_peak(pi5, 4, "int8").gops == pytest.approx(4 * 64 * 2.4)
    assert case_peak(pi5, None, None).precision == "fp32"  # a .pt / unreadable: fp32


def test_older_reports_without_cpu_identity_have_no_peak() -> None:
    info = DeviceInfo(uri="local", hostname=None, arch="x86_64", os="Linux", cpu_model=None,
                      cores=2, ram_bytes=None, python=None, governor=None,
                      temperature_c=None, cpu_max_mhz=2600.0, cpu_flags=("avx512f",))
    assert info.peak_gflops_estimate() is None
    assert "no CPU identity" in (case_peak(info, 1, "fp32").reason or "")


def test_device_probe_reports_cores_and_the_cpufreq_clock(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    files = {"/proc/cpuinfo": RK3588}
    files.update({f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq":
                  "1800000\n" if i < 4 else "2400000\n" for i in range(8)})
    monkeypatch.setattr(readings, "_read", files.get)
    monkeypatch.setattr(readings.sys, "platform", "linux")
    fields = readings.probe([])
    assert fields["cpu_clock_source"] == "cpufreq max" and fields["cpu_max_mhz"] == 2400.0
    assert fields["cpu_cores"] == [{"id": "arm:0x41:0xd05", "count": 4, "max_mhz": 1800.0},
                                   {"id": "arm:0x41:0xd0b", "count": 4, "max_mhz": 2400.0}]


def test_shell_probe_of_a_phone_reads_each_cluster_clock() -> None:
    from edgebench.devices.shell_agent import probe_fields

    freq = "/sys/devices/system/cpu/cpu{}/cpufreq/cpuinfo_max_freq {}"
    text = "\n".join(["@@uname", "aarch64", "5.10", "Linux", "phone", "@@cpuinfo",
                      *RK3588.splitlines(), "@@nproc", "8", "@@maxfreq",
                      *(["1800000"] * 4 + ["2400000"] * 4), "@@cpufreq",
                      *(freq.format(i, 1800000 if i < 4 else 2400000) for i in range(8))])
    fields = probe_fields(text)
    assert fields["cpu_clock_source"] == "cpufreq max"
    assert fields["cpu_cores"] == [{"id": "arm:0x41:0xd05", "count": 4, "max_mhz": 1800.0},
                                   {"id": "arm:0x41:0xd0b", "count": 4, "max_mhz": 2400.0}]


x86_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"),
    reason="the clock probe runs on x86-64 Linux")


@x86_linux
def test_clock_probe_measures_a_clock() -> None:
    # The chain's own count proves the code ran; the figure is a measurement (no bound
    # on it here: see benchmarks/peak_probe.py, which checks it against an FMA probe).
    mhz = readings.clock_probe_mhz(samples=5, rounds=2000)
    assert mhz is not None and mhz > 0


@x86_linux
def test_one_thread_run_reports_its_peak_basis(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    """A real ``edgebench run`` at 1 thread: the report's peak is one core's, at the
    probed (or cpufreq) clock, from the table entry of the CPU running the test."""
    code = main(["run", "-o", str(tmp_path), "--warmup", "0", "-n", "5", "--threads", "1",
                 "--no-accuracy", "-b", "onnxruntime", "-m", str(make_onnx("conv", size=32))])
    assert code == 0
    (report,) = tmp_path.glob("*/report.json")
    data = json.loads(report.read_text())
    (case,) = data["cases"]
    device = case["device"]
    assert device["cpu_clock_source"] in ("cpufreq max", "probe")
    cores = [CpuCores(**c) for c in device["cpu_cores"]]
    entry = identify(cores[0].id)
    peak = case["latency"]["peak"]
    if isinstance(entry, str):
        assert peak["gops"] is None and peak["reason"]
        return
    assert peak["cores"] == 1 and peak["precision"] == "fp32"
    assert peak["entries"] == [f"{entry.key}: {entry.fp32:g} fp32 FLOP/cycle/core"]
    assert peak["gops"] == pytest.approx(entry.fp32 * device["cpu_max_mhz"] * 1e-3)
    assert case["latency"]["peak_share"] == pytest.approx(
        case["latency"]["gflops_per_s"] / peak["gops"])
    markdown = next(tmp_path.glob("*/report.md")).read_text()
    assert "## Compute peak" in markdown and f"({device['cpu_clock_source']})" in markdown
