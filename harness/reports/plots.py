"""The report's figures, drawn with matplotlib's object API (no pyplot global state).

Each builder returns a :class:`matplotlib.figure.Figure` (or ``None`` when there is nothing
to draw) so tests can measure it; :func:`svg` turns one into inline SVG for the page.

Rules every figure keeps:

- cases in the results table's order, top to bottom, numbered as its rows
  (:mod:`edgebench.reports.labels`);
- one colour per backend, the same in every figure;
- a log latency axis (said in the axis label) when the plotted latencies span a factor of
  :data:`LOG_RATIO` or more, so one slow case does not squash the others to slivers;
- no two texts overlap: the latency-vs-mAP plot prints case numbers next to the markers,
  placed where they hit no other number or marker (coincident markers share one label,
  ``"2, 5"``); the key table under the plot names the cases;
- a figure is at most :data:`MAX_WIDTH_IN` wide; the page scales it to its width.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..records import CaseResult
from .labels import CaseLabel
from .tradeoffs import pareto_mask

LOG_RATIO = 10.0
"""Largest / smallest plotted latency from which the latency axis is logarithmic."""
MAX_WIDTH_IN = 11.0
"""Figure width cap, inches (the page is 1200 CSS px = 12.5 in wide)."""
MIN_MAP_SPAN = 0.02
"""The smallest mAP50-95 range the latency-vs-mAP axis shows (2 points): cases that differ
by 1e-5 (floating-point noise between runtimes) stay on one line instead of being
stretched over the whole axis."""
ROW_IN = 0.3
"""Height per case row in the box and median plots, inches (8 pt labels need 0.12)."""


def svg(fig: Any) -> str:
    """``fig`` as an inline ``<svg>`` element (no XML header, no date)."""
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        # the figures are sized so constrained layout fits (labels shortened, widths from
        # the label lengths, tests draw them with warnings as errors); should an unforeseen
        # label still not fit, matplotlib's "constrained_layout not applied" is caught here
        # (the tight bounding box still shows everything) and not printed on the terminal
        warnings.simplefilter("always")
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    for w in caught:
        if "constrained_layout" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def figure(width: float, height: float) -> Any:
    """A figure with constrained layout and an Agg canvas (text extents measurable)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), dpi=100)
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    return fig


def backend_colours(cases: Sequence[CaseResult]) -> dict[str, str]:
    """One matplotlib colour per backend, by backend name (stable across figures)."""
    return {b: f"C{i % 10}" for i, b in enumerate(sorted({r.case.backend for r in cases}))}


def use_log(values: Sequence[float]) -> bool:
    """True when the positive ``values`` span a factor of :data:`LOG_RATIO` or more."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) >= LOG_RATIO


def _latency_axis(axis: Any, values: Sequence[float], label: str) -> None:
    """Linear, or log with plain-number ticks (1, 2, 5 x 10^k), and the label says which."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not use_log(values):
        axis.set_label_text(label)
        return
    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive))
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    axis.set_label_text(f"{label} (log scale)")


def _set_log(ax: Any, which: str, values: Sequence[float], label: str) -> bool:
    log = use_log(values)
    if log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    _latency_axis(ax.xaxis if which == "x" else ax.yaxis, values, label)
    return log


def _row_plot_width(rows: Sequence[tuple[CaseResult, CaseLabel]]) -> float:
    """Inches: a 5.5 in plot area plus the case labels beside it (8 pt: ~0.065 in a
    character), capped at :data:`MAX_WIDTH_IN`."""
    return min(MAX_WIDTH_IN, 5.5 + 0.065 * max(len(lab.numbered) for _, lab in rows))


