"""Datasets in YOLO and COCO layouts, unlabelled folders, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebench.datasets import GroundTruth, load_dataset
from edgebench.errors import UserError
from edgebench.shapes import CLASS_NAMES, generate_shapes


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root, seed=3, n_train=2, n_val=6)
    return root


def copy_of(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    text = (dst / "data.yaml").read_text().replace(str(root.resolve()), str(dst.resolve()))
    (dst / "data.yaml").write_text(text)
    return dst


def to_coco(yolo: Path, out: Path) -> Path:
    """Write the YOLO val split as a COCO layout: annotations/instances_val.json + images."""
    ds = load_dataset(yolo / "data.yaml")
    (out / "images" / "val").mkdir(parents=True)
    (out / "annotations").mkdir()
    images, anns = [], []
    for i, im in enumerate(ds.images, 1):
        shutil.copy(im.path, out / "images" / "val" / im.path.name)
        images.append({"id": i * 10, "file_name": im.path.name, "width": im.width,
                       "height": im.height})
        assert im.truth is not None
        for (x1, y1, x2, y2), c in zip(im.truth.boxes, im.truth.classes):
            anns.append({"id": len(anns) + 1, "image_id": i * 10, "category_id": 100 + c,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": 0})
    cats = [{"id": 100 + i, "name": n} for i, n in enumerate(ds.class_names)]
    path = out / "annotations" / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_yolo_layout(yolo_root: Path) -> None:
    ds = load_dataset(yolo_root / "data.yaml")
    assert ds.labelled and ds.class_names == CLASS_NAMES and len(ds.images) == 6
    assert [im.path.name for im in ds.images] == sorted(im.path.name for im in ds.images)
    for im in ds.images:
        assert im.truth is not None and len(im.truth.boxes) == len(im.truth.classes) > 0
        for x1, y1, x2, y2 in im.truth.boxes:
            assert 0 <= x1 < x2 <= im.width and 0 <= y1 < y2 <= im.height
    assert load_dataset(yolo_root) == ds  # the directory holding data.yaml works too
    assert len(ds.first(2).images) == 2 and ds.first(2).images == ds.images[:2]


def test_coco_layout_gives_the_same_truth(yolo_root: Path, tmp_path: Path) -> None:
    instances = to_coco(yolo_root, tmp_path / "coco")
    yolo = load_dataset(yolo_root / "data.yaml")
    for coco in (load_dataset(instances), load_dataset(tmp_path / "coco")):
        assert coco.class_names == yolo.class_names and coco.labelled
        assert [i.path.name for i in coco.images] == [i.path.name for i in yolo.images]
        for a, b in zip(coco.images, yolo.images):
            assert a.truth is not None and b.truth is not None
            assert a.truth.classes == b.truth.classes
            assert np.allclose(a.truth.boxes, b.truth.boxes)


def test_unlabelled_folder(yolo_root: Path) -> None:
    ds = load_dataset(yolo_root / "images" / "val")
    assert not ds.labelled and len(ds.images) == 6 and ds.images[0].truth is None


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no images"):
        load_dataset(tmp_path)


def test_image_without_label_is_background(yolo_root: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """As Ultralytics: an image without a label file is a background image, with a warning."""
    root = copy_of(yolo_root, tmp_path)
    victim = sorted((root / "labels" / "val").iterdir())[2]
    victim.unlink()
    ds = load_dataset(root / "data.yaml")
    image = next(im for im in ds.images if im.path.stem == victim.stem)
    assert image.truth == GroundTruth((), ()) and len(ds.images) == 6 and not ds.left_out
    assert ("1 images have no label file and count as background images without objects "
            f"(as in Ultralytics): {image.path}") in capsys.readouterr().err


def test_out_of_range_class_leaves_the_image_out(yolo_root: Path, tmp_path: Path) -> None:
    root = copy_of(yolo_root, tmp_path)
    label = sorted((root / "labels" / "val").iterdir())[1]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    ds = load_dataset(root / "data.yaml")
    assert len(ds.images) == 5
    (lo,) = ds.left_out
    assert lo.path.stem == label.stem
    assert lo.reason == f"label {label}: class 7 exceeds the dataset's 4 classes (0-3)"


def test_box_past_the_edge_is_clipped(yolo_root: Path, tmp_path: Path) -> None:
    """Ultralytics checks the xywh values (at most 1.01), not the corners, and its validator
    clips the boxes to the image."""
    root = copy_of(yolo_root, tmp_path)
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text("0 0.95 0.5 0.3 0.2\n")
    ds = load_dataset(root / "data.yaml")
    image = next(im for im in ds.images if im.path.stem == label.stem)
    assert image.truth is not None
    ((x1, y1, x2, y2),) = image.truth.boxes
    assert x1 == pytest.approx(0.8 * image.width) and x2 == image.width
    assert (y1, y2) == pytest.approx((0.4 * image.height, 0.6 * image.height))
    label.write_text("0 1.02 0.5 0.3 0.2\n")
    (lo,) = load_dataset(root / "data.yaml").left_out
    assert lo.reason.startswith(f"label {label}: non-normalized or out of bounds coordinates")


def test_malformed_label_leaves_the_image_out(yolo_root: Path, tmp_path: Path) -> None:
    root = copy_of(yolo_root, tmp_path)
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text("0 0.5 0.5\n")
    (lo,) = load_dataset(root / "data.yaml").left_out
    assert lo.reason == f"label {label}: labels require 5 columns, 3 columns detected"


def test_official_coco_layouts_are_found(yolo_root: Path, tmp_path: Path) -> None:
    """The COCO download (annotations/instances_val2017.json beside val2017/), and file_name
    values holding a sub-path (relative to the dataset root), give the same images and
    truth as Ultralytics' images/<split>/ layout."""
    instances = to_coco(yolo_root, tmp_path / "coco")
    reference = load_dataset(instances)
    (tmp_path / "coco" / "images" / "val").rename(tmp_path / "coco" / "val")
    (tmp_path / "coco" / "images").rmdir()
    official = load_dataset(instances)
    assert [im.path for im in official.images] == [
        tmp_path / "coco" / "val" / im.path.name for im in reference.images]
    assert [im.truth for im in official.images] == [im.truth for im in reference.images]
    data = json.loads(instances.read_text())
    for info in data["images"]:
        info["file_name"] = f"val/{info['file_name']}"
    instances.write_text(json.dumps(data))
    sub_path = load_dataset(instances)
    assert [im.path for im in sub_path.images] == [im.path for im in official.images]
    assert [im.truth for im in sub_path.images] == [im.truth for im in reference.images]


