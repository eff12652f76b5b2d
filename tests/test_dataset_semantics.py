"""Dataset semantics against the reference tools, on inputs generated here from the embedded
val images: EXIF-rotated copies, corrupt and truncated files, a class without ground truth
(vs Ultralytics' own loader and ``val()``), and a COCO file with crowd regions and
non-contiguous ids (vs pycocotools and faster-coco-eval on that very file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebench.cli import main
from edgebench.config import DEFAULT_MODEL
from edgebench.datasets import embedded_val_yaml, load_dataset
from edgebench.image_files import check_image
from edgebench.preprocess import decode_image
from edgebench.ultralytics_offline import ultralytics_offline_env

N_IMAGES = 40  # per generated set: enough objects for a stable mAP, cheap to run
MISSING = 3  # "star": its labels are removed from the mAP sets, so it has no ground truth
NAMES = ["circle", "square", "triangle", "star"]
# PIL transpose that stores an upright image so that EXIF orientation o shows it upright
# again (the inverse of what ImageOps.exif_transpose applies for o).
STORE = {1: None, 2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM",
         5: "TRANSPOSE", 6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def embedded_val() -> tuple[list[Path], Path]:
    root = embedded_val_yaml().parent
    return sorted((root / "images" / "val").glob("*.png")), root / "labels" / "val"


def save_oriented(src: Path, dst: Path, orientation: int | None, fmt: str) -> None:
    """``src`` saved as ``fmt``; with an orientation, its pixels stored turned so that a
    viewer applying the EXIF Orientation tag shows the original."""
    from PIL import Image

    with Image.open(src) as im:
        upright = im.convert("RGB")
    kwargs: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if orientation is None:
        upright.save(dst, fmt, **kwargs)
        return
    method = STORE[orientation]
    stored = upright if method is None else upright.transpose(getattr(Image.Transpose, method))
    exif = Image.Exif()
    exif[274] = orientation
    stored.save(dst, fmt, exif=exif.tobytes(), **kwargs)


def write_yaml(root: Path) -> Path:
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/val\nval: images/val\n"
                    f"names: {json.dumps(NAMES)}\n")
    return yaml


def jpeg_set(root: Path, *, exif: bool, corrupt: bool) -> Path:
    """The first N_IMAGES embedded val images as JPEGs (EXIF: orientations 1..8 in turn),
    their labels without class MISSING; with ``corrupt``, three files that must be left out."""
    images, labels = embedded_val()
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i, src in enumerate(images[:N_IMAGES]):
        save_oriented(src, root / "images" / "val" / f"{src.stem}.jpg",
                      i % 8 + 1 if exif else None, "JPEG")
        rows = (labels / f"{src.stem}.txt").read_text().splitlines()
        (root / "labels" / "val" / f"{src.stem}.txt").write_text(
            "".join(f"{r}\n" for r in rows if not r.startswith(f"{MISSING} ")))
    if corrupt:
        cut = root / "images" / "val" / "zz_cut40.jpg"
        save_oriented(images[N_IMAGES], cut, None, "JPEG")
        data = cut.read_bytes()
        cut.write_bytes(data[:int(len(data) * 0.4)])
        shutil.copy(labels / f"{images[N_IMAGES].stem}.txt", root / "labels" / "val"
                    / "zz_cut40.txt")
        (root / "images" / "val" / "zz_empty.jpg").write_bytes(b"")
        (root / "images" / "val" / "zz_text.png").write_text("this is not an image\n")
    return write_yaml(root)


VAL = """
import json, sys
from ultralytics import YOLO
m = YOLO(sys.argv[1], task="detect").val(data=sys.argv[2], imgsz=320, batch=1, conf=0.001,
                                         iou=0.7, device="cpu", plots=False, verbose=False,
                                         project=sys.argv[3], name="val")
print(json.dumps({"map50_95": float(m.box.map), "map50": float(m.box.map50),
                  "classes": [int(c) for c in m.box.ap_class_index]}))
