"""Where an ``adb://`` device is and what adb says about it: the URI read, the adb binary
found, and adb's words about a device it cannot use turned into one sentence (and into
"retry" or "ask a person"). Nothing here runs adb.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import unquote, urlsplit

from edgebench.errors import CaseError, UserError
from edgebench.redaction import redact
from edgebench.retry import ConnectionLost

from .native import NATIVE_TOOLS
from .transport import parse_query

OPTIONS = ("python", "tmpdir", "adb", *NATIVE_TOOLS)
DEFAULT_TMPDIR = "/data/local/tmp"


def parse_uri(uri: str) -> tuple[str, bool, dict[str, str]]:
    """``(serial, is_network, options)``; ``serial`` is ``""`` for the only device."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "adb":
        raise UserError(f"device {redact(uri)!r} is not an ADB URI such as 'adb://SERIAL' "
                        "or 'adb://192.168.1.30:5555'.")
    serial = unquote(parts.netloc)
    if "@" in serial or parts.path not in ("", "/"):
        raise UserError(f"device {redact(uri)!r}: an ADB URI is adb://SERIAL or "
                        "adb://host:port (no user or password), with options after '?'.")
    host, sep, port = serial.rpartition(":")
    network = bool(sep and host and port.isdigit())
    if sep and not network and not serial.startswith("["):
        raise UserError(f"device {redact(uri)!r} has an invalid port.")
    return serial, network, parse_query(uri, parts.query, OPTIONS)


def find_adb(explicit: str | None) -> str:
    """The adb binary: the option, ``adb`` on PATH, or the one bundled with adbutils."""
    if explicit:
        path = shutil.which(os.path.expanduser(explicit))
        if path is None:
            raise CaseError(f"adb={explicit} is not an executable")
        return path
    found = shutil.which("adb")
    if found:
        return found
    try:
        import adbutils

        return str(adbutils.adb_path())
    except Exception:
        raise CaseError("adb is not installed: apt-get install adb, or pip install "
                        "'edgebench[adb]' (which bundles one)") from None


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def state_error(serial: str, text: str, fallback: str) -> CaseError:
    """The error for a device adb cannot use: :class:`ConnectionLost` (retried) unless it
    waits for a person (unauthorized: nobody taps "allow" in a nightly)."""
    problem = state_problem(serial, text) or fallback
    if waits_for_a_person(text):
        return CaseError(problem)
    return ConnectionLost(problem)


def waits_for_a_person(text: str) -> bool:
    """adb's words say the phone waits for someone to tap "allow": retrying is no use."""
    low = text.lower()
    return "unauthorized" in low or "failed to authenticate" in low


def state_problem(serial: str, text: str) -> str | None:
    """The one-sentence reason why ``serial`` cannot be used, from adb's words, or None."""
    low = text.lower()
    if "unauthorized" in low or "failed to authenticate" in low:
        return (f"the device {serial} is unauthorized: unlock it and accept the 'Allow USB "
                "debugging?' prompt for this computer (its key is ~/.android/adbkey.pub), "
                "then run again")
    if "offline" in low:
        return (f"the device {serial} is offline: reconnect it (adb -s {serial} reconnect) "
                "or restart adbd on it")
    if "not found" in low or "no devices" in low:
        return f"no device {serial or ''} is attached ('adb devices' lists those that are)"
    if "connection refused" in low or "failed to connect" in low or "cannot connect" in low \
            or "unable to connect" in low or "no route" in low or "timed out" in low:
        return f"cannot reach {serial}: {first_line(text)}"
    return None
