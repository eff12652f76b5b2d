"""``edgebench run`` end to end on the local host, and every bad input it must refuse."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from runner_utils import default_backends

from edgebench.cli import main
from edgebench.schema import SCHEMA_PATH

FAST = ["--warmup", "2", "-n", "10", "--images", "4"]


def only_report(out_dir: Path) -> dict:  # type: ignore[type-arg]
    (report,) = out_dir.glob("*/report.json")
    data = json.loads(report.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()),
                        cls=jsonschema.Draft202012Validator)
    return data  # type: ignore[no-any-return]


def test_default_run_on_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    code = main(["run", "-o", str(tmp_path), "-n", "50"])
    out = capsys.readouterr().out
    assert code == 0
    report = only_report(tmp_path)
    assert report["state"] == "complete" and report["schema_version"] == 2
    by_backend = {c["case"]["backend"]: c for c in report["cases"]}
    assert set(by_backend) == default_backends() >= {"onnxruntime", "litert", "ncnn"}  # fp32
    for other in sorted(set(by_backend) - {"onnxruntime"}):
        case = by_backend[other]
        assert case["status"] == "ok" and case["latency"]["n"] >= 50, case["reason"]
        assert case["memory"]["peak_rss_bytes"] > 0 and case["artifact"]["size_bytes"] > 1e6
        assert case["accuracy"]["map50_95"] > 0.6
        assert case["accuracy"]["fidelity"]["within_tolerance"] is True
        assert f"| {other} | local |" in out
    case = by_backend["onnxruntime"]
    assert case["status"] == "ok" and case["case"]["backend"] == "onnxruntime"
    assert case["case"]["model"].startswith("shapes-yolov8n@")
    lat = case["latency"]
    assert lat["n"] >= 50 and len(lat["samples_ns"]) == lat["n"]
    assert lat["median_ci95_ms"][0] <= lat["p50_ms"] <= lat["median_ci95_ms"][1]
    assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["gflops_per_s"] > 0
    assert case["memory"]["peak_rss_bytes"] > 0
    assert case["artifact"]["size_bytes"] > 1_000_000 and case["artifact"]["gflops"] > 1
    assert case["device"]["cores"] >= 1 and case["device"]["runtimes"]["onnxruntime"]
    acc = case["accuracy"]
    assert acc["status"] == "ok" and acc["labelled"] and acc["images"] == 100
    assert acc["map50_95"] > 0.6 and acc["map50"] > acc["map50_95"]
    assert set(acc["per_class_map50_95"]) == {"circle", "square", "triangle", "star"}
    assert acc["library"].startswith("pycocotools")
    fid = acc["fidelity"]
    assert fid["detection_agreement"] == 1.0 and fid["reference_detections"] > 100
    assert fid["box_max_abs_px"] < 0.05 and fid["score_max_abs"] < 1e-3
    from edgebench.datasets import load_dataset

    fingerprint = load_dataset(None).fingerprint()
    assert acc["dataset_fingerprint"] == fingerprint and acc["input_hw"] == [320, 320]
    md = (next(tmp_path.glob("*/report.md"))).read_text()
    assert "| shapes-yolov8n@" in md and "| 320×320 | onnxruntime | local |" in md
    evaluated = ("`embedded shapes val`: 100 images evaluated, none left out, conf 0.001, "
                 f"IoU 0.7, content {fingerprint[:8]}")
    assert f"Accuracy measured on {evaluated}; input size per case: the `input` column" in md
    page = (next(tmp_path.glob("*/report.html"))).read_text()
    assert "<code>embedded shapes val</code>: 100 images evaluated, none left out" in page
    assert "<td>320×320</td>" in page
    assert "| shapes-yolov8n@" in out  # the table is printed too


def test_failed_case_is_recorded_and_the_run_goes_on(
        tmp_path: Path, make_onnx, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    good, bad = make_onnx("conv", size=32), make_onnx("bad_op", size=32)
    code = main(["run", "-o", str(tmp_path), *FAST, "-b", "onnxruntime", "-m", str(bad),
                 "-m", str(good)])
    assert code == 1  # some case failed
    cases = {c["case"]["model"].split("@")[0]: c for c in only_report(tmp_path)["cases"]}
    assert cases["conv"]["status"] == "ok"
    assert cases["bad_op"]["status"] == "failed"
    assert cases["bad_op"]["reason"].startswith("load failed: ONNX Runtime could not load")
    assert "Not measured" in capsys.readouterr().out


def test_nan_output_fails_the_case(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    code = main(["run", "-o", str(tmp_path), *FAST, "-b", "onnxruntime",
                 "-m", str(make_onnx("nan", size=32))])
    assert code == 1
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "failed" and "NaN" in case["reason"]
    assert case["latency"]["n"] == 10  # what was measured is kept


def test_threads_and_settings_reach_the_report(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    before = datetime.now(UTC)
    code = main(["run", "-o", str(tmp_path), "--warmup", "0", "-n", "7", "--threads", "1",
                 "-b", "onnxruntime", "-m", str(make_onnx("conv", size=32))])
    assert code == 0
    (case,) = only_report(tmp_path)["cases"]
    assert case["case"]["settings"]["threads"] == 1 and case["runtime"]["threads"] == 1
    assert case["latency"]["n"] == 7 and case["latency"]["warmup_ns"] == []
    assert case["case"]["id"].endswith("|onnxruntime|local|t1")
    # the case's span on the wall clock, to the millisecond (spans of overlapping devices
    # are compared with it: benchmarks/labgrid_farm.py)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", case["started_at"])
    started = datetime.fromisoformat(case["started_at"])
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= started
    assert started + timedelta(seconds=case["wall_s"]) <= datetime.now(UTC)


def _error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    progress = re.compile(r"^\d\d:\d\d:\d\d \[\d+/\d+\] ")  # a slow host step's line
    err = "\n".join(ln for ln in captured.err.strip().splitlines() if not progress.match(ln))
    assert err.startswith("edgebench: error: ") and "Traceback" not in err
    assert len(err.splitlines()) == 1
    return err


def test_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), "-m", str(tmp_path / "nope.onnx")])
    assert "does not exist" in err


def test_model_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "dir.onnx"
    d.mkdir()
    assert "is a directory, not a model" in _error(capsys, ["run", "-o", str(tmp_path),
                                                            "-m", str(d)])


def test_unparseable_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00not a protobuf at all" * 10)
    assert "is not a valid ONNX model" in _error(capsys, ["run", "-o", str(tmp_path),
                                                          "-m", str(bad)])


def test_truncated_onnx(tmp_path: Path, embedded_onnx: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(embedded_onnx.read_bytes()[:100_000])
    assert "is not a valid ONNX model" in _error(capsys, ["run", "-o", str(tmp_path),
                                                          "-m", str(cut)])


def test_non_image_input(tmp_path: Path, make_onnx, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
                         ) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), "-m", str(make_onnx("non_image"))])
    assert "not an image batch (N, 3, H, W)" in err


def test_wrong_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "model.tflite.txt"
    f.write_text("x")
    assert "takes .onnx" in _error(capsys, ["run", "-o", str(tmp_path), "-m", str(f)])


def test_unknown_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), "--backend", "tensorrt"])
    assert "unknown backend 'tensorrt'" in err and "onnxruntime" in err


def test_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), "--device", "bluetooth://phone"])
    assert "unknown device 'bluetooth'" in err and "local" in err


def test_bad_device_uri(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not a device URI" in _error(capsys, ["run", "-o", str(tmp_path),
                                                 "--device", "://x"])


def test_runtime_not_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    runtimes = {"onnxruntime", "ai_edge_litert", "tflite_runtime", "ncnn", "MNN", "openvino",
                "executorch"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in runtimes else real(name, *a))
    err = _error(capsys, ["run", "-o", str(tmp_path), "--backend", "onnxruntime"])
    assert err == ("edgebench: error: backend 'onnxruntime' cannot run here: onnxruntime is "
                   "not installed: pip install 'edgebench[onnxruntime]'.")
    err = _error(capsys, ["run", "-o", str(tmp_path)])
    assert "no backend is usable on this host" in err and "edgebench[onnxruntime]" in err
    assert "edgebench[litert]" in err and "edgebench[ncnn]" in err
    assert "edgebench[mnn]" in err
    assert "edgebench[openvino]" in err
    assert "edgebench[executorch]" in err


def test_pt_without_export_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ultralytics" else real(name, *a))
    err = _error(capsys, ["run", "-o", str(tmp_path), "-m", str(pt)])
    assert "pip install 'edgebench[export]'" in err


def test_output_dir_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = _error(capsys, ["run", "-o", str(blocker / "out")])
    assert "cannot be created" in err and "--output" in err


@pytest.mark.parametrize("flag", [["--iterations", "0"], ["--warmup", "-1"], ["--threads", "0"],
                                  ["--timeout", "0"], ["--min-duration", "-2"]])
def test_bad_settings_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    flag: list[str]) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), *flag])
    assert flag[0] in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from edgebench.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "run", "-o", str(tmp_path), "-m", str(tmp_path / "nope.onnx")])


def test_disable_unknown_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert "no plugin named 'onnxrt'" in _error(capsys, ["--disable", "onnxrt", "plugins"])


def test_unlabelled_images_give_fidelity_only(tmp_path: Path, embedded_onnx: Path) -> None:
    from edgebench.datasets import embedded_val_yaml

    images = embedded_val_yaml().parent / "images" / "val"
    assert main(["run", "-o", str(tmp_path), *FAST, "--data", str(images)]) == 0
    for case in only_report(tmp_path)["cases"]:  # every backend
        acc = case["accuracy"]
        assert acc["status"] == "ok" and not acc["labelled"] and acc["map50_95"] is None
        assert "fidelity to the reference only" in acc["reason"]
        assert acc["fidelity"]["detection_agreement"] == 1.0


def test_classifier_gets_latency_and_skipped_accuracy(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("classifier", size=32)
    assert main(["run", "-o", str(tmp_path), *FAST, "-b", "onnxruntime", "-m", str(model)]) == 0
    (case,) = only_report(tmp_path)["cases"]
    assert case["status"] == "ok" and case["latency"]["n"] == 10
    acc = case["accuracy"]
    assert acc["status"] == "skipped"
    assert "output shape [1, 10] is not a YOLO detection head" in acc["reason"]
    assert "latency is still reported" in acc["reason"]
    assert acc["fidelity"]["max_abs"] < 1e-4  # raw outputs still compared to the reference


def test_class_count_mismatch_is_an_error_before_any_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgebench.shapes import generate_shapes

    data = generate_shapes(tmp_path / "d", seed=1, n_train=1, n_val=2)
    text = data.read_text()
    # nc too: names and nc that disagree are refused earlier, as Ultralytics refuses them
    data.write_text(text.replace("3: star", "3: star\n  4: hexagon").replace("nc: 4", "nc: 5"))
    err = _error(capsys, ["run", "-o", str(tmp_path / "out"), "--data", str(data)])
    assert err.endswith(
        f"predicts 4 classes but the dataset {data} has 5; pass the dataset the model was "
        "trained on (--data), --no-accuracy (latency and memory only) or a folder of images "
        "as --data (agreement with the float reference only)."), err
    assert not list((tmp_path / "out").glob("*/report.json"))


def test_no_accuracy_flag(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    assert main(["run", "-o", str(tmp_path), *FAST, "--no-accuracy"]) == 0
    found = only_report(tmp_path)["cases"]
    assert {c["case"]["backend"] for c in found} == default_backends() and len(found) >= 4
    assert all(c["status"] == "ok" and c["accuracy"] is None for c in found)


def test_no_accuracy_does_not_read_the_dataset(
        tmp_path: Path, make_onnx, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """Latency and memory need no dataset: a bad --data is not read with --no-accuracy; the
    timed input is the embedded val image, as in a run without --data."""
    model = make_onnx("conv", size=32)
    bad = tmp_path / "annotations" / "instances_val.json"
    bad.parent.mkdir()
    bad.write_text("{}")  # not a COCO file: refused if it were read
    assert main(["run", "-m", str(model), "-b", "onnxruntime", "-o", str(tmp_path / "out"),
                 "--warmup", "1", "-n", "3", "--no-accuracy", "--data", str(bad)]) == 0
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "ok" and case["accuracy"] is None
    assert (f"edgebench: warning: with --no-accuracy the dataset {bad} is not evaluated; the "
            "timed loop runs on the first embedded val image, as without --data.\n"
            ) in capsys.readouterr().err


def test_imgsz_on_a_static_model_is_said_on_the_terminal_and_in_the_case(
        tmp_path: Path, make_onnx, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx("conv", size=32)
    assert main(["run", "-m", str(model), "-b", "onnxruntime", "-o", str(tmp_path / "out"),
                 "--warmup", "1", "-n", "3", "--no-accuracy", "--imgsz", "256,320"]) == 0
    (case,) = only_report(tmp_path / "out")["cases"]
    note = ("--imgsz 256x320 is not used: the model's input is static at 32×32 "
            "(height×width), which is what runs; --imgsz applies only to symbolic dims and "
            ".pt exports")
    assert case["status"] == "ok" and note in case["notes"]
    err = capsys.readouterr().err
    assert err.count(f"edgebench: warning: {case['case']['model']}: {note}.\n") == 1, err


def test_bad_data_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "-o", str(tmp_path), "--data", str(tmp_path / "nothing")])
    assert "dataset" in err and "does not exist" in err


def test_repeats_interleave_and_pool(tmp_path: Path, make_onnx) -> None:  # type: ignore[no-untyped-def]
    a, b = make_onnx("conv", size=32, name="a.onnx"), make_onnx("conv", size=48, name="b.onnx")
    assert main(["run", "-o", str(tmp_path), "--warmup", "1", "-n", "5", "--images", "2",
                 "--repeats", "3", "-b", "onnxruntime", "-m", str(a), "-m", str(b)]) == 0
    cases = only_report(tmp_path)["cases"]
    assert len(cases) == 2
    for case in cases:
        assert case["latency"]["n"] == 15 and len(case["latency"]["repeat_medians_ms"]) == 3
        assert case["accuracy"] is not None  # measured once, on the first repeat


def test_a_skipped_case_is_labelled_as_its_id(tmp_path: Path, embedded_onnx: Path) -> None:
    """An fp16 ONNX (float16 converter) on LiteRT is skipped at plan time (no artifact):
    its table row says fp16 like its id under "Not measured", not fp32."""
    import onnx
    from onnxruntime.transformers import float16

    model = tmp_path / "m16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(embedded_onnx)),
                                               keep_io_types=False), str(model))
    assert main(["run", "-o", str(tmp_path / "out"), *FAST, "-b", "litert",
                 "-m", str(model)]) == 0
    (case,) = only_report(tmp_path / "out")["cases"]
    assert case["status"] == "skipped" and case["artifact"] is None
    assert case["case"]["id"].split("|")[1] == "fp16"
    model_label = case["case"]["model"]
    for name in ("report.md", "report.html"):
        text = next((tmp_path / "out").glob(f"*/{name}")).read_text()
        sep = " | " if name == "report.md" else "</td><td>"
        assert f"{model_label}{sep}fp16{sep}" in text, name
        assert f"{model_label}{sep}fp32" not in text, name
        assert case["case"]["id"] in text


def test_an_empty_agreement_check_is_said_in_words(tmp_path: Path, embedded_onnx: Path
                                                   ) -> None:
    """Plain grey images: the reference detects nothing at score >= 0.25, so there is no
    detection to agree on. The case is not failed (its raw outputs were compared within
    tolerance), and the report says why the agreement is empty instead of a bare '–'."""
    from PIL import Image

    images = tmp_path / "grey"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (320, 320), (114, 114, 114)).save(images / f"{i}.png")
    assert main(["run", "-o", str(tmp_path / "out"), *FAST, "-b", "onnxruntime",
                 "--data", str(images)]) == 0
    (case,) = only_report(tmp_path / "out")["cases"]
    fid = case["accuracy"]["fidelity"]
    assert case["status"] == "ok" and fid["within_tolerance"] is True
    assert fid["reference_detections"] == 0 and fid["detection_agreement"] is None
    note = ("the float reference has no detection at score ≥ 0.25 on these images: "
            "agreement not measured, raw outputs compared (max abs diff).")
    md = next((tmp_path / "out").glob("*/report.md")).read_text()
    (row,) = [line for line in md.splitlines() if line.startswith("| shapes-yolov8n@")]
    assert row.split(" | ")[-2] == "†" and f"† {note}" in md
    page = next((tmp_path / "out").glob("*/report.html")).read_text()
    assert "<td>†</td>" in page and f"† {note}" in page
