"""One cache root (``$EDGEBENCH_CACHE``, ``~`` expanded) for every cache, and one content hash."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from edgebench.cache import cache_root, sha256_file

REPO = Path(__file__).parents[1]


def test_every_cache_is_under_the_one_root_with_home_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.ultralytics_offline import ultralytics_offline_env

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EDGEBENCH_CACHE", "~/eb")
    assert cache_root() == tmp_path / "eb"
    assert ultralytics_offline_env()["YOLO_CONFIG_DIR"] == str(tmp_path / "eb" / "ultralytics")
    monkeypatch.delenv("EDGEBENCH_CACHE")
    assert cache_root() == tmp_path / ".cache" / "edgebench"


def test_the_cache_variable_is_read_in_one_module() -> None:
    readers = [p.relative_to(REPO).as_posix()
               for top in ("harness", "plugins", "devices") for p in (REPO / top).rglob("*.py")
               if re.search(r"environ(\.get)?\W+EDGEBENCH_CACHE", p.read_text())]
    assert readers == ["harness/cache.py"]


def test_sha256_file_is_the_content_hash_and_a_directory_hashes_names_and_contents(
        tmp_path: Path) -> None:
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"x" * (3 << 20))  # more than one read block
    assert sha256_file(blob) == hashlib.sha256(blob.read_bytes()).hexdigest()
    model = tmp_path / "model_ncnn_model"
    model.mkdir()
    (model / "a.param").write_text("p")
    (model / "a.bin").write_bytes(b"w")
    (model / ".hidden").write_text("not part of it")
    before = sha256_file(model)
    (model / ".hidden").write_text("still not")
    assert sha256_file(model) == before
    (model / "a.bin").rename(model / "b.bin")
    assert sha256_file(model) != before
