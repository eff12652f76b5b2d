"""Reporter.prepare runs beside the host's work and is over before the host's work ends
(runner.prepared): a device on the host waits for that end, so no timed loop runs beside it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from edgebench.contracts import Reporter
from edgebench.records import RunReport
from edgebench.runner import prepared


class Slow(Reporter):
    name = "slow"
    filename = "slow.txt"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.done = threading.Event()

    def render(self, report: RunReport) -> str:
        return ""

    def prepare(self) -> None:
        self.started.set()
        time.sleep(0.3)
        self.done.set()


class Broken(Reporter):
    name = "broken"
    filename = "broken.txt"

    def render(self, report: RunReport) -> str:
        return ""

    def prepare(self) -> None:
        raise RuntimeError("no plotting library")


def test_prepare_runs_beside_the_host_work_and_ends_before_it() -> None:
    slow = Slow()
    seen = []
    for group in prepared([Broken(), slow], iter([["a"], ["b"]])):  # type: ignore[list-item]
        assert slow.started.wait(5)  # under way while the host still makes cases
        seen.append(group)
    assert seen == [["a"], ["b"]]
    assert slow.done.is_set()  # the iteration (the host's work) ended only after it


def test_the_html_reporter_prepares_by_importing_matplotlib() -> None:
    code = ("import sys; from edgebench.reports.html import HtmlReporter; "
            "assert 'matplotlib.figure' not in sys.modules; HtmlReporter().prepare(); "
            "assert 'matplotlib.figure' in sys.modules; "
            "assert 'matplotlib.backends.backend_agg' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