def latency_box_figure(cases: Sequence[CaseResult], labels: Sequence[CaseLabel]) -> Any:
    """Every timed sample of each measured case as a box (quartiles, 1.5 IQR whiskers,
    outliers as dots), one row per case in table order; ``None`` when nothing was timed."""
    rows = [(r, lab) for r, lab in zip(cases, labels, strict=True) if r.latency is not None]
    if not rows:
        return None
    colours = backend_colours(cases)
    fig = figure(_row_plot_width(rows), ROW_IN * len(rows) + 1.3)
    ax = fig.add_subplot()
    data = [[s / 1e6 for s in r.latency.samples_ns] for r, _ in rows]  # type: ignore[union-attr]
    positions = list(range(len(rows)))
    parts = ax.boxplot(data, positions=positions, orientation="horizontal", showfliers=True,
                       widths=0.6, patch_artist=True,
                       flierprops={"markersize": 2, "alpha": 0.5},
                       medianprops={"color": "black"})
    for box, (r, _) in zip(parts["boxes"], rows, strict=True):
        box.set_facecolor(colours[r.case.backend])
        box.set_alpha(0.6)
    ax.set_yticks(positions, [lab.numbered for _, lab in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first table row on top
    _set_log(ax, "x", [v for d in data for v in d],
             "latency per inference, ms (every timed sample)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def median_figure(cases: Sequence[CaseResult], labels: Sequence[CaseLabel]) -> Any:
    """Median latency per case with its 95 % interval, in table order. Bars on a linear
    axis; on a log axis (bars' lengths would mislead) a dot with the interval."""
    rows = [(r, lab) for r, lab in zip(cases, labels, strict=True) if r.latency is not None]
    if not rows:
        return None
    colours = backend_colours(cases)
    fig = figure(_row_plot_width(rows), ROW_IN * len(rows) + 1.3)
    ax = fig.add_subplot()
    p50 = [r.latency.p50_ms for r, _ in rows]  # type: ignore[union-attr]
    cis = [r.latency.median_ci95_ms for r, _ in rows]  # type: ignore[union-attr]
    # no interval where there is none (n < 6)
    lo = [p - ci[0] if ci is not None else 0.0 for p, ci in zip(p50, cis, strict=True)]
    hi = [ci[1] - p if ci is not None else 0.0 for p, ci in zip(p50, cis, strict=True)]
    positions = list(range(len(rows)))
    colour = [colours[r.case.backend] for r, _ in rows]
    extent = [v for p, ci in zip(p50, cis, strict=True) for v in (ci or (p, p))]
    if use_log(extent):
        ax.errorbar(p50, positions, xerr=[lo, hi], fmt="none", ecolor="black", capsize=3,
                    lw=1)
        ax.scatter(p50, positions, c=colour, s=40, zorder=3)
        _set_log(ax, "x", extent, "median latency, ms (dots; whiskers: 95 % CI of the median)")
    else:
        ax.barh(positions, p50, xerr=[lo, hi], capsize=3, color=colour)
        ax.set_xlabel("median latency, ms (bars; whiskers: 95 % CI of the median)")
    ax.set_yticks(positions, [lab.numbered for _, lab in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    return fig


def map_axis_limits(values: Sequence[float]) -> tuple[float, float]:
    """(bottom, top) of the mAP axis: the values' range with a 10 % margin, widened around
    its middle to at least :data:`MIN_MAP_SPAN`."""
    low, high = min(values), max(values)
    span = max(high - low, MIN_MAP_SPAN / 1.2)
    middle = (low + high) / 2
    return middle - span * 0.6, middle + span * 0.6


def pareto_points(cases: Sequence[CaseResult], labels: Sequence[CaseLabel], device: str
                  ) -> list[tuple[CaseResult, CaseLabel, float, float, bool]]:
    """(case, label, median ms, mAP50-95, on the front) of each case of ``device`` with
    both figures, in table order; the front as :func:`tradeoffs.pareto_mask` defines it."""
    rows = [(r, lab, r.latency.p50_ms, r.accuracy.map50_95)
            for r, lab in zip(cases, labels, strict=True)
            if r.case.device == device and r.latency is not None and r.accuracy is not None
            and r.accuracy.map50_95 is not None]
    mask = pareto_mask([(lat, acc) for _, _, lat, acc in rows])
    return [(r, lab, lat, acc, front)
            for (r, lab, lat, acc), front in zip(rows, mask, strict=True)]


def pareto_figure(cases: Sequence[CaseResult], labels: Sequence[CaseLabel], device: str
                  ) -> Any:
    """Median latency vs mAP50-95 of ``device``'s cases: markers coloured by backend,
    numbered as the table's rows; the Pareto front ringed and bounded by a dashed
    staircase (every case right of and below it is beaten by a front case on both)."""
    from matplotlib.lines import Line2D

    pts = pareto_points(cases, labels, device)
    if not pts:
        return None
    colours = backend_colours(cases)
    backends = sorted({r.case.backend for r, *_ in pts})
    fig = figure(9, 5.2)
    ax = fig.add_subplot()
    lats = [p[2] for p in pts]
    maps = [p[3] for p in pts]
    ax.scatter(lats, maps, s=36, c=[colours[r.case.backend] for r, *_ in pts], zorder=3)
    front = sorted((lat, acc) for _, _, lat, acc, on in pts if on)
    ax.scatter([p[0] for p in front], [p[1] for p in front], s=150, facecolors="none",
               edgecolors="black", linewidths=1, zorder=2)
    log = _set_log(ax, "x", lats, "median latency, ms")
    if log:
        ax.set_xlim(min(lats) / 1.3, max(lats) * 1.3)
    else:
        span = max(max(lats) - min(lats), 0.1 * max(lats), 1e-3)
        ax.set_xlim(max(0.0, min(lats) - 0.12 * span), max(lats) + 0.12 * span)
    ax.set_ylim(*map_axis_limits(maps))
    ax.set_ylabel("mAP50-95")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    (left, right), (bottom, _) = ax.get_xlim(), ax.get_ylim()
    xs, ys = [front[0][0]], [bottom]
    for i, (lat, acc) in enumerate(front):
        xs += [lat, front[i + 1][0] if i + 1 < len(front) else right]
        ys += [acc, acc]
    ax.plot(xs, ys, "--", color="grey", lw=1, zorder=1)
    ax.set_xlim(left, right)
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=colours[b], label=b) for b in backends]
    handles += [Line2D([], [], ls="--", color="grey", label="Pareto front"),
                Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="black",
                       label="on the front")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6),
               fontsize=8, frameon=False)
    place_numbers(fig, ax, [(lat, acc, lab.number) for _, lab, lat, acc, _ in pts])
    return fig


def place_numbers(fig: Any, ax: Any, points: Sequence[tuple[float, float, int]]) -> None:
    """Print each point's number next to it where it overlaps no other number, marker or
    the axes' edge. Points closer than a marker's width share one label (``"2, 5"``).
    Positions are found in display space after the layout is done."""
    fig.canvas.draw()  # runs the layout, so the data -> pixel transform is final
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    frame = ax.get_window_extent(renderer)
    px = [tuple(to_px((x, y))) for x, y, _ in points]
    clusters: list[list[int]] = []
    for i, (x, y) in enumerate(px):
        for c in clusters:
            cx, cy = px[c[0]]
            if abs(cx - x) < 7 and abs(cy - y) < 7:
                c.append(i)
                break
        else:
            clusters.append([i])
    marker = 7.0  # half-size of the ring around front markers, px
    taken = [(x - marker, y - marker, x + marker, y + marker) for x, y in px]
    scale = 72.0 / fig.dpi  # px -> points
    for cluster in clusters:
        x, y = px[cluster[0]]
        text = ", ".join(str(n) for n in sorted(points[i][2] for i in cluster))
        probe = ax.text(0, 0, text, fontsize=8, transform=None)
        box = probe.get_window_extent(renderer)
        probe.remove()
        w, h = box.width + 2, box.height + 2
        chosen = None
        for radius in (9, 16, 26, 38, 54, 74):
            for angle in (45, -45, 135, -135, 0, 180, 90, -90, 20, -20, 160, -160):
                dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(
                    math.radians(angle))
                left = x + dx - (0 if dx > 1 else w if dx < -1 else w / 2)
                bottom = y + dy - (0 if dy > 1 else h if dy < -1 else h / 2)
                cand = (left, bottom, left + w, bottom + h)
                inside = (cand[0] >= frame.x0 + 1 and cand[2] <= frame.x1 - 1
                          and cand[1] >= frame.y0 + 1 and cand[3] <= frame.y1 - 1)
                if inside and not any(_hit(cand, t) for t in taken):
                    chosen = (dx, dy, cand, radius)
                    break
            if chosen:
                break
        if chosen is None:  # nowhere free: accept the first spot (never seen at 30 cases)
            chosen = (9.0, 9.0, (x + 9, y + 9, x + 9 + w, y + 9 + h), 9)
        dx, dy, cand, radius = chosen
        taken.append(cand)
        ax.annotate(text, (points[cluster[0]][0], points[cluster[0]][1]),
                    xytext=((cand[0] + 1 - x) * scale, (cand[1] + 1 - y) * scale),
                    textcoords="offset points", fontsize=8, ha="left", va="bottom",
                    annotation_clip=False, in_layout=False,
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6,
                                "shrinkA": 0, "shrinkB": 4} if radius > 16 else None)


