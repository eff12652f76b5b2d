"""What a ``labgrid://`` device URI asks for: which places, how many, from which coordinator,
how long to wait, and the SSH options passed on to each board. Nothing here connects.

URIs (the options are listed in :mod:`edgebench.devices.labgrid`)::

    labgrid://PLACE[?option=value&...]            one named place
    labgrid://?TAG=VALUE[&TAG=VALUE...][&count=N]  any N places whose tags all match
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from edgebench.errors import UserError
from edgebench.redaction import redact

from .native import NATIVE_TOOLS

DEFAULT_COORDINATOR = "127.0.0.1:20408"
"""labgrid's own default when neither the URI nor ``LG_COORDINATOR`` names one
(``labgrid-client --help``)."""
DEFAULT_RESERVATION_TIMEOUT_S = 1800.0
"""How long a device waits in the coordinator's queue for a free place by default: half an
hour, long enough for a nightly behind another job's cases, short enough that a farm whose
boards are all held for the night ends the run the same night."""
SSH_OPTIONS = ("python", "key", "known_hosts", "hostkey", "tmpdir", "connect_timeout",
               *NATIVE_TOOLS)
"""The ``ssh://`` options passed on to the SSH connection to each place's board."""
OWN_OPTIONS = ("coordinator", "count", "reservation_timeout")
TAG_KEY = re.compile(r"[a-z][a-z0-9_]+")
"""A labgrid tag name (``labgrid.remote.common.TAG_KEY``, matched whole here)."""
TAG_VALUE = re.compile(r"[A-Za-z0-9_.:+-]+")
"""A tag value this URI can carry (labgrid's own rule accepts any string)."""
PLACE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class LabgridRequest:
    """A parsed ``labgrid://`` URI."""

    uri: str
    filters: dict[str, str]
    """The tags every place must have; a named place is the filter ``name=PLACE`` (labgrid's
    scheduler gives every place the tag ``name`` with its own name)."""
    count: int
    """How many places (each one device slot)."""
    coordinator: str
    """``host:port`` of the labgrid coordinator."""
    reservation_timeout_s: float
    ssh_options: dict[str, str] = field(default_factory=dict)


def parse_uri(uri: str, environ: dict[str, str] | None = None) -> LabgridRequest:
    """Read ``uri``; a malformed one is a :class:`UserError` of one sentence.

    The coordinator is the URI's ``coordinator=``, else ``LG_COORDINATOR`` from ``environ``
    (default: the process environment), else :data:`DEFAULT_COORDINATOR`.
    """
    env = os.environ if environ is None else environ
    shown = redact(uri)
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = urlsplit("invalid:")
    if parts.scheme != "labgrid" or parts.path not in ("", "/") or parts.fragment \
            or "@" in parts.netloc:
        raise UserError(f"device {shown!r} is not a labgrid URI such as 'labgrid://rpi5-1' "
                        "or 'labgrid://?board=rpi5&count=2'.")
    place = unquote(parts.netloc)
    if place and not PLACE_NAME.fullmatch(place):
        raise UserError(f"device {shown!r}: {place!r} is not a labgrid place name (letters, "
                        "digits, '-', '_', '.', '+').")
    options: dict[str, str] = {}
    filters: dict[str, str] = {"name": place} if place else {}
    for key, _, value in (p.partition("=") for p in parts.query.split("&") if p):
        key, value = unquote(key), unquote(value)
        if key in options or (key in filters and key != "name") or \
                (key == "name" and "name" in filters):
            raise UserError(f"device {shown!r} gives {key!r} twice.")
        if key in OWN_OPTIONS or key in SSH_OPTIONS:
            options[key] = value
        elif not TAG_KEY.fullmatch(key):
            raise UserError(
                f"device {shown!r}: {key!r} is neither an option ({', '.join(OWN_OPTIONS)}, "
                f"{', '.join(SSH_OPTIONS)}) nor a labgrid tag name (lower-case letters, "
                "digits and '_', starting with a letter).")
        elif not TAG_VALUE.fullmatch(value):
            raise UserError(f"device {shown!r}: tag {key}={value!r} needs a value of "
                            "letters, digits, '-', '_', '.', ':' or '+'.")
        else:
            filters[key] = value
    if not filters:
        raise UserError(f"device {shown!r} names no place and no tags: give a place "
                        "(labgrid://rpi5-1) or tags (labgrid://?board=rpi5).")
    count = _count(shown, options.get("count", "1"))
    if count > 1 and set(filters) == {"name"}:
        raise UserError(f"device {shown!r} asks for {count} of the one place {place!r}: "
                        "give tags instead (labgrid://?board=rpi5&count=2).")
    if "hostkey" in options and count > 1:
        raise UserError(f"device {shown!r} pins one hostkey for {count} places: record "
                        "their keys in known_hosts (known_hosts=PATH) instead.")
    if "hostkey" in options and not options["hostkey"].startswith("SHA256:"):
        raise UserError(f"device {shown!r}: hostkey must be a SHA256 fingerprint as "
                        "'ssh-keygen -lf' prints it, e.g. hostkey=SHA256:AbC...")
    timeout = _seconds(shown, "reservation_timeout",
                       options.get("reservation_timeout", str(DEFAULT_RESERVATION_TIMEOUT_S)))
    if "connect_timeout" in options:
        _seconds(shown, "connect_timeout", options["connect_timeout"])
    coordinator = options.get("coordinator") or env.get("LG_COORDINATOR") or \
        DEFAULT_COORDINATOR
    _check_address(shown, coordinator, "coordinator=" in parts.query)
    return LabgridRequest(
        uri=uri, filters=filters, count=count, coordinator=coordinator,
        reservation_timeout_s=timeout,
        ssh_options={k: v for k, v in options.items() if k in SSH_OPTIONS})


def _count(shown: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise UserError(f"device {shown!r}: count must be a whole number of places from 1 to "
                        f"64, not {text!r}.")
    return int(text)


def _seconds(shown: str, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UserError(f"device {shown!r}: {name} must be a positive number of seconds, "
                        f"not {text!r}.")
    return value


def _check_address(shown: str, address: str, in_uri: bool) -> None:
    where = "coordinator=" if in_uri else "LG_COORDINATOR"
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, "20408"
    if not host or "/" in address or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"device {shown!r}: {where} {address!r} is not a coordinator "
                        "address HOST[:PORT] such as 10.0.0.5:20408.")
