"""edgebench.host_jobs: how many host steps run at once, and running them side by side in
the order given. The steps here are plain functions; the export workers are never started
(a worker starts on its first request). The real exports side by side are in
tests/test_export_worker_overlap.py."""

from __future__ import annotations

import threading

import pytest

from edgebench.errors import UserError
from edgebench.export_worker import current_worker
from edgebench.host_jobs import (
    HOST_JOBS_ENV,
    JOB_MEMORY_GIB,
    MAX_DEFAULT,
    HostJobs,
    default_jobs,
    host_jobs,
)


@pytest.mark.parametrize(("cores", "gib", "jobs"), [
    (1, 64.0, 1),
    (2, 64.0, 2),
    (64, 256.0, MAX_DEFAULT),
    (8, 2 * JOB_MEMORY_GIB + 0.5, 2),  # memory bounds it
    (8, 1.0, 1),  # never fewer than one
])
def test_default_jobs(cores: int, gib: float, jobs: int) -> None:
    assert default_jobs(cores=cores, available_gib=gib) == jobs


def test_the_environment_sets_the_jobs_and_a_bad_value_is_one_sentence() -> None:
    assert host_jobs({HOST_JOBS_ENV: "3"}) == 3
    assert host_jobs({}) == default_jobs()
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UserError) as err:
            host_jobs({HOST_JOBS_ENV: bad})
        assert str(err.value) == (f"{HOST_JOBS_ENV} must be an integer >= 1 (host steps at "
                                  f"once); got {bad!r}.")


def test_steps_run_side_by_side_and_come_back_in_order() -> None:
    jobs = HostJobs(2)
    both_running = threading.Barrier(2, timeout=30)  # only passes if two run at once
    seen: list[object] = []

    def step(value: int, wait: bool) -> int:
        seen.append(current_worker())
        if wait:
            both_running.wait()
        return value

    try:
        steps = [jobs.submit(lambda v=v: step(v, v < 2)) for v in range(5)]
        assert [s.result() for s in steps] == list(range(5))
    finally:
        jobs.close()
    assert len({id(w) for w in seen[:2]}) == 2, "the two steps at once had one worker"
    assert all(w in jobs.workers for w in seen)
    assert all(w._proc is None for w in jobs.workers)  # no export asked: no process


def test_a_step_s_error_is_raised_by_its_result_and_the_others_go_on() -> None:
    jobs = HostJobs(2)

    def fails() -> int:
        raise ValueError("bad step")

    try:
        first, second = jobs.submit(fails), jobs.submit(lambda: 7)
        with pytest.raises(ValueError, match="bad step"):
            first.result()
        assert second.result() == 7
    finally:
        jobs.close()


def test_abort_cancels_the_steps_not_started() -> None:
    jobs = HostJobs(1)
    release = threading.Event()
    started = threading.Event()

    def blocks() -> str:
        started.set()
        release.wait(30)
        return "ran"

    first = jobs.submit(blocks)
    queued = jobs.submit(lambda: "never")
    assert started.wait(30)
    jobs.abort()
    assert queued.done() and queued.cancelled
    with pytest.raises(RuntimeError, match="cancelled"):
        queued.result()
    release.set()
    assert first.result() == "ran"
    jobs.close()
    with pytest.raises(RuntimeError, match="closed"):
        jobs.submit(lambda: 1)


def test_a_caller_s_own_step_waits_for_a_free_worker() -> None:
    jobs = HostJobs(1)
    release, running = threading.Event(), threading.Event()

    def holds() -> bool:
        running.set()
        return release.wait(30)

    busy = jobs.submit(holds)
    assert running.wait(30)  # the job holds the only worker
    got: list[object] = []

    def own() -> None:
        with jobs.worker() as worker:
            got.append((worker, current_worker()))

    thread = threading.Thread(target=own)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not busy.done()  # it waits while the worker is busy
    release.set()
    thread.join(30)
    assert got and got[0][0] is got[0][1] is jobs.workers[0]
    jobs.close()
