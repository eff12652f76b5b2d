"""``edgebench.threads``: after Ctrl-C cuts a wait, the next wait still waits for the worker's
real end (``Thread.join`` does not on CPython 3.10-3.12: python/cpython#90882), and a second
Ctrl-C or SIGTERM does not cut the cleanup. Run in a fresh interpreter of each CPython
found here (the project's, and pyenv's 3.12 if installed), the module loaded by file path.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

THREADS = Path(__file__).resolve().parents[1] / "harness" / "threads.py"

SCRIPT = r'''
import importlib.util, os, signal, sys, threading, time

spec = importlib.util.spec_from_file_location("threads", sys.argv[1])
threads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(threads)
use_join = sys.argv[2] == "join"
finished = threading.Event()


def work():
    time.sleep(1.5)  # a device thread still cleaning up
    finished.set()


worker = threads.Worker(work, "device test")
worker.start()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    if use_join:
        while worker.thread.is_alive():
            worker.thread.join(0.2)
    else:
        threads.wait_for([worker])
    print("not interrupted")
except KeyboardInterrupt:
    with threads.interrupts_deferred() as seen:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()  # a second one
        start = time.monotonic()
        if use_join:
            worker.thread.join(30)
        else:
            assert threads.wait_for([worker], timeout_s=30)
        print("waited %.2f s, work finished: %s, deferred: %s"
              % (time.monotonic() - start, finished.is_set(), seen))
'''


def _interpreters() -> list[str]:
    found = [sys.executable]
    for pattern in ("3.12.*",):
        found += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{pattern}/bin/python3"))
    return found


@pytest.mark.parametrize("python", _interpreters())
def test_wait_after_an_interrupted_wait_waits_for_the_real_end(python: str,
                                                               tmp_path: Path) -> None:
    script = tmp_path / "pattern.py"
    script.write_text(SCRIPT)
    done = subprocess.run([python, str(script), str(THREADS), "wait"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "work finished: True" in done.stdout, done.stdout
    # the second signal was noted, not raised
    assert f"deferred: [{int(signal.SIGTERM)}]" in done.stdout, done.stdout
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] < (3, 13))"],
                             capture_output=True, text=True).stdout.strip()
    if version == "True":  # the CPython bug this module works around is still there
        joined = subprocess.run([python, str(script), str(THREADS), "join"],
                                capture_output=True, text=True, timeout=60)
        assert "work finished: False" in joined.stdout, joined.stdout + joined.stderr
