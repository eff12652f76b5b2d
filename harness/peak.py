"""The compute peak of a device's CPU: per-microarchitecture table x clock x cores used.

A case's ``peak_share`` is its achieved G(FL)OP/s over this peak. The peak of one core is
``ops per cycle`` (the table below) x its clock; a case counts as many cores as it ran
threads (at most the device's cores, the fastest kinds first: the scheduler puts busy
threads on big cores). An int8 artifact is scored against the int8 column, everything else
readable as fp32 against the fp32 one; fp16 and mixed artifacts have no peak here (fp16
arithmetic, e.g. ncnn on ARMv8.2, runs at up to twice the fp32 rate; a mixed graph at
neither), and say so.

**Identification** (``CpuCores.id``, built on the device by ``edgebench_readings``, or by
:func:`core_ids_from_cpuinfo` from a phone's ``/proc/cpuinfo``):

- x86: ``vendor_id``, ``cpu family`` and ``model`` (decimal in ``/proc/cpuinfo``). AMD
  families 17h/19h/1Ah are split into Zen generations by model ranges as the Linux kernel
  does (``arch/x86/kernel/cpu/amd.c``, ``bsp_init_amd``: ``X86_FEATURE_ZEN1..ZEN5``); Intel
  family 6 by model number (``arch/x86/include/asm/intel-family.h``).
- Arm: ``CPU implementer`` / ``CPU part`` (0x41 Arm, 0x61 Apple), the ids of Linux's
  ``arch/arm64/include/asm/cputype.h``.
- Apple on macOS: the brand string (``sysctl machdep.cpu.brand_string``) and the core's
  performance level (``hw.perflevel0``: P cores, ``hw.perflevel1``: E cores).

**Figures** (per core per cycle; one FMA = 2 FLOP, one multiply-accumulate of int8 = 2 OP;
the int8 column is the widest int8 dot-product instruction: x86 VNNI ``vpdpbusd``, Arm
``SDOT``/``UDOT``; ``None`` where the core has none, or where no published figure pins it):

- AMD Zen / Zen+: 2 x 128-bit FMA pipes: 16. Zen 2, Zen 3: 2 x 256-bit FMA: 32, no VNNI.
  Zen 4: AVX-512 on 2 x 256-bit FMA pipes (a 512-bit op takes a pipe for two cycles): 32;
  VNNI ``vpdpbusd`` ymm 2 per cycle (64 MAC): 128. Zen 5 desktop/server (Granite Ridge,
  Turin): 2 x 512-bit FMA: 64; Zen 5 mobile (Strix Point, Krackan): 256-bit datapath, 32.
  Sources: Agner Fog, *The microarchitecture of Intel, AMD and VIA CPUs* (Zen chapters) and
  *Instruction tables* (``VFMADD231PS``, ``VPDPBUSD`` reciprocal throughputs); AMD
  *Software Optimization Guide for AMD Family 19h / 1Ah Processors* (FP pipe widths);
  chipsandcheese, "AMD's Zen 4 Part 1" and "Zen 5's AVX-512 Frequency Behavior" / "AMD's
  Strix Point" (512-bit vs 256-bit Zen 5 datapath). Zen 4 was also measured (a Zen 4
  EPYC VM, 2026-12-01): a
  ``vfmadd231ps`` probe reaches 32.0 FLOP/cycle on ymm and zmm alike
  (``benchmarks/peak_probe.py``, docs/measurements.md).
- Intel Haswell to Comet Lake (client Skylake family): 2 x 256-bit FMA (ports 0, 1): 32, no
  VNNI. Skylake-SP / Cascade Lake / Cooper Lake (model 85): AVX-512 with 1 or 2 FMA units
  *per SKU*: 64 or 32; int8 with VNNI (Cascade Lake on) 4 x the fp32 figure (``vpdpbusd``
  issues on the FMA ports: 64 MAC per zmm op). Ice Lake-SP, Sapphire/Emerald/Granite
  Rapids: 2 x 512-bit FMA: 64, VNNI 256 (AMX tile ops, which ONNX Runtime can use for int8
  on Sapphire Rapids, are not counted). Ice Lake client, Tiger Lake, Rocket Lake: one
  512-bit FMA (ports 0+1 fused; 2 x 256 for AVX2): 32, VNNI 128. Sources: Intel 64 and
  IA-32 Architectures Optimization Reference Manual (Skylake Server chapter: "two FMA
  units" on ports 0 and 5 of some SKUs), Intel ARK "# of AVX-512 FMA Units" per SKU, Agner
  Fog's microarchitecture manual and instruction tables, WikiChip "flops" page.
- Which Skylake-SP-family SKU has 2 AVX-512 FMA units is decided from its ``model name``,
  after Intel ARK: Platinum and Gold 6xxx have 2, Gold 5122 and 5222 have 2, other Gold
  5xxx, Silver and Bronze of Skylake-SP/Cascade Lake have 1. Any other name (a cloud VM
  that hides it: "Intel Xeon Processor (Cascadelake)", HEDT Core i7/i9, Xeon W) is
  ``unknown``, not a guess.
- Hybrid Intel client CPUs (Alder Lake and later: P cores 32, E cores 16 FLOP/cycle) are
  ``unknown``: ``/proc/cpuinfo`` gives every core the same family/model, so which core is
  which cannot be told from it.
- Arm Cortex-A53, A55: one 128-bit ``FMLA`` per cycle: 8 (A55 Software Optimization Guide,
  ASIMD FP multiply-accumulate Q-form throughput 1; A53 has no published guide: ncnn's
  "arm-a53-a55-dual-issue" notes measure one Q-form FMLA issued per cycle); A55 ``SDOT``
  Q-form throughput 1: 32; A53 has no dot product. Cortex-A72: its two 64-bit FP/ASIMD
  pipes take a Q-form FMLA together, throughput 1 (Cortex-A72 Software Optimization
  Guide, section 3.15): 8; no dot product. Cortex-A76, A78, Neoverse N1: two 128-bit
  pipes (V0, V1): 16; SDOT throughput 2: 64 (Cortex-A76/A78/Neoverse N1 Software
  Optimization Guides). Cortex-X1, X2, X3, X4, Neoverse V1, V2: four 128-bit pipes (V0-V3;
  V1's SVE is 2 x 256-bit, the same FLOP): 32; SDOT throughput 4: 128 (their Software
  Optimization Guides). SMMLA (i8mm) on X2-X4 and V1/V2 is not counted.
- Apple M1-M4: performance cores (Firestorm, Avalanche, Everest and the M4's) four 128-bit
  FMA pipes: 32, SDOT 4 per cycle: 128; efficiency cores (Icestorm, Blizzard, Sawtooth,
  M4's) two: 16, 64. Sources: Dougall Johnson, "Apple M1 Firestorm/Icestorm microarchitecture"
  instruction tables (dougallj.github.io/applecpu), chipsandcheese on Avalanche/Everest.
  macOS gives no clock (no cpufreq, no probe there), so an Apple peak needs Linux (Asahi:
  cpufreq) to be known.

**Clock**: cpufreq ``cpuinfo_max_freq`` of the cores (``cpufreq max``), else the device's
probe (``probe``: ``edgebench_readings.clock_probe_mhz``, a dependent chain of integer adds
run as machine code, one add per cycle on every core here (Agner Fog's instruction tables:
``ADD r,r`` latency 1), on one core, so the single-core boost clock: the peak of a
multi-thread case whose cores boost less is overstated, its share understated). On Intel
Skylake-SP and Cascade Lake, heavy AVX-512 runs below that clock (the "AVX-512 license"),
so their share is understated too. ``/proc/cpuinfo``'s ``cpu MHz`` (the current, often the
nominal clock in a VM) is never used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .records import CpuCores, DeviceInfo, PeakBasis

CLOCK_SOURCES = ("cpufreq max", "probe")
"""The clock sources the peak is computed from (``/proc/cpuinfo`` MHz is not one)."""


@dataclass(frozen=True)
class Uarch:
    """One table entry: a core's peak throughput per cycle."""

    key: str
    name: str
    fp32: float
    """fp32 FLOP per cycle per core (an FMA counts 2)."""
    int8: float | None
    """int8 OP per cycle per core with the widest int8 dot-product instruction (a
    multiply-accumulate counts 2); ``None``: the core has none, or it is not pinned."""