"""


def ultralytics(script: str, *args: str, cwd: Path) -> Any:
    env = {**os.environ, **ultralytics_offline_env()}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=900, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def edgebench_run(data: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main(["run", "-m", str(DEFAULT_MODEL), "-b", "onnxruntime", "--data", str(data),
                 "-o", str(out), "-n", "3", "--warmup", "1", *extra]) == 0
    (report,) = out.glob("*/report.json")
    (case,) = json.loads(report.read_text())["cases"]
    assert case["accuracy"]["status"] == "ok", case["accuracy"]
    return case["accuracy"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("semantics")
    return {"plain": jpeg_set(root / "plain", exif=False, corrupt=True),
            "exif": jpeg_set(root / "exif", exif=True, corrupt=False)}


@pytest.fixture(scope="module")
def plain_run(sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, Any], Path]:
    """edgebench on the plain set (with its corrupt files): the accuracy and the output dir."""
    out = tmp_path_factory.mktemp("plain-run")
    return edgebench_run(sets["plain"], out), out


# -- EXIF orientation ------------------------------------------------------------------

ORACLE_SHAPES = """
import json, sys
import numpy as np
from ultralytics.data.utils import verify_image_label
from ultralytics.utils.patches import imread
out, arrays = {}, {}
for i, f in enumerate(sys.argv[2:]):
    r = verify_image_label((f, f + ".none.txt", "", False, 4, 0, 0, False))
    out[f] = {"shape": list(r[2]) if r[2] else None, "msg": r[-1]}
    im = imread(f)
    if im is not None:
        arrays[str(i)] = im
np.savez(sys.argv[1], **arrays)
print(json.dumps(out))
"""


@pytest.mark.export
def test_exif_sizes_and_pixels_match_ultralytics(tmp_path: Path) -> None:
    """All 8 orientations in JPEG, PNG, WebP and TIFF: the size labels are scaled by and the
    decoded pixels are Ultralytics' (verify_image_label's shape, imread's array), and they
    are the upright original's."""
    from PIL import Image

    images, _ = embedded_val()
    src = images[1]
    with Image.open(src) as im:
        original = np.asarray(im.convert("RGB"))[:, :, ::-1]
    files = []
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")):
        for o in range(1, 9):
            files.append(tmp_path / f"o{o}.{ext}")
            save_oriented(src, files[-1], o, fmt)
    oracle = ultralytics(ORACLE_SHAPES, str(tmp_path / "ul.npz"), *map(str, files),
                         cwd=tmp_path)
    with np.load(tmp_path / "ul.npz") as ul:
        for i, f in enumerate(files):
            check = check_image(f)
            assert check.problem is None, (f, check)
            assert [check.height, check.width] == oracle[str(f)]["shape"], f
            ours = decode_image(f)
            assert ours is not None and np.array_equal(ours, ul[str(i)]), f
            assert ours.shape[:2] == (check.height, check.width), f  # labels' frame = pixels'
            assert ours.shape == original.shape, f
            assert np.abs(ours.astype(int) - original).mean() < 6, f  # JPEG/WebP loss


def test_exif_labels_scale_with_the_oriented_image(sets: dict[str, Path]) -> None:
    plain, turned = load_dataset(sets["plain"]), load_dataset(sets["exif"])
    assert len(plain.images) == len(turned.images) == N_IMAGES
    for a, b in zip(plain.images, turned.images):
        assert (a.width, a.height) == (b.width, b.height)
        assert a.truth == b.truth


@pytest.mark.slow
@pytest.mark.export
def test_exif_map_matches_ultralytics_val(sets: dict[str, Path], tmp_path: Path,
                                          plain_run: tuple[dict[str, Any], Path]) -> None:
    """Plain and EXIF-rotated copies of the same images: edgebench within 0.01 of
    Ultralytics val() on each, and the two within 0.01 of each other."""
    ours = edgebench_run(sets["exif"], tmp_path / "eb")
    theirs = ultralytics(VAL, str(DEFAULT_MODEL), str(sets["exif"]), str(tmp_path / "ul"),
                         cwd=tmp_path)
    plain = plain_run[0]
    print(f"EXIF: edgebench {ours['map50_95']:.4f} / {ours['map50']:.4f}, Ultralytics val "
          f"{theirs['map50_95']:.4f} / {theirs['map50']:.4f}; plain edgebench "
          f"{plain['map50_95']:.4f}")
    assert ours["images"] == N_IMAGES and not ours["left_out"]
    assert abs(ours["map50_95"] - theirs["map50_95"]) < 0.01
    assert abs(ours["map50"] - theirs["map50"]) < 0.01
    assert abs(ours["map50_95"] - plain["map50_95"]) < 0.01
    assert ours["map50_95"] > 0.6  # the model works on these images


# -- corrupt images and a class without ground truth ------------------------------------

