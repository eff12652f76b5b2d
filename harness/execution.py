"""Executing one case on one device: the runner (or the device's native benchmark tool),
the statistics of what it measured, the accuracy of its outputs and the agreement verdict.

:class:`CaseExecutor` is the core's implementation of the ``edgebench_run_case`` hook;
plugins wrap it (cool-down, power, ...). A case never raises: a user-caused or per-case
problem is a failed or skipped :class:`CaseResult` with one sentence; only a lost connection
leaves an attempt, for :mod:`edgebench.retry` to decide on.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping

import numpy as np

from .accuracy import AccuracySettings, precision_tolerance, tolerance_problems
from .accuracy_cache import AccuracyCache, AccuracyKey, CachedAccuracy
from .agent.edgebench_protocol import RunnerResult
from .contracts import Backend, Device, NativeRunner
from .errors import CaseError, CaseSkipped
from .evaluation import evaluate
from .fingerprint import DeviceAgent
from .hookspecs import hookimpl
from .load import HostSampler, case_load, machine_load, oversubscribed_note
from .peak import case_peak
from .planning import CasePlan
from .probe import device_agent
from .progress import ACCURACY, DEVICE_PHASES, PhaseListener, Silent
from .records import (
    Accuracy,
    Artifact,
    Case,
    CaseResult,
    Delegation,
    DeviceInfo,
    MachineLoad,
    MemoryStats,
    RuntimeInfo,
    Status,
    Tolerance,
    from_json_dict,
)
from .remote import Pusher, RunnerJob, RunnerOutcome, RuntimeMissing, run_job, runner_request
from .reports.writer import utc_now
from .retry import ConnectionLost, Retrier, RetryPolicy
from .runtime_install import import_failed_reason, missing_runtime_reason
from .stats import latency_stats, per_image

TestOptions = Mapping[str, float] | Callable[[Case], Mapping[str, float]]
"""Test-only runner-request knobs (``test_delay_s``, ``test_slowdown``: see
:class:`~edgebench.agent.edgebench_protocol.RunnerRequest`): for every case, or a function
of the case."""

HOT_START_C = 70.0
"""A case that starts at or above this CPU temperature (°C) is flagged "started hot"."""


def backend_tolerance(backend: Backend, artifact: Artifact | None,
                      runtime: RuntimeInfo | None) -> Tolerance | None:
    """The agreement tolerance the backend declares for this artifact and runtime setup
    (:meth:`~edgebench.contracts.Backend.tolerance`); backends that declare none get the
    one of the artifact's precision for uncompressed artifacts
    (:func:`edgebench.accuracy.precision_tolerance`), none for compressed ones."""
    if artifact is None:
        return None
    declared = backend.tolerance(artifact, runtime)
    if declared is not None:
        return declared
    return None if artifact.pipeline else precision_tolerance(artifact.precision)


def agreement_verdict(result: CaseResult) -> CaseResult:
    """Fail a case whose outputs are outside its tolerance, with the figures: a conversion
    that changed the model is not benchmarked silently. The measurements are kept."""
    acc = result.accuracy
    fid = acc.fidelity if acc is not None else None
    if fid is None or fid.within_tolerance is not False or fid.tolerance is None:
        return result
    ref = [np.zeros(1, np.float32)]
    problems = tolerance_problems(fid, fid.tolerance, ref) if fid.box_max_abs_px is not None \
        else [f"outputs differ by up to {fid.max_abs:.3g} (tolerance "
              f"{fid.tolerance.raw_max_rel:g} of the reference's largest value)"]
    fmt = result.artifact.format if result.artifact is not None else "model"
    return dataclasses.replace(
        result, status=Status.FAILED,
        reason=f"the {fmt} model disagrees with the float reference beyond the "
               f"{result.case.backend} tolerance: {'; '.join(problems)}")


def thermal_notes(result: CaseResult, throttled_before: str | None,
                  throttled_after: str | None) -> CaseResult:
    """Flag a case that started hot (:data:`HOT_START_C`) or ran throttled (the device's
    :meth:`~edgebench.contracts.Device.throttling` before and after): its numbers are not
    the device's best."""
    notes: list[str] = []
    before = result.device.temperature_c if result.device is not None else None
    if before is not None and before >= HOT_START_C:
        notes.append(f"started hot ({before:.0f} °C)")
    if throttled_before or throttled_after:
        when = "throughout" if throttled_before and throttled_after else (
            "at the start" if throttled_before else "by the end")
        notes.append(f"throttled {when}: {throttled_after or throttled_before}")
    if not notes:
        return result
    return dataclasses.replace(result, notes=(*result.notes, *notes))


