"""The HTML report's plots read right at 2, 12 and 30 cases: short numbered labels in the
table's order, a log latency axis when latencies span 10x, the Pareto front drawn, no two
texts overlapping (measured from matplotlib's renderer), the page no wider than the window
(measured in Chromium), and every note report.md has.

The 12- and 30-case reports are synthetic records (fast); the 3-case one is a real run.
Set EDGEBENCH_SCREENSHOTS=DIR to keep the Chromium screenshots.
"""

from __future__ import annotations

import html as htmllib
import itertools
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgebench.records import (
    SCHEMA_VERSION,
    Accuracy,
    Case,
    CaseResult,
    DeviceInfo,
    Fidelity,
    RunReport,
    RunSettings,
    RunState,
    RuntimeInfo,
    Status,
)
from edgebench.stats import latency_stats

LONG = "yolov8n-retail-shelf-detector-customer-finetune-v3-imgsz320@1a2b3c4d"
MODELS = (LONG, "yolo26n@5e6f7a8b")
BACKENDS = {"onnxruntime": 20.0, "litert": 25.0, "ncnn": 11.0, "openvino": 15.0, "mnn": 19.0}
WINDOW = (1300, 2600)


def info(uri: str) -> DeviceInfo:
    return DeviceInfo(uri=uri, hostname=uri, arch="aarch64" if "ssh" in uri else "x86_64",
                      os="Linux", cpu_model="cpu", cores=4, ram_bytes=4 << 30, python="3.11",
                      governor="performance", temperature_c=None)


def synthetic(n: int, devices: tuple[str, ...] = ("local",), threads: tuple[int, ...] = (1, 4),
              *, models: tuple[str, ...] = MODELS, variants: tuple[str, ...] = ("fp32", "int8"),
              backends: tuple[str, ...] = tuple(BACKENDS), failed: int | None = None,
              seed: int = 0) -> RunReport:
    """The first ``n`` cases of models x variants x backends x devices x threads (the
    planner's order), with realistic spreads: ncnn with 25x outliers, int8 faster and 1
    point less accurate, backends 1e-5 apart in mAP (so markers coincide); case number
    ``failed`` (from 0) failed."""
    rng = np.random.default_rng(seed)
    cases = []
    grid = itertools.product(models, variants, backends, devices, threads)
    for k, (model, variant, backend, device, t) in enumerate(itertools.islice(grid, n)):
        case = Case(id=f"{model}|{variant}|{backend}|{device}|t{t}", model=model,
                    backend=backend, device=device, settings=RunSettings(threads=t),
                    pipeline=() if variant == "fp32" else (variant,))
        if k == failed:
            cases.append(CaseResult(case=case, status=Status.FAILED, device=info(device),
                                    reason="load failed: unsupported op Foo"))
            continue
        median = (BACKENDS[backend] * (1.6 if model != LONG else 1.0)
                  * {"fp32": 1.0, "fp16": 0.8, "int8": 0.6}[variant] * (1.8 if t == 1 else 1.0)
                  * (4.0 if device != "local" else 1.0))
        samples = median * np.exp(0.05 * rng.standard_normal(60))
        if backend == "ncnn":
            samples[:3] *= 25  # spinning worker threads on a busy box
        acc_base = 0.803 if model == LONG else 0.42
        acc = Accuracy(status=Status.OK, reason=None, dataset="shapes", images=10,
                       labelled=True, map50=0.95,
                       map50_95=acc_base - {"fp32": 0, "fp16": 1e-4, "int8": 0.01}[variant]
                       + 1e-5 * list(BACKENDS).index(backend))
        cases.append(CaseResult(
            case=case, status=Status.OK, device=info(device),
            runtime=RuntimeInfo(backend, "1.0", t),
            latency=latency_stats([int(s * 1e6) for s in samples]), accuracy=acc))
    return RunReport(schema_version=SCHEMA_VERSION, tool_version="0", run_id=f"synthetic-{n}",
                     created_at="2026-11-30T21:00:00+00:00", state=RunState.COMPLETE,
                     host=info("local"), argv=(), cases=tuple(cases))