@pytest.mark.slow
@pytest.mark.export
def test_corrupt_images_left_out_and_missing_class(
        sets: dict[str, Path], tmp_path: Path, plain_run: tuple[dict[str, Any], Path]) -> None:
    """A JPEG cut to 40 %, a zero-byte file and a text file named .png are left out and
    named (report.json and report.md); "star" has no ground truth left, so no AP, and the
    mean is over the other three classes: within 0.01 of Ultralytics val()."""
    ours, out = plain_run
    theirs = ultralytics(VAL, str(DEFAULT_MODEL), str(sets["plain"]), str(tmp_path / "ul"),
                         cwd=tmp_path)
    print(f"plain + corrupt: edgebench {ours['map50_95']:.4f} / {ours['map50']:.4f}, "
          f"Ultralytics val {theirs['map50_95']:.4f} / {theirs['map50']:.4f}")
    images = sets["plain"].parent / "images" / "val"
    assert ours["images"] == N_IMAGES
    assert set(ours["left_out"]) == {str(images / n) for n in
                                     ("zz_cut40.jpg", "zz_empty.jpg", "zz_text.png")}
    assert ours["left_out"][str(images / "zz_empty.jpg")] == "empty file (0 bytes)"
    assert ours["left_out"][str(images / "zz_text.png")] == "not an image PIL can identify"
    assert ours["left_out"][str(images / "zz_cut40.jpg")].startswith(
        "truncated JPEG (OSError: image file is truncated")
    md = next(out.glob("*/report.md")).read_text()
    assert "## Images left out" in md and f"3 of {N_IMAGES + 3} images left out" in md
    for name in ("zz_cut40.jpg", "zz_empty.jpg", "zz_text.png"):
        assert f"`{images / name}`" in md
    assert theirs["classes"] == [0, 1, 2]  # Ultralytics: no AP for the class without truth
    assert set(ours["per_class_map50_95"]) == set(ours["per_class_map50"]) == set(NAMES[:3])
    mean = sum(ours["per_class_map50_95"].values()) / 3
    assert ours["map50_95"] == pytest.approx(mean, abs=1e-9)
    assert abs(ours["map50_95"] - theirs["map50_95"]) < 0.01
    assert abs(ours["map50"] - theirs["map50"]) < 0.01


def test_every_image_left_out_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "broken"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "images" / "val" / "a.jpg").write_bytes(b"")
    (root / "images" / "val" / "b.png").write_text("no image here")
    yaml = write_yaml(root)
    assert main(["run", "-m", str(DEFAULT_MODEL), "-b", "onnxruntime", "--data", str(yaml),
                 "-o", str(tmp_path / "out"), "-n", "3", "--warmup", "1"]) == 2
    err = capsys.readouterr().err
    assert (f"every one of the 2 images of {yaml} was left out as corrupt or unreadable "
            f"({root / 'images' / 'val' / 'a.jpg'}: empty file (0 bytes)); fix or replace "
            "the files.") in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/report.json"))


# -- COCO: the user's own file ------------------------------------------------------------

CATEGORY_IDS = [3, 17, 44, 90]  # non-contiguous, as COCO's 80 of 90


def coco_set(root: Path) -> tuple[Path, dict[str, Any]]:
    """The first N_IMAGES embedded val images in COCO layout: image ids 1000 + 7 i, the
    category ids above, every fifth box a crowd region, areas the file's own (not w x h),
    no "star" box (a class without ground truth) and one image without annotations."""
    images, labels = embedded_val()
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    info, anns = [], []
    for i, src in enumerate(images[:N_IMAGES]):
        shutil.copy(src, root / "images" / "val2017" / src.name)
        from PIL import Image

        with Image.open(src) as im:
            w, h = im.size
        image_id = 1000 + 7 * i
        info.append({"id": image_id, "file_name": src.name, "width": w, "height": h})
        if i == 3:
            continue  # an image without annotations
        for row in (labels / f"{src.stem}.txt").read_text().split("\n"):
            if not row.strip():
                continue
            c, cx, cy, bw, bh = row.split()
            if int(c) == MISSING:
                continue
            box = [(float(cx) - float(bw) / 2) * w, (float(cy) - float(bh) / 2) * h,
                   float(bw) * w, float(bh) * h]
            anns.append({"id": 500 + len(anns), "image_id": image_id,
                         "category_id": CATEGORY_IDS[int(c)], "bbox": box,
                         "area": round(box[2] * box[3] * 0.7, 2),
                         "iscrowd": int(len(anns) % 5 == 0)})
    data = {"images": info, "annotations": anns, "categories": [
        {"id": cid, "name": n} for cid, n in zip(CATEGORY_IDS, NAMES)]}
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path, data


