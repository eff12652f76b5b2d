"""The host's cores, taken in turns by the run's host work and its timed loops on the host.

A device on the host itself (``local``, ``local?python=...``) measures on the cores that
the run's exports, conversions, compression and float references use (torch and pnnx take
every core). So the run owns one :class:`HostGate`: every host step
(:meth:`edgebench.planning.Planner.start`) holds it while it works, and every runner job on
a device on the host (:class:`edgebench.execution.CaseExecutor`) holds it while its timed
loop and accuracy pass run. They take turns in the order they asked (first come, first
served), at step granularity: a local case waits for the export in progress, not for the
run's last one, and the next export waits for that case. What runs outside the gate is the
harness's side: opening and probing the device, mAP evaluation, report writing; that is
what overlaps the host's work. Remote devices never take the gate.

Standard library only; no module-level state (one gate per run).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

from .config import device_scheme
from .errors import CaseError

POLL_S = 0.2
"""How often a waiter looks at the run's stop flag (seconds)."""


def on_host(uri: str) -> bool:
    """Whether device ``uri`` is this host (``local``): its timed loops take the
    :class:`HostGate`."""
    return device_scheme(uri) == "local"


class HostGate:
    """A first-come-first-served lock over the host's cores for one run.

    ``stop``: the run's stop flag; a waiter that sees it set gives up its turn and raises
    :class:`~edgebench.errors.CaseError` (the run is stopping; nothing is measured).
    Thread-safe; ``KeyboardInterrupt`` while waiting gives up the turn too."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = False
        self.held_log: list[tuple[str, float, float]] = []
        """``(who, began, ended)`` of every turn, ``time.time()`` seconds, in order."""

    @contextlib.contextmanager
    def held(self, who: str) -> Iterator[None]:
        """Hold the gate for the block; ``who`` names the holder in :attr:`held_log`
        (``export for ncnn``, ``local: <case id>``)."""
        self._acquire()
        began = time.time()
        try:
            yield
        finally:
            with self._cond:
                self.held_log.append((who, began, time.time()))
                self._busy = False
                self._cond.notify_all()

    def _acquire(self) -> None:
        token = object()
        with self._cond:
            self._queue.append(token)
            try:
                while self._busy or self._queue[0] is not token:
                    if self._stop is not None and self._stop.is_set():
                        raise CaseError("the run is stopping")
                    self._cond.wait(POLL_S)
            except BaseException:
                self._queue.remove(token)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._busy = True
