"""The local host as a device: runners run in a subprocess inside a private work dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import ClassVar, Self

from edgebench.contracts import Completed, Device
from edgebench.errors import CaseError, UserError
from edgebench.hookspecs import Register, hookimpl
from edgebench.redaction import redact
from edgebench.retry import RunnerTimedOut

from .transport import device_lock, new_workdir_name, parse_query
from .workdirs import HostProcess, owner_command, remove_stale


class LocalDevice(Device):
    """``local`` (or ``local://``): this machine, the harness's own Python by default.

    ``local?python=PATH`` runs the runners with another interpreter of this machine (a venv
    with another numpy or runtime, e.g. ``tflite-runtime`` 2.14 next to numpy 1.26): a second
    device, so both run side by side in one ``edgebench run``.
    """

    scheme: ClassVar[str] = "local"

    def __init__(self, uri: str = "local", *, python: str | None = None) -> None:
        self.uri = uri
        self.python = python or _uri_python(uri) or sys.executable
        self._workdir: Path | None = None
        self._running: subprocess.Popen[str] | None = None
        self._aborted = False

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """``local`` or ``local://``, optionally with ``?python=PATH`` (an executable file):
        nothing else would be read (and a URI carries into the report as it is)."""
        python = _uri_python(uri)
        if python is None:
            return
        if not os.path.isabs(python) or not os.path.isfile(python) \
                or not os.access(python, os.X_OK):
            raise UserError(f"device {redact(uri)!r}: python={python!r} is not an executable "
                            "file; give the absolute path of an interpreter, e.g. "
                            "local?python=/opt/venv/bin/python.")

    @property
    def workdir(self) -> PurePosixPath:
        if self._workdir is None:
            raise RuntimeError("LocalDevice used outside its 'with' block")
        return PurePosixPath(self._workdir)

    def __enter__(self) -> Self:
        """Make the private work dir (0700) in the temp dir, first removing the ones that
        runs which are over left there (:mod:`edgebench.devices.workdirs`)."""
        base = Path(tempfile.gettempdir())
        remove_stale(_sh, PurePosixPath(base))
        workdir = base / new_workdir_name()
        workdir.mkdir(mode=0o700)
        self._workdir = workdir
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _sh(owner_command(PurePosixPath(workdir), HostProcess.current(), connection=False))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def push(self, local: Path, remote: PurePosixPath) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, Path(remote))

    def pull(self, remote: PurePosixPath, local: Path) -> None:
        if not Path(remote).exists():
            raise CaseError(f"{remote} was not produced on the device")
        shutil.copyfile(Path(remote), local)

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        """Run ``argv`` holding this machine's device lock: ``local`` and ``local?python=``
        devices of one run (one thread each) take turns, never measuring at once."""
        with device_lock("local"):
            return self._run(argv, timeout_s=timeout_s)

    def _run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        start = time.perf_counter()
        if self._aborted:
            raise CaseError("aborted")
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=self._workdir, start_new_session=True,  # Ctrl-C is the harness's to handle
        )
        self._running = proc
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            out, _ = _kill_group(proc)
            raise RunnerTimedOut(timeout_s, out) from None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            self._running = None
        if self._aborted:
            raise CaseError("aborted")
        return Completed(tuple(argv), proc.returncode, out, err, time.perf_counter() - start)

    def abort(self) -> None:
        self._aborted = True
        proc = self._running
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _uri_python(uri: str) -> str | None:
    """The ``python`` option of a local device URI, or ``None`` when it has none; a host,
    a path or another option is a :class:`UserError`."""
    base, sep, query = uri.partition("?")
    if base not in ("local", "local://") or (sep and not query):
        raise UserError(f"device {redact(uri)!r}: the local device takes no host and one "
                        "option, python=PATH; write 'local' or 'local?python=/path/to/python'.")
    return parse_query(uri, query, ("python",)).get("python") if query else None


def _sh(line: str) -> str:
    """stdout of a housekeeping shell line run here."""
    done = subprocess.run(["sh", "-c", line], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def _kill_group(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill the runner's process group; what it printed until then."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, err = proc.communicate()
    return out or "", err or ""


@hookimpl
def edgebench_register_devices(register: Register) -> None:
    register(LocalDevice)
