"""Retrying what a lost connection cut short, and nothing else.

A case is run again only when the link to its device failed (:class:`ConnectionLost`): the
board dropped off the network or rebooted, the phone went offline, a copy arrived corrupt.
Each retry waits (``backoff_s``, doubling, at most ``max_backoff_s``), reconnects, and runs the
whole case again from a clean slate (every file pushed again). A measurement that failed (the
model did not load, the runner timed out, NaN outputs) is never retried: its reason goes in
the report as it is. A case that needed more than one attempt says so in its ``notes``,
with the reason of every failed attempt.

A device that stays unreachable through all the retries of one case is marked lost: its
later cases get one attempt each (no backoff) until one succeeds, so a dead board does not
hold the nightly for retries x cases. "A device" is one device object, not its URI: of the
boards a shared URI stands for (``labgrid://?board=rpi5&count=2``), one lost board does not
cost the others their retries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .contracts import Device
from .errors import CaseError
from .records import CaseResult
from .redaction import redact

D = TypeVar("D", bound=Device)

PHASE_MARK = "edgebench-phase:"
"""A line the device agent prints when its runner enters a phase (``load``, ``timed loop``)."""


class ConnectionLost(CaseError):
    """The link to the device failed (while ``during``); running the case again may work.

    ``output`` is what the remote command printed before the link failed: its last phase
    line tells how far the runner got.
    """

    def __init__(self, message: str, *, output: str = "", during: str | None = None,
                 what: str = "connection lost") -> None:
        super().__init__(message)
        self.output = output
        self.during = during
        self.what = what
        """What failed: ``connection lost``, or ``copy corrupted`` (a pushed file arrived
        different; pushing it again may work)."""

    @property
    def reason(self) -> str:
        """``connection lost during <phase>: <what the transport said>``."""
        return f"{self.what} during {self.during or 'the case'}: {self}"


class RunnerTimedOut(CaseError):
    """The runner ran past the case's timeout and was killed: a measurement failure, never
    retried. ``output`` is what it printed (its last phase line says where it hung)."""

    def __init__(self, timeout_s: float, output: str = "") -> None:
        super().__init__(f"timed out after {timeout_s:g} s; the runner was killed")
        self.timeout_s = timeout_s
        self.output = output


def last_phase(output: str) -> str | None:
    """The last phase the runner announced in ``output`` (see :data:`PHASE_MARK`)."""
    phase = None
    for line in output.splitlines():
        if line.startswith(PHASE_MARK):
            phase = line[len(PHASE_MARK):].strip() or phase
    return phase


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently connection-level failures are retried."""

    retries: int = 3
    """Attempts after the first; 0 turns retrying off."""
    backoff_s: float = 5.0
    """Wait before the first retry; doubles for each next one."""
    max_backoff_s: float = 60.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)))


def _wait(stop: threading.Event | None, seconds: float) -> bool:
    """Sleep ``seconds``; ``False`` when the run was stopped meanwhile."""
    if stop is None:
        threading.Event().wait(seconds)
        return True
    return not stop.wait(seconds)


class Retrier:
    """Runs the cases of a run with :class:`RetryPolicy`; remembers lost devices."""

    def __init__(self, policy: RetryPolicy, stop: threading.Event | None = None) -> None:
        self.policy = policy
        self.stop = stop
        self._lost: dict[Device, str] = {}
        """Device (the object, hashed by identity: two devices may share a URI) -> the case
        after whose retries it was still unreachable."""
        self._lock = threading.Lock()

    def run(self, attempt: Callable[[], CaseResult], base: CaseResult, device: Device,
            recover: Callable[[], None]) -> CaseResult:
        """``attempt()`` until it returns or raises something else than ConnectionLost.

        ``recover`` runs after each reconnect (the caller forgets what it pushed). The result
        of the last attempt is returned; after the last failed retry, ``base`` failed with
        the connection's reason. Retried cases get a note per failed attempt.
        """
        notes: list[str] = []
        with self._lock:
            lost_since = self._lost.get(device)
        retries = 0 if lost_since is not None else self.policy.retries
        first: ConnectionLost | None = None
        for n in itertools.count(1):
            try:
                if n > 1:
                    device.reconnect()
                    recover()
                result = attempt()
            except ConnectionLost as exc:
                if exc.during is None and n > 1:
                    exc.during = "reconnect"
                first = first or exc
                if n > retries or (self.stop is not None and self.stop.is_set()):
                    return self._gave_up(base, device, first, exc, n, notes, lost_since)
                delay = self.policy.delay(n)
                notes.append(f"attempt {n} of {retries + 1}: {exc.reason}; retried after "
                             f"{delay:g} s")
                if not _wait(self.stop, delay):
                    return self._gave_up(base, device, first, exc, n, notes, lost_since)
                continue
            except CaseError as exc:  # reconnected to something that refuses: not retried
                reason = f"{first.reason}; reconnecting: {exc}" if first else str(exc)
                return dataclasses.replace(base, reason=reason, notes=(*notes, *base.notes))
            with self._lock:
                self._lost.pop(device, None)
            if notes:
                notes.append(f"attempt {n}: {result.status.value}")
                result = dataclasses.replace(result, notes=(*notes, *result.notes))
            return result
        raise AssertionError("unreachable")

    def _gave_up(self, base: CaseResult, device: Device, first: ConnectionLost,
                 last: ConnectionLost, attempts: int, notes: list[str],
                 lost_since: str | None) -> CaseResult:
        """``base`` failed with the first attempt's reason (where the case was cut), and
        how the retries ended."""
        with self._lock:
            self._lost.setdefault(device, base.case.id)
        reason = first.reason
        if lost_since is not None:
            reason += (f" (not retried: the device has been unreachable since case "
                       f"{lost_since})")
        elif attempts > 1:
            reason += f" (gave up after {attempts} attempts; the last: {last.reason})"
        return dataclasses.replace(base, reason=reason, notes=(*notes, *base.notes))


def enter_device(stack: contextlib.ExitStack[bool | None], make: Callable[[], D],
                 policy: RetryPolicy, stop: threading.Event | None = None) -> D:
    """Enter a new device from ``make()`` on ``stack``, retrying a connection failure (a
    board that does not answer yet, a farm's coordinator that is not up yet) with ``policy``;
    each retry is announced on stderr. Raises the last :class:`ConnectionLost`, saying how
    many attempts were made."""
    for n in itertools.count(1):
        device = make()
        try:
            stack.enter_context(device)  # returns the device itself (Device.__enter__)
            return device
        except ConnectionLost as exc:
            if n <= policy.retries and (stop is None or not stop.is_set()):
                print(f"edgebench: {redact(device.uri)}: {exc}; attempt {n} of "
                      f"{policy.retries + 1}, retrying in {policy.delay(n):g} s",
                      file=sys.stderr, flush=True)
            if n > policy.retries or not _wait(stop, policy.delay(n)):
                if n > 1:
                    raise ConnectionLost(f"{exc} (gave up after {n} attempts)",
                                         output=exc.output, during=exc.during) from None
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def connected(make: Callable[[], D], policy: RetryPolicy,
              stop: threading.Event | None = None) -> Iterator[D]:
    """``with connected(lambda: SSHDevice(uri), policy) as device``: :func:`enter_device`
    as a context manager (left like the device itself)."""
    with contextlib.ExitStack() as stack:
        yield enter_device(stack, make, policy, stop)
