"""One export worker per run: a long-lived subprocess that imports torch and Ultralytics once,
loads each ``.pt`` once and makes every format asked of it, and the PyTorch float reference.

Why a worker: each export used to be its own ``python -m edgebench.ultralytics_export``
process, which imported torch and Ultralytics (about 2.3 s on a 2-core box) and loaded the
model twice, for every format. The worker pays that once per run. It stays a subprocess, so
the harness itself still never imports torch.

Protocol (``python -m edgebench.export_worker``): one JSON object per line on stdin, one
answer per line on the worker's protocol channel (its original stdout; everything Ultralytics,
torch or pnnx print goes to stderr, which the host keeps in a file):

- ``{"op": "export", "weights": W, "sha256": S, "format": F, "out": DIR, "imgsz": [H, W]}``
  writes what ``python -m edgebench.ultralytics_export --format F`` writes into ``DIR``
  (``imgsz`` may be ``null``: the checkpoint's training size);
- ``{"op": "predict", "weights": W, "sha256": S, "tensors": NPZ, "out": NPZ,
  "threads": N}`` writes what ``--predict`` writes (``threads`` may be ``null``);
- the answer is ``{"ok": true}`` or ``{"ok": false, "code": N}`` (the exit code the one-shot
  tool would have had; its error is the last line of stderr, a traceback's exception line).

Limits: :mod:`edgebench.limits` as for every converter. The worker runs in a process group of
its own; while it serves a request the host samples the summed RSS of its process tree (pnnx
included) every :data:`~edgebench.limits.POLL_S` s and kills the tree over the memory limit
or past the request's time budget, with the same sentences as :func:`~edgebench.limits.\
run_limited`. A worker that dies (a limit, a segfault, SIGKILL) fails only the request it was
serving, with ``<what> failed (killed by SIGSEGV): <last line>``; the next request starts a
new worker. The worker exits when its stdin closes (the run ended, or the host died).

Loaded models are kept per (path, content hash), the last :data:`MODELS_KEPT` of them; each
export and reference works on a deep copy (Ultralytics' exporter fuses and flags the model it
is given in place). Every request starts at torch's default thread count (an Ultralytics
export leaves ``torch.set_num_threads(1)`` behind: a reference after it would sum in another
order than the one-shot tool's, about 1e-6 apart), so the worker's artifacts and references
are the one-shot tool's, bit for bit (tests/test_export_worker.py).

A run's worker is found through :func:`current_worker` (a context variable the session sets
with :func:`using`): the backends' ``export()`` functions and compressors call
:func:`edgebench.pipeline.export_with_ultralytics` without a session at hand. Outside a run
(scripts, tests calling it directly) each call gets a worker of its own, closed after it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import CaseError
from .input_size import ImgSz, hw
from .limits import (
    POLL_S,
    TIME_ENV,
    _kill_tree,
    over_memory,
    tool_limits,
    tree_rss,
)

MODELS_KEPT = 2
"""Loaded ``.pt`` models the worker keeps (a run plans source by source: one is enough)."""
LOG_ENV = "EDGEBENCH_EXPORT_WORKER_LOG"
"""If set, a file each worker appends ``start <pid>`` to when it starts (for tests and
diagnosis: how many workers a run started)."""
EXPORT_TIME_S = 1800.0
"""Time budget of one export or reference, as for the one-shot tool."""

_CURRENT: contextvars.ContextVar[ExportWorker | None] = contextvars.ContextVar(
    "edgebench_export_worker", default=None)


def current_worker() -> ExportWorker | None:
    """The export worker of the run in progress (see :func:`using`), else ``None``."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(worker: ExportWorker) -> Iterator[ExportWorker]:
    """Make ``worker`` the :func:`current_worker` inside the block (this thread's context)."""
    token = _CURRENT.set(worker)
    try:
        yield worker
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def worker_for_call() -> Iterator[ExportWorker]:
    """The run's worker, or (outside a run) a worker of its own, closed after the block."""
    worker = current_worker()
    if worker is not None:
        yield worker
        return
    own = ExportWorker()
    try:
        yield own
    finally:
        own.close()


