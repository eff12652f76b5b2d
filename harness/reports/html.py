"""``report.html``: one self-contained page (inline SVG plots, no scripts, opens offline).

Summary table (rows numbered; every plot numbers its cases the same way), the notes
``report.md`` has (one list, :mod:`edgebench.reports.notes`), latency distribution per case,
latency vs mAP (with the Pareto front and a key table) per device, median latency per case,
device fingerprints, and what was not measured. The figures are built in
:mod:`edgebench.reports.plots`.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from ..contracts import Reporter
from ..hookspecs import Register, hookimpl
from ..records import CaseResult, RunReport
from .labels import MAX_MODEL_CHARS, CaseLabel, case_labels, shorten
from .markdown import (
    BUSY_HEADLINE,
    HEADER,
    busy_cases,
    evaluation_sets,
    place_line,
    result_row,
)
from .notes import footnotes, inline_html, preamble, section_html, sections
from .plots import MIN_MAP_SPAN as MIN_MAP_SPAN  # kept importable here
from .plots import (
    history_figure,
    latency_box_figure,
    median_figure,
    pareto_figure,
    pareto_points,
    svg,
)
from .plots import map_axis_limits as map_axis_limits
from .tradeoffs import (
    FRONT_HEADING,
    TRADEOFF_HEADER,
    TRADEOFF_NOTE,
    front_lines,
    tradeoff_cells,
    tradeoffs,
)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:10.5px}
td,th{border:1px solid #ccc;padding:2px 3px;text-align:left}
table.results :is(td,th):nth-child(n+10),table.tradeoffs :is(td,th):nth-child(n+6),
table.key :is(td,th):nth-child(n+3),
:is(table.results,table.tradeoffs,table.key) :is(td,th):first-child{text-align:right}
table.results td:nth-child(2){min-width:8em}
.scroll{overflow-x:auto;max-width:100%}
.failed{background:#fde2e1}.skipped{background:#f3f3f3}
h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
figure{margin:1rem 0}figcaption{color:#555;font-size:12px}
figure svg{max-width:100%;height:auto;display:block}
.muted{color:#666}
.busy{background:#fff4d6;border-left:4px solid #e0a000;padding:.2rem .8rem}
"""


def _figure_html(fig: object, caption: str = "") -> list[str]:
    if fig is None:
        return []
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return ["<figure>", svg(fig), cap + "</figure>"]


def _pareto_key(cases: Sequence[CaseResult], labels: Sequence[CaseLabel], device: str
                ) -> str:
    """The latency-vs-mAP plot's key: each number's case (full id in its tooltip)."""
    e = html.escape
    rows = ["<tr><th>#</th><th>case</th><th>p50 ms</th><th>mAP50-95</th>"
            "<th>Pareto front</th></tr>"]
    rows += [f"<tr><td>{lab.number}</td><td title=\"{e(lab.full)}\">{e(lab.short)}</td>"
             f"<td>{lat:.2f}</td><td>{acc:.3f}</td><td>{'★' if front else ''}</td></tr>"
             for _, lab, lat, acc, front in pareto_points(cases, labels, device)]
    return "<table class=key>" + "".join(rows) + "</table>"