def _check_python(device: Device, backend: str) -> None:
    if not device.python:
        raise CaseSkipped(
            f"{device.uri} has no Python for the {backend} runner; give the device URI a "
            "native runner built for its ABI (onnxruntime_perf_test=PATH, benchmark_model=PATH "
            "or benchncnn=PATH) or a Python (python=PATH)")


def _check_supported(backend: Backend, info: DeviceInfo, uri: str, python: str) -> None:
    """:class:`CaseSkipped` when the backend says it cannot run on this device, or none of
    its runtime modules (or numpy) imports there, with the command that installs them for
    the device's interpreter ``python``
    (:func:`edgebench.runtime_install.missing_runtime_reason`)."""
    reason = backend.unsupported_reason(info)
    if reason:
        raise CaseSkipped(reason)
    missing = missing_runtime_reason(backend, info, uri, python)
    if missing is not None:
        raise CaseSkipped(missing)


def result_from_runner(measured: RunnerResult, plan: CasePlan, info: DeviceInfo,
                       base: CaseResult, temp_before: float | None,
                       temp_after: float | None, host_load: MachineLoad | None = None
                       ) -> CaseResult:
    """``base`` with what the runner measured (a result :func:`edgebench.remote.check_result`
    accepted): latency statistics per image (``stats.latency_stats``), memory, runtime,
    the device's and the host's load during the timed loop (:mod:`edgebench.load`);
    failed when an output holds NaN or infinity. Temperatures in °C."""
    assert plan.artifact is not None and measured.samples_ns is not None
    assert measured.init_ns is not None and measured.first_inference_ns is not None
    assert measured.runtime is not None
    latency = latency_stats(
        list(measured.samples_ns), warmup_ns=measured.warmup_ns or (),
        init_ns=measured.init_ns, first_inference_ns=measured.first_inference_ns,
        gflops=plan.artifact.gflops,
        peak=case_peak(info, measured.runtime.threads, plan.artifact.precision),
        cpu_samples_ns=measured.cpu_samples_ns or (),
        batch=plan.batch.batch if plan.batch is not None else 1)
    before, after = measured.rss_before_load_bytes, measured.rss_after_load_bytes
    memory = MemoryStats(
        rss_baseline_bytes=measured.rss_baseline_bytes, rss_before_load_bytes=before,
        rss_after_load_bytes=after,
        load_delta_bytes=after - before if before is not None and after is not None
        else None,
        peak_rss_bytes=measured.peak_rss_bytes)
    rt = measured.runtime
    runtime = RuntimeInfo(name=rt.name, version=rt.version, threads=rt.threads,
                          providers=rt.providers, details=dict(rt.details),
                          delegation=from_json_dict(Delegation, dict(rt.delegation))
                          if rt.delegation else None)
    load = case_load(machine_load(measured.load), host_load, rt.threads)
    cores = load.device.cores if load is not None and load.device is not None else info.cores
    note = oversubscribed_note(rt.threads, cores)
    if note is not None:
        base = dataclasses.replace(base, notes=(*base.notes, note))
    nonfinite = [i for i, o in enumerate(measured.outputs or ()) if not o.finite]
    if nonfinite:
        return dataclasses.replace(
            base, runtime=runtime, latency=latency, memory=memory, load=load,
            reason=f"the model ran but output {nonfinite[0]} holds NaN or infinity")
    if temp_before is not None:
        info = dataclasses.replace(info, temperature_c=temp_before)
    return dataclasses.replace(base, status=Status.OK, device=info, runtime=runtime,
                               latency=latency, memory=memory, load=load,
                               temperature_after_c=temp_after)


