"""The comparison as a Markdown table (``edgebench compare``, ``edgebench run
--baseline-model``): the rule applied, then one row per case, regressions first."""

from __future__ import annotations

from ..compare import MIN_REPEATS, Comparison, Verdict
from ..significance import MIN_HISTORY


def render_comparison(comp: Comparison) -> str:
    """A Markdown table, regressions first."""
    order = [Verdict.REGRESSED, Verdict.IMPROVED, Verdict.NOT_COMPARABLE, Verdict.UNCHANGED,
             Verdict.NEW, Verdict.MISSING]
    t = comp.thresholds
    if comp.side_by_side:
        rule = (f"Measured side by side in one run (repeats interleaved A B B A ...). A case "
                f"regresses when its latency, or its CPU time per inference, grows by more "
                f"than {t.latency * 100:g} % and the change is significant:")
    else:
        rule = (f"A case regresses when its latency grows by more than {t.latency * 100:g} % "
                f"(or {t.noise_factor:g} x its noise, if larger: the scatter of its repeats, "
                f"and its run-to-run change over >= {MIN_HISTORY} earlier runs) and the "
                f"change is significant:")
    lines = [f"# edgebench compare: {comp.current} vs {comp.baseline}", "",
             f"{rule} with >= {MIN_REPEATS} repeats a side, the ratio of "
             f"repeat medians and its {(1 - t.alpha_repeats) * 100:g} % distribution-free "
             f"interval (rank test p < {t.alpha_repeats:g}); else Mann-Whitney on the samples "
             f"p < {t.alpha:g} and a 95 % bootstrap interval. mAP50-95: "
             f"{t.map_points:g} points.", "",
             "| verdict | case | baseline p50 ms | current p50 ms | ratio | ratio CI | p | "
             "CPU time ratio (CI) | test | noise % repeats / runs / threshold % | "
             "ΔmAP50-95 pts | why | fingerprint changes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for verdict in order:
        for c in comp.of(verdict):
            lines.append("| " + " | ".join([
                f"**{c.verdict.value}**" if c.verdict is Verdict.REGRESSED else c.verdict.value,
                f"`{c.key}`",
                _f(c.baseline_p50_ms, ".2f"), _f(c.current_p50_ms, ".2f"),
                _f(c.ratio, ".3f"),
                f"{c.ratio_ci[0]:.3f}–{c.ratio_ci[1]:.3f} ({c.ci_level or 0.95:.0%})"
                if c.ratio_ci else "–",
                _f(c.p_value, ".1e"),
                f"{c.cpu_ratio:.3f} ({c.cpu_ratio_ci[0]:.3f}–{c.cpu_ratio_ci[1]:.3f})"
                if c.cpu_ratio is not None and c.cpu_ratio_ci else "–",
                c.test or "–",
                " / ".join(_f(v * 100 if v is not None else None, ".1f")
                           for v in (c.noise, c.run_noise, c.threshold)),
                _f(c.map_delta_points, "+.2f"),
                "; ".join(c.reasons) or "–",
                "⚠ " + "; ".join(c.fingerprint_changes) if c.fingerprint_changes else "–",
            ]) + " |")
    counts = ", ".join(f"{len(comp.of(v))} {v.value}" for v in order if comp.of(v))
    lines += ["", f"{counts}."]
    return "\n".join(lines) + "\n"


def _f(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "–"
