"""Scheduling the cases on the devices: one thread per device, devices concurrently, the
cases of one device strictly one after another, repeats interleaved. A URI that stands for
several interchangeable devices (``Device.slots``, e.g. any two boards of a farm with the
same tags) gets one thread per device, sharing one queue of its cases.

Every finished case goes to the report writer (and the ``edgebench_case_finished`` hook)
before the next one starts. Ctrl-C stops every device (its running command is aborted, its
work dir cleaned) and the report is finished as interrupted. How a lost connection is
retried is :mod:`edgebench.retry`'s job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pluggy

from .contracts import Device
from .errors import CaseError, UserError
from .execution import CaseExecutor
from .hook_calls import notify, run_case_failure
from .planning import CasePlan
from .plugin_manager import Registry
from .probe import device_agent, device_class, open_device
from .progress import PhaseListener, Silent
from .records import CaseResult, RunState, Status
from .repeats import combine
from .reports.writer import ReportWriter
from .retry import RetryPolicy, connected
from .threads import Worker, interrupts_deferred, wait_for

ProgressCallback = Callable[[CaseResult], None]
"""Called with every case's result as it is recorded (a repeat's combined result too)."""


class SharedCases:
    """The cases of one device URI, taken one at a time by its slots (the devices it stands
    for, :meth:`~edgebench.contracts.Device.slots`): a slot that is free takes the next case
    and runs all its repeats, so each case's repeats run on one device. Thread-safe."""

    def __init__(self, plans: list[CasePlan], slots: int) -> None:
        self._plans = list(plans)
        self._lock = threading.Lock()
        self._running = slots
        self._entering: dict[str, Device] = {}
        self.drained = False
        """Set once a slot found the queue empty."""
        self.reasons: list[str] = []
        """Why slots ended before the queue was empty (one sentence each)."""

    def entering(self, name: str, device: Device) -> None:
        """Slot ``name`` is entering ``device`` (which may wait long, e.g. in a farm's queue
        for a free board). Once the queue is empty, it is aborted: it has nothing to do."""
        with self._lock:
            if not self.drained:
                self._entering[name] = device
                return
        device.abort()

    def entered(self, name: str) -> None:
        with self._lock:
            self._entering.pop(name, None)

    def take(self) -> CasePlan | None:
        """The next case, or ``None`` when none is left (then the devices still being
        entered are aborted: they would only wait for a board to do nothing on it)."""
        with self._lock:
            if self._plans:
                return self._plans.pop(0)
            self.drained = True
            waiting, self._entering = list(self._entering.values()), {}
        for device in waiting:
            device.abort()
        return None

    def put_back(self, plan: CasePlan) -> None:
        """A case a slot took but could not run (its device failed first)."""
        with self._lock:
            self._plans.insert(0, plan)

    def slot_ended(self, reason: str | None) -> list[CasePlan]:
        """Note that a slot stopped taking cases (``reason``: why, when it stopped early);
        the last slot to end gets the cases no slot ran."""
        with self._lock:
            if reason:
                self.reasons.append(reason)
            self._running -= 1
            if self._running > 0:
                return []
            left, self._plans = self._plans, []
            return left


