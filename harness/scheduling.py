"""Scheduling the cases on the devices: one thread per device, devices concurrently, the
cases of one device strictly one after another, repeats interleaved. A URI that stands for
several interchangeable devices (``Device.slots``, e.g. any two boards of a farm with the
same tags) gets one thread per device, sharing one queue of its cases.

Host work and device work overlap. The device threads start with the run: each opens its
device (connects, reserves a board, probes) while the host makes the first artifacts, and
the host's steps (:meth:`edgebench.planning.Planner.start`: one model's export for one
backend) feed their cases into a :class:`CaseFeed` as each is done. A device runs its cases
in the plan's order as they arrive: a later case's export, conversion and compression run
on the host while an earlier case is measured on the device (in the real use those are
different machines). The first round of repeats runs as the cases arrive; the later rounds
(1 2 3 3 2 1 1 2 3) once the host has made every case, so repeats interleave as before. The
report lists the cases in the plan's order whatever order they finish in.

A device on the host itself (``local``, ``local?python=...``) does not overlap: its thread
waits until the host work is over before it opens the device. Exports and conversions take
the host's cores (torch and pnnx use every core), so a timed loop run beside them would
measure the exports' interference, not the model: a slower run is better than a wrong
figure. (Only remote devices gain; for ``-d local`` the run's one export worker is the gain.)
A first-come-first-served lock held by every host step and every runner job on the host,
so that local cases and host steps take turns and host work overlaps only the harness's
side (opening, probing, mAP, the report), was tried and measured slower, not faster, on the
default run (whose host work is one long first export), and it counts the wait in a case's
``wall_s`` and holds a remote device's next case behind a local timed loop: not kept
(docs/measurements.md).

What a user can get wrong is still refused before any device work: bad URIs, options,
backends, model files and compression pipelines when the run is built
(:class:`~edgebench.runner.Session`, :meth:`~edgebench.planning.Planner.start`). A model
whose classes are not the dataset's is found by the host step that makes its first float
reference, as before; if devices are open by then they are left, the cases measured so far
(of earlier models) stay in the report, which ends ``interrupted`` (``--resume`` finishes it
once the model is fixed; with none measured no report is left), and the error exits 2.

Every finished case goes to the report writer (and the ``edgebench_case_finished`` hook)
before the next one starts. Ctrl-C, during host work or device work, stops every device (its
running command is aborted, its work dir cleaned) and the host's export worker, and the
report is finished as interrupted. How a lost connection is retried is
:mod:`edgebench.retry`'s job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import pluggy

from .config import device_scheme
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


class CaseFeed:
    """The cases of every device, as the host makes them: appended in the plan's order by
    :meth:`add`, read by the device threads with :meth:`get`, which waits for a case not made
    yet. Thread-safe."""

    def __init__(self, stop: threading.Event) -> None:
        self._plans: dict[str, list[CasePlan]] = {}
        self._cond = threading.Condition()
        self._stop = stop
        self.closed = False
        """Set once the host has made every case (or stopped making them)."""
        self.first_added: float | None = None
        """``time.time()`` when the first case was added (for the progress and tests)."""
        self.order: list[str] = []
        """Every case id added, in the plan's order."""

    def add(self, plans: Iterable[CasePlan]) -> None:
        with self._cond:
            for plan in plans:
                self._plans.setdefault(plan.case.device, []).append(plan)
                self.order.append(plan.case.id)
                if self.first_added is None:
                    self.first_added = time.time()
            self._cond.notify_all()

    def close(self) -> None:
        """No more cases will come."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self, uri: str, index: int) -> CasePlan | None:
        """Case ``index`` (0-based) of device ``uri``, once the host has made it; ``None``
        when the host ended with fewer, or the run is stopping."""
        with self._cond:
            while True:
                plans = self._plans.get(uri, [])
                if index < len(plans):
                    return plans[index]
                if self.closed or self._stop.is_set():
                    return None
                self._cond.wait(0.2)  # wakes up for the stop flag too

    def cases(self, uri: str, start: int = 0) -> Iterator[CasePlan]:
        """The cases of ``uri`` from ``start`` on, each as soon as it is made."""
        index = start
        while (plan := self.get(uri, index)) is not None:
            yield plan
            index += 1

    def wait_closed(self) -> bool:
        """Wait until the host has made every case; ``False`` if the run is stopping."""
        with self._cond:
            while not self.closed:
                if self._stop.is_set():
                    return False
                self._cond.wait(0.2)
            return not self._stop.is_set()


class SharedCases:
    """The cases of one device URI, taken one at a time by its slots (the devices it stands
    for, :meth:`~edgebench.contracts.Device.slots`): a slot that is free takes the next case
    (waiting for the host to make it) and runs all its repeats, so each case's repeats run on
    one device. Thread-safe."""

    def __init__(self, feed: CaseFeed, uri: str, slots: int) -> None:
        self._feed = feed
        self._uri = uri
        self._next = 0
        self._returned: list[CasePlan] = []
        self._lock = threading.Lock()
        self._running = slots
        self._entering: dict[str, Device] = {}
        self.drained = False
        """Set once a slot found no case left (the host made them all)."""
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
            if self._returned:
                return self._returned.pop(0)
            index, self._next = self._next, self._next + 1
        plan = self._feed.get(self._uri, index)  # waits for the host
        if plan is not None:
            return plan
        with self._lock:
            if self._returned:  # put back by a slot that failed meanwhile
                return self._returned.pop(0)
            self.drained = True
            waiting, self._entering = list(self._entering.values()), {}
        for device in waiting:
            device.abort()
        return None

    def put_back(self, plan: CasePlan) -> None:
        """A case a slot took but could not run (its device failed first)."""
        with self._lock:
            self._returned.insert(0, plan)

    def slot_ended(self, reason: str | None) -> Iterator[CasePlan]:
        """Note that a slot stopped taking cases (``reason``: why, when it stopped early);
        the last slot to end gets the cases no slot ran, including those the host has yet
        to make (each as it is made)."""
        with self._lock:
            if reason:
                self.reasons.append(reason)
            self._running -= 1
            if self._running > 0:
                return iter(())
            left, self._returned = self._returned, []
            start, self._next = self._next, 1 << 62
        return _chain(left, self._feed.cases(self._uri, start))


def _chain(first: list[CasePlan], rest: Iterator[CasePlan]) -> Iterator[CasePlan]:
    yield from first
    yield from rest


def on_host(uri: str) -> bool:
    """Whether device ``uri`` is this host (``local``): its timed loops must not overlap
    the host's exports (see the module docstring)."""
    return device_scheme(uri) == "local"


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
        self.feed: CaseFeed | None = None
        """The cases as the host makes them (set by :meth:`run`)."""
        self.opening: dict[str, float] = {}
        """``time.time()`` when each device (by slot name) was first being opened."""
        self.probed: dict[str, float] = {}
        """``time.time()`` when each device (by slot name) was first probed: ready to run."""

    def run(self, plans: Iterable[Sequence[CasePlan]], executor: CaseExecutor,
            writer: ReportWriter, *, counts: Mapping[str, int],
            modules: Sequence[str] = ()) -> None:
        """Run every plan on its device (``plan.case.device``), devices in parallel, while
        the host makes the plans.

        ``plans``: the plans in groups, in the plan's order, as the host makes them (an
        iterator such as :meth:`~edgebench.planning.Planner.start`'s: the host's work runs
        here, in the calling thread, while the device threads open their devices and run the
        cases made so far; or a list of lists already made). Each plan is added to
        ``executor.plans`` before its device sees it. ``counts``: how many cases each device
        URI will get (known before the host makes them: the progress totals and the slots).
        ``modules``: the runtime modules of the run's backends, which each device's probe
        looks for.

        A URI that stands for N interchangeable devices (``Device.slots(uri)``) gets N
        threads, each with its own device, sharing the URI's cases (:class:`SharedCases`):
        its wall time is about the sum of its cases' divided by N. A device on the host
        waits for the host's work to end (:func:`on_host`).

        On Ctrl-C: stop and abort every device, wait (up to 30 s in all) for their threads to
        clean up, finish the report as interrupted and re-raise ``KeyboardInterrupt``. An
        error of the host's work (a :class:`UserError` such as a model whose classes are not
        the dataset's) stops the devices the same way and is re-raised; the report is
        finished as interrupted if it holds a case, else removed. A bug in a device thread
        is re-raised here, in the calling thread. Per-device problems (cannot connect, probe
        failed) fail that device's cases, with the reason.
        """
        feed = self.feed = CaseFeed(self.stop)
        # Not Thread.join: on Python <= 3.12 an interrupted join marks the thread finished
        # while it still runs (see edgebench.threads).
        threads: list[Worker] = []
        for uri, count in counts.items():
            if count <= 0:
                continue
            slots = max(1, min(device_class(self.registry, uri).slots(uri), count))
            shared = SharedCases(feed, uri, slots) if slots > 1 else None
            for slot in range(slots):
                name = f"{uri}#{slot + 1}" if shared is not None else uri
                threads.append(Worker(
                    target=self._run_device, name=f"device {name}",
                    args=(uri, name, feed, shared, executor, writer, tuple(modules))))
        try:
            for t in threads:
                t.start()
            for group in plans:  # the host's work, while the devices open and measure
                for plan in group:
                    executor.plans[plan.case.id] = plan
                feed.add(group)
            feed.close()
            wait_for(threads)  # wakes up for Ctrl-C
            writer.order(feed.order)  # the plan's order, whichever device finished first
        except KeyboardInterrupt:
            with interrupts_deferred():  # a second Ctrl-C does not cut the cleanup
                self._stop_all(feed, threads)
                writer.finish(RunState.INTERRUPTED)
            raise
        except BaseException:  # the host's work failed (a UserError): no case comes
            with interrupts_deferred():
                self._stop_all(feed, threads)
                if writer.report.cases:
                    writer.finish(RunState.INTERRUPTED)
                else:
                    writer.json_path.unlink(missing_ok=True)
            raise
        if self._errors:
            raise self._errors[0]

    def _stop_all(self, feed: CaseFeed, threads: list[Worker]) -> None:
        self.stop.set()
        feed.close()
        for device in list(self._opened.values()):
            device.abort()
        wait_for(threads, timeout_s=30)  # each device thread cleans up: work dir, lease

    def _run_device(self, uri: str, name: str, feed: CaseFeed, shared: SharedCases | None,
                    executor: CaseExecutor, writer: ReportWriter, modules: tuple[str, ...]
                    ) -> None:
        try:
            if on_host(uri) and not feed.wait_closed():
                return  # stopped while the host worked
            self._run_device_cases(uri, name, feed, shared, executor, writer, modules)
        except BaseException as exc:  # a bug: surface it in the main thread
            self._errors.append(exc)

    def _open(self, name: str, cls: type[Device], uri: str, shared: SharedCases | None
              ) -> Device:
        self.opening.setdefault(name, time.time())
        device = open_device(cls, uri)
        self._opened[name] = device
        if shared is not None:
            shared.entering(name, device)
        if self.stop.is_set():
            device.abort()
        return device

    def _run_device_cases(self, uri: str, name: str, feed: CaseFeed,
                          shared: SharedCases | None, executor: CaseExecutor,
                          writer: ReportWriter, modules: tuple[str, ...]) -> None:
        """One device: all its cases as the host makes them (repeats interleaved), or, as
        one slot of a shared URI, the cases it takes from ``shared`` one by one until none
        is left. A device that can take no more
        (:meth:`~edgebench.contracts.Device.unusable_reason`, asked before each case) ends
        like one that failed: its cases fail with the reason (each as the host makes it),
        or, as a slot, leaves them to the other slots."""
        device_cls = device_class(self.registry, uri)
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
                self.probed.setdefault(name, time.time())
                if shared is None:
                    self._run_repeats(feed.cases(uri), device, info.peak_gflops_estimate(),
                                      writer)
                    return
                while not self.stop.is_set():
                    taken = shared.take()
                    if taken is None:
                        break
                    self._run_repeats(iter([taken]), device, info.peak_gflops_estimate(),
                                      writer)
                    taken = None
        except (CaseError, OSError, UserError) as exc:
            if self.stop.is_set() or (shared is not None and shared.drained and taken is None):
                return  # interrupted, or aborted while entering: nothing was left to do
            failure = f"device {uri}: {exc}"
            if shared is None:
                done = {r.case.id for r in writer.report.cases}
                for plan in feed.cases(uri):
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
                        if self.stop.is_set():
                            break
                        self._record(CaseResult(case=plan.case, status=Status.FAILED,
                                                reason=reason, artifact=plan.artifact),
                                     writer)

    def _run_repeats(self, arriving: Iterator[CasePlan], device: Device, peak: float | None,
                     writer: ReportWriter) -> None:
        """Every case of one device, each as many times as its ``repeats`` setting: the first
        round as the cases arrive (``arriving`` waits for the host to make each), the later
        ones once all have; the repeats interleave, every other round backwards (1 2 3 3 2 1
        1 2 3), so a drift of the machine over the run falls on every case alike. Raises
        :class:`CaseError` when the device says it can take no more cases."""
        combined: dict[str, CaseResult] = {}
        plans: list[CasePlan] = []
        for plan in arriving:
            plans.append(plan)
            if not self._run_once(plan, 0, device, peak, writer, combined):
                return
        for repeat in range(1, max((p.case.settings.repeats for p in plans), default=0)):
            for plan in plans if repeat % 2 == 0 else plans[::-1]:
                if repeat >= plan.case.settings.repeats:
                    continue
                if not self._run_once(plan, repeat, device, peak, writer, combined):
                    return

    def _run_once(self, plan: CasePlan, repeat: int, device: Device, peak: float | None,
                  writer: ReportWriter, combined: dict[str, CaseResult]) -> bool:
        """Repeat ``repeat`` of ``plan``; ``False`` when the run is stopping."""
        if self.stop.is_set():
            return False
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
            return False  # interrupted mid-case: not a measurement
        self.progress.repeat_finished(result, repeat)
        result = combine(combined.get(plan.case.id), result, peak_gflops=peak)
        combined[plan.case.id] = result
        if repeat == 0:
            self._record(result, writer)
        else:
            writer.add(result)  # replaces the case, repeats so far
        return True

    def _record(self, result: CaseResult, writer: ReportWriter) -> None:
        writer.add(result)
        notify(self.pm.hook.edgebench_case_finished, result=result)
        self.progress.recorded(result)
        if self.on_case is not None:
            self.on_case(result)
