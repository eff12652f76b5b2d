"""Environment helpers for running Ultralytics fully offline.

Ultralytics tries to fetch several things from the network at run time
(the ``Arial.ttf`` font used for plots/labels, AMP-check weights, pip
auto-installs of missing requirements, analytics/settings sync).  On an
air-gapped machine those attempts either hang on DNS or raise.  The helpers
here build an environment that avoids all of them:

* ``YOLO_OFFLINE=1`` -- ``ultralytics.utils.is_online()`` returns ``False``
  immediately (no DNS probes, no analytics/hub sync).
* ``YOLO_AUTOINSTALL=False`` -- parsed by ``ultralytics.utils.env_bool``
  (``"false"`` is falsy), disables pip auto-updates of missing requirements.
* ``YOLO_CONFIG_DIR=<private dir>`` -- a private settings directory.
  Ultralytics uses ``$YOLO_CONFIG_DIR/Ultralytics`` as ``USER_CONFIG_DIR``
  (``settings.json`` lives there); we pre-populate that sub-directory with
  ``Arial.ttf`` / ``Arial.Unicode.ttf`` so that
  ``ultralytics.utils.checks.check_font`` never tries to download them.

Ultralytics reads these variables at *import* time (``AUTOINSTALL`` and
``USER_CONFIG_DIR`` are module-level constants), so they must be in
``os.environ`` before ``import ultralytics``.  This module therefore imports
neither torch nor ultralytics.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .cache import cache_root

__all__ = [
    "FONT_NAMES",
    "ULTRALYTICS_SUBDIR",
    "find_matplotlib_font",
    "ultralytics_offline",
    "ultralytics_offline_env",
]

#: Font file names Ultralytics looks up in its user config dir (``check_font``).
FONT_NAMES: tuple[str, ...] = ("Arial.ttf", "Arial.Unicode.ttf")

#: Sub-directory of ``$YOLO_CONFIG_DIR`` that Ultralytics uses as ``USER_CONFIG_DIR``.
ULTRALYTICS_SUBDIR: str = "Ultralytics"


def find_matplotlib_font(name: str = "DejaVuSans.ttf") -> Path:
    """Locate a TTF bundled with matplotlib without importing matplotlib.

    Args:
        name: File name inside ``matplotlib/mpl-data/fonts/ttf``.

    Returns:
        Path to the font file.

    Raises:
        FileNotFoundError: If matplotlib or the font file is not installed.
    """
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("matplotlib is not installed; cannot locate a bundled TTF font")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "mpl-data" / "fonts" / "ttf" / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found in matplotlib's mpl-data/fonts/ttf")


def _install_fonts(font_dir: Path) -> None:
    """Copy matplotlib's DejaVuSans.ttf into ``font_dir`` under the Arial names.

    Copies are written to a temporary name and renamed, so concurrent callers
    never observe a partially written font.
    """
    source: Path | None = None
    for font_name in FONT_NAMES:
        target = font_dir / font_name
        if target.is_file() and target.stat().st_size > 0:
            continue
        if source is None:
            source = find_matplotlib_font()
        tmp = font_dir / f".{font_name}.{os.getpid()}.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def ultralytics_offline_env(cache_dir: Path | None = None) -> dict[str, str]:
    """Prepare a private Ultralytics config dir and return offline env vars.

    Args:
        cache_dir: Directory to use as ``YOLO_CONFIG_DIR``.  Defaults to
            ``$EDGEBENCH_CACHE/ultralytics`` or ``~/.cache/edgebench/ultralytics``.

    The fonts are written to ``<cache_dir>/Ultralytics/`` because Ultralytics
    appends that sub-directory to ``YOLO_CONFIG_DIR``.

    Returns:
        Mapping of environment variable names to values.  Merge it into
        ``os.environ`` (or a subprocess ``env``) *before* importing ultralytics.
    """
    config_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "ultralytics"
    config_dir = config_dir.expanduser().resolve()
    font_dir = config_dir / ULTRALYTICS_SUBDIR
    font_dir.mkdir(parents=True, exist_ok=True)
    _install_fonts(font_dir)
    return {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_CONFIG_DIR": str(config_dir),
    }


@contextlib.contextmanager
def ultralytics_offline(cache_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """Temporarily apply :func:`ultralytics_offline_env` to ``os.environ``.

    Previous values (or absence) of each variable are restored on exit.  Note
    that Ultralytics caches some of these at import time, so the import must
    happen inside the ``with`` block to take effect (and its effects persist
    in the already-imported module afterwards).

    Args:
        cache_dir: Passed to :func:`ultralytics_offline_env`.

    Yields:
        The environment variables that were applied.
    """
    env = ultralytics_offline_env(cache_dir)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