def our_detections(instances: Path, limit: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The embedded ONNX model's detections (ONNX Runtime on the host, edgebench's
    preprocessing and decoding) in the file's ids: the results a COCO user would score."""
    from edgebench.accuracy import AccuracySettings, canonical, decode
    from edgebench.plugins.compression.host_eval import eval_set, session

    dataset = load_dataset(instances, limit=limit)
    data = eval_set(dataset, (320, 320))
    sess = session(DEFAULT_MODEL)
    settings = AccuracySettings()
    results = []
    for image, tensor, lb in zip(dataset.images, data.tensors, data.letterboxes):
        out = sess.run(None, {sess.get_inputs()[0].name: tensor})[0]
        det = decode(canonical(out, (320, 320), False), lb, conf=settings.conf,
                     iou=settings.iou, max_det=settings.max_det)
        for (x1, y1, x2, y2), s, c in zip(det.boxes, det.scores, det.classes):
            results.append({"image_id": image.coco_id, "category_id": CATEGORY_IDS[int(c)],
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                            "score": float(s)})
    return results, [int(im.coco_id) for im in dataset.images if im.coco_id is not None]


def pycocotools_map(gt_file: Path, results: list[dict[str, Any]], image_ids: list[int],
                    faster: bool = False) -> tuple[float, float, np.ndarray]:
    import contextlib
    import io

    if faster:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO  # type: ignore[no-redef]
        from pycocotools.cocoeval import COCOeval  # type: ignore[no-redef]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = image_ids
        ev.params.maxDets = [1, 10, 300]  # Ultralytics' max_det, as edgebench
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # area "all", 300 detections
    if faster:  # its summarize() uses the last maxDets
        return float(ev.stats[0]), float(ev.stats[1]), precision
    # pycocotools' summarize() reads maxDets=100 for AP; this is its formula at 300
    return (float(precision[precision > -1].mean()),
            float(precision[0][precision[0] > -1].mean()), precision)


@pytest.mark.slow
def test_coco_scores_against_the_users_file(tmp_path: Path) -> None:
    """edgebench on the COCO layout (``--images``) within 1e-4 of pycocotools and
    faster-coco-eval run on the user's own json with the same detections; "star" has no
    AP; and the crowd regions matter (dropping them, as before, is off by more than 1e-3)."""
    instances, data = coco_set(tmp_path / "coco")
    limit = N_IMAGES - 5
    ours = edgebench_run(instances, tmp_path / "eb", "--images", str(limit))
    results, image_ids = our_detections(instances, limit)
    assert len(image_ids) == limit and ours["images"] == limit
    ref50_95, ref50, precision = pycocotools_map(instances, results, image_ids)
    fast50_95, fast50, _ = pycocotools_map(instances, results, image_ids, faster=True)
    print(f"COCO: edgebench {ours['map50_95']:.5f} / {ours['map50']:.5f}, pycocotools "
          f"{ref50_95:.5f} / {ref50:.5f}, faster-coco-eval {fast50_95:.5f}")
    assert ours["map50_95"] == pytest.approx(ref50_95, abs=1e-4)
    assert ours["map50"] == pytest.approx(ref50, abs=1e-4)
    assert ours["map50_95"] == pytest.approx(fast50_95, abs=1e-4)
    assert ours["map50"] == pytest.approx(fast50, abs=1e-4)
    assert set(ours["per_class_map50_95"]) == set(NAMES[:3])
    for k, name in enumerate(NAMES[:3]):
        p = precision[:, :, k]
        assert ours["per_class_map50_95"][name] == pytest.approx(p[p > -1].mean(), abs=1e-4)
    no_crowd = dict(data, annotations=[a for a in data["annotations"] if not a["iscrowd"]])
    dropped = tmp_path / "dropped.json"
    dropped.write_text(json.dumps(no_crowd))
    without_crowd = pycocotools_map(dropped, results, image_ids)[0]
    print(f"COCO with the crowd regions dropped (edgebench before): {without_crowd:.5f}")
    assert abs(without_crowd - ours["map50_95"]) > 1e-3


# -- Ultralytics' loader rules, case by case ----------------------------------------------

