"""``report.html``: one self-contained page (inline SVG plots, no scripts, opens offline).

Summary table, latency distribution per case, latency vs mAP (with the Pareto front) per
device, median latency per backend, device fingerprints, and what was not measured. Plots
are drawn with matplotlib's object API (no pyplot global state).
"""

from __future__ import annotations

import html
import importlib.util
import io
from collections.abc import Sequence
from typing import Any, ClassVar

from ..contracts import Reporter
from ..hookspecs import Register, hookimpl
from ..records import CaseResult, RunReport, Status
from .markdown import (
    BUSY_HEADLINE,
    HEADER,
    NO_CI_NOTE,
    busy_cases,
    evaluation_sets,
    no_reference_detections,
    no_reference_detections_note,
    pipeline_label,
    result_row,
)
from .tradeoffs import TRADEOFF_HEADER, tradeoff_cells, tradeoffs

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:nth-child(-n+7),th:nth-child(-n+7){text-align:left}
.failed{background:#fde2e1}.skipped{background:#f3f3f3}
h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
figure{margin:1rem 0}figcaption{color:#555;font-size:12px}
.muted{color:#666}
.busy{background:#fff4d6;border-left:4px solid #e0a000;padding:.2rem .8rem}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.set_layout_engine("constrained")
    return fig


def _label(r: CaseResult) -> str:
    batch = r.latency.batch if r.latency is not None else 1
    return f"{r.case.model.split('@')[0]} {pipeline_label(r)} " \
           f"{r.case.backend} @{r.case.device} t{r.case.settings.threads or 'auto'}" \
           + (f" batch {batch}" if batch > 1 else "")


def latency_boxplot(cases: Sequence[CaseResult]) -> str:
    measured = [r for r in cases if r.latency is not None]
    if not measured:
        return ""
    fig = _figure(9, 0.45 * len(measured) + 1.2)
    ax = fig.add_subplot()
    data = [[s / 1e6 for s in r.latency.samples_ns] for r in measured]  # type: ignore[union-attr]
    ax.boxplot(data, orientation="horizontal", showfliers=True, widths=0.6,
               flierprops={"markersize": 2, "alpha": 0.5})
    ax.set_yticks(range(1, len(measured) + 1), [_label(r) for r in measured], fontsize=8)
    ax.set_xlabel("latency per inference, ms (every timed sample)")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by another with lower latency and higher mAP, by latency."""
    front: list[tuple[float, float]] = []
    for lat, acc in sorted(points):
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    return front


MIN_MAP_SPAN = 0.02
"""The smallest mAP50-95 range the latency-vs-mAP axis shows (2 points): cases that differ
by 1e-5 (floating-point noise between runtimes) stay on one line instead of being
stretched over the whole axis."""


def map_axis_limits(values: Sequence[float]) -> tuple[float, float]:
    """(bottom, top) of the mAP axis: the values' range with a 10 % margin, widened around
    its middle to at least :data:`MIN_MAP_SPAN`."""
    low, high = min(values), max(values)
    span = max(high - low, MIN_MAP_SPAN / 1.2)
    middle = (low + high) / 2
    return middle - span * 0.6, middle + span * 0.6


def pareto_plots(cases: Sequence[CaseResult]) -> list[tuple[str, str]]:
    out = []
    for device in sorted({r.case.device for r in cases}):
        pts = [(r.latency.p50_ms, r.accuracy.map50_95, _label(r)) for r in cases
               if r.case.device == device and r.latency and r.accuracy
               and r.accuracy.map50_95 is not None]
        if not pts:
            continue
        fig = _figure(7, 4.2)
        ax = fig.add_subplot()
        for lat, acc, label in pts:
            ax.scatter(lat, acc, s=30)
            ax.annotate(label, (lat, acc), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        front = pareto_front([(p[0], p[1]) for p in pts])
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", lw=1,
                label="Pareto front")
        ax.set_xlabel("median latency, ms")
        ax.set_ylabel("mAP50-95")
        ax.set_ylim(*map_axis_limits([p[1] for p in pts]))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.append((device, _svg(fig)))
    return out


def backend_bars(cases: Sequence[CaseResult]) -> str:
    measured = [r for r in cases if r.latency is not None]
    if not measured:
        return ""
    fig = _figure(8, 0.4 * len(measured) + 1.2)
    ax = fig.add_subplot()
    labels = [_label(r) for r in measured]
    p50 = [r.latency.p50_ms for r in measured]  # type: ignore[union-attr]
    cis = [r.latency.median_ci95_ms for r in measured]  # type: ignore[union-attr]
    p50s = [r.latency.p50_ms for r in measured]  # type: ignore[union-attr]
    # no bar where there is no 95 % interval (n < 6)
    lo = [p - ci[0] if ci is not None else 0.0 for p, ci in zip(p50s, cis, strict=True)]
    hi = [ci[1] - p if ci is not None else 0.0 for p, ci in zip(p50s, cis, strict=True)]
    backends = sorted({r.case.backend for r in measured})
    colours = {b: f"C{i}" for i, b in enumerate(backends)}
    ax.barh(range(len(measured)), p50, xerr=[lo, hi], capsize=3,
            color=[colours[r.case.backend] for r in measured])
    ax.set_yticks(range(len(measured)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median latency, ms (bars: 95 % CI of the median)")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _table(report: RunReport) -> str:
    head, _ = HEADER.split("\n")
    cols = [c.strip() for c in head.strip("|").split("|")]
    rows = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for r in report.cases:
        cells = [c.strip() for c in result_row(r).strip().strip("|").split("|")]
        rows.append(f'<tr class="{r.status.value}">'
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _evaluation_html(report: RunReport) -> list[str]:
    """What the accuracy figures were measured on (as in report.md)."""
    sets = evaluation_sets(report)
    if not sets:
        return []

    def code(text: str) -> str:  # the dataset name is in backticks
        head, _, rest = text[1:].partition("`")
        return f"<code>{html.escape(head)}</code>{html.escape(rest)}"

    if len(sets) == 1:
        return [f"<p>Accuracy measured on {code(next(iter(sets)))}; input size per case: "
                "the <i>input</i> column (H×W).</p>"]
    return ["<p>Accuracy measured on (input size per case: the <i>input</i> column, "
            "H×W):</p><ul>", *(f"<li>{code(text)} ({n} case{'s' if n > 1 else ''})</li>"
                                for text, n in sets.items()), "</ul>"]


def render_html(report: RunReport) -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>edgebench {e(report.run_id)}</title><style>{CSS}</style></head><body>",
             f"<h1>edgebench run {e(report.run_id)}</h1>",
             f"<p class=muted>edgebench {e(report.tool_version)}, report schema "
             f"{report.schema_version}, state <b>{e(report.state.value)}</b>, started "
             f"{e(report.created_at)}, finished {e(report.finished_at or '–')}.</p>",
             "<h2>Summary</h2>", *_evaluation_html(report)]
    busy = busy_cases(report)
    if busy:  # the device's load: see edgebench.load
        parts += [f"<div class=busy><p><b>{e(BUSY_HEADLINE)}</b></p><ul>",
                  *(f"<li><code>{e(cid)}</code>: {e(why)}</li>" for cid, why in busy),
                  "</ul></div>"]
    parts.append(_table(report))
    if any(r.accuracy is not None and no_reference_detections(r.accuracy.fidelity)
           for r in report.cases):
        parts.append(f"<p class=muted>{e(no_reference_detections_note())}</p>")
    if any(r.latency is not None and r.latency.batch > 1 for r in report.cases):
        parts.append("<p class=muted>Batch: a model with a static batch of B runs B images "
                     "per inference; its latency figures (and the plots) are per inference "
                     "(per batch), with the median per image (p50 / B) and images/s "
                     "(B / p50) in brackets.</p>")
    if any(r.latency is not None and r.latency.median_ci95_ms is None for r in report.cases):
        parts.append(f"<p class=muted>{e(NO_CI_NOTE)}</p>")
    rows = tradeoffs(report)
    if rows:
        head = [c.strip() for c in TRADEOFF_HEADER.split("\n")[0].strip("|").split("|")]
        parts += ["<h2>Compression: speed-up and mAP delta versus fp32</h2><table><tr>"
                  + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>"]
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in tradeoff_cells(r)) + "</tr>"
                  for r in rows]
        parts.append("</table><p class=muted>Same model, backend, device and settings; "
                     "★: on the device's latency-vs-mAP Pareto front.</p>")
    box = latency_boxplot(report.cases)
    if box:
        parts += ["<h2>Latency distribution</h2><figure>", box,
                  "<figcaption>Box: quartiles; whiskers: 1.5 IQR; dots: outliers.</figcaption>"
                  "</figure>"]
    for device, svg in pareto_plots(report.cases):
        parts += [f"<h2>Latency vs mAP on {e(device)}</h2><figure>", svg,
                  "<figcaption>Up and to the left is better; the dashed line joins the "
                  "cases no other case beats on both.</figcaption></figure>"]
    bars = backend_bars(report.cases)
    if bars:
        parts += ["<h2>Median latency per backend</h2><figure>", bars, "</figure>"]
    devices = {r.device.uri: r.device for r in report.cases if r.device}
    if devices:
        parts.append("<h2>Devices</h2><table><tr><th>device</th><th>CPU</th><th>arch</th>"
                     "<th>cores</th><th>RAM GiB</th><th>OS</th><th>governor</th>"
                     "<th>temp °C</th><th>runtimes</th></tr>")
        for info in devices.values():
            ram = f"{info.ram_bytes / 2**30:.1f}" if info.ram_bytes else "–"
            temp = f"{info.temperature_c:.0f}" if info.temperature_c is not None else "–"
            runtimes = ", ".join(f"{k} {v}" for k, v in sorted(info.runtimes.items()))
            parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in (
                info.uri, info.cpu_model or "?", info.arch, info.cores, ram, info.os,
                info.governor or "–", temp, runtimes)) + "</tr>")
        parts.append("</table>")
    problems = [r for r in report.cases if r.status is not Status.OK]
    if problems:
        parts.append("<h2>Not measured</h2><ul>")
        parts += [f"<li class={r.status.value}><code>{e(r.case.id)}</code>: "
                  f"<b>{r.status.value}</b>: {e(r.reason or '')}</li>" for r in problems]
        parts.append("</ul>")
    notes = [(r, n) for r in report.cases for n in r.notes]
    if notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li><code>{e(r.case.id)}</code>: {e(n)}</li>" for r, n in notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_history_html(title: str, series: dict[str, list[tuple[str, float | None]]],
                        ylabel: str) -> str:
    """One line per case over runs."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    for key, points in sorted(series.items()):
        xs = [p[0] for p in points if p[1] is not None]
        ys = [p[1] for p in points if p[1] is not None]
        ax.plot(xs, ys, marker="o", ms=3, label=key)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
            f"{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><figure>{_svg(fig)}</figure></body></html>")


class HtmlReporter(Reporter):
    """``report.html``, self-contained."""

    name: ClassVar[str] = "html"
    filename: ClassVar[str] = "report.html"

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("matplotlib") is None:
            return "matplotlib is not installed: pip install matplotlib"
        return None

    def render(self, report: RunReport) -> str:
        return render_html(report)


@hookimpl
def edgebench_register_reporters(register: Register) -> None:
    register(HtmlReporter)
