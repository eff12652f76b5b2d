"""Worker threads that the main thread waits for without trusting ``Thread.join``.

On CPython 3.10 to 3.12 a ``Thread.join(timeout)`` cut short by ``KeyboardInterrupt``
(Ctrl-C, or SIGTERM raised as one) releases the thread's state lock and marks the thread
as finished while it is still running (python/cpython#90882, bpo-46726; gone in 3.13 with
the join rewrite). Every later ``join`` then returns at once and ``is_alive()`` says
``False``: a process that waits for its device threads to clean up after Ctrl-C exits
while they are still removing their work dirs.

So a :class:`Worker` sets its own :class:`threading.Event` in the ``finally`` of its run,
and :func:`wait_for` polls those flags with ``time.sleep`` (which an interrupt can cut
short without corrupting anything: the main thread never holds a lock the workers need).
:func:`interrupts_deferred` keeps a second Ctrl-C or SIGTERM from cutting the bounded
cleanup that follows the first one. Standard library only.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

POLL_S = 0.1
"""How often :func:`wait_for` looks at the workers' flags (seconds)."""


class Worker:
    """A daemon thread running ``target(*args)`` whose end is a flag set in its
    ``finally``: :attr:`done` is set once ``target`` has returned or raised, whatever
    happened to a ``join`` meanwhile."""

    def __init__(self, target: Callable[..., object], name: str,
                 args: tuple[Any, ...] = ()) -> None:
        self.done = threading.Event()
        self._target, self._args = target, args
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        return self.thread.name

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target(*self._args)
        finally:
            self.done.set()


def wait_for(workers: Iterable[Worker], timeout_s: float | None = None) -> bool:
    """Wait until every worker is done, or ``timeout_s`` seconds (``None``: no limit).

    Returns whether all are done. Ctrl-C (``KeyboardInterrupt``) reaches the caller within
    :data:`POLL_S` and leaves the workers' flags as they were, so a later call still waits
    for the real end of each worker (unlike ``Thread.join``: see the module docstring).
    """
    pending = list(workers)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        pending = [w for w in pending if not w.done.is_set()]
        if not pending:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        nap = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
        time.sleep(nap)


@contextmanager
def interrupts_deferred() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are noted (in the yielded list) instead of
    raising, so the cleanup after a first interrupt (abort the devices, wait for their
    work dirs to go, write the report as interrupted) is not cut by a second one; the
    previous handlers are back afterwards. Only the main thread can set signal handlers:
    elsewhere the block runs as it is."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