def _u(key: str, name: str, fp32: float, int8: float | None) -> Uarch:
    return Uarch(key, name, fp32, int8)


TABLE: dict[str, Uarch] = {u.key: u for u in (
    _u("zen", "AMD Zen/Zen+", 16, None),
    _u("zen2", "AMD Zen 2", 32, None),
    _u("zen3", "AMD Zen 3", 32, None),
    _u("zen4", "AMD Zen 4", 32, 128),
    _u("zen5", "AMD Zen 5 (512-bit datapath)", 64, None),
    _u("zen5-256", "AMD Zen 5 (mobile, 256-bit datapath)", 32, None),
    _u("haswell-skylake", "Intel Haswell to Comet Lake", 32, None),
    _u("skylake-sp-2fma", "Intel Skylake-SP, 2 AVX-512 FMA units", 64, None),
    _u("skylake-sp-1fma", "Intel Skylake-SP, 1 AVX-512 FMA unit", 32, None),
    _u("cascade-lake-2fma", "Intel Cascade/Cooper Lake, 2 AVX-512 FMA units", 64, 256),
    _u("cascade-lake-1fma", "Intel Cascade Lake, 1 AVX-512 FMA unit", 32, 128),
    _u("ice-lake-sp", "Intel Ice Lake-SP", 64, 256),
    _u("ice-tiger-rocket-lake", "Intel Ice/Tiger/Rocket Lake client", 32, 128),
    _u("sapphire-rapids", "Intel Sapphire/Emerald/Granite Rapids", 64, 256),
    _u("cortex-a53", "Arm Cortex-A53", 8, None),
    _u("cortex-a55", "Arm Cortex-A55", 8, 32),
    _u("cortex-a72", "Arm Cortex-A72", 8, None),
    _u("cortex-a76", "Arm Cortex-A76", 16, 64),
    _u("cortex-a78", "Arm Cortex-A78", 16, 64),
    _u("cortex-x1", "Arm Cortex-X1", 32, 128),
    _u("cortex-x2", "Arm Cortex-X2", 32, 128),
    _u("cortex-x3", "Arm Cortex-X3", 32, 128),
    _u("cortex-x4", "Arm Cortex-X4", 32, 128),
    _u("neoverse-n1", "Arm Neoverse N1", 16, 64),
    _u("neoverse-v1", "Arm Neoverse V1", 32, 128),
    _u("neoverse-v2", "Arm Neoverse V2", 32, 128),
    _u("apple-p", "Apple M1-M4 performance core", 32, 128),
    _u("apple-e", "Apple M1-M4 efficiency core", 16, 64),
)}

