"""The run's host gate (edgebench.host_gate): first come, first served; a waiter gives up
its turn when the run stops. Order of events only, never a duration."""

from __future__ import annotations

import itertools
import threading

import pytest

from edgebench.errors import CaseError
from edgebench.host_gate import HostGate, on_host


def test_turns_are_taken_in_the_order_asked() -> None:
    gate = HostGate()
    order: list[str] = []
    with gate.held("first"):
        threads = []
        for name in ("a", "b", "c"):

            def take(name: str = name) -> None:
                with gate.held(name):
                    order.append(name)

            t = threading.Thread(target=take)
            t.start()
            while len(gate._queue) < len(threads) + 1:  # queued before the next asks
                threading.Event().wait(0.01)
            threads.append(t)
        order.append("first")
    for t in threads:
        t.join()
    assert order == ["first", "a", "b", "c"]
    assert [who for who, _, _ in gate.held_log] == ["first", "a", "b", "c"]
    spans = [(began, ended) for _, began, ended in gate.held_log]
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans))


def test_a_waiter_gives_up_when_the_run_stops() -> None:
    stop = threading.Event()
    gate = HostGate(stop)
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            with gate.held("local: case"):
                pass
        except CaseError as exc:
            raised.append(exc)

    with gate.held("export for ncnn"):
        t = threading.Thread(target=wait)
        t.start()
        stop.set()
        t.join()
    assert len(raised) == 1 and "stopping" in str(raised[0])
    with gate.held("after"):  # the given-up turn does not block the gate
        pass
    assert [who for who, _, _ in gate.held_log] == ["export for ncnn", "after"]


@pytest.mark.parametrize(("uri", "expected"), [
    ("local", True), ("local?python=/usr/bin/python3", True),
    ("ssh://pi@board", False), ("adb://serial", False),
])
def test_on_host(uri: str, expected: bool) -> None:
    assert on_host(uri) is expected