ORACLE_LABELS = """
import json, sys
import numpy as np
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
from ultralytics.utils.patches import imread
data = check_det_dataset(sys.argv[1])
ds = YOLODataset(img_path=data["val"], data=data, task="detect", imgsz=320, augment=False,
                 cache=False, rect=False, batch_size=1, prefix="")
out = {str(lb["im_file"]): {"cls": lb["cls"].ravel().tolist(), "bboxes": lb["bboxes"].tolist(),
                            "shape": [int(v) for v in lb["shape"]]} for lb in ds.labels}
np.savez(sys.argv[2], **{str(i): imread(f) for i, f in enumerate(sys.argv[3:])})
print(json.dumps(out))
"""


def rules_dataset(cwd: Path) -> tuple[Path, dict[str, str]]:
    """A YOLO dataset with one image per rule of Ultralytics' ``verify_image_label`` and
    ``get_img_files``; ``path:`` relative to the working directory, ``val:`` a folder and a
    ``.txt`` list with ``./`` lines, and ``kpt_shape`` for pose rows. Returns the yaml and,
    per image stem, what the rule is."""
    import cv2
    from PIL import Image

    images, labels = embedded_val()
    root = cwd / "rules"
    for sub in ("images/a", "images/b", "labels/a", "labels/b", "lists"):
        (root / sub).mkdir(parents=True)
    rows = [r for r in (labels / f"{images[0].stem}.txt").read_text().splitlines() if r]
    box = rows[0]
    cases = {
        "normal": "\n".join(rows), "missing": None, "empty": "",
        "duplicates": "\n".join([box, box, *rows]),
        "segments": "1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n2 0.5 0.5 0.9 0.6 0.7 0.9 0.55 0.8",
        "mixed": "1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n" + box,
        "pose": box + " 0.5 0.5 2 0.6 0.6 1\n" + rows[1] + " 0.1 0.2 0 0.3 0.3 2",
        "six_columns": box + " 0.9", "beyond": "0 1.02 0.5 0.3 0.2",
        "overshoot": "0 0.95 0.5 0.3 0.2\n1 0.5 1.005 0.2 0.1",
        "slightly_negative": "0 -0.005 0.5 0.3 0.2", "negative": "0 -0.02 0.5 0.3 0.2",
        "float_class": "1.0 0.5 0.5 0.2 0.2", "fractional_class": "1.5 0.5 0.5 0.2 0.2",
        "class_out_of_range": "9 0.5 0.5 0.2 0.2", "words": "a b c d e",
        "bom_crlf": "\ufeff" + "\r\n".join(rows), "grey": "\n".join(rows),
        "rgba": "\n".join(rows), "sixteen_bit": "\n".join(rows), "tiny": "0 0.5 0.5 0.5 0.5",
        "gif_named_png": "\n".join(rows), "jpeg_trailing_bytes": "\n".join(rows),
    }
    for i, (stem, label) in enumerate(cases.items()):
        src = images[i % len(images)]
        dst = root / "images" / "a" / f"{stem}.png"
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        if stem == "grey":
            rgb.convert("L").save(dst)
        elif stem == "rgba":
            rgb.convert("RGBA").save(dst)
        elif stem == "sixteen_bit":
            cv2.imwrite(str(dst), np.asarray(rgb)[:, :, ::-1].astype(np.uint16) * 257 + 3)
        elif stem == "tiny":
            rgb.resize((8, 8)).save(dst)
        elif stem == "gif_named_png":
            rgb.save(dst, "GIF")
        elif stem == "jpeg_trailing_bytes":
            dst = dst.with_suffix(".jpg")
            rgb.save(dst, "JPEG", quality=95)
            dst.write_bytes(dst.read_bytes() + b"camera trailer")
        else:
            rgb.save(dst)
        if label is not None:
            (root / "labels" / "a" / f"{stem}.txt").write_bytes(label.encode())
    shutil.copy(images[0], root / "images" / "a" / ".hidden.png")
    listed = []
    for src in images[30:32]:
        shutil.copy(src, root / "images" / "b" / src.name)
        shutil.copy(labels / f"{src.stem}.txt", root / "labels" / "b" / f"{src.stem}.txt")
        listed.append(f"./../images/b/{src.name}")
    (root / "lists" / "val.txt").write_text("\n".join(listed) + "\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: rules\ntrain: images/a\nval: [images/a, lists/val.txt]\n"
                    f"kpt_shape: [2, 3]\nnames: {json.dumps(NAMES)}\n")
    return yaml, {stem: str(label) for stem, label in cases.items()}