_ARM_PARTS = {  # implementer 0x41 (Arm Ltd), arch/arm64/include/asm/cputype.h
    0xD03: "cortex-a53", 0xD05: "cortex-a55", 0xD08: "cortex-a72", 0xD0B: "cortex-a76",
    0xD41: "cortex-a78", 0xD44: "cortex-x1", 0xD48: "cortex-x2", 0xD4E: "cortex-x3",
    0xD82: "cortex-x4", 0xD0C: "neoverse-n1", 0xD40: "neoverse-v1", 0xD4F: "neoverse-v2",
}
_APPLE_PARTS = {  # implementer 0x61 (Apple), cputype.h: M1 / M1 Pro / M1 Max / M2 ...
    0x022: "apple-e", 0x023: "apple-p", 0x024: "apple-e", 0x025: "apple-p",
    0x028: "apple-e", 0x029: "apple-p", 0x032: "apple-e", 0x033: "apple-p",
    0x034: "apple-e", 0x035: "apple-p", 0x038: "apple-e", 0x039: "apple-p",
}
_INTEL_MODELS = {  # family 6, arch/x86/include/asm/intel-family.h
    **dict.fromkeys((0x3C, 0x3F, 0x45, 0x46, 0x3D, 0x47, 0x4F, 0x56, 0x4E, 0x5E, 0x8E,
                     0x9E, 0xA5, 0xA6), "haswell-skylake"),
    **dict.fromkeys((0x6A, 0x6C), "ice-lake-sp"),
    **dict.fromkeys((0x7D, 0x7E, 0x8C, 0x8D, 0xA7), "ice-tiger-rocket-lake"),
    **dict.fromkeys((0x8F, 0xCF, 0xAD, 0xAE), "sapphire-rapids"),
}
_INTEL_HYBRID = (0x97, 0x9A, 0xB7, 0xBA, 0xBF, 0xAA, 0xAC, 0xBD, 0xC5, 0xC6)


