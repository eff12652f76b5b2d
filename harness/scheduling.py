"""Scheduling the cases on the devices: one thread per device, devices concurrently, the
cases of one device strictly one after another, repeats interleaved.

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
from .records import CaseResult, RunState, Status
from .repeats import combine
from .reports.writer import ReportWriter
from .retry import RetryPolicy, connected
from .threads import Worker, interrupts_deferred, wait_for

ProgressCallback = Callable[[CaseResult], None]
"""Called with every case's result as it is recorded (a repeat's combined result too)."""


class Scheduler:
    """Runs plans on their devices for one run.

    ``retry``: how connecting to a device is retried; ``stop``: set to stop every device
    (Ctrl-C, or a caller's own stop); ``on_case``: progress callback.
    """

    def __init__(self, pm: pluggy.PluginManager, registry: Registry, retry: RetryPolicy,
                 stop: threading.Event, on_case: ProgressCallback | None = None) -> None:
        self.pm = pm
        self.registry = registry
        self.retry = retry
        self.stop = stop
        self.on_case = on_case
        self._entered: dict[str, Device] = {}
        self._errors: list[BaseException] = []

    def run(self, plans: list[CasePlan], executor: CaseExecutor, writer: ReportWriter) -> None:
        """Run every plan on its device (``plan.case.device``), devices in parallel.

        On Ctrl-C: stop and abort every device, wait (up to 30 s in all) for their threads to
        clean up, finish the report as interrupted and re-raise ``KeyboardInterrupt``. A bug
        in a device thread is re-raised here, in the calling thread. Per-device problems
        (cannot connect, probe failed) fail that device's cases, with the reason.
        """
        by_device: dict[str, list[CasePlan]] = {}
        for p in plans:
            by_device.setdefault(p.case.device, []).append(p)
        # not Thread.join: on Python <= 3.12 an interrupted join marks the thread finished
        threads = [Worker(target=self._run_device, name=f"device {uri}",
                          args=(uri, device_plans, executor, writer))
                   for uri, device_plans in by_device.items()]
        try:
            for t in threads:
                t.start()
            wait_for(threads)  # wakes up for Ctrl-C
        except KeyboardInterrupt:
            with interrupts_deferred():  # a second Ctrl-C does not cut the cleanup
                self.stop.set()
                for device in list(self._entered.values()):
                    device.abort()
                wait_for(threads, timeout_s=30)  # each device thread cleans its work dir
                writer.finish(RunState.INTERRUPTED)
            raise
        if self._errors:
            raise self._errors[0]

    def _run_device(self, uri: str, plans: list[CasePlan], executor: CaseExecutor,
                    writer: ReportWriter) -> None:
        try:
            self._run_device_cases(uri, plans, executor, writer)
        except BaseException as exc:  # a bug: surface it in the main thread
            self._errors.append(exc)

    def _run_device_cases(self, uri: str, plans: list[CasePlan], executor: CaseExecutor,
                          writer: ReportWriter) -> None:
        device_cls = device_class(self.registry, uri)
        modules = tuple(sorted({m for p in plans for m in p.backend.runtime_modules}))
        try:
            with connected(lambda: open_device(device_cls, uri), self.retry, self.stop) as device:
                self._entered[uri] = device
                agent = device_agent(device)
                executor.agents[uri] = agent
                executor.infos[uri] = agent.probe((*modules, "numpy"), self.pm)
                self._run_repeats(plans, device, executor.infos[uri].peak_gflops_estimate(),
                                  writer)
        except (CaseError, OSError, UserError) as exc:
            if self.stop.is_set():
                return
            done = {r.case.id for r in writer.report.cases}
            for plan in plans:
                if plan.case.id not in done:
                    self._record(CaseResult(case=plan.case, status=Status.FAILED,
                                            reason=f"device {uri}: {exc}",
                                            artifact=plan.artifact), writer)
        finally:
            self._entered.pop(uri, None)

    def _run_repeats(self, plans: list[CasePlan], device: Device, peak: float | None,
                     writer: ReportWriter) -> None:
        """Every case of one device, each as many times as its ``repeats`` setting; the
        repeats interleave, every other round backwards (1 2 3 3 2 1 1 2 3), so a drift of
        the machine over the run falls on every case alike."""
        combined: dict[str, CaseResult] = {}
        for repeat in range(max(p.case.settings.repeats for p in plans)):
            for plan in plans if repeat % 2 == 0 else plans[::-1]:
                if repeat >= plan.case.settings.repeats:
                    continue
                if self.stop.is_set():
                    return
                try:
                    result = self.pm.hook.edgebench_run_case(case=plan.case, device=device)
                except Exception as exc:  # not KeyboardInterrupt: that stops the run
                    result = CaseResult(case=plan.case, status=Status.FAILED,
                                        reason=run_case_failure(exc))
                if self.stop.is_set():
                    return  # interrupted mid-case: not a measurement
                result = combine(combined.get(plan.case.id), result, peak_gflops=peak)
                combined[plan.case.id] = result
                if repeat == 0:
                    self._record(result, writer)
                else:
                    writer.add(result)  # replaces the case, repeats so far

    def _record(self, result: CaseResult, writer: ReportWriter) -> None:
        writer.add(result)
        notify(self.pm.hook.edgebench_case_finished, result=result)
        if self.on_case is not None:
            self.on_case(result)
