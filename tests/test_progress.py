"""The progress of ``edgebench run``: steps counted over repeats and phases, a timestamped
line per phase when stderr is not a terminal, a tqdm bar over the same steps on a terminal,
and the wall time and the report's three files at the end.

Real runs of the CLI in a subprocess (onnxruntime on the local host, the embedded model),
stderr a pipe or a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from edgebench.progress import QUIET_S, Progress

FAST = ["-b", "onnxruntime", "-n", "3", "--warmup", "1", "--images", "10"]
DEVICE_PHASES = ["load", "warm-up", "timed loop"]
LINE = re.compile(r"^(\d\d:\d\d:\d\d) \[(\d+)/(\d+)\] (.*)$")
CLI = [sys.executable, "-m", "edgebench.cli", "run"]


def steps(cases: int, repeats: int) -> int:
    """One host step (the export of the one model for onnxruntime), and per case three
    device phases per repeat plus the accuracy pass once."""
    return 1 + cases * (repeats * len(DEVICE_PHASES) + 1)


def check_final_lines(text: str) -> None:
    """The run's last lines: its wall time, then report.json, report.md, report.html."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    finished = re.fullmatch(r"edgebench: finished in (\d+\.\d) s", lines[-4])
    assert finished and 0 < float(finished.group(1)) < 600, lines[-6:]
    paths = [Path(ln.removeprefix("report: ")) for ln in lines[-3:]]
    assert all(ln.startswith("report: ") for ln in lines[-3:]), lines[-4:]
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float, float]:
    """A run of two cases (threads 1 and 2) × 2 repeats, stderr a pipe; and when it
    started and ended (epoch s)."""
    out = tmp_path_factory.mktemp("progress-piped")
    t0 = time.time()
    done = subprocess.run([*CLI, *FAST, "--threads", "1", "--threads", "2", "--repeats", "2",
                           "-o", str(out)], capture_output=True, text=True, timeout=600)
    t1 = time.time()
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr, t0, t1


def test_piped_run_logs_each_phase_of_each_repeat_in_order(
        piped: tuple[str, float, float]) -> None:
    stderr, t0, t1 = piped
    assert "\r" not in stderr  # no carriage-return bar in a log
    total = steps(cases=2, repeats=2)
    logged = [LINE.match(ln) for ln in stderr.splitlines()]
    lines = [m for m in logged if m]
    assert lines and {int(m.group(3)) for m in lines} == {total}
    start = time.strftime("%H:%M:%S", time.localtime(t0 - 1))
    end = time.strftime("%H:%M:%S", time.localtime(t1 + 1))
    if start < end:  # not across midnight
        assert all(start <= m.group(1) <= end for m in lines)
    assert [m.group(1) for m in lines] == sorted(m.group(1) for m in lines)
    # per case and repeat, its phases in order; accuracy once, after the first timed loop
    seen: dict[str, list[str]] = {}
    order: list[str] = []
    counted: list[int] = []
    for m in lines:
        who, _, what = m.group(4).partition(": ")
        name = what.split(" (")[0]
        if name in (*DEVICE_PHASES, "accuracy"):
            seen.setdefault(who, []).append(name)
            counted.append(int(m.group(2)))
            if who not in order:
                order.append(who)
    first = [*DEVICE_PHASES, "accuracy"]
    assert seen == {
        "onnxruntime t1 @local repeat 1/2": first,
        "onnxruntime t2 @local repeat 1/2": first,
        "onnxruntime t2 @local repeat 2/2": DEVICE_PHASES,
        "onnxruntime t1 @local repeat 2/2": DEVICE_PHASES,
    }
    assert order == ["onnxruntime t1 @local repeat 1/2", "onnxruntime t2 @local repeat 1/2",
                     "onnxruntime t2 @local repeat 2/2", "onnxruntime t1 @local repeat 2/2"]
    assert re.search(r"timed loop \(3 iterations, \d+\.\d\d s\)", stderr)
    # every step counted once, one after another: the total is reached at the last phase
    # (the first, the export, is the committed one: counted, not logged, see below)
    assert counted == list(range(2, total + 1))
    reached = [i for i, m in enumerate(lines) if int(m.group(2)) == total]
    last_phase = max(i for i, m in enumerate(lines)
                     if m.group(4).partition(": ")[2].split(" (")[0] in DEVICE_PHASES)
    assert reached[0] == last_phase
    check_final_lines(stderr)


