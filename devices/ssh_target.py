"""Where an ``ssh://`` device is: its URI read and combined with ``~/.ssh/config``.

URI: ``ssh://[user@]host[:port][?option=value&...]``; the options are listed in
:mod:`edgebench.devices.ssh`. Nothing here connects.
"""

from __future__ import annotations

import getpass
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgebench.errors import UserError
from edgebench.redaction import redact

from .native import NATIVE_TOOLS
from .transport import parse_query

OPTIONS = ("python", "key", "known_hosts", "hostkey", "tmpdir", "connect_timeout",
           *NATIVE_TOOLS)


@dataclass(frozen=True)
class SSHTarget:
    """Where to connect, from the URI and ``~/.ssh/config``."""

    uri: str
    alias: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str | None = None
    connect_timeout: float = 10.0
    accept_new_keys: bool = False
    """``StrictHostKeyChecking accept-new`` (or ``no``, read as accept-new: a changed key
    is never accepted) in ``~/.ssh/config``."""
    hash_known_hosts: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.hostname}{port}"

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts writes it: ``host`` or ``[host]:port``."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def parse_uri(uri: str) -> tuple[str | None, str, int | None, dict[str, str]]:
    """``(user, host, port, options)`` of an ``ssh://`` URI; errors are UserErrors."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address
        parts = urlsplit("invalid:")
    if parts.scheme != "ssh" or not parts.netloc:
        raise UserError(f"device {redact(uri)!r} is not an SSH URI such as "
                        "'ssh://pi@raspberrypi' or 'ssh://pi@192.168.1.20:2222'.")
    if parts.password is not None:
        raise UserError(f"device {redact(uri)!r} has a password in it; passwords are not "
                        "supported (they would end up in reports): use a key or ssh-agent.")
    if parts.path not in ("", "/"):
        raise UserError(f"device {redact(uri)!r} has a path; put options after '?', "
                        "e.g. ssh://pi@raspberrypi?python=/usr/bin/python3.")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"device {redact(uri)!r} has an invalid port.") from None
    if not parts.hostname:
        raise UserError(f"device {redact(uri)!r} names no host.")
    options = parse_query(uri, parts.query, OPTIONS)
    if "connect_timeout" in options:
        try:
            if float(options["connect_timeout"]) <= 0:
                raise ValueError
        except ValueError:
            raise UserError(f"device {redact(uri)!r}: connect_timeout must be a positive number of "
                            "seconds.") from None
    if "hostkey" in options and not options["hostkey"].startswith("SHA256:"):
        raise UserError(f"device {redact(uri)!r}: hostkey must be a SHA256 fingerprint as "
                        "'ssh-keygen -lf' prints it, e.g. hostkey=SHA256:AbC...")
    user = unquote(parts.username) if parts.username else None
    return user, parts.hostname, port, options


def resolve(uri: str) -> SSHTarget:
    """Combine the URI with ``~/.ssh/config`` (read now, so edits apply to the next run)."""
    import paramiko

    user, host, port, options = parse_uri(uri)
    config_path = Path("~/.ssh/config").expanduser()
    entry: dict[str, Any] = {}
    if config_path.is_file():
        try:
            entry = dict(paramiko.SSHConfig.from_path(str(config_path)).lookup(host))
        except Exception as exc:  # paramiko raises several kinds on a bad config
            raise UserError(f"{config_path} cannot be read: {exc}.") from None
    hostname = entry.get("hostname", host)
    port = port or int(entry.get("port", 22))
    user = user or entry.get("user") or getpass.getuser()
    if "key" in options:
        keys: tuple[str, ...] = (os.path.expanduser(options["key"]),)
    else:
        keys = tuple(os.path.expanduser(k) for k in entry.get("identityfile", []))
    if "known_hosts" in options:
        known = tuple(os.path.expanduser(p) for p in options["known_hosts"].split(",") if p)
    else:
        user_files = entry.get("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2")
        known = (*(os.path.expanduser(p) for p in str(user_files).split()),
                 "/etc/ssh/ssh_known_hosts")
    proxy = entry.get("proxycommand")
    if not proxy and entry.get("proxyjump") and entry["proxyjump"] != "none":
        proxy = f"ssh -W {shlex.quote(hostname)}:{port} {shlex.quote(entry['proxyjump'])}"
    timeout = float(options.get("connect_timeout") or entry.get("connecttimeout") or 10)
    return SSHTarget(uri=uri, alias=host, hostname=hostname, port=port, user=user, key_files=keys,
                     known_hosts=known,
                     identities_only=str(entry.get("identitiesonly", "no")).lower() == "yes",
                     accept_new_keys=str(entry.get("stricthostkeychecking", "ask")).lower()
                     in ("accept-new", "no", "off", "false"),
                     hash_known_hosts=str(entry.get("hashknownhosts", "no")).lower() == "yes",
                     proxy_command=proxy, connect_timeout=timeout, options=options)