class ExportWorker:
    """The host's end of one export worker: started on the first request, restarted after
    it died, stopped by :meth:`close`. One request at a time (thread-safe: callers queue).

    ``python``: the interpreter to run it with (this one by default).
    """

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.starts = 0
        """How many worker processes this object started."""
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[bytes | None] = queue.Queue()
        self._dir = tempfile.TemporaryDirectory(prefix="edgebench-export-worker-")
        self._stderr_path = Path(self._dir.name) / "stderr.log"

    def export(self, weights: Path, sha256: str, fmt: str, out: Path, imgsz: ImgSz | None,
               what: str) -> None:
        """Export ``weights`` to ``fmt`` into ``out`` (see the module's protocol);
        :class:`CaseError` (``<what> failed (exit 1): <last error line>``, or over a limit)
        when it fails."""
        size = hw(imgsz)
        self._request({"op": "export", "weights": str(weights), "sha256": sha256,
                       "format": fmt, "out": str(out),
                       "imgsz": list(size) if size is not None else None}, what)

    def predict(self, weights: Path, sha256: str, tensors: Path, out: Path, what: str,
                threads: int | None = None) -> None:
        """Run ``weights`` with PyTorch on ``tensors``, outputs to ``out`` (an ``.npz``, its
        description beside it with suffix ``.json``); :class:`CaseError` as :meth:`export`."""
        self._request({"op": "predict", "weights": str(weights), "sha256": sha256,
                       "tensors": str(tensors), "out": str(out), "threads": threads}, what)

    def abort(self) -> None:
        """Kill the worker's process tree now, without waiting for the request it serves
        (that request then fails as killed by SIGKILL). Safe from any thread; the next
        request starts a new worker."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_tree(proc.pid)

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it; killed if it does not end in 10 s)
        and remove its stderr log."""
        with self._lock:
            self._stop(grace_s=10)
        self._dir.cleanup()

    def __enter__(self) -> ExportWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop(grace_s=0)
        self._answers = queue.Queue()
        with self._stderr_path.open("ab") as err:
            proc = subprocess.Popen([self.python, "-m", "edgebench.export_worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True)
        self.starts += 1
        assert proc.stdout is not None
        threading.Thread(target=_read_lines, args=(proc.stdout, self._answers),
                         name="export worker answers", daemon=True).start()
        self._proc = proc
        return proc

    def _stop(self, grace_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if grace_s > 0 and proc.poll() is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        _kill_tree(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def _request(self, request: dict[str, Any], what: str) -> None:
        limits = tool_limits(EXPORT_TIME_S)
        with self._lock:
            proc = self._start()
            offset = self._stderr_path.stat().st_size
            done = False
            try:
                assert proc.stdin is not None
                try:
                    proc.stdin.write((json.dumps(request) + "\n").encode())
                    proc.stdin.flush()
                except OSError:
                    pass  # it died at start: told below by its exit code
                answer = self._wait(proc, what, limits.memory_bytes, limits.time_s)
                done = True
            finally:
                if not done:  # a limit, Ctrl-C: nothing of it may outlive the request
                    self._stop(grace_s=0)
            if answer is None:  # it died
                self._stop(grace_s=0)
                code = proc.returncode if proc.returncode is not None else -9
                raise CaseError(f"{what} failed ({_exit_text(code)}): {self._error(offset)}")
            if not answer.get("ok"):
                raise CaseError(f"{what} failed ({_exit_text(int(answer.get('code', 1)))}): "
                                f"{self._error(offset)}")

    def _wait(self, proc: subprocess.Popen[bytes], what: str, memory: int | None,
              time_s: float) -> dict[str, Any] | None:
        """The worker's answer, or ``None`` when it died; over a limit :class:`CaseError`."""
        deadline = time.monotonic() + time_s
        while True:
            try:
                line = self._answers.get(timeout=POLL_S)
            except queue.Empty:
                pass
            else:
                if line is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=30)
                    return None
                return dict(json.loads(line))
            rss = tree_rss(proc.pid)
            if memory is not None and rss > memory:
                raise over_memory(what, memory)
            if time.monotonic() > deadline:
                raise CaseError(f"{what} took longer than {time_s:g} s; set {TIME_ENV} to "
                                "allow more time, or use a smaller model or --imgsz")

    def _error(self, offset: int) -> str:
        """The last error line the worker wrote since ``offset`` of its stderr."""
        from .pipeline import last_error_line

        with self._stderr_path.open("rb") as err:
            err.seek(offset)
            text = err.read().decode(errors="replace")
        return last_error_line(text, "")


def _read_lines(stream: IO[bytes], answers: queue.Queue[bytes | None]) -> None:
    for line in iter(stream.readline, b""):
        answers.put(line)
    answers.put(None)


def _exit_text(code: int) -> str:
    from .pipeline import _exit_text as text

    return text(code)


# -- the worker's side (runs in the subprocess: imports torch) ---------------------------


def serve(requests: IO[str], answers: IO[str]) -> None:
    """Answer every request line of ``requests`` on ``answers`` until ``requests`` ends."""
    import traceback

    from . import ultralytics_export as ux

    ux._safe_loading()  # before Ultralytics is imported
    import torch

    threads = torch.get_num_threads()  # an export leaves 1 set: each request starts afresh
    models: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def loaded(request: dict[str, Any]) -> Any:
        key = (request["weights"], str(request.get("sha256")))
        if key not in models:
            models[key] = ux.load_yolo(Path(request["weights"]))
            while len(models) > MODELS_KEPT:
                models.popitem(last=False)
        models.move_to_end(key)
        return models[key]

    for line in requests:
        if not line.strip():
            continue
        code = 0
        torch.set_num_threads(threads)
        try:
            request = json.loads(line)
            model = loaded(request)
            weights = Path(request["weights"])
            if request["op"] == "export":
                imgsz = request.get("imgsz")
                size = ux.export_size(model, tuple(imgsz) if imgsz else None)
                ux.export_loaded(model, weights, request["format"], Path(request["out"]), size)
            elif request["op"] == "predict":
                ux.predict_loaded(model, weights, Path(request["tensors"]),
                                  Path(request["out"]), request.get("threads"))
            else:
                raise ValueError(f"unknown request {request.get('op')!r}")
        except SystemExit as exc:  # a one-sentence error, as the one-shot tool exits with
            print(exc.code if isinstance(exc.code, str) else f"exit {exc.code}",
                  file=sys.stderr)
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        answers.write(json.dumps({"ok": code == 0, "code": code}) + "\n")
        answers.flush()


def main() -> int:
    """The worker process: the protocol on the original stdout, all other output to stderr."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what Ultralytics, torch and pnnx print goes to stderr
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(f"start {os.getpid()}\n")
    serve(sys.stdin, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