class CaseExecutor:
    """The core's implementation of ``edgebench_run_case`` for one run.

    Registered in the plugin manager for the run's duration, so plugins can wrap it.
    ``plans`` by case id; ``accuracy``: ``None`` with accuracy off; ``agents`` and ``infos``
    (by entered device: the devices of a URI that stands for several are told apart) are
    filled in by the scheduler as each device is entered and probed, and dropped with
    :meth:`forget` when it is left.
    ``progress`` is told of each device phase of each case. ``cache``: accuracy results
    of earlier runs to reuse instead of running the pass again (``accuracy_cache.py``);
    ``None``: every pass runs and none is stored.
    """

    def __init__(self, plans: dict[str, CasePlan], accuracy: AccuracySettings | None,
                 test_options: TestOptions | None = None,
                 retrier: Retrier | None = None, progress: PhaseListener | None = None,
                 cache: AccuracyCache | None = None) -> None:
        self.plans = plans
        self.accuracy = accuracy
        self.cache = cache
        self.test_options = test_options or {}
        self.retrier = retrier or Retrier(RetryPolicy(retries=0))
        self._evaluated: set[str] = set()
        """Cases whose accuracy was measured (on their first repeat)."""
        self.agents: dict[Device, DeviceAgent] = {}
        self.infos: dict[Device, DeviceInfo] = {}
        self.pusher = Pusher()
        self._busy_said: set[str] = set()
        """Devices whose load this run has already warned about on stderr."""
        self.progress: PhaseListener = progress or Silent()
        """Told of each device phase a case went through (``progress.py``)."""

    def _say_busy(self, device: str, result: CaseResult) -> None:
        """Tell the user once per device, on stderr, that it has fewer spare cores than the
        case's threads (the report marks every busy case)."""
        load = result.load
        if load is None or load.busy_warning is None or device in self._busy_said:
            return
        self._busy_said.add(device)
        print(f"edgebench: warning: {device} has fewer spare cores than the threads the "
              f"cases run; {load.busy_warning} (the report marks each such case)",
              file=sys.stderr, flush=True)

    def forget(self, device: Device) -> None:
        """Drop what is kept about ``device`` (it was left): its agent, fingerprint and
        pushed files."""
        self.agents.pop(device, None)
        self.infos.pop(device, None)
        self.pusher.forget(device)

    @hookimpl(trylast=True)
    def edgebench_run_case(self, case: Case, device: Device) -> CaseResult:
        """Measure ``case`` on the entered ``device`` (retried as the run's policy says);
        the result's ``wall_s`` is the whole case, attempts included."""
        plan = self.plans[case.id]
        info = self.infos[device]
        started, t0 = utc_now("milliseconds"), time.perf_counter()
        base = CaseResult(case=case, status=Status.FAILED, device=info,
                          artifact=plan.artifact, started_at=started)
        result = self.retrier.run(lambda: self._attempt(plan, device, base), base, device,
                                  lambda: self._recover(device))
        return dataclasses.replace(result, wall_s=round(time.perf_counter() - t0, 3),
                                   notes=plan.notes + result.notes)

    def _recover(self, device: Device) -> None:
        """After a reconnect: push everything again, to the work dir the device has now."""
        self.pusher.forget(device)
        self.agents[device] = device_agent(device)

    def _attempt(self, plan: CasePlan, device: Device, base: CaseResult) -> CaseResult:
        """One attempt at the case; a lost connection raises (the retrier decides)."""
        info = self.infos[device]
        try:
            if plan.skip is not None:
                raise CaseSkipped(plan.skip)
            if plan.error is not None:
                raise CaseError(plan.error)
            native = device.native_runner(plan.backend.name)
            if native is None:
                _check_python(device, plan.backend.name)
                _check_supported(plan.backend, info, device.uri, device.python)
            throttled_before = device.throttling()
            if native is not None:
                result = self._measure_native(native, plan, device, info, base)
            else:
                result = self._measure(plan, device, info, base)
            result = thermal_notes(result, throttled_before, device.throttling())
        except CaseSkipped as exc:
            result = dataclasses.replace(base, status=Status.SKIPPED, reason=str(exc))
        except ConnectionLost:
            raise
        except CaseError as exc:
            result = dataclasses.replace(base, reason=str(exc))
        return result

    def _job(self, plan: CasePlan, accuracy_pass: bool) -> RunnerJob:
        assert plan.artifact is not None and plan.batch is not None
        settings = plan.case.settings
        test = self.test_options(plan.case) if callable(self.test_options) \
            else self.test_options
        return RunnerJob(
            runner=plan.backend.runner(), model=plan.artifact.path,
            model_key=plan.artifact.sha256[:16], inputs=plan.batch.timing_input,
            accuracy_inputs=plan.batch.tensors if accuracy_pass else None,
            request=runner_request(settings, plan.backend.runner_options(settings), test),
            timeout_s=settings.timeout_s,
            owner=f"the runner of backend {plan.backend.name!r}, {plan.plugin}"
            if plan.plugin else "")

    def _measure(self, plan: CasePlan, device: Device, info: DeviceInfo,
                 base: CaseResult) -> CaseResult:
        assert plan.artifact is not None and plan.batch is not None
        agent = self.agents[device]
        temperature_before = agent.temperature()
        first_repeat = plan.case.id not in self._evaluated
        measure_accuracy = first_repeat and self.accuracy is not None
        key, cached = self._cached(plan, info) if measure_accuracy else (None, None)
        host_sampler = HostSampler()
        outcome = self._run(plan, device, self._job(plan, measure_accuracy and cached is None),
                            host_sampler)
        self._evaluated.add(plan.case.id)
        self.progress.runner_phases(plan.case, outcome.result)
        result = result_from_runner(outcome.result, plan, info, base, temperature_before,
                                    agent.temperature(),
                                    host_sampler.window(outcome.result.load))
        self._say_busy(device.uri, result)
        if not measure_accuracy or self.accuracy is None or result.status is not Status.OK:
            return result  # accuracy was measured on the first repeat
        tolerance = backend_tolerance(plan.backend, plan.artifact, result.runtime)
        if cached is not None:
            reused = cached.reuse(result.runtime, tolerance, plan.reference)
            if reused is not None:
                source = reused.cached_from
                assert source is not None
                self.progress.phase(plan.case, ACCURACY,
                                    f"cached from run {source.run_id}: no accuracy pass")
                return agreement_verdict(dataclasses.replace(result, accuracy=reused))
            # the runner reported another runtime build or setup: run the pass after all,
            # in a runner of its own (one timed iteration, not reported)
            job = self._job(plan, True)
            outcome = self._run(plan, device, dataclasses.replace(
                job, request=dataclasses.replace(job.request, warmup_iterations=0,
                                                 warmup_s=0.0, iterations=1,
                                                 min_duration_s=0.0)), HostSampler())
        if outcome.outputs is not None:
            accuracy = evaluate(plan.batch, outcome.outputs, self.accuracy,
                                reference=plan.reference,
                                reference_problem=plan.reference_problem,
                                boxes_normalised=plan.backend.boxes_normalised,
                                tolerance=tolerance, metadata=plan.metadata)
            device_pass = outcome.result.accuracy
            self.progress.phase(plan.case, ACCURACY, f"{accuracy.images} images evaluated" + (
                f", device pass {device_pass.seconds:.2f} s"
                if device_pass is not None and device_pass.seconds is not None else ""))
            if self.cache is not None and key is not None and result.runtime is not None:
                self.cache.store(key, accuracy, result.runtime, device.uri,
                                 result.started_at or utc_now())
            return agreement_verdict(dataclasses.replace(result, accuracy=accuracy))
        passed = outcome.result.accuracy
        reason = passed.skipped if passed is not None and passed.skipped else \
            "no outputs returned"
        return dataclasses.replace(result, accuracy=Accuracy(
            status=Status.SKIPPED, reason=reason, dataset=plan.batch.dataset.name,
            images=0, labelled=plan.batch.dataset.labelled,
            dataset_fingerprint=plan.batch.dataset_fingerprint,
            input_hw=plan.batch.input_hw))

    def _cached(self, plan: CasePlan, info: DeviceInfo
                ) -> tuple[AccuracyKey | None, CachedAccuracy | None]:
        """The case's accuracy key and the cached result under it (``None``: none, or
        ``--fresh``); no key without a cache."""
        if self.cache is None or self.accuracy is None or plan.artifact is None \
                or plan.batch is None:
            return None, None
        settings = plan.case.settings
        key = self.cache.key(artifact=plan.artifact, backend=plan.backend,
                             runner_options=plan.backend.runner_options(settings),
                             threads=settings.threads, batch=plan.batch,
                             settings=self.accuracy, reference=plan.reference,
                             reference_problem=plan.reference_problem, info=info)
        return key, self.cache.lookup(key)

    def _run(self, plan: CasePlan, device: Device, job: RunnerJob, host: HostSampler
             ) -> RunnerOutcome:
        """One runner invocation, the host's load sampled meanwhile by ``host``."""
        try:
            with host:
                return run_job(device, self.agents[device], job, self.pusher)
        except RuntimeMissing as exc:
            raise CaseSkipped(import_failed_reason(plan.backend, exc.module, device.uri,
                                                   device.python)) from None

    def _measure_native(self, native: NativeRunner, plan: CasePlan, device: Device,
                        info: DeviceInfo, base: CaseResult) -> CaseResult:
        """A case measured by the device's native benchmark binary (no Python there)."""
        assert plan.artifact is not None and plan.batch is not None
        agent = self.agents[device]
        temp_before = agent.temperature()
        measured = native.measure(device, plan.artifact, plan.batch.timing_input,
                                  plan.case.settings, info)
        measured = dataclasses.replace(measured, latency=per_image(measured.latency,
                                                                   plan.batch.batch))
        for phase in DEVICE_PHASES:
            self.progress.phase(plan.case, phase, native.tool)
        temp_after = agent.temperature()
        if temp_before is not None:
            info = dataclasses.replace(info, temperature_c=temp_before)
        notes = measured.notes
        if self.accuracy is not None:
            notes += (f"accuracy not measured: {native.tool} returns no outputs",)
        return dataclasses.replace(base, status=Status.OK, device=info, runtime=measured.runtime,
                                   latency=measured.latency, memory=measured.memory,
                                   temperature_after_c=temp_after, notes=base.notes + notes)