@pytest.mark.export
def test_yolo_rules_match_ultralytics_loader(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rule of Ultralytics' loader, each on its own image: the same images kept, the
    same boxes (clipped to the image, as its validator does) and the same pixels."""
    yaml, _ = rules_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)  # path: is relative to the working directory, as Ultralytics
    ours = load_dataset(yaml.relative_to(tmp_path))
    pixels = [im.path for im in ours.images if im.path.stem in ("grey", "rgba", "sixteen_bit")]
    oracle = ultralytics(ORACLE_LABELS, str(yaml), str(tmp_path / "px.npz"),
                         *map(str, pixels), cwd=tmp_path)
    theirs = {str(Path(f).resolve()): v for f, v in oracle.items()}
    assert sorted(str(im.path.resolve()) for im in ours.images) == sorted(theirs)
    left_out = {lo.path.stem: lo.reason for lo in ours.left_out}
    assert set(left_out) == {"mixed", "six_columns", "beyond", "negative", "fractional_class",
                             "class_out_of_range", "words", "tiny", "gif_named_png"}
    label = tmp_path / "rules" / "labels" / "a"
    assert left_out["mixed"] == f"label {label / 'mixed.txt'}: labels mix segment and " \
                                "detection rows"
    assert left_out["six_columns"] == f"label {label / 'six_columns.txt'}: labels require " \
                                      "5 columns, 6 columns detected"
    assert left_out["class_out_of_range"] == (f"label {label / 'class_out_of_range.txt'}: "
                                              "class 9 exceeds the dataset's 4 classes (0-3)")
    assert left_out["tiny"] == "image size 8x8 is under 10 px"
    assert left_out["gif_named_png"] == "its format GIF is not an image format Ultralytics " \
                                        "reads"
    for image in ours.images:
        ref = theirs[str(image.path.resolve())]
        assert [image.height, image.width] == ref["shape"], image.path
        assert image.truth is not None
        xywh = np.array(ref["bboxes"], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2],
                              1).clip(0, 1) * np.array([image.width, image.height] * 2)
        expected = sorted(zip([int(c) for c in ref["cls"]], xyxy.round(3).tolist()))
        got = sorted(zip(image.truth.classes, np.round(image.truth.boxes, 3).tolist()))
        assert got == expected, image.path
    by_stem = {im.path.stem: im for im in ours.images}
    assert by_stem["missing"].truth == by_stem["empty"].truth  # background images
    assert len(by_stem["duplicates"].truth.boxes) == len(by_stem["normal"].truth.boxes)  # type: ignore[union-attr]
    with np.load(tmp_path / "px.npz") as px:
        for i, path in enumerate(pixels):
            assert np.array_equal(decode_image(path), px[str(i)]), path


# -- mAP without ground truth (pycocotools' rule: no AP, not 0.0) --------------------------

def test_classes_without_truth_have_no_ap() -> None:
    from edgebench.accuracy import Detections
    from edgebench.coco import coco_map
    from edgebench.datasets import Dataset, EvalImage, GroundTruth

    truth = GroundTruth(((10.0, 10.0, 50.0, 50.0),), (1,))
    dataset = Dataset("t", ("a", "b", "c"), (EvalImage(Path("x.png"), 100, 100, truth),), True)
    hits = Detections(np.array([[10.0, 10, 50, 50], [60, 60, 90, 90]]), np.array([0.9, 0.8]),
                      np.array([1, 2]))  # class 2 has no truth: its false positive is ignored
    result = coco_map(dataset, [hits])
    assert result.per_class_map50_95 == {"b": pytest.approx(1.0)}
    assert result.map50_95 == pytest.approx(1.0)
    empty = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    assert coco_map(dataset, [empty]).per_class_map50 == {"b": 0.0}
    background = Dataset("t", ("a", "b", "c"), (EvalImage(Path("x.png"), 100, 100,
                                                          GroundTruth((), ())),), True)
    for dets in ([hits], [empty]):
        none = coco_map(background, dets)
        assert none.map50_95 is None and none.map50 is None and none.per_class_map50_95 == {}


@pytest.mark.export
def test_unidentifiable_file_with_ultralytics_imported_in_process(tmp_path: Path) -> None:
    """Once Ultralytics is imported in the same process, PIL asks for pi_heif on any file it
    cannot identify (ModuleNotFoundError): still the same reason, not a 'corrupt image'."""
    os.environ.update(ultralytics_offline_env())
    import ultralytics.data.utils  # noqa: F401  (registers its PIL hook)

    text = tmp_path / "zz_text.png"
    text.write_text("not an image\n")
    assert check_image(text).problem == "not an image PIL can identify"