def figures(report: RunReport) -> list[tuple[str, object]]:
    from edgebench.reports.labels import case_labels
    from edgebench.reports.plots import latency_box_figure, median_figure, pareto_figure

    labels = case_labels(report.cases)
    out = [("box", latency_box_figure(report.cases, labels)),
           ("median", median_figure(report.cases, labels))]
    out += [(f"pareto {d}", pareto_figure(report.cases, labels, d))
            for d in sorted({r.case.device for r in report.cases})]
    return [(name, fig) for name, fig in out if fig is not None]


# --- labels and order ----------------------------------------------------------------------


def test_labels_are_short_and_say_only_what_differs() -> None:
    from edgebench.reports.labels import MAX_MODEL_CHARS, case_labels

    one = case_labels(synthetic(2, threads=(4,)).cases)
    assert [lab.short for lab in one] == [
        "yolov8n-retail…e-v3-imgsz320 fp32 onnxruntime",
        "yolov8n-retail…e-v3-imgsz320 fp32 litert"]
    assert all(len(lab.short.split(" ")[0]) <= MAX_MODEL_CHARS for lab in one)
    assert one[0].full == f"{LONG}|fp32|onnxruntime|local|t4"  # the tooltip keeps it all
    many = case_labels(synthetic(12, devices=("local", "ssh://pi@rpi5")).cases)
    texts = [lab.short for lab in many]
    assert texts[0] == "yolov8n-retail…e-v3-imgsz320 fp32 onnxruntime on local 1 thread"
    assert texts[1] == "yolov8n-retail…e-v3-imgsz320 fp32 onnxruntime on local 4 threads"
    assert texts[2] == "yolov8n-retail…e-v3-imgsz320 fp32 onnxruntime on ssh://pi@rpi5 1 thread"
    assert not any("@local" in t or "tauto" in t or "auto" in t for t in texts)
    assert len(set(texts)) == len(texts)
    assert [lab.number for lab in many] == list(range(1, 13))


def test_threads_label_is_the_number_the_runtime_used() -> None:
    """A case run with the runtime's default threads shows the count the runner reported
    (ncnn: 2), never ``auto``."""
    import dataclasses

    from edgebench.reports.labels import case_labels

    report = synthetic(2, threads=(1,))
    default = dataclasses.replace(
        report.cases[1], case=dataclasses.replace(report.cases[1].case,
                                                  settings=RunSettings(threads=None)),
        runtime=RuntimeInfo("litert", "1.0", 2))
    labels = case_labels((report.cases[0], default))
    assert labels[0].short.endswith(" 1 thread") and labels[1].short.endswith(" 2 threads")


def test_one_case_order_in_the_table_and_every_plot() -> None:
    from edgebench.reports.html import render_html
    from edgebench.reports.labels import case_labels

    report = synthetic(12, devices=("local", "ssh://pi@rpi5"), failed=4)
    labels = case_labels(report.cases)
    measured = [lab.numbered for r, lab in zip(report.cases, labels, strict=True)
                if r.latency is not None]
    for name, fig in figures(report):
        ax = fig.axes[0]  # type: ignore[attr-defined]
        if name.startswith("pareto"):
            continue
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        top_first = sorted(zip(ax.get_yticks(), ticks, strict=True),
                           key=lambda p: p[0], reverse=ax.yaxis_inverted() is False)
        assert [t for _, t in top_first] == measured, name
    page = render_html(report)
    rows = re.findall(r'<tr class="\w+"><td>(\d+)</td><td>(?:<span title="([^"]*)">)?', page)
    assert [int(n) for n, _ in rows] == list(range(1, 13))
    assert [m for _, m in rows] == [r.case.model for r in report.cases]  # long: tooltip
    for device in ("local", "ssh://pi@rpi5"):  # the key tables list cases in table order
        key = page.split(f"Latency vs mAP on {device}</h2>")[1].split("</table>")[0]
        numbers = [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", key)]
        assert numbers == sorted(numbers) and numbers
        assert all(report.cases[n - 1].case.device == device for n in numbers)


def test_compression_table_follows_the_results_table() -> None:
    """The speed-up table (both reports) lists cases in the results table's order, with
    their row number and model (two models' fp32 litert rows were indistinguishable)."""
    from edgebench.reports.html import render_html
    from edgebench.reports.markdown import render_markdown

    report = synthetic(12, backends=("onnxruntime", "litert", "ncnn"), threads=(4,), failed=4)
    md = render_markdown(report).split("## Compression")[1].split("###")[0]
    rows = [line.split(" | ") for line in md.splitlines() if re.match(r"\| \d", line)]
    numbers = [int(r[0].strip("| ")) for r in rows]
    assert numbers == [n for n in range(1, 13) if n != 5]
    assert [r[1] for r in rows][:2] == ["yolov8n-retail…e-v3-imgsz320"] * 2
    assert [r[1] for r in rows][-1] == "yolo26n"
    page = render_html(report).split("<table class=tradeoffs>")[1].split("</table>")[0]
    assert [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page)] == numbers