def _amd(family: int, model: int) -> str:
    """The Zen generation of an AMD family/model, by the kernel's ranges (``amd.c``)."""
    if family == 0x17:
        if model <= 0x2F or 0x50 <= model <= 0x5F:
            return "zen"
        if 0x30 <= model <= 0x4F or 0x60 <= model <= 0x7F or 0x90 <= model <= 0x91 \
                or 0xA0 <= model <= 0xAF:
            return "zen2"
    elif family == 0x19:
        if model <= 0x0F or 0x20 <= model <= 0x5F:
            return "zen3"
        if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF:
            return "zen4"
    elif family == 0x1A:
        if model <= 0x1F or 0x40 <= model <= 0x4F:
            return "zen5"
        if 0x20 <= model <= 0x2F or 0x60 <= model <= 0x6F:
            return "zen5-256"
        return (f"unknown: AMD family 1Ah model {model:#x}: a Zen 5 whose FP datapath width "
                "(256 or 512 bit) the table does not pin")
    return f"unknown: AMD family {family:#x} model {model:#x} is not in the peak table"


def _skylake_sp(stepping: int, brand: str) -> str:
    """Skylake-SP family (model 85): the AVX-512 FMA unit count from the SKU's name."""
    vnni = stepping >= 5  # Cascade Lake (5-7), Cooper Lake (10, 11)
    words = brand.split()
    number = next((w for w in words if w[:1].isdigit() and len(w) >= 4), "")
    if "Platinum" in words or ("Gold" in words and number.startswith("6")) \
            or ("Gold" in words and number[:4] in ("5122", "5222")):
        units = 2
    elif stepping < 10 and (("Gold" in words and number.startswith("5"))
                            or "Silver" in words or "Bronze" in words):
        units = 1
    else:
        return (f"unknown: Intel Skylake-SP-family CPU {brand!r}: its SKU, and with it the "
                "number of AVX-512 FMA units (1 or 2), cannot be told from that name")
    return f"{'cascade-lake' if vnni else 'skylake-sp'}-{units}fma"


def identify(core_id: str) -> Uarch | str:
    """The table entry of a core id (``CpuCores.id``), or ``"unknown: <reason>"``."""
    kind, _, rest = core_id.partition(":")
    key: str | None = None
    try:
        if kind == "x86":
            vendor, family_s, model_s, stepping_s, brand = (rest.split(":", 4) + [""] * 5)[:5]
            family, model = int(family_s), int(model_s)
            stepping = int(stepping_s) if stepping_s.isdigit() else 0
            if vendor == "AuthenticAMD":
                key = _amd(family, model)
            elif vendor == "GenuineIntel" and family == 6:
                if model == 0x55:
                    key = _skylake_sp(stepping, brand)
                elif model in _INTEL_HYBRID:
                    key = (f"unknown: Intel hybrid CPU (family 6 model {model:#x}): P and E "
                           "cores differ and /proc/cpuinfo does not say which core is which")
                else:
                    key = _INTEL_MODELS.get(model)
            if key is None:
                key = f"unknown: x86 {vendor} family {family} model {model} is not in the table"
        elif kind == "arm":
            implementer_s, _, part_s = rest.partition(":")
            implementer, part = int(implementer_s, 16), int(part_s, 16)
            parts = {0x41: _ARM_PARTS, 0x61: _APPLE_PARTS}.get(implementer, {})
            key = parts.get(part) or (f"unknown: Arm CPU implementer {implementer:#x} part "
                                      f"{part:#x} is not in the table")
        elif kind == "apple":
            brand, _, level = rest.rpartition(":")
            if brand.split()[:2] in (["Apple", f"M{n}"] for n in range(1, 5)) \
                    and level in ("P", "E"):
                key = "apple-p" if level == "P" else "apple-e"
            else:
                key = f"unknown: {brand!r} ({level} core) is not in the table"
        else:
            key = f"unknown: unreadable CPU id {core_id!r}"
    except ValueError:
        key = f"unknown: unreadable CPU id {core_id!r}"
    return TABLE.get(key, key)


