"""MkDocs hook: let mkdocstrings read ``edgebench.*`` from the source tree, statically.

The package ``edgebench`` lives in ``harness/`` (and ``edgebench.plugins`` in ``plugins/``,
``edgebench.devices`` in ``devices/``: ``[tool.setuptools] package-dir`` in pyproject.toml),
so no directory is named ``edgebench`` and griffe, which finds packages by directory name,
cannot load it from the checkout. Before the build this hook lays out
``build/mkdocs-src/edgebench/`` as symlinks that follow that mapping; ``mkdocs.yml`` points
the Python handler's ``paths`` there. Nothing is imported and nothing needs installing, so
the lint step builds the docs without edgebench's dependencies.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TREE = ROOT / "build" / "mkdocs-src"

# The docstrings use Sphinx roles (:class:`x`, :meth:`x`), which mkdocstrings renders as
# ":class:" followed by the code span; the code span alone reads right.
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):(?=<code>)")
# A reST literal block is introduced by "::", which Markdown keeps before the code block.
LITERAL_MARK = re.compile(r"::</p>(\s*<div class=\"(?:highlight|language-))")


def package_dirs(root: Path) -> dict[str, Path]:
    """``{"edgebench": root/"harness", "edgebench.plugins": root/"plugins", ...}``."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def lay_out(root: Path, target: Path) -> None:
    """Make ``target/<package path>`` a mirror of the package-dir mapping, in symlinks."""
    if target.exists():
        shutil.rmtree(target)
    dirs = package_dirs(root)
    for name in sorted(dirs, key=lambda n: n.count(".")):
        here = target.joinpath(*name.split("."))
        here.mkdir(parents=True, exist_ok=True)
        for entry in dirs[name].iterdir():
            link = here / entry.name
            if entry.name == "__pycache__" or f"{name}.{entry.name}" in dirs or link.exists():
                continue
            link.symlink_to(entry)


@event_priority(100)  # before mkdocstrings loads anything
def on_config(config: Any) -> Any:
    lay_out(ROOT, SOURCE_TREE)
    return config


def on_page_content(html: str, **kwargs: Any) -> str:
    return LITERAL_MARK.sub(r":</p>\1", SPHINX_ROLE.sub("", html))
