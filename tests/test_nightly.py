"""Nightly flow end to end: run twice, compare, history, HTML in a real browser, exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench.cli import main
from edgebench.records import SCHEMA_VERSION

RUN = ["--warmup", "2", "-n", "30", "--images", "4", "--threads", "1", "-b", "onnxruntime"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    for _ in range(2):
        assert main(["run", "-o", str(results), *RUN]) == 0
    return results


def reports(results: Path) -> list[Path]:
    return sorted(results.glob("*/report.json"))


def test_compare_previous_last(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "previous", "last", "--results", str(two_runs),
                 "--latency-threshold", "0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| unchanged | `shapes-yolov8n|fp32|onnxruntime|local|t1` |" in out


def test_compare_and_history_with_c_look_in_the_matrix_files_output(
        two_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``run -c nightly.toml`` writes to its ``[run] output``; ``compare previous last -c
    nightly.toml`` must gate those runs, not whatever ./edgebench-results holds."""
    matrix = tmp_path / "nightly.toml"
    matrix.write_text(f'[run]\noutput = "{two_runs}"\n[gate]\nlatency_threshold = 0.5\n')
    elsewhere = tmp_path / "cwd"
    shutil.copytree(two_runs, elsewhere / "edgebench-results")  # a decoy: one run removed
    shutil.rmtree(sorted((elsewhere / "edgebench-results").iterdir())[0])
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["compare", "previous", "last", "-c", str(matrix)]) == 0
    out = capsys.readouterr().out
    assert "1 unchanged." in out and "| unchanged |" in out
    assert main(["history", "-c", str(matrix)]) == 0
    listed = capsys.readouterr().out
    assert all(run.parent.name in listed for run in reports(two_runs))


def test_compare_exits_1_on_an_injected_regression(two_runs: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    base, cur = reports(two_runs)
    slow = json.loads(cur.read_text())
    lat = slow["cases"][0]["latency"]
    lat["samples_ns"] = [int(s * 1.5) for s in lat["samples_ns"]]
    bad = tmp_path / "slow.json"
    bad.write_text(json.dumps(slow))
    code = main(["compare", str(base), str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    assert "| **regressed** |" in captured.out and "regressed." in captured.err


def test_compare_no_overlap_warns(two_runs: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, cur = reports(two_runs)
    other = json.loads(cur.read_text())
    other["cases"][0]["case"]["backend"] = "ncnn"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert main(["compare", str(base), str(path)]) == 0
    assert "no case in common" in capsys.readouterr().err
    assert main(["compare", str(base), str(path), "--fail-on-no-overlap"]) == 1


def test_compare_refuses_newer_schema_and_corrupt_files(
        two_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cur = reports(two_runs)
    newer = json.loads(cur.read_text())
    newer["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer))
    assert main(["compare", str(base), str(path)]) == 2
    assert f"schema version {SCHEMA_VERSION + 1}, newer" in capsys.readouterr().err
    cut = tmp_path / "cut.json"
    cut.write_text(cur.read_text()[:500])
    assert main(["compare", str(base), str(cut)]) == 2
    assert "cut.json is not valid JSON" in capsys.readouterr().err


def test_compare_upgrades_a_version_1_baseline(two_runs: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base, cur = reports(two_runs)
    old = json.loads(base.read_text())
    old["schema_version"] = 1
    for case in old["cases"]:
        del case["accuracy"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    assert main(["compare", str(path), str(cur), "--latency-threshold", "0.5"]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_history(two_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "history.html"
    assert main(["history", "--results", str(two_runs), "--metric", "map50_95",
                 "--html", str(html)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 2")]
    assert len(rows) == 2 and "〃" in rows[1]  # same fingerprint on the second run
    assert "<svg" in html.read_text()


def test_pytest_benchmark_export_loads_in_pytest_benchmark(two_runs: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "0001_edgebench.json"
    assert main(["export", str(reports(two_runs)[0]), "-o", str(out)]) == 0
    tool = Path(sys.executable).with_name("pytest-benchmark")  # its console script
    done = subprocess.run([str(tool), "compare", str(out),
                           "--columns", "min,median,max,rounds", "--group-by", "group"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "shapes-yolov8n" in done.stdout and "Median" in done.stdout
    data = json.loads(out.read_text())
    (bench,) = data["benchmarks"]
    assert bench["stats"]["rounds"] == 30 and len(bench["stats"]["data"]) == 30
    assert bench["extra_info"]["map50_95"] > 0.5


def test_html_report_renders_in_chromium(two_runs: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (scripts/test.sh installs it)"
    page = reports(two_runs)[0].with_name("report.html")
    text = page.read_text()
    assert text.count("<svg") >= 3 and "Latency vs mAP on local" in text
    # self-contained: nothing to fetch (namespace URIs inside the SVGs are not fetched)
    assert "<script" not in text and not re.search(r"""(src|href)=["']https?:""", text)
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        colours = im.convert("RGB").resize((64, 120)).getcolors(64 * 120)
    assert colours is not None and len(colours) > 20  # plots drawn, not a blank page


def test_pytest_plugin_fixture(pytester: pytest.Pytester, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    pytester.makepyfile(f"""
        def test_case(edgebench_run):
            result = edgebench_run(model={str(model)!r}, iterations=5, warmup=1, images=2)
            assert result.status.value == "ok"
            assert result.latency.n == 5 and result.latency.p50_ms > 0
            assert result.case.device == "local"
    """)
    outcome = pytester.runpytest_subprocess("-q")  # loaded through its pytest11 entry point
    outcome.assert_outcomes(passed=1)
