"""ONNX -> ``.mnn`` with the ``mnn`` wheel's own converter, run in a child process.

The converter is the wheel's compiled ``_tools.mnnconvert`` (what its ``mnnconvert``
console script calls). The console script itself is not used: its package,
``MNN.tools``, runs ``pip install -U aliyun-log-python-sdk`` with whatever ``pip`` is on
the PATH whenever that package is missing (``MNN/tools/utils/log.py``, mnn 3.6.1) and sends
each conversion's arguments and the machine id to Alibaba's log service. The compiled
converter always returns success, even when it wrote nothing; :func:`main` checks the
output file and exits 1 with the converter's last error line, so
:func:`edgebench.pipeline.run_tool` reports ``converting … failed (exit 1): <that line>``.

Usage (what :func:`convert_onnx` runs)::

    python -m edgebench.plugins.backends.mnn.mnnconvert OUT.mnn -- <mnnconvert arguments>
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile

GENERIC = ("Converted Failed!", "Convert error, please check your file format.")
"""The converter's closing lines on failure, which say nothing about the cause."""
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] :\d+: ")


def error_line(output: str) -> str:
    """The converter's last line that names a cause (an unsupported op, an unreadable
    model), without its ``[hh:mm:ss] :line:`` stamp; else its last line."""
    lines = [_STAMP.sub("", ln).strip() for ln in output.splitlines() if ln.strip()]
    lines = [ln.removeprefix("[ERROR] ").strip() for ln in lines]
    causes = [ln for ln in lines if ln not in GENERIC and not ln.startswith("The device")]
    for line in reversed(causes):
        if any(k in line for k in ("Not Support", "failed", "Error", "error", "not ",
                                   "Does Not Exist")):
            return line
    return lines[-1] if lines else "no output"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m edgebench.plugins.backends.mnn.mnnconvert OUT.mnn -- ARGS",
              file=sys.stderr)
        return 2
    out, args = argv[0], argv[2:]
    import _tools  # the mnn wheel's compiled converter

    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)  # the converter prints from C++ to fds 1 and 2
        os.dup2(log.fileno(), 2)
        try:
            _tools.mnnconvert(["mnnconvert", *args])
        finally:
            libc.fflush(None)  # C stdio buffers, full when writing to a file
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    sys.stdout.write(output)
    if os.path.isfile(out) and os.path.getsize(out) > 0 and "Converted Success" in output:
        return 0
    print(error_line(output))  # last line of stdout: what run_tool reports
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