def test_piped_run_repeat_results_are_logged(piped: tuple[str, float, float]) -> None:
    """Each repeat ends with its status and median, so a log shows the repeats differ."""
    stderr = piped[0]
    ends = re.findall(r"onnxruntime t[12] @local repeat [12]/2: ok, p50 \d+\.\d\d ms", stderr)
    assert len(ends) == 4


def run_in_pty(argv: list[str], columns: int = 120) -> tuple[int, str]:
    """``argv`` with stdin, stdout and stderr a pseudo-terminal of ``columns``; its exit
    code and everything it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_run_shows_a_bar_over_repeats_and_phases(tmp_path: Path) -> None:
    code, text = run_in_pty([*CLI, *FAST, "--repeats", "2", "-o", str(tmp_path)])
    assert code == 0, text[-2000:]
    total = steps(cases=1, repeats=2)
    bars = re.findall(r"edgebench:\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+) \[", text)
    assert bars, text[-2000:]
    assert {int(t) for _, _, t in bars} == {total}
    counts = [int(n) for _, n, _ in bars]
    assert counts == sorted(counts) and counts[-1] == total
    assert set(counts) == set(range(total + 1))  # through every phase of every repeat
    assert not LINE.search(text.replace("\r", "\n"))  # no log lines on a terminal
    check_final_lines(text)


def test_a_host_step_is_logged_once_it_has_run_a_second(tmp_path: Path) -> None:
    """A long export or calibration shows while it runs; a cached one (instant) is counted
    without a line, so an error found in it stays the only line on stderr."""
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        progress = Progress(accuracy=False, stream=stream)
        progress.planned(3, models=1)
        with progress.host_step("m", "export for ncnn"):
            pass
        with progress.host_step("m", "export for litert"):
            time.sleep(QUIET_S + 0.5)
            stream.flush()
            during = log.read_text()
        try:
            with progress.host_step("m", "export for mnn"):
                raise ValueError("a user's error")
        except ValueError:
            pass
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0] == during.strip(), lines
    match = LINE.match(lines[0])
    assert match and match.group(2, 3, 4) == ("2", "3", "m: export for litert")
    assert progress.done == 3


def test_concurrent_devices_never_garble_the_log(tmp_path: Path) -> None:
    """Eight device threads report their phases at once: every line whole, every step
    counted once, the total reached by the last one."""
    import threading

    from edgebench.records import Case, CaseResult, RunSettings, Status

    settings = RunSettings(repeats=3)
    cases = [Case(id=f"c{i}", model="m", backend="onnxruntime", device=f"ssh://pi{i}",
                  settings=settings) for i in range(8)]
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        progress = Progress(accuracy=True, stream=stream)
        progress.planned(len(cases) * (3 * 3 + 1), models=1)

        def device(case: Case) -> None:
            for repeat in range(3):
                progress.repeat_started(case, repeat)
                for name in DEVICE_PHASES:
                    progress.phase(case, name, "x" * 200)
                if repeat == 0:
                    progress.phase(case, "accuracy")
                progress.repeat_finished(CaseResult(case=case, status=Status.OK), repeat)

        threads = [threading.Thread(target=device, args=(c,)) for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = log.read_text().splitlines()
    assert all(LINE.match(ln) for ln in lines), [ln for ln in lines if not LINE.match(ln)]
    phases = [int(m.group(2)) for ln in lines if (m := LINE.match(ln))
              and m.group(4).split(": ", 1)[1].split(" (")[0] in (*DEVICE_PHASES, "accuracy")]
    assert phases == list(range(1, 8 * 10 + 1)) and progress.done == progress.total == 80
