"""Facts about Ultralytics ``.pt`` detection models (classes, ``reg_max``, strides,
parameters, GFLOPs), read by PyTorch in a subprocess so torch never loads into the harness:
``python -m edgebench.plugins.compression.model_facts inspect W.pt... --out FACTS.json``.
``distill`` uses them to check that a teacher and a student can be compared head to head."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgebench.errors import UserError
from edgebench.limits import run_limited


def inspect_models(paths: Sequence[Path], *, imgsz: int | None = None,
                   like: Path | None = None) -> list[dict[str, Any]]:
    """Per ``.pt``: classes (``nc``, ``names``), ``reg_max``, ``strides``, ``params`` and,
    with ``imgsz``, ``gflops``. :class:`UserError` naming the file that is not an
    Ultralytics detection model. With ``like`` (a ``.pt``), each file's recorded training
    size (``train_args["imgsz"]``, the default export size) is first set to that one's."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgebench-inspect-") as tmp:
        result = Path(tmp) / "facts.json"
        argv = [sys.executable, "-m", "edgebench.plugins.compression.model_facts", "inspect",
                *[str(p) for p in paths], "--out", str(result)]
        if imgsz:
            argv += ["--imgsz", str(imgsz)]
        if like is not None:
            argv += ["--like", str(like)]
        proc = run_limited(argv, f"inspecting {', '.join(p.name for p in paths)} with "
                           "PyTorch", time_s=600)
        if proc.returncode != 0 or not result.is_file():
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise UserError(lines[-1].removeprefix("edgebench: ") if lines
                            else f"inspecting {', '.join(p.name for p in paths)} failed")
        data: list[dict[str, Any]] = json.loads(result.read_text())
    return data


def describe(path: Path, imgsz: int | None) -> dict[str, Any]:
    """(In the worker.) What :func:`inspect_models` reports about one ``.pt``."""
    from ultralytics.nn.tasks import guess_model_task, load_checkpoint

    try:
        model, _ = load_checkpoint(str(path))  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ValueError(f"{path.name} is not a loadable Ultralytics .pt "
                         f"({type(exc).__name__}).") from None
    task = guess_model_task(model)  # type: ignore[no-untyped-call]
    if task != "detect":
        raise ValueError(f"{path.name} is an Ultralytics {task} model, not a detection model; "
                         "distill compares detection heads.")
    head = model.model[-1]
    names = getattr(model, "names", None) or {}
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    facts: dict[str, Any] = {
        "nc": int(head.nc), "names": names, "reg_max": int(head.reg_max),
        "strides": [int(s) for s in head.stride.tolist()],
        "params": int(sum(p.numel() for p in model.parameters()))}
    if imgsz:
        from ultralytics.utils.torch_utils import get_flops

        facts["gflops"] = round(float(get_flops(model.float(), imgsz)), 3)  # type: ignore[no-untyped-call]
    return facts


def copy_train_size(like: Path, path: Path) -> None:
    """(In the worker.) Give ``path``'s checkpoint the training size recorded in ``like``'s,
    which Ultralytics' export uses when no size is given."""
    import os

    import torch

    size = (torch.load(like, map_location="cpu", weights_only=False).get("train_args")
            or {}).get("imgsz")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    args = ckpt.get("train_args")
    if size is None or not isinstance(args, dict) or args.get("imgsz") == size:
        return
    args["imgsz"] = size
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """The worker's command line: facts as JSON in ``--out``; 2 with one sentence on stderr
    when a file is not an Ultralytics detection model."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="facts about .pt detection models (torch)")
    sub = parser.add_subparsers(dest="mode", required=True)
    inspect = sub.add_parser("inspect", help="print facts about .pt detection models (JSON)")
    inspect.add_argument("weights", type=Path, nargs="+")
    inspect.add_argument("--imgsz", type=int)
    inspect.add_argument("--out", type=Path, required=True, help="write the JSON here")
    inspect.add_argument("--like", type=Path, help="set train_args.imgsz as in this .pt")
    args = parser.parse_args(argv)
    from edgebench.ultralytics_offline import ultralytics_offline_env

    os.environ.update(ultralytics_offline_env())
    try:
        if args.like is not None:
            for path in args.weights:
                copy_train_size(args.like, path)
        facts = [describe(p, args.imgsz) for p in args.weights]
    except ValueError as exc:
        print(f"edgebench: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
