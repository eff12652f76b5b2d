"""Host steps side by side: a run's exports, conversions and float references, N at a time.

Why: each host step is one converter doing mostly single-threaded work (measured on a
2-core Zen 3 VM, one-shot ``python -m edgebench.ultralytics_export``, wall ≈ user time:
ONNX 5.2 s wall / 4.7 s user, LiteRT 17.4 s / 16.0 s, ncnn 7.0 s / 6.4 s). One after
another they leave every core but one idle; side by side the host's work takes about as
long as its longest step (docs/measurements.md "Host steps side by side").

Each job has an export worker of its own (:mod:`edgebench.export_worker`: a process that
imports torch once; started on the job's first Ultralytics request, so a run whose steps
need no export starts none). Steps that need the same thing wait for each other on the
caches' entry locks (an ONNX export that the ONNX Runtime and MNN steps both need is made
once; the float reference of a model once). Results come back in the order the steps were
given (:meth:`HostJobs.submit`, :meth:`Step.result`), so the plan's order never depends on
which converter finished first.

How many: ``$EDGEBENCH_HOST_JOBS`` if set (an integer >= 1), else :func:`default_jobs`:
the host's usable cores, at most :data:`MAX_DEFAULT`, and at most one job per
:data:`JOB_MEMORY_GIB` GiB available (each torch worker holds 0.5-1.5 GiB; a conversion
may take more), never fewer than 1. Each step's converter keeps its own memory and time
limits (:mod:`edgebench.limits`).

Threads: :class:`edgebench.threads.Worker` (their end is a flag, not ``Thread.join``), and
every wait polls an event so Ctrl-C reaches the caller within :data:`POLL_S`. :meth:`abort`
kills the workers' processes (a step in progress then fails at once) for Ctrl-C or a host
error; :meth:`close` ends the jobs.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

from .agent.edgebench_agent import usable_cores
from .errors import UserError
from .export_worker import ExportWorker, using
from .limits import GIB, read_meminfo
from .threads import Worker

T = TypeVar("T")

HOST_JOBS_ENV = "EDGEBENCH_HOST_JOBS"
MAX_DEFAULT = 4
"""Most jobs by default: past four, a run's steps (a few formats per model) rarely gain."""
JOB_MEMORY_GIB = 3.0
"""GiB of available memory per default job (a torch export worker and one converter)."""
POLL_S = 0.1
"""How often a wait for a step looks again (seconds): the bound on a Ctrl-C's delay."""


def _available_gib() -> float | None:
    available = read_meminfo().get("MemAvailable")
    return available / GIB if available is not None else None


def default_jobs(cores: int | None = None, available_gib: float | None = None) -> int:
    """``min(cores, MAX_DEFAULT, available_gib // JOB_MEMORY_GIB)``, at least 1.

    ``cores``: default the cores this process may use (the device agent's
    ``usable_cores``: the affinity mask where the OS has one);
    ``available_gib``: default ``MemAvailable`` from ``/proc/meminfo`` (no memory bound
    where it cannot be read)."""
    if cores is None:
        cores = usable_cores()
    if available_gib is None:
        available_gib = _available_gib()
    jobs = min(cores, MAX_DEFAULT)
    if available_gib is not None:
        jobs = min(jobs, int(available_gib // JOB_MEMORY_GIB))
    return max(1, jobs)


def host_jobs(environ: Mapping[str, str] = os.environ) -> int:
    """How many host steps a run does at once: ``$EDGEBENCH_HOST_JOBS``, else
    :func:`default_jobs`. Raises :class:`UserError` for a value that is not an integer
    >= 1."""
    text = environ.get(HOST_JOBS_ENV, "").strip()
    if not text:
        return default_jobs()
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"{HOST_JOBS_ENV} must be an integer >= 1 (host steps at once); "
                        f"got {text!r}.")
    return jobs


class Step(Generic[T]):
    """One submitted host step: its result once done (see :meth:`result`)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.cancelled = False
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """Whether the step has ended (returned, raised or been cancelled)."""
        return self._done.is_set()

    def result(self) -> T:
        """The step's return value, waiting for it (Ctrl-C reaches the caller within
        :data:`POLL_S`); re-raises what the step raised."""
        while not self._done.wait(POLL_S):
            pass
        if self._error is not None:
            raise self._error
        if self.cancelled:
            raise RuntimeError("the host step was cancelled")
        return self._value  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self._value = self.fn()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def _cancel(self) -> None:
        self.cancelled = True
        self._done.set()


class HostJobs:
    """``jobs`` threads running submitted steps in order of submission, each step inside
    :func:`~edgebench.export_worker.using` the job's own :class:`ExportWorker` (``jobs``
    workers in all, each started on first need).

    ``worker_factory``: makes a job's worker (tests pass their own).
    """

    def __init__(self, jobs: int,
                 worker_factory: Callable[[], ExportWorker] = ExportWorker) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.workers = [worker_factory() for _ in range(jobs)]
        self._free: queue.Queue[ExportWorker] = queue.Queue()
        for worker in self.workers:
            self._free.put(worker)
        self._steps: queue.Queue[Step[object] | None] = queue.Queue()
        self._threads: list[Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> Step[T]:
        """Run ``fn()`` in the next free job (steps start in the order given)."""
        step: Step[T] = Step(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("the host jobs are closed")
            if len(self._threads) < self.jobs:  # started as needed: one step, one thread
                thread = Worker(self._serve, name=f"host job {len(self._threads) + 1}")
                self._threads.append(thread)
                thread.start()
            self._steps.put(step)  # type: ignore[arg-type]
        return step

    @contextmanager
    def worker(self) -> Iterator[ExportWorker]:
        """A free job's worker for a step run in the caller's own thread (a model's
        compression), inside :func:`using` it; waits while every worker is busy."""
        while True:
            try:
                worker = self._free.get(timeout=POLL_S)
                break
            except queue.Empty:
                continue
        try:
            with using(worker):
                yield worker
        finally:
            self._free.put(worker)

    def abort(self) -> None:
        """Cancel the steps not started and kill every worker's process: a step in
        progress fails at once (its request ends as killed). Safe from any thread."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    step = self._steps.get_nowait()
                except queue.Empty:
                    break
                if step is not None:
                    step._cancel()
        for worker in self.workers:
            worker.abort()

    def close(self, *, abort: bool = False) -> None:
        """End the jobs (after :meth:`abort` with ``abort``; else after the steps already
        submitted) and close every worker. Idempotent."""
        if abort:
            self.abort()
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            for _ in threads:
                self._steps.put(None)
        for thread in threads:
            while not thread.done.wait(POLL_S):
                pass
        for worker in self.workers:
            worker.close()

    def _serve(self) -> None:
        while True:
            step = self._steps.get()
            if step is None:
                return
            if step.done():  # cancelled while queued
                continue
            with self.worker():
                step._run()