class Scheduler:
    """Runs plans on their devices for one run.

    ``retry``: how connecting to a device is retried; ``stop``: set to stop every device
    (Ctrl-C, or a caller's own stop); ``on_case``: called with each recorded result;
    ``progress``: told when each repeat of a case starts and ends.
    """

    def __init__(self, pm: pluggy.PluginManager, registry: Registry, retry: RetryPolicy,
                 stop: threading.Event, on_case: ProgressCallback | None = None,
                 progress: PhaseListener | None = None) -> None:
        self.pm = pm
        self.registry = registry
        self.retry = retry
        self.stop = stop
        self.on_case = on_case
        self._opened: dict[str, Device] = {}
        """Devices being entered or entered, by slot name: aborted on Ctrl-C (a device that
        waits in a queue while it is entered, for a shared board, stops waiting)."""
        self.progress: PhaseListener = progress or Silent()
        self._errors: list[BaseException] = []

    def run(self, plans: list[CasePlan], executor: CaseExecutor, writer: ReportWriter) -> None:
        """Run every plan on its device (``plan.case.device``), devices in parallel.

        A URI that stands for N interchangeable devices (``Device.slots(uri)``) gets N
        threads, each with its own device, sharing the URI's cases (:class:`SharedCases`):
        its wall time is about the sum of its cases' divided by N.

        On Ctrl-C: stop and abort every device, wait (up to 30 s in all) for their threads to
        clean up, finish the report as interrupted and re-raise ``KeyboardInterrupt``. A bug
        in a device thread is re-raised here, in the calling thread. Per-device problems
        (cannot connect, probe failed) fail that device's cases, with the reason.
        """
        by_device: dict[str, list[CasePlan]] = {}
        for p in plans:
            by_device.setdefault(p.case.device, []).append(p)
        # Not Thread.join: on Python <= 3.12 an interrupted join marks the thread finished
        # while it still runs (see edgebench.threads).
        threads: list[Worker] = []
        for uri, device_plans in by_device.items():
            slots = max(1, min(device_class(self.registry, uri).slots(uri), len(device_plans)))
            shared = SharedCases(device_plans, slots) if slots > 1 else None
            for slot in range(slots):
                name = f"{uri}#{slot + 1}" if shared is not None else uri
                threads.append(Worker(
                    target=self._run_device, name=f"device {name}",
                    args=(uri, name, device_plans, shared, executor, writer)))
        try:
            for t in threads:
                t.start()
            wait_for(threads)  # wakes up for Ctrl-C
        except KeyboardInterrupt:
            with interrupts_deferred():  # a second Ctrl-C does not cut the cleanup
                self.stop.set()
                for device in list(self._opened.values()):
                    device.abort()
                wait_for(threads, timeout_s=30)  # each device thread cleans up: work dir, lease
                writer.finish(RunState.INTERRUPTED)
            raise
        if self._errors:
            raise self._errors[0]

    def _run_device(self, uri: str, name: str, plans: list[CasePlan],
                    shared: SharedCases | None, executor: CaseExecutor,
                    writer: ReportWriter) -> None:
        try:
            self._run_device_cases(uri, name, plans, shared, executor, writer)
        except BaseException as exc:  # a bug: surface it in the main thread
            self._errors.append(exc)

    def _open(self, name: str, cls: type[Device], uri: str, shared: SharedCases | None
              ) -> Device:
        device = open_device(cls, uri)
        self._opened[name] = device
        if shared is not None:
            shared.entering(name, device)
        if self.stop.is_set():
            device.abort()
        return device

    def _run_device_cases(self, uri: str, name: str, plans: list[CasePlan],
                          shared: SharedCases | None, executor: CaseExecutor,
                          writer: ReportWriter) -> None:
        """One device: all of ``plans`` (repeats interleaved), or, as one slot of a shared
        URI, the cases it takes from ``shared`` one by one until none is left. A device that
        can take no more (:meth:`~edgebench.contracts.Device.unusable_reason`, asked before
        each case) ends like one that failed: its cases fail with the reason, or, as a slot,
        leaves them to the other slots."""
        device_cls = device_class(self.registry, uri)
        modules = tuple(sorted({m for p in plans for m in p.backend.runtime_modules}))
        failure: str | None = None
        taken: CasePlan | None = None
        try:
            with connected(lambda: self._open(name, device_cls, uri, shared), self.retry,
                           self.stop) as device:
                if shared is not None:
                    shared.entered(name)
                agent = device_agent(device)
                executor.agents[device] = agent
                info = executor.infos[device] = agent.probe((*modules, "numpy"), self.pm)
                if shared is None:
                    self._run_repeats(plans, device, info.peak_gflops_estimate(), writer)
                    return
                while not self.stop.is_set():
                    taken = shared.take()
                    if taken is None:
                        break
                    self._run_repeats([taken], device, info.peak_gflops_estimate(), writer)
                    taken = None
        except (CaseError, OSError, UserError) as exc:
            if self.stop.is_set() or (shared is not None and shared.drained and taken is None):
                return  # interrupted, or aborted while entering: nothing was left to do
            failure = f"device {uri}: {exc}"
            if shared is None:
                done = {r.case.id for r in writer.report.cases}
                for plan in plans:
                    if plan.case.id not in done:
                        self._record(CaseResult(case=plan.case, status=Status.FAILED,
                                                reason=failure, artifact=plan.artifact),
                                     writer)
        finally:
            device_left = self._opened.pop(name, None)
            if device_left is not None:
                executor.forget(device_left)
            if shared is not None:
                if taken is not None:
                    shared.put_back(taken)
                left = shared.slot_ended(failure)
                if failure is not None and not self.stop.is_set():
                    writer.device_failed(failure)  # also when the other slots ran every case
                if not self.stop.is_set():
                    reason = "; ".join(dict.fromkeys(shared.reasons)) or \
                        f"device {uri}: no device was left to run it"
                    for plan in left:
                        self._record(CaseResult(case=plan.case, status=Status.FAILED,
                                                reason=reason, artifact=plan.artifact),
                                     writer)

    def _run_repeats(self, plans: list[CasePlan], device: Device, peak: float | None,
                     writer: ReportWriter) -> None:
        """Every case of one device, each as many times as its ``repeats`` setting; the
        repeats interleave, every other round backwards (1 2 3 3 2 1 1 2 3), so a drift of
        the machine over the run falls on every case alike. Raises :class:`CaseError` when
        the device says it can take no more cases."""
        combined: dict[str, CaseResult] = {}
        for repeat in range(max(p.case.settings.repeats for p in plans)):
            for plan in plans if repeat % 2 == 0 else plans[::-1]:
                if repeat >= plan.case.settings.repeats:
                    continue
                if self.stop.is_set():
                    return
                gone = device.unusable_reason()
                if gone is not None:
                    raise CaseError(gone)
                self.progress.repeat_started(plan.case, repeat)
                try:
                    result = self.pm.hook.edgebench_run_case(case=plan.case, device=device)
                except Exception as exc:  # not KeyboardInterrupt: that stops the run
                    result = CaseResult(case=plan.case, status=Status.FAILED,
                                        reason=run_case_failure(exc))
                if self.stop.is_set():
                    return  # interrupted mid-case: not a measurement
                self.progress.repeat_finished(result, repeat)
                result = combine(combined.get(plan.case.id), result, peak_gflops=peak)
                combined[plan.case.id] = result
                if repeat == 0:
                    self._record(result, writer)
                else:
                    writer.add(result)  # replaces the case, repeats so far

    def _record(self, result: CaseResult, writer: ReportWriter) -> None:
        writer.add(result)
        notify(self.pm.hook.edgebench_case_finished, result=result)
        self.progress.recorded(result)
        if self.on_case is not None:
            self.on_case(result)