def _table(report: RunReport, labels: Sequence[CaseLabel]) -> str:
    """The results table of ``report.md``, its rows numbered as the plots number them."""
    head, _ = HEADER.split("\n")
    cols = ["#", *(c.strip() for c in head.strip("|").split("|"))]
    rows = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for r, lab in zip(report.cases, labels, strict=True):
        cells = [html.escape(c.strip()) for c in result_row(r).strip().strip("|").split("|")]
        stem, at, sha = r.case.model.rpartition("@")
        if at and len(stem) > MAX_MODEL_CHARS:  # the full name in its tooltip
            cells[0] = (f'<span title="{html.escape(r.case.model)}">'
                        f"{html.escape(shorten(stem))}<wbr>@{html.escape(sha)}</span>")
        rows.append(f'<tr class="{r.status.value}"><td>{lab.number}</td>'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<div class=scroll><table class=results>" + "".join(rows) + "</table></div>"


def _evaluation_html(report: RunReport) -> list[str]:
    """What the accuracy figures were measured on (as in report.md)."""
    sets = evaluation_sets(report)
    if not sets:
        return []
    if len(sets) == 1:
        return [f"<p>Accuracy measured on {inline_html(next(iter(sets)))}; input size per "
                "case: the <code>input</code> column (H×W).</p>"]
    return ["<p>Accuracy measured on (input size per case: the <code>input</code> column, "
            "H×W):</p><ul>", *(f"<li>{inline_html(text)} ({n} case{'s' if n > 1 else ''})"
                                "</li>" for text, n in sets.items()), "</ul>"]


def _tradeoff_html(report: RunReport) -> list[str]:
    rows = tradeoffs(report)
    if not rows:
        return []
    e = html.escape
    head = [c.strip() for c in TRADEOFF_HEADER.split("\n")[0].strip("|").split("|")]
    return ["<h2>Compression: speed-up and mAP delta versus fp32</h2>",
            f"<p class=muted>{inline_html(TRADEOFF_NOTE)}</p>"
            "<div class=scroll><table class=tradeoffs><tr>"
            + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>",
            *("<tr>" + "".join(f"<td>{e(c)}</td>" for c in tradeoff_cells(r)) + "</tr>"
              for r in rows),
            f"</table></div><h3>{e(FRONT_HEADING)}</h3><ul>",
            *(f"<li>{inline_html(line)}</li>" for line in front_lines(rows)), "</ul>"]


def _devices_html(report: RunReport) -> list[str]:
    """The device fingerprints, one row per device (per farm board of a URI that stands for
    several: its place in its own column, as report.md's place line)."""
    e = html.escape
    devices = {(r.device.uri, r.device.place.name if r.device.place else None): r.device
               for r in report.cases if r.device}
    if not devices:
        return []
    places = any(info.place is not None for info in devices.values())
    parts = ["<h2>Devices</h2><div class=scroll><table><tr><th>device</th>"
             + ("<th>place</th>" if places else "") + "<th>CPU</th>"
             "<th>arch</th><th>cores</th><th>RAM GiB</th><th>OS</th><th>governor</th>"
             "<th>temp °C</th><th>runtimes</th></tr>"]
    for info in devices.values():
        ram = f"{info.ram_bytes / 2**30:.1f}" if info.ram_bytes else "–"
        temp = f"{info.temperature_c:.0f}" if info.temperature_c is not None else "–"
        runtimes = ", ".join(f"{k} {v}" for k, v in sorted(info.runtimes.items()))
        place = "" if not places else \
            f"<td>{inline_html(place_line(info.place)) if info.place else '–'}</td>"
        parts.append(f"<tr><td>{e(info.uri)}</td>{place}" + "".join(
            f"<td>{e(str(c))}</td>" for c in (
                info.cpu_model or "?", info.arch, info.cores, ram, info.os,
                info.governor or "–", temp, runtimes)) + "</tr>")
    parts.append("</table></div>")
    return parts


def _busy_html(report: RunReport) -> list[str]:
    """The busy-device warning (see :mod:`edgebench.load`), or nothing."""
    e = html.escape
    busy = busy_cases(report)
    if not busy:
        return []
    return [f"<div class=busy><p><b>{e(BUSY_HEADLINE)}</b></p><ul>",
            *(f"<li><code>{e(cid)}</code>: {e(why)}</li>" for cid, why in busy), "</ul></div>"]


def render_html(report: RunReport) -> str:
    e = html.escape
    labels = case_labels(report.cases)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>edgebench {e(report.run_id)}</title><style>{CSS}</style></head><body>",
             f"<h1>edgebench run {e(report.run_id)}</h1>",
             f"<p class=muted>edgebench {e(report.tool_version)}, report schema "
             f"{report.schema_version}, state <b>{e(report.state.value)}</b>, started "
             f"{e(report.created_at)}, finished {e(report.finished_at or '–')}.</p>",
             *(f"<p>{inline_html(note)}</p>" for note in preamble(report)),
             "<h2>Summary</h2>", *_evaluation_html(report), *_busy_html(report),
             _table(report, labels),
             *(f"<p class=muted>{inline_html(note)}</p>" for note in footnotes(report)),
             *_tradeoff_html(report)]
    numbered = "Cases numbered as the summary table's rows"
    box = _figure_html(latency_box_figure(report.cases, labels),
                       f"{numbered}. Box: quartiles; whiskers: 1.5 IQR; dots: outliers.")
    if box:
        parts += ["<h2>Latency distribution</h2>", *box]
    for device in sorted({r.case.device for r in report.cases}):
        fig = pareto_figure(report.cases, labels, device)
        if fig is None:
            continue
        parts += [f"<h2>Latency vs mAP on {e(device)}</h2>", *_figure_html(
            fig, f"Up and to the left is better. {numbered} (key below; coincident cases "
                 "share a label). Ringed: on the Pareto front (no other case is both faster "
                 "and more accurate); every case right of and below the dashed staircase is "
                 "beaten on both by a front case."), _pareto_key(report.cases, labels, device)]
    bars = _figure_html(median_figure(report.cases, labels),
                        f"{numbered}; colour: backend.")
    if bars:
        parts += ["<h2>Median latency per case</h2>", *bars]
    parts += [section_html(section) for section in sections(report)]
    parts += _devices_html(report)
    parts.append("</body></html>")
    return "\n".join(parts)


def render_history_html(title: str, series: dict[str, list[tuple[datetime, float | None]]],
                        ylabel: str) -> str:
    """One line per case over the runs' start times; series without any value are left
    out (and named under the plot)."""
    e = html.escape
    empty = sorted(key for key, points in series.items()
                   if all(v is None for _, v in points))
    body = _figure_html(history_figure(series, ylabel)) or ["<p>No value to plot.</p>"]
    if empty:
        body.append("<p class=muted>Not plotted (no value in any run): "
                    + ", ".join(f"<code>{e(k)}</code>" for k in empty) + ".</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
            f"{e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{e(title)}</h1>" + "\n".join(body) + "</body></html>")


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

    def prepare(self) -> None:
        """Import matplotlib's figure and Agg canvas while the host plans (up to about 1 s
        on the 2-vCPU VM, about half of a warm run's report writing:
        docs/measurements.md), and what its first SVG ``savefig`` imports (the SVG backend,
        and pyplot, which matplotlib's canvas switch loads): 0.05-0.3 s less in the first
        render at the end of the run (2 vCPUs, load 3-4, 2026-12-01)."""
        for module in ("matplotlib.figure", "matplotlib.backends.backend_agg",
                       "matplotlib.backends.backend_svg", "matplotlib.pyplot"):
            importlib.import_module(module)


@hookimpl
def edgebench_register_reporters(register: Register) -> None:
    register(HtmlReporter)
