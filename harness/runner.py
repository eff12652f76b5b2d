"""One ``edgebench run`` as an object: :class:`Session` ties the jobs together.

The jobs live in their own modules: :mod:`~edgebench.planning` (cases, backends, artifacts,
inputs, the float reference), :mod:`~edgebench.execution` (one case on one device, the
agreement verdict), :mod:`~edgebench.scheduling` (devices in parallel, repeats),
:mod:`~edgebench.probe` (fingerprints) and :mod:`~edgebench.remote` with
:mod:`edgebench.agent.edgebench_protocol` (the runner request and result). Every finished
case is saved to ``report.json`` before the next one starts.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pluggy

from . import __version__
from .accuracy_cache import AccuracyCache
from .cache import cache_root
from .config import Matrix
from .contracts import Reporter
from .execution import CaseExecutor, TestOptions
from .hook_calls import notify
from .measured_settings import measured_settings
from .planning import CasePlan, Planner
from .plugin_manager import PluginKind, Registry
from .probe import device_class, host_info, host_versions
from .progress import PhaseListener, Silent
from .records import SCHEMA_VERSION, Artifact, MatrixSettings, RunReport, RunState
from .reports.writer import ReportWriter, utc_now
from .resume import combined_start, split
from .retry import Retrier, RetryPolicy
from .scheduling import ProgressCallback, Scheduler


class Session:
    """One ``edgebench run``: builds the plans, drives the devices, keeps the report.

    Raises :class:`~edgebench.errors.UserError` at construction for what a user can get
    wrong before any work: a bad device URI, a backend option for a backend not in the run,
    a backend that cannot run here. Call :meth:`close` when done (removes the host's
    temporary exports).
    """

    def __init__(
        self,
        matrix: Matrix,
        pm: pluggy.PluginManager,
        registry: Registry,
        *,
        argv: Sequence[str] = (),
        on_case: ProgressCallback | None = None,
        run_id: str | None = None,
        test_options: TestOptions | None = None,
        retry: RetryPolicy | None = None,
        progress: PhaseListener | None = None,
    ) -> None:
        """``test_options`` go into every runner request (or, given a function of the case,
        into that case's): test-only knobs of the device agent (``test_delay_s``: sleep per
        iteration; ``test_slowdown``: +x per iteration).
        ``retry``: how connection-level failures are retried (see ``retry.py``).
        ``progress``: told of every host step and device phase (``progress.py``)."""
        self.matrix = matrix
        self.pm = pm
        self.registry = registry
        self.argv = tuple(argv)
        self.on_case = on_case
        self.test_options = test_options or {}
        self.retry = retry or RetryPolicy()
        self.progress: PhaseListener = progress or Silent()
        self.run_id = run_id or (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                                 + f"-{secrets.token_hex(2)}")
        for uri in matrix.devices:  # a bad device URI fails now, before any export
            device_class(registry, uri).check_uri(uri)
        for cls in dict.fromkeys(device_class(registry, uri) for uri in matrix.devices):
            cls.preload()  # client libraries load beside the planning
        self._tmp = tempfile.TemporaryDirectory(prefix="edgebench-host-")
        try:
            self.planner = Planner(matrix, registry, Path(self._tmp.name))
        except BaseException:
            self._tmp.cleanup()
            raise
        self.planner.progress = self.progress
        self.backends = self.planner.backends
        self.variants = self.planner.variants
        self._stop = threading.Event()
        self.writer: ReportWriter | None = None
        self._data_fingerprint: str | None = None
        self.scheduler: Scheduler | None = None
        """The run's scheduler, once :meth:`run` started (its feed and device times)."""
        self.written: list[Path] = []
        """The report's files, once :meth:`run` finished (JSON first)."""

    def close(self) -> None:
        """Stop the export worker; remove the host's temporary exports and compressed
        variants."""
        self.planner.close()
        self._tmp.cleanup()

    def sources(self) -> list[Artifact]:
        """The matrix's models as source artifacts (see :meth:`Planner.sources`)."""
        return self.planner.sources()

    def plan(self, sources: list[Artifact]) -> list[CasePlan]:
        """Every case's plan (see :meth:`Planner.plan`)."""
        return self.planner.plan(sources)

    def measured(self, sources: list[Artifact], baseline_model: str | None = None
                 ) -> MatrixSettings:
        """The settings the report records for a run of ``sources`` (see :meth:`run`)."""
        if self._data_fingerprint is None:  # hashes every image: once
            self._data_fingerprint = self.planner.dataset.fingerprint()
        return measured_settings(self.matrix, self.backends, sources,
                                 self._data_fingerprint, baseline_model)

    def run(self, output_dir: Path, sources: list[Artifact] | None = None,
            resume: RunReport | None = None, baseline_model: str | None = None) -> RunReport:
        """Run everything (or, with ``resume``, what that report lacks or holds as failed:
        see ``resume.py``); the report on disk is current after every case.
        ``baseline_model``: the label of a source measured only as the side-by-side
        baseline, recorded in the report (see :meth:`RunReport.tracked_cases`).

        Returns the finished report; re-raises ``KeyboardInterrupt`` after writing the
        report as interrupted.
        """
        sources = sources if sources is not None else self.sources()
        report = RunReport(schema_version=SCHEMA_VERSION, tool_version=__version__,
                           run_id=self.run_id, created_at=utc_now(), state=RunState.RUNNING,
                           host=host_info(), argv=self.argv, versions=host_versions(),
                           baseline_model=baseline_model,
                           settings=self.measured(sources, baseline_model))
        plans: Iterable[list[CasePlan]]
        if resume is not None:  # which cases run again needs them all: made before any runs
            made = self.plan(sources)
            kept, to_run = split(resume, made)
            self.progress.drop(p.case for p in made
                               if p.case.id not in {q.case.id for q in to_run})
            report = combined_start(resume, report, kept)
            plans, counts = [to_run], dict(Counter(p.case.device for p in to_run))
        else:  # made as the devices run (scheduling.py); bad pipelines refused first
            plans = self.planner.start(sources)
            counts = {uri: self.planner.cases_per_device for uri in self.matrix.devices}
        reporters = [reg.cls() for reg in self.registry.of(PluginKind.REPORTER).values()
                     if reg.unavailable_reason() is None]
        plans = prepared(reporters, plans)
        writer = ReportWriter(report, output_dir, reporters)
        self.writer = writer
        cache = AccuracyCache(cache_root() / "accuracy", self.run_id, fresh=self.matrix.fresh) \
            if self.matrix.accuracy is not None else None
        executor = CaseExecutor({}, self.matrix.accuracy,
                                self.test_options, Retrier(self.retry, self._stop),
                                progress=self.progress, cache=cache)
        scheduler = self.scheduler = Scheduler(self.pm, self.registry, self.retry,
                                               self._stop, self.on_case,
                                               progress=self.progress)
        modules = sorted({m for name in self.backends
                          for m in self.registry.get(PluginKind.BACKEND, name).cls()
                          .runtime_modules})
        self.pm.register(executor, name="edgebench.core-runner")
        try:
            scheduler.run(plans, executor, writer, counts=counts, modules=modules)
        finally:
            self.pm.unregister(executor)
        self.written = writer.finish(RunState.COMPLETE)
        notify(self.pm.hook.edgebench_session_finished, report=writer.report)
        return writer.report


def prepared(reporters: Sequence[Reporter], plans: Iterable[list[CasePlan]]
             ) -> Iterator[list[CasePlan]]:
    """``plans``, with every reporter's :meth:`~edgebench.contracts.Reporter.prepare` run in
    a thread beside the host's work and waited for as the last of it: the host work (the
    iteration of ``plans``, in the scheduler's calling thread) ends only once they are done,
    so a device on the host (which waits for the host's work, ``scheduling.py``) never
    measures beside them."""
    def prepare_all() -> None:
        for reporter in reporters:
            with contextlib.suppress(Exception):
                reporter.prepare()

    thread = threading.Thread(target=prepare_all, name="reporters prepare", daemon=True)
    thread.start()
    try:
        yield from plans
    finally:
        thread.join()