def _hit(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def history_figure(series: dict[str, list[tuple[datetime, float | None]]], ylabel: str
                   ) -> Any:
    """One line per series over the runs' start times (a real time axis, so a series that
    starts later never reorders the others); series without a value are left out. Each
    line's SVG group id is ``series-<k>`` (k from 0, in legend order)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    kept = {key: sorted((t, v) for t, v in points if v is not None)
            for key, points in series.items()}
    kept = {key: points for key, points in sorted(kept.items()) if points}
    if not kept:
        return None
    fig = figure(9, 4.2 + 0.2 * math.ceil(len(kept) / 2))
    ax = fig.add_subplot()
    for k, (key, points) in enumerate(kept.items()):
        (line,) = ax.plot([t for t, _ in points], [v for _, v in points], marker="o", ms=3,
                          label=key)
        line.set_gid(f"series-{k}")
    locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel("run start time (UTC)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2 if len(kept) > 1 else 1, fontsize=8,
               frameon=False)
    return fig


def drawn_texts(fig: Any) -> list[tuple[str, Any]]:
    """(text, window extent in px) of every non-empty text the figure draws: titles, axis
    and tick labels (ticks inside the axes' span only: matplotlib keeps labels for ticks
    just outside it but does not draw them), annotations, legend entries."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks: dict[int, bool] = {}  # id(tick label) -> drawn
    for ax in fig.axes:
        span = ax.get_window_extent(renderer)
        for text in ax.get_xticklabels(which="both"):
            box = text.get_window_extent(renderer)
            ticks[id(text)] = span.x0 - 1 <= (box.x0 + box.x1) / 2 <= span.x1 + 1
        for text in ax.get_yticklabels(which="both"):
            box = text.get_window_extent(renderer)
            ticks[id(text)] = span.y0 - 1 <= (box.y0 + box.y1) / 2 <= span.y1 + 1
    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if not ticks.get(id(text), True):
            continue
        out.append((text.get_text(), text.get_window_extent(renderer)))
    return out


def overlapping_texts(fig: Any) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose extents intersect by more than half a pixel."""
    texts = drawn_texts(fig)
    pairs = []
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            if _hit((box_a.x0 + 0.5, box_a.y0 + 0.5, box_a.x1 - 0.5, box_a.y1 - 0.5),
                    (box_b.x0, box_b.y0, box_b.x1, box_b.y1)):
                pairs.append((a, b))
    return pairs
