"""The accuracy batch's format: file size, push time to a real sshd device, and the time and
memory a runner spends loading it and producing every float32 input, for 100 embedded val
images at 320 and at 640.

Formats (the same letterboxed pixels in each):

- ``npz-f32``: the old format, one ``np.savez`` key per image, (1, 3, H, W) float32 in
  [0, 1]; the agent read every key before the first inference;
- ``npy-f32-mmap``: one uncompressed (N, 1, 3, H, W) float32 ``.npy``, memory-mapped;
- ``npy-u8``: one (N, 1, 3, H, W) uint8 ``.npy`` read whole, each image divided by 255
  into one reused float32 buffer just before its inference;
- ``npy-u8-mmap``: the same file memory-mapped (what edgebench ships now);
- ``npy-u8-mmap-fresh``: the same, a new float32 array per image (``x.astype / 255``).

Load: a fresh ``python`` process per measurement imports numpy, then times opening the file
and producing each image's float32 (1, 3, H, W) input, copied into one reused buffer (as a
runtime copies its input); peak RSS is ``VmHWM`` at the end minus ``VmRSS`` after the
numpy import (file-backed pages of a memory map count). Push: ``SSHDevice.push`` (SFTP,
paramiko) to a private OpenSSH sshd on 127.0.0.1 (tests/servers.py; needs root and
openssh-server). Rounds interleave the formats; medians are printed.

    python benchmarks/eval_batch.py [--rounds 5] [--no-push]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOAD = r"""
import sys, time
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
base = status("VmRSS:")
t0 = time.perf_counter()
if kind == "npz-f32":
    with np.load(path, allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    items = [inputs[k] for k in sorted(inputs, key=int)]
else:
    items = np.load(path, mmap_mode="r" if "mmap" in kind else None)
runtime = scratch = None
for x in items:
    if x.dtype == np.uint8 and kind.endswith("fresh"):
        x = x.astype(np.float32) / 255.0
    elif x.dtype == np.uint8:
        scratch = np.empty(x.shape, np.float32) if scratch is None else scratch
        x = np.divide(x, np.float32(255), out=scratch, dtype=np.float32)
    if runtime is None:
        runtime = np.empty(x.shape, np.float32)
    np.copyto(runtime, x)  # what a runtime does with its input
seconds = time.perf_counter() - t0
print(seconds, status("VmHWM:") - base)
"""

FORMATS = ("npz-f32", "npy-f32-mmap", "npy-u8", "npy-u8-mmap", "npy-u8-mmap-fresh")


def write_formats(folder: Path, size: int) -> dict[str, Path]:
    """The embedded val images letterboxed to ``size``, written in every format."""
    from edgebench.datasets import load_dataset
    from edgebench.preprocess import letterbox, read_image

    dataset = load_dataset(None)
    u8 = np.stack([letterbox(read_image(im.path), (size, size))[0][:, :, ::-1]
                   .transpose(2, 0, 1)[None] for im in dataset.images])
    f32 = u8.astype(np.float32) / 255.0
    paths = {k: folder / f"{k}-{size}{'.npz' if k.startswith('npz') else '.npy'}"
             for k in FORMATS}
    np.savez(paths["npz-f32"], **{str(i): t for i, t in enumerate(f32)})  # type: ignore[arg-type]
    np.save(paths["npy-f32-mmap"], f32)
    np.save(paths["npy-u8"], u8)
    paths["npy-u8-mmap"] = paths["npy-u8-mmap-fresh"] = paths["npy-u8"]
    return paths


def load_once(kind: str, path: Path) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", LOAD, kind, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--no-push", action="store_true")
    parser.add_argument("-o", type=Path, help="write the raw figures as JSON")
    args = parser.parse_args()
    loads: dict[tuple[str, int], list[float]] = {}
    peaks: dict[tuple[str, int], list[int]] = {}
    pushes: dict[tuple[str, int], list[float]] = {}
    sizes: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="eval-batch-") as tmp:
        root = Path(tmp)
        files = {size: write_formats(root, size) for size in args.sizes}
        for size, paths in files.items():
            for kind, path in paths.items():
                sizes[kind, size] = path.stat().st_size
        device = server = None
        if not args.no_push:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from servers import SshServer

            from edgebench.devices.ssh import SSHDevice

            os.environ["HOME"] = str(root)
            server = SshServer(root / "sshd").start()
            device = SSHDevice(server.uri(python=sys.executable)).__enter__()
        try:
            for r in range(args.rounds):
                for size, paths in files.items():
                    for kind in FORMATS:
                        seconds, peak = load_once(kind, paths[kind])
                        loads.setdefault((kind, size), []).append(seconds)
                        peaks.setdefault((kind, size), []).append(peak)
                        if device is not None and "u8-mmap" not in kind:  # same file
                            remote = device.workdir / f"r{r}-{paths[kind].name}"
                            t0 = time.perf_counter()
                            device.push(paths[kind], remote)
                            pushes.setdefault((kind, size), []).append(
                                time.perf_counter() - t0)
                            device.run(["rm", "-f", str(remote)], timeout_s=30)
        finally:
            if device is not None:
                device.__exit__(None, None, None)
            if server is not None:
                server.stop()
    print(f"load average: {os.getloadavg()}")
    print(f"{'format':14} {'size':>4} {'MB':>7} {'load+prepare s':>15} {'peak RSS MB':>12} "
          f"{'push s':>8}")
    rows = []
    for size in args.sizes:
        for kind in FORMATS:
            key = (kind, size)
            push_kind = "npy-u8" if "u8-mmap" in kind else kind
            push = statistics.median(pushes[push_kind, size]) if pushes else None
            row = {"format": kind, "size": size, "bytes": sizes[key],
                   "load_s": statistics.median(loads[key]),
                   "load_spread_s": [min(loads[key]), max(loads[key])],
                   "peak_rss_bytes": statistics.median(peaks[key]), "push_s": push}
            rows.append(row)
            print(f"{kind:14} {size:4} {sizes[key] / 1e6:7.1f} {row['load_s']:15.3f} "
                  f"{row['peak_rss_bytes'] / 1e6:12.1f} "
                  f"{'' if push is None else f'{push:8.2f}'}")
    if args.o:
        args.o.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