# --- axes, front, overlaps -------------------------------------------------------------


def test_log_latency_axis_when_latencies_span_10x() -> None:
    wide = synthetic(3, threads=(4,))  # ncnn's 25x outliers in the box plot
    box = dict(figures(wide))["box"]
    ax = box.axes[0]  # type: ignore[attr-defined]
    assert ax.get_xscale() == "log" and "(log scale)" in ax.get_xlabel()
    median = dict(figures(wide))["median"].axes[0]  # type: ignore[attr-defined]
    assert median.get_xscale() == "linear" and "log" not in median.get_xlabel()
    slow = synthetic(12, devices=("local", "ssh://pi@rpi5"))  # 6.6 .. 180 ms medians
    median = dict(figures(slow))["median"].axes[0]  # type: ignore[attr-defined]
    assert median.get_xscale() == "log" and "(log scale)" in median.get_xlabel()
    pareto = dict(figures(slow))["pareto ssh://pi@rpi5"].axes[0]  # type: ignore[attr-defined]
    assert pareto.get_xscale() == "linear"  # 26..90 ms on the Pi: under 10x
    from edgebench.reports.plots import use_log

    assert use_log([1.0, 10.0]) and not use_log([1.0, 9.99])


def test_pareto_front_is_drawn_and_matches_a_brute_force_oracle() -> None:
    from edgebench.reports.plots import pareto_points
    from edgebench.reports.tradeoffs import pareto_mask

    rng = np.random.default_rng(3)
    for _ in range(200):
        pts = [(float(a), float(b)) for a, b in rng.integers(0, 5, size=(6, 2))]
        oracle = [not any(q != p and q[0] <= p[0] and q[1] >= p[1] for q in pts)
                  for p in pts]
        assert pareto_mask(pts) == oracle, pts
    # same latency, higher mAP: the lower one is beaten (a latency-sorted scan kept both)
    assert pareto_mask([(10.0, 0.5), (10.0, 0.6)]) == [False, True]
    # 4e-5 more mAP (runtime noise, printed as the same 0.803) does not put a slower
    # backend on the front; a difference the table shows does
    assert pareto_mask([(10.0, 0.80300), (12.0, 0.80304)]) == [True, False]
    assert pareto_mask([(10.0, 0.80300), (12.0, 0.80400)]) == [True, True]
    assert pareto_mask([(10.0, 0.80304), (10.0, 0.80300)]) == [True, True]  # a tie

    report = synthetic(12, threads=(4,))
    (_, fig), = [f for f in figures(report) if f[0].startswith("pareto")]
    from edgebench.reports.labels import case_labels

    front = sorted((lat, acc) for _, _, lat, acc, on in
                   pareto_points(report.cases, case_labels(report.cases), "local") if on)
    ax = fig.axes[0]  # type: ignore[attr-defined]
    (stairs,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    vertices = set(zip(stairs.get_xdata(), stairs.get_ydata(), strict=True))
    assert front and all(p in vertices for p in front)
    # a staircase: latency never decreases, mAP never decreases along it
    xs, ys = list(stairs.get_xdata()), list(stairs.get_ydata())
    assert xs == sorted(xs) and ys == sorted(ys)


@pytest.mark.parametrize("n, devices", [(2, ("local",)), (12, ("local", "ssh://pi@rpi5")),
                                        (30, ("local",))])
def test_no_two_texts_overlap(n: int, devices: tuple[str, ...]) -> None:
    from edgebench.reports.plots import drawn_texts, overlapping_texts

    report = synthetic(n, devices=devices, threads=(1, 4) if n > 2 else (4,))
    for name, fig in figures(report):
        if name.startswith("pareto"):  # every case of the device is labelled, once
            drawn = {t for t, _ in drawn_texts(fig)}
            marks = [t.get_text() for t in fig.axes[0].texts]  # type: ignore[attr-defined]
            assert set(marks) <= drawn
            numbers = [int(x) for t in marks for x in t.split(", ")]
            device = name.split(" ", 1)[1]
            assert sorted(numbers) == [i + 1 for i, r in enumerate(report.cases)
                                       if r.case.device == device], marks
        assert overlapping_texts(fig) == [], name


def test_the_measure_finds_overlapping_texts() -> None:
    """The overlap measure is not vacuous: two labels at one spot are found."""
    from edgebench.reports.plots import figure, overlapping_texts

    fig = figure(4, 3)
    ax = fig.add_subplot()
    ax.annotate("shapes-yolov8n fp32 ncnn", (0.5, 0.5))
    ax.annotate("shapes-yolov8n fp32 litert", (0.51, 0.5))
    assert ("shapes-yolov8n fp32 ncnn", "shapes-yolov8n fp32 litert") in overlapping_texts(fig)


def long_names(report: RunReport, length: int) -> RunReport:
    import dataclasses

    return dataclasses.replace(report, cases=tuple(
        dataclasses.replace(r, case=dataclasses.replace(
            r.case, model="m" * length + r.case.model[-9:])) for r in report.cases))


@pytest.mark.parametrize("length", [60, 200])
def test_figures_fit_without_matplotlib_layout_warnings(length: int) -> None:
    """Long model names used to collapse the axes ("constrained_layout not applied"):
    drawing each figure with warnings as errors shows the layout fits."""
    report = long_names(synthetic(12, backends=("onnxruntime", "litert", "ncnn"),
                                  threads=(1, 4)), length)
    for _, fig in figures(report):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig.canvas.draw()  # type: ignore[attr-defined]


def test_no_matplotlib_warning_reaches_the_terminal(recwarn: pytest.WarningsRecorder) -> None:
    from edgebench.reports.html import render_html

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        render_html(synthetic(30))
        render_html(long_names(synthetic(12, devices=("local", "ssh://pi@rpi5")), 120))
    assert [str(w.message) for w in recwarn.list] == []


# --- notes ---------------------------------------------------------------------------------


def _plain_md(text: str) -> str:
    return " ".join(text.replace("`", "").replace("**", "").split())


def _plain_html(page: str) -> str:
    inline = re.sub(r"</?(code|b|i)>", "", page)  # as the Markdown's backticks and stars
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def noted_report() -> RunReport:
    """A report that triggers every note report.md can print."""
    import dataclasses

    base = synthetic(4, threads=(4,), failed=3)
    few = dataclasses.replace(base.cases[0], latency=latency_stats([5_000_000] * 3),
                              notes=("started hot (72 °C)", "retried 1x"))
    fid = Fidelity(reference="onnxruntime 1.32.0 on the host", max_abs=1e-4, mean_abs=1e-5,
                   box_max_abs_px=0.1, reference_detections=0)
    acc = dataclasses.replace(base.cases[1].accuracy, fidelity=fid,  # type: ignore[type-var]
                              reason="3 images hold no box",
                              left_out={"images/broken.jpg": "corrupt JPEG"})
    batch = latency_stats([8_000_000] * 20, batch=4, cpu_samples_ns=[7_000_000] * 20)
    cases = (few, dataclasses.replace(base.cases[1], accuracy=acc),
             dataclasses.replace(base.cases[2], latency=batch), base.cases[3])
    return dataclasses.replace(base, cases=cases, baseline_model="yolo26n@5e6f7a8b")


def test_every_markdown_note_is_in_the_html() -> None:
    """Every footnote, note section and prose line of report.md (all but its tables and
    the Devices list, which the page shows as a table) is in report.html."""
    from edgebench.reports.html import render_html
    from edgebench.reports.markdown import render_markdown
    report = noted_report()
    md, page = render_markdown(report), _plain_html(render_html(report))
    body = md.split("\n## Devices")[0].splitlines()[3:]  # past the title and run line
    prose = [line.lstrip("- ") for line in body if line.strip() and not line.startswith("|")]
    assert len(prose) > 15
    for line in prose:
        text = _plain_md(line.lstrip("#").strip())
        assert text in page, text
    from edgebench.reports.notes import footnotes

    notes = footnotes(report)
    assert len(notes) == 5  # CPU p50, no CI, batch, agreement, no reference detections
    for note in notes:
        assert _plain_md(note) in page and _plain_md(note) in _plain_md(md)


# --- the page in a browser -----------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed (scripts/test.sh installs it)"
    return found


def browse(page: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={out.parent / 'profile'}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", *args,
         page.as_uri()], capture_output=True, text=True, timeout=120)


