"""Generators of Ultralytics models of every head family (random weights, the embedded
data's classes) and their exports, and Ultralytics' own predictions on them; each runs in a
subprocess with Ultralytics offline (torch never loads into the test process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgebench.ultralytics_offline import ultralytics_offline_env

BUILD = r"""
import json, shutil, sys
from pathlib import Path
import torch
from ultralytics import RTDETR, YOLO
from ultralytics.nn.tasks import yaml_model_load

out, names, specs = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
done = {}


def calibrate(net):
    # Default-initialised weights shrink activations layer by layer: the head sees ~1e-6
    # and every anchor scores its bias (one score per stride, identical boxes), a weak
    # oracle. BatchNorm statistics taken on 8 real images (cumulative, one pass) keep the
    # activations O(1): varied scores and boxes per anchor.
    from edgebench.datasets import load_dataset
    from edgebench.preprocess import image_tensor

    images = torch.cat([torch.from_numpy(image_tensor(im.path, (320, 320))[0])
                        for im in load_dataset(None).images[:8]])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(images)
    net.eval()


for label, spec in specs.items():
    work = out / label
    work.mkdir(parents=True)
    pt = work / "model.pt"
    if "pt" in spec:  # a trained checkpoint: export a copy
        shutil.copy(spec["pt"], pt)
    else:
        cfg = spec["cfg"]
        torch.manual_seed(0)
        kind = RTDETR if "rtdetr" in cfg else YOLO
        model = kind(cfg)
        model_spec = yaml_model_load(cfg)
        model_spec["nc"] = len(names)
        model.model = type(model.model)(model_spec, nc=len(names), verbose=False)
        model.model.names = dict(enumerate(names))
        model.model.task = model.task
        calibrate(model.model)
        model.save(str(pt))
    kind = RTDETR if "rtdetr" in spec.get("cfg", "") else YOLO
    made = kind(str(pt)).export(device="cpu", verbose=False, **spec["export"])
    done[label] = str(made)
print(json.dumps(done))
"""

PREDICT = r"""
import json, sys
import numpy as np, torch
from ultralytics import YOLO
from ultralytics.utils import nms

models, tensors, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[5]
conf, iou = float(sys.argv[3]), float(sys.argv[4])
arrays = {}
from edgebench.batching import float_inputs
from pathlib import Path
images = [torch.from_numpy(x) for x in float_inputs(Path(tensors))]
for label, path in models.items():
    model = YOLO(path)
    for i, im in enumerate(images):
        (r,) = model.predict(im, imgsz=list(im.shape[2:]), conf=conf, iou=iou, max_det=300,
                             device="cpu", verbose=False)
        boxes = r.boxes.data.numpy()
        if model.task == "segment":
            # the boxes of SegmentationPredictor.postprocess before its mask step, which drops
            # boxes whose mask comes out empty (a mask rule, not a box one): its own NMS call
            backend = model.predictor.model
            preds = backend(im)
            boxes = nms.non_max_suppression(preds[0], conf, iou, None, False, max_det=300,
                                            nc=len(backend.names),
                                            end2end=getattr(backend, "end2end", False))[0]
            boxes = boxes[:, :6].numpy()
            h, w = im.shape[2:]  # clipped to the image, as construct_results' scale_boxes
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        arrays[f"{label}/{i}/boxes"] = boxes[:, :4]
        arrays[f"{label}/{i}/scores"] = boxes[:, 4]
        arrays[f"{label}/{i}/classes"] = boxes[:, 5]
np.savez(out, **arrays)
"""


def _run(code: str, args: list[str], cwd: Path) -> str:
    env = {**os.environ, **ultralytics_offline_env()}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=1200, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def build_models(out: Path, names: list[str], specs: dict[str, dict[str, Any]]
                 ) -> dict[str, Path]:
    """Per label, a model exported by Ultralytics: ``{"cfg": "yolo26n.yaml", "export":
    {...}}`` builds the config with random weights (seed 0, BatchNorm statistics of 8 val
    images) and ``names`` as classes;
    ``{"pt": path, "export": {...}}`` exports a copy of a checkpoint. Each is saved as
    ``out/<label>/model.pt`` and exported from there (Ultralytics writes next to it).
    Returns label -> exported path."""
    out.mkdir(parents=True, exist_ok=True)
    stdout = _run(BUILD, [str(out), json.dumps(names), json.dumps(specs)], out)
    return {k: Path(v) for k, v in json.loads(stdout.strip().splitlines()[-1]).items()}


def ultralytics_predictions(models: dict[str, Path], tensors: Path, conf: float, iou: float,
                            out: Path) -> dict[str, Any]:
    """Ultralytics' own predictions (``YOLO(file).predict``) of each exported model on the
    letterboxed inputs of the accuracy batch ``tensors`` (``batching.float_inputs``, each
    (1, 3, H, W)); boxes in input
    pixels. Returns ``{"<label>/<image>/boxes|scores|classes": array}``."""
    import numpy as np

    _run(PREDICT, [json.dumps({k: str(v) for k, v in models.items()}), str(tensors),
                   str(conf), str(iou), str(out)], out.parent)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}