def core_ids_from_cpuinfo(text: str) -> list[tuple[int, str]]:
    """(processor number, core id) per ``processor`` block of a Linux ``/proc/cpuinfo``
    (see ``CpuCores.id``); blocks without the identifying fields give none. The device-side
    agent's own reading (``edgebench_readings._core_ids``, Python 3.8, what a device reports),
    so host and device parse alike."""
    from .agent.edgebench_readings import _core_ids

    return list(_core_ids(text))


def group_cores(ids: Iterable[tuple[int, str]], max_mhz: Mapping[int, float]
                ) -> tuple[CpuCores, ...]:
    """``CpuCores`` from (processor number, core id) pairs and the cpufreq max clock (MHz)
    per processor number, identical cores with the same clock in one group."""
    counts: dict[tuple[str, float | None], int] = {}
    for index, core_id in ids:
        key = (core_id, max_mhz.get(index))
        counts[key] = counts.get(key, 0) + 1
    return tuple(CpuCores(core_id, count, mhz) for (core_id, mhz), count in counts.items())


def _per_core(entry: Uarch, precision: str) -> float | None:
    return entry.fp32 if precision == "fp32" else entry.int8


def case_peak(info: DeviceInfo | None, threads: int | None, precision: str | None
              ) -> PeakBasis:
    """The peak a case with ``threads`` threads (``None``: all cores) of an artifact of
    ``precision`` (``fp32``/``fp16``/``int8``/``mixed``/``None``: fp32) can reach on
    ``info``'s CPU, in G(FL)OP/s, with what it rests on; ``gops`` is ``None`` with a reason
    when the CPU, its clock or the precision has no peak here. Never raises."""
    basis = "int8" if precision == "int8" else "fp32"
    if precision in ("fp16", "mixed"):
        return PeakBasis(basis, None, reason=f"a {precision} artifact has no peak here "
                         "(fp16 arithmetic runs at up to twice the fp32 rate; a mixed graph "
                         "at neither)")
    if info is None:
        return PeakBasis(basis, None, reason="no device fingerprint")
    groups: Sequence[CpuCores] = info.cpu_cores
    if not groups:
        return PeakBasis(basis, None, reason="the device reported no CPU identity "
                         "(an older agent, or no /proc/cpuinfo)")
    total = sum(g.count for g in groups)
    wanted = min(threads, total) if threads and threads > 0 else total
    rated: list[tuple[float, CpuCores, Uarch, float, str]] = []
    for group in groups:
        entry = identify(group.id)
        if isinstance(entry, str):
            return PeakBasis(basis, None, reason=entry.removeprefix("unknown: "))
        per_cycle = _per_core(entry, basis)
        if per_cycle is None:
            return PeakBasis(basis, None, reason=f"{entry.name} has no int8 peak in the "
                             "table (no int8 dot-product instruction, or none pinned)")
        if group.max_mhz:
            mhz, source = group.max_mhz, "cpufreq max"
        elif info.cpu_max_mhz and info.cpu_clock_source in CLOCK_SOURCES:
            mhz, source = info.cpu_max_mhz, info.cpu_clock_source or "probe"
        else:
            return PeakBasis(basis, None, reason="no clock: cpufreq is not readable and the "
                             "device did not probe it")
        rated.append((per_cycle * mhz, group, entry, mhz, source))
    rated.sort(key=lambda r: -r[0])
    gops, left, used = 0.0, wanted, []
    for per_core_mops, group, entry, mhz, source in rated:
        take = min(left, group.count)
        if take <= 0:
            break
        gops += take * per_core_mops * 1e-3
        left -= take
        used.append((entry, mhz, source))
    unit = "FLOP" if basis == "fp32" else "OP"
    entries = tuple(dict.fromkeys(f"{e.key}: {_per_core(e, basis):g} {basis} {unit}/cycle/core"
                                  for e, _, _ in used))
    return PeakBasis(basis, gops, cores=wanted, entries=entries, clock_mhz=used[0][1],
                     clock_source=used[0][2])


def table_rows() -> Iterable[Uarch]:
    """The table, for documentation and tests."""
    return TABLE.values()
