"""Where edgebench keeps its caches, and the content hashes that key them.

One place for both: every cache (exports, datasets, input tensors, references, Ultralytics'
config dir, device locks) lives under :func:`cache_root`, and every file or directory
artifact is identified by :func:`sha256_file`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["artifact_files", "cache_root", "locked", "sha256_file", "size_bytes"]


def cache_root() -> Path:
    """Root of edgebench's caches: ``$EDGEBENCH_CACHE`` if set (``~`` expanded), otherwise
    ``~/.cache/edgebench``."""
    env = os.environ.get("EDGEBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgebench"


@contextlib.contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold the exclusive lock of the cache entry ``entry`` (``fcntl.flock`` on the hidden
    file ``.<name>.lock`` beside it) for the block: two runs (processes) making the same
    entry take turns, so the second one finds the first one's entry and reuses it. The kernel
    drops the lock when its holder dies, so a killed run never blocks the next. Waits as long
    as the holder works (Ctrl-C interrupts the wait). Writers still build in a temp dir and
    rename it into place, so readers that take no lock see a whole entry or none."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(entry.parent / f".{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content or, for a directory artifact, of its files (see
    :func:`artifact_files`): names and contents, so renaming a file changes it."""
    if path.is_dir():
        digest = hashlib.sha256(b"edgebench-dir-v1\0")
        for f in artifact_files(path):
            digest.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\0".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(path: Path) -> list[Path]:
    """The files that make up an artifact: the file itself, or every regular file under a
    directory artifact (ncnn's ``.param`` + ``.bin``), sorted, hidden files left out.
    Pushing an artifact to a device pushes exactly these."""
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*")
                  if f.is_file() and not any(p.startswith(".")
                                             for p in f.relative_to(path).parts))


def size_bytes(path: Path) -> int:
    """Bytes of the artifact at ``path`` (all of :func:`artifact_files`)."""
    return sum(f.stat().st_size for f in artifact_files(path))