def test_coco_missing_image_and_bad_box(yolo_root: Path, tmp_path: Path) -> None:
    instances = to_coco(yolo_root, tmp_path / "coco")
    data = json.loads(instances.read_text())
    data["annotations"][0]["bbox"] = [5, 5, 10_000, 10]
    instances.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        load_dataset(instances)
    name, (h, w) = data["images"][0]["file_name"], (data["images"][0]["height"],
                                                   data["images"][0]["width"])
    assert str(info.value) == (f"{instances}: annotation 1 has a box outside image {name} "
                               f"({h}×{w}, height×width).")
    data["annotations"][0]["bbox"] = [5, 5, 10, 10]
    data["images"][0]["file_name"] = "ghost.png"
    instances.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"lists image 'ghost\.png'"):
        load_dataset(instances)


def test_coco_refusals(yolo_root: Path, tmp_path: Path) -> None:
    """What pycocotools cannot score, and a file whose image size disagrees with the image."""
    instances = to_coco(yolo_root, tmp_path / "coco")
    data = json.loads(instances.read_text())
    del data["annotations"][0]["area"]
    instances.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        load_dataset(instances)
    assert str(info.value) == (f"{instances}: annotation 1 lacks an image_id, a bbox of 4 "
                               "numbers, an area or iscrowd, which pycocotools needs to score "
                               "against the file.")
    data = json.loads(to_coco(yolo_root, tmp_path / "coco2").read_text())
    first = data["images"][0]
    first["width"], first["height"] = first["height"], first["width"]
    instances = tmp_path / "coco2" / "annotations" / "instances_val.json"
    instances.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        load_dataset(instances)
    assert str(info.value) == (
        f"{instances} says image {first['file_name']} is {first['height']}×{first['width']} "
        f"(height×width) but it is {first['width']}×{first['height']} (after EXIF "
        "orientation), so boxes and detections would be in different frames; correct its "
        "width and height in the file.")


def test_not_a_dataset_file(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(UserError, match=r"neither a data\.yaml nor a COCO"):
        load_dataset(f)
    j = tmp_path / "x.json"
    j.write_text("{}")
    with pytest.raises(UserError, match="not a COCO instances file"):
        load_dataset(j)


@pytest.mark.parametrize(("extra", "message"), [
    ("channels: 1\n", "{yaml} has 'channels: 1'; edgebench evaluates 3-channel (colour) "
                      "datasets only."),
    ("nc: 3\n", "{yaml} has 4 'names' but 'nc: 3'; make them match."),
])
def test_data_yaml_refusals(yolo_root: Path, tmp_path: Path, extra: str, message: str) -> None:
    root = copy_of(yolo_root, tmp_path)
    yaml = root / "data.yaml"
    yaml.write_text("\n".join(line for line in yaml.read_text().splitlines()
                              if not line.startswith("nc:")) + "\n" + extra)
    with pytest.raises(UserError) as info:
        load_dataset(yaml)
    assert str(info.value) == message.format(yaml=yaml)


def test_data_yaml_names_with_gaps_and_missing_split(tmp_path: Path) -> None:
    yaml = tmp_path / "data.yaml"
    yaml.write_text("val: images\nnames: {0: a, 2: c}\n")
    with pytest.raises(UserError) as info:
        load_dataset(yaml)
    assert str(info.value) == f"{yaml} 'names' must number classes 0..n-1 without gaps."
    yaml.write_text("val: nowhere\nnames: [a]\n")
    with pytest.raises(UserError) as info:
        load_dataset(yaml)
    assert str(info.value) == (f"{yaml}: the 'val' images {(tmp_path / 'nowhere').resolve()} "
                               "do not exist.")