def check_in_browser(page: Path, tmp: Path, name: str, plots: int) -> None:
    """Screenshot ``page`` and measure it: ``plots`` SVG plots drawn (decoded, not
    blank), and nothing wider than the window (document scrollWidth, and no ink in the
    screenshot's right margin)."""
    from PIL import Image

    text = page.read_text()
    assert text.count("<svg") == plots
    assert "<script" not in text and not re.search(r"""(src|href)=["']https?:""", text)
    probe = tmp / f"{name}-probe.html"  # the report plus a script writing its widths
    probe.write_text(text.replace(
        "</body>", "<script>document.body.setAttribute('data-width', "
        "document.documentElement.scrollWidth + 'x' + window.innerWidth + 'x' + "
        "[...document.querySelectorAll('svg')]"
        ".filter(s => s.getBoundingClientRect().width > 100).length + 'x' + "
        "[...document.querySelectorAll('.scroll')]"
        ".filter(e => e.scrollWidth > e.clientWidth).length)</script></body>"))
    done = browse(probe, tmp / "x", "--dump-dom")
    match = re.search(r'data-width="(\d+)x(\d+)x(\d+)x(\d+)"', done.stdout)
    assert match, done.stderr[-2000:]
    scroll, inner, shown, clipped = map(int, match.groups())
    assert inner == WINDOW[0] and scroll <= inner, (scroll, inner)
    assert clipped == 0  # no table wider than the page (hidden behind its own scroll bar)
    assert shown == plots
    shot = tmp / f"{name}.png"
    done = browse(page, shot, f"--screenshot={shot}")
    assert shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == WINDOW
        colours = rgb.resize((64, 120)).getcolors(64 * 120)
        assert colours is not None and len(colours) > 20  # drawn, not a blank page
        margin = rgb.crop((WINDOW[0] - 30, 0, WINDOW[0], WINDOW[1]))
        assert margin.getextrema() == ((255, 255),) * 3  # nothing past the right margin
    keep = os.environ.get("EDGEBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3-case run: the embedded model on ONNX Runtime, LiteRT and ncnn."""
    from edgebench.cli import main

    out = tmp_path_factory.mktemp("three")
    assert main(["run", "-o", str(out), "-b", "onnxruntime,litert,ncnn", "-n", "10",
                 "--warmup", "1", "--images", "2"]) == 0
    return next(out.glob("*/report.html"))


@pytest.mark.slow  # a real run: 10-40 s on a shared box
def test_three_case_real_run_in_chromium(real_run: Path, tmp_path: Path) -> None:
    check_in_browser(real_run, tmp_path, "3-cases-real-run", plots=3)
    plots = _plain_html(real_run.read_text().split("<h2>Latency distribution")[1])
    labels = re.findall(r"<!-- (.*?) -->", real_run.read_text())  # matplotlib's SVG texts
    assert labels and not any("@local" in t or "tauto" in t for t in labels)
    assert "@local" not in plots and "tauto" not in plots and " auto" not in plots
    assert "shapes-yolov8n fp32 ncnn" in plots  # the key table's short labels


SCREENED = {  # name -> (report, plots)
    "3-cases": lambda: (synthetic(3, threads=(4,)), 3),
    "12-cases": lambda: (synthetic(12, backends=("onnxruntime", "litert", "ncnn"),
                                   variants=("fp32", "int8"), threads=(4,), failed=4), 3),
    "12-cases-2-devices": lambda: (synthetic(12, devices=("local", "ssh://pi@rpi5"),
                                             backends=("onnxruntime", "litert", "ncnn")), 4),
    "30-cases": lambda: (synthetic(30, variants=("fp32", "fp16", "int8"), threads=(4,)), 3),
}


@pytest.mark.parametrize("name", SCREENED)
def test_synthetic_reports_in_chromium(name: str, tmp_path: Path) -> None:
    from edgebench.reports.html import render_html

    report, plots = SCREENED[name]()
    page = tmp_path / f"{name}.html"
    page.write_text(render_html(report))
    check_in_browser(page, tmp_path, name, plots=plots)
